//! A guard on the bytes a WebSocket client sends, in front of actix-ws
//! (`http::ws` puts it there; the session reads its refusals).
//!
//! actix-ws buffers a frame until all of it has arrived, and only then
//! checks its size: a client that declares a frame of 2^62 bytes and keeps
//! sending makes the server buffer without end. The guard reads each frame
//! header as it passes (nothing is copied or held here) and refuses the
//! connection as soon as
//! - a frame's declared length, or a message's running length across its
//!   continuation frames, passes the per-message limit (close 1009), or
//! - the bytes all sockets together hold in unfinished messages would pass
//!   the node's budget (`Budget`; close 1013, try again later): many
//!   sockets each holding a message just under the limit add up.
//!
//! The bytes of a data message count against the budget from its first
//! header byte until its final frame has passed; control frames (at most
//! 125 bytes each) are not counted.

use std::{
    pin::Pin,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    task::{Context, Poll},
};

use actix_web::error::PayloadError;
use bytes::Bytes;
use futures_util::Stream;

/// Bytes held in unfinished WebSocket messages on this node, with a cap.
pub struct Budget {
    held: AtomicUsize,
    cap: usize,
}

impl Budget {
    /// A budget of `cap` bytes (0: no cap).
    pub fn new(cap: usize) -> Arc<Budget> {
        Arc::new(Budget { held: AtomicUsize::new(0), cap })
    }

    fn take(&self, n: usize) -> bool {
        let cap = if self.cap == 0 { usize::MAX } else { self.cap };
        self.held
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| held.checked_add(n).filter(|&h| h <= cap))
            .is_ok()
    }

    fn give(&self, n: usize) {
        self.held.fetch_sub(n, Ordering::Relaxed);
    }

    /// Bytes held now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }
}

/// Why the guard refused a connection; the session maps it to a close code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("a WebSocket message is larger than the limit")]
    TooLarge,
    #[error("the server holds too many unfinished WebSocket messages; try again later")]
    Busy,
}

impl Refused {
    /// The refusal the session finds inside actix-ws's protocol error.
    pub fn of(error: &std::io::Error) -> Option<Refused> {
        let payload = error.get_ref()?.downcast_ref::<PayloadError>()?;
        match payload {
            PayloadError::Overflow => Some(Refused::TooLarge),
            PayloadError::Io(e) => e.get_ref()?.downcast_ref::<Refused>().copied(),
            _ => None,
        }
    }

    fn into_payload_error(self) -> PayloadError {
        match self {
            Refused::TooLarge => PayloadError::Overflow,
            Refused::Busy => PayloadError::Io(std::io::Error::other(self)),
        }
    }
}

/// Where the guard is in the client's byte stream.
enum At {
    /// Reading a frame header: the bytes so far.
    Header { bytes: [u8; 14], have: usize },
    /// Inside a frame's payload; `last` says whether the frame ends its
    /// message, `data` whether it belongs to a data message.
    Payload { remaining: u64, last: bool, data: bool },
}

/// The guarded stream: `inner`'s chunks, unchanged, until a refusal.
pub struct Guard<S> {
    inner: S,
    budget: Arc<Budget>,
    limit: u64,
    at: At,
    /// Payload bytes of the current data message so far.
    message_len: u64,
    /// Bytes of the current unfinished data message held against the budget.
    held: usize,
    refused: bool,
}

impl<S> Guard<S> {
    pub fn new(inner: S, limit: usize, budget: Arc<Budget>) -> Guard<S> {
        Guard {
            inner,
            budget,
            limit: limit as u64,
            at: At::Header { bytes: [0; 14], have: 0 },
            message_len: 0,
            held: 0,
            refused: false,
        }
    }

