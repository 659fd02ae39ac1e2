//! HTTP/2 connections (ALPN `h2`), served by hyper with this service's
//! limits, so that what one connection holds is bounded whatever its
//! client does (issue 21: one client opened 200,000 streams on one
//! connection and never read; the server held 1.1 GB):
//! - streams: at most `--h2-max-streams` open at once, advertised as
//!   SETTINGS_MAX_CONCURRENT_STREAMS. A stream is open until its response
//!   has left the server (queued bytes included). A client that opens one
//!   more is refused it with RST_STREAM REFUSED_STREAM (by h2, as RFC 9113
//!   says), and one that keeps on is sent away (GOAWAY
//!   ENHANCE_YOUR_CALM) at `MAX_LOCAL_RESETS` resets of its streams;
//!   while a refusal cannot be written, nothing more is read from it.
//! - response bytes: each stream queues at most `--h2-send-buffer` (plus
//!   the chunk in hand) that the connection cannot send yet; past it the
//!   body is not polled, so an SSE subscriber's pipe fills and it falls
//!   behind as on a full HTTP/1.1 socket.
//! - request bytes: the client may send at most `CONNECTION_WINDOW` that
//!   the app has not read yet (`STREAM_WINDOW` per stream).
//! - header blocks: `MAX_HEADER_LIST` bytes per request (431 past it).
//! - streams the client resets before they are served: `MAX_PENDING_RESETS`
//!   (the "rapid reset" attack).
//! - time: a connection with no request being answered for
//!   `--header-timeout-ms` (the first request included) is closed
//!   gracefully; a peer that leaves a ping unanswered for `PING_TIMEOUT` is
//!   closed; one that takes no byte for `--slow-consumer-ms` while the
//!   server has bytes for it is cut (`super::stall`).
//!
//! hyper runs each stream as a task of this worker's thread (`Local`):
//! the app's services and bodies are not `Send`.

use std::{future::Future, net::SocketAddr, pin::pin, rc::Rc, time::Duration};

use actix_server::GracefulShutdownSignal;
use hyper::server::conn::http2;
use hyper_util::rt::{TokioIo, TokioTimer};

use super::{
    bridge::{Bridge, Open},
    stall::Stall,
    App,
};
use crate::config::Settings;

/// Resets of a client's streams for its mistakes (refusals past the
/// stream limit included) before its connection is sent away. A browser
/// never gets one.
const MAX_LOCAL_RESETS: usize = 1024;
/// Streams the client opens and resets before they are served, at once.
const MAX_PENDING_RESETS: usize = 20;
/// Largest header block of a request, decoded (that of actix-http's
/// HTTP/1.1 is 32 KiB with the request line).
const MAX_HEADER_LIST: u32 = 16 * 1024;
/// Request bytes the client may send ahead of the app: per stream (a
/// request body, `--max-body-bytes` by default) and per connection.
const STREAM_WINDOW: u32 = 256 * 1024;
const CONNECTION_WINDOW: u32 = 1024 * 1024;
/// Pings of a connection: a peer gone without a word (no FIN) is found
/// within `PING_INTERVAL + PING_TIMEOUT` even while its streams are quiet.
const PING_INTERVAL: Duration = Duration::from_secs(20);
const PING_TIMEOUT: Duration = Duration::from_secs(20);

/// What one HTTP/2 connection may hold and for how long (see the module doc).
#[derive(Debug, Clone, Copy)]
pub(crate) struct H2Limits {
    max_streams: u32,
    send_buffer: usize,
    idle: Duration,
    stall: Duration,
}

impl H2Limits {
    pub(crate) fn new(settings: &Settings) -> H2Limits {
        H2Limits {
            max_streams: settings.limits.h2_max_streams.max(1),
            send_buffer: settings.limits.h2_send_buffer.max(1) as usize,
            idle: Duration::from_millis(settings.limits.header_timeout_ms.max(1)),
            stall: Duration::from_millis(settings.streaming.slow_consumer_ms.max(1)),
        }
    }
}

/// One worker's HTTP/2 server.
pub(super) struct Http2 {
    builder: http2::Builder<Local>,
    limits: H2Limits,
    shutdown: GracefulShutdownSignal,
}

impl Http2 {
    pub fn new(limits: H2Limits, shutdown: GracefulShutdownSignal) -> Http2 {
        let mut builder = http2::Builder::new(Local);
        builder
            .timer(TokioTimer::new())
            .max_concurrent_streams(limits.max_streams)
            .max_send_buf_size(limits.send_buffer)
            .max_local_error_reset_streams(MAX_LOCAL_RESETS)
            .max_pending_accept_reset_streams(MAX_PENDING_RESETS)
            .max_header_list_size(MAX_HEADER_LIST)
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .keep_alive_interval(PING_INTERVAL)
            .keep_alive_timeout(PING_TIMEOUT);
        Http2 { builder, limits, shutdown }
    }

    /// Serves one connection until it ends: its client closed it, it was
    /// idle, it broke a limit, or the server shut down (GOAWAY, then the
    /// streams being answered may finish within the grace time).
    pub async fn serve(&self, io: super::Conn, app: App, peer: Option<SocketAddr>) {
        let open = Rc::new(Open::new());
        let bridge = Bridge { app, peer, open: open.clone() };
        let io = TokioIo::new(Stall::new(io, self.limits.stall));
        let mut connection = pin!(self.builder.serve_connection(io, bridge));
        let mut closing = false;
        loop {
            tokio::select! {
                ended = connection.as_mut() => {
                    // The client's doing (gone, or sent away), or a cut
                    // that already said why: nothing for an operator.
                    if let Err(e) = ended {
                        tracing::debug!(?peer, error.message = %e, "HTTP/2 connection ended");
                    }
                    return;
                }
                () = self.shutdown.notified(), if !closing => {
                    closing = true;
                    connection.as_mut().graceful_shutdown();
                }
                () = open.idle_for(self.limits.idle), if !closing => {
                    closing = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// Runs hyper's tasks (one per stream) on the worker's own thread.
#[derive(Clone, Copy)]
struct Local;

impl<F> hyper::rt::Executor<F> for Local
where
    F: Future + 'static,
    F::Output: 'static,
{
    fn execute(&self, task: F) {
        actix_web::rt::spawn(task);
    }
}
