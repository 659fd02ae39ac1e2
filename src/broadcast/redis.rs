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

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use actix::Recipient;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::future::{BoxFuture, FutureExt, Shared};
use redis::{
    aio::{ConnectionManager, ConnectionManagerConfig},
    IntoConnectionInfo, ProtocolVersion, PushInfo, PushKind, Value,
};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::{local::LocalFanout, Command, Fanout, Fanouts, Inbound, Signal, SignalStream};
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
            live_nodes: Mutex::new(None),
            capacity,
        });
        actix_rt::spawn(write(bus.clone(), out_rx));
        actix_rt::spawn(route(bus.clone(), push_rx));
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
            Ok(answer) => answer,
            Err(_) => Err(BusError("no answer to PING".into())),
        }
    }

    /// Whether Redis answered the last time it was asked.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Asks Redis; records whether it answered.
    pub async fn ping(&self) -> Result<(), BusError> {
        let mut conn = self.conn.clone();
        let answer = tokio::time::timeout(Duration::from_secs(1), redis::cmd("PING").query_async::<String>(&mut conn))
            .await
            .map_err(|_| BusError("no answer to PING".into()))
            .and_then(|r| r.map_err(BusError::from));
        self.healthy.store(answer.is_ok(), Ordering::Relaxed);
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
    async fn presence(&self, thread: Uuid) -> Result<Vec<(String, usize)>, BusError> {
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

/// What goes over a thread's channel: a tag, the sending node, the body.
fn envelope(tag: u8, node: &str, body: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(body.len() + node.len() + 2);
    buf.put_u8(tag);
    buf.put_u8(node.len().min(255) as u8);
    buf.put_slice(&node.as_bytes()[..node.len().min(255)]);
    buf.put_slice(body);
    buf.freeze()
}

fn open_envelope(mut bytes: &[u8]) -> Option<(u8, &str, &[u8])> {
    if bytes.len() < 2 {
        return None;
    }
    let tag = bytes.get_u8();
    let len = bytes.get_u8() as usize;
    let node = std::str::from_utf8(bytes.get(..len)?).ok()?;
    Some((tag, node, &bytes[len..]))
}

const TAG_FRAME: u8 = b'F';
const TAG_PRESENCE: u8 = b'P';
const TAG_COMMAND: u8 = b'C';

/// The writer: batches of waiting frames, one pipeline each.
async fn write(bus: Arc<Bus>, mut rx: mpsc::Receiver<Outgoing>) {
    let mut conn = bus.conn.clone();
    let mut retry_at: Option<tokio::time::Instant> = None;
    let mut batch = Vec::new();
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < 1024 {
            match rx.try_recv() {
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
        let skip = retry_at.is_some_and(|at| tokio::time::Instant::now() < at);
        // While the last failure's retry wait runs, nothing is encoded.
        let mut pipe = redis::pipe();
        if !skip {
            for item in &batch {
                add(&bus, &mut pipe, item);
            }
        }
        if !pipe.is_empty() {
            match tokio::time::timeout(WRITE_TIMEOUT, pipe.query_async::<()>(&mut conn)).await {
                Ok(Ok(())) => {
                    if retry_at.take().is_some() || !bus.is_healthy() {
                        tracing::info!("redis takes the frames again");
                    }
                    bus.healthy.store(true, Ordering::Relaxed);
                }
                failed => {
                    if bus.healthy.swap(false, Ordering::Relaxed) {
                        let why = match failed {
                            Ok(Err(e)) => format!("{e} ({} commands)", pipe.len()),
                            _ => "timed out".into(),
                        };
                        tracing::warn!(error.message = %why,
                            "redis does not take the frames; this node's subscribers get them, others are told");
                    }
                    retry_at = Some(tokio::time::Instant::now() + RETRY_AFTER);
                }
            }
        }
        for item in batch.drain(..) {
            match item {
                Outgoing::Frame { frame, local, .. } => local.publish(Signal::Frame(frame)),
                Outgoing::Flush(done) => {
                    let _ = done.send(());
                }
                Outgoing::Presence { .. } | Outgoing::Command { .. } | Outgoing::Settled { .. } => {}
            }
        }
    }
}

fn add(bus: &Bus, pipe: &mut redis::Pipeline, item: &Outgoing) {
    match item {
        Outgoing::Frame { thread, log, frame, .. } => {
            let wire = frame.to_wire();
            if let Some(message) = log {
                let key = bus.log_key(*message);
                pipe.cmd("XADD").arg(&key).arg("MAXLEN").arg("~").arg(LOG_MAX).arg("*").arg("f").arg(wire.as_ref());
                pipe.ignore();
                let ttl = match frame.kind {
                    crate::domain::codes::EventKind::MessageCompleted => Some(LOG_TTL_ENDED_SECS),
                    crate::domain::codes::EventKind::MessageStarted => Some(LOG_TTL_RUNNING_SECS),
                    _ => None,
                };
                if let Some(ttl) = ttl {
                    pipe.cmd("EXPIRE").arg(&key).arg(ttl).ignore();
                }
            }
            pipe.cmd("PUBLISH").arg(bus.channel(*thread)).arg(envelope(TAG_FRAME, &bus.node, &wire).as_ref()).ignore();
        }
        Outgoing::Presence { thread, count } => {
            let key = bus.presence_key(*thread);
            let value = format!("{count}:{}", chrono::Utc::now().timestamp_millis());
            match count {
                0 => pipe.cmd("HDEL").arg(&key).arg(&bus.node).ignore(),
                _ => pipe.cmd("HSET").arg(&key).arg(&bus.node).arg(value).ignore(),
            };
            pipe.cmd("EXPIRE").arg(&key).arg(PRESENCE_TTL_SECS).ignore();
            let body = (*count as u32).to_be_bytes();
            pipe.cmd("PUBLISH")
                .arg(bus.channel(*thread))
                .arg(envelope(TAG_PRESENCE, &bus.node, &body).as_ref())
                .ignore();
        }
        Outgoing::Command { thread, command } => {
            let body = command.encode();
            pipe.cmd("PUBLISH")
                .arg(bus.channel(*thread))
                .arg(envelope(TAG_COMMAND, &bus.node, &body).as_ref())
                .ignore();
        }
        Outgoing::Settled { message } => {
            pipe.cmd("EXPIRE").arg(bus.log_key(*message)).arg(LOG_TTL_SETTLED_SECS).ignore();
        }
        Outgoing::Flush(_) => {}
    }
}

/// The router: pushes from Redis to the actors of their thread.
async fn route(bus: Arc<Bus>, mut rx: mpsc::UnboundedReceiver<PushInfo>) {
    let mut lost = false;
    while let Some(push) = rx.recv().await {
        match push.kind {
            PushKind::Message => {
                let [Value::BulkString(channel), Value::BulkString(payload), ..] = &push.data[..] else { continue };
                let Some(thread) = bus.thread_of(channel) else { continue };
                let Some((tag, node, body)) = open_envelope(payload) else { continue };
                if node == bus.node {
                    continue;
                }
                let inbound = match tag {
                    TAG_FRAME => match Frame::from_wire(body) {
                        Some(frame) => Inbound::Frame(Arc::new(frame)),
                        None => continue,
                    },
                    TAG_PRESENCE if body.len() == 4 => Inbound::Presence {
                        node: node.to_owned(),
                        count: u32::from_be_bytes([body[0], body[1], body[2], body[3]]) as usize,
                    },
                    TAG_COMMAND => match Command::decode(body) {
                        Some(command) => Inbound::Command(command),
                        None => continue,
                    },
                    _ => continue,
                };
                bus.deliver(thread, &inbound);
            }
            PushKind::Disconnection if !lost => {
                lost = true;
                bus.healthy.store(false, Ordering::Relaxed);
                tracing::warn!("redis connection lost; other nodes' frames stop until it is back");
                for inbox in bus.all_inboxes() {
                    inbox.do_send(Inbound::Lost);
                }
            }
            PushKind::Subscribe if lost => {
                lost = false;
                bus.healthy.store(true, Ordering::Relaxed);
                tracing::info!("redis connection back");
            }
            _ => {}
        }
    }
}

/// Fan-out through the node's `Bus`.
pub struct RedisFanouts {
    pub bus: Arc<Bus>,
}

impl Fanouts for RedisFanouts {
    fn open(&self, thread_id: Uuid, inbox: Recipient<Inbound>) -> Box<dyn Fanout> {
        let (route, subscribed) = self.bus.attach(thread_id, inbox);
        Box::new(RedisFanout {
            bus: self.bus.clone(),
            thread: thread_id,
            local: Arc::new(LocalFanout::new(self.bus.capacity)),
            route,
            subscribed,
        })
    }
}

pub struct RedisFanout {
    bus: Arc<Bus>,
    thread: Uuid,
    local: Arc<LocalFanout>,
    route: u64,
    subscribed: Subscribed,
}

impl Drop for RedisFanout {
    fn drop(&mut self) {
        self.bus.detach(self.thread, self.route);
    }
}

impl Fanout for RedisFanout {
    fn id(&self) -> u64 {
        self.local.id()
    }

    fn publish(&self, signal: Signal) {
        match signal {
            Signal::Frame(frame) => {
                self.bus.send(Outgoing::Frame { thread: self.thread, log: None, frame, local: self.local.clone() })
            }
            other => self.local.publish(other),
        }
    }

    fn publish_logged(&self, frame: Arc<Frame>, log: uuid::Uuid) {
        self.bus.send(Outgoing::Frame { thread: self.thread, log: Some(log), frame, local: self.local.clone() });
    }

    fn relay(&self, signal: Signal) {
        self.local.publish(signal);
    }

    fn subscribe(&self) -> SignalStream {
        self.local.subscribe()
    }

    fn backlog(&self) -> usize {
        self.local.backlog()
    }

    fn share_presence(&self, count: usize) {
        self.bus.send(Outgoing::Presence { thread: self.thread, count });
    }

    fn command(&self, command: Command) {
        self.bus.send(Outgoing::Command { thread: self.thread, command });
    }

    fn settled(&self, message: Uuid) {
        self.bus.send(Outgoing::Settled { message });
    }

    fn ready(&self) -> BoxFuture<'static, Result<(), String>> {
        let (bus, subscribed) = (self.bus.clone(), self.subscribed.clone());
        async move {
            bus.reachable().await.map_err(|e| e.to_string())?;
            subscribed.await.map_err(|e| e.to_string())
        }
        .boxed()
    }

    fn linked(&self) -> bool {
        self.bus.is_healthy()
    }

    fn log(&self, message: Uuid) -> BoxFuture<'static, Result<Vec<Frame>, String>> {
        let bus = self.bus.clone();
        async move { bus.log(message).await.map_err(|e| e.to_string()) }.boxed()
    }

    fn presence(&self) -> BoxFuture<'static, Vec<(String, usize)>> {
        let (bus, thread) = (self.bus.clone(), self.thread);
        async move { bus.presence(thread).await.unwrap_or_default() }.boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_carry_their_node_and_body() {
        let e = envelope(TAG_FRAME, "node-a", b"body");
        assert_eq!(open_envelope(&e), Some((TAG_FRAME, "node-a", &b"body"[..])));
        assert_eq!(open_envelope(b"F"), None);
    }
}
