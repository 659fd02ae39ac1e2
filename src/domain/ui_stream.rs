//! The AI SDK's UI message stream (npm `ai` 7.0, its `UIMessageChunk`s), as
//! a pure translation of the contract's events: what `useChat` reads from
//! `POST …/chat` and `GET …/chat/{id}/stream` (SSE `data:` lines, then
//! `data: [DONE]`) and, wrapped in the `WebSocketChatTransport`'s frames,
//! from `…/chat/ws`. `domain::frame` calls it lazily, once per frame and
//! form, the first time a subscriber of that form needs it.
//!
//! An assistant message is one UI message: `message.started` is `start`
//! (with the message's id) and `start-step`; each block is a part, opened
//! by its `message.block` (`text-start`, `reasoning-start` for thinking,
//! `tool-input-start` for tool_use), extended by its deltas and ended by
//! the next block's announcement or by `message.completed` (`text-end`,
//! `reasoning-end`, `tool-input-available` with the parsed input), which
//! then says how the message ended: `finish-step` and `finish`, `error`
//! first when it failed, or `abort` when it was cancelled.
//!
//! Every chunk of an answer has a number in the answer's canonical order
//! (`start` is 0), the `sequence` of the WebSocket transport. A delta's
//! chunks are the deltas the answer was published in; a delta that covers
//! several of them (a replay) is split at their ends when numbered
//! (`Context::splits`), so a client gets the same numbers however the text
//! reached it, and a resume after a number gets exactly what follows.
//! What an event alone does not say (the kind of a delta's block, the
//! block an announcement ends, the numbers) its `Context` says; the thread
//! actor, which holds the conversation, supplies it.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use serde::Serialize;
use serde_json::Value;

use super::{event::Event, BlockKind, MessageError, MessageStatus, Role};

/// The response header of the UI message stream protocol, and its value.
pub const HEADER: (&str, &str) = ("x-vercel-ai-ui-message-stream", "v1");

/// The line that ends a UI message stream over SSE.
pub const DONE: &[u8] = b"data: [DONE]\n\n";

/// A tool call, as its block names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tool {
    pub id: String,
    pub name: String,
}

/// A block of an answer, as the UI stream names its part.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockRef {
    pub index: usize,
    pub kind: BlockKind,
    /// A tool_use block's call.
    pub tool: Option<Arc<Tool>>,
}

/// A block that ends with an event.
#[derive(Debug, Clone, PartialEq)]
pub struct Closed {
    pub block: BlockRef,
    /// A tool_use block's whole input (JSON text).
    pub input: Option<String>,
}

/// What the UI stream needs to know of an event beyond the event itself.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Context {
    /// The canonical number of the event's first chunk in its answer.
    pub seq: u64,
    /// A delta: the block it extends.
    pub block: Option<BlockRef>,
    /// `message.block` and `message.completed`: the block that ends here
    /// (boxed: most frames end none, and every frame carries a context).
    pub closes: Option<Box<Closed>>,
    /// A delta that covers several published deltas: where each but the
    /// last ends (byte offsets in the block, inside the delta), in order.
    pub splits: Box<[usize]>,
}

impl Context {
    /// Whether this is the context of a delta of a text block.
    pub fn is_text_delta(&self) -> bool {
        self.block.as_ref().is_some_and(|b| b.kind == BlockKind::Text)
    }
}

/// One chunk, JSON-encoded, with its canonical number.
#[derive(Debug, Clone, PartialEq)]
pub struct Piece {
    pub seq: u64,
    pub json: Bytes,
}

/// The chunks of the protocol this service sends, as `ai` names them.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
enum Chunk<'a> {
    Start {
        #[serde(rename = "messageId")]
        message_id: String,
    },
    StartStep,
    TextStart {
        id: String,
    },
    TextDelta {
        id: String,
        delta: &'a str,
    },
    TextEnd {
        id: String,
    },
    ReasoningStart {
        id: String,
    },
    ReasoningDelta {
        id: String,
        delta: &'a str,
    },
    ReasoningEnd {
        id: String,
    },
    ToolInputStart {
        #[serde(rename = "toolCallId")]
        tool_call_id: &'a str,
        #[serde(rename = "toolName")]
        tool_name: &'a str,
    },
    ToolInputDelta {
        #[serde(rename = "toolCallId")]
        tool_call_id: &'a str,
        #[serde(rename = "inputTextDelta")]
        input_text_delta: &'a str,
    },
    ToolInputAvailable {
        #[serde(rename = "toolCallId")]
        tool_call_id: &'a str,
        #[serde(rename = "toolName")]
        tool_name: &'a str,
        input: Value,
    },
    ToolInputError {
        #[serde(rename = "toolCallId")]
        tool_call_id: &'a str,
        #[serde(rename = "toolName")]
        tool_name: &'a str,
        input: Value,
        #[serde(rename = "errorText")]
        error_text: &'a str,
    },
    FinishStep,
    Finish {
        #[serde(rename = "finishReason")]
        finish_reason: &'static str,
    },
    Error {
        #[serde(rename = "errorText")]
        error_text: &'a str,
    },
    Abort {
        reason: &'static str,
    },
}

