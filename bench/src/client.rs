//! Subscribers for the benchmark: SSE on a raw socket (no HTTP library
//! buffering in between) and WebSocket. Each rebuilds the message from its
//! deltas (checking offsets), and for every upstream chunk it receives
//! records `now - stamp`: the latency added between the upstream's write
//! and the subscriber's read.
//!
//! An answer in several steps is one message whose text blocks follow one
//! another (tool calls and results between them are not text: their
//! blocks are skipped). A subscriber notes when each step's first text
//! arrived, and one subscriber per thread may be its application: told of
//! each `message.awaiting`, so the load generator posts the result.

use std::{
    collections::{HashMap, HashSet},
    sync::LazyLock,
};

use memchr::memmem::Finder;
use serde_json::Value;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::mpsc,
};

use crate::upstream::{now_ns, CHUNK_LEN};

/// Chunks at the start of each answer left out of the warm figure: the
/// report shows how much of the tail is the answer starting (a new
/// upstream connection, buffers growing) rather than steady streaming.
pub const WARM: usize = 10;

/// The end of an SSE event, searched for once per event.
static EVENT_END: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\n\n"));

/// What one subscriber saw.
pub struct Seen {
    /// Latency added per chunk, in microseconds, with the chunk's index in
    /// its answer. A plain list, merged into one histogram after the run:
    /// a histogram per subscriber (about 150 KiB each) made every record a
    /// cache miss for the load generator.
    pub latency_us: Vec<(u32, u32)>,
    /// Text per message id.
    pub texts: HashMap<String, String>,
    /// Wall clock (ns) of the first delta per message id.
    pub first_delta_ns: HashMap<String, u128>,
    pub deltas: u64,
    /// Wall clock (ns) of each later step's first text (step, ns).
    pub step_first_ns: Vec<(usize, u128)>,
    pub failures: Vec<String>,
    /// The connection, still open: a tab stays open after its answer, so
    /// subscribers leave only when the whole run is over (all leaving at
    /// the end of their own answer would be a burst of departures that
    /// other threads' last chunks wait behind).
    pub connection: Option<TcpStream>,
    /// Where the text of each message's current block began in its text,
    /// and which block that is.
    block_at: HashMap<String, (usize, usize)>,
    /// (message, block) of blocks that are not text (tool calls, results).
    other_blocks: HashSet<(String, usize)>,
    /// A step announced whose first text has not come yet.
    step_due: Option<usize>,
    /// This subscriber answers the thread's calls: each awaiting is sent.
    answerer: Option<Answerer>,
}

/// The application's ear: `(thread, message_id, tool call ids)` of each
/// `message.awaiting` of `thread`.
#[derive(Clone)]
pub struct Answerer {
    pub thread: String,
    pub tx: mpsc::UnboundedSender<(String, String, Vec<String>)>,
}

impl Seen {
    fn new() -> Seen {
        Seen {
            latency_us: Vec::new(),
            texts: HashMap::new(),
            first_delta_ns: HashMap::new(),
            deltas: 0,
            step_first_ns: Vec::new(),
            failures: Vec::new(),
            connection: None,
            block_at: HashMap::new(),
            other_blocks: HashSet::new(),
            step_due: None,
            answerer: None,
        }
    }

    /// Applies one event given its JSON text; true when it completed a
    /// message. Deltas, the bulk, are read into a borrowed struct: the
    /// load generator must stay cheap next to the service it measures.
    fn apply_json(&mut self, kind: &str, json: &str) -> anyhow::Result<bool> {
        if kind == "message.delta" {
            let delta: Delta = serde_json::from_str(json)?;
            self.delta(delta);
            return Ok(false);
        }
        let value: Value = serde_json::from_str(json)?;
        Ok(self.apply(kind, &value))
    }

    fn delta(&mut self, delta: Delta<'_>) {
        let now = now_ns();
        if !self.other_blocks.is_empty() && self.other_blocks.contains(&(delta.message_id.to_owned(), delta.block)) {
            return;
        }
        let text = match self.texts.get_mut(delta.message_id) {
            Some(t) => t,
            None => {
                self.first_delta_ns.insert(delta.message_id.to_owned(), now);
                self.texts.entry(delta.message_id.to_owned()).or_default()
            }
        };
        // Offsets count from the start of their block.
        let start = match self.block_at.get_mut(delta.message_id) {
            Some((block, start)) if *block == delta.block => *start,
            Some(at) => {
                *at = (delta.block, text.len());
                text.len()
            }
            None => {
                self.block_at.insert(delta.message_id.to_owned(), (delta.block, text.len()));
                text.len()
            }
        };
        if let Some(step) = self.step_due.take() {
            self.step_first_ns.push((step, now));
        }
        if start + delta.offset != text.len() {
            self.failures.push(format!("delta at offset {}, expected {}", delta.offset, text.len() - start));
        }
        let before = text.len() / CHUNK_LEN;
        text.push_str(&delta.text);
        let after = text.len() / CHUNK_LEN;
        for k in before..after {
            let chunk = &text[k * CHUNK_LEN..(k + 1) * CHUNK_LEN];
            if let Some(stamp) = chunk.get(6..25).and_then(|s| s.parse::<u128>().ok()) {
                let us = (now.saturating_sub(stamp) / 1000).min(u32::MAX as u128) as u32;
                self.latency_us.push((k as u32, us.max(1)));
            }
        }
        self.deltas += 1;
    }

