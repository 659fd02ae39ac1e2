//! The worker side of fan-out: one relay per thread per HTTP worker.
//!
//! A thread actor publishes each frame once into its ring (`Fanout`). On
//! every HTTP worker that has subscribers of that thread, one relay task
//! reads the ring and hands the frame to each local subscriber's response
//! pipe (`crate::pipe`): per chunk, one wake-up per worker instead of one
//! per subscriber, and no session actor runs at all while a subscriber
//! keeps up. Everything here lives on the worker's thread (`Rc`, no locks).
//!
//! A subscriber (`Subscriber`) is its pipe plus its position: the sequence
//! number and cursor of the last frame written to it. The relay writes only
//! while the pipe has room. When it has none, the relay drops that frame
//! for this subscriber, marks it *behind* and tells its session actor
//! (`Notice::Behind`), which waits for room (closing a slow consumer that
//! gives none) and catches up from the cursor with the thread actor, while
//! the relay keeps noting the highest frame it skipped. Nothing queues per
//! subscriber beyond its small pipe, and no timer runs per subscriber:
//! heartbeats follow the thread's `Tick`.

use std::{
    cell::{Cell, RefCell},
    collections::HashMap,
    rc::Rc,
    sync::Arc,
    time::{Duration, Instant},
};

use actix::{Message, Recipient};
use actix_http::ws::{CloseCode, OpCode};
use bytes::Bytes;
use futures_util::StreamExt;
use uuid::Uuid;

use super::{Lagged, Signal, SignalStream};
use crate::{
    domain::{
        cursor::Cursor,
        event::Event,
        frame::{seed_error, ws_close, ws_frame, Frame, SSE_KEEP_ALIVE},
    },
    metrics::Metrics,
    pipe::{At, PipeWriter, TrySendError},
};

/// The closing `error` when a subscriber's thread actor went away.
pub const THREAD_STOPPED: (&str, &str) = ("thread_stopped", "the thread is no longer live; reconnect to resume");

/// What a subscriber's session actor must act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub enum Notice {
    /// Frames were skipped for it: catch up from its cursor.
    Behind,
    /// Its client went away.
    Gone,
    /// Its thread closed; the closing `error` is already written.
    Closed,
    /// The seed route's answer is complete.
    Done,
    /// Its WebSocket peer has been silent too long.
    Silent,
}

/// How a subscriber's frames are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    Sse,
    Ws,
    /// The seed route: only this message's text, in its own wire format.
    Seed(Uuid),
}

/// Why a waiting write gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stall {
    /// No room within the allowed time: a slow consumer.
    Slow,
    /// The client went away.
    Gone,
}

struct Position {
    /// Sequence number of the last broadcast frame written (or covered by
    /// a catch-up).
    last_seq: u64,
    /// Cursor of the last positional frame written.
    cursor: Option<Cursor>,
    /// Frames are being skipped; the session catches up.
    behind: bool,
    /// The highest frame skipped while behind.
    skipped_seq: u64,
    /// Skipped frames of unknown number (the relay itself lagged): one
    /// more catch-up round is owed whatever the sequence numbers say.
    round_owed: bool,
    /// Something was written since the last heartbeat tick.
    wrote_since_tick: bool,
    /// When the WebSocket peer last sent anything.
    last_heard: Instant,
    /// A subscriber count that came while behind (or found the pipe
    /// full), written when the subscriber is live again.
    presence_owed: Option<usize>,
}

/// One subscriber's delivery state, shared by its session actor and the
/// relay of its worker.
pub struct Subscriber {
    pub session_id: u64,
    thread_id: Uuid,
    wire: Wire,
    pipe: PipeWriter,
    notice: Recipient<Notice>,
    /// WebSocket only: a peer silent this long is dead.
    peer_timeout: Option<Duration>,
    /// The cursor it subscribed from: its position before any frame.
    start: Option<Cursor>,
    position: RefCell<Position>,
}

/// What `try_write` did with a frame.
pub enum Written {
    Yes,
    /// Not for this subscriber's wire.
    NotForThisWire,
    Full,
    Gone,
}

