//! The thread actor's side of its fan-out: it gives each broadcast frame
//! the next position of its epoch, encodes it once and publishes it;
//! coalesces presence (at most one `thread.presence` per `PRESENCE_EVERY`,
//! and only when the count changed); and passes on heartbeat ticks and the
//! closing signal. The actor owns the timers; this only keeps the state.

use std::{sync::Arc, time::Duration};

use super::{Fanout, Signal, SignalStream};
use crate::domain::{
    codes::StreamCode,
    event::Event,
    frame::{Frame, StreamPos},
    ui_stream::Context,
};

/// At most one `thread.presence` event per thread this often.
pub const PRESENCE_EVERY: Duration = Duration::from_millis(100);

/// A count that does not change is told the other nodes again this often
/// (its Redis key expires an hour after its last write).
const PRESENCE_REFRESH: Duration = Duration::from_secs(10 * 60);

pub struct Publisher {
    fanout: Box<dyn Fanout>,
    /// The position of the last frame published.
    head: StreamPos,
    /// The subscriber count last published.
    presence_sent: usize,
    /// This node's count last told the other nodes (cluster mode), and
    /// when: a count that does not change is told again now and then, so
    /// that it outlives its key's expiry.
    presence_shared: usize,
    shared_at: std::time::Instant,
    presence_scheduled: bool,
}

impl Publisher {
    /// Publishes into `fanout`, positions in `epoch` (a new owner of the
    /// thread has a higher one).
    pub fn new(fanout: Box<dyn Fanout>, epoch: u64) -> Publisher {
        Publisher {
            fanout,
            head: StreamPos::new(epoch, 0),
            presence_sent: 0,
            presence_shared: usize::MAX,
            shared_at: std::time::Instant::now(),
            presence_scheduled: false,
        }
    }

    /// Encodes `event` once at the next position and publishes it;
    /// `context`: what its UI message stream form needs; `log`: the answer
    /// it belongs to (kept in that answer's log where fan-out spans nodes).
    pub fn publish(&mut self, event: &Event, context: Context, log: Option<uuid::Uuid>) {
        self.head = self.head.next();
        let frame = Arc::new(Frame::encode_in(event, self.head, context));
        match log {
            Some(log) => self.fanout.publish_logged(frame, log),
            None => self.fanout.publish(Signal::Frame(frame)),
        }
    }

    /// Hands a frame another node published to this node's subscribers.
    pub fn relay(&mut self, frame: Arc<Frame>) {
        self.head = self.head.max(frame.pos);
        self.fanout.relay(Signal::Frame(frame));
    }

    /// Tells this node's subscribers `event`, which is not a position
    /// (every node tells its own).
    pub fn notice(&self, event: &Event) {
        self.fanout.relay(Signal::Notice(Arc::new(Frame::encode(event, StreamPos::NONE, false))));
    }

    /// This node now publishes for the thread in `epoch` (a lease's).
    pub fn start_epoch(&mut self, epoch: u64) {
        self.head = self.head.max(StreamPos::new(epoch, 0));
    }

    /// Every subscriber catches up from its cursor.
    pub fn resync(&self) {
        self.fanout.relay(Signal::Resync);
    }

    /// The fan-out itself, for what only spans nodes (presence, commands,
    /// logs).
    pub fn fanout(&self) -> &dyn Fanout {
        self.fanout.as_ref()
    }

    /// The position of the last frame published.
    pub fn head(&self) -> StreamPos {
        self.head
    }

    /// The subscriber count changed. `true`: schedule `flush_presence`
    /// after `PRESENCE_EVERY` (one is not scheduled already), so a crowd
    /// joining or leaving at once is one event, not one per change.
    pub fn presence_changed(&mut self) -> bool {
        !std::mem::replace(&mut self.presence_scheduled, true)
    }

    /// Publishes the count of this moment to this node's subscribers, if
    /// it differs from the last, and tells the other nodes this node's own
    /// count (`local`), if it differs from what they were last told: a
    /// crowd joining at once is one Redis write, not one per tab.
    pub fn flush_presence(&mut self, count: usize, local: usize) {
        self.presence_scheduled = false;
        if local != self.presence_shared {
            self.share(local);
        }
        if count != self.presence_sent {
            self.presence_sent = count;
            self.fanout.relay(Signal::Presence(count));
        }
    }

    fn share(&mut self, local: usize) {
        self.presence_shared = local;
        self.shared_at = std::time::Instant::now();
        self.fanout.share_presence(local);
    }

    /// Half a heartbeat period went by (`local`: this node's subscribers).
    pub fn tick(&mut self, local: usize) {
        self.fanout.relay(Signal::Tick);
        if local > 0 && self.shared_at.elapsed() >= PRESENCE_REFRESH {
            self.share(local);
        }
    }

    /// The thread goes away here: every subscriber on this node gets `code`
    /// and is closed.
    pub fn close(&self, code: StreamCode) {
        self.fanout.relay(Signal::Closed(code));
    }

    /// A new reader of every signal from now on, the ring's id, and how
    /// far the slowest reader is behind.
    pub fn subscribe(&self) -> SignalStream {
        self.fanout.subscribe()
    }

    pub fn id(&self) -> u64 {
        self.fanout.id()
    }

    pub fn backlog(&self) -> usize {
        self.fanout.backlog()
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;
    use uuid::Uuid;

    use super::*;
    use crate::broadcast::local::LocalFanout;

    #[tokio::test]
    async fn frames_get_positions_of_the_epoch_and_presence_is_coalesced() {
        let mut publisher = Publisher::new(Box::new(LocalFanout::new(16)), 7);
        let mut reader = publisher.subscribe();
        let event = Event::Presence { thread_id: Uuid::nil(), cursor: None, subscribers: 0 };
        publisher.publish(&event, Context::default(), None);
        publisher.publish(&event, Context::default(), None);
        assert_eq!(publisher.head(), StreamPos::new(7, 2));
        assert!(publisher.presence_changed(), "the first change schedules a flush");
        assert!(!publisher.presence_changed(), "later ones ride on it");
        publisher.flush_presence(3, 3);
        assert!(publisher.presence_changed());
        publisher.flush_presence(3, 3);
        let mut seen = Vec::new();
        for _ in 0..3 {
            seen.push(match reader.next().await.unwrap().unwrap() {
                Signal::Frame(f) => format!("frame {}", f.pos.seq),
                Signal::Presence(n) => format!("presence {n}"),
                Signal::Notice(f) => format!("notice {}", f.kind.as_str()),
                other => format!("{other:?}"),
            });
        }
        assert_eq!(seen, ["frame 1", "frame 2", "presence 3"], "an unchanged count is not sent again");
    }
}