    /// Follows `chunk` through the frames; the bytes of unfinished data
    /// messages it leaves held are taken from the budget.
    fn inspect(&mut self, chunk: &[u8]) -> Result<(), Refused> {
        let mut rest = chunk;
        let mut counted = 0usize;
        while !rest.is_empty() {
            match &mut self.at {
                At::Header { bytes, have } => {
                    bytes[*have] = rest[0];
                    *have += 1;
                    rest = &rest[1..];
                    if let Some(header) = parse_header(&bytes[..*have]) {
                        counted = self.frame_begins(header, counted)?;
                    }
                }
                At::Payload { remaining, last, data } => {
                    let n = (*remaining).min(rest.len() as u64);
                    *remaining -= n;
                    rest = &rest[n as usize..];
                    if *data {
                        counted += n as usize;
                    }
                    if *remaining == 0 {
                        let ends_message = *last && *data;
                        self.at = At::Header { bytes: [0; 14], have: 0 };
                        if ends_message {
                            counted = self.message_ends();
                        }
                    }
                }
            }
        }
        self.hold(counted)
    }

    /// A whole header has arrived. `counted`: bytes of this chunk counted
    /// so far; what stays counted. (A data frame's header counts whole in
    /// the chunk that completes it.)
    fn frame_begins(&mut self, header: Header, counted: usize) -> Result<usize, Refused> {
        let data = header.opcode < 8;
        let mut counted = counted;
        if data {
            counted += header.len;
            let before = if header.opcode == 0 { self.message_len } else { 0 };
            if header.opcode != 0 && self.message_len > 0 {
                // A new message while one is unfinished: actix-ws refuses
                // it; nothing more to follow here.
                self.message_len = 0;
            }
            let total = before.checked_add(header.payload).ok_or(Refused::TooLarge)?;
            if total > self.limit {
                return Err(Refused::TooLarge);
            }
            self.message_len = total;
        }
        self.at = At::Payload { remaining: header.payload, last: header.fin, data };
        if header.payload == 0 {
            self.at = At::Header { bytes: [0; 14], have: 0 };
            if header.fin && data {
                counted = self.message_ends();
            }
        }
        Ok(counted)
    }

    /// The current data message is complete: what it held goes back, and
    /// none of this chunk's bytes so far stay counted.
    fn message_ends(&mut self) -> usize {
        self.budget.give(self.held);
        self.held = 0;
        self.message_len = 0;
        0
    }

    fn hold(&mut self, n: usize) -> Result<(), Refused> {
        if n == 0 {
            return Ok(());
        }
        if !self.budget.take(n) {
            return Err(Refused::Busy);
        }
        self.held += n;
        Ok(())
    }
}

impl<S> Drop for Guard<S> {
    fn drop(&mut self) {
        self.budget.give(self.held);
    }
}

struct Header {
    fin: bool,
    opcode: u8,
    payload: u64,
    /// The header's own length in bytes.
    len: usize,
}

/// The frame header in `bytes`, once they hold all of it (RFC 6455 §5.2).
fn parse_header(bytes: &[u8]) -> Option<Header> {
    if bytes.len() < 2 {
        return None;
    }
    let masked = bytes[1] & 0x80 != 0;
    let (extended, short) = match bytes[1] & 0x7f {
        126 => (2, None),
        127 => (8, None),
        n => (0, Some(n as u64)),
    };
    let len = 2 + extended + if masked { 4 } else { 0 };
    if bytes.len() < len {
        return None;
    }
    let payload = short.unwrap_or_else(|| bytes[2..2 + extended].iter().fold(0u64, |acc, b| (acc << 8) | *b as u64));
    Some(Header { fin: bytes[0] & 0x80 != 0, opcode: bytes[0] & 0x0f, payload, len })
}

impl<S: Stream<Item = Result<Bytes, PayloadError>> + Unpin> Stream for Guard<S> {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.refused {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => match self.inspect(&chunk) {
                Ok(()) => Poll::Ready(Some(Ok(chunk))),
                Err(refused) => {
                    self.refused = true;
                    Poll::Ready(Some(Err(refused.into_payload_error())))
                }
            },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use futures_util::{stream, StreamExt};
    use proptest::prelude::*;

    use super::*;

    /// A masked client frame with a payload of `len` bytes (content not
    /// included) and the given first byte.
    fn header(first: u8, len: u64) -> Vec<u8> {
        let mut out = vec![first];
        match len {
            0..=125 => out.push(0x80 | len as u8),
            126..=65535 => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                out.push(0x80 | 127);
                out.extend_from_slice(&len.to_be_bytes());
            }
        }
        out.extend_from_slice(&[1, 2, 3, 4]);
        out
    }

