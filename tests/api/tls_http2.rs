//! HTTP/2 over TLS holds a bounded amount per connection: the server
//! advertises `SETTINGS_MAX_CONCURRENT_STREAMS` (`--h2-max-streams`),
//! refuses each stream past it (RST_STREAM `REFUSED_STREAM`), sends away a
//! client that keeps opening them (GOAWAY `ENHANCE_YOUR_CALM`), and closes
//! a connection whose peer takes nothing (`--slow-consumer-ms`). A client
//! within the limit is served as before (requests, SSE, HEAD, its address
//! for `--trusted-proxies`), and WebSockets keep HTTP/1.1 on the same port.
//!
//! The well-behaved client is the `h2` crate; the hostile one writes its
//! frames by hand (`raw`), since a client library keeps to the limit.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};
use tokio::{io::AsyncWriteExt, net::TcpStream};
use tokio_rustls::client::TlsStream;

use crate::{
    support::{Server, WAIT},
    tls::https_server_with,
};

/// A TLS connection to `server` that trusts `pem` and offers only `alpn`;
/// `recv_buffer`: a small kernel receive buffer, so that a client that
/// stops reading is felt by the server at once.
async fn connect(server: &Server, pem: &str, alpn: &[u8], recv_buffer: Option<u32>) -> TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let addr: std::net::SocketAddr = authority(server).parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size).unwrap();
    }
    let tcp = socket.connect(addr).await.unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(alpn), "the server agreed on {alpn:?}");
    tls
}

fn authority(server: &Server) -> &str {
    server.base.trim_start_matches("https://")
}

#[actix_web::test]
async fn a_client_past_the_stream_limit_is_refused_and_one_that_keeps_on_is_sent_away() {
    let dir = tempfile::tempdir().unwrap();
    let (server, pem) = https_server_with(&dir, &[]).await;
    let (mut rd, mut wr) = tokio::io::split(connect(&server, &pem, b"h2", None).await);
    // A stream window of 0: the server may send no response body, so
    // every stream it takes stays open.
    let mut hello = raw::PREFACE.to_vec();
    hello.extend(raw::settings(&[(raw::INITIAL_WINDOW_SIZE, 0)]));
    wr.write_all(&hello).await.unwrap();
    let settings = raw::read(&mut rd).await.expect("the server's SETTINGS");
    assert_eq!(settings.kind, raw::SETTINGS);
    assert_eq!(raw::setting(&settings.payload, raw::MAX_CONCURRENT_STREAMS), Some(100), "the default limit");
    wr.write_all(&raw::frame(raw::SETTINGS, raw::ACK, 0, &[])).await.unwrap();

    // 150 requests at once: the first 100 are served (their response
    // headers come), every later one is refused.
    let host = authority(&server).to_owned();
    let requests: Vec<u8> = (0..150).flat_map(|i| raw::get(1 + 2 * i, &host, "/healthz")).collect();
    wr.write_all(&requests).await.unwrap();
    let (mut served, mut refused) = (BTreeSet::new(), BTreeSet::new());
    while served.len() + refused.len() < 150 {
        let f = tokio::time::timeout(WAIT, raw::read(&mut rd)).await.expect("frames in time").expect("open");
        match f.kind {
            raw::HEADERS => assert!(served.insert(f.stream)),
            raw::RST_STREAM => {
                assert_eq!(raw::code(&f.payload), raw::REFUSED_STREAM, "stream {}", f.stream);
                assert!(refused.insert(f.stream));
            }
            raw::GOAWAY => panic!("sent away after {} refusals", refused.len()),
            _ => {}
        }
    }
    assert_eq!((served.len(), refused.len()), (100, 50));
    assert!(served.last() < refused.first(), "the first 100 streams are the ones served");

    // A client that goes on opening streams is refused each, then sent
    // away: refusing is work, and it is bounded per connection.
    let more: Vec<u8> = (150..1_300).flat_map(|i| raw::get(1 + 2 * i, &host, "/healthz")).collect();
    // (The server stops reading once it has sent the client away.)
    let writer = actix_web::rt::spawn(async move { wr.write_all(&more).await });
    let reason = loop {
        let f = tokio::time::timeout(WAIT, raw::read(&mut rd)).await.expect("frames in time").expect("a GOAWAY");
        match f.kind {
            raw::HEADERS => panic!("stream {} served past the limit", f.stream),
            raw::RST_STREAM => assert!(refused.insert(f.stream)),
            raw::GOAWAY => break raw::code(&f.payload[4..]),
            _ => {}
        }
    };
    assert_eq!(reason, raw::ENHANCE_YOUR_CALM);
    assert!(refused.len() <= 1_024, "{} refusals", refused.len());
    assert!(
        tokio::time::timeout(WAIT, async { while raw::read(&mut rd).await.is_some() {} }).await.is_ok(),
        "the connection is closed after the GOAWAY"
    );
    let _ = writer.await;
}

