//! The service's listeners, on actix-server, and what they share: how a
//! connection is accepted (`bind`, the socket options), how it is counted
//! and closed at a shutdown (`crate::shutdown::linger`), and the settings
//! of HTTP/1.1 wherever it is spoken.
//!
//! - `plain.rs`: plain HTTP/1.1 (the default), actix-http's HTTP/1 service
//!   alone;
//! - `https.rs`: HTTPS, HTTP/2 or HTTP/1.1 by ALPN; `h2.rs` serves HTTP/2
//!   with hyper and this service's limits, `bridge.rs` hands each HTTP/2
//!   request to the actix-web app, `stall.rs` cuts a peer that takes
//!   nothing.

mod bridge;
mod h2;
mod https;
mod plain;
mod stall;

use std::{net::TcpListener, sync::Arc, time::Duration};

use self::https::App;
pub(crate) use self::{
    h2::H2Limits,
    https::{https, Conn},
    plain::plain_http1,
};
use crate::shutdown::Shutdown;

/// See `h1_write_buffer_size` in `plain::plain_http1`.
pub(crate) const H1_WRITE_BUFFER: usize = 8 * 1024;

/// How the HTTP listener serves, whichever protocol stack runs it.
pub(crate) struct Serving {
    pub workers: usize,
    pub request_timeout: Duration,
    pub grace: Duration,
    pub send_buffer: usize,
    pub nodelay: bool,
    /// Counts connections and makes them linger at a shutdown.
    pub shutdown: Arc<Shutdown>,
}

/// Per-connection socket options, applied as connections are accepted.
/// TCP_NODELAY (`--tcp-nodelay`) writes each chunk as its own packet; left
/// off, Nagle's algorithm lets the kernel merge small writes while one is
/// unacknowledged, which measured cheaper under load (see README).
fn socket_options(
    send_buffer: usize,
    nodelay: bool,
) -> impl Fn(&dyn std::any::Any, &mut actix_web::dev::Extensions) + Send + Sync {
    move |conn, _| {
        if let Some(stream) = conn.downcast_ref::<actix_web::rt::net::TcpStream>() {
            set_socket_options(stream, send_buffer, nodelay);
        }
    }
}

/// `socket_options` on one accepted connection.
pub(crate) fn set_socket_options(stream: &actix_web::rt::net::TcpStream, send_buffer: usize, nodelay: bool) {
    if nodelay {
        if let Err(e) = stream.set_nodelay(true) {
            tracing::warn!(error.message = %e, "could not set TCP_NODELAY");
        }
    }
    if send_buffer > 0 {
        if let Err(e) = socket2::SockRef::from(stream).set_send_buffer_size(send_buffer) {
            tracing::warn!(error.message = %e, "could not set the socket send buffer");
        }
    }
}

/// A listening socket with a queue of `backlog` connections not yet
/// accepted (the kernel caps it at `net.core.somaxconn`). The standard
/// library's `TcpListener::bind` queues 128: a burst of a thousand
/// connects (a reconnect storm) left the last ones retrying their SYN for
/// a second or more.
pub(crate) fn bind(address: &str, backlog: u32) -> std::io::Result<TcpListener> {
    use std::net::ToSocketAddrs;
    let mut last = std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address to listen on");
    for addr in address.to_socket_addrs()? {
        let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)?;
        socket.set_reuse_address(true)?;
        match socket.bind(&addr.into()).and_then(|()| socket.listen(backlog.min(i32::MAX as u32) as i32)) {
            Ok(()) => return Ok(socket.into()),
            Err(e) => last = e,
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[tokio::test]
    async fn the_listen_queue_holds_a_burst_of_connects_nobody_accepted_yet() {
        let listener = super::bind("127.0.0.1:0", 1024).unwrap();
        let addr = listener.local_addr().unwrap();
        // Nothing accepts: past a queue of 128, connects would hang in SYN
        // retries until accepted.
        let connects =
            (0..300).map(|_| tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr)));
        let results = futures_util::future::join_all(connects).await;
        let done = results.iter().filter(|r| matches!(r, Ok(Ok(_)))).count();
        assert_eq!(done, 300, "every connect completed its handshake into the queue");
    }
}
