//! The sender: one task per node, owned by the application, that delivers
//! the outbox at least once.
//!
//! It claims the deliveries that are due (`Store::claim_deliveries`, a
//! lease per claim, so in cluster mode one node sends each and a node that
//! dies leaves its claims to another once their lease ends), up to as many
//! as it has free sending slots (`--notify-concurrency`), and sends each on
//! a task of its own through the channel of its target kind: a slow or
//! dead receiver holds one slot for at most `--notify-timeout-ms`, never
//! another's deliveries, and nothing of the streaming path waits for it.
//! Each attempt is recorded; a failed one is scheduled again after a
//! backoff with jitter, until `--notify-max-attempts`, then `failed`.
//!
//! Nothing polls: the task sleeps until the next delivery falls due (a
//! retry's time, an unwatched delivery's delay, a lease's end), or until
//! it is woken: by a commit that wrote outbox rows (`Store::outbox_wake`),
//! by a retry asked for by hand, by a slot freed, or (cluster mode) by
//! another node's commit, heard through Postgres LISTEN/NOTIFY.

use std::{cell::RefCell, collections::HashMap, rc::Rc, sync::Arc, time::Duration};

use chrono::Utc;
use futures_util::future::LocalBoxFuture;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

use super::{webhook::WebhookChannel, Attempt, Backoff, Channel, Delivery, Sent, TargetKind};
use crate::{
    config::Settings,
    metrics::Metrics,
    store::{outbox::After, Store},
};

/// How many subscribers watch a thread now, on every node.
pub trait Watchers: Send {
    fn watching(&self, thread_id: Uuid) -> LocalBoxFuture<'static, usize>;
}

/// What a claim lasts beyond the time-out of one attempt (recording it,
/// and checking who watches the thread, are quick).
const LEASE_MARGIN: Duration = Duration::from_secs(5);

/// How often ended deliveries past their retention are forgotten.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// The pause after the database failed to answer the sender.
const DB_PAUSE: Duration = Duration::from_secs(1);

pub struct Sender {
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub webhook: WebhookChannel,
    /// Web Push's channel, when push is on.
    pub push: Option<Box<dyn Channel>>,
    pub watchers: Box<dyn Watchers>,
    pub backoff: Backoff,
    pub max_attempts: u32,
    pub timeout: Duration,
    pub concurrency: usize,
    /// Deliveries sent at once to one target.
    pub per_target: usize,
    pub unwatched_delay: Duration,
    /// How long ended deliveries stay in the log.
    pub retention: Duration,
}

impl Sender {
    /// The sender of this node's settings; its push channel is set apart
    /// (`push`), when Web Push is on.
    pub fn new(store: Store, metrics: Arc<Metrics>, settings: &Settings, watchers: Box<dyn Watchers>) -> Sender {
        let notify = &settings.notify;
        Sender {
            webhook: WebhookChannel::new(store.clone(), settings),
            store,
            metrics,
            push: None,
            watchers,
            backoff: notify.backoff(),
            max_attempts: notify.notify_max_attempts,
            timeout: notify.timeout(),
            concurrency: notify.notify_concurrency as usize,
            per_target: notify.notify_per_target as usize,
            unwatched_delay: notify.unwatched_delay(),
            retention: Duration::from_secs(notify.notify_retention_hours.saturating_mul(3600)),
        }
    }

    /// Runs the sender (and, on Postgres, its listener) on the current
    /// arbiter, until the arbiter stops.
    pub fn spawn(self) {
        self.store.listen_outbox();
        actix_rt::spawn(Rc::new(self).run());
    }

