//! One subscriber as its worker sees it: its response pipe, its wire
//! format, its position (cursor and `Delivery` state), and the small
//! per-subscriber duties of heartbeats and presence. Shared (`Rc`) by the
//! relay of its worker, which writes broadcast frames, and its session
//! actor, which writes its replay and catch-ups; both run on the worker's
//! thread, so the state is in `Cell`s, with no lock.

use std::{
    cell::{Cell, RefCell},
    time::{Duration, Instant},
};

use actix::{Message, Recipient};
use bytes::{Bytes, BytesMut};
use uuid::Uuid;

pub use super::continuation::Continuation;
pub use super::wire::{ChatRequest, UiRequest, Wire};
use super::{
    pipe::{At, PipeWriter, TrySendError},
    state::{Delivery, State, Verdict},
};
use crate::domain::{
    codes::{ErrorCode, EventKind},
    cursor::Cursor,
    event::Event,
    frame::{seed_error, ws_chunks, Frame, StreamPos, SSE_KEEP_ALIVE},
    project_socket,
    ui_stream::{self, Piece},
    websocket::{ws_close, ws_frame, WsOp},
};

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

/// Why a waiting write gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stall {
    /// No room within the allowed time: a slow consumer.
    Slow,
    /// The client went away.
    Gone,
}

