//! `Application::build`: connects and migrates the database, marks
//! messages a crash left `streaming` as `interrupted`, starts the actors,
//! binds the listener. `main` and the tests both call it, so the tests run
//! the server that ships.
//!
//! Shutdown (SIGINT/SIGTERM, or `AppHandle::shutdown`) is one ordered
//! sequence within the grace (see `crate::shutdown`): stop taking work,
//! let running answers end, end what is left `interrupted` and tell every
//! subscriber `shutting_down`, commit, let readers drain, exit.

use std::{sync::Arc, time::Duration};

use actix::{Actor, Addr, Arbiter};
use actix_web::{dev::Server, dev::ServerHandle, middleware::from_fn, web, App};
use anyhow::Context as _;

use crate::{
    actors::{
        persistence::{Drain, PersistenceActor},
        registry::{Registry, StopAll, WhenIdle},
        thread::StopReason,
        Deps,
    },
    config::Settings,
    http::{self, AppState},
    metrics::Metrics,
    model,
    shutdown::Shutdown,
    store::Store,
};

pub struct Application {
    port: u16,
    server: Server,
    handle: AppHandle,
    /// Held for its `Drop`: the actor threads stop with the application.
    _actor_threads: ActorThreads,
}

/// Stops a running application gracefully.
#[derive(Clone)]
pub struct AppHandle {
    server: ServerHandle,
    registry: Addr<Registry>,
    persistence: Addr<PersistenceActor>,
    /// Cluster mode: the link whose last frames go out before the end.
    bus: Option<Arc<crate::broadcast::redis::Bus>>,
    /// What the shutdown's steps share with the process (its deadline,
    /// the open connections).
    shutdown: Arc<Shutdown>,
    grace: Duration,
    /// The end of the grace kept for the steps after the answers.
    reserve: Duration,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        let settings = Arc::new(settings);
        let metrics = Arc::new(Metrics::new());
        let clustered = settings.cluster.redis_url.is_some();
        if clustered {
            anyhow::ensure!(
                settings.database.url().starts_with("postgres"),
                "cluster mode (--redis-url) needs a Postgres database shared by every node (--database-url postgres://…); \
                 SQLite is one node's alone"
            );
            anyhow::ensure!(
                settings.cluster.stream_token_secret.is_some(),
                "cluster mode (--redis-url) needs --stream-token-secret (STREAM_TOKEN_SECRET), the same on every node, \
                 so a stream token minted on one node works on all"
            );
        }
        let lease = clustered.then(|| settings.cluster.lease());
        let store = Store::connect_with(&settings.database, lease).await.context("could not open the database")?;
        // One node: what a previous run left streaming is over. Several: an
        // answer whose owner's lease expired is taken over, with its log,
        // by the sweeper; nothing is swept here.
        let mut cut_at_start = std::collections::HashSet::new();
        if !clustered {
            let (refused, going_on) = store
                .interrupt_streaming(settings.continuing.budget())
                .await
                .context("could not recover interrupted messages")?;
            if !refused.is_empty() {
                tracing::warn!(
                    messages = refused.len(),
                    "messages left streaming by a previous run are now interrupted"
                );
            }
            let restart = crate::domain::continuation::Cut::Restart.as_str();
            for why in refused {
                metrics.continuations.with_label_values(&[restart, why.as_str()]).inc();
            }
            if !going_on.is_empty() {
                tracing::warn!(messages = going_on.len(), "answers left streaming by a previous run go on");
            }
            cut_at_start.extend(going_on);
            let released = store.release_claims().await.context("could not read the notification outbox")?;
            if released > 0 {
                tracing::info!(deliveries = released, "notifications a previous run was sending are sent again");
            }
        }
        let provider = model::from_settings(&settings.provider, &metrics)?;
        let db_healthy = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let shutdown = Shutdown::new();
        let node_id = settings.cluster.node_id();
        // Its name travels in every message between nodes, in a byte.
        anyhow::ensure!(
            (1..=64).contains(&node_id.len()),
            "--node-id must be 1 to 64 bytes long (it names this node to the others)"
        );
        let persistence = PersistenceActor::new(
            store.clone(),
            metrics.clone(),
            db_healthy.clone(),
            node_id.clone(),
            settings.database.flush_interval(),
        )
        .start();
        let bus = match &settings.cluster.redis_url {
            Some(url) => Some(
                crate::broadcast::redis::Bus::start(
                    url,
                    node_id.clone(),
                    settings.cluster.redis_prefix.clone(),
                    settings.streaming.broadcast_capacity,
                )
                .context("--redis-url is not a Redis URL")?,
            ),
            None => None,
        };
        let deps = Arc::new(Deps {
            store: store.clone(),
            persistence: persistence.clone(),
            provider,
            tool_caller: Arc::new(crate::tool_calls::ToolCaller::new(
                &settings.outbound,
                store.clone(),
                metrics.clone(),
            )),
            metrics,
            settings: settings.clone(),
            db_healthy,
            node_id: node_id.clone(),
            lease,
            fanouts: match &bus {
                Some(bus) => Arc::new(crate::broadcast::redis::RedisFanouts { bus: bus.clone() }),
                None => {
                    Arc::new(crate::broadcast::local::LocalFanouts { capacity: settings.streaming.broadcast_capacity })
                }
            },
            capacity: Arc::new(crate::capacity::Capacity::new(&settings.limits)),
            shutdown: shutdown.clone(),
            cut_at_start: std::sync::Mutex::new(cut_at_start),
        });
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        // Half the cores run thread actors, all of them HTTP workers: an
        // actor does one step per chunk, a worker one write per subscriber.
        // With one actor thread per core, 2 cores had 5 busy threads (the
        // system's, 2 actors', 2 workers') and a burst of starts paid for the
        // handoffs: 20 questions at once reached their first delta p99 2.6-3.0
        // ms with 2 actor threads, 2.0-2.3 ms with one (README, Performance).
        let actor_threads = settings.streaming.actor_arbiters.unwrap_or(cores / 2).max(1);
        let mut arbiters: Vec<Arbiter> = (0..actor_threads).map(|_| Arbiter::with_tokio_rt(actor_runtime)).collect();
        let registry = Registry::new(deps.clone(), arbiters.iter().map(|a| a.handle()).collect()).start();
        if !clustered {
            // Answers whose calls were all answered when the last run
            // stopped, before their next step began: they go on now (their
            // actor starts them as it loads).
            let (store, registry) = (deps.store.clone(), registry.clone());
            let cut: Vec<uuid::Uuid> =
                deps.cut_at_start.lock().unwrap_or_else(|p| p.into_inner()).iter().copied().collect();
            actix_rt::spawn(async move {
                // Answers a crash cut: their actors continue them as they load.
                for thread_id in cut {
                    let _ = registry.send(crate::actors::registry::Lookup { thread_id }).await;
                }
                match store.due_to_continue().await {
                    Ok(threads) => {
                        for thread_id in threads {
                            let _ = registry.send(crate::actors::registry::Lookup { thread_id }).await;
                        }
                    }
                    Err(e) => tracing::warn!(error.message = %e, "answers due to go on could not be read"),
                }
            });
        }
        if clustered {
            let bus = bus.clone().expect("cluster mode has a bus");
            crate::actors::sweeper::Sweeper::new(deps.clone(), registry.clone(), settings.cluster.lease(), bus).start();
        }
        // Web Push, when it is on (`--vapid-subject`): its VAPID key.
        let push = crate::notify::push::Push::start(&settings, &deps.store).await?;
        // Notifications: the outbox's sender (`notify::sender`).
        let watchers = crate::notify::sender::LiveWatchers { registry: registry.clone(), bus: bus.clone() };
        let mut sender =
            crate::notify::sender::Sender::new(deps.store.clone(), deps.metrics.clone(), &settings, Box::new(watchers));
        sender.push = push.clone().map(|push| {
            Box::new(crate::notify::push::PushChannel { push, store: deps.store.clone() })
                as Box<dyn crate::notify::Channel>
        });
        // On a thread of its own, stopped with the others (its queries end
        // inside a runtime context, see `actor_runtime`).
        let notifier = Arbiter::with_tokio_rt(actor_runtime);
        notifier.spawn_fn(move || sender.spawn());
        arbiters.push(notifier);

