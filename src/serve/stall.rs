//! A connection's socket: its writes are cut when the peer takes nothing
//! for too long, and its close lingers.
//!
//! HTTP/2 multiplexes every stream on one socket, so the subscriber's
//! own slow-consumer check (`--slow-consumer-ms`) cannot see a peer that
//! reads nothing at all: its streams just stop being polled, and hyper
//! keeps waiting to write (a GOAWAY, or a ping after which it would close,
//! waits for the same full socket). Without this, a client that opened a
//! connection, asked, and never read held it (and what it holds) for as
//! long as it kept its socket open.
//!
//! The timer is armed only while a write waits on the socket, and wakes
//! the connection's task when it runs out: nothing is checked while
//! writes go through.
//!
//! Closing lingers: once our side is shut (after the GOAWAY), what the
//! peer still sends is read and dropped until its end, for at most
//! `LINGER` and `LINGER_BYTES` (a peer that goes on sending is not
//! closing, and is not read for long). A socket closed with unread bytes
//! sends a reset, which makes the peer's own close fail and can make it
//! drop our last frames unread.

use std::{
    future::Future as _,
    io,
    pin::Pin,
    task::{ready, Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::{Instant, Sleep},
};

/// How long, and how much, a closing connection reads of what its peer
/// still sends: a closing peer sends a few frames (a ping's answer, its
/// TLS close_notify).
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 64 * 1024;

pub(super) struct Stall<T> {
    io: T,
    limit: Duration,
    /// Set while a write waits: when it runs out (then, once our side is
    /// shut, when lingering ends). Kept between waits (a connection that
    /// waits once likely waits again).
    timer: Option<Pin<Box<Sleep>>>,
    waiting: bool,
    /// Our side is shut: lingering.
    shut: bool,
    /// Bytes read and dropped since.
    lingered: usize,
}

impl<T> Stall<T> {
    pub fn new(io: T, limit: Duration) -> Stall<T> {
        Stall { io, limit, timer: None, waiting: false, shut: false, lingered: 0 }
    }

    /// `result` of a write on the socket, or an error once writes have
    /// waited for `limit`.
    fn watch<R>(&mut self, result: Poll<io::Result<R>>, cx: &mut Context<'_>) -> Poll<io::Result<R>> {
        if result.is_ready() {
            self.waiting = false;
            return result;
        }
        let deadline = Instant::now() + self.limit;
        let timer = self.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if !self.waiting {
            self.waiting = true;
            timer.as_mut().reset(deadline);
        }
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                tracing::debug!(
                    limit_ms = self.limit.as_millis() as u64,
                    "closing a connection whose peer takes nothing"
                );
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "the peer took nothing")))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Stall<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Stall<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.io).poll_write(cx, buf);
        self.watch(result, cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.watch(result, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.io).poll_flush(cx);
        self.watch(result, cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.shut {
            let result = Pin::new(&mut self.io).poll_shutdown(cx);
            ready!(self.watch(result, cx))?;
            self.shut = true;
            let deadline = Instant::now() + LINGER;
            match &mut self.timer {
                Some(timer) => timer.as_mut().reset(deadline),
                None => self.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
        }
        let mut scratch = [0u8; 1024];
        loop {
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut self.io).poll_read(cx, &mut buf) {
                // More from the peer: dropped.
                Poll::Ready(Ok(())) if !buf.filled().is_empty() => {
                    self.lingered += buf.filled().len();
                    if self.lingered > LINGER_BYTES {
                        return Poll::Ready(Ok(()));
                    }
                }
                // Its end (or a broken socket): nothing left to wait for.
                Poll::Ready(_) => return Poll::Ready(Ok(())),
                Poll::Pending => break,
            }
        }
        match &mut self.timer {
            Some(timer) => timer.as_mut().poll(cx).map(Ok),
            None => Poll::Ready(Ok(())),
        }
    }
}
