//! The encode-once frame, and the only place that knows the wire formats:
//! SSE (and its `retry:` and keep-alive lines), WebSocket frames (server
//! frames are never masked, so the bytes are the same for every
//! subscriber), the seed route's lines, the AI SDK's UI message stream
//! (its chunks from `ui_stream`), and the frame's own form between nodes.
//! A broadcast event is serialized to JSON a single time; every subscriber
//! is handed a shared `Bytes`, whatever its transport.
//!
//! The UI message stream's forms are encoded lazily: a frame carries what
//! they need (`ui_stream::Context`, a few numbers), and the first
//! subscriber of a form encodes it into the frame's cell, which every other
//! subscriber of that form then shares. A deployment that never serves the
//! AI SDK's routes never encodes them.

use std::sync::OnceLock;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use uuid::Uuid;

use super::{
    codes::EventKind,
    cursor::Cursor,
    event::Event,
    ui_stream::{self, Context, Piece, Request},
    websocket::{ws_frame, WsOp},
    MessageStatus,
};

/// A frame's place in its thread's broadcast order: the owner's epoch (a
/// new owner of the thread starts a higher one), then a sequence number
/// within it. Frames built for one subscriber (replay, catch-up) have
/// `StreamPos::NONE`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamPos {
    pub epoch: u64,
    pub seq: u64,
}

impl StreamPos {
    pub const NONE: StreamPos = StreamPos { epoch: 0, seq: 0 };

    pub fn new(epoch: u64, seq: u64) -> StreamPos {
        StreamPos { epoch, seq }
    }

    /// The next position in the same epoch.
    pub fn next(self) -> StreamPos {
        StreamPos { seq: self.seq + 1, ..self }
    }
}

#[derive(Debug, Clone)]
pub struct Frame {
    pub pos: StreamPos,
    pub kind: EventKind,
    /// The position right after this event, if it has one.
    pub cursor: Option<Cursor>,
    /// `event: ..\nid: ..\ndata: <json>\n\n`
    pub sse: Bytes,
    /// The JSON object as one WebSocket text frame, header included.
    pub ws: Bytes,
    /// For the seed-compatible route: this event in its wire format, when it
    /// has one (text deltas, completion).
    pub seed: Option<Bytes>,
    /// When this node built the frame (for a broadcast chunk: as it
    /// arrived from the provider, or from another node).
    pub born: std::time::Instant,
    /// The UI message stream's forms, encoded on first use.
    ui: Ui,
    /// Where the JSON lies in `sse`.
    json: std::ops::Range<usize>,
}

/// Two frames are equal when their bytes, places and UI context are:
/// when each was built does not count.
impl PartialEq for Frame {
    fn eq(&self, other: &Frame) -> bool {
        (self.pos, self.kind, self.cursor, &self.sse, &self.ws, &self.seed, &self.ui, &self.json)
            == (other.pos, other.kind, other.cursor, &other.sse, &other.ws, &other.seed, &other.ui, &other.json)
    }
}

/// A frame's UI message stream: what it needs beyond the event, and its
/// forms once a subscriber asked for one (allocated then: a frame no UI
/// subscriber reads carries only the context).
#[derive(Debug, Clone, Default)]
struct Ui {
    context: Context,
    forms: OnceLock<Box<Forms>>,
}

#[derive(Debug, Clone, Default)]
struct Forms {
    /// SSE `data:` lines (`None`: the event has no UI form).
    sse: OnceLock<Option<Bytes>>,
    /// The chunks with their numbers, a replayed delta split.
    pieces: OnceLock<Vec<Piece>>,
}

/// The cells hold what the event and the context say: frames are equal
/// whether or not a form was encoded yet.
impl PartialEq for Ui {
    fn eq(&self, other: &Ui) -> bool {
        self.context == other.context
    }
}

impl Frame {
    /// Encodes `event`. `text_block` says whether a delta belongs to a
    /// text block (only those are chunks on the seed route).
    pub fn encode(event: &Event, pos: StreamPos, text_block: bool) -> Frame {
        // unwrap: the event types hold only strings, numbers and ids.
        let json = serde_json::to_vec(event).unwrap();
        Frame::assemble(pos, event.kind(), event.cursor(), &json, seed_line(event, text_block))
    }

    /// Encodes `event` of an answer whose UI message stream `context`
    /// describes (which also says whether a delta is of a text block).
    pub fn encode_in(event: &Event, pos: StreamPos, context: Context) -> Frame {
        let mut frame = Frame::encode(event, pos, context.is_text_delta());
        frame.ui.context = context;
        frame
    }

    /// This frame with the UI message stream's `context` (a frame another
    /// node sent carries none: its form between nodes leaves it out, and
    /// each node's mirror of the conversation supplies it).
    pub fn with_ui(&self, context: Context) -> Frame {
        Frame { ui: Ui { context, ..Ui::default() }, ..self.clone() }
    }

