//! convo-bench: measures the service through its public API only.
//!
//! `cargo run --release -p convo-bench -- <scenario>` builds the service in
//! release mode, starts it against an in-process fake Anthropic upstream
//! that stamps every chunk with its send time, opens subscribers, posts
//! messages, checks every reconstructed message byte for byte against what
//! the upstream sent, and reports added latency per chunk, time to first
//! delta, deliveries per second, correctness failures, server memory per
//! subscriber and persistence figures.
//!
//! It raises its open-file limit (the service inherits it) so that the
//! `connections` scenario can hold 10,000 sockets on each side.

mod client;
mod cluster;
mod floor;
mod h2flood;
mod postgres;
mod report;
mod server;
mod steps;
mod upstream;
mod upstream_tls;

use std::{collections::HashMap, time::Duration};

use clap::{Parser, ValueEnum};
use futures_util::future::join_all;
use hdrhistogram::Histogram;
use tokio::sync::mpsc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// 20 threads x 1 SSE subscriber, 100 chunks every 10 ms.
    Latency,
    /// 50 threads x 20 subscribers (10 SSE + 10 WS), 100 chunks every 20 ms.
    Fanout,
    /// 100 threads x 100 SSE subscribers (10,000), 50 chunks every 50 ms.
    Connections,
    /// 200 concurrent generations of 200 chunks (1 subscriber each), every 10 ms.
    Persistence,
    /// `connections`' load with no service: raw writes to loopback sockets,
    /// the floor that the kernel and the readers set on this machine.
    Floor,
    /// The writer process of `floor` (started by it).
    #[value(hide = true)]
    FloorWriter,
    /// `fanout`'s load over three nodes sharing one Postgres and one Redis.
    Cluster,
    /// HTTPS: clients that open HTTP/2 streams and never read (see
    /// `--h2-connections`, `--h2-streams`); the service's memory.
    H2Flood,
    /// 50 threads x 1 SSE subscriber, answers of 5 steps (10 chunks every
    /// 10 ms each): a posted tool result to the next step's first delta.
    ToolStep,
    /// `fanout`'s 1,000 subscribers (50 x 20, half SSE half WS) watching
    /// answers of 5 steps (20 chunks every 20 ms each).
    ToolTurn,
}