        for origin in settings.http.allowed_origins.iter().filter(|o| *o != "*") {
            let uri: actix_web::http::Uri =
                origin.parse().with_context(|| format!("--allowed-origins: {origin:?} is not an origin"))?;
            // Exactly what a browser sends as `Origin`: no path, no
            // trailing slash, no query, or it would never match.
            anyhow::ensure!(
                uri.scheme().is_some()
                    && uri.host().is_some()
                    && uri.path() == "/"
                    && !origin.ends_with('/')
                    && uri.query().is_none(),
                "--allowed-origins: {origin:?} must look like https://host[:port] (no path or trailing slash)"
            );
        }
        let auth = http::auth::Auth::new(
            settings.http.admin_token.as_ref().and_then(|t| t.expose()),
            Duration::from_secs(settings.http.stream_token_ttl_secs),
            settings.cluster.stream_token_secret.as_ref().and_then(|s| s.expose()),
        )?;
        let listener = crate::serve::bind(&settings.http.bind, settings.http.listen_backlog)
            .with_context(|| format!("could not listen on {}", settings.http.bind))?;
        let local = listener.local_addr()?;
        if auth.is_open() && !local.ip().is_loopback() && !settings.http.allow_open {
            anyhow::bail!(
                "refusing to run open (no --admin-token) on the non-loopback address {local}: \
                 set --admin-token (ADMIN_TOKEN), or pass --allow-open if this network is trusted"
            );
        }
        let port = local.port();
        let api_doc = http::openapi::document(&settings.limits);
        let bus_at_shutdown = bus.clone();
        let state = web::Data::new(AppState { store, registry: registry.clone(), deps, auth, api_doc, bus, push });
        let max_body = settings.http.max_body_bytes;
        let cors_origins = settings.http.allowed_origins.clone();
        let grace = Duration::from_millis(settings.http.shutdown_grace_ms);
        let tls = crate::tls::server_config(&settings.http.tls)?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let app = move || {
            App::new()
                .wrap(http::cors(&cors_origins))
                .wrap(from_fn(http::auth::open_mode_host))
                .wrap(http::error_shape())
                .wrap(tracing_actix_web::TracingLogger::<http::logging::RedactedRootSpan>::new())
                .app_data(state.clone())
                .configure(|cfg| http::configure(cfg, max_body))
        };
        let serving = crate::serve::Serving {
            workers: settings.http.http_workers.unwrap_or(cores).max(1),
            request_timeout: Duration::from_millis(settings.limits.header_timeout_ms),
            grace,
            send_buffer: settings.http.socket_send_buffer,
            nodelay: settings.http.tcp_nodelay,
            shutdown: shutdown.clone(),
        };
        // TLS (see `crate::serve`): HTTP/2 or HTTP/1.1 by ALPN; else plain HTTP/1.1.
        let server = match tls {
            Some(config) => {
                crate::serve::https(app, listener, config, &serving, crate::serve::H2Limits::new(&settings))?
            }
            None => crate::serve::plain_http1(app, listener, &serving)?,
        };
        let handle = AppHandle {
            server: server.handle(),
            registry,
            persistence,
            bus: bus_at_shutdown,
            shutdown,
            grace,
            reserve: Duration::from_millis(settings.http.shutdown_reserve_ms),
        };
        tracing::info!(port, scheme, provider = settings.provider.kind().name(), "listening");
        Ok(Application { port, server, handle, _actor_threads: ActorThreads(arbiters) })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn handle(&self) -> AppHandle {
        self.handle.clone()
    }