    /// The UI message stream's SSE lines of this frame, if it has any
    /// (`data: [DONE]` after a message's end); encoded once, on first use.
    pub fn ui_sse(&self) -> Option<&Bytes> {
        self.ui_forms()
            .sse
            .get_or_init(|| Event::from_json(self.json()).and_then(|e| ui_stream::sse(&e, &self.ui.context)))
            .as_ref()
    }

    fn ui_forms(&self) -> &Forms {
        self.ui.forms.get_or_init(Box::default)
    }

    /// The UI chunks of this frame with their numbers; encoded once.
    pub fn ui_pieces(&self) -> &[Piece] {
        self.ui_forms().pieces.get_or_init(|| match Event::from_json(self.json()) {
            Some(e) => ui_stream::pieces(&e, &self.ui.context, true),
            None => Vec::new(),
        })
    }

    /// Builds every wire form around `json`, which is not parsed.
    fn assemble(pos: StreamPos, kind: EventKind, cursor: Option<Cursor>, json: &[u8], seed: Option<Bytes>) -> Frame {
        let mut buf = BytesMut::with_capacity(json.len() + 96);
        buf.put_slice(b"event: ");
        buf.put_slice(kind.as_str().as_bytes());
        buf.put_slice(b"\n");
        if let Some(c) = cursor {
            buf.put_slice(format!("id: {c}\n").as_bytes());
        }
        buf.put_slice(b"data: ");
        let start = buf.len();
        buf.put_slice(json);
        let end = buf.len();
        buf.put_slice(b"\n\n");
        let sse = buf.freeze();
        let ws = ws_frame(WsOp::Text, &sse[start..end]);
        let born = std::time::Instant::now();
        Frame { pos, kind, cursor, sse, ws, seed, born, ui: Ui::default(), json: start..end }
    }

    /// The event's JSON.
    pub fn json(&self) -> &[u8] {
        &self.sse[self.json.clone()]
    }

    /// This frame as one message between nodes: its position, kind,
    /// cursor, JSON and seed line, with no JSON encoding on either side.
    pub fn to_wire(&self) -> Bytes {
        let json = self.json();
        let seed = self.seed.as_deref().unwrap_or_default();
        let mut buf = BytesMut::with_capacity(json.len() + seed.len() + 64);
        buf.put_u8(WIRE_VERSION);
        buf.put_u8(self.kind.tag());
        buf.put_u64(self.pos.epoch);
        buf.put_u64(self.pos.seq);
        match self.cursor {
            Some(c) => {
                buf.put_u8(1);
                buf.put_slice(c.message_id.as_bytes());
                buf.put_u64(c.block as u64);
                buf.put_u64(c.offset as u64);
            }
            None => buf.put_u8(0),
        }
        buf.put_u8(u8::from(self.seed.is_some()));
        buf.put_u32(seed.len() as u32);
        buf.put_slice(seed);
        buf.put_u32(json.len() as u32);
        buf.put_slice(json);
        buf.freeze()
    }

    /// The frame `to_wire` made, rebuilt; `None` if `wire` is not one.
    pub fn from_wire(mut wire: &[u8]) -> Option<Frame> {
        if wire.remaining() < 19 || wire.get_u8() != WIRE_VERSION {
            return None;
        }
        let kind = EventKind::from_tag(wire.get_u8())?;
        let pos = StreamPos::new(wire.get_u64(), wire.get_u64());
        let cursor = match wire.get_u8() {
            0 => None,
            _ if wire.remaining() >= 32 => {
                let id = Uuid::from_slice(&wire[..16]).ok()?;
                wire.advance(16);
                Some(Cursor::new(id, wire.get_u64() as usize, wire.get_u64() as usize))
            }
            _ => return None,
        };
        let has_seed = wire.try_get_u8().ok()? == 1;
        let seed_len = wire.try_get_u32().ok()? as usize;
        let seed = wire.get(..seed_len)?;
        let seed = has_seed.then(|| Bytes::copy_from_slice(seed));
        wire.advance(seed_len);
        let json_len = wire.try_get_u32().ok()? as usize;
        let json = wire.get(..json_len)?;
        Some(Frame::assemble(pos, kind, cursor, json, seed))
    }
}

const WIRE_VERSION: u8 = 1;