    /// Applies one parsed event other than a delta; true when it completed
    /// a message.
    fn apply(&mut self, kind: &str, data: &Value) -> bool {
        match kind {
            "message.completed" => {
                if data["status"] != "complete" {
                    self.failures.push(format!("message ended {}", data["status"]));
                }
                true
            }
            "error" => {
                self.failures.push(format!("error event: {}", data["code"]));
                false
            }
            "message.block" if data["kind"] != "text" => {
                let message = data["message_id"].as_str().unwrap_or_default().to_owned();
                self.other_blocks.insert((message, data["block"].as_u64().unwrap_or_default() as usize));
                false
            }
            "message.step" => {
                self.step_due = data["step"].as_u64().map(|s| s as usize);
                false
            }
            "message.awaiting" => {
                if let Some(answerer) = &self.answerer {
                    let message = data["message_id"].as_str().unwrap_or_default().to_owned();
                    let pending = data["pending"].as_array().map(Vec::as_slice).unwrap_or_default();
                    let ids = pending.iter().filter_map(|p| p["tool_call_id"].as_str().map(str::to_owned)).collect();
                    let _ = answerer.tx.send((answerer.thread.clone(), message, ids));
                }
                false
            }
            _ => false,
        }
    }
}

#[derive(serde::Deserialize)]
struct Delta<'a> {
    message_id: &'a str,
    block: usize,
    offset: usize,
    #[serde(borrow)]
    text: std::borrow::Cow<'a, str>,
}

/// A subscriber's connection: the socket, and the bytes read from it and
/// not used yet. One buffer per subscriber, compacted once per read: the
/// load generator shares the machine with the service and must cost little
/// per event.
struct Conn {
    sock: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    /// Connects, sends `request` and reads the response head, which must
    /// start with `status`; what follows the head stays in `buf`.
    async fn open(addr: std::net::SocketAddr, request: &str, status: &[u8]) -> anyhow::Result<Conn> {
        let sock = TcpStream::connect(addr).await?;
        sock.set_nodelay(true)?;
        let mut conn = Conn { sock, buf: Vec::with_capacity(16 * 1024) };
        conn.sock.write_all(request.as_bytes()).await?;
        loop {
            conn.read_more().await?;
            if let Some(end) = memchr::memmem::find(&conn.buf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&conn.buf[..conn.buf.len().min(12)]).into_owned();
                anyhow::ensure!(conn.buf.starts_with(status), "status {head}");
                conn.buf.drain(..end + 4);
                return Ok(conn);
            }
        }
    }

    /// Reads what has arrived onto the end of `buf`.
    async fn read_more(&mut self) -> anyhow::Result<()> {
        if self.buf.capacity() - self.buf.len() < 4096 {
            self.buf.reserve(16 * 1024);
        }
        let n = self.sock.read_buf(&mut self.buf).await?;
        anyhow::ensure!(n > 0, "connection closed");
        Ok(())
    }
}

/// Opens a subscriber with `request` and lets `read` handle its events
/// until it has what it waits for; anything that goes wrong is one of this
/// subscriber's failures. The connection stays open in what is returned.
async fn subscribe(
    addr: std::net::SocketAddr,
    request: String,
    status: &[u8],
    answerer: Option<Answerer>,
    read: impl AsyncFnOnce(&mut Conn, &mut Seen) -> anyhow::Result<()>,
) -> Seen {
    let mut seen = Seen { answerer, ..Seen::new() };
    match Conn::open(addr, &request, status).await {
        Ok(mut conn) => {
            if let Err(e) = read(&mut conn, &mut seen).await {
                seen.failures.push(e.to_string());
            }
            seen.connection = Some(conn.sock);
        }
        Err(e) => seen.failures.push(e.to_string()),
    }
    seen
}

/// Subscribes over SSE; signals `ready` after the `ready` event, then reads
/// until `messages` messages completed.
pub async fn sse(addr: std::net::SocketAddr, path: String, ready: mpsc::Sender<()>, messages: usize) -> Seen {
    sse_answering(addr, path, ready, messages, None).await
}

/// `sse`, telling `answerer` (if any) of each answer that awaits input.
pub async fn sse_answering(
    addr: std::net::SocketAddr,
    path: String,
    ready: mpsc::Sender<()>,
    messages: usize,
    answerer: Option<Answerer>,
) -> Seen {
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n");
    let read = async |conn: &mut Conn, seen: &mut Seen| sse_events(conn, ready, messages, seen).await;
    subscribe(addr, request, b"HTTP/1.1 200", answerer, read).await
}

