//! Registry: finds or starts the actor of a thread and forgets it when it
//! stops. It is the only place that knows which thread actors are live.
//!
//! Thread actors run on a fixed set of arbiters (one per core by default),
//! chosen by a hash of the thread id, so one busy thread never shares a
//! queue with every other. A thread actor tells the registry when it
//! starts or ends a generation (for thread `status` and stats) and when it
//! stops; each actor has an incarnation number so a late `Stopped` of an
//! old actor cannot remove its successor.
//!
//! Deleting a thread goes through here too (`BeginDelete`, `EndDelete`):
//! from the moment a deletion begins until its write has an outcome, no
//! actor is started for the thread, so a request racing the deletion finds
//! nothing (404) instead of an actor that outlives its rows, answers every
//! later request with a failed insert, and calls the upstream each time.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use actix::prelude::*;
use futures_util::future::join_all;
use uuid::Uuid;

use super::{
    thread::{
        GenerationChanged, Notices, RefreshPresence, StatusReport, Stop, StopReason, ThreadActor, ThreadStatusQuery,
        ThreadStopped,
    },
    Deps,
};

/// The live actor of `thread_id`, started if needed; `None` while the
/// thread is being deleted.
#[derive(Message)]
#[rtype(result = "Option<Addr<ThreadActor>>")]
pub struct Lookup {
    pub thread_id: Uuid,
}

/// The live actor of `thread_id`, if there is one (never starts one).
#[derive(Message)]
#[rtype(result = "Option<Addr<ThreadActor>>")]
pub struct Peek {
    pub thread_id: Uuid,
}

/// Which of these threads are generating.
#[derive(Message)]
#[rtype(result = "Vec<bool>")]
pub struct Generating {
    pub thread_ids: Vec<Uuid>,
}

/// One status row per live thread actor.
#[derive(Message)]
#[rtype(result = "Vec<StatusReport>")]
pub struct ListThreads;

/// Stops every thread actor (graceful shutdown); resolves when all have
/// published their last frames and queued their last writes.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopAll {
    pub reason: StopReason,
}

/// Resolves once no generation runs on this node: a shutdown lets the
/// running answers end before it stops what is left.
#[derive(Message)]
#[rtype(result = "()")]
pub struct WhenIdle;

/// Cluster mode: nodes left the live set (their subscribers no longer
/// count) or came back; every thread actor here hears it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct NodesChanged {
    pub gone: Vec<String>,
    pub back: Vec<String>,
}

/// A deletion of `thread_id` begins: its live actor stops (subscribers get
/// `thread_deleted`, a running generation ends `cancelled` and its last
/// writes are queued), and none starts until `EndDelete`. Resolves once the
/// actor has stopped.
#[derive(Message)]
#[rtype(result = "()")]
pub struct BeginDelete {
    pub thread_id: Uuid,
}

/// The deletion's write has an outcome (committed, or refused): actors may
/// start for the id again (and find the thread, or not).
#[derive(Message)]
#[rtype(result = "()")]
pub struct EndDelete {
    pub thread_id: Uuid,
}

struct Entry {
    addr: Addr<ThreadActor>,
    incarnation: u64,
    generating: bool,
}

pub struct Registry {
    deps: Arc<Deps>,
    arbiters: Vec<ArbiterHandle>,
    threads: HashMap<Uuid, Entry>,
    next_incarnation: u64,
    closing: bool,
    /// Threads whose deletion is under way.
    deleting: HashSet<Uuid>,
    /// Told when the last running generation ends (`WhenIdle`).
    idle_waiters: Vec<tokio::sync::oneshot::Sender<()>>,
}

impl Registry {
    pub fn new(deps: Arc<Deps>, arbiters: Vec<ArbiterHandle>) -> Self {
        Registry {
            deps,
            arbiters,
            threads: HashMap::new(),
            next_incarnation: 1,
            closing: false,
            deleting: HashSet::new(),
            idle_waiters: Vec::new(),
        }
    }

    fn generating(&self) -> bool {
        self.threads.values().any(|e| e.generating)
    }

    /// Tells the `WhenIdle` waiters, once nothing generates.
    fn wake_if_idle(&mut self) {
        if !self.idle_waiters.is_empty() && !self.generating() {
            for waiter in self.idle_waiters.drain(..) {
                let _ = waiter.send(());
            }
        }
    }

    fn arbiter_for(&self, thread_id: Uuid) -> Option<&ArbiterHandle> {
        if self.arbiters.is_empty() {
            return None;
        }
        let h = thread_id.as_u128();
        let h = (h ^ (h >> 64)) as u64;
        Some(&self.arbiters[(h % self.arbiters.len() as u64) as usize])
    }
}

impl Actor for Registry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(1024);
    }
}

impl Handler<Lookup> for Registry {
    type Result = MessageResult<Lookup>;

    fn handle(&mut self, msg: Lookup, ctx: &mut Context<Self>) -> Self::Result {
        if self.deleting.contains(&msg.thread_id) {
            return MessageResult(None);
        }
        if let Some(entry) = self.threads.get(&msg.thread_id) {
            if entry.addr.connected() {
                return MessageResult(Some(entry.addr.clone()));
            }
        }
        let incarnation = self.next_incarnation;
        self.next_incarnation += 1;
        let deps = self.deps.clone();
        let registry = ctx.address();
        let notices = Notices { generation: registry.clone().recipient(), stopped: registry.recipient() };
        let thread_id = msg.thread_id;
        let closing = self.closing;
        let make = move |ctx: &mut actix::Context<ThreadActor>| {
            ThreadActor::new(thread_id, incarnation, deps, notices, closing, ctx.address())
        };
        let addr = match self.arbiter_for(thread_id) {
            Some(arbiter) => ThreadActor::start_in_arbiter(arbiter, make),
            None => ThreadActor::create(make),
        };
        self.deps.metrics.threads_live.inc();
        self.threads.insert(thread_id, Entry { addr: addr.clone(), incarnation, generating: false });
        MessageResult(Some(addr))
    }
}

