//! The hand-off between a subscriber and its response body (SSE, the seed
//! route and WebSocket alike).
//!
//! Both ends live on the same HTTP worker thread (the handler that returns
//! the body starts the session there, and joins that worker's relay), so
//! the pipe is a small
//! bounded queue behind an `Rc<RefCell<_>>`: no atomics, no cross-thread
//! wake-ups, and nothing allocated per frame. It replaces a tokio mpsc
//! channel, whose per-send synchronization was measurable at 200,000
//! deliveries a second (see README, Performance).
//!
//! - The writer (`PipeWriter`, held by the subscriber that its relay and
//!   session share) adds frames while there is room
//!   (`try_send`) or waits for room (`send`). One place beyond the capacity
//!   is kept for the closing event (`push_final`), so a subscriber that
//!   stopped reading is still told why it is closed. The closing event
//!   seals the pipe: nothing is queued after it, not even by a writer that
//!   was waiting for room when it came (a catch-up, a control frame), so
//!   the client's last event is always the one that says why.
//! - The reader (`PipeBody`, the response body) yields frames in order and
//!   ends when every writer is gone. Dropping it (the client went away)
//!   wakes the writer, which `closed` reports.
//! - A positional frame may carry the subscriber's cursor after it
//!   (`try_send_at`); the pipe remembers the last one the body took, so a
//!   subscriber closed while behind can drop what still waits here
//!   (`discard_queued`) and put its closing event right after what its
//!   client will get, naming that position.

use std::{
    cell::RefCell,
    collections::VecDeque,
    convert::Infallible,
    future::poll_fn,
    pin::Pin,
    rc::Rc,
    task::{Context, Poll, Waker},
};

use bytes::Bytes;
use futures_util::Stream;

use crate::domain::cursor::Cursor;

/// The subscriber's position after a positional frame (`None`: before the
/// thread's first message).
pub type At = Option<Cursor>;

struct State {
    /// Frames, each with the position it moves its subscriber to, if any.
    queue: VecDeque<(Bytes, Option<At>)>,
    /// The position of the last positional frame the body took.
    taken: Option<At>,
    capacity: usize,
    writers: usize,
    body_gone: bool,
    /// The closing frame is queued: nothing more is taken.
    sealed: bool,
    /// The body waiting for a frame.
    body_waker: Option<Waker>,
    /// Writers waiting for room.
    writer_wakers: Vec<Waker>,
    /// Writers waiting only for the body to go: not woken per frame (the
    /// session actor waits here for its whole life, and waking it on each
    /// frame the body takes would run it per chunk).
    close_wakers: Vec<Waker>,
}

impl State {
    fn wake_writers(&mut self) {
        for waker in self.writer_wakers.drain(..) {
            waker.wake();
        }
    }

    /// The body keeps its waker registered (it re-registers only when the
    /// task changes), so a frame costs a wake by reference, not a clone.
    fn wake_body(&self) {
        if let Some(waker) = &self.body_waker {
            waker.wake_by_ref();
        }
    }

    fn park_writer(&mut self, cx: &Context<'_>) {
        park(&mut self.writer_wakers, cx);
    }
}

fn park(wakers: &mut Vec<Waker>, cx: &Context<'_>) {
    if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
        wakers.push(cx.waker().clone());
    }
}

/// Why `try_send` did not take a frame; the frame is given back.
#[derive(Debug)]
pub enum TrySendError {
    Full(Bytes),
    Closed(Bytes),
}

/// A pipe holding at most `capacity` frames (plus the closing one).
pub fn pipe(capacity: usize) -> (PipeWriter, PipeBody) {
    let state = Rc::new(RefCell::new(State {
        queue: VecDeque::new(),
        taken: None,
        capacity: capacity.max(1),
        writers: 1,
        body_gone: false,
        sealed: false,
        body_waker: None,
        writer_wakers: Vec::new(),
        close_wakers: Vec::new(),
    }));
    (PipeWriter { state: state.clone() }, PipeBody { state })
}

/// The subscriber's end: written by its worker's relay and by its session.
pub struct PipeWriter {
    state: Rc<RefCell<State>>,
}

impl Drop for PipeWriter {
    fn drop(&mut self) {
        let mut state = self.state.borrow_mut();
        state.writers -= 1;
        if state.writers == 0 {
            state.wake_body();
        }
    }
}

impl PipeWriter {
    /// Queues `frame` if there is room, without waiting.
    pub fn try_send(&self, frame: Bytes) -> Result<(), TrySendError> {
        self.try_send_at(frame, None)
    }