fn json(chunk: &Chunk) -> Bytes {
    // unwrap: the chunks hold only strings and JSON values.
    Bytes::from(serde_json::to_vec(chunk).unwrap())
}

/// A part's id in the UI message: its block's number.
fn part_id(block: usize) -> String {
    block.to_string()
}

/// The calls of a tool block that is not named (a provider that sent
/// none): still one part, under a name of its own.
static UNNAMED: Tool = Tool { id: String::new(), name: String::new() };

fn tool_of(block: &BlockRef) -> (&str, &str) {
    let tool = block.tool.as_deref().unwrap_or(&UNNAMED);
    let name = if tool.name.is_empty() { "tool" } else { &tool.name };
    (&tool.id, name)
}

/// The chunk that opens `block`.
fn opening(block: &BlockRef) -> Option<Bytes> {
    Some(match block.kind {
        BlockKind::Text => json(&Chunk::TextStart { id: part_id(block.index) }),
        BlockKind::Thinking => json(&Chunk::ReasoningStart { id: part_id(block.index) }),
        // (A call's result has no UI form yet.)
        BlockKind::ToolResult => return None,
        BlockKind::ToolUse => {
            let (tool_call_id, tool_name) = tool_of(block);
            json(&Chunk::ToolInputStart { tool_call_id, tool_name })
        }
    })
}

/// The chunk of `text` appended to `block`.
fn delta(block: &BlockRef, text: &str) -> Option<Bytes> {
    Some(match block.kind {
        BlockKind::ToolResult => return None,
        BlockKind::Text => json(&Chunk::TextDelta { id: part_id(block.index), delta: text }),
        BlockKind::Thinking => json(&Chunk::ReasoningDelta { id: part_id(block.index), delta: text }),
        BlockKind::ToolUse => {
            let (tool_call_id, _) = tool_of(block);
            json(&Chunk::ToolInputDelta { tool_call_id, input_text_delta: text })
        }
    })
}

/// The chunk that ends a block: a tool call's ends with its input, parsed
/// (an empty input is `{}`; one that is not JSON, as an answer cut short
/// may leave it, is a `tool-input-error` holding the text).
fn closing(closed: &Closed) -> Option<Bytes> {
    let block = &closed.block;
    Some(match block.kind {
        BlockKind::ToolResult => return None,
        BlockKind::Text => json(&Chunk::TextEnd { id: part_id(block.index) }),
        BlockKind::Thinking => json(&Chunk::ReasoningEnd { id: part_id(block.index) }),
        BlockKind::ToolUse => {
            let (tool_call_id, tool_name) = tool_of(block);
            let text = closed.input.as_deref().unwrap_or_default();
            let parsed = match text.trim() {
                "" => Ok(Value::Object(Default::default())),
                text => serde_json::from_str::<Value>(text),
            };
            match parsed {
                Ok(input) => json(&Chunk::ToolInputAvailable { tool_call_id, tool_name, input }),
                Err(_) => json(&Chunk::ToolInputError {
                    tool_call_id,
                    tool_name,
                    input: Value::String(text.to_owned()),
                    error_text: "the tool input is not valid JSON",
                }),
            }
        }
    })
}

/// `finish`'s reason for a provider's stop reason.
fn finish_reason(stop_reason: Option<&str>) -> &'static str {
    match stop_reason {
        None | Some("end_turn" | "stop" | "stop_sequence" | "pause_turn") => "stop",
        Some("max_tokens" | "length" | "model_context_window_exceeded") => "length",
        Some("tool_use" | "tool_calls" | "function_call") => "tool-calls",
        Some("refusal" | "content_filter") => "content-filter",
        Some(_) => "other",
    }
}

