//! Allowances that keep one project (or one key) from taking what the
//! others need, and the node from calling the upstream past its cap:
//!
//! - new messages per project per minute (a keyed GCRA limiter from the
//!   `governor` crate; 429 with `Retry-After`);
//! - concurrent generations per project, and on the whole node (the
//!   upstream is never called by more than `--max-generations` at once);
//! - open SSE/WebSocket connections per credential (a project key, and
//!   every stream token minted with it, count as one);
//! - subscribers per thread (SSE, WebSocket and the seed route alike);
//! - bytes WebSocket clients hold (unfinished messages, grown read
//!   buffers), all sockets together
//!   (`ws_guard::Budget`).
//!
//! Concurrency allowances are RAII slots: a generation or a connection
//! holds its `Slot` and gives it back by dropping it, whatever way it ends.
//! The lock is taken only to count, never across an await, and never on
//! the streaming path.

use std::{
    collections::HashMap,
    hash::Hash,
    num::NonZeroU32,
    sync::{Arc, Mutex},
};

use governor::{clock::Clock, DefaultKeyedRateLimiter, Quota, RateLimiter};
use uuid::Uuid;

use crate::config::LimitSettings;

/// Identifies the credential a connection came in with: the first bytes
/// of a project key's hash. Stream tokens carry the one they were minted
/// with.
pub type Credential = [u8; 8];

/// A refused request, each one of the contract's codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("too many new messages for this project; retry in {0} s")]
    PostRate(u64),
    #[error("this project already has {0} generations running; wait for one to finish")]
    ProjectGenerations(usize),
    #[error("the service is at its limit of {0} concurrent generations; retry shortly")]
    NodeGenerations(usize),
    #[error("this key already has {0} open streams")]
    Connections(usize),
    #[error("this thread already has {0} subscribers")]
    Subscribers(usize),
}

impl Refusal {
    /// The contract's code of this refusal.
    pub fn code(&self) -> crate::domain::codes::Code {
        use crate::domain::codes::Code;
        match self {
            Refusal::PostRate(_)
            | Refusal::ProjectGenerations(_)
            | Refusal::Connections(_)
            | Refusal::Subscribers(_) => Code::RateLimited,
            Refusal::NodeGenerations(_) => Code::Unavailable,
        }
    }

    /// Seconds after which a retry may succeed (`Retry-After`).
    pub fn retry_after(&self) -> u64 {
        match self {
            Refusal::PostRate(secs) => *secs,
            _ => 1,
        }
    }
}

/// Counted slots per key, with a cap per key and an optional cap on all
/// keys together. A cap of 0 means no cap.
struct Slots<K> {
    per_key: usize,
    total: usize,
    counts: Mutex<Counts<K>>,
}

struct Counts<K> {
    by_key: HashMap<K, usize>,
    total: usize,
}

/// One taken slot; dropping it gives it back.
pub struct Slot<K: Eq + Hash> {
    slots: Arc<Slots<K>>,
    key: K,
}

impl<K: Eq + Hash> std::fmt::Debug for Slot<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Slot")
    }
}

enum Full {
    Key(usize),
    Total(usize),
}

impl<K: Eq + Hash + Clone> Slots<K> {
    fn new(per_key: usize, total: usize) -> Arc<Self> {
        Arc::new(Slots { per_key, total, counts: Mutex::new(Counts { by_key: HashMap::new(), total: 0 }) })
    }

    fn take(self: &Arc<Self>, key: K) -> Result<Slot<K>, Full> {
        // A poisoned lock only means a panic elsewhere while counting;
        // the counts themselves are still whole.
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if self.total > 0 && counts.total >= self.total {
            return Err(Full::Total(self.total));
        }
        let held = counts.by_key.entry(key.clone()).or_insert(0);
        if self.per_key > 0 && *held >= self.per_key {
            return Err(Full::Key(self.per_key));
        }
        *held += 1;
        counts.total += 1;
        Ok(Slot { slots: self.clone(), key })
    }

    /// A slot counted whatever the caps (a turn already accepted goes on).
    fn take_counted(self: &Arc<Self>, key: K) -> Slot<K> {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        *counts.by_key.entry(key.clone()).or_insert(0) += 1;
        counts.total += 1;
        Slot { slots: self.clone(), key }
    }

    #[cfg(test)]
    fn held(&self, key: &K) -> usize {
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).by_key.get(key).copied().unwrap_or(0)
    }
}