impl Subscriber {
    pub fn new(
        session_id: u64,
        thread_id: Uuid,
        wire: Wire,
        pipe: PipeWriter,
        notice: Recipient<Notice>,
        peer_timeout: Option<Duration>,
        from: Option<Cursor>,
    ) -> Self {
        Subscriber {
            session_id,
            thread_id,
            wire,
            pipe,
            notice,
            peer_timeout,
            start: from,
            position: RefCell::new(Position {
                last_seq: 0,
                cursor: from,
                behind: true,
                skipped_seq: 0,
                round_owed: false,
                wrote_since_tick: false,
                last_heard: Instant::now(),
                presence_owed: None,
            }),
        }
    }

    pub fn wire(&self) -> Wire {
        self.wire
    }

    /// The cursor of the last positional frame written.
    pub fn cursor(&self) -> Option<Cursor> {
        self.position.borrow().cursor
    }

    /// The WebSocket peer sent something.
    pub fn heard(&self) {
        self.position.borrow_mut().last_heard = Instant::now();
    }

    /// What this wire writes for `frame`, or `None` to skip it.
    fn payload(&self, frame: &Frame) -> Option<Bytes> {
        match self.wire {
            Wire::Sse => Some(frame.sse.clone()),
            Wire::Ws => Some(frame.ws.clone()),
            Wire::Seed(message_id) => {
                let mine = frame.cursor.is_some_and(|c| c.message_id == message_id);
                frame.seed.clone().filter(|_| mine)
            }
        }
    }

    /// Whether `frame` ends what this subscriber came for (the seed route's
    /// answer).
    pub fn completes(&self, frame: &Frame) -> bool {
        let Wire::Seed(message_id) = self.wire else { return false };
        frame.kind == "message.completed" && frame.cursor.is_some_and(|c| c.message_id == message_id)
    }

    /// Where `frame` moves this subscriber, if it is a position: `ready`
    /// says where it starts (none: before the first message of an empty
    /// thread); message events move it on. `error` and `thread.presence`
    /// carry the cursor but are not positions.
    fn moves_to(frame: &Frame) -> Option<At> {
        match frame.kind {
            "ready" => Some(frame.cursor),
            kind if kind.starts_with("message.") && frame.cursor.is_some() => Some(frame.cursor),
            _ => None,
        }
    }

    fn wrote(&self, frame: &Frame) {
        let mut position = self.position.borrow_mut();
        if let Some(at) = Self::moves_to(frame) {
            position.cursor = at;
        }
        position.last_seq = position.last_seq.max(frame.seq);
        position.wrote_since_tick = true;
    }

    /// Writes `frame` if the pipe has room, without waiting.
    pub fn try_write(&self, frame: &Frame) -> Written {
        let Some(bytes) = self.payload(frame) else { return Written::NotForThisWire };
        match self.pipe.try_send_at(bytes, Self::moves_to(frame)) {
            Ok(()) => {
                self.wrote(frame);
                Written::Yes
            }
            Err(TrySendError::Full(_)) => Written::Full,
            Err(TrySendError::Closed(_)) => Written::Gone,
        }
    }

    /// Writes `frame`, waiting up to `patience` for room.
    pub async fn write(&self, frame: &Frame, patience: Duration) -> Result<(), Stall> {
        let Some(bytes) = self.payload(frame) else { return Ok(()) };
        match tokio::time::timeout(patience, self.pipe.send_at(bytes, Self::moves_to(frame))).await {
            Ok(Ok(())) => {
                self.wrote(frame);
                Ok(())
            }
            Ok(Err(())) => Err(Stall::Gone),
            Err(_) => Err(Stall::Slow),
        }
    }

    /// Writes bytes outside the thread's order (a keep-alive, a pong, an
    /// event for this subscriber alone), if there is room.
    pub fn try_send(&self, bytes: Bytes) -> Result<(), TrySendError> {
        self.pipe.try_send(bytes)?;
        self.position.borrow_mut().wrote_since_tick = true;
        Ok(())
    }