/// What `try_write` did with a frame.
pub enum Written {
    Yes,
    /// Not for this subscriber's wire.
    NotForThisWire,
    Full,
    Gone,
}

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
    delivery: RefCell<Delivery>,
    /// The cursor of the last positional frame written.
    cursor: Cell<Option<Cursor>>,
    /// Something was written since the last heartbeat tick.
    wrote_since_tick: Cell<bool>,
    /// When the WebSocket peer last sent anything.
    last_heard: Cell<Instant>,
    /// A subscriber count that came while not live (or found the pipe
    /// full), written once it is live again.
    presence_owed: Cell<Option<usize>>,
    /// The latest non-positional notice (`thread.updated`) that came while
    /// not live (or found the pipe full), written once it is live again.
    notice_owed: std::cell::RefCell<Option<std::sync::Arc<Frame>>>,
    /// A UI wire: the canonical number of the next UI chunk it writes (a
    /// chunk met again, as a catch-up from a position that an event
    /// without text shares may bring, is not written twice).
    ui_next: Cell<u64>,
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
            pipe,
            notice,
            peer_timeout,
            start: from,
            delivery: RefCell::new(Delivery::join(StreamPos::NONE, StreamPos::NONE, false)),
            cursor: Cell::new(from),
            wrote_since_tick: Cell::new(false),
            last_heard: Cell::new(Instant::now()),
            presence_owed: Cell::new(None),
            notice_owed: std::cell::RefCell::new(None),
            ui_next: Cell::new(match &wire {
                Wire::Chat(ChatRequest { after: Some(after), .. }) => after + 1,
                _ => 0,
            }),
            wire,
        }
    }

    pub fn wire(&self) -> &Wire {
        &self.wire
    }

    /// The cursor of the last positional frame written.
    pub fn cursor(&self) -> Option<Cursor> {
        self.cursor.get()
    }

    /// The WebSocket peer sent something.
    pub fn heard(&self) {
        self.last_heard.set(Instant::now());
    }

    /// Starts its delivery (see `Delivery::join`).
    pub(super) fn join(&self, head: StreamPos, relay_read: StreamPos, relay_lagging: bool) {
        *self.delivery.borrow_mut() = Delivery::join(head, relay_read, relay_lagging);
    }

    /// What this wire writes for `frame`, or `None` to skip it.
    fn payload(&self, frame: &Frame) -> Option<Bytes> {
        let mine = |id: Uuid| frame.cursor.is_some_and(|c| c.message_id == id);
        match &self.wire {
            Wire::Sse => Some(frame.sse.clone()),
            Wire::Ws | Wire::Channel => Some(frame.ws.clone()),
            Wire::Seed(message_id) => frame.seed.clone().filter(|_| mine(*message_id)),
            // Asked only of its own message's frames: a frame no UI
            // subscriber follows is never encoded for one.
            Wire::Ui(UiRequest { message_id, continuation }) if mine(*message_id) => {
                let (chunks, all) = self.ui_chunks(frame, continuation.as_ref());
                let end = self.completes(frame);
                if all {
                    // All of it, as it is: the frame's own lines, shared.
                    frame.ui_sse().cloned()
                } else {
                    (end || !chunks.is_empty()).then(|| ui_stream::sse_lines(chunks.iter().map(|(_, p)| &p.json), end))
                }
            }
            Wire::Chat(c) if mine(c.message_id) => {
                let (chunks, _) = self.ui_chunks(frame, c.continuation.as_ref());
                ws_chunks(&c.request, chunks.into_iter(), self.completes(frame))
            }
            Wire::Ui(_) | Wire::Chat(_) => None,
        }
    }

    /// The UI chunks of `frame` a UI wire writes, each under the number it
    /// writes it under: those it has not written yet, and for a
    /// continuation those after its step's end. `true`: all of the
    /// frame's, under their own numbers.
    fn ui_chunks<'a>(&self, frame: &'a Frame, continuation: Option<&Continuation>) -> (Vec<(u64, &'a Piece)>, bool) {
        let pieces = frame.ui_pieces();
        let fresh = pieces.iter().filter(|p| p.seq >= self.ui_next.get());
        match continuation {
            Some(c) => (c.take(fresh), false),
            None => {
                let chunks: Vec<_> = fresh.map(|p| (p.seq, p)).collect();
                let all = chunks.len() == pieces.len();
                (chunks, all)
            }
        }
    }

    /// Whether `frame` ends what this subscriber came for (the one answer
    /// of the seed route, a UI message stream, a chat request): the
    /// answer's end, or, for a UI stream, where it awaits input (its
    /// client answers, then asks for the rest).
    pub fn completes(&self, frame: &Frame) -> bool {
        let Some(message_id) = self.wire.message() else { return false };
        let ends = match self.wire {
            Wire::Ui(_) | Wire::Chat(_) => {
                matches!(frame.kind, EventKind::MessageCompleted | EventKind::MessageAwaiting)
            }
            _ => frame.kind == EventKind::MessageCompleted,
        };
        ends && frame.cursor.is_some_and(|c| c.message_id == message_id)
    }

    /// Where `frame` moves this subscriber, if it is a position.
    fn moves_to(frame: &Frame) -> Option<At> {
        frame.kind.is_position().then_some(frame.cursor)
    }

    fn wrote(&self, frame: &Frame) {
        if let Some(at) = Self::moves_to(frame) {
            self.cursor.set(at);
        }
        if matches!(self.wire, Wire::Ui(_) | Wire::Chat(_)) {
            if let Some(last) = frame.ui_pieces().last() {
                self.ui_next.set(self.ui_next.get().max(last.seq + 1));
            }
        }
        let mut delivery = self.delivery.borrow_mut();
        delivery.wrote(frame.pos);
        // The end of what a one-answer wire came for is its closing (a UI
        // stream's `abort` or `finish` and `[DONE]`, a chat request's
        // `end`, the seed's last line): nothing follows it, not even the
        // thread's own closing (`thread_deleted` right after a deletion
        // cancelled the answer), which would end the stream twice.
        if self.completes(frame) {
            delivery.close();
        }
        self.wrote_since_tick.set(true);
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

    /// Writes bytes outside the thread's order (a pong, say), if there is
    /// room.
    pub fn try_send(&self, bytes: Bytes) -> Result<(), TrySendError> {
        self.pipe.try_send(bytes)?;
        self.wrote_since_tick.set(true);
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

    /// The closing `error` (and, on a WebSocket, a close frame), as one
    /// write into the place the pipe keeps for it: even a subscriber that
    /// stopped reading is told why. A subscriber that is behind (its pipe
    /// full of frames it reads slowly, if at all) has those frames dropped
    /// first, so the error comes right after what its client will get, and
    /// names that position: it reaches a slow reader within a shutdown's
    /// grace, and a resume from it misses nothing. (A wire of one answer,
    /// the seed route's or a UI stream, cannot resume from a cursor: its
    /// text is kept.) Nothing is written after it.
    pub fn write_closing(&self, code: impl Into<ErrorCode>, message: &str) {
        let mut delivery = self.delivery.borrow_mut();
        if delivery.state() == State::Closed {
            return;
        }
        if delivery.state() == State::Behind && self.wire.message().is_none() {
            self.cursor.set(self.pipe.discard_queued().unwrap_or(self.start));
        }
        delivery.close();
        let code = code.into();
        let event = Event::error(self.thread_id, self.cursor(), code, message);
        let last = match &self.wire {
            Wire::Sse => Frame::encode(&event, StreamPos::NONE, false).sse,
            Wire::Ws => {
                let mut both = BytesMut::from(&Frame::encode(&event, StreamPos::NONE, false).ws[..]);
                both.extend_from_slice(&ws_close(1001, code.as_str()));
                both.freeze()
            }
            Wire::Channel => {
                let mut both = BytesMut::from(&Frame::encode(&event, StreamPos::NONE, false).ws[..]);
                let end = project_socket::unsubscribed(self.thread_id, self.cursor(), code.as_str());
                both.extend_from_slice(&ws_frame(WsOp::Text, &end));
                both.freeze()
            }
            Wire::Seed(_) => seed_error(message),
            Wire::Ui(_) => ui_stream::sse_error(message),
            Wire::Chat(c) => ws_frame(WsOp::Text, &c.request.error(message)),
        };
        self.pipe.push_final(last);
    }

    /// A WebSocket close frame alone (it fits even when the pipe is full).
    pub fn write_ws_close(&self, code: u16, description: &str) {
        let mut delivery = self.delivery.borrow_mut();
        if matches!(self.wire, Wire::Ws) && delivery.state() != State::Closed {
            delivery.close();
            self.pipe.push_final(ws_close(code, description));
        }
    }

    /// A catch-up brought it up to `head`; `true` when it is live again
    /// (see `Delivery::caught_up`).
    pub fn caught_up(&self, head: StreamPos) -> bool {
        let live = self.delivery.borrow_mut().caught_up(head);
        if live {
            self.pay_owed();
        }
        live
    }

    fn tell(&self, notice: Notice) {
        self.notice.do_send(notice);
    }

    /// The relay's delivery of a broadcast frame. `true` when written.
    pub(super) fn deliver(&self, frame: &Frame) -> bool {
        let verdict = self.delivery.borrow_mut().frame(frame.pos);
        if verdict != Verdict::Write {
            return false;
        }
        match self.try_write(frame) {
            Written::Yes => {
                if self.completes(frame) {
                    self.tell(Notice::Done);
                }
                self.pay_owed();
                true
            }
            Written::NotForThisWire => {
                self.delivery.borrow_mut().wrote(frame.pos);
                false
            }
            Written::Full => {
                if self.delivery.borrow_mut().pipe_full(frame.pos) {
                    self.tell(Notice::Behind);
                }
                false
            }
            Written::Gone => {
                self.tell(Notice::Gone);
                false
            }
        }
    }

    /// Its relay lagged the ring.
    pub(super) fn lagged(&self) {
        if self.delivery.borrow_mut().lagged() {
            self.tell(Notice::Behind);
        }
    }

    /// Writes the count and the notice owed (see `presence`, `notice`), if
    /// any.
    fn pay_owed(&self) {
        if let Some(count) = self.presence_owed.take() {
            self.presence(count);
        }
        let notice = self.notice_owed.borrow_mut().take();
        if let Some(frame) = notice {
            self.notice(&frame);
        }
    }

    /// A non-positional event of the thread (`thread.updated`), for the
    /// contract's wires. Like `presence`: one that is not live, or whose
    /// pipe is full, gets the latest once it is live again.
    pub(super) fn notice(&self, frame: &std::sync::Arc<Frame>) {
        if self.wire.message().is_some() {
            return;
        }
        if !self.delivery.borrow().is_live() {
            *self.notice_owed.borrow_mut() = Some(frame.clone());
            return;
        }
        match self.try_write(frame) {
            Written::Yes | Written::NotForThisWire => {}
            Written::Full => *self.notice_owed.borrow_mut() = Some(frame.clone()),
            Written::Gone => self.tell(Notice::Gone),
        }
    }

    /// The thread's subscriber count. Not positional: a subscriber that is
    /// not live, or whose pipe is full, gets the latest count after its
    /// next frame (or once it is live again) rather than every count it
    /// missed.
    pub(super) fn presence(&self, subscribers: usize) {
        if self.wire.message().is_some() {
            return;
        }
        if !self.delivery.borrow().is_live() {
            self.presence_owed.set(Some(subscribers));
            return;
        }
        let event = Event::Presence { thread_id: self.thread_id, cursor: self.cursor(), subscribers };
        match self.try_write(&Frame::encode(&event, StreamPos::NONE, false)) {
            Written::Yes | Written::NotForThisWire => {}
            Written::Full => self.presence_owed.set(Some(subscribers)),
            Written::Gone => self.tell(Notice::Gone),
        }
    }

    /// Half a heartbeat period went by. An SSE subscriber that was sent
    /// nothing meanwhile gets a keep-alive. A WebSocket gets a ping every
    /// tick, busy or not: a browser sends nothing unless pinged, and its
    /// pongs are how a live peer is told from a dead one, also during an
    /// answer longer than the peer timeout.
    pub(super) fn tick(&self) {
        if self.peer_timeout.is_some_and(|t| self.last_heard.get().elapsed() > t) {
            return self.tell(Notice::Silent);
        }
        let idle = !self.wrote_since_tick.replace(false) && self.delivery.borrow().is_live();
        // A chat WebSocket's or a project socket's socket pings for all it carries.
        let keep_alive = match self.wire {
            Wire::Sse | Wire::Ui(_) if idle => Bytes::from_static(SSE_KEEP_ALIVE),
            Wire::Ws => ws_frame(WsOp::Ping, b""),
            Wire::Sse | Wire::Ui(_) | Wire::Seed(_) | Wire::Chat(_) | Wire::Channel => return,
        };
        if let Err(TrySendError::Closed(_)) = self.pipe.try_send(keep_alive) {
            self.tell(Notice::Gone);
        }
    }

    /// Its thread closed: the closing error, and its session is told.
    pub(super) fn thread_closed(&self, code: impl Into<ErrorCode>, message: &str) {
        self.write_closing(code, message);
        self.tell(Notice::Closed);
    }
}