#[derive(Debug, Parser)]
#[command(about = "Load generator and fake upstream for convo")]
struct Cli {
    scenario: Scenario,
    /// Override: threads.
    #[arg(long)]
    threads: Option<usize>,
    /// Override: subscribers per thread.
    #[arg(long)]
    subscribers: Option<usize>,
    /// Override: how many of each thread's subscribers use WebSocket.
    #[arg(long)]
    ws: Option<usize>,
    /// The WebSocket subscribers (`--ws`) ride project sockets
    /// (`GET /v1/projects/{pid}/ws`), K threads on each: one connection
    /// subscribes K threads, where each of them had a `/ws` of its own.
    /// At most 256 (the service's limit per socket).
    #[arg(long, value_name = "K")]
    project_socket: Option<usize>,
    /// Override: chunks per answer.
    #[arg(long)]
    chunks: Option<usize>,
    /// Override: upstream interval between chunks, ms.
    #[arg(long)]
    interval_ms: Option<u64>,
    /// Override: model calls per answer (more than 1: each but the last
    /// calls a tool, whose result one subscriber per thread posts).
    #[arg(long)]
    steps: Option<usize>,
    /// The service binary (built with `cargo build --release` first if absent).
    #[arg(long, default_value = "target/release/convo")]
    server_bin: String,
    /// Post every thread's message at the same instant, so that every
    /// upstream stream ticks in phase and each tick is one burst of
    /// threads x subscribers deliveries (the worst case). By default the
    /// posts are spread evenly over one chunk interval, as independent
    /// conversations are.
    #[arg(long)]
    in_phase: bool,
    /// Steps (`tool-step`, `tool-turn`): the tool is run by the service,
    /// at an endpoint of the load generator's (`run: {url}`), instead of
    /// answered by the application; the figure is then the endpoint's
    /// answer to the next step's first delta.
    #[arg(long)]
    service_tool: bool,
    /// Extra flags for the service, e.g. `--server-arg=--flush-interval-ms=100`.
    #[arg(long = "server-arg")]
    server_args: Vec<String>,
    /// `cluster`: a Postgres database next to which a fresh one is made.
    #[arg(long, env = "TEST_DATABASE_URL", default_value = "postgres://postgres@127.0.0.1:5432/test")]
    database_url: String,
    /// `cluster`: the Redis the nodes share.
    #[arg(long, env = "TEST_REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    /// Runs the service on a fresh Postgres database next to
    /// `--database-url` instead of its SQLite file.
    #[arg(long)]
    on_postgres: bool,
    /// Before the measured posts, answer one question on as many other
    /// threads at once, so that the service holds that many idle upstream
    /// connections (the time to first delta is then for warm ones).
    #[arg(long)]
    warm_upstream: bool,
    /// Like `--warm-upstream`, but the upstream closes each warm-up
    /// connection after its answer: the service has run the whole path
    /// (code, allocator, database) and holds no upstream connection, as
    /// after an idle spell longer than its pool keeps connections.
    #[arg(long, conflicts_with = "warm_upstream")]
    warm_service: bool,
    /// The fake upstream over HTTPS (ALPN: HTTP/2 or HTTP/1.1), trusted by
    /// the service through `--provider-ca-file`, as a real provider is
    /// reached. With `--server-arg=--provider-http=http2` the service
    /// speaks HTTP/2 only.
    #[arg(long, conflicts_with = "warm_service")]
    upstream_tls: bool,
    /// `cluster`: how many nodes.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// `cluster` with `--nodes 1`: the node runs without Redis (the
    /// baseline for what writing every frame to Redis first costs).
    #[arg(long)]
    without_redis: bool,
    /// `h2-flood`: the flooding TLS connections.
    #[arg(long, default_value_t = 1)]
    h2_connections: usize,
    /// `h2-flood`: requests (streams) each connection writes.
    #[arg(long, default_value_t = 200_000)]
    h2_streams: usize,
    /// `h2-flood`: the path each request asks for.
    #[arg(long, default_value = "/healthz")]
    h2_path: String,
    /// `h2-flood`: the clients' SETTINGS_INITIAL_WINDOW_SIZE; 0: the
    /// service may send no response body, so every stream it takes stays
    /// open.
    #[arg(long, default_value_t = 65_535)]
    h2_window: u32,
}

/// The shape of a run.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub threads: usize,
    pub subscribers: usize,
    pub ws_share: usize,
    pub chunks: usize,
    pub interval: Duration,
    /// All posts at once (see `--in-phase`).
    pub in_phase: bool,
    /// Model calls per answer (`chunks` each).
    pub steps: usize,
    /// Threads per project socket carrying the WebSocket subscribers; 0:
    /// each has a thread's `/ws`.
    pub project_socket: usize,
}

