//! Subscribers for the benchmark: SSE on a raw socket (no HTTP library
//! buffering in between) and WebSocket, a thread's own `/ws` or a project
//! socket following several threads (its frames told apart by their
//! `thread_id`, each thread seen as one subscriber). Each rebuilds the message from its
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
    subscribe(addr, ws_request(&path), b"HTTP/1.1 101", None, async |conn, seen| {
        let mut one = OneThread { seen, ready, messages, completed: 0 };
        ws_read(conn, &mut one).await
    })
    .await
}

/// The upgrade request of a WebSocket at `path`.
fn ws_request(path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: Y29udm8tYmVuY2gta2V5MQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// Follows `threads` (their ids) over one project socket at `path`
/// (`/v1/projects/{pid}/ws`): one `subscribe` frame each, sent together
/// once the upgrade is answered, then every frame read off the one
/// connection and handed to its thread's `Seen` by its `thread_id`.
/// Signals `ready` once per thread (its subscription's `ready`), and reads
/// until each thread completed `messages` messages (or its subscription
/// ended). One `Seen` per thread, in the order given; what goes wrong with
/// the connection itself is the first one's failure, and the first one
/// holds the connection open.
pub async fn project_ws(
    addr: std::net::SocketAddr,
    path: String,
    threads: Vec<String>,
    ready: mpsc::Sender<()>,
    messages: usize,
) -> Vec<Seen> {
    let mut many = ManyThreads {
        index: threads.iter().enumerate().map(|(i, t)| (t.clone(), i)).collect(),
        seen: threads.iter().map(|_| Seen::new()).collect(),
        completed: vec![0; threads.len()],
        ended: vec![false; threads.len()],
        left: threads.len(),
        ready,
        messages,
    };
    match Conn::open(addr, &ws_request(&path), b"HTTP/1.1 101").await {
        Ok(mut conn) => {
            let run = async {
                let mut frames = Vec::new();
                for thread in &threads {
                    let subscribe = serde_json::json!({"type": "subscribe", "thread_id": thread}).to_string();
                    frames.extend(client_text(subscribe.as_bytes())?);
                }
                conn.sock.write_all(&frames).await?;
                ws_read(&mut conn, &mut many).await
            };
            if let Err(e) = run.await {
                many.seen[0].failures.push(format!("project socket: {e}"));
            }
            many.seen[0].connection = Some(conn.sock);
        }
        Err(e) => many.seen[0].failures.push(format!("project socket: {e}")),
    }
    many.seen
}

/// A client's text frame: masked, as every client frame must be.
fn client_text(payload: &[u8]) -> anyhow::Result<Vec<u8>> {
    const KEY: [u8; 4] = [0x5a, 0x17, 0xc3, 0x8e];
    let mut frame = Vec::with_capacity(payload.len() + 8);
    frame.push(0x81);
    match payload.len() {
        n if n < 126 => frame.push(0x80 | n as u8),
        n => {
            let n = u16::try_from(n).map_err(|_| anyhow::anyhow!("a client frame over 64 KiB"))?;
            frame.push(0x80 | 126);
            frame.extend_from_slice(&n.to_be_bytes());
        }
    }
    frame.extend_from_slice(&KEY);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ KEY[i % 4]));
    Ok(frame)
}

/// What a WebSocket reader does with each complete text message.
trait Texts {
    /// Handles one message; true once everything awaited has arrived.
    async fn text(&mut self, text: &str) -> anyhow::Result<bool>;
    /// Messages completed so far (for errors).
    fn completed(&self) -> usize;
}

/// The type of an event: it comes first in every event object.
fn kind_of(text: &str) -> &str {
    text.get(9..).and_then(|t| t.split('"').next()).unwrap_or_default()
}

/// Where an event's `thread_id` starts: right after its type, so the first
/// match is the event's own (no text of the event comes before it).
static THREAD_ID: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(br#""thread_id":""#));

/// The `thread_id` of an event (None when it names none, or null).
fn thread_of(text: &str) -> Option<&str> {
    let at = THREAD_ID.find(text.as_bytes())? + br#""thread_id":""#.len();
    text.get(at..at + 36)
}

/// A thread's own `/ws`: every event is that thread's.
struct OneThread<'a> {
    seen: &'a mut Seen,
    ready: mpsc::Sender<()>,
    messages: usize,
    completed: usize,
}

impl Texts for OneThread<'_> {
    async fn text(&mut self, text: &str) -> anyhow::Result<bool> {
        let kind = kind_of(text);
        if kind == "ready" {
            let _ = self.ready.send(()).await;
        } else if self.seen.apply_json(kind, text)? {
            self.completed += 1;
            return Ok(self.completed == self.messages);
        }
        Ok(false)
    }

    fn completed(&self) -> usize {
        self.completed
    }
}

/// A project socket: each event goes to its thread's `Seen`.
struct ManyThreads {
    /// Thread id to its place in `seen`.
    index: HashMap<String, usize>,
    seen: Vec<Seen>,
    completed: Vec<usize>,
    /// Threads done: all their messages completed, or unsubscribed.
    ended: Vec<bool>,
    left: usize,
    ready: mpsc::Sender<()>,
    messages: usize,
}

impl ManyThreads {
    fn end(&mut self, i: usize) {
        if !self.ended[i] {
            self.ended[i] = true;
            self.left -= 1;
        }
    }
}

impl Texts for ManyThreads {
    async fn text(&mut self, text: &str) -> anyhow::Result<bool> {
        let kind = kind_of(text);
        let Some(&i) = thread_of(text).and_then(|t| self.index.get(t)) else {
            anyhow::bail!("a frame of no subscribed thread: {}", text.get(..200).unwrap_or(text));
        };
        match kind {
            "ready" => {
                let _ = self.ready.send(()).await;
            }
            "unsubscribed" => {
                let code = serde_json::from_str::<Value>(text).map(|v| v["code"].to_string()).unwrap_or_default();
                self.seen[i].failures.push(format!("unsubscribed: {code}"));
                self.end(i);
            }
            _ => {
                if self.seen[i].apply_json(kind, text)? {
                    self.completed[i] += 1;
                    if self.completed[i] == self.messages {
                        self.end(i);
                    }
                }
            }
        }
        Ok(self.left == 0)
    }

    fn completed(&self) -> usize {
        self.completed.iter().sum()
    }
}

/// Reads server frames straight off the socket (answering pings) and hands
/// each text message to `texts` until it has what it waits for.
async fn ws_read(conn: &mut Conn, texts: &mut impl Texts) -> anyhow::Result<()> {
    let mut message: Vec<u8> = Vec::new();
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
                    if texts.text(std::str::from_utf8(&message)?).await? {
                        return Ok(());
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
                0x8 => anyhow::bail!("ws: closed after {} messages", texts.completed()),
                _ => {}
            }
        }
        conn.buf.drain(..at);
        conn.read_more().await.map_err(|e| anyhow::anyhow!("ws: {e} after {} messages", texts.completed()))?;
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