    /// Waits up to `patience` for room in the pipe.
    pub async fn room(&self, patience: Duration) -> Result<(), Stall> {
        match tokio::time::timeout(patience, self.pipe.ready()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(())) => Err(Stall::Gone),
            Err(_) => Err(Stall::Slow),
        }
    }

    /// Resolves when the client has gone away.
    pub async fn gone(&self) {
        self.pipe.closed().await
    }

    /// The closing `error` (and, on a WebSocket, a close frame), into the
    /// place the pipe keeps for it: even a subscriber that stopped reading
    /// is told why. A subscriber that is behind (its pipe full of frames
    /// it reads slowly, if at all) has those frames dropped first, so the
    /// error is the next thing after what its client will get, and names
    /// that position: it reaches a slow reader within a shutdown's grace,
    /// and a resume from it misses nothing. (The seed route cannot resume:
    /// its text is kept.)
    pub fn write_closing(&self, code: &str, message: &str) {
        let behind = self.position.borrow().behind;
        if behind && !matches!(self.wire, Wire::Seed(_)) {
            let delivered = self.pipe.discard_queued().unwrap_or(self.start);
            self.position.borrow_mut().cursor = delivered;
        }
        let event = Event::Error {
            thread_id: self.thread_id,
            cursor: self.cursor(),
            code: code.into(),
            message: message.into(),
        };
        match self.wire {
            Wire::Sse => self.pipe.push_final(Frame::encode(&event, 0, false).sse),
            Wire::Ws => {
                self.pipe.push_final(Frame::encode(&event, 0, false).ws);
                self.pipe.push_final(ws_close(CloseCode::Away, code));
            }
            Wire::Seed(_) => self.pipe.push_final(seed_error(message)),
        }
    }

    /// A WebSocket close frame (it fits even when the pipe is full).
    pub fn write_ws_close(&self, code: CloseCode, description: &str) {
        if self.wire == Wire::Ws {
            self.pipe.push_final(ws_close(code, description));
        }
    }

    /// A catch-up brought this subscriber up to `head_seq`: it follows the
    /// relay again unless the relay skipped a later frame meanwhile (then
    /// `false`: another round).
    pub fn resume_live(&self, head_seq: u64) -> bool {
        let mut position = self.position.borrow_mut();
        position.last_seq = position.last_seq.max(head_seq);
        if std::mem::take(&mut position.round_owed) || position.skipped_seq > position.last_seq {
            return false;
        }
        position.behind = false;
        drop(position);
        self.pay_presence();
        true
    }

    /// Writes the count owed (see `presence`), if any.
    fn pay_presence(&self) {
        let owed = self.position.borrow_mut().presence_owed.take();
        if let Some(count) = owed {
            self.presence(count);
        }
    }

    fn tell(&self, notice: Notice) {
        self.notice.do_send(notice);
    }

    /// Marks this subscriber behind and, if it was not already, tells its
    /// session to catch up.
    fn fall_behind(&self, skipped_seq: u64, round_owed: bool) {
        let mut position = self.position.borrow_mut();
        position.skipped_seq = position.skipped_seq.max(skipped_seq);
        position.round_owed |= round_owed;
        if !std::mem::replace(&mut position.behind, true) {
            drop(position);
            self.tell(Notice::Behind);
        }
    }

    /// The relay's delivery of a broadcast frame. `true` when written.
    fn deliver(&self, frame: &Frame) -> bool {
        {
            let mut position = self.position.borrow_mut();
            if frame.seq <= position.last_seq {
                return false;
            }
            if position.behind {
                position.skipped_seq = position.skipped_seq.max(frame.seq);
                return false;
            }
        }
        match self.try_write(frame) {
            Written::Yes => {
                if self.completes(frame) {
                    self.tell(Notice::Done);
                }
                self.pay_presence();
                true
            }
            Written::NotForThisWire => {
                self.position.borrow_mut().last_seq = frame.seq;
                false
            }
            Written::Full => {
                self.fall_behind(frame.seq, false);
                false
            }
            Written::Gone => {
                self.tell(Notice::Gone);
                false
            }
        }
    }

    /// The thread's subscriber count. Not positional: a subscriber that is
    /// behind, or whose pipe is full, gets the latest count after its next
    /// frame (or once it is live again) rather than every count it missed.
    fn presence(&self, subscribers: usize) {
        if matches!(self.wire, Wire::Seed(_)) {
            return;
        }
        if self.position.borrow().behind {
            self.position.borrow_mut().presence_owed = Some(subscribers);
            return;
        }
        let event = Event::Presence { thread_id: self.thread_id, cursor: self.cursor(), subscribers };
        match self.try_write(&Frame::encode(&event, 0, false)) {
            Written::Yes | Written::NotForThisWire => {}
            Written::Full => self.position.borrow_mut().presence_owed = Some(subscribers),
            Written::Gone => self.tell(Notice::Gone),
        }
    }

    /// Half a heartbeat period went by. An SSE subscriber that was sent
    /// nothing meanwhile gets a keep-alive. A WebSocket gets a ping every
    /// tick, busy or not: a browser sends nothing unless pinged, and its
    /// pongs are how a live peer is told from a dead one, also during an
    /// answer longer than the peer timeout.
    fn tick(&self) {
        let (silent, idle) = {
            let mut position = self.position.borrow_mut();
            let silent = self.peer_timeout.is_some_and(|t| position.last_heard.elapsed() > t);
            let idle = !std::mem::take(&mut position.wrote_since_tick) && !position.behind;
            (silent, idle)
        };
        if silent {
            return self.tell(Notice::Silent);
        }
        let keep_alive = match self.wire {
            Wire::Sse if idle => Bytes::from_static(SSE_KEEP_ALIVE),
            Wire::Ws => ws_frame(OpCode::Ping, b""),
            Wire::Sse | Wire::Seed(_) => return,
        };
        if let Err(TrySendError::Closed(_)) = self.pipe.try_send(keep_alive) {
            self.tell(Notice::Gone);
        }
    }
}

