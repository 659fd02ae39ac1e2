//! PersistenceActor: group commit for every thread of the node.
//!
//! Owns the write queue. Thread actors send it `Write` (inserts and
//! deletes, acknowledged after commit) and `Checkpoint` (a message's newest
//! state; only the newest per message matters, so a newer one replaces an
//! older one in place). At most one transaction runs at a time and, for
//! checkpoints alone, at most one starts per flush interval; when the queue
//! was idle the first write goes out at once, so a lone POST waits only for
//! its own commit. A write someone waits for (a question, a tool result, a
//! step's start) goes out as soon as the transaction before it ends, with
//! whatever is queued by then: under streaming load it would otherwise
//! wait up to an interval for the timer (a tool result waited 55 ms before
//! its next step began).
//!
//! Faults (see `store::Fault`):
//! - The database cannot write now (unreachable, locked, busy, read-only,
//!   out of connections): the batch is kept whole and retried with a
//!   growing pause (up to `MAX_BACKOFF`), behind nothing and ahead of
//!   newer writes; a newer state of a message replaces the kept one. Only
//!   inserts whose POST still waits are answered at once (`Unavailable`:
//!   the POST gets 503, nothing was promised). While this lasts the shared
//!   `healthy` flag is down: `/readyz` answers 503 and thread actors refuse
//!   new generations. When nothing is left to retry, a probe (this node's
//!   row in `nodes`) is written instead, so the flag comes back up as soon
//!   as the database takes writes again.
//! - The database refuses a row for its content: the next batch (one
//!   interval later, so still one transaction per interval) writes each op
//!   in its own savepoint, and only the refused ops are set aside, loudly
//!   and counted (`convo_persistence_rows_rejected_total`). A refused insert
//!   or delete is answered with the error. A refused message state is
//!   never dropped: it is parked and retried every `PARKED_RETRY` until
//!   the database takes it or a newer state replaces it.
//!
//! `Drain` (graceful shutdown) resolves once everything queued so far is
//! written.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use actix::prelude::*;
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::{
    domain::Message,
    metrics::Metrics,
    store::{Fault, Fence, Outcome, Store, StoreError, WriteOp},
};

/// The longest pause between two attempts while the database cannot write.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// How often a parked message state (refused for its content) is retried.
const PARKED_RETRY: Duration = Duration::from_secs(5);

/// Why acknowledged writes were not committed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    #[error("database unavailable")]
    Unavailable,
    #[error("write rejected by the database: {0}")]
    Rejected(String),
    /// The writer's lease on the thread is gone (cluster mode): another
    /// node owns the thread now.
    #[error("this node no longer owns the thread")]
    Fenced,
}

/// Told to a thread actor whose fenced checkpoint was refused: it lost its
/// thread's lease.
#[derive(Message)]
#[rtype(result = "()")]
pub struct LeaseLost {
    pub fence: Fence,
}

pub type Ack = oneshot::Sender<Result<(), WriteError>>;

/// Insert or delete rows; `ack` is answered after the commit.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Write {
    pub ops: Vec<WriteOp>,
    pub ack: Option<Ack>,
}

/// The newest state of a message (streaming text, or its final state),
/// fenced by its owner's lease in cluster mode (the owner is told if the
/// fence no longer holds).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Checkpoint {
    pub message: Message,
    pub fence: Option<(Fence, Recipient<LeaseLost>)>,
}

/// Resolves when everything queued before it is written (or given up).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Drain;

struct Entry {
    op: WriteOp,
    /// Index into `acks` of the write this op belongs to.
    ack: Option<usize>,
    /// Whom to tell if its fence no longer holds.
    owner: Option<Recipient<LeaseLost>>,
}

/// A batch on its way to the database.
struct Batch {
    entries: Vec<Entry>,
    acks: Vec<Option<Ack>>,
    isolated: bool,
}

