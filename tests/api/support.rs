//! Test support for the resume, slow-subscriber and lifecycle suites: a
//! server in-process (or the real binary), a typed SSE reader, a
//! transcript that rebuilds messages from events while checking offsets,
//! and a WebSocket client on a raw socket for frames no library sends.

use std::{collections::HashMap, sync::Arc, time::Duration};

use clap::Parser;
use convo::{
    config::Settings,
    startup::{AppHandle, Application},
};
use eventsource_stream::Eventsource;
use futures_util::{Stream, StreamExt};
use serde_json::{json, Value};

pub const WAIT: Duration = Duration::from_secs(20);

/// Command-line flags for a test server, later flags replacing earlier ones.
pub fn args(db_url: &str, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "convo",
        "--bind",
        "127.0.0.1:0",
        "--database-url",
        db_url,
        "--flush-interval-ms",
        "20",
        "--heartbeat-ms",
        "200",
        "--sim-interval-ms",
        "5",
        "--sim-chunks",
        "20",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for flag in extra.iter().filter(|a| a.starts_with("--")) {
        if let Some(i) = args.iter().position(|a| a == flag) {
            args.drain(i..i + 2);
        }
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// A database for one test: a SQLite file in `dir`, or a fresh Postgres
/// database when `TEST_DATABASE_URL` is set.
pub async fn database_url(dir: &std::path::Path) -> String {
    match std::env::var("TEST_DATABASE_URL") {
        Ok(base) if !base.is_empty() => crate::pg::fresh_database(&base).await,
        _ => format!("sqlite://{}/test.db?mode=rwc", dir.display()),
    }
}

#[derive(Clone)]
pub struct Server {
    pub base: String,
    pub client: reqwest::Client,
    pub handle: Option<AppHandle>,
    /// The folder of a `temp` server's SQLite file, removed with the last
    /// clone of the server.
    _dir: Option<Arc<tempfile::TempDir>>,
}

impl Server {
    pub async fn start(db_url: &str, extra: &[&str]) -> Server {
        convo::telemetry::init_for_tests();
        let settings = Settings::try_parse_from(args(db_url, extra)).expect("test settings");
        let app = Application::build(settings).await.expect("application starts");
        let base = format!("http://127.0.0.1:{}", app.port());
        let handle = app.handle();
        actix_web::rt::spawn(app.run_until_stopped());
        Server { base, client: reqwest::Client::new(), handle: Some(handle), _dir: None }
    }

    /// A server on a database of its own (see `database_url`), with the
    /// test flags and `extra`.
    pub async fn temp(extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let db = database_url(dir.path()).await;
        Server { _dir: Some(Arc::new(dir)), ..Server::start(&db, extra).await }
    }

    /// A client of a server started elsewhere (the real binary). Its handle
    /// is never used: such servers are stopped by signals.
    pub fn attach(base: String) -> Server {
        Server { base, client: reqwest::Client::new(), handle: None, _dir: None }
    }

    /// A project and a thread: their URL prefix `…/projects/{pid}/threads/{tid}`.
    pub async fn thread(&self) -> String {
        let p: Value = self.post_json("/v1/projects", json!({"name": "t"})).await;
        let pid = p["id"].as_str().unwrap();
        let t: Value = self.post_json(&format!("/v1/projects/{pid}/threads"), json!({})).await;
        format!("/v1/projects/{pid}/threads/{}", t["id"].as_str().unwrap())
    }

    pub async fn post_json(&self, path: &str, body: Value) -> Value {
        let r = self.client.post(format!("{}{path}", self.base)).json(&body).send().await.unwrap();
        let status = r.status();
        assert!(status.is_success(), "POST {path}: {status} {}", r.text().await.unwrap_or_default());
        r.json().await.unwrap()
    }

    /// POSTs `body` (or nothing) to `path` with `bearer` as the
    /// credential; the answer's JSON, which must be a success.
    pub async fn post_json_as(&self, bearer: &str, path: &str, body: Option<Value>) -> Value {
        let mut req = self.client.post(format!("{}{path}", self.base)).bearer_auth(bearer);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        assert!(status.is_success(), "POST {path}: {status} {}", r.text().await.unwrap_or_default());
        r.json().await.unwrap()
    }

    /// A new project made with the `admin` token, and a key of it.
    pub async fn project_with_key(&self, admin: &str) -> (String, String) {
        let p = self.post_json_as(admin, "/v1/projects", Some(serde_json::json!({"name": "p"}))).await;
        let pid = p["id"].as_str().unwrap().to_owned();
        let k = self.post_json_as(admin, &format!("/admin/projects/{pid}/keys"), None).await;
        (pid, k["key"].as_str().unwrap().to_owned())
    }

    pub async fn get_json(&self, path: &str) -> Value {
        self.client.get(format!("{}{path}", self.base)).send().await.unwrap().json().await.unwrap()
    }

    /// Posts a message; returns the assistant message id.
    pub async fn ask(&self, thread: &str, content: &str) -> String {
        let v = self.post_json(&format!("{thread}/messages"), json!({"content": content})).await;
        v["assistant_message"]["id"].as_str().unwrap().to_owned()
    }

    pub async fn messages(&self, thread: &str) -> Vec<Value> {
        let page = self.get_json(&format!("{thread}/messages?limit=200")).await;
        page["data"].as_array().unwrap().clone()
    }

    pub async fn message(&self, thread: &str, id: &str) -> Value {
        self.messages(thread).await.into_iter().find(|m| m["id"] == id).expect("message in history")
    }

    /// Waits until the message is no longer streaming in history.
    pub async fn finished(&self, thread: &str, id: &str) -> Value {
        eventually(|| async {
            let m = self.message(thread, id).await;
            (m["status"] != "streaming").then_some(m)
        })
        .await
    }

    /// Waits until the message has ended: neither streaming nor awaiting
    /// input.
    pub async fn ended(&self, thread: &str, id: &str) -> Value {
        eventually(|| async {
            let m = self.message(thread, id).await;
            (m["status"] != "streaming" && m["status"] != "awaiting_input").then_some(m)
        })
        .await
    }

    pub async fn sse(&self, thread: &str, cursor: Option<&str>) -> Sse {
        let mut req = self.client.get(format!("{}{thread}/events", self.base));
        if let Some(c) = cursor {
            req = req.header("Last-Event-ID", c);
        }
        Sse::open(req).await
    }
}

/// Polls `check` until it yields, for at most `WAIT`.
pub async fn eventually<T, F, Fut>(mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "condition not reached in time");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[derive(Debug, Clone)]
pub struct Ev {
    pub kind: String,
    pub id: String,
    pub data: Value,
}

/// A subscriber of any transport: its next event, and the events up to
/// one of a kind.
pub trait Events {
    /// The next event, or `None` once the stream ended.
    async fn next_event(&mut self) -> Option<Ev>;

    /// Events up to and including the first of `kind`.
    async fn until(&mut self, kind: &str) -> Vec<Ev> {
        let mut out = Vec::new();
        loop {
            let ev = self.next_event().await.unwrap_or_else(|| panic!("stream ended before {kind}"));
            let done = ev.kind == kind;
            out.push(ev);
            if done {
                return out;
            }
        }
    }
}

impl Events for Sse {
    async fn next_event(&mut self) -> Option<Ev> {
        self.next().await
    }
}

impl Events for RawSse {
    async fn next_event(&mut self) -> Option<Ev> {
        self.next().await
    }
}

impl Events for Ws {
    async fn next_event(&mut self) -> Option<Ev> {
        self.next().await
    }
}

pub struct Sse {
    events: std::pin::Pin<Box<dyn Stream<Item = Ev> + Send>>,
}

impl Sse {
    pub async fn open(req: reqwest::RequestBuilder) -> Sse {
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let events = resp.bytes_stream().eventsource().filter_map(|e| async move { e.ok() }).map(|e| Ev {
            kind: e.event,
            id: e.id,
            data: serde_json::from_str(&e.data).unwrap_or(Value::Null),
        });
        Sse { events: Box::pin(events) }
    }

    /// The next event, or `None` when the stream ended.
    pub async fn next(&mut self) -> Option<Ev> {
        tokio::time::timeout(WAIT, self.events.next()).await.expect("an event in time")
    }

    /// The next event, or `None` when the stream ended or broke.
    pub async fn try_next(&mut self) -> Option<Ev> {
        tokio::time::timeout(WAIT, self.events.next()).await.ok().flatten()
    }
}

/// Messages rebuilt from events. Every delta must start exactly where its
/// block's text ends.
#[derive(Default, Debug)]
pub struct Transcript {
    pub blocks: HashMap<(String, u64), String>,
    pub kinds: HashMap<(String, u64), String>,
    pub completed: Vec<(String, String)>,
    pub last_id: Option<String>,
}

impl Transcript {
    pub fn apply(&mut self, ev: &Ev) {
        if !ev.id.is_empty() {
            self.last_id = Some(ev.id.clone());
        }
        let d = &ev.data;
        let key = || (d["message_id"].as_str().unwrap().to_owned(), d["block"].as_u64().unwrap());
        match ev.kind.as_str() {
            "message.block" => {
                self.kinds.insert(key(), d["kind"].as_str().unwrap().to_owned());
                self.blocks.entry(key()).or_default();
            }
            "message.delta" => {
                let text = self.blocks.entry(key()).or_default();
                assert_eq!(
                    d["offset"].as_u64().unwrap() as usize,
                    text.len(),
                    "delta continues its block exactly: {d}"
                );
                text.push_str(d["text"].as_str().unwrap());
            }
            "message.completed" => self
                .completed
                .push((d["message_id"].as_str().unwrap().to_owned(), d["status"].as_str().unwrap().to_owned())),
            _ => {}
        }
    }

    pub fn apply_all(&mut self, evs: &[Ev]) {
        for ev in evs {
            self.apply(ev);
        }
    }

    /// Asserts the transcript holds `message` (from history) byte for byte.
    pub fn assert_matches(&self, message: &Value) {
        let id = message["id"].as_str().unwrap();
        for (i, block) in message["blocks"].as_array().unwrap().iter().enumerate() {
            let got = self.blocks.get(&(id.to_owned(), i as u64)).map(String::as_str).unwrap_or("");
            assert_eq!(got, block["text"].as_str().unwrap(), "block {i} of {id} is byte-identical");
        }
    }
}

/// An SSE client on a raw socket with a tiny receive buffer, so that when
/// it stops reading the server's socket fills at once (an HTTP library
/// would keep reading into its own buffers).
pub struct RawSse {
    sock: tokio::net::TcpStream,
    /// Bytes read and not yet de-chunked.
    raw: Vec<u8>,
    /// De-chunked body bytes not yet parsed into events.
    body: Vec<u8>,
    headers_done: bool,
    ended: bool,
    /// Read at most this many bytes, then pause this long (a slow reader).
    pub pace: Option<(usize, Duration)>,
}

impl RawSse {
    pub async fn open(base: &str, path: &str, cursor: Option<&str>) -> RawSse {
        RawSse::open_sized(base, path, cursor, 2048).await
    }

    /// As `open`, with a receive buffer of `recv_buffer` bytes. (At 2 KB,
    /// Linux on loopback often lets the window close and reopens it only
    /// on its zero-window probes, a few kilobytes a second: enough for a
    /// reader that must fall behind, too slow for one that must read a
    /// large catch-up within a deadline.)
    pub async fn open_sized(base: &str, path: &str, cursor: Option<&str>, recv_buffer: u32) -> RawSse {
        let addr: std::net::SocketAddr = base.trim_start_matches("http://").parse().unwrap();
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(recv_buffer).unwrap();
        let mut sock = socket.connect(addr).await.unwrap();
        let resume = cursor.map(|c| format!("Last-Event-ID: {c}\r\n")).unwrap_or_default();
        let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n{resume}\r\n");
        tokio::io::AsyncWriteExt::write_all(&mut sock, request.as_bytes()).await.unwrap();
        RawSse { sock, raw: Vec::new(), body: Vec::new(), headers_done: false, ended: false, pace: None }
    }

    /// The next event, or `None` once the response ended.
    pub async fn next(&mut self) -> Option<Ev> {
        loop {
            if let Some(ev) = self.parse_event() {
                return Some(ev);
            }
            if self.ended {
                return None;
            }
            let mut buf = [0u8; 8192];
            let limit = match self.pace {
                Some((bytes, pause)) => {
                    tokio::time::sleep(pause).await;
                    bytes.min(buf.len())
                }
                None => buf.len(),
            };
            let n = tokio::time::timeout(WAIT, tokio::io::AsyncReadExt::read(&mut self.sock, &mut buf[..limit]))
                .await
                .expect("bytes in time")
                .unwrap_or(0);
            if n == 0 {
                self.ended = true;
            }
            self.raw.extend_from_slice(&buf[..n]);
            self.dechunk();
        }
    }

    fn dechunk(&mut self) {
        if !self.headers_done {
            let Some(end) = self.raw.windows(4).position(|w| w == b"\r\n\r\n") else { return };
            assert!(self.raw.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&self.raw));
            self.raw.drain(..end + 4);
            self.headers_done = true;
        }
        loop {
            let Some(line_end) = self.raw.windows(2).position(|w| w == b"\r\n") else { return };
            let size = usize::from_str_radix(std::str::from_utf8(&self.raw[..line_end]).unwrap().trim(), 16).unwrap();
            if size == 0 {
                self.ended = true;
                return;
            }
            if self.raw.len() < line_end + 2 + size + 2 {
                return;
            }
            self.body.extend_from_slice(&self.raw[line_end + 2..line_end + 2 + size]);
            self.raw.drain(..line_end + 2 + size + 2);
        }
    }

    fn parse_event(&mut self) -> Option<Ev> {
        loop {
            let end = self.body.windows(2).position(|w| w == b"\n\n")?;
            let frame = String::from_utf8(self.body[..end].to_vec()).unwrap();
            self.body.drain(..end + 2);
            let (mut kind, mut id, mut data) = (String::new(), String::new(), String::new());
            for line in frame.lines() {
                if let Some(v) = line.strip_prefix("event: ") {
                    kind = v.to_owned();
                } else if let Some(v) = line.strip_prefix("id: ") {
                    id = v.to_owned();
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data = v.to_owned();
                }
            }
            if !kind.is_empty() {
                return Some(Ev { kind, id, data: serde_json::from_str(&data).unwrap_or(Value::Null) });
            }
        }
    }
}

/// A WebSocket subscriber speaking JSON text frames.
pub struct Ws {
    pub socket: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
}

impl Ws {
    pub async fn open(base: &str, thread: &str, cursor: Option<&str>) -> Ws {
        let query = cursor.map(|c| format!("?cursor={c}")).unwrap_or_default();
        Ws::connect(&format!("{}{thread}/ws{query}", base.replace("http://", "ws://"))).await
    }

    pub async fn connect(url: &str) -> Ws {
        let (socket, _) = tokio_tungstenite::connect_async(url).await.expect("websocket upgrade");
        Ws { socket }
    }

    /// A WebSocket on a socket with a tiny receive buffer (as `RawSse`): a
    /// client that stops polling it stops reading at once, so the server's
    /// side of the connection fills.
    pub async fn open_small(base: &str, thread: &str) -> Ws {
        Ws::open_sized(base, thread, 2048).await
    }

    /// As `open_small`, with a receive buffer of `recv_buffer` bytes (see
    /// `RawSse::open_sized`).
    pub async fn open_sized(base: &str, thread: &str, recv_buffer: u32) -> Ws {
        let addr: std::net::SocketAddr = base.trim_start_matches("http://").parse().unwrap();
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(recv_buffer).unwrap();
        let stream = socket.connect(addr).await.unwrap();
        let url = format!("ws://{addr}{thread}/ws");
        let stream = tokio_tungstenite::MaybeTlsStream::Plain(stream);
        let (socket, _) = tokio_tungstenite::client_async(url, stream).await.expect("websocket upgrade");
        Ws { socket }
    }

    /// The close frame's code and reason, skipping other frames; `None`
    /// when the connection ended without one.
    pub async fn close_frame(&mut self) -> Option<(u16, String)> {
        use tokio_tungstenite::tungstenite::Message;
        loop {
            match tokio::time::timeout(WAIT, self.socket.next()).await.expect("a frame in time") {
                Some(Ok(Message::Close(close))) => {
                    return close.map(|c| (u16::from(c.code), c.reason.to_string()));
                }
                Some(Ok(_)) => continue,
                _ => return None,
            }
        }
    }

    pub async fn send(&mut self, frame: Value) {
        use futures_util::SinkExt;
        self.socket.send(tokio_tungstenite::tungstenite::Message::Text(frame.to_string().into())).await.unwrap();
    }

    pub async fn send_text(&mut self, text: &str) {
        use futures_util::SinkExt;
        self.socket.send(tokio_tungstenite::tungstenite::Message::Text(text.to_owned().into())).await.unwrap();
    }

    /// The next text frame's JSON (pings are answered by the library);
    /// once closed, its close frame's code and reason, if it sent one.
    pub async fn next_json(&mut self) -> Result<Value, Option<(u16, String)>> {
        use tokio_tungstenite::tungstenite::Message;
        loop {
            match tokio::time::timeout(WAIT, self.socket.next()).await.expect("a frame in time") {
                Some(Ok(Message::Text(t))) => return Ok(serde_json::from_str(t.as_str()).unwrap()),
                Some(Ok(Message::Close(c))) => return Err(c.map(|c| (u16::from(c.code), c.reason.to_string()))),
                Some(Ok(_)) => continue,
                _ => return Err(None),
            }
        }
    }

    /// The next event (text frames only), or `None` once closed.
    pub async fn next(&mut self) -> Option<Ev> {
        let data = self.next_json().await.ok()?;
        let kind = data["type"].as_str().unwrap().to_owned();
        let id = data["cursor"].as_str().unwrap_or("").to_owned();
        Some(Ev { kind, id, data })
    }
}

/// The contract's error body, checked: returns the code.
pub async fn error_code(resp: reqwest::Response) -> (u16, String) {
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.expect("a JSON error body");
    assert!(body["error"]["message"].is_string(), "error has a message: {body}");
    (status, body["error"]["code"].as_str().expect("error has a code").to_owned())
}

/// A WebSocket client on a raw socket, for bytes no library would send: a
/// frame header alone, a message that never ends.
pub struct RawWs {
    sock: tokio::net::TcpStream,
    read: Vec<u8>,
}

impl RawWs {
    pub async fn open(base: &str, thread: &str) -> RawWs {
        RawWs::open_at(base, &format!("{thread}/ws")).await
    }

    /// A socket upgraded at `path` (a thread's `/ws` or a chat's).
    pub async fn open_at(base: &str, path: &str) -> RawWs {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = base.trim_start_matches("http://");
        let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        sock.write_all(request.as_bytes()).await.unwrap();
        let mut read = Vec::new();
        while !read.windows(4).any(|w| w == b"\r\n\r\n") {
            let mut buf = [0u8; 4096];
            let n = sock.read(&mut buf).await.unwrap();
            assert!(n > 0, "the upgrade is answered");
            read.extend_from_slice(&buf[..n]);
        }
        assert!(read.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&read));
        let end = read.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        read.drain(..end);
        RawWs { sock, read }
    }

    /// A masked client frame header: `first` byte (FIN and opcode), then
    /// the declared payload length.
    pub fn header(first: u8, len: u64) -> Vec<u8> {
        let mut out = vec![first, 0x80 | 127];
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&[0, 0, 0, 0]); // a zero mask: payload as is
        out
    }

    pub async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        tokio::io::AsyncWriteExt::write_all(&mut self.sock, bytes).await
    }

    /// The server's next frame: its opcode and payload; `None` if the
    /// connection ends first.
    pub async fn next_frame(&mut self) -> Option<(u8, Vec<u8>)> {
        use tokio::io::AsyncReadExt;
        loop {
            // Server frames are unmasked.
            if self.read.len() >= 4 {
                let (head, len) = match self.read[1] & 0x7f {
                    126 => (4, u16::from_be_bytes([self.read[2], self.read[3]]) as usize),
                    127 => panic!("no server frame here is that large"),
                    n => (2, n as usize),
                };
                if self.read.len() >= head + len {
                    let frame: Vec<u8> = self.read.drain(..head + len).collect();
                    return Some((frame[0] & 0x0f, frame[head..].to_vec()));
                }
            }
            let mut buf = [0u8; 4096];
            let n = tokio::time::timeout(crate::support::WAIT, self.sock.read(&mut buf)).await.expect("bytes in time");
            match n {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.read.extend_from_slice(&buf[..n]),
            }
        }
    }

    /// The code of a close frame the server sends within `within`;
    /// `None` while the socket stays open (or ends without one).
    pub async fn closed_within(&mut self, within: Duration) -> Option<u16> {
        tokio::time::timeout(within, self.close_code()).await.ok().flatten()
    }

    /// The code of the server's close frame, skipping other frames.
    pub async fn close_code(&mut self) -> Option<u16> {
        loop {
            let (opcode, payload) = self.next_frame().await?;
            if opcode == 0x8 {
                return Some(u16::from_be_bytes([payload[0], payload[1]]));
            }
        }
    }

    /// The `type` of the next event (text frame); panics on a close.
    pub async fn next_event_type(&mut self) -> String {
        loop {
            match self.next_frame().await.expect("the connection stays open") {
                (0x1, payload) => {
                    let event: serde_json::Value = serde_json::from_slice(&payload).unwrap();
                    return event["type"].as_str().unwrap().to_owned();
                }
                (0x8, payload) => panic!("closed: {payload:?}"),
                _ => continue,
            }
        }
    }
}