    fn frame(first: u8, len: usize) -> Vec<u8> {
        let mut out = header(first, len as u64);
        out.extend(std::iter::repeat_n(b'x', len));
        out
    }

    async fn run(chunks: Vec<Vec<u8>>, limit: usize, budget: &Arc<Budget>) -> Vec<Result<Bytes, PayloadError>> {
        let inner = stream::iter(chunks.into_iter().map(|c| Ok(Bytes::from(c))));
        Guard::new(inner, limit, budget.clone()).collect().await
    }

    #[tokio::test]
    async fn a_huge_declared_frame_is_refused_at_its_header() {
        let budget = Budget::new(0);
        let got = run(vec![header(0x81, 1 << 62), vec![b'x'; 1000]], 256 * 1024, &budget).await;
        assert_eq!(got.len(), 1, "nothing after the header passes");
        assert!(matches!(got[0], Err(PayloadError::Overflow)));
    }

    #[tokio::test]
    async fn a_message_growing_past_the_limit_across_continuations_is_refused_at_the_header() {
        let budget = Budget::new(0);
        let first = frame(0x01, 200_000); // text, not final
        let next = header(0x80, 100_000); // final continuation: 300,000 in all
        let got = run(vec![first, next], 256 * 1024, &budget).await;
        assert!(got[0].is_ok());
        assert!(matches!(got[1], Err(PayloadError::Overflow)));
    }

    #[tokio::test]
    async fn unfinished_messages_of_all_sockets_share_one_budget() {
        let budget = Budget::new(500_000);
        // Two sockets each hold 200,000 bytes of an unfinished message.
        let hold = |budget: &Arc<Budget>| {
            let inner = stream::iter(vec![Ok(Bytes::from(frame(0x01, 200_000)))]).chain(stream::pending());
            let mut guard = Guard::new(inner, 256 * 1024, budget.clone());
            async move {
                assert!(guard.next().await.unwrap().is_ok());
                guard
            }
        };
        let a = hold(&budget).await;
        let _b = hold(&budget).await;
        assert!(budget.held() > 400_000);
        // A third would pass the budget: refused, and holds nothing.
        let got = run(vec![frame(0x01, 200_000)], 256 * 1024, &budget).await;
        // As the session sees it: inside actix-ws's I/O error.
        let error = got.into_iter().next().unwrap().unwrap_err();
        assert_eq!(Refused::of(&std::io::Error::other(error)), Some(Refused::Busy));
        drop(a);
        assert!(budget.held() < 250_000, "a socket that goes gives its bytes back");
    }

    #[tokio::test]
    async fn finished_messages_hold_nothing() {
        let budget = Budget::new(1000);
        let bytes: Vec<u8> =
            [frame(0x81, 100), frame(0x89, 10), frame(0x01, 50), frame(0x8a, 0), frame(0x80, 60)].concat();
        let got = run(vec![bytes.clone()], 256 * 1024, &budget).await;
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].as_ref().unwrap().as_ref(), &bytes[..], "bytes pass unchanged");
        assert_eq!(budget.held(), 0);
    }

    proptest! {
        #[test]
        fn any_split_of_the_stream_is_followed_alike(cuts in proptest::collection::vec(0usize..600, 0..8)) {
            let bytes: Vec<u8> =
                [frame(0x81, 130), frame(0x01, 70), frame(0x89, 3), frame(0x00, 200), frame(0x80, 5)].concat();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % bytes.len()).collect();
            cuts.sort_unstable();
            cuts.dedup();
            let mut chunks = Vec::new();
            let mut from = 0;
            for c in cuts.into_iter().chain([bytes.len()]) {
                chunks.push(bytes[from..c].to_vec());
                from = c;
            }
            let budget = Budget::new(0);
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let got = runtime.block_on(run(chunks, 400, &budget));
            prop_assert!(got.iter().all(Result::is_ok));
            prop_assert_eq!(budget.held(), 0);
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let limited = runtime.block_on(run(vec![bytes.clone()], 270, &budget));
            prop_assert!(matches!(limited.last(), Some(Err(PayloadError::Overflow))), "70 + 200 + 5 > 270");
        }
    }
}