impl Handler<BeginDelete> for Registry {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, msg: BeginDelete, _: &mut Context<Self>) -> Self::Result {
        self.deleting.insert(msg.thread_id);
        let live = self.threads.get(&msg.thread_id).map(|e| e.addr.clone());
        Box::pin(async move {
            if let Some(addr) = live {
                let _ = addr.send(Stop { reason: StopReason::Deleted }).await;
            }
        })
    }
}

impl Handler<EndDelete> for Registry {
    type Result = ();

    fn handle(&mut self, msg: EndDelete, _: &mut Context<Self>) {
        self.deleting.remove(&msg.thread_id);
    }
}

impl Handler<Peek> for Registry {
    type Result = Option<Addr<ThreadActor>>;

    fn handle(&mut self, msg: Peek, _: &mut Context<Self>) -> Self::Result {
        if self.deleting.contains(&msg.thread_id) {
            return None;
        }
        self.threads.get(&msg.thread_id).filter(|e| e.addr.connected()).map(|e| e.addr.clone())
    }
}

impl Handler<Generating> for Registry {
    type Result = Vec<bool>;

    fn handle(&mut self, msg: Generating, _: &mut Context<Self>) -> Self::Result {
        msg.thread_ids.iter().map(|id| self.threads.get(id).is_some_and(|e| e.generating)).collect()
    }
}

impl Handler<GenerationChanged> for Registry {
    type Result = ();

    fn handle(&mut self, msg: GenerationChanged, _: &mut Context<Self>) {
        if let Some(entry) = self.threads.get_mut(&msg.thread_id) {
            if entry.incarnation == msg.incarnation && entry.generating != msg.generating {
                entry.generating = msg.generating;
                let gauge = &self.deps.metrics.threads_generating;
                if msg.generating {
                    gauge.inc()
                } else {
                    gauge.dec()
                }
            }
        }
        self.wake_if_idle();
    }
}

impl Handler<ThreadStopped> for Registry {
    type Result = ();

    fn handle(&mut self, msg: ThreadStopped, _: &mut Context<Self>) {
        let mine = self.threads.get(&msg.thread_id).is_some_and(|e| e.incarnation == msg.incarnation);
        if mine {
            if let Some(entry) = self.threads.remove(&msg.thread_id) {
                if entry.generating {
                    self.deps.metrics.threads_generating.dec();
                }
            }
        }
        // Every started actor was counted once; count its end once too.
        self.deps.metrics.threads_live.dec();
        self.wake_if_idle();
    }
}

impl Handler<ListThreads> for Registry {
    type Result = ResponseFuture<Vec<StatusReport>>;

    fn handle(&mut self, _: ListThreads, _: &mut Context<Self>) -> Self::Result {
        let addrs: Vec<_> = self.threads.values().map(|e| e.addr.clone()).collect();
        Box::pin(async move {
            let replies = join_all(addrs.iter().map(|a| a.send(ThreadStatusQuery))).await;
            replies.into_iter().filter_map(Result::ok).collect()
        })
    }
}

impl Handler<NodesChanged> for Registry {
    type Result = ();

    fn handle(&mut self, msg: NodesChanged, _: &mut Context<Self>) {
        for entry in self.threads.values() {
            for node in &msg.gone {
                entry.addr.do_send(crate::broadcast::Inbound::Presence { node: node.clone(), count: 0 });
            }
            if !msg.back.is_empty() {
                entry.addr.do_send(RefreshPresence);
            }
        }
    }
}

impl Handler<WhenIdle> for Registry {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: WhenIdle, _: &mut Context<Self>) -> Self::Result {
        if !self.generating() {
            return Box::pin(std::future::ready(()));
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.idle_waiters.push(tx);
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}

impl Handler<StopAll> for Registry {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, msg: StopAll, _: &mut Context<Self>) -> Self::Result {
        self.closing = true;
        let addrs: Vec<_> = self.threads.values().map(|e| e.addr.clone()).collect();
        Box::pin(async move {
            join_all(addrs.iter().map(|a| a.send(Stop { reason: msg.reason }))).await;
        })
    }
}

/// Sends `make()` to the live actor of `thread_id`, starting it if needed.
/// An actor may stop between the lookup and the send (idle timeout, an
/// operator's stop, a deletion); then the lookup starts a new one and the
/// message is sent again. Each retry follows an actor's stop, not a timer:
/// an operator's stop followed by a deletion is two in a row (after a
/// deletion the lookup finds nothing: 404), and an operator stopping the
/// actor again and again races each new one (the fuzzer does).
pub async fn ask<M>(
    registry: &Addr<Registry>,
    thread_id: Uuid,
    make: impl Fn() -> M,
) -> Result<M::Result, super::ThreadError>
where
    M: actix::Message + Send + 'static,
    M::Result: Send,
    ThreadActor: Handler<M>,
{
    const ATTEMPTS: usize = 8;
    for _ in 0..ATTEMPTS {
        let addr = registry
            .send(Lookup { thread_id })
            .await
            .map_err(|_| super::ThreadError::Unavailable)?
            .ok_or(super::ThreadError::NotFound)?;
        if let Ok(reply) = addr.send(make()).await {
            return Ok(reply);
        }
    }
    tracing::warn!(%thread_id, attempts = ATTEMPTS, "the thread's actor stopped under every attempt to reach it");
    Err(super::ThreadError::Unavailable)
}
