//! The thread actor's lease (cluster mode): taken when a question arrives
//! on this node (`take_lease`: at once, or once the owner of an answer
//! this node saw end lets it go), renewed while the answer runs, held back
//! while it runs late, given up before it can expire unrenewed, and let go
//! once the answer's final state is committed (`Released` to every node).
//!
//! Ownership is the database's: a node writes only under a fence (owner
//! and epoch) that the write's transaction checks against the lease row,
//! and it publishes nothing while its lease runs late.

use std::time::{Duration, Instant};

use actix::fut::LocalBoxActorFuture;

use super::*;
use crate::{
    broadcast::Command,
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

/// A lease just taken: its epoch, and when the statement that took it was
/// sent (the lease runs from then).
pub(super) struct Taken {
    pub epoch: u64,
    pub sent: Instant,
}

/// What taking the lease for an answer awaiting input came to.
pub(super) enum ForAnswer {
    /// Taken: this actor owns the thread, its conversation read again.
    Owned,
    /// Another node (or request) holds it, in `epoch`: what is stored now.
    Held { epoch: u64, stored: Conversation },
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
///   first node to take it continues the answer at once (or, past its
///   continuation budget, ends it `interrupted`).
pub(super) struct Lease {
    pub fence: Fence,
    pub valid_until: Instant,
    deadline: Instant,
    /// A renewal is on its way.
    renewing: bool,
    pub(super) timer: SpawnHandle,
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

    /// Holds the lease of `epoch`, taken by a statement sent at `sent` (its
    /// clock starts then, not once what followed was loaded): publishes in
    /// its epoch, renews it every four tenths of its length (and at once
    /// when it runs late), and gives up if no renewal goes through before
    /// its deadline.
    pub(super) fn hold(&mut self, epoch: u64, sent: Instant, ctx: &mut Context<Self>) {
        let Some(ttl) = self.lease_ttl() else { return };
        if let Some(old) = self.role.stop_owning() {
            ctx.cancel_future(old.timer);
        }
        let fence = Fence { thread_id: self.thread_id, owner: self.deps.node_id.clone(), epoch };
        let check = ttl / 10;
        let mut since_renewal = Duration::ZERO;
        let timer = ctx.run_interval(check, move |act, ctx| {
            let Some(lease) = act.role.lease() else { return };
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
        let mut lease = Lease { fence, valid_until: sent, deadline: sent, renewing: false, timer };
        lease.renewed(sent, ttl);
        self.role = Role::Owner(lease);
    }

    /// Whether the lease runs late: the answer publishes nothing until a
    /// renewal goes through.
    pub(super) fn lease_lapsing(&self) -> bool {
        self.role.lease().is_some_and(|l| Instant::now() >= l.valid_until)
    }

    /// Sends a renewal, unless one is on its way.
    pub(super) fn renew(&mut self, ctx: &mut Context<Self>) {
        let Some(ttl) = self.lease_ttl() else { return };
        let Some(lease) = self.role.lease_mut().filter(|l| !l.renewing) else { return };
        lease.renewing = true;
        let fence = lease.fence.clone();
        let (ack, done) = oneshot::channel();
        let sent = Instant::now();
        let ttl_ms = ttl.as_millis() as u64;
        self.deps
            .persistence
            .do_send(Write { ops: vec![WriteOp::Renew { fence: fence.clone(), ttl_ms }], ack: Some(ack) });
        ctx.spawn(done.into_actor(self).map(move |result, act, ctx| {
            let Some(lease) = act.role.lease_mut().filter(|l| l.fence == fence) else { return };
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

    /// Provider events that waited for a renewal go out, in order; then a
    /// cancel that waited too.
    fn release_held(&mut self, ctx: &mut Context<Self>) {
        while !self.lease_lapsing() {
            let Some(item) = self.held.pop_front() else {
                if std::mem::take(&mut self.cancel_held) && self.generation.is_some() {
                    self.finish(MessageStatus::Cancelled, None, ctx);
                }
                return;
            };
            self.on_gen_event(item, ctx);
        }
    }

    /// No renewal went through in time: the answer stops here, and the
    /// lease is let go so that a node (this one, or the first to hear)
    /// takes it over at once with every byte its log holds (and continues
    /// it, or ends it `interrupted`: `thread/continuing.rs`).
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
        let Some(lease) = self.role.stop_owning() else { return };
        ctx.cancel_future(lease.timer);
        tracing::warn!(thread_id = %self.thread_id, epoch = lease.fence.epoch, why, "lease lost; the answer stops here");
        self.held.clear();
        self.cancel_held = false;
        // Calls the service ran here run again on the node that takes over.
        self.stop_runs(ctx);
        if let Some(generation) = self.generation.take() {
            ctx.cancel_future(generation.stream);
            ctx.cancel_future(generation.checkpoints);
            self.set_generating(false);
        }
        self.touch(ctx);
    }

    /// Takes the thread's lease for a new answer `answer`: its epoch, or
    /// `None` when the thread is busy. A lease held for the answer this
    /// node had seen end when the question arrived is one its owner lets go
    /// as soon as that answer's final state is committed: the question
    /// waits for that notice (never longer than a lease), then asks once
    /// more. Any other holder means a question was running when this one
    /// arrived (even if it ended while the database was asked): busy, at
    /// once, exactly as on one node.
    pub(super) fn take_lease(&mut self, answer: Uuid) -> LocalBoxActorFuture<Self, Result<Option<Taken>, StoreError>> {
        let ttl = self.lease_ttl().unwrap_or_default();
        let ended_on_arrival = self.last_ended_answer();
        let sent = Instant::now();
        let acquire = self.acquire(Some(answer));
        acquire
            .into_actor(self)
            .then(move |acquired, act, _| match acquired {
                Ok(Acquired::Taken(epoch)) => actix::fut::ready(Ok(Some(Taken { epoch, sent }))).boxed_local(),
                Ok(Acquired::Held { epoch, answer: Some(held), .. }) if ended_on_arrival == Some(held) => {
                    let released = act.when_released(epoch, ttl);
                    let again = act.acquire(Some(answer));
                    async move {
                        released.await;
                        let sent = Instant::now();
                        match again.await? {
                            Acquired::Taken(epoch) => Ok(Some(Taken { epoch, sent })),
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

    /// Takes the thread's lease for the answer `answer` that awaits input
    /// (to answer its calls, go on with it, or cancel it) and reads the
    /// conversation again from the database. Taken: this actor owns the
    /// thread, its conversation is the stored one (exact: only a holder
    /// writes). Held: the stored conversation, to judge by.
    pub(super) fn own_answer(
        &mut self,
        answer: Uuid,
        ctx: &mut Context<Self>,
    ) -> LocalBoxActorFuture<Self, Result<ForAnswer, StoreError>> {
        self.start_taking(ctx);
        let sent = Instant::now();
        let acquire = self.acquire(Some(answer));
        let (store, thread_id) = (self.deps.store.clone(), self.thread_id);
        async move {
            let acquired = acquire.await;
            // (Read after the attempt: a holder's writes are committed
            // before it lets go.)
            let messages = store.all_messages(thread_id).await;
            Ok((acquired?, messages?))
        }
        .into_actor(self)
        .map(move |read: Result<_, StoreError>, act, ctx| {
            act.taking_done();
            let (acquired, messages) = match read {
                Ok(read) => read,
                Err(e) => {
                    // (A lease taken but unread lapses: nothing was written.)
                    return Err(e);
                }
            };
            let stored = Conversation::new(act.thread_id, messages);
            match acquired {
                Acquired::Taken(epoch) => {
                    if let Loaded::Found { conversation, .. } = &mut act.loaded {
                        *conversation = stored;
                    }
                    act.hold(epoch, sent, ctx);
                    Ok(ForAnswer::Owned)
                }
                Acquired::Held { epoch, .. } => Ok(ForAnswer::Held { epoch, stored }),
            }
        })
        .boxed_local()
    }

    /// Lets the lease go now (nothing runs under it any more), if held.
    pub(super) fn let_go(&mut self, ctx: &mut Context<Self>) {
        if let Some(lease) = self.role.stop_owning() {
            ctx.cancel_future(lease.timer);
            self.release(lease.fence);
        }
    }

    /// A question on this node starts taking the lease; a lease still held
    /// for the answer that just ended is let go by its own write, and its
    /// timer stops here.
    pub(super) fn start_taking(&mut self, ctx: &mut Context<Self>) {
        if let Some(old) = self.role.stop_owning() {
            ctx.cancel_future(old.timer);
        }
        self.role = Role::Starting;
    }

    /// The question's attempt at the lease is over: unless it took it, the
    /// actor mirrors again.
    pub(super) fn taking_done(&mut self) {
        if matches!(self.role, Role::Starting) {
            self.role = Role::Mirror;
        }
    }

    /// One attempt at the lease (run when awaited).
    pub(super) fn acquire(
        &self,
        answer: Option<Uuid>,
    ) -> impl std::future::Future<Output = Result<Acquired, StoreError>> {
        let store = self.deps.store.clone();
        let (thread_id, node) = (self.thread_id, self.deps.node_id.clone());
        let ttl_ms = self.lease_ttl().unwrap_or_default().as_millis() as u64;
        async move { store.acquire_lease(thread_id, &node, ttl_ms, answer).await }
    }

    /// The thread's latest answer, if this node knows it has ended.
    fn last_ended_answer(&self) -> Option<Uuid> {
        let last = self.conversation()?.messages().last()?;
        (last.role == crate::domain::Role::Assistant && last.is_finished()).then_some(last.id)
    }

    /// Resolves once the lease of `epoch` is let go, or after `patience`
    /// (an owner that died after its answer's end leaves it to expire).
    pub(super) fn when_released(&mut self, epoch: u64, patience: Duration) -> impl std::future::Future<Output = ()> {
        let waiter = (self.released_epoch < epoch).then(|| {
            // (Waiters that gave up, their owner gone, are dropped here.)
            self.lease_waiters.retain(|(_, tx)| !tx.is_closed());
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
    pub(super) fn released(&mut self, epoch: u64, ctx: &mut Context<Self>) {
        self.released_epoch = self.released_epoch.max(epoch);
        let released = self.released_epoch;
        for (_, waiter) in self.lease_waiters.extract_if(.., |(e, _)| *e <= released) {
            let _ = waiter.send(());
        }
        let running = self.conversation().and_then(Conversation::running).is_some();
        if self.role.ends_abandoned(self.generation.is_some(), running) && epoch >= self.seen_epoch {
            ctx.notify(TakeOver);
        }
    }

    /// Lets the lease of `fence` go now, and (if it still held it) says so
    /// to every node: a question waiting for it, here or elsewhere, goes
    /// on. Runs apart from the actor, so a stopping actor lets go too.
    pub(super) fn release(&mut self, fence: Fence) {
        let (store, me) = (self.deps.store.clone(), self.me.clone());
        actix_rt::spawn(release(store, me, fence));
    }

    /// Writes an ended answer's final state under the lease, then lets the
    /// lease go (not before: a next owner's epoch would fence the write).
    /// Its renewals stop now (a renewal committed after the release must
    /// not make it live again); if the write is slow the lease lapses, and
    /// the node that takes it writes the same final state from the log.
    /// The write's outcome is awaited apart from the actor, so that an
    /// actor that stops (a shutdown, a deletion) still lets its lease go.
    pub(super) fn write_final_then_release(&mut self, message: Message, ctx: &mut Context<Self>) {
        let Some(fence) = self.fence() else { return };
        if let Some(lease) = self.role.lease() {
            ctx.cancel_future(lease.timer);
        }
        let (ack, done) = oneshot::channel();
        let answer = message.id;
        let op = WriteOp::Fenced(fence.clone(), Box::new(WriteOp::Update(message)));
        self.deps.persistence.do_send(Write { ops: vec![op], ack: Some(ack) });
        let (store, me) = (self.deps.store.clone(), self.me.clone());
        actix_rt::spawn(async move {
            let written = matches!(done.await, Ok(Ok(())));
            if let Some(actor) = me.upgrade() {
                actor.do_send(FinalWritten { fence: fence.clone(), answer, written });
            }
            if written {
                release(store, me, fence).await;
            }
        });
    }
}

/// Lets the lease of `fence` go; tells its actor (if it still lives) when
/// that took effect.
async fn release(store: crate::store::Store, me: WeakAddr<ThreadActor>, fence: Fence) {
    match store.release_lease(&fence).await {
        Ok(true) => {
            if let Some(actor) = me.upgrade() {
                actor.do_send(LeaseReleased { epoch: fence.epoch });
            }
        }
        Ok(false) => {
            tracing::debug!(thread_id = %fence.thread_id, epoch = fence.epoch, "the lease was not held any more")
        }
        Err(e) => tracing::warn!(error.message = %e, "could not release a lease; it expires"),
    }
}

/// An answer's final write under `fence` has an outcome.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct FinalWritten {
    fence: Fence,
    answer: Uuid,
    written: bool,
}

impl Handler<FinalWritten> for ThreadActor {
    type Result = ();

    fn handle(&mut self, msg: FinalWritten, ctx: &mut Context<Self>) {
        if msg.written {
            self.publisher.fanout().settled(msg.answer);
            self.announce_awaiting(msg.answer);
        }
        if self.role.lease().is_some_and(|l| l.fence == msg.fence) && self.generation.is_none() {
            if let Some(lease) = self.role.stop_owning() {
                ctx.cancel_future(lease.timer);
            }
        }
    }
}

/// A bit before a lease of `ttl` expires.
fn margin(ttl: Duration) -> Duration {
    ttl - ttl / 4
}

impl Handler<LeaseLost> for ThreadActor {
    type Result = ();

    fn handle(&mut self, msg: LeaseLost, ctx: &mut Context<Self>) {
        if self.fence().as_ref() == Some(&msg.fence) {
            self.lose_lease("a write under it was refused", ctx);
        }
    }
}
