//! PersistenceActor: group commit for every thread of the node.
//!
//! Owns the write queue. Thread actors send it `Write` (inserts and
//! deletes, acknowledged after commit) and `Checkpoint` (a message's newest
//! state; only the newest per message matters, so a newer one replaces an
//! older one in place). At most one transaction runs at a time and at most
//! one starts per flush interval; when the queue was idle the first write
//! goes out at once, so a lone POST waits only for its own commit.
//!
//! Faults: when the database is unreachable, waiting inserts are answered
//! with the error (their POST gets a 503) while checkpoints stay queued and
//! are retried each interval until the database returns. When a batch
//! fails for any other reason, its operations are retried one by one so a
//! single bad row cannot sink the others. `Drain` (graceful shutdown)
//! resolves once everything queued so far is written.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Instant,
};

use actix::prelude::*;
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::{
    domain::Message,
    metrics::Metrics,
    store::{Store, StoreError, WriteOp},
};

/// Why acknowledged writes were not committed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    #[error("database unavailable")]
    Unavailable,
    #[error("write rejected by the database: {0}")]
    Rejected(String),
}

impl WriteError {
    fn of(e: &StoreError) -> Self {
        if e.is_unavailable() {
            WriteError::Unavailable
        } else {
            WriteError::Rejected(e.to_string())
        }
    }
}

pub type Ack = oneshot::Sender<Result<(), WriteError>>;

/// Insert or delete rows; `ack` is answered after the commit.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Write {
    pub ops: Vec<WriteOp>,
    pub ack: Option<Ack>,
}

/// The newest state of a message (streaming text, or its final state).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Checkpoint {
    pub message: Message,
}

/// Resolves when everything queued before it is written (or given up).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Drain;

struct Entry {
    op: WriteOp,
    /// Index into `acks` of the write this op belongs to.
    ack: Option<usize>,
}

pub struct PersistenceActor {
    store: Store,
    metrics: Arc<Metrics>,
    /// False while the last write found the database unreachable; new
    /// messages are refused (503) rather than accepted and lost.
    healthy: Arc<AtomicBool>,
    interval: std::time::Duration,
    queue: Vec<Entry>,
    /// Position in `queue` of the pending update of each message.
    updates: HashMap<Uuid, usize>,
    acks: Vec<Option<Ack>>,
    flushing: bool,
    timer: Option<SpawnHandle>,
    last_start: Option<Instant>,
    drains: Vec<oneshot::Sender<()>>,
}

impl PersistenceActor {
    pub fn new(store: Store, metrics: Arc<Metrics>, healthy: Arc<AtomicBool>, interval: std::time::Duration) -> Self {
        PersistenceActor {
            store,
            metrics,
            healthy,
            interval,
            queue: Vec::new(),
            updates: HashMap::new(),
            acks: Vec::new(),
            flushing: false,
            timer: None,
            last_start: None,
            drains: Vec::new(),
        }
    }

    fn push(&mut self, op: WriteOp, ack: Option<usize>) {
        if let WriteOp::Update(m) = &op {
            if let Some(&i) = self.updates.get(&m.id) {
                self.queue[i].op = op;
                return;
            }
            self.updates.insert(m.id, self.queue.len());
        }
        self.queue.push(Entry { op, ack });
        self.metrics.persistence_queue_depth.set(self.queue.len() as i64);
    }

    /// Arms the flush timer: now if the last batch started an interval ago.
    fn schedule(&mut self, ctx: &mut Context<Self>) {
        if self.flushing || self.timer.is_some() || self.queue.is_empty() {
            return;
        }
        let wait = match self.last_start {
            Some(t) => self.interval.saturating_sub(t.elapsed()),
            None => std::time::Duration::ZERO,
        };
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
        let entries = std::mem::take(&mut self.queue);
        let acks = std::mem::take(&mut self.acks);
        self.updates.clear();
        self.metrics.persistence_queue_depth.set(0);
        let store = self.store.clone();
        let metrics = self.metrics.clone();
        let ops: Vec<WriteOp> = entries.iter().map(|e| e.op.clone()).collect();
        let started = Instant::now();
        let fut = async move {
            metrics.persistence_transactions.inc();
            let result = store.write_batch(&ops).await;
            (ops, result, started.elapsed())
        };
        ctx.spawn(fut.into_actor(self).map(move |(ops, result, took), act, ctx| {
            act.finish_batch(entries, acks, ops, result, took, ctx);
        }));
    }

