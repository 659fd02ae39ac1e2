//! In-process fan-out over a `tokio::sync::broadcast` ring: the frame is
//! stored once and each reader (a worker's relay) holds only a read
//! position, so memory does not grow with a reader's lag. What is true of
//! locks: the ring itself guards its tail with a mutex and each slot with
//! a read-write lock, each held for a few instructions by the publisher
//! and by a reading relay (never across an await, never waiting for a
//! reader's socket); there is no lock per subscriber.

use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::StreamExt;
use tokio::sync::broadcast;
use tokio_stream::wrappers::{errors::BroadcastStreamRecvError, BroadcastStream};

use uuid::Uuid;

use super::{Fanout, Fanouts, Lagged, Signal, SignalStream};

pub struct LocalFanout {
    id: u64,
    sender: broadcast::Sender<Signal>,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl LocalFanout {
    /// A ring of `capacity` signals.
    pub fn new(capacity: usize) -> Self {
        let (sender, _) = broadcast::channel(capacity.max(2));
        LocalFanout { id: NEXT_ID.fetch_add(1, Ordering::Relaxed), sender }
    }
}

impl Fanout for LocalFanout {
    fn id(&self) -> u64 {
        self.id
    }

    fn publish(&self, signal: Signal) {
        // An error only means nobody listens right now, which is fine: the
        // generation goes on without subscribers.
        let _ = self.sender.send(signal);
    }

    fn subscribe(&self) -> SignalStream {
        Box::pin(BroadcastStream::new(self.sender.subscribe()).map(|item| {
            item.map_err(|e| match e {
                BroadcastStreamRecvError::Lagged(n) => Lagged(n),
            })
        }))
    }

    fn backlog(&self) -> usize {
        self.sender.len()
    }
}

/// Rings of `capacity` signals, one per thread actor.
pub struct LocalFanouts {
    pub capacity: usize,
}

impl Fanouts for LocalFanouts {
    fn open(&self, _: Uuid, _: actix::Recipient<super::Inbound>) -> Box<dyn Fanout> {
        Box::new(LocalFanout::new(self.capacity))
    }
}
