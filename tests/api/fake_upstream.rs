//! A fake model upstream for the provider tests: a raw HTTP/1.1 server on
//! a random loopback port that answers each request with a scripted reply,
//! written byte for byte (chunked encoding, split TCP writes, pauses), and
//! records what it was asked and whether the client hung up.
//!
//! It speaks whatever bytes the script holds; `anthropic` and `openai`
//! below build exact scripts of each streaming protocol, tool calls
//! included (`tool_answer`: parallel calls, their input streamed in
//! fragments cut mid-token, as each API streams them). A hostile or
//! broken provider is scripted too: one that never sends its response
//! head (`Reply::Silent`), drips a byte at a time (`Piece::Drip`), sends
//! one huge event in many small chunks (`Piece::Chunked`), or never stops
//! (`Piece::Forever`).

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::{json, Value};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::Notify,
};

/// One piece of a streamed body.
#[derive(Debug, Clone)]
pub enum Piece {
    /// Written as one chunk, in one TCP write.
    Bytes(Vec<u8>),
    /// Written as several chunks/writes, split at these byte counts.
    Split(Vec<u8>, usize),
    Pause(Duration),
    /// Nothing more is sent until the test calls `notify_one` on it (it
    /// may do so before the fake gets here).
    Wait(Arc<Notify>),
    /// One byte per chunk, with this pause after each.
    Drip(Vec<u8>, Duration),
    /// Chunks of this many bytes, all in one TCP write (no pause): the
    /// client reads each chunk as a piece of its own.
    Chunked(Vec<u8>, usize),
    /// Written again and again, with this pause after each, until the
    /// client hangs up.
    Forever(Vec<u8>, Duration),
}

/// How a streamed body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The terminating chunk: a clean end of the HTTP body.
    Clean,
    /// The connection is dropped mid-body.
    Drop,
    /// Nothing more is sent; the connection stays open until the client
    /// closes it (a stall).
    Hold,
}

#[derive(Debug, Clone)]
pub enum Reply {
    /// A non-streamed answer (an error, usually).
    Status { code: u16, body: String, retry_after: Option<u64> },
    /// `200 text/event-stream`, chunked.
    Stream { pieces: Vec<Piece>, end: End },
    /// The request is read, then nothing is sent, not even a response
    /// head, until the client hangs up.
    Silent,
}

#[derive(Debug, Clone)]
pub struct Recorded {
    pub at: std::time::Instant,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct State {
    replies: VecDeque<Reply>,
    last: Option<Reply>,
    requests: Vec<Recorded>,
    client_hangups: usize,
}

#[derive(Clone)]
pub struct FakeUpstream {
    pub url: String,
    state: Arc<Mutex<State>>,
    hangup: Arc<Notify>,
}

impl FakeUpstream {
    /// Starts the server; `replies` answer requests in order, the last one
    /// repeating.
    pub async fn start(replies: Vec<Reply>) -> FakeUpstream {
        FakeUpstream::start_at("127.0.0.1", replies).await
    }

