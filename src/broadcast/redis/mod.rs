//! Fan-out over Redis (cluster mode): every node's subscribers of a thread
//! get the frames its owner encoded once, wherever the owner runs.
//!
//! One `Bus` per node holds one Redis connection (RESP3, so pub/sub pushes
//! and commands share it; redis-rs re-subscribes after a reconnect). For a
//! thread with a live actor on this node it subscribes the thread's
//! channel, and routes what arrives (frames, presence counts, commands) to
//! that actor's inbox; a node never hears its own messages.
//!
//! The owner's frames go through one writer task per node, which sends
//! each batch of waiting frames as one pipeline: per frame an `XADD` to
//! its message's log (a stream, trimmed to `LOG_MAX` entries, expiring an
//! hour after the message ends, 30 s once its final state is committed)
//! and a `PUBLISH` to the thread's channel,
//! O(1) commands per chunk whatever the number of subscribers or nodes.
//! Only once Redis has taken them are the frames given to this node's own
//! subscribers: every byte a tab sees is in the log first, and survives
//! the owner. If Redis cannot take them (down, slow), they are delivered
//! here anyway and the bus is marked unhealthy: the answer goes on for the
//! owner's own subscribers, and other nodes' subscribers are told
//! (`Inbound::Lost`) and resume when Redis is back.
//!
//! - `mod.rs`: the `Bus` (the connection, the routes of threads to their
//!   actors, health, the live nodes, reading logs and counts);
//! - `writer.rs`: the writer task (one pipeline per batch);
//! - `router.rs`: the router task (pushes to the actors of their thread);
//! - `envelope.rs`: what goes over a thread's channel;
//! - `fanout.rs`: `RedisFanouts`, the seam's implementation over the bus.

mod envelope;
mod fanout;
mod router;
mod writer;

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use actix::Recipient;
use futures_util::future::{BoxFuture, FutureExt, Shared};
use redis::{
    aio::{ConnectionManager, ConnectionManagerConfig},
    IntoConnectionInfo, ProtocolVersion, PushInfo,
};
use tokio::sync::mpsc;
use uuid::Uuid;

pub use self::fanout::RedisFanouts;
use super::{local::LocalFanout, Command, Fanout as _, Inbound, Signal};
use crate::domain::frame::Frame;

/// Entries kept per message log (approximately: `MAXLEN ~`).
const LOG_MAX: usize = 100_000;
/// A running message's log lives this long at most; an ended one an hour,
/// until its final state is committed: then only a node loading the thread
/// at that moment may still read it, and it goes after `LOG_TTL_SETTLED_SECS`.
const LOG_TTL_RUNNING_SECS: u64 = 24 * 3600;
const LOG_TTL_ENDED_SECS: u64 = 3600;
const LOG_TTL_SETTLED_SECS: u64 = 30;
/// Subscriber counts of a thread live this long without a change.
const PRESENCE_TTL_SECS: u64 = 3600;
/// Longest wait for one pipeline before its frames are delivered anyway.
const WRITE_TIMEOUT: Duration = Duration::from_millis(500);
/// After a failed write, Redis is tried again after this long; frames
/// published meanwhile go to this node's subscribers only.
const RETRY_AFTER: Duration = Duration::from_millis(500);
/// Frames waiting for the writer, at most.
const QUEUE: usize = 65_536;

/// Why the bus could not do something.
#[derive(Debug, Clone, thiserror::Error)]
#[error("redis: {0}")]
pub struct BusError(pub String);

impl From<redis::RedisError> for BusError {
    fn from(e: redis::RedisError) -> Self {
        BusError(e.to_string())
    }
}

enum Outgoing {
    Frame {
        thread: Uuid,
        log: Option<Uuid>,
        frame: Arc<Frame>,
        local: Arc<LocalFanout>,
    },
    Presence {
        thread: Uuid,
        count: usize,
    },
    Command {
        thread: Uuid,
        command: Command,
    },
    /// The message's final state is committed: its log is kept briefly.
    Settled {
        message: Uuid,
    },
    /// Answered once everything queued before it was written.
    Flush(tokio::sync::oneshot::Sender<()>),
}

type Subscribed = Shared<BoxFuture<'static, Result<(), BusError>>>;

struct Route {
    id: u64,
    inbox: Recipient<Inbound>,
}

struct Routes {
    by_thread: HashMap<Uuid, (Vec<Route>, Subscribed)>,
}