/// One thread's relay on this worker.
struct Relay {
    subscribers: RefCell<Vec<Rc<Subscriber>>>,
    /// The sequence number of the last frame read from the ring.
    last_seq: Cell<u64>,
    /// The ring skipped signals and no frame has been read since.
    lagging: Cell<bool>,
    task: Cell<Option<actix_rt::task::JoinHandle<()>>>,
    metrics: Arc<Metrics>,
}

thread_local! {
    /// This worker's relays, by the fan-out they read (`Fanout::id`).
    static RELAYS: RefCell<HashMap<u64, Rc<Relay>>> = RefCell::new(HashMap::new());
}

/// Adds `subscriber` to this worker's relay of fan-out `fanout_id`,
/// starting the relay with `signals` if there is none. The subscriber
/// starts behind: its session writes what its subscription replayed up to
/// `head_seq`, then calls `resume_live`.
pub fn join(fanout_id: u64, signals: SignalStream, subscriber: Rc<Subscriber>, head_seq: u64, metrics: &Arc<Metrics>) {
    let relay = RELAYS.with(|relays| {
        let mut relays = relays.borrow_mut();
        if let Some(relay) = relays.get(&fanout_id) {
            return relay.clone();
        }
        // Its ring holds only what was published after `head_seq`.
        let relay = Rc::new(Relay {
            subscribers: RefCell::new(Vec::new()),
            last_seq: Cell::new(head_seq),
            lagging: Cell::new(false),
            task: Cell::new(None),
            metrics: metrics.clone(),
        });
        relays.insert(fanout_id, relay.clone());
        let task = actix_rt::spawn(run(fanout_id, relay.clone(), signals));
        relay.task.set(Some(task));
        relay
    });
    {
        // Frames the relay already read past `head_seq` were published
        // after the subscription was made and before it got here.
        let mut position = subscriber.position.borrow_mut();
        position.last_seq = head_seq;
        position.behind = true;
        position.skipped_seq = relay.last_seq.get();
        position.round_owed = relay.lagging.get();
    }
    relay.subscribers.borrow_mut().push(subscriber);
}