    /// As `start`, listening on `host` (another loopback address, say).
    pub async fn start_at(host: &str, replies: Vec<Reply>) -> FakeUpstream {
        let listener = TcpListener::bind((host, 0)).await.expect("bind fake upstream");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State { replies: replies.into(), ..State::default() }));
        let hangup = Arc::new(Notify::new());
        let up = FakeUpstream { url, state, hangup };
        let server = up.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let server = server.clone();
                tokio::spawn(async move { server.serve(socket).await });
            }
        });
        up
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }

    pub fn hangups(&self) -> usize {
        self.state.lock().unwrap().client_hangups
    }

    /// Waits until a client closed a connection while its answer was still
    /// being streamed or held open.
    pub async fn wait_hangup(&self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if self.hangups() > 0 {
                return true;
            }
            let notified = self.hangup.notified();
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.hangups() > 0;
            }
        }
    }

    fn next_reply(&self) -> Reply {
        let mut s = self.state.lock().unwrap();
        let reply = s.replies.pop_front().or_else(|| s.last.clone()).expect("fake upstream has a reply");
        s.last = Some(reply.clone());
        reply
    }

    fn record_hangup(&self) {
        self.state.lock().unwrap().client_hangups += 1;
        self.hangup.notify_waiters();
    }

    async fn serve(&self, mut socket: TcpStream) {
        let Some(request) = read_request(&mut socket).await else { return };
        self.state.lock().unwrap().requests.push(request);
        match self.next_reply() {
            Reply::Silent => {
                wait_closed(&mut socket).await;
                self.record_hangup();
            }
            Reply::Status { code, body, retry_after } => {
                let extra = retry_after.map(|s| format!("retry-after: {s}\r\n")).unwrap_or_default();
                let head = format!(
                    "HTTP/1.1 {code} Status\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{extra}connection: close\r\n\r\n",
                    body.len()
                );
                let _ = socket.write_all(head.as_bytes()).await;
                let _ = socket.write_all(body.as_bytes()).await;
                let _ = socket.shutdown().await;
            }
            Reply::Stream { pieces, end } => {
                let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n";
                if socket.write_all(head.as_bytes()).await.is_err() {
                    return self.record_hangup();
                }
                for piece in pieces {
                    let ok = match piece {
                        Piece::Bytes(b) => write_chunk(&mut socket, &b).await,
                        Piece::Split(b, at) => {
                            let mut ok = true;
                            for part in b.chunks(at.max(1)) {
                                ok &= write_chunk(&mut socket, part).await;
                                tokio::time::sleep(Duration::from_millis(2)).await;
                            }
                            ok
                        }
                        Piece::Pause(d) => {
                            // A client that hangs up during a pause is seen
                            // at once: wait for either.
                            tokio::select! {
                                _ = tokio::time::sleep(d) => true,
                                _ = wait_closed(&mut socket) => false,
                            }
                        }
                        Piece::Wait(gate) => {
                            tokio::select! {
                                _ = gate.notified() => true,
                                _ = wait_closed(&mut socket) => false,
                            }
                        }
                        Piece::Drip(b, pause) => {
                            let mut ok = true;
                            for byte in b {
                                ok = write_chunk(&mut socket, &[byte]).await
                                    && tokio::select! {
                                        _ = tokio::time::sleep(pause) => true,
                                        _ = wait_closed(&mut socket) => false,
                                    };
                                if !ok {
                                    break;
                                }
                            }
                            ok
                        }
                        Piece::Chunked(b, at) => {
                            let mut out = Vec::with_capacity(b.len() + b.len() / at.max(1) * 12 + 12);
                            for part in b.chunks(at.max(1)) {
                                out.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
                                out.extend_from_slice(part);
                                out.extend_from_slice(b"\r\n");
                            }
                            socket.write_all(&out).await.is_ok() && socket.flush().await.is_ok()
                        }
                        Piece::Forever(b, pause) => loop {
                            let ok = write_chunk(&mut socket, &b).await
                                && tokio::select! {
                                    _ = tokio::time::sleep(pause) => true,
                                    _ = wait_closed(&mut socket) => false,
                                };
                            if !ok {
                                break false;
                            }
                        },
                    };
                    if !ok {
                        return self.record_hangup();
                    }
                }
                match end {
                    End::Clean => {
                        let _ = socket.write_all(b"0\r\n\r\n").await;
                        let _ = socket.flush().await;
                        // Let the client read the end before closing.
                        let _ = tokio::time::timeout(Duration::from_secs(2), wait_closed(&mut socket)).await;
                    }
                    End::Drop => drop(socket),
                    End::Hold => {
                        wait_closed(&mut socket).await;
                        self.record_hangup();
                    }
                }
            }
        }
    }
}

async fn write_chunk(socket: &mut TcpStream, bytes: &[u8]) -> bool {
    let mut out = format!("{:x}\r\n", bytes.len()).into_bytes();
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
    socket.write_all(&out).await.is_ok() && socket.flush().await.is_ok()
}