pub struct PersistenceActor {
    store: Store,
    metrics: Arc<Metrics>,
    /// False while the database does not take writes; new messages are
    /// refused (503) rather than accepted and lost.
    healthy: Arc<AtomicBool>,
    /// This node's row for write probes.
    node_id: String,
    interval: Duration,
    queue: Vec<Entry>,
    /// Position in `queue` of the pending update of each message.
    updates: HashMap<Uuid, usize>,
    acks: Vec<Option<Ack>>,
    flushing: bool,
    timer: Option<SpawnHandle>,
    /// The armed timer fires at once (nothing to bring forward).
    timer_now: bool,
    last_start: Option<Instant>,
    /// Batches in a row that found the database unable to write.
    failures: u32,
    /// The last batch had a row the database refused: the next one
    /// isolates each op in a savepoint.
    isolate: bool,
    /// Message states the database refused for their content.
    parked: HashMap<Uuid, (WriteOp, Option<Recipient<LeaseLost>>)>,
    parked_timer: Option<SpawnHandle>,
    drains: Vec<oneshot::Sender<()>>,
}

impl PersistenceActor {
    pub fn new(
        store: Store,
        metrics: Arc<Metrics>,
        healthy: Arc<AtomicBool>,
        node_id: String,
        interval: Duration,
    ) -> Self {
        PersistenceActor {
            store,
            metrics,
            healthy,
            node_id,
            interval,
            queue: Vec::new(),
            updates: HashMap::new(),
            acks: Vec::new(),
            flushing: false,
            timer: None,
            timer_now: false,
            last_start: None,
            failures: 0,
            isolate: false,
            parked: HashMap::new(),
            parked_timer: None,
            drains: Vec::new(),
        }
    }

    fn push(&mut self, op: WriteOp, ack: Option<usize>, owner: Option<Recipient<LeaseLost>>) {
        if let WriteOp::Update(m) = op.inner() {
            let id = m.id;
            self.parked.remove(&id);
            // Only the newest state of a message is written; an ack (a
            // final write's, whose owner waits for it) is kept with it. Two
            // acks for one message stay two entries.
            match self.updates.get(&id) {
                Some(&i) if ack.is_none() || self.queue[i].ack.is_none() => {
                    let entry = &mut self.queue[i];
                    entry.op = op;
                    entry.ack = ack.or(entry.ack);
                    entry.owner = owner.or(entry.owner.take());
                    return;
                }
                _ => {}
            }
            self.updates.insert(id, self.queue.len());
        }
        self.queue.push(Entry { op, ack, owner });
        self.metrics.persistence_queue_depth.set(self.queue.len() as i64);
    }

    /// Arms the flush timer: now if the last batch started an interval ago
    /// (longer after failures), or if a write someone waits for is queued.
    fn schedule(&mut self, ctx: &mut Context<Self>) {
        if self.flushing || self.queue.is_empty() {
            return;
        }
        // A write someone waits for does not wait for the timer.
        let waited_for = self.failures == 0 && self.acks.iter().any(Option::is_some);
        if let Some(timer) = self.timer {
            if !waited_for || self.timer_now {
                return;
            }
            ctx.cancel_future(timer);
        }
        let pause = match self.failures {
            0 => self.interval,
            n => self.interval.saturating_mul(1 << n.min(16)).min(MAX_BACKOFF.max(self.interval)),
        };
        let wait = match self.last_start {
            Some(_) if waited_for => Duration::ZERO,
            Some(t) => pause.saturating_sub(t.elapsed()),
            None => Duration::ZERO,
        };
        self.timer_now = wait.is_zero();
        self.timer = Some(ctx.run_later(wait, |act, ctx| {
            act.timer = None;
            act.flush(ctx);
        }));
    }

