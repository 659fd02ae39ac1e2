//! Several pipes as one response body: a chat WebSocket carries several
//! requests at once (the AI SDK's `WebSocketChatTransport` multiplexes
//! chats on one socket), and each request is a subscriber with a pipe of
//! its own (`delivery::pipe`), so that one request's slow catch-up or closing
//! frame never touches another's. The socket's own frames (pongs, pings,
//! `start`, `no-active`, errors, the close) go through a control pipe.
//!
//! Everything is on the socket's worker thread (`Rc`, no locks). The body
//! takes whole frames from the control pipe first, then from the request
//! pipes in turn; a request pipe whose writer is gone (its answer ended)
//! is dropped once drained. The body ends with the control pipe, that is
//! when the socket's actor stops. Dropping a request's pipe (`remove`), or
//! the whole body (the client went away), is what its writer sees as its
//! client going away.

use std::{
    cell::RefCell,
    convert::Infallible,
    pin::Pin,
    rc::Rc,
    task::{Context, Poll, Waker},
};

use bytes::Bytes;
use futures_util::Stream;

use super::pipe::{pipe, PipeBody, PipeWriter};

struct Shared {
    /// The request pipes, by key.
    bodies: Vec<(u64, PipeBody)>,
    /// Where the round of request pipes starts next.
    turn: usize,
    /// The body's task, woken when a pipe is added.
    waker: Option<Waker>,
    /// The body is gone: pipes added now are dropped at once.
    gone: bool,
}

/// The socket's side: its control pipe, and the request pipes it adds and
/// removes.
pub struct Mux {
    shared: Rc<RefCell<Shared>>,
    pub control: PipeWriter,
}

/// The response body.
pub struct MuxBody {
    shared: Rc<RefCell<Shared>>,
    control: PipeBody,
}

/// A mux whose control pipe holds `capacity` frames.
pub fn mux(capacity: usize) -> (Mux, MuxBody) {
    let shared = Rc::new(RefCell::new(Shared { bodies: Vec::new(), turn: 0, waker: None, gone: false }));
    let (control, body) = pipe(capacity);
    (Mux { shared: shared.clone(), control }, MuxBody { shared, control: body })
}

impl Mux {
    /// Adds a request's pipe under `key`.
    pub fn add(&self, key: u64, body: PipeBody) {
        let mut shared = self.shared.borrow_mut();
        if shared.gone {
            return;
        }
        shared.bodies.push((key, body));
        if let Some(waker) = &shared.waker {
            waker.wake_by_ref();
        }
    }

    /// Drops request `key`'s pipe, unread frames and all.
    pub fn remove(&self, key: u64) {
        // Dropped outside the borrow: a pipe's drop wakes its writers.
        let removed: Vec<(u64, PipeBody)> = {
            let mut shared = self.shared.borrow_mut();
            let (gone, kept) = std::mem::take(&mut shared.bodies).into_iter().partition(|(k, _)| *k == key);
            shared.bodies = kept;
            gone
        };
        drop(removed);
    }

    /// Whether request `key`'s pipe is still there (its answer may not
    /// have ended, or its last frames not been sent).
    pub fn has(&self, key: u64) -> bool {
        self.shared.borrow().bodies.iter().any(|(k, _)| *k == key)
    }

    /// Drops every request pipe.
    pub fn clear(&self) {
        let all = std::mem::take(&mut self.shared.borrow_mut().bodies);
        drop(all);
    }
}

impl Stream for MuxBody {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match Pin::new(&mut self.control).poll_next(cx) {
            Poll::Ready(Some(frame)) => return Poll::Ready(Some(frame)),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => {}
        }
        let mut shared = self.shared.borrow_mut();
        if !shared.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            shared.waker = Some(cx.waker().clone());
        }
        let n = shared.bodies.len();
        let start = shared.turn;
        let mut ended = Vec::new();
        let mut out = None;
        for i in 0..n {
            let at = (start + i) % n;
            match Pin::new(&mut shared.bodies[at].1).poll_next(cx) {
                Poll::Ready(Some(frame)) => {
                    shared.turn = at + 1;
                    out = Some(frame);
                    break;
                }
                Poll::Ready(None) => ended.push(shared.bodies[at].0),
                Poll::Pending => {}
            }
        }
        // Ended bodies are dropped after the borrow ends (and only looked
        // for when one ended: no allocation per frame).
        let gone: Vec<(u64, PipeBody)> = if ended.is_empty() {
            Vec::new()
        } else {
            let (gone, kept) = std::mem::take(&mut shared.bodies).into_iter().partition(|(k, _)| ended.contains(k));
            shared.bodies = kept;
            gone
        };
        drop(shared);
        drop(gone);
        match out {
            Some(frame) => Poll::Ready(Some(frame)),
            None => Poll::Pending,
        }
    }
}

impl Drop for MuxBody {
    fn drop(&mut self) {
        let all = {
            let mut shared = self.shared.borrow_mut();
            shared.gone = true;
            std::mem::take(&mut shared.bodies)
        };
        drop(all);
    }
}

#[cfg(test)]
mod tests {
    use futures_util::{FutureExt, StreamExt};

    use super::*;

    fn b(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    #[tokio::test]
    async fn control_frames_first_then_requests_in_turn_and_the_body_ends_with_the_control_pipe() {
        let (mux, mut body) = mux(4);
        let (one, one_body) = pipe(4);
        let (two, two_body) = pipe(4);
        mux.add(1, one_body);
        mux.add(2, two_body);
        for f in ["1a", "1b"] {
            one.try_send(b(f)).unwrap();
        }
        two.try_send(b("2a")).unwrap();
        mux.control.try_send(b("pong")).unwrap();
        let mut got = Vec::new();
        for _ in 0..4 {
            got.push(body.next().await.unwrap().unwrap());
        }
        assert_eq!(got, [b("pong"), b("1a"), b("2a"), b("1b")], "no request waits behind another");
        drop(one);
        assert!(body.next().now_or_never().is_none(), "nothing to send, not ended");
        assert!(!mux.has(1), "an ended request's pipe is dropped once drained");
        assert!(mux.has(2));
        drop(mux);
        assert!(body.next().await.is_none());
    }

    #[tokio::test]
    async fn removing_a_request_or_dropping_the_body_tells_its_writer() {
        let (mux, body) = mux(4);
        let (one, one_body) = pipe(4);
        let (two, two_body) = pipe(4);
        mux.add(1, one_body);
        mux.add(2, two_body);
        mux.remove(1);
        one.closed().await;
        assert!(two.closed().now_or_never().is_none());
        drop(body);
        two.closed().await;
        let (three, three_body) = pipe(4);
        mux.add(3, three_body);
        three.closed().await;
    }
}