#[actix_web::test]
async fn the_limit_is_advertised_and_a_client_within_it_is_served_as_before() {
    let dir = tempfile::tempdir().unwrap();
    let flags = ["--h2-max-streams", "4", "--trusted-proxies", "127.0.0.1"];
    let (server, pem) = https_server_with(&dir, &flags).await;
    let thread = server.thread().await;
    let tls = connect(&server, &pem, b"h2", None).await;
    let (client, connection) = h2::client::handshake(tls).await.unwrap();
    actix_web::rt::spawn(connection);
    let request = |method: &str, path: &str| {
        http::Request::builder().method(method).uri(format!("{}{path}", server.base)).body(()).unwrap()
    };

    let mut client = client.ready().await.unwrap();
    let (answer, _) = client.send_request(request("GET", "/healthz"), true).unwrap();
    let answer = answer.await.unwrap();
    assert_eq!(answer.status(), 200);
    let body = read_body(answer.into_body()).await;
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&body).unwrap()["status"], "ok");
    assert_eq!(client.current_max_send_streams(), 4, "the server's SETTINGS_MAX_CONCURRENT_STREAMS");

    // Four live SSE streams fill the connection's places...
    let mut streams = Vec::new();
    for _ in 0..4 {
        client = client.ready().await.unwrap();
        let (answer, _) = client.send_request(request("GET", &format!("{thread}/events")), true).unwrap();
        let answer = answer.await.unwrap();
        assert_eq!(answer.status(), 200);
        assert_eq!(answer.headers()["content-type"], "text/event-stream");
        let mut body = answer.into_body();
        let mut seen = Vec::new();
        while !String::from_utf8_lossy(&seen).contains("event: ready") {
            let chunk = tokio::time::timeout(WAIT, body.data()).await.expect("an event in time").unwrap().unwrap();
            seen.extend_from_slice(&chunk);
        }
        streams.push(body);
    }
    // ...so a fifth request waits (the client keeps to the limit) until
    // a stream ends: a client that leaves frees its place.
    client = client.ready().await.unwrap();
    let (fifth, _) = client.send_request(request("GET", "/healthz"), true).unwrap();
    let mut fifth = Box::pin(fifth);
    assert!(tokio::time::timeout(Duration::from_millis(300), &mut fifth).await.is_err(), "the fifth waited");
    drop(streams.pop());
    let fifth = tokio::time::timeout(WAIT, fifth).await.expect("a place was freed").unwrap();
    assert_eq!(fifth.status(), 200);

    // HEAD (answered wherever GET is): the GET's headers, no body.
    client = client.ready().await.unwrap();
    let (head, _) = client.send_request(request("HEAD", "/healthz"), true).unwrap();
    let head = head.await.unwrap();
    assert_eq!(head.status(), 200);
    let length = head.headers().get("content-length").map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
    assert!(length.unwrap_or(0) > 0, "the length the body would have: {length:?}");
    assert!(head.body().is_end_stream(), "no body after HEAD");

    // The client's address reaches the service: from a trusted proxy
    // (this client), a forwarded host is believed, and in open mode one
    // that is not loopback is refused.
    client = client.ready().await.unwrap();
    let mut forwarded = request("GET", "/healthz");
    forwarded.headers_mut().insert("x-forwarded-host", "convo.example".parse().unwrap());
    let (answer, _) = client.send_request(forwarded, true).unwrap();
    assert_eq!(answer.await.unwrap().status(), 403);
}

