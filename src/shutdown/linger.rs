//! A connection that, while the process shuts down, closes the way a
//! careful server closes: it sends its FIN after its last byte and then
//! keeps reading (and dropping) what the peer sends until the peer closes
//! too, or the shutdown's deadline comes.
//!
//! Why: a socket closed while input from its peer waits unread (a
//! WebSocket client's pong, say) is reset, and a reset makes the peer's
//! kernel throw away what it still held for its reader. A reader far
//! behind at a shutdown (megabytes in its socket buffers) would lose its
//! closing `shutting_down` and the text before it. Waiting for the peer's
//! own close also tells the shutdown when each reader has read everything,
//! so the process exits as soon as the last one has, not at a guess.
//!
//! Outside a shutdown it closes as before (FIN, then the socket is
//! dropped). Each wrapper also counts its connection (`Shutdown::connection`)
//! until it is dropped.

use std::{
    future::Future,
    io,
    pin::Pin,
    sync::Arc,
    task::{ready, Context, Poll},
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::Sleep,
};

use super::{ConnectionGuard, Shutdown};

/// An accepted connection's stream, lingering at its close during a
/// shutdown (see the module doc).
pub struct Lingering<T> {
    io: T,
    shutdown: Arc<Shutdown>,
    /// Its FIN went out.
    write_closed: bool,
    /// The shutdown's deadline, armed when lingering starts.
    timer: Option<Pin<Box<Sleep>>>,
    _counted: ConnectionGuard,
}

impl<T> Lingering<T> {
    pub fn new(io: T, shutdown: &Arc<Shutdown>) -> Self {
        Lingering { io, shutdown: shutdown.clone(), write_closed: false, timer: None, _counted: shutdown.connection() }
    }

    /// The stream inside (for socket options).
    pub fn get_ref(&self) -> &T {
        &self.io
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> Lingering<T> {
    /// Reads and drops the peer's bytes until it closes (or errs), or the
    /// deadline passes.
    fn poll_peer_close(&mut self, cx: &mut Context<'_>, deadline: tokio::time::Instant) -> Poll<()> {
        let mut scratch = [0u8; 2048];
        loop {
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut self.io).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if buf.filled().is_empty() => return Poll::Ready(()),
                Poll::Ready(Ok(())) => continue,
                Poll::Ready(Err(_)) => return Poll::Ready(()),
                Poll::Pending => break,
            }
        }
        let timer = self.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        timer.as_mut().poll(cx)
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Lingering<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Lingering<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.write_closed {
            ready!(Pin::new(&mut this.io).poll_shutdown(cx))?;
            this.write_closed = true;
        }
        match this.shutdown.deadline() {
            Some(deadline) => this.poll_peer_close(cx, deadline).map(Ok),
            None => Poll::Ready(Ok(())),
        }
    }
}

/// So that TLS (actix-tls) can run over it like over a `TcpStream`.
impl<T: actix_web::rt::net::ActixStream> actix_web::rt::net::ActixStream for Lingering<T> {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<tokio::io::Ready>> {
        self.io.poll_read_ready(cx)
    }

    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<tokio::io::Ready>> {
        self.io.poll_write_ready(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn outside_a_shutdown_it_closes_at_once() {
        let shutdown = Shutdown::new();
        let (server, _client) = tokio::io::duplex(64);
        let mut conn = Lingering::new(server, &shutdown);
        assert_eq!(shutdown.open_connections(), 1);
        tokio::time::timeout(Duration::from_millis(100), conn.shutdown()).await.unwrap().unwrap();
        drop(conn);
        assert_eq!(shutdown.open_connections(), 0);
    }

    #[tokio::test]
    async fn during_a_shutdown_it_waits_for_the_peer_to_read_and_close() {
        let shutdown = Shutdown::new();
        shutdown.begin(Duration::from_secs(30));
        let (server, mut client) = tokio::io::duplex(64);
        let mut conn = Lingering::new(server, &shutdown);
        conn.write_all(b"last words").await.unwrap();
        client.write_all(b"a pong the server never reads").await.unwrap();
        let closing = tokio::spawn(async move { conn.shutdown().await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!closing.is_finished(), "it waits while the peer is open");
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"last words", "everything written, then its close");
        drop(client);
        tokio::time::timeout(Duration::from_secs(1), closing).await.unwrap().unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_peer_that_never_closes_is_left_at_the_deadline() {
        let shutdown = Shutdown::new();
        shutdown.begin(Duration::from_millis(100));
        let (server, _client) = tokio::io::duplex(64);
        let mut conn = Lingering::new(server, &shutdown);
        tokio::time::timeout(Duration::from_secs(2), conn.shutdown()).await.unwrap().unwrap();
    }
}
