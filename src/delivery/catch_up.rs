//! How a subscriber that is joining or behind comes level with its relay:
//! write what it was given (its replay, or a catch-up) as the pipe makes
//! room, then ask the thread for what follows its cursor (one coalesced
//! delta per block) and repeat, until `Delivery::caught_up` says it is
//! live. The session actor runs this, one at a time per subscriber; the
//! thread is asked through `ask`, so nothing here knows actors.

use std::{future::Future, rc::Rc, time::Duration};

use super::subscriber::{Stall, Subscriber};
pub use crate::broadcast::Missed;
use crate::{
    domain::{codes::EventKind, cursor::Cursor},
    metrics::Metrics,
};

/// Why a catch-up ended without the subscriber being live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupted {
    Stall(Stall),
    /// The thread could not be asked: its actor went away.
    ThreadGone,
    /// The seed route's answer is complete.
    Done,
}

/// Writes `first` (bringing `subscriber` up to `first.head`), then rounds
/// of `ask(cursor)` until the subscriber is live. A write waits at most
/// `patience` for room (then `Stall::Slow`).
pub async fn run<F, Fut>(
    subscriber: Rc<Subscriber>,
    first: Missed,
    patience: Duration,
    metrics: &Metrics,
    ask: F,
) -> Result<(), Interrupted>
where
    F: Fn(Option<Cursor>) -> Fut,
    Fut: Future<Output = Option<Missed>>,
{
    let mut missed = first;
    loop {
        for frame in &missed.frames {
            subscriber.write(frame, patience).await.map_err(Interrupted::Stall)?;
            if frame.kind == EventKind::MessageDelta {
                metrics.chunks_out.inc();
            }
            if subscriber.completes(frame) {
                return Err(Interrupted::Done);
            }
        }
        if subscriber.caught_up(missed.head) {
            return Ok(());
        }
        subscriber.room(patience).await.map_err(Interrupted::Stall)?;
        missed = ask(subscriber.cursor()).await.ok_or(Interrupted::ThreadGone)?;
    }
}