#[actix_web::test]
async fn a_shutdown_ends_http2_streams_with_their_last_event_then_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let (server, pem) = https_server_with(&dir, &[]).await;
    let thread = server.thread().await;
    let (client, connection) = h2::client::handshake(connect(&server, &pem, b"h2", None).await).await.unwrap();
    let connection = actix_web::rt::spawn(connection);
    let uri = format!("{}{thread}/events", server.base);
    let (answer, _) =
        client.ready().await.unwrap().send_request(http::Request::get(uri).body(()).unwrap(), true).unwrap();
    let mut body = answer.await.unwrap().into_body();
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("event: ready") {
        seen.extend_from_slice(&tokio::time::timeout(WAIT, body.data()).await.unwrap().unwrap().unwrap());
    }

    let handle = server.handle.clone().unwrap();
    actix_web::rt::spawn(async move { handle.shutdown().await });
    // The stream's last event says why, then it ends...
    seen.extend(read_body(body).await);
    assert!(String::from_utf8_lossy(&seen).contains("shutting_down"), "{}", String::from_utf8_lossy(&seen));
    // ...and the connection closes (GOAWAY), with nothing left open.
    let ended = tokio::time::timeout(WAIT, connection).await.expect("the connection closed in time");
    assert!(ended.unwrap().is_ok(), "a graceful close");
}

#[actix_web::test]
async fn an_http2_connection_with_nothing_to_answer_is_closed_after_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (server, pem) = https_server_with(&dir, &["--header-timeout-ms", "300"]).await;
    // One client never asks; the other asks once, then stays quiet.
    let started = std::time::Instant::now();
    let (_silent, silent) = h2::client::handshake(connect(&server, &pem, b"h2", None).await).await.unwrap();
    let (client, asker) = h2::client::handshake(connect(&server, &pem, b"h2", None).await).await.unwrap();
    let (silent, asker) = (actix_web::rt::spawn(silent), actix_web::rt::spawn(asker));
    let request = http::Request::get(format!("{}/healthz", server.base)).body(()).unwrap();
    let (answer, _) = client.ready().await.unwrap().send_request(request, true).unwrap();
    assert_eq!(answer.await.unwrap().status(), 200);
    for connection in [silent, asker] {
        let ended = tokio::time::timeout(Duration::from_secs(5), connection).await.expect("closed in time");
        let ended = ended.unwrap();
        assert!(ended.is_ok(), "a graceful close (GOAWAY): {ended:?}");
    }
    assert!(started.elapsed() >= Duration::from_millis(300));
}

/// A body whole, giving back flow-control capacity as it is read.
async fn read_body(mut body: h2::RecvStream) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(chunk) = tokio::time::timeout(WAIT, body.data()).await.expect("body in time") {
        let chunk = chunk.unwrap();
        body.flow_control().release_capacity(chunk.len()).unwrap();
        out.extend_from_slice(&chunk);
    }
    out
}