/// Removes a subscriber; the relay stops with its last one.
pub fn leave(fanout_id: u64, session_id: u64) {
    RELAYS.with(|relays| {
        let mut relays = relays.borrow_mut();
        let Some(relay) = relays.get(&fanout_id) else { return };
        let empty = {
            let mut subscribers = relay.subscribers.borrow_mut();
            subscribers.retain(|s| s.session_id != session_id);
            subscribers.is_empty()
        };
        if empty {
            if let Some(task) = relay.task.take() {
                task.abort();
            }
            relays.remove(&fanout_id);
        }
    });
}

async fn run(fanout_id: u64, relay: Rc<Relay>, mut signals: SignalStream) {
    while let Some(item) = signals.next().await {
        if !relay.handle(item) {
            break;
        }
    }
    // The ring ended (its thread actor stopped) or the thread closed.
    let subscribers = std::mem::take(&mut *relay.subscribers.borrow_mut());
    for subscriber in subscribers {
        subscriber.write_closing(THREAD_STOPPED.0, THREAD_STOPPED.1);
        subscriber.tell(Notice::Closed);
    }
    RELAYS.with(|relays| {
        let mut relays = relays.borrow_mut();
        if relays.get(&fanout_id).is_some_and(|r| Rc::ptr_eq(r, &relay)) {
            relays.remove(&fanout_id);
        }
    });
}

