//! The thread actor in cluster mode: its lease while it runs an answer
//! (taken when a question arrives on this node, renewed while the answer
//! runs, let go once the answer's final state is committed), what it does
//! when the lease is lost (it stops the answer and publishes nothing
//! more), the mirror of another node's answer (`Inbound`), and taking over
//! the answer of an owner that died.
//!
//! Ownership is the database's: a node writes only under a fence (owner
//! and epoch) that the write's transaction checks against the lease row,
//! and it stops generating before its lease can expire unrenewed.

use std::time::{Duration, Instant};

use actix::fut::LocalBoxActorFuture;

use super::*;
use crate::{
    broadcast::{Command, Inbound},
    store::{Acquired, StoreError},
};

/// The lease of `epoch` was let go by this node (its release committed).
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct LeaseReleased {
    pub epoch: u64,
}

impl Handler<LeaseReleased> for ThreadActor {
    type Result = ();

    fn handle(&mut self, msg: LeaseReleased, ctx: &mut Context<Self>) {
        self.released(msg.epoch, ctx);
        self.publisher.fanout().command(Command::Released { epoch: msg.epoch });
    }
}

/// The lease a node holds on a thread while it runs the thread's answer.
///
/// Times are this node's, counted from when the last renewal that went
/// through was sent (the database extended the lease at or after that):
/// - until `valid_until` (three quarters of a lease) the answer streams;
/// - past it, nothing more is published: provider events wait
///   (`ThreadActor::held`) while a renewal is sent at once, and go out
///   when it goes through (an owner paused for a while goes on);
/// - past `deadline` (the lease less a tenth, the safety margin) with no
///   renewal through, the owner gives up: it lets the lease go, and the
///   first node to take it ends the answer `interrupted` at once.
pub(super) struct Lease {
    pub fence: Fence,
    pub valid_until: Instant,
    deadline: Instant,
    /// A renewal is on its way.
    renewing: bool,
    timer: SpawnHandle,
}

impl Lease {
    fn renewed(&mut self, sent: Instant, ttl: Duration) {
        self.valid_until = sent + margin(ttl);
        self.deadline = sent + ttl - ttl / 10;
    }
}

impl ThreadActor {
    /// The lease's length, in cluster mode.
    pub(super) fn lease_ttl(&self) -> Option<Duration> {
        self.deps.lease
    }

    pub(super) fn inbox(&self) -> Recipient<LeaseLost> {
        // unwrap: the actor is alive while it runs its own code.
        self.me.upgrade().expect("a running actor has an address").recipient()
    }

    /// Holds the lease of `epoch`: publishes in its epoch, renews it every
    /// third of its length (and at once when it runs late), and gives up
    /// if no renewal goes through before its deadline.
    pub(super) fn hold(&mut self, epoch: u64, ctx: &mut Context<Self>) {
        let Some(ttl) = self.lease_ttl() else { return };
        let fence = Fence { thread_id: self.thread_id, owner: self.deps.node_id.clone(), epoch };
        let check = ttl / 10;
        let mut since_renewal = Duration::ZERO;
        let timer = ctx.run_interval(check, move |act, ctx| {
            let Some(lease) = &act.lease else { return };
            let now = Instant::now();
            if now >= lease.deadline {
                return act.give_up(ctx);
            }
            since_renewal += check;
            if since_renewal >= ttl / 3 || now >= lease.valid_until {
                since_renewal = Duration::ZERO;
                act.renew(ctx);
            }
        });
        self.seen_epoch = self.seen_epoch.max(epoch);
        self.publisher.start_epoch(epoch);
        let now = Instant::now();
        let mut lease = Lease { fence, valid_until: now, deadline: now, renewing: false, timer };
        lease.renewed(now, ttl);
        self.lease = Some(lease);
    }

    /// Whether the lease runs late: the answer publishes nothing until a
    /// renewal goes through.
    pub(super) fn lease_lapsing(&self) -> bool {
        self.lease.as_ref().is_some_and(|l| Instant::now() >= l.valid_until)
    }