/// The seed route's wire format: `{"type": "chunk", "content": "<text>"}`
/// per text chunk, then `{"type": "done"}` or `{"type": "error", ...}`,
/// with the spacing the original service wrote.
fn seed_line(event: &Event, text_block: bool) -> Option<Bytes> {
    let body = match event {
        Event::MessageDelta { text, .. } if text_block => {
            // unwrap: a string always serializes.
            format!("{{\"type\": \"chunk\", \"content\": {}}}", serde_json::to_string(text).unwrap())
        }
        Event::MessageCompleted { status: MessageStatus::Complete, .. } => "{\"type\": \"done\"}".to_owned(),
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

/// An SSE comment line (heartbeat).
pub const SSE_KEEP_ALIVE: &[u8] = b": keep-alive\n\n";

/// The `retry:` field an SSE answer begins with: how long a browser waits
/// before it reconnects.
pub fn sse_retry(millis: u64) -> Bytes {
    Bytes::from(format!("retry: {millis}\n\n"))
}

/// Chunks of a frame (`Frame::ui_pieces`, which the subscriber picks)
/// for one request of a chat WebSocket, each under the number paired with
/// it, then `end` if the frame ends what the request follows: its `chunk`
/// frames (and `end`) in one buffer, or `None` when there is nothing to
/// send. The chunks' JSON is encoded once per frame; per request only its
/// envelope is written around a copy of it.
pub fn ws_chunks<'a>(request: &Request, pieces: impl Iterator<Item = (u64, &'a Piece)>, end: bool) -> Option<Bytes> {
    let mut out = BytesMut::new();
    for (seq, piece) in pieces {
        request.put_numbered(seq, &piece.json, &mut out);
    }
    if end {
        out.put_slice(&ws_frame(WsOp::Text, &request.end()));
    }
    (!out.is_empty()).then(|| out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::codes::StreamCode;

    fn delta(text: &str) -> Event {
        let id = Uuid::now_v7();
        Event::MessageDelta {
            thread_id: Uuid::nil(),
            cursor: Some(Cursor::new(id, 2, 7 + text.len())),
            message_id: id,
            block: 2,
            offset: 7,
            text: text.into(),
        }
    }

    #[test]
    fn a_frame_rebuilt_from_its_wire_form_is_the_same_frame() {
        let events = [
            delta("日本 \"quoted\"\n"),
            Event::error(Uuid::nil(), None, StreamCode::CursorAhead, "x"),
            Event::Presence { thread_id: Uuid::nil(), cursor: None, subscribers: 3 },
        ];
        for (i, event) in events.iter().enumerate() {
            let frame = Frame::encode(event, StreamPos::new(7, i as u64), i == 0);
            let back = Frame::from_wire(&frame.to_wire()).expect("a frame");
            assert_eq!(back, frame);
        }
        assert!(Frame::from_wire(b"\x02garbage").is_none());
        let wire = Frame::encode(&events[0], StreamPos::new(1, 1), true).to_wire();
        for cut in 0..wire.len() {
            assert!(Frame::from_wire(&wire[..cut]).is_none(), "cut at {cut}");
        }
    }

    #[test]
    fn the_ui_forms_are_encoded_once_and_shared() {
        use crate::domain::{
            ui_stream::{BlockRef, Context},
            BlockKind,
        };
        let event = delta("héllo");
        let context = Context {
            seq: 4,
            block: Some(BlockRef { index: 2, kind: BlockKind::Text, tool: None }),
            ..Context::default()
        };
        let frame = Frame::encode_in(&event, StreamPos::new(1, 1), context);
        assert!(frame.seed.is_some(), "a text delta has its seed line");
        let first = frame.ui_sse().unwrap().clone();
        assert_eq!(&first[..], "data: {\"type\":\"text-delta\",\"id\":\"2\",\"delta\":\"héllo\"}\n\n".as_bytes());
        assert_eq!(first.as_ptr(), frame.ui_sse().unwrap().as_ptr(), "encoded once, the same bytes after");
        let request = Request::new("r1");
        let numbered = |after: u64| frame.ui_pieces().iter().filter(move |p| p.seq > after).map(|p| (p.seq, p));
        let ws = ws_chunks(&request, numbered(0), false).unwrap();
        assert!(std::str::from_utf8(&ws[2..])
            .unwrap()
            .starts_with(r#"{"type":"chunk","requestId":"r1","sequence":4,"#));
        assert!(ws_chunks(&request, numbered(4), false).is_none(), "nothing after the number it resumes from");
        // A frame without the context (from another node) has no UI form
        // until its node supplies it.
        let bare = Frame::from_wire(&frame.to_wire()).unwrap();
        assert!(bare.ui_sse().is_none());
        assert_eq!(bare.with_ui(frame.ui.context.clone()).ui_sse(), Some(&first));
    }

    #[test]
    fn stream_positions_order_by_epoch_first() {
        assert!(StreamPos::new(2, 0) > StreamPos::new(1, 99));
        assert_eq!(StreamPos::new(1, 1).next(), StreamPos::new(1, 2));
    }
}
