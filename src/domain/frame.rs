//! The encode-once frame, and the only place that knows the wire formats.
//! A broadcast event is serialized a single time, as an SSE frame and as a
//! WebSocket text frame (server frames are never masked, so the bytes are
//! the same for every subscriber): each subscriber is handed a shared
//! `Bytes`, whatever its transport, and nothing is encoded per subscriber.

use actix_http::ws::{CloseCode, CloseReason, OpCode, Parser};
use bytes::{BufMut, Bytes, BytesMut};

use super::{cursor::Cursor, event::Event};

#[derive(Debug, Clone)]
pub struct Frame {
    /// Position of this frame in its thread actor's broadcast order; 0 for
    /// frames built for one subscriber (replay and catch-up).
    pub seq: u64,
    /// The event type (`message.delta`, ...).
    pub kind: &'static str,
    /// The position right after this event, if it has one.
    pub cursor: Option<Cursor>,
    /// `event: ..\nid: ..\ndata: <json>\n\n`
    pub sse: Bytes,
    /// The JSON object as one WebSocket text frame, header included.
    pub ws: Bytes,
    /// For the seed-compatible route: this event in its wire format, when it
    /// has one (text deltas, completion).
    pub seed: Option<Bytes>,
}

impl Frame {
    /// Encodes `event`. `text_block` says whether a delta belongs to a
    /// text block (only those are chunks on the seed route).
    pub fn encode(event: &Event, seq: u64, text_block: bool) -> Frame {
        // unwrap: the event types hold only strings, numbers and ids.
        let json = serde_json::to_vec(event).unwrap();
        let cursor = event.cursor();
        let mut buf = BytesMut::with_capacity(json.len() + 96);
        buf.put_slice(b"event: ");
        buf.put_slice(event.kind().as_bytes());
        buf.put_slice(b"\n");
        if let Some(c) = cursor {
            buf.put_slice(format!("id: {c}\n").as_bytes());
        }
        buf.put_slice(b"data: ");
        let start = buf.len();
        buf.put_slice(&json);
        let end = buf.len();
        buf.put_slice(b"\n\n");
        let sse = buf.freeze();
        let ws = ws_frame(OpCode::Text, &sse[start..end]);
        Frame { seq, kind: event.kind(), cursor, sse, ws, seed: seed_line(event, text_block) }
    }
}

/// One unmasked (server) WebSocket frame.
pub fn ws_frame(op: OpCode, payload: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(payload.len() + 10);
    Parser::write_message(&mut buf, payload, op, true, false);
    buf.freeze()
}

/// A WebSocket close frame with its code and reason.
pub fn ws_close(code: CloseCode, description: &str) -> Bytes {
    let mut buf = BytesMut::with_capacity(description.len() + 8);
    Parser::write_close(&mut buf, Some(CloseReason { code, description: Some(description.to_owned()) }), false);
    buf.freeze()
}

/// The seed route's wire format: `{"type": "chunk", "content": "<text>"}`
/// per text chunk, then `{"type": "done"}` or `{"type": "error", ...}`,
/// with the spacing the original service wrote.
fn seed_line(event: &Event, text_block: bool) -> Option<Bytes> {
    let body = match event {
        Event::MessageDelta { text, .. } if text_block => {
            // unwrap: a string always serializes.
            format!("{{\"type\": \"chunk\", \"content\": {}}}", serde_json::to_string(text).unwrap())
        }
        Event::MessageCompleted { status: crate::domain::MessageStatus::Complete, .. } => {
            "{\"type\": \"done\"}".to_owned()
        }
        Event::MessageCompleted { status, error, .. } => {
            let message = match error {
                Some(e) => e.message.clone(),
                None => format!("generation {}", serde_json::to_string(status).unwrap_or_default().trim_matches('"')),
            };
            return Some(seed_error(&message));
        }
        _ => return None,
    };
    Some(Bytes::from(format!("data: {body}\n\n")))
}

/// The seed route's closing line for a failure.
pub fn seed_error(message: &str) -> Bytes {
    // unwrap: a string always serializes.
    Bytes::from(format!("data: {{\"type\": \"error\", \"message\": {}}}\n\n", serde_json::to_string(message).unwrap()))
}

/// An SSE frame for a comment line (heartbeat).
pub const SSE_KEEP_ALIVE: &[u8] = b": keep-alive\n\n";