    async fn run(self: Rc<Self>) {
        let wake = self.store.outbox_wake();
        let slots = Arc::new(Semaphore::new(self.concurrency));
        // Deliveries in flight per target.
        let sending: Rc<RefCell<HashMap<Uuid, usize>>> = Rc::default();
        let lease = self.timeout + LEASE_MARGIN;
        let mut pruned: Option<std::time::Instant> = None;
        loop {
            if pruned.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
                pruned = Some(std::time::Instant::now());
                // (A retention too long for a date keeps everything.)
                let before =
                    chrono::Duration::from_std(self.retention).ok().and_then(|r| Utc::now().checked_sub_signed(r));
                match self.store.prune_outbox(before.unwrap_or(chrono::DateTime::<Utc>::MIN_UTC)).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(
                        deliveries = n,
                        "ended notification deliveries past their retention are forgotten"
                    ),
                    Err(e) => tracing::warn!(error.message = %e, "the outbox could not be pruned"),
                }
            }
            let free = slots.available_permits();
            if free == 0 {
                // Every slot sends: a freed one wakes the task.
                wake.notified().await;
                continue;
            }
            let busy = self.busy(&sending);
            let claimed = match self.store.claim_deliveries(free as u64, lease, self.unwatched_delay, &busy).await {
                Ok(batch) => {
                    let mut started = 0;
                    let mut released = false;
                    for delivery in batch {
                        let target = delivery.target_id;
                        if sending.borrow().get(&target).is_some_and(|&n| n >= self.per_target) {
                            // (Over its target's share: left to the next round.)
                            let _ = self.store.release_delivery(&delivery).await;
                            released = true;
                            continue;
                        }
                        started += 1;
                        *sending.borrow_mut().entry(target).or_default() += 1;
                        let slot = slots.clone().try_acquire_owned().expect("a free slot was counted");
                        let (this, sending) = (self.clone(), sending.clone());
                        actix_rt::spawn(async move {
                            this.attempt(delivery, slot).await;
                            let mut sending = sending.borrow_mut();
                            if let Some(n) = sending.get_mut(&target) {
                                *n -= 1;
                                if *n == 0 {
                                    sending.remove(&target);
                                }
                            }
                        });
                    }
                    if released {
                        // Claimed again at once, without that target.
                        continue;
                    }
                    started
                }
                Err(e) => {
                    tracing::warn!(error.message = %e, "the outbox could not be read; trying again");
                    tokio::time::sleep(DB_PAUSE).await;
                    continue;
                }
            };
            self.measure().await;
            if claimed > 0 && claimed == free {
                // (There may be more due: claimed again once slots free.)
                wake.notified().await;
                continue;
            }
            let busy = self.busy(&sending);
            let wait = match self.store.next_delivery_due(self.unwatched_delay, &busy).await {
                Ok(Some(at)) => (at - Utc::now()).to_std().unwrap_or_default(),
                Ok(None) => Duration::MAX,
                Err(_) => DB_PAUSE,
            };
            // Due now but not claimable (claimed by this node, in flight):
            // a freed slot or its lease's end wakes the task.
            let wait = if wait.is_zero() && claimed == 0 { lease.min(Duration::from_millis(100)) } else { wait };
            tokio::select! {
                _ = wake.notified() => {}
                // (At most until the next pruning.)
                _ = tokio::time::sleep(wait.min(PRUNE_EVERY)) => {}
            }
        }
    }

    /// The targets this node sends its share to now.
    fn busy(&self, sending: &RefCell<HashMap<Uuid, usize>>) -> Vec<Uuid> {
        sending.borrow().iter().filter(|(_, &n)| n >= self.per_target).map(|(&t, _)| t).collect()
    }

    /// The outbox gauges: pending deliveries, and the oldest one's age.
    async fn measure(&self) {
        if let Ok(depth) = self.store.outbox_depth().await {
            self.metrics.outbox_depth.set(depth.pending as i64);
            let age = depth.oldest.map_or(0.0, |at| (Utc::now() - at).num_milliseconds().max(0) as f64 / 1000.0);
            self.metrics.outbox_oldest_seconds.set(age);
        }
    }

    /// One attempt of a claimed delivery, recorded; its slot is freed after.
    async fn attempt(self: Rc<Self>, delivery: Delivery, slot: OwnedSemaphorePermit) {
        self.metrics.notifications_in_flight.inc();
        self.clone().attempt_claimed(delivery).await;
        self.metrics.notifications_in_flight.dec();
        drop(slot);
        self.store.outbox_wake().notify_one();
    }

    async fn attempt_claimed(self: Rc<Self>, delivery: Delivery) {
        if delivery.unwatched && delivery.attempts == 0 {
            let watching = self.watchers.watching(delivery.thread_id).await;
            if watching > 0 {
                tracing::debug!(delivery_id = %delivery.id, watching, "not sent: the thread is watched");
                if let Err(e) = self.store.drop_delivery(&delivery).await {
                    tracing::warn!(delivery_id = %delivery.id, error.message = %e, "a delivery could not be dropped");
                }
                return;
            }
        }
        let at = Utc::now();
        let sent = match delivery.target_kind {
            TargetKind::Webhook => self.webhook.send(&delivery).await,
            TargetKind::Push => match &self.push {
                Some(push) => push.send(&delivery).await,
                None => Sent::Failed { status_code: None, error: "Web Push is off on this node".into() },
            },
        };
        let number = delivery.attempts + 1;
        let (attempt, after) = match sent {
            Sent::Gone => {
                tracing::info!(delivery_id = %delivery.id, "its target is gone; the delivery is dropped");
                let _ = self.store.drop_delivery(&delivery).await;
                return;
            }
            Sent::Delivered { status_code } => {
                self.metrics.notifications_sent.inc();
                (Attempt { at, status_code: Some(status_code), error: None }, After::Delivered)
            }
            Sent::Failed { status_code, error } => {
                let attempt = Attempt { at, status_code, error: Some(error) };
                if number >= self.max_attempts {
                    self.metrics.notifications_failed.inc();
                    tracing::warn!(delivery_id = %delivery.id, attempts = number, error = ?attempt.error,
                        "a notification failed its last attempt");
                    (attempt, After::Failed)
                } else {
                    self.metrics.notifications_retried.inc();
                    let next = Utc::now() + chrono::Duration::from_std(self.backoff.wait(number)).unwrap_or_default();
                    tracing::debug!(delivery_id = %delivery.id, attempts = number, error = ?attempt.error,
                        next_attempt_at = %next, "a notification attempt failed");
                    (attempt, After::Retry(next))
                }
            }
        };
        match self.store.record_attempt(&delivery, attempt, after).await {
            Ok(true) => {}
            Ok(false) => tracing::warn!(delivery_id = %delivery.id, "an attempt ended after its claim's lease"),
            Err(e) => tracing::warn!(delivery_id = %delivery.id, error.message = %e,
                "an attempt could not be recorded; it is tried again after its lease"),
        }
    }
}

/// The subscribers of a thread: this node's (its live thread actor's)
/// and, in cluster mode, the other live nodes' (their presence counts in
/// Redis, the ones `thread.presence` sums).
pub struct LiveWatchers {
    pub registry: actix::Addr<crate::actors::registry::Registry>,
    pub bus: Option<Arc<crate::broadcast::redis::Bus>>,
}

impl Watchers for LiveWatchers {
    fn watching(&self, thread_id: Uuid) -> LocalBoxFuture<'static, usize> {
        let (registry, bus) = (self.registry.clone(), self.bus.clone());
        Box::pin(async move {
            let here = match registry.send(crate::actors::registry::Peek { thread_id }).await {
                Ok(Some(actor)) => {
                    actor.send(crate::actors::thread::ThreadStatusQuery).await.map_or(0, |r| r.subscribers)
                }
                _ => 0,
            };
            let elsewhere: usize = match bus {
                Some(bus) => bus.presence(thread_id).await.unwrap_or_default().iter().map(|(_, n)| n).sum(),
                None => 0,
            };
            here + elsewhere
        })
    }
}