/// How a message's end reads: `finish-step` and `finish`, `error` first
/// when it failed or was interrupted, `abort` alone when cancelled.
fn ending(status: MessageStatus, stop_reason: Option<&str>, error: Option<&MessageError>) -> Vec<Bytes> {
    let said = |fallback: &'static str| error.map_or(fallback, |e| e.message.as_str());
    match status {
        MessageStatus::Complete | MessageStatus::Streaming => {
            vec![json(&Chunk::FinishStep), json(&Chunk::Finish { finish_reason: finish_reason(stop_reason) })]
        }
        // The step ended with calls that wait: this stream ends here (the
        // client answers them, and the answer goes on).
        MessageStatus::AwaitingInput => {
            vec![json(&Chunk::FinishStep), json(&Chunk::Finish { finish_reason: "tool-calls" })]
        }
        MessageStatus::Failed => vec![
            json(&Chunk::Error { error_text: said("the answer failed") }),
            json(&Chunk::FinishStep),
            json(&Chunk::Finish { finish_reason: "error" }),
        ],
        MessageStatus::Interrupted => vec![
            json(&Chunk::Error { error_text: said("the answer was interrupted") }),
            json(&Chunk::FinishStep),
            json(&Chunk::Finish { finish_reason: "interrupted" }),
        ],
        MessageStatus::Cancelled => vec![json(&Chunk::Abort { reason: "cancelled" })],
    }
}

/// The chunks of `event` with their numbers, or none when it has no UI
/// form (a user message, presence, `ready`, a stream error). `split`:
/// a delta that covers several published deltas becomes one chunk each.
pub fn pieces(event: &Event, context: &Context, split: bool) -> Vec<Piece> {
    let chunks: Vec<Bytes> = match event {
        Event::MessageStarted { message_id, role: Role::Assistant, .. } => {
            vec![json(&Chunk::Start { message_id: message_id.to_string() }), json(&Chunk::StartStep)]
        }
        Event::MessageBlock { block, kind, id, name, .. } => {
            let tool = (*kind == BlockKind::ToolUse)
                .then(|| Arc::new(Tool { id: id.clone().unwrap_or_default(), name: name.clone().unwrap_or_default() }));
            let opened = BlockRef { index: *block, kind: *kind, tool };
            context.closes.iter().filter_map(|c| closing(c)).chain(opening(&opened)).collect()
        }
        Event::MessageDelta { offset, text, .. } => {
            let Some(block) = &context.block else { return Vec::new() };
            if !split || context.splits.is_empty() {
                delta(block, text).into_iter().collect()
            } else {
                let mut from = 0;
                let mut out = Vec::with_capacity(context.splits.len() + 1);
                for end in context.splits.iter().map(|e| e.saturating_sub(*offset)) {
                    if end > from && end < text.len() && text.is_char_boundary(end) {
                        out.extend(delta(block, &text[from..end]));
                        from = end;
                    }
                }
                out.extend(delta(block, &text[from..]));
                out
            }
        }
        Event::MessageCompleted { status, stop_reason, error, .. } => context
            .closes
            .iter()
            .filter_map(|c| closing(c))
            .chain(ending(*status, stop_reason.as_deref(), error.as_ref()))
            .collect(),
        _ => Vec::new(),
    };
    chunks.into_iter().enumerate().map(|(i, json)| Piece { seq: context.seq + i as u64, json }).collect()
}

/// `event` as SSE `data:` lines of the UI message stream (a replay's delta
/// stays one chunk), `data: [DONE]` after a message's end; `None` when it
/// has no UI form.
pub fn sse(event: &Event, context: &Context) -> Option<Bytes> {
    let pieces = pieces(event, context, false);
    if pieces.is_empty() {
        return None;
    }
    let size = pieces.iter().map(|p| p.json.len() + 8).sum::<usize>() + DONE.len();
    let mut out = BytesMut::with_capacity(size);
    for piece in &pieces {
        out.put_slice(b"data: ");
        out.put_slice(&piece.json);
        out.put_slice(b"\n\n");
    }
    if matches!(event, Event::MessageCompleted { .. }) {
        out.put_slice(DONE);
    }
    Some(out.freeze())
}

/// A stream's closing error over SSE (the thread went away, the reader
/// was too slow): an `error` chunk, then the end.
pub fn sse_error(message: &str) -> Bytes {
    let mut out = BytesMut::new();
    out.put_slice(b"data: ");
    out.put_slice(&json(&Chunk::Error { error_text: message }));
    out.put_slice(b"\n\n");
    out.put_slice(DONE);
    out.freeze()
}