    /// Serves until stopped by a signal (returning once the shutdown is
    /// over) or by `AppHandle::shutdown`.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let handle = self.handle.clone();
        let finished = self.handle.shutdown.clone();
        actix_web::rt::spawn(async move {
            wait_for_signal().await;
            tracing::info!("signal received; shutting down");
            handle.shutdown().await;
        });
        // The HTTP server's own stop polls its connections once a second;
        // the shutdown (from a signal or `AppHandle::shutdown`) knows when
        // the last one closed.
        tokio::select! {
            served = self.server => {
                served?;
                // The server stopping is one step of a shutdown, whose
                // last writes (and readers' draining) may still run: the
                // process ends with the shutdown, not with the server.
                if finished.is_draining() {
                    finished.finished().await;
                }
            }
            _ = finished.finished() => {}
        }
        Ok(())
    }
}

/// The Tokio runtime of one actor thread, its context entered for the
/// rest of the thread's life. When the thread stops (`ActorThreads`), its
/// actors' futures are dropped after the runtime's event loop has ended;
/// a database query among them returns its connection to the pool by
/// spawning a task, which needs a runtime context (sqlx panics without
/// one, and a panic in a destructor aborts the process). The guard is
/// outermost (taken before the event loop's own), so nesting stays
/// in order.
fn actor_runtime() -> tokio::runtime::Runtime {
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("an actor thread's runtime builds");
    std::mem::forget(runtime.handle().enter());
    runtime
}

