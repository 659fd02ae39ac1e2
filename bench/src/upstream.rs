//! A fake Anthropic Messages API for the benchmark. It streams the exact
//! protocol (message_start, content_block_start, pings, text deltas,
//! content_block_stop, message_delta, message_stop) and stamps every chunk
//! with its send time, so the load generator can measure the latency the
//! service adds to each chunk it delivers.
//!
//! Chunk 0 of an answer leaves with the response's head, chunk k k
//! intervals later. Chunk k of an answer is `<k:05>@<unix nanoseconds:019>;` (26 bytes).
//!
//! With `steps` > 1 an answer is a turn of that many model calls: each call
//! but the last streams its chunks, then calls the tool `bench` (a
//! `tool_use` block, stop reason `tool_use`); the step of a request is how
//! many tool results its messages already hold.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde_json::{json, Value};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

pub const CHUNK_LEN: usize = 26;

/// A question whose text starts with this is answered with
/// `connection: close`, and its connection closed after the answer.
pub const CLOSE_AFTER: &str = "warm-close";

/// What one answer looked like from the upstream's side.
#[derive(Debug, Clone, Default)]
pub struct Sent {
    pub text: String,
    /// Wall clock (ns) when the request arrived and when chunk 0 left.
    pub received_ns: u128,
    pub first_chunk_ns: u128,
    /// Per step of a turn (index 0: the first model call): when its
    /// request arrived and when its chunk 0 left.
    pub steps: Vec<(u128, u128)>,
}

#[derive(Clone)]
pub struct Upstream {
    pub url: String,
    chunks: usize,
    interval: Duration,
    /// Model calls per answer (1: no tool calls).
    steps: usize,
    /// Answers by tag (the last user message's text).
    pub sent: Arc<Mutex<HashMap<String, Sent>>>,
    /// Connections accepted so far.
    accepted: Arc<AtomicUsize>,
}

pub fn now_ns() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos()
}

impl Upstream {
    /// An upstream at `url` that answers `chunks` chunks, one per `interval`.
    pub fn new(url: String, chunks: usize, interval: Duration) -> Upstream {
        Upstream { url, chunks, interval, steps: 1, sent: Arc::default(), accepted: Arc::default() }
    }

    /// Every answer a turn of `steps` model calls (see the module doc).
    pub fn with_steps(mut self, steps: usize) -> Upstream {
        self.steps = steps.max(1);
        self
    }

