//! The reader of a WebSocket client's bytes: from the connection's
//! payload to the messages a session handles (`http::ws` puts it behind
//! every WebSocket; the sessions read its refusals as close codes).
//!
//! It holds what the client sent in buffers it sizes itself, and bounds
//! them twice:
//! - per message: a frame's declared length, or a message's running
//!   length across its continuation frames, past the limit refuses the
//!   connection at that frame's header, before its payload (close 1009);
//! - per node: the buffers of unfinished messages of all sockets share
//!   one budget (`Budget`, `--max-ws-pending-bytes`): a data frame's
//!   buffer is paid from it before it grows, and a message's frames keep
//!   their share until the message is whole and handed on; past the
//!   budget the connection is refused (close 1013, try again later).
//!
//! What the budget counts is what is allocated: `frames` cuts the stream
//! into whole frames, each in a buffer that grows by doubling up to the
//! frame's declared length; actix-http's decoder then parses each whole
//! frame in place (its payload stays in that buffer), and the frames of a
//! message are joined once, when it ends. actix-ws's own message stream
//! is not used: its buffer grew by doubling as chunks came and reserved a
//! frame's declared length at its header, out of the budget's sight
//! (unfinished 250 KB messages held about twice their size). The
//! connection's own read buffer (actix-http's, up to 128 KiB of unparsed
//! bytes per poll) is outside the budget.

mod frames;
#[cfg(test)]
mod tests;

use std::{
    io,
    pin::Pin,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    task::{ready, Context, Poll},
};

use actix_codec::Decoder as _;
use actix_http::ws::{Codec, Frame, Item, ProtocolError};
use actix_web::error::PayloadError;
use actix_ws::AggregatedMessage;
use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use futures_util::Stream;

use self::frames::{Frames, Whole};

/// Bytes held in unfinished WebSocket messages on this node, with a cap.
pub struct Budget {
    held: AtomicUsize,
    /// The most ever held at once.
    peak: AtomicUsize,
    cap: usize,
}

impl Budget {
    /// A budget of `cap` bytes (0: no cap).
    pub fn new(cap: usize) -> Arc<Budget> {
        Arc::new(Budget { held: AtomicUsize::new(0), peak: AtomicUsize::new(0), cap })
    }

    fn take(&self, n: usize) -> bool {
        if n == 0 {
            return true;
        }
        let cap = if self.cap == 0 { usize::MAX } else { self.cap };
        match self
            .held
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| held.checked_add(n).filter(|&h| h <= cap))
        {
            Ok(before) => {
                self.peak.fetch_max(before + n, Ordering::Relaxed);
                true
            }
            Err(_) => false,
        }
    }

    fn give(&self, n: usize) {
        if n > 0 {
            self.held.fetch_sub(n, Ordering::Relaxed);
        }
    }

    /// Bytes held now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// The most bytes ever held at once.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    /// The cap (0: none).
    pub fn cap(&self) -> usize {
        self.cap
    }
}

/// Why the reader refused a connection; the session maps it to a close
/// code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("a WebSocket message is larger than the limit")]
    TooLarge,
    #[error("the server holds too many unfinished WebSocket messages; try again later")]
    Busy,
}

impl Refused {
    /// The refusal inside a protocol error's I/O error, if it is one.
    pub fn of(error: &io::Error) -> Option<Refused> {
        error.get_ref()?.downcast_ref::<Refused>().copied()
    }
}

impl From<Refused> for ProtocolError {
    fn from(refused: Refused) -> ProtocolError {
        ProtocolError::Io(io::Error::other(refused))
    }
}

/// The messages of one WebSocket's client, read from its payload `S`.
pub struct Reader<S> {
    inner: S,
    frames: Frames,
    /// actix-http's decoder, given whole frames only; it keeps the
    /// continuation state.
    codec: Codec,
    budget: Arc<Budget>,
    /// What is left of the last chunk read.
    input: Bytes,
    /// The unfinished message: its frames' payloads, whether it is text,
    /// and the budget its frames' buffers hold.
    parts: Vec<Bytes>,
    text: bool,
    parts_charged: usize,
    /// What the budget pays for the growth of the connection's read
    /// buffer (`read_buffer`).
    read_charged: usize,
    ended: bool,
}

/// A WebSocket's incoming messages, as sessions read them.
pub type Incoming = Reader<actix_web::web::Payload>;

impl<S> Reader<S> {
    /// Messages of at most `limit` bytes; unfinished ones paid from `budget`.
    pub fn new(inner: S, limit: usize, budget: Arc<Budget>) -> Reader<S> {
        Reader {
            inner,
            frames: Frames::new(limit, budget.clone()),
            codec: Codec::new().max_size(limit),
            budget,
            input: Bytes::new(),
            parts: Vec::new(),
            text: false,
            parts_charged: 0,
            read_charged: 0,
            ended: false,
        }
    }

    /// A chunk of `len` bytes came from the connection: the connection's
    /// read buffer held it all, and keeps that room for its life; the
    /// budget pays for what it grew past its first allocation.
    fn read(&mut self, len: usize) -> Result<(), ProtocolError> {
        let grown = read_buffer(len) - READ_BUFFER_FIRST;
        if grown > self.read_charged {
            if !self.budget.take(grown - self.read_charged) {
                return Err(Refused::Busy.into());
            }
            self.read_charged = grown;
        }
        Ok(())
    }

