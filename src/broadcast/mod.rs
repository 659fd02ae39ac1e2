//! The fan-out seam. A thread actor publishes `Signal`s into its thread's
//! fan-out (`Fanout`), which it gets from its dependencies (`Fanouts`) and
//! never names; on each HTTP worker a relay reads it and writes to that
//! worker's subscribers, each at the pace of its own socket. Nothing
//! outside this module knows whether fan-out is in-process or spans
//! nodes: `local` is the in-process implementation, and a Redis-backed one
//! plugs in behind the same two traits. Frames carry positions that
//! survive a change of owner (`StreamPos`: epoch, then sequence) and can be
//! rebuilt from their bytes on another node (`Frame::to_wire`).
//!
//! - `publisher`: the thread actor's side: positions, presence coalescing,
//!   heartbeat ticks.
//! - `relay`: one per thread per worker; `subscriber`: one subscriber's
//!   pipe and position; `delivery`: its states and their transitions;
//!   `catch_up`: how one that fell behind comes level again.
//!
//! Publishing never waits for a reader and does no per-subscriber work:
//! one shared frame, one ring. A reader (a relay) that falls further
//! behind than the ring holds is told `Lagged`, and its subscribers catch
//! up from their cursors instead.

pub mod catch_up;
pub mod delivery;
pub mod local;
pub mod publisher;
pub mod relay;
pub mod subscriber;

use std::{pin::Pin, sync::Arc};

use futures_util::Stream;
use uuid::Uuid;

use crate::domain::{codes::StreamCode, frame::Frame};

/// What a thread actor tells its subscribers.
#[derive(Debug, Clone)]
pub enum Signal {
    /// A positional event, already encoded.
    Frame(Arc<Frame>),
    /// The number of live subscribers changed.
    Presence(usize),
    /// The thread is going away; subscribers get this `error` and close.
    Closed(StreamCode),
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

/// Where thread actors get their fan-out: the seam's other half.
pub trait Fanouts: Send + Sync + 'static {
    /// The fan-out of `thread_id` for a new thread actor.
    fn open(&self, thread_id: Uuid) -> Box<dyn Fanout>;
}