    /// Sends a renewal, unless one is on its way.
    pub(super) fn renew(&mut self, ctx: &mut Context<Self>) {
        let Some(ttl) = self.lease_ttl() else { return };
        let Some(lease) = self.lease.as_mut().filter(|l| !l.renewing) else { return };
        lease.renewing = true;
        let fence = lease.fence.clone();
        let (ack, done) = oneshot::channel();
        let sent = Instant::now();
        let ttl_ms = ttl.as_millis() as u64;
        self.deps
            .persistence
            .do_send(Write { ops: vec![WriteOp::Renew { fence: fence.clone(), ttl_ms }], ack: Some(ack) });
        ctx.spawn(done.into_actor(self).map(move |result, act, ctx| {
            let Some(lease) = act.lease.as_mut().filter(|l| l.fence == fence) else { return };
            lease.renewing = false;
            match result {
                // Through before the deadline: the answer goes on.
                Ok(Ok(())) if Instant::now() < lease.deadline => {
                    lease.renewed(sent, ttl);
                    act.release_held(ctx);
                }
                Ok(Ok(())) => act.give_up(ctx),
                Ok(Err(WriteError::Fenced)) => act.lose_lease("another node holds it now", ctx),
                // Not through (the database): the timer tries again.
                _ => {}
            }
        }));
    }

    /// Provider events that waited for a renewal go out, in order.
    fn release_held(&mut self, ctx: &mut Context<Self>) {
        while !self.lease_lapsing() {
            let Some(item) = self.held.pop_front() else { return };
            self.on_gen_event(item, ctx);
        }
    }

    /// No renewal went through in time: the answer stops here, and the
    /// lease is let go so that a node (this one, or the first to hear)
    /// ends it `interrupted` at once with every byte its log holds.
    fn give_up(&mut self, ctx: &mut Context<Self>) {
        let fence = self.fence();
        self.lose_lease("it could not be renewed in time", ctx);
        if let Some(fence) = fence {
            self.release(fence);
        }
    }

    /// The lease is gone (or about to be): the answer stops here without a
    /// word more; the node that takes the lease ends it.
    pub(super) fn lose_lease(&mut self, why: &str, ctx: &mut Context<Self>) {
        let Some(lease) = self.lease.take() else { return };
        ctx.cancel_future(lease.timer);
        tracing::warn!(thread_id = %self.thread_id, epoch = lease.fence.epoch, why, "lease lost; the answer stops here");
        self.held.clear();
        if let Some(generation) = self.generation.take() {
            ctx.cancel_future(generation.stream);
            ctx.cancel_future(generation.checkpoints);
            self.set_generating(false);
        }
        self.touch(ctx);
    }

    /// Takes the thread's lease for a new answer `answer`: its epoch, or
    /// `None` when the thread is busy. A lease held for an answer this node
    /// saw end is one its owner lets go as soon as that answer's final
    /// state is committed: the question waits for that notice (never
    /// longer than a lease), then asks once more. Any other holder means
    /// a question is running: busy at once.
    pub(super) fn take_lease(&mut self, answer: Uuid) -> LocalBoxActorFuture<Self, Result<Option<u64>, StoreError>> {
        let ttl = self.lease_ttl().unwrap_or_default();
        let acquire = self.acquire(Some(answer));
        acquire
            .into_actor(self)
            .then(move |acquired, act, _| match acquired {
                Ok(Acquired::Taken(epoch)) => actix::fut::ready(Ok(Some(epoch))).boxed_local(),
                Ok(Acquired::Held { epoch, answer: Some(held), .. }) if act.saw_end_of(held) => {
                    let released = act.when_released(epoch, ttl);
                    let again = act.acquire(Some(answer));
                    async move {
                        released.await;
                        match again.await? {
                            Acquired::Taken(epoch) => Ok(Some(epoch)),
                            Acquired::Held { .. } => Ok(None),
                        }
                    }
                    .into_actor(act)
                    .boxed_local()
                }
                Ok(Acquired::Held { .. }) => actix::fut::ready(Ok(None)).boxed_local(),
                Err(e) => actix::fut::ready(Err(e)).boxed_local(),
            })
            .boxed_local()
    }