impl<K: Eq + Hash> Drop for Slot<K> {
    fn drop(&mut self) {
        let mut counts = self.slots.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.total = counts.total.saturating_sub(1);
        if let Some(held) = counts.by_key.get_mut(&self.key) {
            *held -= 1;
            if *held == 0 {
                counts.by_key.remove(&self.key);
            }
        }
    }
}

/// The node's allowances, shared by the HTTP layer and the thread actors.
pub struct Capacity {
    posts: Option<DefaultKeyedRateLimiter<Uuid>>,
    generations: Arc<Slots<Uuid>>,
    connections: Arc<Slots<Credential>>,
    subscribers: Arc<Slots<Uuid>>,
    ws_pending: Arc<crate::ws_guard::Budget>,
}

/// A running generation's slot (per project, and on the node).
pub type GenerationSlot = Slot<Uuid>;
/// An open stream's slot (per credential).
pub type ConnectionSlot = Slot<Credential>;
/// A subscriber's place among its thread's (per thread id).
pub type SubscriberSlot = Slot<Uuid>;

impl Capacity {
    pub fn new(limits: &LimitSettings) -> Capacity {
        Capacity {
            posts: NonZeroU32::new(limits.posts_per_minute).map(|n| RateLimiter::keyed(Quota::per_minute(n))),
            generations: Slots::new(limits.max_generations_per_project, limits.max_generations),
            connections: Slots::new(limits.max_connections_per_key, 0),
            subscribers: Slots::new(limits.max_subscribers_per_thread, 0),
            ws_pending: crate::ws_guard::Budget::new(limits.max_ws_pending_bytes),
        }
    }

    /// What WebSocket clients' bytes may hold, all sockets together
    /// (`ws_guard`).
    pub fn ws_budget(&self) -> Arc<crate::ws_guard::Budget> {
        self.ws_pending.clone()
    }

    /// Admits a new generation of `project`: a generation slot, then one
    /// message of the project's rate (not spent when the slot is refused).
    pub fn admit_generation(&self, project: Uuid) -> Result<GenerationSlot, Refusal> {
        let slot = self.generations.take(project).map_err(|full| match full {
            Full::Key(n) => Refusal::ProjectGenerations(n),
            Full::Total(n) => Refusal::NodeGenerations(n),
        })?;
        if let Some(limiter) = &self.posts {
            limiter.check_key(&project).map_err(|not_until| {
                let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
                Refusal::PostRate(wait.as_secs_f64().ceil().max(1.0) as u64)
            })?;
        }
        Ok(slot)
    }

    /// Admits a new stream for `credential` (none for the admin token and
    /// open mode, which are not limited).
    pub fn admit_connection(&self, credential: Option<Credential>) -> Result<Option<ConnectionSlot>, Refusal> {
        let Some(credential) = credential else { return Ok(None) };
        self.connections.take(credential).map(Some).map_err(|full| match full {
            Full::Key(n) | Full::Total(n) => Refusal::Connections(n),
        })
    }

    /// The slot of an answer's next step: counted with the others, never
    /// refused (the caps bound new questions; a turn already accepted
    /// finishes its steps, or its results would be left unanswered).
    pub fn continue_generation(&self, project: Uuid) -> GenerationSlot {
        self.generations.take_counted(project)
    }

    /// The slot of a cut answer continued after a crash or on another
    /// node: refused at the caps like a new answer (the upstream is never
    /// called past them), but not counted against the rate of new
    /// questions.
    pub fn resume_generation(&self, project: Uuid) -> Result<GenerationSlot, Refusal> {
        self.generations.take(project).map_err(|full| match full {
            Full::Key(n) => Refusal::ProjectGenerations(n),
            Full::Total(n) => Refusal::NodeGenerations(n),
        })
    }

    /// Admits one more subscriber of `thread_id`. Counted as it is taken,
    /// so concurrent connects cannot overshoot the cap.
    pub fn admit_subscriber(&self, thread_id: Uuid) -> Result<SubscriberSlot, Refusal> {
        self.subscribers.take(thread_id).map_err(|full| match full {
            Full::Key(n) | Full::Total(n) => Refusal::Subscribers(n),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_capped_per_key_and_in_total_and_come_back_on_drop() {
        let slots = Slots::new(2, 3);
        let a1 = slots.take('a').ok().unwrap();
        let _a2 = slots.take('a').ok().unwrap();
        assert!(matches!(slots.take('a'), Err(Full::Key(2))));
        let _b1 = slots.take('b').ok().unwrap();
        assert!(matches!(slots.take('c'), Err(Full::Total(3))));
        drop(a1);
        assert_eq!(slots.held(&'a'), 1);
        assert!(slots.take('c').is_ok());
    }
}