    /// As `try_send`, for a frame that moves its subscriber to `at`.
    pub fn try_send_at(&self, frame: Bytes, at: Option<At>) -> Result<(), TrySendError> {
        let mut state = self.state.borrow_mut();
        if state.body_gone || state.sealed {
            return Err(TrySendError::Closed(frame));
        }
        if state.queue.len() >= state.capacity {
            return Err(TrySendError::Full(frame));
        }
        state.queue.push_back((frame, at));
        state.wake_body();
        Ok(())
    }

    /// Queues `frame` once there is room; `Err` when the body is gone or
    /// the pipe is sealed.
    pub async fn send(&self, frame: Bytes) -> Result<(), ()> {
        self.send_at(frame, None).await
    }

    /// Queues `frame` (moving its subscriber to `at`, if positional) once
    /// there is room; `Err` when the body is gone.
    pub async fn send_at(&self, frame: Bytes, at: Option<At>) -> Result<(), ()> {
        let mut frame = Some((frame, at));
        poll_fn(|cx| {
            let mut state = self.state.borrow_mut();
            if state.body_gone || state.sealed {
                return Poll::Ready(Err(()));
            }
            if state.queue.len() < state.capacity {
                // The frame is taken once, on the poll that returns Ready.
                state.queue.extend(frame.take());
                state.wake_body();
                return Poll::Ready(Ok(()));
            }
            state.park_writer(cx);
            Poll::Pending
        })
        .await
    }

    /// Resolves once there is room for a frame; `Err` when the body is gone.
    pub async fn ready(&self) -> Result<(), ()> {
        poll_fn(|cx| {
            let mut state = self.state.borrow_mut();
            if state.body_gone || state.sealed {
                return Poll::Ready(Err(()));
            }
            if state.queue.len() < state.capacity {
                return Poll::Ready(Ok(()));
            }
            state.park_writer(cx);
            Poll::Pending
        })
        .await
    }

    /// Queues the closing frame even when the pipe is full (the one place
    /// kept beyond the capacity), and seals the pipe: writers waiting for
    /// room are woken and refused, and a second closing frame is dropped.
    pub fn push_final(&self, frame: Bytes) {
        let mut state = self.state.borrow_mut();
        if !state.body_gone && !state.sealed {
            state.sealed = true;
            state.queue.push_back((frame, None));
            state.wake_body();
            state.wake_writers();
        }
    }

    /// Drops every frame the body has not taken yet; the position of the
    /// last positional frame it did take (`None`: none yet).
    pub fn discard_queued(&self) -> Option<At> {
        let mut state = self.state.borrow_mut();
        state.queue.clear();
        state.wake_writers();
        state.taken
    }

    /// Resolves when the body is gone (the client went away).
    pub async fn closed(&self) {
        poll_fn(|cx| {
            let mut state = self.state.borrow_mut();
            if state.body_gone {
                return Poll::Ready(());
            }
            park(&mut state.close_wakers, cx);
            Poll::Pending
        })
        .await
    }
}

/// The response body's end: a stream of frames.
pub struct PipeBody {
    state: Rc<RefCell<State>>,
}