    /// One attempt at the lease (run when awaited).
    fn acquire(&self, answer: Option<Uuid>) -> impl std::future::Future<Output = Result<Acquired, StoreError>> {
        let store = self.deps.store.clone();
        let (thread_id, node) = (self.thread_id, self.deps.node_id.clone());
        let ttl_ms = self.lease_ttl().unwrap_or_default().as_millis() as u64;
        async move { store.acquire_lease(thread_id, &node, ttl_ms, answer).await }
    }

    /// Whether answer `id` is one this node knows has ended.
    fn saw_end_of(&self, id: Uuid) -> bool {
        self.conversation().and_then(|c| c.message(id)).is_some_and(Message::is_finished)
    }

    /// Resolves once the lease of `epoch` is let go, or after `patience`
    /// (an owner that died after its answer's end leaves it to expire).
    fn when_released(&mut self, epoch: u64, patience: Duration) -> impl std::future::Future<Output = ()> {
        let waiter = (self.released_epoch < epoch).then(|| {
            let (tx, rx) = oneshot::channel();
            self.lease_waiters.push((epoch, tx));
            rx
        });
        async move {
            if let Some(rx) = waiter {
                let _ = tokio::time::timeout(patience, rx).await;
            }
        }
    }

    /// The lease of `epoch` was let go: the questions waiting for it go
    /// on. If its answer still runs, its owner gave it up: this node
    /// ends it now (the first node to take the lease does).
    fn released(&mut self, epoch: u64, ctx: &mut Context<Self>) {
        self.released_epoch = self.released_epoch.max(epoch);
        let released = self.released_epoch;
        for (_, waiter) in self.lease_waiters.extract_if(.., |(e, _)| *e <= released) {
            let _ = waiter.send(());
        }
        let abandoned = self.conversation().and_then(Conversation::running).is_some();
        if abandoned && self.generation.is_none() && self.lease.is_none() && epoch >= self.seen_epoch {
            ctx.notify(TakeOver);
        }
    }

    /// Lets the lease of `fence` go now, and says so to every node (a
    /// question waiting for it, here or elsewhere, goes on).
    pub(super) fn release(&mut self, fence: Fence) {
        let store = self.deps.store.clone();
        let me = self.me.clone();
        actix_rt::spawn(async move {
            match store.release_lease(&fence).await {
                Ok(()) => {
                    if let Some(actor) = me.upgrade() {
                        actor.do_send(LeaseReleased { epoch: fence.epoch });
                    }
                }
                Err(e) => tracing::warn!(error.message = %e, "could not release a lease; it expires"),
            }
        });
    }

    /// Writes an ended answer's final state under the lease, then lets the
    /// lease go (not before: a next owner's epoch would fence the write).
    pub(super) fn write_final_then_release(&mut self, message: Message, ctx: &mut Context<Self>) {
        let Some(fence) = self.fence() else { return };
        let (ack, done) = oneshot::channel();
        let answer = message.id;
        let op = WriteOp::Fenced(fence.clone(), Box::new(WriteOp::Update(message)));
        self.deps.persistence.do_send(Write { ops: vec![op], ack: Some(ack) });
        ctx.spawn(done.into_actor(self).map(move |written, act, ctx| {
            if let Ok(Ok(())) = written {
                act.publisher.fanout().settled(answer);
                act.release(fence.clone());
            }
            if act.lease.as_ref().is_some_and(|l| l.fence == fence) && act.generation.is_none() {
                if let Some(lease) = act.lease.take() {
                    ctx.cancel_future(lease.timer);
                }
            }
        }));
    }