    fn flush(&mut self, ctx: &mut Context<Self>) {
        if self.flushing || self.queue.is_empty() {
            self.finish_drains();
            return;
        }
        self.flushing = true;
        self.last_start = Some(Instant::now());
        let batch = Batch {
            entries: std::mem::take(&mut self.queue),
            acks: std::mem::take(&mut self.acks),
            isolated: self.isolate,
        };
        self.updates.clear();
        self.metrics.persistence_queue_depth.set(0);
        let store = self.store.clone();
        let metrics = self.metrics.clone();
        let ops: Vec<WriteOp> = batch.entries.iter().map(|e| e.op.clone()).collect();
        let isolated = batch.isolated;
        let started = Instant::now();
        let fut = async move {
            metrics.persistence_transactions.inc();
            let result = match isolated {
                false => store.write_batch(&ops).await,
                true => store.write_isolated(&ops).await,
            };
            (result, started.elapsed())
        };
        ctx.spawn(fut.into_actor(self).map(move |(result, took), act, ctx| {
            act.flushing = false;
            match result {
                Ok(outcome) => act.committed(batch, outcome, took),
                Err(e) if e.fault() == Fault::Unavailable || batch.isolated => act.cannot_write(batch, &e),
                Err(e) => act.refused(batch, &e),
            }
            act.done(ctx);
        }));
    }

    fn record(&self, rows: usize, took: Duration) {
        self.metrics.persistence_batches.inc();
        self.metrics.persistence_rows.inc_by(rows as u64);
        self.metrics.persistence_last_batch_rows.set(rows as i64);
        self.metrics.persistence_last_batch_seconds.set(took.as_secs_f64());
        self.metrics.persistence_batch_seconds.observe(took.as_secs_f64());
    }

    fn done(&mut self, ctx: &mut Context<Self>) {
        if !self.parked.is_empty() && self.parked_timer.is_none() {
            self.parked_timer = Some(ctx.run_later(PARKED_RETRY, |act, ctx| {
                act.parked_timer = None;
                for (_, (op, owner)) in std::mem::take(&mut act.parked) {
                    act.push(op, None, owner);
                }
                act.isolate = true;
                act.schedule(ctx);
            }));
        }
        if self.queue.is_empty() {
            self.finish_drains();
        }
        self.schedule(ctx);
    }

    fn finish_drains(&mut self) {
        if self.queue.is_empty() && !self.flushing {
            for d in self.drains.drain(..) {
                let _ = d.send(());
            }
        }
    }
}

fn op_name(op: &WriteOp) -> &'static str {
    match op {
        WriteOp::Insert(_) => "insert",
        WriteOp::Update(_) => "update",
        WriteOp::DeleteThread(_) => "delete thread",
        WriteOp::Title { .. } => "title",
        WriteOp::Probe { .. } => "probe",
        WriteOp::Fenced(_, op) => op_name(op),
        WriteOp::Renew { .. } => "lease renewal",
    }
}

impl Actor for PersistenceActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Checkpoints arrive from every thread actor (`do_send`, which
        // ignores the capacity); the capacity bounds `send`s, of which
        // there are few (drains).
        ctx.set_mailbox_capacity(4096);
    }
}

impl Handler<Write> for PersistenceActor {
    type Result = ();

    fn handle(&mut self, msg: Write, ctx: &mut Context<Self>) {
        let ack = msg.ack.map(|a| {
            self.acks.push(Some(a));
            self.acks.len() - 1
        });
        for op in msg.ops {
            self.push(op, ack, None);
        }
        self.schedule(ctx);
    }
}

impl Handler<Checkpoint> for PersistenceActor {
    type Result = ();

    fn handle(&mut self, msg: Checkpoint, ctx: &mut Context<Self>) {
        let update = WriteOp::Update(msg.message);
        match msg.fence {
            Some((fence, owner)) => self.push(WriteOp::Fenced(fence, Box::new(update)), None, Some(owner)),
            None => self.push(update, None, None),
        }
        self.schedule(ctx);
    }
}

impl Handler<Drain> for PersistenceActor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Drain, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        self.drains.push(tx);
        if let Some(t) = self.timer.take() {
            ctx.cancel_future(t);
        }
        self.flush(ctx);
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}

mod outcomes;
#[cfg(test)]
mod tests;