/// Resolves when the peer closes (read returns 0 or fails).
async fn wait_closed(socket: &mut TcpStream) {
    let mut buf = [0u8; 256];
    loop {
        match socket.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => continue,
        }
    }
}

async fn read_request(socket: &mut TcpStream) -> Option<Recorded> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    let head_end = loop {
        let n = socket.read(&mut tmp).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&tmp[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let path = lines.next()?.split(' ').nth(1)?.to_owned();
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_owned())).collect();
    let len: usize = headers.iter().find(|(k, _)| k == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
    while buf.len() < head_end + len {
        let n = socket.read(&mut tmp).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&tmp[..n]);
    }
    let body = serde_json::from_slice(&buf[head_end..head_end + len]).unwrap_or(Value::Null);
    Some(Recorded { at: std::time::Instant::now(), path, headers, body })
}

/// Exact Anthropic Messages streaming scripts.
pub mod anthropic {
    use super::*;

    pub fn event(name: &str, data: &Value) -> Vec<u8> {
        format!("event: {name}\ndata: {data}\n\n").into_bytes()
    }

    pub fn tool_start(index: usize, id: Option<&str>, name: &str) -> Vec<u8> {
        event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": index,
                "content_block": {"type": "tool_use", "id": id, "name": name, "input": {}}}),
        )
    }

    pub fn input_delta(index: usize, json: &str) -> Vec<u8> {
        event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": json}}),
        )
    }

    pub fn ping() -> Vec<u8> {
        b"event: ping\ndata: {\"type\": \"ping\"}\n\n".to_vec()
    }

    pub fn message_start(input_tokens: u64) -> Vec<u8> {
        event(
            "message_start",
            &json!({"type": "message_start", "message": {"id": "msg_fake", "type": "message", "role": "assistant",
                "content": [], "model": "claude-fake", "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": input_tokens, "output_tokens": 1}}}),
        )
    }

    pub fn text_start(index: usize) -> Vec<u8> {
        event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}),
        )
    }

    pub fn text_delta(index: usize, text: &str) -> Vec<u8> {
        event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": text}}),
        )
    }

    pub fn block_stop(index: usize) -> Vec<u8> {
        event("content_block_stop", &json!({"type": "content_block_stop", "index": index}))
    }

    pub fn message_delta(stop_reason: &str, output_tokens: u64) -> Vec<u8> {
        event(
            "message_delta",
            &json!({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": null},
                "usage": {"output_tokens": output_tokens}}),
        )
    }

    pub fn message_stop() -> Vec<u8> {
        event("message_stop", &json!({"type": "message_stop"}))
    }

    pub fn error(kind: &str, message: &str) -> Vec<u8> {
        event("error", &json!({"type": "error", "error": {"type": kind, "message": message}}))
    }

    /// A step that ends with tool calls, as the API streams it: an
    /// optional text block first, then per call (`(id, name, input JSON
    /// text)`, in order, one block each) a `tool_use` block start with an
    /// empty `input`, an empty `input_json_delta`, the input in fragments
    /// of a few bytes (`fragments`: cut inside keys and strings), its
    /// stop; then `stop_reason: "tool_use"`. The blocks' texts are exactly
    /// the inputs given.
    pub fn tool_answer(text: Option<&str>, calls: &[(&str, &str, &str)]) -> Vec<Piece> {
        let mut out = vec![Piece::Bytes(message_start(11))];
        let first = usize::from(text.is_some());
        if let Some(text) = text {
            out.extend([text_start(0), text_delta(0, text), block_stop(0)].map(Piece::Bytes));
        }
        for (i, (id, name, input)) in calls.iter().enumerate() {
            let index = first + i;
            out.push(Piece::Bytes(tool_start(index, Some(id), name)));
            out.push(Piece::Bytes(input_delta(index, "")));
            if i == 0 {
                out.push(Piece::Bytes(ping()));
            }
            out.extend(fragments(input, 5).into_iter().map(|f| Piece::Bytes(input_delta(index, f))));
            out.push(Piece::Bytes(block_stop(index)));
        }
        out.push(Piece::Bytes(message_delta("tool_use", 20)));
        out.push(Piece::Bytes(message_stop()));
        out
    }

    /// A complete one-text-block answer made of `pieces`, with pings.
    pub fn text_answer(pieces: &[&str]) -> Vec<Piece> {
        let mut out = vec![Piece::Bytes(message_start(11)), Piece::Bytes(text_start(0)), Piece::Bytes(ping())];
        for p in pieces {
            out.push(Piece::Bytes(text_delta(0, p)));
        }
        out.push(Piece::Bytes(block_stop(0)));
        out.push(Piece::Bytes(message_delta("end_turn", pieces.len() as u64)));
        out.push(Piece::Bytes(message_stop()));
        out
    }
}