    /// Loads the thread, its messages and, for an answer still streaming,
    /// every frame its owner logged: the conversation as its owner holds
    /// it (the database alone may be a flush interval behind).
    pub(super) fn load(&self) -> LoadFuture {
        let store = self.deps.store.clone();
        let (thread_id, cluster) = (self.thread_id, self.lease_ttl().is_some());
        let ready = self.publisher.fanout().ready();
        async move {
            if cluster {
                if let Err(e) = ready.await {
                    tracing::warn!(thread_id = %thread_id, error.message = %e, "not linked to the other nodes");
                    return Err(Load::Unlinked);
                }
            }
            let thread = store.find_thread(thread_id).await?;
            let messages = store.all_messages(thread_id).await?;
            Ok((thread, Conversation::new(thread_id, messages)))
        }
        .into_actor(self)
        .then(move |loaded, act, _| {
            let log = match &loaded {
                Ok((_, conversation)) if cluster => conversation.running().map(|m| act.publisher.fanout().log(m.id)),
                _ => None,
            };
            async move {
                let (thread, mut conversation) = loaded?;
                if let Some(log) = log {
                    match log.await {
                        // Every answer's log begins with its own start: an
                        // empty one was lost (Redis restarted empty).
                        Ok(frames) if frames.is_empty() => {
                            tracing::warn!(thread_id = %thread_id, "the answer's log is gone; its tail is unknown");
                            conversation.tail_unknown();
                        }
                        Ok(frames) => mirror_all(&mut conversation, &frames),
                        Err(e) => {
                            tracing::warn!(thread_id = %thread_id, error.message = %e, "the answer's log is unreadable");
                            conversation.tail_unknown();
                        }
                    }
                }
                Ok((thread, conversation))
            }
            .into_actor(act)
        })
        .boxed_local()
    }

    /// Loads the conversation again after missing another node's frames,
    /// then has every subscriber catch up from its cursor.
    pub(super) fn resync(&mut self, ctx: &mut Context<Self>) {
        tracing::debug!(thread_id = %self.thread_id, "frames missed; loading the conversation again");
        let pause = self.deps.settings.database.flush_interval() * 2;
        ctx.wait(
            actix::clock::sleep(pause)
                .into_actor(self)
                .then(|(), act, _| act.load())
                .map(|loaded, act, _| {
                    if let (Ok((_, conversation)), Loaded::Found { conversation: held, .. }) = (loaded, &mut act.loaded)
                    {
                        *held = conversation;
                        act.publisher.resync();
                    }
                })
                .boxed_local(),
        );
    }
}

/// Why a thread could not be loaded.
#[derive(Debug, thiserror::Error)]
pub(super) enum Load {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("not linked to the thread's other nodes")]
    Unlinked,
}

pub(super) type LoadFuture = actix::fut::LocalBoxActorFuture<ThreadActor, Result<(Option<Thread>, Conversation), Load>>;

/// A bit before a lease of `ttl` expires.
fn margin(ttl: Duration) -> Duration {
    ttl - ttl / 4
}

/// Applies logged frames to a conversation loaded from the database.
fn mirror_all(conversation: &mut Conversation, frames: &[Frame]) {
    for frame in frames {
        if let Some(event) = Event::from_json(frame.json()) {
            let _ = conversation.mirror(&event, Utc::now());
        }
    }
}

impl Handler<LeaseLost> for ThreadActor {
    type Result = ();

    fn handle(&mut self, msg: LeaseLost, ctx: &mut Context<Self>) {
        if self.fence().as_ref() == Some(&msg.fence) {
            self.lose_lease("a write under it was refused", ctx);
        }
    }
}

impl Handler<Inbound> for ThreadActor {
    type Result = ();

