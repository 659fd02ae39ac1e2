//! The fan-out seam. A thread actor publishes `Signal`s into a ring; on
//! each HTTP worker a relay reads it and writes to that worker's
//! subscribers, each at the pace of its own socket. Nothing outside this module knows
//! whether fan-out is in-process or spans nodes: a Redis-backed
//! implementation of `Fanout` is the planned second one.
//!
//! Publishing never waits and does no per-subscriber work: one shared
//! frame, one ring. A reader (a relay) that falls further behind than the
//! ring holds is told `Lagged`, and its subscribers catch up from their
//! cursors instead.
//!
//! The readers of a ring are relays (`relay`), one per HTTP worker that has
//! subscribers of the thread, each handing frames to its local subscribers.

pub mod local;
pub mod relay;

use std::{pin::Pin, sync::Arc};

use futures_util::Stream;

use crate::domain::frame::Frame;

/// What a thread actor tells its subscribers.
#[derive(Debug, Clone)]
pub enum Signal {
    /// A positional event, already encoded.
    Frame(Arc<Frame>),
    /// The number of live subscribers changed.
    Presence(usize),
    /// The thread is going away; subscribers get this `error` and close.
    Closed { code: &'static str, message: &'static str },
    /// Half a heartbeat period went by: each subscriber sends a keep-alive
    /// if it wrote nothing meanwhile. One timer per thread, not one per
    /// subscriber (10,000 subscribers would be 10,000 timers).
    Tick,
}

/// Why a subscriber's stream skipped signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lagged(pub u64);

pub type SignalStream = Pin<Box<dyn Stream<Item = Result<Signal, Lagged>> + Send>>;

/// One thread's fan-out.
pub trait Fanout: Send + 'static {
    /// Unique in this process: names the ring to the workers' relays.
    fn id(&self) -> u64;
    /// Hands `signal` to every reader without waiting.
    fn publish(&self, signal: Signal);
    /// A new reader's stream: every signal published from now on.
    fn subscribe(&self) -> SignalStream;
    /// Signals retained for the slowest reader.
    fn backlog(&self) -> usize;
}
