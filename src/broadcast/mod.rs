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
//! - `local`: the in-process ring; `redis/`: the same seam across nodes.
//!
//! This is the thread's side (everything here is `Send`); what reads the
//! fan-out on each HTTP worker and writes to subscribers is
//! `crate::delivery`.
//!
//! Publishing never waits for a reader and does no per-subscriber work:
//! one shared frame, one ring. A reader (a relay) that falls further
//! behind than the ring holds is told `Lagged`, and its subscribers catch
//! up from their cursors instead.

pub mod local;
pub mod publisher;
pub mod redis;

use std::{pin::Pin, sync::Arc};

use actix::{Message, Recipient};
use futures_util::{
    future::{ready, BoxFuture},
    FutureExt, Stream,
};
use uuid::Uuid;

use crate::domain::{codes::StreamCode, frame::Frame};

/// Frames a subscriber missed (its replay, or a catch-up), and the
/// broadcast position they bring it up to.
pub struct Missed {
    pub frames: Vec<Frame>,
    pub head: crate::domain::frame::StreamPos,
}

/// What a thread actor tells its subscribers.
#[derive(Debug, Clone)]
pub enum Signal {
    /// A positional event, already encoded.
    Frame(Arc<Frame>),
    /// The number of live subscribers changed.
    Presence(usize),
    /// A non-positional event for every subscriber on this node
    /// (`thread.updated`), encoded once.
    Notice(Arc<Frame>),
    /// The thread is going away; subscribers get this `error` and close.
    Closed(StreamCode),
    /// Half a heartbeat period went by: each subscriber sends a keep-alive
    /// if it wrote nothing meanwhile. One timer per thread, not one per
    /// subscriber (10,000 subscribers would be 10,000 timers).
    Tick,
    /// The thread's conversation was loaded again (it had missed frames
    /// from another node): every subscriber catches up from its cursor.
    Resync,
}

/// What reaches a thread actor from the thread's other nodes.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub enum Inbound {
    /// A frame the thread's owner published.
    Frame(Arc<Frame>),
    /// Another node's count of the thread's subscribers.
    Presence {
        node: String,
        count: usize,
    },
    Command(Command),
    /// The connection to the other nodes was lost: frames may be missed.
    Lost,
}

/// What any node may ask of the thread's owner (or tell every node).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Cancel the running answer (its owner does).
    Cancel,
    /// The thread was deleted: every node stops its actor.
    Deleted,
    /// An operator stopped the thread: every node stops its actor.
    Stopped,
    /// The owner let go of the lease of this epoch: its answer's final
    /// state is committed (a question waiting for it may take the lease),
    /// or, if the answer still runs, its owner gave it up (any node may
    /// end it now).
    Released { epoch: u64 },
    /// The thread's settings changed: every node reads them again.
    ThreadChanged,
}

impl Command {
    /// The command's bytes on a thread's channel: a tag, then an epoch
    /// for the commands that carry one.
    fn encode(self) -> Vec<u8> {
        let (tag, epoch) = match self {
            Command::Cancel => (b'c', None),
            Command::Deleted => (b'd', None),
            Command::Stopped => (b's', None),
            Command::Released { epoch } => (b'r', Some(epoch)),
            Command::ThreadChanged => (b'u', None),
        };
        let mut bytes = vec![tag];
        bytes.extend(epoch.map(u64::to_be_bytes).unwrap_or_default());
        bytes
    }

    fn decode(bytes: &[u8]) -> Option<Command> {
        let (&tag, rest) = bytes.split_first()?;
        let epoch = || rest.try_into().ok().map(u64::from_be_bytes);
        Some(match tag {
            b'c' => Command::Cancel,
            b'd' => Command::Deleted,
            b's' => Command::Stopped,
            b'r' => Command::Released { epoch: epoch()? },
            b'u' => Command::ThreadChanged,
            _ => return None,
        })
    }
}

/// Why a subscriber's stream skipped signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lagged(pub u64);

pub type SignalStream = Pin<Box<dyn Stream<Item = Result<Signal, Lagged>> + Send>>;

/// One thread's fan-out.
pub trait Fanout: Send + 'static {
    /// Unique in this process: names the ring to the workers' relays.
    fn id(&self) -> u64;
    /// From the thread's owner: hands `signal` to every reader, on every
    /// node, without waiting.
    fn publish(&self, signal: Signal);
    /// As `publish`, for a frame of the answer `log` (kept in the answer's
    /// log where fan-out spans nodes).
    fn publish_logged(&self, frame: Arc<Frame>, log: Uuid) {
        let _ = log;
        self.publish(Signal::Frame(frame));
    }
    /// Hands `signal` to this node's readers only (a frame another node
    /// published, a tick, a presence count).
    fn relay(&self, signal: Signal) {
        self.publish(signal);
    }
    /// A new reader's stream: every signal published from now on.
    fn subscribe(&self) -> SignalStream;
    /// Signals retained for the slowest reader.
    fn backlog(&self) -> usize;
    /// Tells the other nodes this node's count of the thread's subscribers.
    fn share_presence(&self, count: usize) {
        let _ = count;
    }
    /// Sends `command` to the thread's other nodes.
    fn command(&self, command: Command) {
        let _ = command;
    }
    /// Answer `message`'s final state is committed: what is kept to
    /// replay it between nodes is needed only briefly now.
    fn settled(&self, message: Uuid) {
        let _ = message;
    }
    /// Resolves once other nodes' signals for the thread reach its inbox.
    fn ready(&self) -> BoxFuture<'static, Result<(), String>> {
        ready(Ok(())).boxed()
    }
    /// Whether other nodes' signals reach this node now (a mirror serves
    /// nothing while they do not).
    fn linked(&self) -> bool {
        true
    }
    /// Every frame kept for answer `message`, in order.
    fn log(&self, message: Uuid) -> BoxFuture<'static, Result<Vec<Frame>, String>> {
        let _ = message;
        ready(Ok(Vec::new())).boxed()
    }
    /// Other nodes' counts of the thread's subscribers, as last told.
    fn presence(&self) -> BoxFuture<'static, Vec<(String, usize)>> {
        ready(Vec::new()).boxed()
    }
}

/// Where thread actors get their fan-out: the seam's other half.
pub trait Fanouts: Send + Sync + 'static {
    /// The fan-out of `thread_id` for a new thread actor, which gets what
    /// other nodes send the thread in `inbox`.
    fn open(&self, thread_id: Uuid, inbox: Recipient<Inbound>) -> Box<dyn Fanout>;
}

#[cfg(test)]
mod tests {
    use super::Command;

    #[test]
    fn commands_round_trip_through_their_bytes() {
        for command in [
            Command::Cancel,
            Command::Deleted,
            Command::Stopped,
            Command::Released { epoch: 7 },
            Command::Released { epoch: u64::MAX },
        ] {
            assert_eq!(Command::decode(&command.encode()), Some(command));
        }
        assert_eq!(Command::decode(b"r12"), None, "an epoch is eight bytes");
        assert_eq!(Command::decode(b""), None);
    }
}
