//! Subscribers for the benchmark: SSE on a raw socket (no HTTP library
//! buffering in between) and WebSocket. Each rebuilds the message from its
//! deltas (checking offsets), and for every upstream chunk it receives
//! records `now - stamp`: the latency added between the upstream's write
//! and the subscriber's read.

use std::collections::HashMap;

use futures_util::StreamExt;
use hdrhistogram::Histogram;
use serde_json::Value;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::mpsc,
};

use crate::upstream::{now_ns, CHUNK_LEN};

/// What one subscriber saw.
pub struct Seen {
    /// Latency added per chunk, in microseconds.
    pub latency_us: Histogram<u64>,
    /// Text per message id.
    pub texts: HashMap<String, String>,
    /// Wall clock (ns) of the first delta per message id.
    pub first_delta_ns: HashMap<String, u128>,
    pub deltas: u64,
    pub failures: Vec<String>,
}

impl Seen {
    fn new() -> Seen {
        Seen {
            // unwrap: the bounds are constants within hdrhistogram's range.
            latency_us: Histogram::new_with_bounds(1, 60_000_000, 3).unwrap(),
            texts: HashMap::new(),
            first_delta_ns: HashMap::new(),
            deltas: 0,
            failures: Vec::new(),
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
        let text = match self.texts.get_mut(delta.message_id) {
            Some(t) => t,
            None => {
                self.first_delta_ns.insert(delta.message_id.to_owned(), now);
                self.texts.entry(delta.message_id.to_owned()).or_default()
            }
        };
        if delta.offset != text.len() {
            self.failures.push(format!("delta at offset {}, expected {}", delta.offset, text.len()));
        }
        let before = text.len() / CHUNK_LEN;
        text.push_str(&delta.text);
        let after = text.len() / CHUNK_LEN;
        for k in before..after {
            let chunk = &text[k * CHUNK_LEN..(k + 1) * CHUNK_LEN];
            if let Some(stamp) = chunk.get(6..25).and_then(|s| s.parse::<u128>().ok()) {
                let us = (now.saturating_sub(stamp) / 1000) as u64;
                let _ = self.latency_us.record(us.max(1));
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
            _ => false,
        }
    }
}

#[derive(serde::Deserialize)]
struct Delta<'a> {
    message_id: &'a str,
    offset: usize,
    #[serde(borrow)]
    text: std::borrow::Cow<'a, str>,
}

/// Subscribes over SSE; signals `ready` after the `ready` event, then reads
/// until `messages` messages completed.
pub async fn sse(addr: std::net::SocketAddr, path: String, ready: mpsc::Sender<()>, messages: usize) -> Seen {
    let mut seen = Seen::new();
    if let Err(e) = sse_inner(addr, &path, ready, messages, &mut seen).await {
        seen.failures.push(format!("sse: {e}"));
    }
    seen
}

async fn sse_inner(
    addr: std::net::SocketAddr,
    path: &str,
    ready: mpsc::Sender<()>,
    messages: usize,
    seen: &mut Seen,
) -> anyhow::Result<()> {
    let mut sock = TcpStream::connect(addr).await?;
    sock.set_nodelay(true)?;
    sock.write_all(format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n").as_bytes())
        .await?;
    let mut raw: Vec<u8> = Vec::new();
    let mut body: Vec<u8> = Vec::new();
    let mut headers_done = false;
    let mut completed = 0;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = sock.read(&mut buf).await?;
        anyhow::ensure!(n > 0, "connection closed after {completed} messages");
        raw.extend_from_slice(&buf[..n]);
        if !headers_done {
            let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
            anyhow::ensure!(raw.starts_with(b"HTTP/1.1 200"), "status {}", String::from_utf8_lossy(&raw[..12]));
            raw.drain(..end + 4);
            headers_done = true;
        }
        // De-chunk.
        loop {
            let Some(le) = raw.windows(2).position(|w| w == b"\r\n") else { break };
            let size = usize::from_str_radix(std::str::from_utf8(&raw[..le])?.trim(), 16)?;
            if raw.len() < le + 2 + size + 2 {
                break;
            }
            body.extend_from_slice(&raw[le + 2..le + 2 + size]);
            raw.drain(..le + 2 + size + 2);
        }
        // Events.
        while let Some(end) = body.windows(2).position(|w| w == b"\n\n") {
            let frame = std::str::from_utf8(&body[..end])?.to_owned();
            body.drain(..end + 2);
            let mut kind = "";
            let mut data = "";
            for line in frame.lines() {
                if let Some(v) = line.strip_prefix("event: ") {
                    kind = v;
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data = v;
                }
            }
            if kind.is_empty() {
                continue;
            }
            if kind == "ready" {
                let _ = ready.send(()).await;
                continue;
            }
            if seen.apply_json(kind, data)? {
                completed += 1;
                if completed == messages {
                    return Ok(());
                }
            }
        }
    }
}

/// Subscribes over WebSocket, like `sse`.
pub async fn ws(url: String, ready: mpsc::Sender<()>, messages: usize) -> Seen {
    let mut seen = Seen::new();
    let result: anyhow::Result<()> = async {
        let (mut socket, _) = tokio_tungstenite::connect_async(url).await?;
        let mut completed = 0;
        while let Some(msg) = socket.next().await {
            let tokio_tungstenite::tungstenite::Message::Text(text) = msg? else { continue };
            let text = text.as_str();
            // The type comes first in every event object.
            let kind = text.get(9..).and_then(|t| t.split('"').next()).unwrap_or_default().to_owned();
            if kind == "ready" {
                let _ = ready.send(()).await;
                continue;
            }
            if seen.apply_json(&kind, text)? {
                completed += 1;
                if completed == messages {
                    return Ok(());
                }
            }
        }
        anyhow::bail!("websocket closed after {completed} messages")
    }
    .await;
    if let Err(e) = result {
        seen.failures.push(format!("ws: {e}"));
    }
    seen
}