    fn finish_batch(
        &mut self,
        entries: Vec<Entry>,
        mut acks: Vec<Option<Ack>>,
        ops: Vec<WriteOp>,
        result: Result<(), StoreError>,
        took: std::time::Duration,
        ctx: &mut Context<Self>,
    ) {
        match result {
            Ok(()) => {
                if !self.healthy.swap(true, Ordering::Relaxed) {
                    tracing::info!("database reachable again");
                }
                self.record(ops.len(), took);
                for ack in acks.iter_mut().filter_map(Option::take) {
                    let _ = ack.send(Ok(()));
                }
                self.done(ctx);
            }
            Err(e) if e.is_unavailable() => {
                self.healthy.store(false, Ordering::Relaxed);
                self.metrics.persistence_failures.inc();
                tracing::warn!(error.message = %e, rows = ops.len(), "database unavailable; batch kept for retry");
                // Inserts fail fast (their POST answers 503); updates and
                // deletes are retried, behind anything newer for the same row.
                let mut kept = Vec::new();
                for entry in entries {
                    match entry.ack.and_then(|i| acks[i].take()) {
                        Some(ack) => {
                            let _ = ack.send(Err(WriteError::Unavailable));
                        }
                        None if entry.ack.is_none() => kept.push(entry.op),
                        None => {}
                    }
                }
                let newer = std::mem::take(&mut self.queue);
                let newer_updates = std::mem::take(&mut self.updates);
                for op in kept {
                    if let WriteOp::Update(m) = &op {
                        if newer_updates.contains_key(&m.id) {
                            continue;
                        }
                    }
                    self.push(op, None);
                }
                // Newer entries keep their indices into the current `acks`.
                for entry in newer {
                    self.push(entry.op, entry.ack);
                }
                self.flushing = false;
                self.schedule(ctx);
            }
            Err(e) => {
                self.metrics.persistence_failures.inc();
                tracing::error!(error.message = %e, rows = ops.len(), "batch failed; writing its rows one by one");
                let store = self.store.clone();
                let metrics = self.metrics.clone();
                let fut = async move {
                    let mut results = Vec::with_capacity(entries.len());
                    for entry in &entries {
                        metrics.persistence_transactions.inc();
                        results.push(store.write_one(&entry.op).await);
                    }
                    (entries, results)
                };
                ctx.spawn(fut.into_actor(self).map(move |(entries, results), act, ctx| {
                    let mut ok = 0;
                    for (entry, result) in entries.iter().zip(results) {
                        match result {
                            Ok(()) => ok += 1,
                            Err(e) => {
                                tracing::error!(error.message = %e, "row dropped after it failed alone");
                                if let Some(ack) = entry.ack.and_then(|i| acks[i].take()) {
                                    let _ = ack.send(Err(WriteError::of(&e)));
                                }
                            }
                        }
                    }
                    for ack in acks.iter_mut().filter_map(Option::take) {
                        let _ = ack.send(Ok(()));
                    }
                    act.record(ok, took);
                    act.done(ctx);
                }));
            }
        }
    }

    fn record(&self, rows: usize, took: std::time::Duration) {
        self.metrics.persistence_batches.inc();
        self.metrics.persistence_rows.inc_by(rows as u64);
        self.metrics.persistence_last_batch_rows.set(rows as i64);
        self.metrics.persistence_last_batch_seconds.set(took.as_secs_f64());
        self.metrics.persistence_batch_seconds.observe(took.as_secs_f64());
    }

    fn done(&mut self, ctx: &mut Context<Self>) {
        self.flushing = false;
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

impl Actor for PersistenceActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Checkpoints arrive from every thread actor; a roomy mailbox keeps
        // `send` from waiting under bursts.
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
            self.push(op, ack);
        }
        self.schedule(ctx);
    }
}

impl Handler<Checkpoint> for PersistenceActor {
    type Result = ();

    fn handle(&mut self, msg: Checkpoint, ctx: &mut Context<Self>) {
        self.push(WriteOp::Update(msg.message), None);
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