/// The `WebSocketChatTransport`'s server frames of one request, as JSON
/// texts: its `requestId` is encoded once, and each chunk is written
/// around the frame's shared bytes without JSON work.
#[derive(Debug, Clone)]
pub struct Request {
    /// `{"type":"chunk","requestId":"…","sequence":`
    chunk_prefix: Bytes,
    /// `"requestId":"…"` with its quotes.
    id_json: String,
}

const CHUNK_KEY: &[u8] = b",\"chunk\":";

/// How many digits `n` has in decimal.
fn decimal_len(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

impl Request {
    pub fn new(request_id: &str) -> Request {
        // unwrap: a string always serializes.
        let id_json = format!("\"requestId\":{}", serde_json::to_string(request_id).unwrap());
        let chunk_prefix = Bytes::from(format!("{{\"type\":\"chunk\",{id_json},\"sequence\":"));
        Request { chunk_prefix, id_json }
    }

    /// `{"type":"chunk","requestId":…,"sequence":…,"chunk":…}`
    pub fn chunk(&self, piece: &Piece) -> Vec<u8> {
        let mut out = BytesMut::new();
        self.put_chunk_json(piece, &mut out);
        out.to_vec()
    }

    /// `chunk()` as one WebSocket text frame, appended to `out`.
    pub fn put_chunk(&self, piece: &Piece, out: &mut BytesMut) {
        let len = self.chunk_prefix.len() + decimal_len(piece.seq) + CHUNK_KEY.len() + piece.json.len() + 1;
        out.reserve(len + 10);
        super::websocket::put_ws_header(out, super::websocket::WsOp::Text, len);
        self.put_chunk_json(piece, out);
    }

    fn put_chunk_json(&self, piece: &Piece, out: &mut BytesMut) {
        use std::fmt::Write as _;
        out.extend_from_slice(&self.chunk_prefix);
        // unwrap: writing to a BytesMut cannot fail.
        write!(out, "{}", piece.seq).unwrap();
        out.extend_from_slice(CHUNK_KEY);
        out.extend_from_slice(&piece.json);
        out.extend_from_slice(b"}");
    }

    fn control(&self, kind: &str) -> Vec<u8> {
        format!("{{\"type\":\"{kind}\",{}}}", self.id_json).into_bytes()
    }

    /// `start`: a resume found an answer running.
    pub fn start(&self) -> Vec<u8> {
        self.control("start")
    }

    /// `end`: the request's stream is complete.
    pub fn end(&self) -> Vec<u8> {
        self.control("end")
    }

    /// `no-active`: nothing runs for the chat.
    pub fn no_active(&self) -> Vec<u8> {
        self.control("no-active")
    }

    /// `error`: the request failed (the SDK errors its stream).
    pub fn error(&self, message: &str) -> Vec<u8> {
        // unwrap: a string always serializes.
        let text = serde_json::to_string(message).unwrap();
        format!("{{\"type\":\"error\",{},\"errorText\":{text}}}", self.id_json).into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::domain::{cursor::Cursor, Usage};

    fn started(id: Uuid) -> Event {
        Event::MessageStarted {
            thread_id: Uuid::nil(),
            cursor: Some(Cursor::new(id, 0, 0)),
            message_id: id,
            role: Role::Assistant,
            model: None,
        }
    }

    fn block(id: Uuid, b: usize, kind: BlockKind, tool: Option<(&str, &str)>) -> Event {
        Event::MessageBlock {
            thread_id: Uuid::nil(),
            cursor: Some(Cursor::new(id, b, 0)),
            message_id: id,
            block: b,
            kind,
            id: tool.map(|t| t.0.to_owned()),
            name: tool.map(|t| t.1.to_owned()),
            tool_use_id: None,
            is_error: None,
        }
    }

    fn delta_of(id: Uuid, b: usize, offset: usize, text: &str) -> Event {
        Event::MessageDelta {
            thread_id: Uuid::nil(),
            cursor: Some(Cursor::new(id, b, offset + text.len())),
            message_id: id,
            block: b,
            offset,
            text: text.to_owned(),
        }
    }

    fn completed(id: Uuid, status: MessageStatus, error: Option<&str>) -> Event {
        Event::MessageCompleted {
            thread_id: Uuid::nil(),
            cursor: None,
            message_id: id,
            status,
            stop_reason: Some("end_turn".into()),
            usage: Usage::default(),
            error: error.map(|m| MessageError {
                code: crate::domain::codes::MessageErrorCode::UpstreamError,
                message: m.into(),
            }),
        }
    }

    fn text_of(pieces: &[Piece]) -> Vec<String> {
        pieces.iter().map(|p| String::from_utf8(p.json.to_vec()).unwrap()).collect()
    }

    fn at(seq: u64) -> Context {
        Context { seq, ..Context::default() }
    }

    fn in_block(seq: u64, index: usize, kind: BlockKind, tool: Option<Arc<Tool>>) -> Context {
        Context { seq, block: Some(BlockRef { index, kind, tool }), ..Context::default() }
    }

    #[test]
    fn an_answer_with_thinking_text_and_a_tool_call_reads_as_the_sdk_names_it() {
        let id = Uuid::now_v7();
        let tool = Arc::new(Tool { id: "toolu_1".into(), name: "weather".into() });
        let thinking = BlockRef { index: 0, kind: BlockKind::Thinking, tool: None };
        let text = BlockRef { index: 1, kind: BlockKind::Text, tool: None };
        let call = BlockRef { index: 2, kind: BlockKind::ToolUse, tool: Some(tool.clone()) };
        let steps = [
            (started(id), at(0)),
            (block(id, 0, BlockKind::Thinking, None), at(2)),
            (delta_of(id, 0, 0, "hm"), in_block(3, 0, BlockKind::Thinking, None)),
            (
                block(id, 1, BlockKind::Text, None),
                Context { closes: Some(Box::new(Closed { block: thinking, input: None })), ..at(4) },
            ),
            (delta_of(id, 1, 0, "Héllo \"x\""), in_block(6, 1, BlockKind::Text, None)),
            (
                block(id, 2, BlockKind::ToolUse, Some(("toolu_1", "weather"))),
                Context { closes: Some(Box::new(Closed { block: text, input: None })), ..at(7) },
            ),
            (delta_of(id, 2, 0, "{\"city\":"), in_block(9, 2, BlockKind::ToolUse, Some(tool.clone()))),
            (
                completed(id, MessageStatus::Complete, None),
                Context {
                    closes: Some(Box::new(Closed { block: call, input: Some("{\"city\": \"Oslo\"}".into()) })),
                    ..at(10)
                },
            ),
        ];
        let mut all = Vec::new();
        for (event, context) in &steps {
            all.extend(pieces(event, context, true));
        }
        let seqs: Vec<u64> = all.iter().map(|p| p.seq).collect();
        assert_eq!(seqs, (0..13).collect::<Vec<_>>(), "numbers run without gap");
        assert_eq!(
            text_of(&all),
            [
                format!(r#"{{"type":"start","messageId":"{id}"}}"#),
                r#"{"type":"start-step"}"#.into(),
                r#"{"type":"reasoning-start","id":"0"}"#.into(),
                r#"{"type":"reasoning-delta","id":"0","delta":"hm"}"#.into(),
                r#"{"type":"reasoning-end","id":"0"}"#.into(),
                r#"{"type":"text-start","id":"1"}"#.into(),
                r#"{"type":"text-delta","id":"1","delta":"Héllo \"x\""}"#.into(),
                r#"{"type":"text-end","id":"1"}"#.into(),
                r#"{"type":"tool-input-start","toolCallId":"toolu_1","toolName":"weather"}"#.into(),
                r#"{"type":"tool-input-delta","toolCallId":"toolu_1","inputTextDelta":"{\"city\":"}"#.into(),
                r#"{"type":"tool-input-available","toolCallId":"toolu_1","toolName":"weather","input":{"city":"Oslo"}}"#
                    .into(),
                r#"{"type":"finish-step"}"#.into(),
                r#"{"type":"finish","finishReason":"stop"}"#.into(),
            ]
        );
    }

    #[test]
    fn a_replayed_delta_is_one_chunk_over_sse_and_its_published_deltas_when_numbered() {
        let id = Uuid::now_v7();
        let context = Context { splits: vec![5, 9].into(), ..in_block(3, 0, BlockKind::Text, None) };
        // The block's text from byte 2: published as [2..5], [5..9], [9..12].
        let event = delta_of(id, 0, 2, "llo wörld");
        let split = pieces(&event, &context, true);
        let deltas: Vec<Value> = split.iter().map(|p| serde_json::from_slice::<Value>(&p.json).unwrap()).collect();
        assert_eq!(deltas.iter().map(|d| d["delta"].as_str().unwrap()).collect::<Vec<_>>(), ["llo", " wö", "rld"]);
        assert_eq!(split.iter().map(|p| p.seq).collect::<Vec<_>>(), [3, 4, 5]);
        let lines = sse(&event, &context).unwrap();
        let line = String::from_utf8(lines.to_vec()).unwrap();
        assert_eq!(line, "data: {\"type\":\"text-delta\",\"id\":\"0\",\"delta\":\"llo wörld\"}\n\n");
    }

    #[test]
    fn a_failed_answer_ends_with_its_error_and_a_cancelled_one_with_abort() {
        let id = Uuid::now_v7();
        let text = Closed { block: BlockRef { index: 0, kind: BlockKind::Text, tool: None }, input: None };
        let failed = completed(id, MessageStatus::Failed, Some("Overloaded"));
        let context = Context { closes: Some(Box::new(text.clone())), ..at(4) };
        let lines = String::from_utf8(sse(&failed, &context).unwrap().to_vec()).unwrap();
        assert_eq!(
            lines,
            "data: {\"type\":\"text-end\",\"id\":\"0\"}\n\n\
             data: {\"type\":\"error\",\"errorText\":\"Overloaded\"}\n\n\
             data: {\"type\":\"finish-step\"}\n\n\
             data: {\"type\":\"finish\",\"finishReason\":\"error\"}\n\n\
             data: [DONE]\n\n"
        );
        let cancelled = pieces(&completed(id, MessageStatus::Cancelled, None), &context, true);
        assert_eq!(
            text_of(&cancelled),
            [r#"{"type":"text-end","id":"0"}"#, r#"{"type":"abort","reason":"cancelled"}"#]
        );
    }

    #[test]
    fn a_tool_input_that_is_not_json_is_a_tool_input_error() {
        let id = Uuid::now_v7();
        let tool = Some(Arc::new(Tool { id: "t".into(), name: "n".into() }));
        let cut =
            Closed { block: BlockRef { index: 0, kind: BlockKind::ToolUse, tool }, input: Some("{\"a\":".into()) };
        let got = pieces(
            &completed(id, MessageStatus::Cancelled, None),
            &Context { closes: Some(Box::new(cut)), ..at(3) },
            false,
        );
        let first: Value = serde_json::from_slice(&got[0].json).unwrap();
        assert_eq!(first["type"], "tool-input-error");
        assert_eq!(first["input"], "{\"a\":");
    }

    #[test]
    fn events_of_no_ui_form_have_none() {
        let presence = Event::Presence { thread_id: Uuid::nil(), cursor: None, subscribers: 2 };
        assert!(sse(&presence, &Context::default()).is_none());
        let orphan = delta_of(Uuid::nil(), 0, 0, "x");
        assert!(pieces(&orphan, &Context::default(), true).is_empty(), "a delta needs its block");
    }

    #[test]
    fn a_chunk_frame_written_in_place_is_the_chunk_in_a_websocket_frame() {
        let request = Request::new("req");
        let long = format!(r#"{{"type":"text-delta","id":"0","delta":"{}"}}"#, "x".repeat(200));
        for (seq, json) in
            [(0, r#"{"type":"start-step"}"#.to_owned()), (9, long.clone()), (10, long), (123_456, "{}".into())]
        {
            let piece = Piece { seq, json: Bytes::from(json) };
            let mut out = BytesMut::from(&b"before"[..]);
            request.put_chunk(&piece, &mut out);
            let mut want = b"before".to_vec();
            want.extend_from_slice(&crate::domain::websocket::ws_frame(
                crate::domain::websocket::WsOp::Text,
                &request.chunk(&piece),
            ));
            assert_eq!(&out[..], &want[..], "seq {seq}");
        }
        assert_eq!((decimal_len(0), decimal_len(9), decimal_len(10), decimal_len(u64::MAX)), (1, 1, 2, 20));
    }

    #[test]
    fn request_frames_carry_the_request_id_encoded_once() {
        let request = Request::new("r\"1");
        let piece = Piece { seq: 7, json: Bytes::from_static(br#"{"type":"start-step"}"#) };
        let chunk: Value = serde_json::from_slice(&request.chunk(&piece)).unwrap();
        assert_eq!(
            chunk,
            serde_json::json!({"type": "chunk", "requestId": "r\"1", "sequence": 7, "chunk": {"type": "start-step"}})
        );
        for (bytes, kind) in [(request.start(), "start"), (request.end(), "end"), (request.no_active(), "no-active")] {
            let v: Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(v, serde_json::json!({"type": kind, "requestId": "r\"1"}));
        }
        let error: Value = serde_json::from_slice(&request.error("busy")).unwrap();
        assert_eq!(error["errorText"], "busy");
    }
}