/// This node's connection to the cluster's Redis.
pub struct Bus {
    node: String,
    prefix: String,
    conn: ConnectionManager,
    out: mpsc::Sender<Outgoing>,
    routes: Mutex<Routes>,
    next_route: AtomicU64,
    healthy: AtomicBool,
    /// The connection was lost and the channels it had subscribed are not
    /// subscribed again yet (redis-rs does it after the reconnect; the
    /// router hears it). A PING may succeed before that: until then other
    /// nodes' frames would be missed, so the link is not healthy.
    resubscribing: AtomicBool,
    /// The nodes alive now (their heartbeat is recent), as the sweeper last
    /// read them; `None` until it has. A dead node's subscriber counts
    /// stay in Redis until they expire, and are not counted.
    live_nodes: Mutex<Option<std::collections::HashSet<String>>>,
    capacity: usize,
}

impl Bus {
    /// Connects (lazily: the service starts while Redis is down, and says
    /// so on `/readyz`) and starts the writer and the push router.
    pub fn start(url: &str, node: String, prefix: String, capacity: usize) -> anyhow::Result<Arc<Bus>> {
        let info = url.into_connection_info()?;
        let settings = info.redis_settings().clone().set_protocol(ProtocolVersion::RESP3);
        let client = redis::Client::open(info.set_redis_settings(settings))?;
        let (push_tx, push_rx) = mpsc::unbounded_channel::<PushInfo>();
        let config = ConnectionManagerConfig::new()
            .set_push_sender(push_tx)
            .set_automatic_resubscription()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client, config)?;
        let (out, out_rx) = mpsc::channel(QUEUE);
        let bus = Arc::new(Bus {
            node,
            prefix,
            conn,
            out,
            routes: Mutex::new(Routes { by_thread: HashMap::new() }),
            next_route: AtomicU64::new(1),
            healthy: AtomicBool::new(false),
            resubscribing: AtomicBool::new(false),
            live_nodes: Mutex::new(None),
            capacity,
        });
        actix_rt::spawn(writer::write(bus.clone(), out_rx));
        actix_rt::spawn(router::route(bus.clone(), push_rx));
        let probe = bus.clone();
        actix_rt::spawn(async move {
            let _ = probe.ping().await;
        });
        Ok(bus)
    }

    /// The nodes alive now; the subscriber counts of others are not
    /// counted.
    pub fn set_live_nodes(&self, nodes: std::collections::HashSet<String>) {
        *self.live_nodes.lock().unwrap_or_else(|p| p.into_inner()) = Some(nodes);
    }

    fn is_live(&self, node: &str) -> bool {
        self.live_nodes.lock().unwrap_or_else(|p| p.into_inner()).as_ref().is_none_or(|live| live.contains(node))
    }

    /// Resolves once Redis answers (at once if it did last time); `Err`
    /// within a short wait if it does not: a node cut off from Redis
    /// refuses what needs the other nodes at once, rather than later.
    async fn reachable(&self) -> Result<(), BusError> {
        if self.is_healthy() {
            return Ok(());
        }
        match tokio::time::timeout(Duration::from_millis(300), self.ping()).await {
            Ok(Ok(())) if self.is_healthy() => Ok(()),
            Ok(Ok(())) => Err(BusError("redis answers, but this node's channels are not subscribed again yet".into())),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(BusError("no answer to PING".into())),
        }
    }

    /// Whether Redis answered the last time it was asked, and every
    /// channel this node needs is subscribed (after a reconnect: again).
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed) && !self.resubscribing.load(Ordering::Relaxed)
    }

    /// Asks Redis; records whether it answered.
    pub async fn ping(&self) -> Result<(), BusError> {
        let mut conn = self.conn.clone();
        let answer = tokio::time::timeout(Duration::from_secs(1), redis::cmd("PING").query_async::<String>(&mut conn))
            .await
            .map_err(|_| BusError("no answer to PING".into()))
            .and_then(|r| r.map_err(BusError::from));
        self.healthy.store(answer.is_ok(), Ordering::Relaxed);
        if answer.is_ok() && self.routes.lock().unwrap_or_else(|p| p.into_inner()).by_thread.is_empty() {
            // No channel to subscribe again: nothing to wait for.
            self.resubscribing.store(false, Ordering::Relaxed);
        }
        answer.map(|_| ())
    }

    fn channel(&self, thread: Uuid) -> String {
        format!("{}:t:{thread}", self.prefix)
    }

    fn thread_of(&self, channel: &[u8]) -> Option<Uuid> {
        let channel = std::str::from_utf8(channel).ok()?;
        let id = channel.strip_prefix(&self.prefix)?.strip_prefix(":t:")?;
        Uuid::try_parse(id).ok()
    }

    fn log_key(&self, message: Uuid) -> String {
        format!("{}:log:{message}", self.prefix)
    }

    fn presence_key(&self, thread: Uuid) -> String {
        format!("{}:presence:{thread}", self.prefix)
    }

    /// Routes `thread`'s channel to `inbox`, subscribing on first use.
    fn attach(self: &Arc<Bus>, thread: Uuid, inbox: Recipient<Inbound>) -> (u64, Subscribed) {
        let id = self.next_route.fetch_add(1, Ordering::Relaxed);
        let mut routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        let entry = routes.by_thread.entry(thread).or_insert_with(|| {
            let bus = self.clone();
            let subscribed: BoxFuture<'static, Result<(), BusError>> = async move {
                let mut conn = bus.conn.clone();
                conn.subscribe(bus.channel(thread)).await?;
                Ok(())
            }
            .boxed();
            (Vec::new(), subscribed.shared())
        });
        entry.0.push(Route { id, inbox });
        let subscribed = entry.1.clone();
        // Drive the subscription even if nobody awaits it.
        actix_rt::spawn(subscribed.clone().map(|_| ()));
        (id, subscribed)
    }

    fn detach(self: &Arc<Bus>, thread: Uuid, id: u64) {
        let mut routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        let Some((list, _)) = routes.by_thread.get_mut(&thread) else { return };
        list.retain(|r| r.id != id);
        if list.is_empty() {
            routes.by_thread.remove(&thread);
            let bus = self.clone();
            actix_rt::spawn(async move {
                let mut conn = bus.conn.clone();
                let _ = conn.unsubscribe(bus.channel(thread)).await;
            });
        }
    }

    /// Hands `inbound` to this node's actors of `thread` (`do_send` only
    /// queues, so the routes stay locked briefly, and no list of
    /// recipients is built per frame).
    fn deliver(&self, thread: Uuid, inbound: &Inbound) {
        let routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((list, _)) = routes.by_thread.get(&thread) {
            for route in list {
                route.inbox.do_send(inbound.clone());
            }
        }
    }

    fn all_inboxes(&self) -> Vec<Recipient<Inbound>> {
        let routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        routes.by_thread.values().flat_map(|(list, _)| list.iter().map(|r| r.inbox.clone())).collect()
    }

    fn send(&self, item: Outgoing) {
        if let Err(mpsc::error::TrySendError::Full(item) | mpsc::error::TrySendError::Closed(item)) =
            self.out.try_send(item)
        {
            // The writer is behind by a whole queue: give up on Redis for
            // this frame; this node's subscribers still get it.
            self.healthy.store(false, Ordering::Relaxed);
            if let Outgoing::Frame { frame, local, .. } = item {
                local.publish(Signal::Frame(frame));
            }
        }
    }

    /// Resolves once every frame published so far went out (a graceful
    /// shutdown: other nodes' subscribers get this node's last frames).
    pub async fn flush(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.out.send(Outgoing::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Every frame logged for message `message`, in order.
    async fn log(&self, message: Uuid) -> Result<Vec<Frame>, BusError> {
        let mut conn = self.conn.clone();
        let reply: redis::streams::StreamRangeReply =
            redis::cmd("XRANGE").arg(self.log_key(message)).arg("-").arg("+").query_async(&mut conn).await?;
        Ok(reply
            .ids
            .iter()
            .filter_map(|entry| entry.get::<Vec<u8>>("f"))
            .filter_map(|w| Frame::from_wire(&w))
            .collect())
    }

    /// The subscriber counts of the other live nodes for `thread`.
    pub(crate) async fn presence(&self, thread: Uuid) -> Result<Vec<(String, usize)>, BusError> {
        let mut conn = self.conn.clone();
        let all: HashMap<String, String> =
            redis::cmd("HGETALL").arg(self.presence_key(thread)).query_async(&mut conn).await?;
        Ok(all
            .into_iter()
            .filter(|(node, _)| *node != self.node && self.is_live(node))
            .filter_map(|(node, v)| {
                let count = v.split_once(':').map_or(v.as_str(), |(count, _)| count);
                Some((node, count.parse().ok()?))
            })
            .collect())
    }
}