impl Stream for PipeBody {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut state = self.state.borrow_mut();
        if let Some((frame, at)) = state.queue.pop_front() {
            if at.is_some() {
                state.taken = at;
            }
            state.wake_writers();
            return Poll::Ready(Some(Ok(frame)));
        }
        if state.writers == 0 {
            return Poll::Ready(None);
        }
        if !state.body_waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            state.body_waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

impl Drop for PipeBody {
    fn drop(&mut self) {
        let mut state = self.state.borrow_mut();
        state.body_gone = true;
        state.queue.clear();
        state.wake_writers();
        for waker in state.close_wakers.drain(..) {
            waker.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use futures_util::{FutureExt, StreamExt};

    use super::*;

    #[tokio::test]
    async fn frames_arrive_in_order_and_the_body_ends_with_the_writers() {
        let (tx, mut body) = pipe(2);
        tx.try_send(Bytes::from_static(b"a")).unwrap();
        tx.try_send(Bytes::from_static(b"b")).unwrap();
        assert!(matches!(tx.try_send(Bytes::from_static(b"c")), Err(TrySendError::Full(_))));
        // The closing frame fits even when full.
        tx.push_final(Bytes::from_static(b"end"));
        drop(tx);
        let got: Vec<Bytes> = body.by_ref().map(Result::unwrap).collect().await;
        assert_eq!(got, vec![Bytes::from_static(b"a"), Bytes::from_static(b"b"), Bytes::from_static(b"end")]);
    }

    #[tokio::test]
    async fn a_waiting_send_goes_through_when_the_body_reads() {
        let (tx, mut body) = pipe(1);
        tx.try_send(Bytes::from_static(b"a")).unwrap();
        let mut send = Box::pin(tx.send(Bytes::from_static(b"b")));
        assert!(send.as_mut().now_or_never().is_none(), "no room yet");
        assert_eq!(body.next().await.unwrap().unwrap(), Bytes::from_static(b"a"));
        assert_eq!(send.await, Ok(()));
        assert_eq!(body.next().await.unwrap().unwrap(), Bytes::from_static(b"b"));
    }

    #[tokio::test]
    async fn discarding_keeps_what_the_body_took_and_names_its_position() {
        let (tx, mut body) = pipe(4);
        let at = |offset| Some(Some(Cursor::new(uuid::Uuid::nil(), 0, offset)));
        tx.try_send_at(Bytes::from_static(b"a"), at(1)).unwrap();
        tx.try_send(Bytes::from_static(b"ping")).unwrap();
        tx.try_send_at(Bytes::from_static(b"b"), at(2)).unwrap();
        assert_eq!(tx.discard_queued(), None, "the body took nothing yet");
        tx.try_send_at(Bytes::from_static(b"c"), at(3)).unwrap();
        tx.try_send(Bytes::from_static(b"ping")).unwrap();
        tx.try_send_at(Bytes::from_static(b"d"), at(4)).unwrap();
        assert_eq!(body.next().await.unwrap().unwrap(), Bytes::from_static(b"c"));
        assert_eq!(body.next().await.unwrap().unwrap(), Bytes::from_static(b"ping"));
        assert_eq!(tx.discard_queued(), at(3));
        tx.push_final(Bytes::from_static(b"end"));
        drop(tx);
        assert_eq!(body.next().await.unwrap().unwrap(), Bytes::from_static(b"end"), "nothing else waited");
        assert!(body.next().await.is_none());
    }

    /// The race a shutdown hit: a catch-up waits for room in a full pipe,
    /// the subscriber is closed while behind (its queue dropped, which
    /// makes room), and the waiting write must not land after the closing
    /// event, nor may anything else.
    #[tokio::test]
    async fn nothing_is_queued_after_the_closing_frame() {
        let (tx, mut body) = pipe(1);
        tx.try_send(Bytes::from_static(b"a")).unwrap();
        let mut waiting = Box::pin(tx.send(Bytes::from_static(b"late")));
        assert!(waiting.as_mut().now_or_never().is_none(), "no room yet");
        tx.discard_queued();
        tx.push_final(Bytes::from_static(b"end"));
        assert_eq!(waiting.await, Err(()), "the waiting write is refused");
        assert!(matches!(tx.try_send(Bytes::from_static(b"pong")), Err(TrySendError::Closed(_))));
        assert_eq!(tx.ready().await, Err(()));
        tx.push_final(Bytes::from_static(b"again"));
        drop(tx);
        let got: Vec<Bytes> = body.by_ref().map(Result::unwrap).collect().await;
        assert_eq!(got, vec![Bytes::from_static(b"end")]);
    }

    #[tokio::test]
    async fn dropping_the_body_closes_the_writer() {
        let (tx, body) = pipe(1);
        tx.try_send(Bytes::from_static(b"a")).unwrap();
        let mut closed = Box::pin(tx.closed());
        assert!(closed.as_mut().now_or_never().is_none());
        let waiting = tx.send(Bytes::from_static(b"b"));
        drop(body);
        closed.await;
        assert_eq!(waiting.await, Err(()));
        assert!(matches!(tx.try_send(Bytes::from_static(b"c")), Err(TrySendError::Closed(_))));
    }

    /// Counts its wake-ups.
    struct Count(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Count {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    #[tokio::test]
    async fn a_writer_waiting_for_the_close_is_not_woken_by_each_frame() {
        let (tx, mut body) = pipe(4);
        let count = std::sync::Arc::new(Count(std::sync::atomic::AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut closed = Box::pin(tx.closed());
        assert!(std::future::Future::poll(closed.as_mut(), &mut Context::from_waker(&waker)).is_pending());
        for _ in 0..3 {
            tx.try_send(Bytes::from_static(b"a")).unwrap();
            body.next().await.unwrap().unwrap();
        }
        assert_eq!(count.0.load(std::sync::atomic::Ordering::Relaxed), 0, "frames woke the close waiter");
        drop(body);
        assert_eq!(count.0.load(std::sync::atomic::Ordering::Relaxed), 1, "the body going wakes it");
    }
}