    /// Over plain HTTP/1.1, written by hand.
    pub async fn start(chunks: usize, interval: Duration, steps: usize) -> anyhow::Result<Upstream> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let up = Upstream::new(format!("http://{}", listener.local_addr()?), chunks, interval).with_steps(steps);
        let server = up.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let _ = socket.set_nodelay(true);
                server.accepted_one();
                let server = server.clone();
                tokio::spawn(async move {
                    let _ = server.serve(socket).await;
                });
            }
        });
        Ok(up)
    }

    /// How many connections the service has opened to it so far.
    pub fn connections_accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }

    async fn serve(&self, mut socket: TcpStream) -> std::io::Result<()> {
        // Keep-alive: serve requests on this connection until it closes.
        while let Some(body) = read_request(&mut socket).await? {
            let received_ns = now_ns();
            let close = tag_of(&body).starts_with(CLOSE_AFTER);
            socket
                .write_all(if close {
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
                } else {
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n"
                })
                .await?;
            let mut chunked = Chunked(&mut socket);
            self.answer(&body, received_ns, &mut chunked).await?;
            socket.write_all(b"0\r\n\r\n").await?;
            if close {
                break;
            }
        }
        Ok(())
    }

    /// Writes one whole answer's events (one step of a turn) through `out`
    /// on schedule, and records what was sent under the request's tag.
    pub async fn answer(&self, request: &Value, received_ns: u128, out: &mut impl Emit) -> std::io::Result<()> {
        let (tag, step) = (tag_of(request), steps_done(request));
        let calls = step + 1 < self.steps;
        let start = json!({"type": "message_start", "message": {"id": "msg_bench", "type": "message", "role": "assistant",
            "content": [], "model": "bench", "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 10, "output_tokens": 1}}});
        write_event(out, "message_start", &start).await?;
        let block = json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}});
        write_event(out, "content_block_start", &block).await?;
        write_event(out, "ping", &json!({"type": "ping"})).await?;
        let mut sent = self.sent.lock().unwrap().remove(&tag).filter(|_| step > 0).unwrap_or_default();
        if step == 0 {
            sent.received_ns = received_ns;
        }
        let mut first_chunk_ns = 0;
        // Chunk 0 leaves at once (the raw time to first delta is then
        // all the service's), chunk k at k intervals after it.
        let start = tokio::time::Instant::now();
        for k in 0..self.chunks {
            if k > 0 {
                // (Not for chunk 0: a timer, even one already due,
                // waits for the next millisecond tick.)
                tokio::time::sleep_until(start + self.interval * k as u32).await;
            }
            let ns = now_ns();
            if k == 0 {
                first_chunk_ns = ns;
            }
            let text = format!("{k:05}@{ns:019};");
            sent.text.push_str(&text);
            let delta =
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}});
            write_event(out, "content_block_delta", &delta).await?;
        }
        write_event(out, "content_block_stop", &json!({"type": "content_block_stop", "index": 0})).await?;
        if calls {
            let call = json!({"type": "content_block_start", "index": 1,
                "content_block": {"type": "tool_use", "id": format!("toolu_bench_{step}"), "name": "bench", "input": {}}});
            write_event(out, "content_block_start", &call).await?;
            let input = json!({"type": "content_block_delta", "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": format!("{{\"step\": {step}}}")}});
            write_event(out, "content_block_delta", &input).await?;
            write_event(out, "content_block_stop", &json!({"type": "content_block_stop", "index": 1})).await?;
        }
        let stop_reason = if calls { "tool_use" } else { "end_turn" };
        let end = json!({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": null},
            "usage": {"output_tokens": self.chunks}});
        write_event(out, "message_delta", &end).await?;
        write_event(out, "message_stop", &json!({"type": "message_stop"})).await?;
        if step == 0 {
            sent.first_chunk_ns = first_chunk_ns;
        }
        sent.steps.push((received_ns, first_chunk_ns));
        self.sent.lock().unwrap().insert(tag, sent);
        Ok(())
    }

    /// Counts one accepted connection.
    pub fn accepted_one(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
    }
}

/// Where an answer's events go: a chunked HTTP/1.1 body, or an HTTP/2
/// stream's body.
pub trait Emit {
    async fn emit(&mut self, payload: String) -> std::io::Result<()>;
}

/// A chunked HTTP/1.1 body written straight to the socket.
struct Chunked<'a>(&'a mut TcpStream);

impl Emit for Chunked<'_> {
    async fn emit(&mut self, payload: String) -> std::io::Result<()> {
        let chunk = format!("{:x}\r\n{payload}\r\n", payload.len());
        self.0.write_all(chunk.as_bytes()).await
    }
}

/// The tag of a question: its last user message's text (past the tool
/// results of a turn's later steps).
pub fn tag_of(body: &Value) -> String {
    let messages = body["messages"].as_array().map(Vec::as_slice).unwrap_or_default();
    messages
        .iter()
        .rev()
        .filter(|m| m["role"] == "user")
        .find_map(|m| m["content"].as_array()?.iter().find(|b| b["type"] == "text")?["text"].as_str())
        .unwrap_or_default()
        .to_owned()
}

/// How many steps of a turn the request's messages hold already: its user
/// messages that carry tool results after the last question.
fn steps_done(body: &Value) -> usize {
    let messages = body["messages"].as_array().map(Vec::as_slice).unwrap_or_default();
    let results = |m: &&Value| m["content"].as_array().is_some_and(|c| c.iter().any(|b| b["type"] == "tool_result"));
    messages.iter().rev().take_while(|m| m["role"] != "user" || results(m)).filter(|m| results(m)).count()
}

async fn write_event(out: &mut impl Emit, name: &str, data: &Value) -> std::io::Result<()> {
    out.emit(format!("event: {name}\ndata: {data}\n\n")).await
}

/// Reads one request; its JSON body, or `None` when the peer closed.
async fn read_request(socket: &mut TcpStream) -> std::io::Result<Option<Value>> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 8192];
    let head_end = loop {
        let n = socket.read(&mut tmp).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&tmp[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
    let len: usize =
        head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
    while buf.len() < head_end + len {
        let n = socket.read(&mut tmp).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&tmp[..n]);
    }
    Ok(Some(serde_json::from_slice(&buf[head_end..head_end + len]).unwrap_or(Value::Null)))
}