    /// What a whole frame makes: a message, or `None` when it is a
    /// fragment of one still unfinished.
    fn message(&mut self, whole: Whole) -> Option<Result<AggregatedMessage, ProtocolError>> {
        let Whole { mut bytes, charged } = whole;
        let frame = match self.codec.decode(&mut bytes) {
            Ok(Some(frame)) => frame,
            // unreachable: `frames` hands on whole frames only.
            Ok(None) => return Some(Err(ProtocolError::Io(io::ErrorKind::UnexpectedEof.into()))),
            Err(e) => {
                self.budget.give(charged);
                return Some(Err(e));
            }
        };
        let (last, text) = match frame {
            Frame::Text(payload) => {
                self.budget.give(charged);
                return Some(text_message(payload));
            }
            Frame::Binary(payload) => {
                self.budget.give(charged);
                return Some(Ok(AggregatedMessage::Binary(payload)));
            }
            Frame::Ping(payload) => return Some(Ok(AggregatedMessage::Ping(payload))),
            Frame::Pong(payload) => return Some(Ok(AggregatedMessage::Pong(payload))),
            Frame::Close(reason) => return Some(Ok(AggregatedMessage::Close(reason))),
            Frame::Continuation(Item::FirstText(payload)) => (payload, Some(true)),
            Frame::Continuation(Item::FirstBinary(payload)) => (payload, Some(false)),
            Frame::Continuation(Item::Continue(payload)) => (payload, None),
            Frame::Continuation(Item::Last(payload)) => {
                self.parts.push(payload);
                let whole = join(std::mem::take(&mut self.parts));
                self.budget.give(std::mem::take(&mut self.parts_charged) + charged);
                return Some(if self.text { text_message(whole) } else { Ok(AggregatedMessage::Binary(whole)) });
            }
        };
        if let Some(text) = text {
            self.text = text;
        }
        self.parts.push(last);
        self.parts_charged += charged;
        None
    }
}

fn text_message(payload: Bytes) -> Result<AggregatedMessage, ProtocolError> {
    ByteString::try_from(payload)
        .map(AggregatedMessage::Text)
        .map_err(|e| ProtocolError::Io(io::Error::new(io::ErrorKind::InvalidData, e)))
}

/// A message's frames as one buffer.
fn join(parts: Vec<Bytes>) -> Bytes {
    if parts.len() == 1 {
        return parts.into_iter().next().unwrap_or_default();
    }
    let mut whole = BytesMut::with_capacity(parts.iter().map(Bytes::len).sum());
    for part in parts {
        whole.extend_from_slice(&part);
    }
    whole.freeze()
}

impl<S> Drop for Reader<S> {
    fn drop(&mut self) {
        self.budget.give(self.parts_charged + self.read_charged);
    }
}

/// The first allocation of an HTTP/1 connection's read buffer in
/// actix-http (`HW_BUFFER_SIZE`), which every connection has.
const READ_BUFFER_FIRST: usize = 8 * 1024;
/// The most an HTTP/1 connection reads before it parses (actix-http's
/// `MAX_BUFFER_SIZE`, 128 KiB); its buffer doubles past it once.
const READ_BUFFER_MOST: usize = 256 * 1024;

/// The capacity of the connection's read buffer once it held a chunk of
/// `len` bytes. actix-http reads what the socket has (before it parses)
/// into one buffer, adding room whenever less than 1 KiB is left, which
/// doubles it; it never gives room back. A client that sends a burst
/// grows it to the next power of two past the burst, up to 256 KiB, for
/// the life of its connection, whether its message ends or not.
fn read_buffer(len: usize) -> usize {
    len.saturating_add(1024).next_power_of_two().clamp(READ_BUFFER_FIRST, READ_BUFFER_MOST)
}

impl<S: Stream<Item = Result<Bytes, PayloadError>> + Unpin> Stream for Reader<S> {
    type Item = Result<AggregatedMessage, ProtocolError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.ended {
                return Poll::Ready(None);
            }
            match this.frames.next(&mut this.input) {
                Ok(Some(whole)) => match this.message(whole) {
                    Some(item) => {
                        this.ended = item.is_err();
                        return Poll::Ready(Some(item));
                    }
                    None => continue,
                },
                Ok(None) => {}
                Err(e) => {
                    this.ended = true;
                    return Poll::Ready(Some(Err(e)));
                }
            }
            match ready!(Pin::new(&mut this.inner).poll_next(cx)) {
                Some(Ok(chunk)) => {
                    if let Err(e) = this.read(chunk.len()) {
                        this.ended = true;
                        return Poll::Ready(Some(Err(e)));
                    }
                    this.input = chunk;
                }
                Some(Err(e)) => {
                    this.ended = true;
                    return Poll::Ready(Some(Err(ProtocolError::Io(io::Error::other(e)))));
                }
                None => {
                    this.ended = true;
                    return Poll::Ready(None);
                }
            }
        }
    }
}