/// The threads running thread actors. They are stopped when the
/// application is dropped, however it ends: a server whose future is
/// dropped (an embedding runtime that stops) must not leave actor threads
/// holding database connections behind.
struct ActorThreads(Vec<Arbiter>);

impl Drop for ActorThreads {
    fn drop(&mut self) {
        for arbiter in &self.0 {
            arbiter.stop();
        }
    }
}

impl AppHandle {
    /// The ordered shutdown (`crate::shutdown`), within the grace.
    pub async fn shutdown(&self) {
        // 1. No new work: readiness and new questions answer 503.
        let deadline = self.shutdown.begin(self.grace);
        let started = tokio::time::Instant::now();
        tracing::info!(
            grace_ms = self.grace.as_millis() as u64,
            "shutting down: no new questions; running answers go on"
        );
        // 2. Running answers may end, until the reserve.
        let answers_until = deadline.checked_sub(self.reserve).unwrap_or(started).max(started);
        if tokio::time::timeout_at(answers_until, self.registry.send(WhenIdle)).await.is_err() {
            tracing::info!("answers still running at the end of their part of the grace end interrupted");
        }
        // 3. What is left ends `interrupted` and every subscriber is told;
        //    the listener closes and idle connections close (so no stream
        //    starts that would get no closing event); the last frames and
        //    writes go out. Half of what is left is kept for readers to
        //    drain: a database or Redis that hangs must not eat it all.
        let now = tokio::time::Instant::now();
        let writes_until = now + deadline.saturating_duration_since(now) / 2;
        if tokio::time::timeout_at(writes_until, self.registry.send(StopAll { reason: StopReason::ShuttingDown }))
            .await
            .is_err()
        {
            tracing::error!("thread actors did not all stop within the shutdown's time for it");
        }
        let server = self.server.clone();
        actix_web::rt::spawn(async move { server.stop(true).await });
        let writes = async {
            if let Some(bus) = &self.bus {
                bus.flush().await;
            }
            let _ = self.persistence.send(Drain).await;
        };
        if tokio::time::timeout_at(writes_until, writes).await.is_err() {
            tracing::error!("shutdown grace time ran out before every write was committed");
        }
        // 4. Readers drain: each stream's connection closes once its peer
        //    read its last event.
        // (Every accepted connection, plain or TLS, is counted: the HTTP
        // server's own stop only looks once a second.)
        let drained = tokio::time::timeout_at(deadline, self.shutdown.connections_closed()).await.is_ok();
        let open = self.shutdown.open_connections();
        match drained {
            true => tracing::info!(took_ms = started.elapsed().as_millis() as u64, "shutdown complete"),
            false => tracing::warn!(open, "shutdown grace over with connections still open; they are cut"),
        }
        self.shutdown.finish();
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
            (Ok(mut int), Ok(mut term)) => {
                tokio::select! {
                    _ = int.recv() => {},
                    _ = term.recv() => {},
                }
            }
            _ => std::future::pending::<()>().await,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_future_left_on_a_stopped_actor_thread_is_dropped_with_a_runtime_context() {
        // A future that never ends, holding the witness, as an actor's
        // database query holds its connection.
        let had = crate::testing::context_at_drop(
            || Arbiter::with_tokio_rt(actor_runtime),
            |witness| async move {
                let _held = witness;
                std::future::pending::<()>().await;
            },
        );
        assert!(had, "dropped without a runtime context");
    }
}