impl Cli {
    fn plan(&self) -> Plan {
        let (threads, subscribers, ws_share, chunks, interval, steps) = match self.scenario {
            Scenario::Latency => (20, 1, 0, 100, 10, 1),
            Scenario::Fanout | Scenario::Cluster => (50, 20, 10, 100, 20, 1),
            Scenario::Connections | Scenario::Floor | Scenario::FloorWriter => (100, 100, 0, 50, 50, 1),
            Scenario::Persistence => (200, 1, 0, 200, 10, 1),
            Scenario::H2Flood => (0, 0, 0, 0, 0, 1),
            Scenario::ToolStep => (50, 1, 0, 10, 10, 5),
            Scenario::ToolTurn => (50, 20, 10, 20, 20, 5),
        };
        let subscribers = self.subscribers.unwrap_or(subscribers);
        Plan {
            threads: self.threads.unwrap_or(threads),
            subscribers,
            ws_share: self.ws.unwrap_or(ws_share).min(subscribers),
            chunks: self.chunks.unwrap_or(chunks),
            interval: Duration::from_millis(self.interval_ms.unwrap_or(interval)),
            in_phase: self.in_phase,
            steps: self.steps.unwrap_or(steps).max(1),
            project_socket: self.project_socket.unwrap_or(0),
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let plan = cli.plan();
    let limit = rlimit::increase_nofile_limit(65_536).unwrap_or(0);
    eprintln!("open-file limit raised to {limit}");
    if plan.project_socket > 0 {
        let scenarios = [Scenario::Floor, Scenario::FloorWriter, Scenario::Cluster, Scenario::H2Flood];
        anyhow::ensure!(!scenarios.contains(&cli.scenario), "--project-socket is not for this scenario");
        anyhow::ensure!(plan.ws_share > 0, "--project-socket carries the WebSocket subscribers: give --ws");
        anyhow::ensure!(plan.project_socket <= 256, "a project socket follows at most 256 threads");
    }
    if cli.scenario == Scenario::FloorWriter {
        return floor::writer_main(plan);
    }
    if cli.scenario == Scenario::Floor {
        return floor::run(plan).await;
    }
    if cli.scenario == Scenario::H2Flood {
        let flood = h2flood::Shape {
            connections: cli.h2_connections,
            streams: cli.h2_streams,
            path: &cli.h2_path,
            window: cli.h2_window,
        };
        return h2flood::run(&cli.server_bin, flood, &cli.server_args).await;
    }
    if cli.scenario == Scenario::Cluster {
        let redis = (!cli.without_redis).then_some(cli.redis_url.as_str());
        let shape = cluster::Shape { nodes: cli.nodes, database: &cli.database_url, redis };
        return cluster::run(plan, &cli.server_bin, shape, &cli.server_args).await;
    }
    let tls = if cli.upstream_tls { Some(upstream_tls::start(plan.chunks, plan.interval).await?) } else { None };
    let up = match &tls {
        Some(tls) => tls.up.clone(),
        None => upstream::Upstream::start(plan.chunks, plan.interval, plan.steps).await?,
    };
    let scratch = cli.on_postgres.then(|| postgres::Scratch::create(&cli.database_url)).transpose()?;
    let mut server_args = cli.server_args.clone();
    if cli.service_tool {
        // (The tool's endpoint is the load generator's, on loopback.)
        server_args.push("--allow-private-urls".to_owned());
    }
    if let Some(tls) = &tls {
        server_args.extend(["--provider-ca-file".to_owned(), tls.ca_file.display().to_string()]);
    }
    if let Some(db) = &scratch {
        server_args.extend(["--database-url".to_owned(), db.url.clone()]);
    }
    let srv = server::Server::spawn(&cli.server_bin, &up.url, &server_args).await?;
    let http = reqwest::Client::new();

    // Threads.
    let pid = srv.project(&http).await?;
    let application = steps::Application::new(&http, &srv);
    let thread = match cli.service_tool {
        true => {
            let url = steps::tool_endpoint(application.posted()).await?;
            http.post(srv.url(&format!("/v1/projects/{pid}/tool-secret"))).send().await?.error_for_status()?;
            steps::service_thread(&url)
        }
        false => steps::THREAD.clone(),
    };
    let threads = match plan.steps {
        1 => srv.threads(&http, &pid, plan.threads).await?,
        _ => srv.threads_with(&http, &pid, plan.threads, &thread).await?,
    };
    anyhow::ensure!(plan.steps == 1 || plan.ws_share < plan.subscribers, "steps need one SSE subscriber per thread");
    let warm_up = if cli.warm_upstream || cli.warm_service { threads.len() } else { 0 };
    let warm_threads = srv.threads(&http, &pid, warm_up).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = srv.rss_kib();

    // Subscribers, all ready before anything is posted.
    let total = plan.threads * plan.subscribers;
    let (ready_tx, mut ready_rx) = mpsc::channel(total.max(1));
    // Each task: the threads it follows (their indices) and what it saw of
    // each; one thread, but for a project socket.
    let mut subs: Vec<(Vec<usize>, tokio::task::JoinHandle<Vec<client::Seen>>)> = Vec::new();
    for (i, thread) in threads.iter().enumerate() {
        for s in 0..plan.subscribers {
            if s < plan.ws_share && plan.project_socket > 0 {
                continue; // On a project socket (below).
            }
            let path = format!("{thread}/events");
            let ready = ready_tx.clone();
            // The last subscriber of a thread (SSE) answers its calls.
            let answers = plan.steps > 1 && s + 1 == plan.subscribers && !cli.service_tool;
            let answerer = answers.then(|| application.answerer(thread));
            let task = if s < plan.ws_share {
                let ws = client::ws(srv.addr, format!("{thread}/ws"), ready, 1);
                tokio::spawn(async move { vec![ws.await] })
            } else {
                let sse = client::sse_answering(srv.addr, path, ready, 1, answerer);
                tokio::spawn(async move { vec![sse.await] })
            };
            subs.push((vec![i], task));
            if subs.len().is_multiple_of(500) {
                tokio::task::yield_now().await;
            }
        }
    }
    if plan.project_socket > 0 {
        // Each WebSocket subscriber of a thread on a socket of its own
        // group: a socket follows a thread once.
        let indices: Vec<usize> = (0..threads.len()).collect();
        for _ in 0..plan.ws_share {
            for group in indices.chunks(plan.project_socket) {
                let ids = group.iter().map(|&i| threads[i].rsplit('/').next().unwrap_or_default().to_owned());
                let socket =
                    client::project_ws(srv.addr, format!("/v1/projects/{pid}/ws"), ids.collect(), ready_tx.clone(), 1);
                subs.push((group.to_vec(), tokio::spawn(socket)));
            }
        }
    }
    let connections = subs.len();
    drop(ready_tx);
    for n in 0..total {
        if tokio::time::timeout(Duration::from_secs(60), ready_rx.recv()).await.ok().flatten().is_none() {
            anyhow::bail!("only {n} of {total} subscribers became ready");
        }
    }
    // The service's allocator returns what connection set-up freed within
    // a second: measure what the idle subscribers keep.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let rss_after = srv.rss_kib();
    if !warm_threads.is_empty() {
        let tag = if cli.warm_service { upstream::CLOSE_AFTER } else { "warm" };
        warm_upstream(&http, &srv, &warm_threads, tag).await?;
    }
    // (After the warm-up: the persistence figures are the measured run's.)
    let stats_before = srv.stats(&http).await?;

    // Warm keep-alive connections, one per POST to come, as a browser tab
    // holds one: the time to first delta measures the service, not the
    // load generator's TCP handshakes.
    join_all((0..threads.len()).map(|_| http.get(srv.url("/healthz")).send())).await;

    // One message per thread: spread over one chunk interval, or all at
    // once with --in-phase.
    let cpu_before = srv.cpu_us();
    let faults_before = srv.minor_faults();
    let connects_before = up.connections_accepted();
    let started = std::time::Instant::now();
    let spread = if plan.in_phase { Duration::ZERO } else { plan.interval / plan.threads.max(1) as u32 };
    let posts = threads.iter().enumerate().map(|(i, thread)| {
        let http = http.clone();
        let url = srv.url(&format!("{thread}/messages"));
        let at = tokio::time::Instant::from_std(started) + spread * i as u32;
        async move {
            tokio::time::sleep_until(at).await;
            let t0 = upstream::now_ns();
            let r = http.post(url).json(&serde_json::json!({"content": thread})).send().await;
            let status = r.as_ref().map(|r| r.status().as_u16()).unwrap_or(0);
            (t0, status == 202, status)
        }
    });
    let posted: Vec<(u128, bool, u16)> = join_all(posts).await;
    let refused: Vec<u16> = posted.iter().filter(|(_, ok, _)| !ok).map(|(_, _, status)| *status).collect();
    if !refused.is_empty() {
        // Their subscribers would wait for answers that never come.
        anyhow::bail!("{} of {} POSTs were refused, with statuses {refused:?}", refused.len(), posted.len());
    }

    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut warm_latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 2)?;
    let mut ttfd = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut ttfd_raw = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut failures: Vec<String> = Vec::new();
    let mut deliveries = 0u64;
    let mut first_seen: HashMap<usize, u128> = HashMap::new();
    let mut texts: Vec<(usize, String)> = Vec::new();
    let mut step_arrivals: Vec<(usize, Vec<(usize, u128)>)> = Vec::new();
    // Wait for every subscriber before touching any result: merging
    // histograms while others still read would put the load generator's
    // own work into their latency (it did, on each answer's last chunk).
    let (indices, tasks): (Vec<Vec<usize>>, Vec<_>) = subs.into_iter().unzip();
    let turn = plan.interval * (plan.chunks * plan.steps) as u32;
    let results = tokio::time::timeout(turn + Duration::from_secs(60), join_all(tasks))
        .await
        .map_err(|_| anyhow::anyhow!("subscribers did not finish"))?;
    let elapsed = started.elapsed();
    let cpu_us = srv.cpu_us().saturating_sub(cpu_before);
    let minor_faults = srv.minor_faults().saturating_sub(faults_before);
    let results = indices.into_iter().zip(results).map(|(group, seen)| seen.map(|seen| group.into_iter().zip(seen)));
    for (i, seen) in results.collect::<Result<Vec<_>, _>>()?.into_iter().flatten() {
        for &(chunk, us) in &seen.latency_us {
            latency.record(us as u64)?;
            if chunk as usize >= client::WARM {
                warm_latency.record(us as u64)?;
            }
        }
        deliveries += seen.deltas;
        failures.extend(seen.failures);
        if let Some(&t) = seen.first_delta_ns.values().next() {
            let e = first_seen.entry(i).or_insert(t);
            *e = (*e).min(t);
        }
        texts.extend(seen.texts.into_values().map(|t| (i, t)));
        step_arrivals.push((i, seen.step_first_ns));
    }

    // Byte-exact against what the upstream sent, and the upstream's own
    // first-chunk delay taken out of the time to first delta.
    let sent = up.sent.lock().map(|m| m.clone()).unwrap_or_default();
    for (i, text) in &texts {
        match sent.get(&threads[*i]) {
            Some(s) if &s.text == text => {}
            Some(_) => failures.push(format!("thread {i}: text differs from what the upstream sent")),
            None => failures.push(format!("thread {i}: the upstream has no answer for it")),
        }
    }
    if texts.len() != total {
        failures.push(format!("{} of {total} subscribers rebuilt a message", texts.len()));
    }
    for (i, (t0, _, _)) in posted.iter().enumerate() {
        if let (Some(first), Some(s)) = (first_seen.get(&i), sent.get(&threads[i])) {
            let own = s.first_chunk_ns.saturating_sub(s.received_ns);
            let added = first.saturating_sub(*t0).saturating_sub(own);
            ttfd.record(((added / 1000) as u64).max(1))?;
        }
        if let Some(first) = first_seen.get(&i) {
            ttfd_raw.record(((first.saturating_sub(*t0) / 1000) as u64).max(1))?;
        }
    }
    let step_figures = (plan.steps > 1).then(|| application.figures(&threads, &step_arrivals, &sent, &mut failures));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stats_after = srv.stats(&http).await?;
    let report = report::Report {
        scenario: format!("{:?}", cli.scenario).to_lowercase(),
        plan,
        latency,
        warm_latency,
        ttfd,
        ttfd_raw,
        upstream_connections: match (cli.warm_upstream, cli.warm_service) {
            (true, _) => "warm",
            (_, true) => "cold, service warm",
            _ => "cold",
        },
        upstream_connects: up.connections_accepted() - connects_before,
        database: if scratch.is_some() { "postgres" } else { "sqlite" },
        deliveries,
        cpu_us,
        minor_faults,
        elapsed,
        failures,
        rss_before,
        rss_after,
        subscribers: total,
        connections,
        stats_before,
        stats_after,
        steps: step_figures.transpose()?,
    };
    report.print();
    srv.stop();
    drop(scratch);
    Ok(())
}

/// Asks one question on each of `threads` at once and waits until every
/// answer has ended: the service then holds that many idle upstream
/// connections in its pool (none when `tag` is `upstream::CLOSE_AFTER`).
async fn warm_upstream(
    http: &reqwest::Client,
    srv: &server::Server,
    threads: &[String],
    tag: &str,
) -> anyhow::Result<()> {
    let posts = threads.iter().map(|t| {
        http.post(srv.url(&format!("{t}/messages"))).json(&serde_json::json!({"content": format!("{tag} {t}")})).send()
    });
    for r in join_all(posts).await {
        anyhow::ensure!(r?.status() == 202, "a warm-up question was refused");
    }
    for t in threads {
        let answered = tokio::time::timeout(Duration::from_secs(60), answered(http, srv, t)).await;
        anyhow::ensure!(answered.is_ok(), "a warm-up answer did not end within 60 s");
        anyhow::ensure!(answered?? == "complete", "a warm-up answer did not complete: the run would not be warm");
    }
    Ok(())
}

/// The status of `thread`'s last answer once it no longer streams.
async fn answered(http: &reqwest::Client, srv: &server::Server, thread: &str) -> anyhow::Result<String> {
    loop {
        let page: serde_json::Value = http.get(srv.url(&format!("{thread}/messages"))).send().await?.json().await?;
        let last = page["data"].as_array().and_then(|m| m.last()).cloned().unwrap_or_default();
        if last["role"] == "assistant" && last["status"] != "streaming" {
            return Ok(last["status"].as_str().unwrap_or_default().to_owned());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