    fn handle(&mut self, msg: Inbound, ctx: &mut Context<Self>) {
        match msg {
            Inbound::Frame(frame) => {
                // One owner: while this node holds the lease, another
                // node's frames are a stale owner's.
                if self.lease.is_some() || frame.pos.epoch < self.seen_epoch {
                    tracing::debug!(thread_id = %self.thread_id, epoch = frame.pos.epoch, seen = self.seen_epoch,
                        owner = self.lease.is_some(), "a stale owner's frame is ignored");
                    return;
                }
                self.seen_epoch = frame.pos.epoch;
                let Some(event) = Event::from_json(frame.json()) else {
                    tracing::debug!(thread_id = %self.thread_id, "an unreadable frame");
                    return;
                };
                let Some(conversation) = self.conversation_mut() else {
                    tracing::debug!(thread_id = %self.thread_id, "a frame before the conversation is loaded");
                    return;
                };
                match conversation.mirror(&event, Utc::now()) {
                    Ok(true) => {
                        // The form between nodes leaves the UI stream's
                        // context out: this node's mirror supplies it.
                        let context = self.ui_context(&event);
                        self.publisher.relay(std::sync::Arc::new(frame.with_ui(context)))
                    }
                    Ok(false) => {}
                    Err(_) => {
                        tracing::debug!(thread_id = %self.thread_id, kind = frame.kind.as_str(), "a frame leaves a gap");
                        self.resync(ctx)
                    }
                }
            }
            Inbound::Presence { node, count } => {
                match count {
                    0 => self.others.remove(&node),
                    n => self.others.insert(node, n),
                };
                self.presence_changed(false, ctx);
            }
            Inbound::Command(Command::Cancel) => {
                if self.generation.is_some() {
                    self.finish(MessageStatus::Cancelled, None, ctx);
                }
            }
            Inbound::Command(Command::Released { epoch }) => self.released(epoch, ctx),
            Inbound::Command(Command::Deleted) => self.stop(StopReason::Deleted, false, ctx),
            Inbound::Command(Command::Stopped) => self.stop(StopReason::Stopped, false, ctx),
            Inbound::Lost => {
                self.linked = false;
                if self.lease.is_none() {
                    // A mirror that misses frames cannot serve: its
                    // subscribers resume elsewhere, or here once linked.
                    self.publisher.close(StreamCode::Unavailable);
                    ctx.stop();
                }
            }
        }
    }
}

impl Handler<TakeOver> for ThreadActor {
    type Result = ();

    fn handle(&mut self, _: TakeOver, ctx: &mut Context<Self>) {
        let Some(ttl) = self.lease_ttl() else { return };
        if self.generation.is_some() || self.lease.is_some() {
            return;
        }
        let _ = ttl;
        ctx.wait(
            self.acquire(None)
                .into_actor(self)
                .then(|epoch, act, _| match epoch {
                    Ok(Acquired::Taken(epoch)) => {
                        act.load().map(move |loaded, _, _| loaded.map(|l| Some((epoch, l)))).boxed_local()
                    }
                    Ok(Acquired::Held { .. }) => actix::fut::ready(Ok(None)).boxed_local(),
                    Err(e) => actix::fut::ready(Err(Load::Store(e))).boxed_local(),
                })
                .map(|taken, act, ctx| match taken {
                    Ok(Some((epoch, (_, conversation)))) => {
                        act.hold(epoch, ctx);
                        if let Loaded::Found { conversation: held, .. } = &mut act.loaded {
                            *held = conversation;
                        }
                        act.publisher.resync();
                        let running = act.conversation().and_then(Conversation::running).map(|m| m.id);
                        match running {
                            Some(id) => {
                                tracing::warn!(thread_id = %act.thread_id, message_id = %id, epoch,
                                "took over an answer whose owner is gone; it ends interrupted");
                                act.finish(MessageStatus::Interrupted, Some(MessageError::interrupted()), ctx);
                            }
                            None => {
                                if let Some(lease) = act.lease.take() {
                                    ctx.cancel_future(lease.timer);
                                    act.release(lease.fence);
                                }
                            }
                        }
                    }
                    Ok(None) => {}
                    Err(e) => tracing::warn!(thread_id = %act.thread_id, error.message = %e, "could not take over"),
                }),
        );
    }
}
