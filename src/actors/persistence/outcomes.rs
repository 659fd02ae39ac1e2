//! What the persistence actor does with a batch's outcome: a commit (with
//! the ops its fences refused, whose owners are told), a refusal for one
//! row's content (the batch is written again with each op in its own
//! savepoint, and only that row is set aside, never a message's state), or
//! a database that cannot write (the batch is kept and retried with
//! backoff; nothing accepted is dropped).

use super::*;

impl PersistenceActor {
    /// The batch committed, but for the ops its outcomes report.
    pub(super) fn committed(&mut self, mut batch: Batch, outcomes: Vec<Outcome>, took: Duration) {
        if !self.healthy.swap(true, Ordering::Relaxed) {
            tracing::info!(failed_attempts = self.failures, "the database takes writes again");
        }
        self.failures = 0;
        self.isolate = false;
        let mut rows = 0;
        for (entry, outcome) in batch.entries.iter().zip(outcomes) {
            match outcome {
                Outcome::Done => {
                    rows += usize::from(!matches!(entry.op, WriteOp::Probe { .. } | WriteOp::Renew { .. }))
                }
                Outcome::Refused(e) => self.set_aside(entry, &mut batch.acks, &e),
                Outcome::Fenced => {
                    if let Some(ack) = entry.ack.and_then(|i| batch.acks[i].take()) {
                        let _ = ack.send(Err(WriteError::Fenced));
                    }
                    if let (Some(owner), WriteOp::Fenced(fence, _) | WriteOp::Renew { fence, .. }) =
                        (&entry.owner, &entry.op)
                    {
                        tracing::warn!(thread_id = %fence.thread_id, epoch = fence.epoch,
                            "a write of a lost lease was refused");
                        owner.do_send(LeaseLost { fence: fence.clone() });
                    }
                }
            }
        }
        self.record(rows, took);
        for ack in batch.acks.iter_mut().filter_map(Option::take) {
            let _ = ack.send(Ok(()));
        }
    }

    /// An op the database refused for its content, alone in its savepoint.
    fn set_aside(&mut self, entry: &Entry, acks: &mut [Option<Ack>], e: &StoreError) {
        self.metrics.persistence_rows_rejected.inc();
        match entry.op.inner() {
            WriteOp::Update(m) => {
                tracing::error!(message_id = %m.id, error.message = %e,
                    "the database refused a message's state; kept and retried every {} s", PARKED_RETRY.as_secs());
                self.parked.insert(m.id, (entry.op.clone(), entry.owner.clone()));
            }
            op => {
                tracing::error!(op = ?op_name(op), error.message = %e, "the database refused a row; its write failed");
                if let Some(ack) = entry.ack.and_then(|i| acks[i].take()) {
                    let _ = ack.send(Err(WriteError::Rejected(e.to_string())));
                }
            }
        }
    }

    /// The whole batch failed because a row was refused for its content:
    /// written again, op by op in savepoints, in the next interval.
    pub(super) fn refused(&mut self, batch: Batch, e: &StoreError) {
        self.metrics.persistence_failures.inc();
        tracing::warn!(error.message = %e, rows = batch.entries.len(),
            "the database refused a row of a batch; the next batch isolates each row");
        self.isolate = true;
        self.requeue(batch.entries, batch.acks);
    }

    /// The database cannot write now: keep the batch and try again later.
    pub(super) fn cannot_write(&mut self, batch: Batch, e: &StoreError) {
        self.metrics.persistence_failures.inc();
        self.failures += 1;
        if self.healthy.swap(false, Ordering::Relaxed) {
            tracing::warn!(error.message = %e, rows = batch.entries.len(),
                "the database does not take writes; the batch is kept and retried, new messages are refused");
        } else {
            tracing::debug!(error.message = %e, attempt = self.failures, "the database still does not take writes");
        }
        let Batch { entries, mut acks, .. } = batch;
        // A POST still waiting for its inserts is answered now (503): it
        // was promised nothing, and it need not wait for the database.
        let mut answered = vec![false; acks.len()];
        for entry in &entries {
            if let (WriteOp::Insert(_), Some(i)) = (entry.op.inner(), entry.ack) {
                if let Some(ack) = acks[i].take() {
                    let _ = ack.send(Err(WriteError::Unavailable));
                }
                answered[i] = true;
            }
        }
        let kept = entries
            .into_iter()
            .filter(|e| !matches!(e.op, WriteOp::Probe { .. }) && !e.ack.is_some_and(|i| answered[i]))
            .collect();
        self.requeue(kept, acks);
        if self.queue.is_empty() {
            self.push(WriteOp::Probe { node_id: self.node_id.clone() }, None, None);
        }
    }

    /// Puts `entries` back ahead of what was queued meanwhile; a newer
    /// state of the same message wins over a kept one.
    fn requeue(&mut self, entries: Vec<Entry>, mut acks: Vec<Option<Ack>>) {
        let newer = std::mem::take(&mut self.queue);
        let newer_updates = std::mem::take(&mut self.updates);
        let newer_acks = std::mem::take(&mut self.acks);
        let mut moved: HashMap<usize, usize> = HashMap::new();
        for entry in entries {
            if let WriteOp::Update(m) = entry.op.inner() {
                if newer_updates.contains_key(&m.id) {
                    continue;
                }
            }
            let ack = entry.ack.and_then(|i| match moved.get(&i) {
                Some(&j) => Some(j),
                None => {
                    let ack = acks[i].take()?;
                    self.acks.push(Some(ack));
                    moved.insert(i, self.acks.len() - 1);
                    Some(self.acks.len() - 1)
                }
            });
            self.push(entry.op, ack, entry.owner);
        }
        let offset = self.acks.len();
        self.acks.extend(newer_acks);
        for entry in newer {
            self.push(entry.op, entry.ack.map(|i| i + offset), entry.owner);
        }
    }
}
