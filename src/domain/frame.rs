//! The encode-once frame. A broadcast event is serialized a single time
//! into one buffer laid out as an SSE frame; the WebSocket payload is a
//! slice of that same buffer (the JSON), so every subscriber shares one
//! allocation whatever its transport.

use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;

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
    /// The JSON object alone, for WebSocket text frames.
    pub json: ByteString,
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
        // unwrap: serde_json writes valid UTF-8.
        let json = ByteString::try_from(sse.slice(start..end)).unwrap();
        Frame { seq, kind: event.kind(), cursor, sse, json, seed: seed_line(event, text_block) }
    }
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
            // unwrap: a string always serializes.
            format!("{{\"type\": \"error\", \"message\": {}}}", serde_json::to_string(&message).unwrap())
        }
        _ => return None,
    };
    Some(Bytes::from(format!("data: {body}\n\n")))
}

/// An SSE frame for a comment line (heartbeat).
pub const SSE_KEEP_ALIVE: &[u8] = b": keep-alive\n\n";
