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
//! An answer in several steps is still one UI message (see `pieces`): a
//! step's end is `finish-step`, each call's result one `tool-output-…`
//! chunk, the next step's start `start-step`. Where the answer awaits
//! input its stream ends (approvals asked as `tool-approval-request`,
//! `finish` with `tool-calls`); the request that answers continues the
//! same message after that step's end (`delivery::continuation`).
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

use super::{event::Event, BlockKind, MessageError, MessageStatus, Needs, Role};

/// The response header of the UI message stream protocol, and its value.
pub const HEADER: (&str, &str) = ("x-vercel-ai-ui-message-stream", "v1");

/// The line that ends a UI message stream over SSE.
pub const DONE: &[u8] = b"data: [DONE]\n\n";

/// A tool call, as its block names it: a `tool_use` block's call, or the
/// call a `tool_result` block answers, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tool {
    pub id: String,
    pub name: String,
    /// A `tool_result` block's: how the call was answered.
    pub answered: Option<Answered>,
}

/// How a call was answered, as the UI stream tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answered {
    /// Its output (the block's text is its JSON).
    Output,
    /// An error (the block's text is its message as a JSON string).
    Error,
    /// A person denied it.
    Denied,
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
    /// The event ends a step (the first result after its calls, or the
    /// answer awaiting input): `finish-step` follows what `closes` ends.
    pub step_end: bool,
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
    /// It is a `finish-step`: a client that has a step's chunks up to its
    /// end continues after this one (see `delivery::continuation`).
    pub ends_step: bool,
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
    ToolApprovalRequest {
        #[serde(rename = "approvalId")]
        approval_id: &'a str,
        #[serde(rename = "toolCallId")]
        tool_call_id: &'a str,
    },
    ToolApprovalResponse {
        #[serde(rename = "approvalId")]
        approval_id: &'a str,
        approved: bool,
    },
    ToolOutputAvailable {
        #[serde(rename = "toolCallId")]
        tool_call_id: &'a str,
        output: Value,
    },
    ToolOutputError {
        #[serde(rename = "toolCallId")]
        tool_call_id: &'a str,
        #[serde(rename = "errorText")]
        error_text: &'a str,
    },
    ToolOutputDenied {
        #[serde(rename = "toolCallId")]
        tool_call_id: &'a str,
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
static UNNAMED: Tool = Tool { id: String::new(), name: String::new(), answered: None };

fn tool_of(block: &BlockRef) -> (&str, &str) {
    let tool = block.tool.as_deref().unwrap_or(&UNNAMED);
    let name = if tool.name.is_empty() { "tool" } else { &tool.name };
    (&tool.id, name)
}

/// The chunk that opens `block` (a result has none: its answer is one
/// chunk, at its text).
fn opening(block: &BlockRef) -> Option<Bytes> {
    Some(match block.kind {
        BlockKind::Text => json(&Chunk::TextStart { id: part_id(block.index) }),
        BlockKind::Thinking => json(&Chunk::ReasoningStart { id: part_id(block.index) }),
        BlockKind::ToolResult => return None,
        BlockKind::ToolUse => {
            let (tool_call_id, tool_name) = tool_of(block);
            json(&Chunk::ToolInputStart { tool_call_id, tool_name })
        }
    })
}

/// The chunk of `text` appended to `block` (not a result: see `answer`).
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

/// A result block's answer, from its whole text: the output parsed, the
/// error's message, or the denial.
fn answer(block: &BlockRef, text: &str) -> Bytes {
    let (tool_call_id, _) = tool_of(block);
    match block.tool.as_deref().and_then(|t| t.answered).unwrap_or(Answered::Output) {
        Answered::Denied => json(&Chunk::ToolOutputDenied { tool_call_id }),
        Answered::Error => {
            let message = serde_json::from_str::<String>(text).unwrap_or_else(|_| text.to_owned());
            json(&Chunk::ToolOutputError { tool_call_id, error_text: &message })
        }
        Answered::Output => {
            let output = serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()));
            json(&Chunk::ToolOutputAvailable { tool_call_id, output })
        }
    }
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
        // (An answer that awaits input is not ended: `message.awaiting`
        // ends its stream.)
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
/// form (a user message, presence, `ready`, a stream error, a call
/// resolved: what it did shows in its result). `split`: a delta that
/// covers several published deltas becomes one chunk each.
///
/// An answer in several steps stays one UI message: a step ends with
/// `finish-step` after its last block (at its first result, or where the
/// answer awaits input), each result is one chunk (`tool-output-…`), and
/// `message.step` is the next step's `start-step`. An answer awaiting
/// input ends the stream: its calls that wait for a person are
/// `tool-approval-request`s (the approval's id is the call's), and
/// `finish` says `tool-calls`.
pub fn pieces(event: &Event, context: &Context, split: bool) -> Vec<Piece> {
    let closes = || context.closes.iter().filter_map(|c| closing(c));
    let chunks: Vec<Bytes> = match event {
        Event::MessageStarted { message_id, role: Role::Assistant, .. } => {
            vec![json(&Chunk::Start { message_id: message_id.to_string() }), json(&Chunk::StartStep)]
        }
        Event::MessageStep { .. } => vec![json(&Chunk::StartStep)],
        Event::MessageBlock { block, kind, id, name, .. } => {
            let tool = (*kind == BlockKind::ToolUse).then(|| {
                Arc::new(Tool {
                    id: id.clone().unwrap_or_default(),
                    name: name.clone().unwrap_or_default(),
                    answered: None,
                })
            });
            let opened = BlockRef { index: *block, kind: *kind, tool };
            let step_end = context.step_end.then(|| json(&Chunk::FinishStep));
            closes().chain(step_end).chain(opening(&opened)).collect()
        }
        Event::MessageDelta { offset, text, .. } => {
            let Some(block) = &context.block else { return Vec::new() };
            if block.kind == BlockKind::ToolResult {
                // A result's text is published whole, in one delta.
                (*offset == 0).then(|| answer(block, text)).into_iter().collect()
            } else if !split || context.splits.is_empty() {
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
        Event::MessageCompleted { status, stop_reason, error, .. } => {
            closes().chain(ending(*status, stop_reason.as_deref(), error.as_ref())).collect()
        }
        Event::MessageAwaiting { pending, .. } => {
            let approvals = pending.iter().filter(|p| p.needs == Needs::Approval).map(|p| {
                json(&Chunk::ToolApprovalRequest { approval_id: &p.tool_call_id, tool_call_id: &p.tool_call_id })
            });
            closes()
                .chain([json(&Chunk::FinishStep)])
                .chain(approvals)
                .chain([json(&Chunk::Finish { finish_reason: "tool-calls" })])
                .collect()
        }
        _ => Vec::new(),
    };
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, json)| Piece { seq: context.seq + i as u64, ends_step: json == FINISH_STEP, json })
        .collect()
}