impl Relay {
    /// Hands one signal to every subscriber; `false` when the thread closed.
    fn handle(&self, item: Result<Signal, Lagged>) -> bool {
        let subscribers = self.subscribers.borrow();
        match item {
            Ok(Signal::Frame(frame)) => {
                self.last_seq.set(frame.seq);
                self.lagging.set(false);
                let written = subscribers.iter().filter(|s| s.deliver(&frame)).count();
                if frame.kind == "message.delta" {
                    self.metrics.chunks_out.inc_by(written as u64);
                }
            }
            Ok(Signal::Presence(count)) => subscribers.iter().for_each(|s| s.presence(count)),
            Ok(Signal::Tick) => subscribers.iter().for_each(|s| s.tick()),
            Ok(Signal::Closed { code, message }) => {
                for subscriber in subscribers.iter() {
                    subscriber.write_closing(code, message);
                    subscriber.tell(Notice::Closed);
                }
                drop(subscribers);
                self.subscribers.borrow_mut().clear();
                return false;
            }
            Err(Lagged(missed)) => {
                tracing::debug!(missed, "relay lagged; its subscribers catch up");
                self.lagging.set(true);
                subscribers.iter().for_each(|s| s.fall_behind(0, true));
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use actix::{Actor, Context, Handler};
    use futures_util::StreamExt;

    use super::*;
    use crate::{
        broadcast::{local::LocalFanout, Fanout},
        pipe::{pipe, PipeBody},
    };

    /// Stands in for a session actor: keeps the notices it is sent.
    struct Notices(Rc<RefCell<Vec<Notice>>>);

    impl Actor for Notices {
        type Context = Context<Self>;
    }

    impl Handler<Notice> for Notices {
        type Result = ();
        fn handle(&mut self, notice: Notice, _: &mut Context<Self>) {
            self.0.borrow_mut().push(notice);
        }
    }

    fn subscriber(id: u64, capacity: usize) -> (Rc<Subscriber>, PipeBody, Rc<RefCell<Vec<Notice>>>) {
        let seen = Rc::new(RefCell::new(Vec::new()));
        let notices = Notices(seen.clone()).start().recipient();
        let (tx, body) = pipe(capacity);
        (Rc::new(Subscriber::new(id, Uuid::nil(), Wire::Sse, tx, notices, None, None)), body, seen)
    }

    /// A broadcast frame whose SSE bytes name its sequence number.
    fn frame(seq: u64) -> Signal {
        let event = Event::Presence { thread_id: Uuid::nil(), cursor: None, subscribers: seq as usize };
        Signal::Frame(Arc::new(Frame::encode(&event, seq, false)))
    }

    fn seq_of(bytes: &Bytes) -> u64 {
        let text = std::str::from_utf8(bytes).unwrap();
        text.split("\"subscribers\":").nth(1).unwrap().trim_end_matches(['}', '\n']).parse().unwrap()
    }

    /// A fresh ring, and subscriber 1 (pipe of `capacity`) joined to its
    /// relay from the start, still behind until `resume_live`.
    fn ring_with_one(capacity: usize) -> (LocalFanout, Rc<Subscriber>, PipeBody, Rc<RefCell<Vec<Notice>>>) {
        let fanout = LocalFanout::new(64);
        let (sub, body, notices) = subscriber(1, capacity);
        join(fanout.id(), fanout.subscribe(), sub.clone(), 0, &Arc::new(Metrics::new()));
        (fanout, sub, body, notices)
    }

    async fn settle() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    #[actix_rt::test]
    async fn frames_go_out_in_order_until_the_pipe_is_full_then_the_session_is_told_once() {
        let (fanout, sub, mut body, notices) = ring_with_one(2);
        assert!(sub.resume_live(0), "nothing was skipped before it joined");
        (1..=5).for_each(|seq| fanout.publish(frame(seq)));
        settle().await;
        let got = [body.next().await.unwrap().unwrap(), body.next().await.unwrap().unwrap()];
        assert_eq!(got.iter().map(seq_of).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(*notices.borrow(), vec![Notice::Behind], "one notice however many frames were skipped");
        // A catch-up that ends before the last skipped frame is not enough.
        assert!(!sub.resume_live(4));
        assert!(sub.resume_live(5));
        fanout.publish(frame(6));
        settle().await;
        assert_eq!(seq_of(&body.next().await.unwrap().unwrap()), 6, "live again after the catch-up");
        leave(fanout.id(), 1);
    }

    #[actix_rt::test]
    async fn a_subscriber_joining_behind_the_relay_owes_a_catch_up_round() {
        let (fanout, first, _body1, _) = ring_with_one(16);
        assert!(first.resume_live(0));
        // The second subscription was made at seq 1, but the relay has read
        // up to 3 by the time it joins: frames 2 and 3 were never written
        // to it, and its catch-up must cover them.
        let stale = fanout.subscribe();
        (1..=3).for_each(|seq| fanout.publish(frame(seq)));
        settle().await;
        let (second, mut body2, _) = subscriber(2, 16);
        join(fanout.id(), stale, second.clone(), 1, &Arc::new(Metrics::new()));
        assert!(!second.resume_live(1));
        assert!(second.resume_live(3));
        fanout.publish(frame(4));
        settle().await;
        assert_eq!(seq_of(&body2.next().await.unwrap().unwrap()), 4);
        leave(fanout.id(), 1);
        leave(fanout.id(), 2);
        RELAYS.with(|relays| assert!(relays.borrow().is_empty(), "the relay stops with its last subscriber"));
    }

    #[actix_rt::test]
    async fn a_subscriber_behind_gets_the_latest_count_once_live_again() {
        let (fanout, sub, mut body, _) = ring_with_one(16);
        // Still behind (its replay is being written): counts are held back,
        // and only the latest is owed.
        fanout.publish(Signal::Presence(3));
        fanout.publish(Signal::Presence(4));
        settle().await;
        assert!(sub.resume_live(0));
        let written = std::str::from_utf8(&body.next().await.unwrap().unwrap()).unwrap().to_owned();
        assert!(written.contains("\"subscribers\":4"), "{written}");
        fanout.publish(frame(1));
        settle().await;
        assert_eq!(seq_of(&body.next().await.unwrap().unwrap()), 1, "nothing else was owed");
        leave(fanout.id(), 1);
    }

    #[actix_rt::test]
    async fn a_closing_thread_writes_its_error_and_tells_every_session() {
        let (fanout, sub, mut body, notices) = ring_with_one(1);
        assert!(sub.resume_live(0));
        fanout.publish(frame(1));
        fanout.publish(Signal::Closed { code: "thread_deleted", message: "gone" });
        settle().await;
        assert_eq!(seq_of(&body.next().await.unwrap().unwrap()), 1);
        let closing = body.next().await.unwrap().unwrap();
        assert!(
            std::str::from_utf8(&closing).unwrap().contains("\"code\":\"thread_deleted\""),
            "even past a full pipe"
        );
        assert_eq!(*notices.borrow(), vec![Notice::Closed]);
        RELAYS.with(|relays| assert!(relays.borrow().is_empty()));
    }
}