#[actix_web::test]
async fn a_connection_whose_peer_takes_nothing_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let flags = ["--slow-consumer-ms", "300", "--socket-send-buffer", "8192"];
    let (server, pem) = https_server_with(&dir, &flags).await;
    let (_rd, mut wr) = tokio::io::split(connect(&server, &pem, b"h2", Some(4096)).await);
    // Windows wide open, and requests for the biggest file: the server
    // has far more to send than the sockets hold, and the client reads
    // nothing.
    let mut hello = raw::PREFACE.to_vec();
    hello.extend(raw::settings(&[(raw::INITIAL_WINDOW_SIZE, i32::MAX as u32)]));
    hello.extend(raw::frame(raw::WINDOW_UPDATE, 0, 0, &(i32::MAX as u32 - 65_535).to_be_bytes()));
    let host = authority(&server).to_owned();
    hello.extend((0..50).flat_map(|i| raw::get(1 + 2 * i, &host, "/client/convo.js")));
    wr.write_all(&hello).await.unwrap();
    // Pings until a write fails: the server has closed the connection.
    let started = std::time::Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(5), async move {
        loop {
            if wr.write_all(&raw::frame(raw::PING, 0, 0, &[0; 8])).await.is_err() || wr.flush().await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(closed.is_ok(), "the connection stayed open");
    assert!(started.elapsed() >= Duration::from_millis(300), "not before the peer was given its time");
}

#[actix_web::test]
async fn websockets_keep_http1_on_the_tls_port_and_the_page_opens_them_from_its_own_origin() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let dir = tempfile::tempdir().unwrap();
    let (server, pem) = https_server_with(&dir, &[]).await;
    let thread = server.thread().await;
    let tls = connect(&server, &pem, b"http/1.1", None).await;
    let mut request = format!("wss://{}{thread}/ws", authority(&server)).into_client_request().unwrap();
    request.headers_mut().insert("origin", server.base.parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::client_async(request, tls).await.expect("upgraded over HTTP/1.1");
    let first = tokio::time::timeout(WAIT, ws.next()).await.unwrap().unwrap().unwrap();
    assert!(first.to_text().unwrap().contains("\"ready\""), "{first:?}");
}

/// HTTP/2 frames written and read by hand (RFC 9113), with just enough
/// HPACK (RFC 7541) to ask for a path.
mod raw {
    use tokio::io::{AsyncRead, AsyncReadExt};

    pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    pub const HEADERS: u8 = 0x1;
    pub const RST_STREAM: u8 = 0x3;
    pub const SETTINGS: u8 = 0x4;
    pub const PING: u8 = 0x6;
    pub const GOAWAY: u8 = 0x7;
    pub const WINDOW_UPDATE: u8 = 0x8;
    pub const ACK: u8 = 0x1;
    const END_STREAM: u8 = 0x1;
    const END_HEADERS: u8 = 0x4;
    pub const MAX_CONCURRENT_STREAMS: u16 = 0x3;
    pub const INITIAL_WINDOW_SIZE: u16 = 0x4;
    pub const REFUSED_STREAM: u32 = 0x7;
    pub const ENHANCE_YOUR_CALM: u32 = 0xb;

    pub struct Frame {
        pub kind: u8,
        pub stream: u32,
        pub payload: Vec<u8>,
    }

    pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        out.extend([kind, flags]);
        out.extend(stream.to_be_bytes());
        out.extend(payload);
        out
    }

    pub fn settings(values: &[(u16, u32)]) -> Vec<u8> {
        let payload: Vec<u8> =
            values.iter().flat_map(|(id, v)| id.to_be_bytes().into_iter().chain(v.to_be_bytes())).collect();
        frame(SETTINGS, 0, 0, &payload)
    }

    /// The value of setting `id` in a SETTINGS payload.
    pub fn setting(payload: &[u8], id: u16) -> Option<u32> {
        payload
            .chunks_exact(6)
            .find(|s| s[..2] == id.to_be_bytes())
            .map(|s| u32::from_be_bytes(s[2..].try_into().unwrap()))
    }

    /// An error code (RST_STREAM's payload, GOAWAY's after the stream id).
    pub fn code(payload: &[u8]) -> u32 {
        u32::from_be_bytes(payload[..4].try_into().unwrap())
    }

    /// `GET https://{authority}{path}` on `stream`, ending it: `:method
    /// GET` and `:scheme https` from the static table (indices 2 and 7),
    /// `:authority` (1) and `:path` (4) as literals without indexing.
    pub fn get(stream: u32, authority: &str, path: &str) -> Vec<u8> {
        let mut block = vec![0x80 | 2, 0x80 | 7];
        for (name, value) in [(1u8, authority), (4, path)] {
            block.push(name);
            integer(value.len(), 7, &mut block);
            block.extend(value.as_bytes());
        }
        frame(HEADERS, END_STREAM | END_HEADERS, stream, &block)
    }

    /// An HPACK integer with an `n`-bit prefix (the prefix's flags 0).
    fn integer(mut value: usize, n: u32, out: &mut Vec<u8>) {
        let max = (1usize << n) - 1;
        if value < max {
            out.push(value as u8);
            return;
        }
        out.push(max as u8);
        value -= max;
        while value >= 128 {
            out.push((value % 128) as u8 | 0x80);
            value /= 128;
        }
        out.push(value as u8);
    }

    /// The next frame, or `None` once the connection ended.
    pub async fn read(io: &mut (impl AsyncRead + Unpin)) -> Option<Frame> {
        let mut head = [0u8; 9];
        io.read_exact(&mut head).await.ok()?;
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let mut payload = vec![0; len];
        io.read_exact(&mut payload).await.ok()?;
        let stream = u32::from_be_bytes(head[5..].try_into().unwrap()) & 0x7fff_ffff;
        Some(Frame { kind: head[3], stream, payload })
    }
}