/// The chunked body is decoded in place and each complete event is handled
/// as it arrives.
async fn sse_events(conn: &mut Conn, ready: mpsc::Sender<()>, messages: usize, seen: &mut Seen) -> anyhow::Result<()> {
    let mut body: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut completed = 0;
    loop {
        // De-chunk what is complete into `body`.
        let raw = &conn.buf;
        let mut at = 0;
        // A chunk-size line ends with CRLF and holds no other LF.
        while let Some(lf) = memchr::memchr(b'\n', &raw[at..]) {
            let size = usize::from_str_radix(std::str::from_utf8(&raw[at..at + lf])?.trim(), 16)?;
            let start = at + lf + 1;
            if raw.len() < start + size + 2 {
                break;
            }
            body.extend_from_slice(&raw[start..start + size]);
            at = start + size + 2;
        }
        conn.buf.drain(..at);
        // Handle every complete event in `body`.
        let mut from = 0;
        while let Some(end) = EVENT_END.find(&body[from..]) {
            let frame = std::str::from_utf8(&body[from..from + end])?;
            from += end + 2;
            let mut kind = "";
            let mut data = "";
            for line in frame.split('\n') {
                if let Some(v) = line.strip_prefix("event: ") {
                    kind = v;
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data = v;
                }
            }
            if kind == "ready" {
                let _ = ready.send(()).await;
            } else if !kind.is_empty() && seen.apply_json(kind, data)? {
                completed += 1;
                if completed == messages {
                    return Ok(());
                }
            }
        }
        body.drain(..from);
        conn.read_more().await.map_err(|e| anyhow::anyhow!("sse: {e} after {completed} messages"))?;
    }
}

/// Subscribes over WebSocket, like `sse`: the upgrade by hand, then server
/// frames (never masked) read straight off the socket, as cheaply as the
/// SSE reader, so the two transports are measured alike.
pub async fn ws(addr: std::net::SocketAddr, path: String, ready: mpsc::Sender<()>, messages: usize) -> Seen {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: Y29udm8tYmVuY2gta2V5MQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    subscribe(addr, request, b"HTTP/1.1 101", None, async |conn, seen| ws_events(conn, ready, messages, seen).await)
        .await
}

async fn ws_events(conn: &mut Conn, ready: mpsc::Sender<()>, messages: usize, seen: &mut Seen) -> anyhow::Result<()> {
    let mut message: Vec<u8> = Vec::new();
    let mut completed = 0;
    loop {
        let mut at = 0;
        while let Some(frame) = WsFrame::parse(&conn.buf[at..])? {
            let payload = &conn.buf[at + frame.header..at + frame.header + frame.len];
            at += frame.header + frame.len;
            match frame.opcode {
                0x1 | 0x0 => {
                    message.extend_from_slice(payload);
                    if !frame.fin {
                        continue;
                    }
                    let text = std::str::from_utf8(&message)?;
                    // The type comes first in every event object.
                    let kind = text.get(9..).and_then(|t| t.split('"').next()).unwrap_or_default();
                    if kind == "ready" {
                        let _ = ready.send(()).await;
                    } else if seen.apply_json(kind, text)? {
                        completed += 1;
                        if completed == messages {
                            return Ok(());
                        }
                    }
                    message.clear();
                }
                0x9 => {
                    // Pong with the same payload, masked with a zero key.
                    anyhow::ensure!(payload.len() < 126, "oversized ping");
                    let mut pong = vec![0x8A, 0x80 | payload.len() as u8, 0, 0, 0, 0];
                    pong.extend_from_slice(payload);
                    conn.sock.write_all(&pong).await?;
                }
                0x8 => anyhow::bail!("ws: closed after {completed} messages"),
                _ => {}
            }
        }
        conn.buf.drain(..at);
        conn.read_more().await.map_err(|e| anyhow::anyhow!("ws: {e} after {completed} messages"))?;
    }
}

/// The header of one server frame.
struct WsFrame {
    fin: bool,
    opcode: u8,
    /// Header bytes, then payload bytes.
    header: usize,
    len: usize,
}

impl WsFrame {
    /// The frame at the start of `b`, once all of it has arrived.
    fn parse(b: &[u8]) -> anyhow::Result<Option<WsFrame>> {
        if b.len() < 2 {
            return Ok(None);
        }
        anyhow::ensure!(b[1] & 0x80 == 0, "a server frame was masked");
        let (header, len) = match b[1] & 0x7f {
            126 if b.len() >= 4 => (4, u16::from_be_bytes([b[2], b[3]]) as usize),
            127 if b.len() >= 10 => (10, u64::from_be_bytes(b[2..10].try_into()?) as usize),
            126 | 127 => return Ok(None),
            n => (2, n as usize),
        };
        if b.len() < header + len {
            return Ok(None);
        }
        Ok(Some(WsFrame { fin: b[0] & 0x80 != 0, opcode: b[0] & 0x0f, header, len }))
    }
}