/// `finish-step` as it is encoded.
const FINISH_STEP: &[u8] = br#"{"type":"finish-step"}"#;

/// Whether `event` ends the UI message stream of its message: the
/// message ended, or it awaits input (the client answers, then asks for
/// the rest).
pub fn ends_stream(event: &Event) -> bool {
    matches!(event, Event::MessageCompleted { .. } | Event::MessageAwaiting { .. })
}

/// `event` as SSE `data:` lines of the UI message stream (a replay's delta
/// stays one chunk), `data: [DONE]` after the stream's end; `None` when
/// it has no UI form.
pub fn sse(event: &Event, context: &Context) -> Option<Bytes> {
    let pieces = pieces(event, context, false);
    if pieces.is_empty() {
        return None;
    }
    Some(sse_lines(pieces.iter().map(|p| &p.json), ends_stream(event)))
}

/// Chunks as SSE `data:` lines, then `data: [DONE]` if `done`.
pub fn sse_lines<'a>(chunks: impl Iterator<Item = &'a Bytes> + Clone, done: bool) -> Bytes {
    let size = chunks.clone().map(|c| c.len() + 8).sum::<usize>() + DONE.len();
    let mut out = BytesMut::with_capacity(size);
    for chunk in chunks {
        out.put_slice(b"data: ");
        out.put_slice(chunk);
        out.put_slice(b"\n\n");
    }
    if done {
        out.put_slice(DONE);
    }
    out.freeze()
}

/// `start` for message `message_id`: the first chunk of a stream that
/// continues it.
pub fn start(message_id: &str) -> Bytes {
    json(&Chunk::Start { message_id: message_id.to_owned() })
}

/// A person's decision on call `call` (its approval's id).
pub fn approval_response(call: &str, approved: bool) -> Bytes {
    json(&Chunk::ToolApprovalResponse { approval_id: call, approved })
}

/// Call `call` of tool `name` with `input`, whole: a client that runs the
/// call's tool does so now (the SDK's `onToolCall`).
pub fn input_available(call: &str, name: &str, input: Value) -> Bytes {
    json(&Chunk::ToolInputAvailable { tool_call_id: call, tool_name: name, input })
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

mod request;
pub use request::Request;

#[cfg(test)]
mod tests;