/// Exact OpenAI chat-completions streaming scripts.
pub mod openai {
    use super::*;

    pub fn data(v: &Value) -> Vec<u8> {
        format!("data: {v}\n\n").into_bytes()
    }

    pub fn chunk(delta: Value, finish: Option<&str>) -> Vec<u8> {
        data(&json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1, "model": "fake",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}))
    }

    pub fn usage(prompt: u64, completion: u64) -> Vec<u8> {
        data(&json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1, "model": "fake",
            "choices": [], "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}}))
    }

    pub fn done() -> Vec<u8> {
        b"data: [DONE]\n\n".to_vec()
    }

    /// The first fragment of call `index` (its position among the
    /// answer's calls): its id, type and name, no arguments yet.
    pub fn call_start(index: usize, id: &str, name: &str) -> Vec<u8> {
        chunk(
            json!({"tool_calls": [{"index": index, "id": id, "type": "function",
                "function": {"name": name, "arguments": ""}}]}),
            None,
        )
    }

    /// More of call `index`'s arguments.
    pub fn call_arguments(index: usize, arguments: &str) -> Vec<u8> {
        chunk(json!({"tool_calls": [{"index": index, "function": {"arguments": arguments}}]}), None)
    }

    /// A step that ends with tool calls, as the API streams it: the role
    /// (`content: null` when there is no text), the text if any, then per
    /// call (`(id, name, input JSON text)`, in order) its first fragment
    /// and its arguments in fragments of a few bytes (cut inside keys and
    /// strings), `finish_reason: "tool_calls"` with an empty delta, the
    /// usage chunk, `[DONE]`. Each call is one block whose text is exactly
    /// the input given.
    pub fn tool_answer(text: Option<&str>, calls: &[(&str, &str, &str)]) -> Vec<Piece> {
        let mut out = vec![Piece::Bytes(chunk(json!({"role": "assistant", "content": null, "refusal": null}), None))];
        if let Some(text) = text {
            out.push(Piece::Bytes(chunk(json!({"content": text}), None)));
        }
        for (index, (id, name, input)) in calls.iter().enumerate() {
            out.push(Piece::Bytes(call_start(index, id, name)));
            out.extend(fragments(input, 4).into_iter().map(|f| Piece::Bytes(call_arguments(index, f))));
        }
        out.push(Piece::Bytes(chunk(json!({}), Some("tool_calls"))));
        out.push(Piece::Bytes(usage(21, 13)));
        out.push(Piece::Bytes(done()));
        out
    }
}

/// `text` in pieces of about `size` bytes, each cut at a character
/// boundary: tool input streams in fragments that end anywhere in the
/// JSON (inside a key, a string, a number), never inside a character.
pub fn fragments(text: &str, size: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let mut end = size.max(1).min(rest.len());
        while !rest.is_char_boundary(end) {
            end += 1;
        }
        let (piece, tail) = rest.split_at(end);
        out.push(piece);
        rest = tail;
    }
    out
}
