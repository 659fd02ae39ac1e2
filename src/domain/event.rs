//! The events of a subscription, as the contract names them. Each carries
//! `type`, `thread_id` and `cursor`; serde writes them flat.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

pub use super::resources::ThreadStatus;
use super::{
    codes::{ErrorCode, EventKind},
    cursor::Cursor,
    BlockKind, Message, MessageError, MessageStatus, Needs, PendingCall, Role, Usage,
};

impl Serialize for Cursor {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cursor {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Serialized once for the wire; read back (`Event::from_json`) only by
/// another node mirroring a thread (`Conversation::mirror`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Event {
    #[serde(rename = "ready")]
    Ready {
        thread_id: Uuid,
        cursor: Option<Cursor>,
        status: ThreadStatus,
        active_message_id: Option<Uuid>,
        subscribers: usize,
    },
    #[serde(rename = "message.created")]
    MessageCreated { thread_id: Uuid, cursor: Option<Cursor>, message: Message },
    #[serde(rename = "message.started")]
    MessageStarted { thread_id: Uuid, cursor: Option<Cursor>, message_id: Uuid, role: Role, model: Option<String> },
    #[serde(rename = "message.block")]
    MessageBlock {
        thread_id: Uuid,
        cursor: Option<Cursor>,
        message_id: Uuid,
        block: usize,
        kind: BlockKind,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// `tool_result` only: the call it answers, and whether it is an
        /// error.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tool_use_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        is_error: Option<bool>,
    },
    #[serde(rename = "message.delta")]
    MessageDelta {
        thread_id: Uuid,
        cursor: Option<Cursor>,
        message_id: Uuid,
        block: usize,
        offset: usize,
        text: String,
    },
    #[serde(rename = "message.completed")]
    MessageCompleted {
        thread_id: Uuid,
        cursor: Option<Cursor>,
        message_id: Uuid,
        status: MessageStatus,
        stop_reason: Option<String>,
        usage: Usage,
        error: Option<MessageError>,
    },
    /// A step ended with calls that wait (its cursor: the message's last
    /// position, which it does not move).
    #[serde(rename = "message.awaiting")]
    MessageAwaiting { thread_id: Uuid, cursor: Option<Cursor>, message_id: Uuid, pending: Vec<PendingCall> },
    /// One waiting call was answered.
    #[serde(rename = "tool.resolved")]
    ToolResolved {
        thread_id: Uuid,
        cursor: Option<Cursor>,
        message_id: Uuid,
        tool_call_id: String,
        needs: Needs,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        approved: Option<bool>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        is_error: Option<bool>,
    },
    /// A new model call began inside the answer (`step` from 2).
    #[serde(rename = "message.step")]
    MessageStep { thread_id: Uuid, cursor: Option<Cursor>, message_id: Uuid, step: usize },
    /// A cut answer is being continued (`attempt` from 1): more deltas
    /// follow at the next offsets. Its cursor is where the answer stood.
    #[serde(rename = "message.continued")]
    MessageContinued { thread_id: Uuid, cursor: Option<Cursor>, message_id: Uuid, attempt: u32, reason: String },
    /// The thread's title, settings or tools changed: the thread now.
    #[serde(rename = "thread.updated")]
    ThreadUpdated { thread_id: Uuid, cursor: Option<Cursor>, thread: Box<crate::domain::ThreadView> },
    /// A `/ws` frame that answered calls was taken (to that socket only):
    /// `for` is the frame's type.
    #[serde(rename = "ack")]
    Ack {
        thread_id: Uuid,
        cursor: Option<Cursor>,
        #[serde(rename = "for")]
        for_frame: String,
        message_id: Uuid,
        resolved: Vec<String>,
        unchanged: Vec<String>,
    },
    #[serde(rename = "thread.presence")]
    Presence { thread_id: Uuid, cursor: Option<Cursor>, subscribers: usize },
    #[serde(rename = "error")]
    Error { thread_id: Uuid, cursor: Option<Cursor>, code: ErrorCode, message: String },
}

impl Event {
    /// The SSE event name, which is also the JSON `type`.
    pub fn kind(&self) -> EventKind {
        match self {
            Event::Ready { .. } => EventKind::Ready,
            Event::MessageCreated { .. } => EventKind::MessageCreated,
            Event::MessageStarted { .. } => EventKind::MessageStarted,
            Event::MessageBlock { .. } => EventKind::MessageBlock,
            Event::MessageDelta { .. } => EventKind::MessageDelta,
            Event::MessageCompleted { .. } => EventKind::MessageCompleted,
            Event::Presence { .. } => EventKind::Presence,
            Event::Error { .. } => EventKind::Error,
            Event::MessageAwaiting { .. } => EventKind::MessageAwaiting,
            Event::ToolResolved { .. } => EventKind::ToolResolved,
            Event::MessageStep { .. } => EventKind::MessageStep,
            Event::MessageContinued { .. } => EventKind::MessageContinued,
            Event::ThreadUpdated { .. } => EventKind::ThreadUpdated,
            Event::Ack { .. } => EventKind::Ack,
        }
    }

    /// An `error` event of `code` (its own sentence for a stream's codes).
    pub fn error(thread_id: Uuid, cursor: Option<Cursor>, code: impl Into<ErrorCode>, message: &str) -> Event {
        Event::Error { thread_id, cursor, code: code.into(), message: message.to_owned() }
    }

    /// The event an encoded frame's JSON holds.
    pub fn from_json(json: &[u8]) -> Option<Event> {
        serde_json::from_slice(json).ok()
    }

    /// The message an event of a message's log is about (`None` for the
    /// thread's own events, and for `tool.resolved`, which answers a call).
    pub fn message_of(&self) -> Option<Uuid> {
        match self {
            Event::MessageStarted { message_id, .. }
            | Event::MessageBlock { message_id, .. }
            | Event::MessageDelta { message_id, .. }
            | Event::MessageCompleted { message_id, .. }
            | Event::MessageAwaiting { message_id, .. }
            | Event::MessageStep { message_id, .. }
            | Event::MessageContinued { message_id, .. } => Some(*message_id),
            _ => None,
        }
    }

    pub fn cursor(&self) -> Option<Cursor> {
        match self {
            Event::Ready { cursor, .. }
            | Event::MessageCreated { cursor, .. }
            | Event::MessageStarted { cursor, .. }
            | Event::MessageBlock { cursor, .. }
            | Event::MessageDelta { cursor, .. }
            | Event::MessageCompleted { cursor, .. }
            | Event::MessageAwaiting { cursor, .. }
            | Event::ToolResolved { cursor, .. }
            | Event::MessageStep { cursor, .. }
            | Event::MessageContinued { cursor, .. }
            | Event::ThreadUpdated { cursor, .. }
            | Event::Ack { cursor, .. }
            | Event::Presence { cursor, .. }
            | Event::Error { cursor, .. } => *cursor,
        }
    }

    /// Builds the events that describe `message` from the position
    /// (`block`, `offset`) on: the rest of that block, the later blocks and
    /// the completion if the message ended. `announce_first` re-sends the
    /// `message.block` of the first block (see `domain::cursor`).
    pub fn describe_message(message: &Message, block: usize, offset: usize, announce_first: bool) -> Vec<Event> {
        let thread_id = message.thread_id;
        let id = message.id;
        let mut out = Vec::new();
        for (b, blk) in message.blocks.iter().enumerate().skip(block) {
            let from = if b == block { offset } else { 0 };
            if b != block || announce_first {
                if b > 0 && message.blocks[b - 1].kind == BlockKind::ToolResult && blk.kind != BlockKind::ToolResult {
                    out.push(Event::step(message, b));
                }
                out.push(Event::MessageBlock {
                    thread_id,
                    cursor: Some(Cursor::new(id, b, 0)),
                    message_id: id,
                    block: b,
                    kind: blk.kind,
                    id: blk.id.clone(),
                    name: blk.name.clone(),
                    tool_use_id: blk.tool_use_id.clone(),
                    is_error: (blk.kind == BlockKind::ToolResult).then_some(blk.is_error),
                });
            }
            if blk.text.len() > from {
                out.push(Event::MessageDelta {
                    thread_id,
                    cursor: Some(Cursor::new(id, b, blk.text.len())),
                    message_id: id,
                    block: b,
                    offset: from,
                    text: blk.text[from..].to_owned(),
                });
            }
        }
        out.extend(Event::ending(message));
        out
    }

    /// A message again from its start for a client that showed more of
    /// it than is stored (`cursor_ahead`): each block announced with one
    /// delta at offset 0 holding its whole text (empty included, so the
    /// client replaces whatever it showed), then the completion if it
    /// ended.
    pub fn rebuild_message(message: &Message) -> Vec<Event> {
        let mut out = Vec::new();
        for (b, blk) in message.blocks.iter().enumerate() {
            out.push(Event::MessageBlock {
                thread_id: message.thread_id,
                cursor: Some(Cursor::new(message.id, b, 0)),
                message_id: message.id,
                block: b,
                kind: blk.kind,
                id: blk.id.clone(),
                name: blk.name.clone(),
                tool_use_id: blk.tool_use_id.clone(),
                is_error: (blk.kind == BlockKind::ToolResult).then_some(blk.is_error),
            });
            out.push(Event::MessageDelta {
                thread_id: message.thread_id,
                cursor: Some(Cursor::new(message.id, b, blk.text.len())),
                message_id: message.id,
                block: b,
                offset: 0,
                text: blk.text.clone(),
            });
        }
        out.extend(Event::ending(message));
        out
    }

    /// What a description of `message` ends with: where it awaits input
    /// (what waits for a person or the client),
    /// its completion, or, while the step after its results has begun but
    /// holds no block yet, that step's `message.step` (published right
    /// after the results).
    fn ending(message: &Message) -> Option<Event> {
        if message.is_awaiting() {
            Event::awaiting_someone(message)
        } else if message.is_finished() {
            Some(Event::completed(message))
        } else if message.blocks.last().is_some_and(|b| b.kind == BlockKind::ToolResult) {
            Some(Event::step(message, message.blocks.len()))
        } else {
            None
        }
    }

    /// `message.completed` for a finished message.
    /// `message.step` of the step whose first block is `block`; its
    /// cursor is the position before it (the end of the last result), so
    /// that it never stands for the block's own announcement.
    pub fn step(message: &Message, block: usize) -> Event {
        Event::MessageStep {
            thread_id: message.thread_id,
            cursor: Some(position_before(message, block)),
            message_id: message.id,
            step: crate::domain::turn::step_of(&message.blocks, block).max(1),
        }
    }

    /// `message.awaiting` of a message that waits for input, if something
    /// of it waits for a person or the client: an answer that waits only
    /// for calls the service runs announces nothing (its tabs, and an AI
    /// SDK stream, stay with the answer until `tool.resolved`).
    pub fn awaiting_someone(message: &Message) -> Option<Event> {
        (!message.pending().is_empty()).then(|| Event::awaiting(message))
    }

    /// `message.awaiting` of a message that waits for input.
    pub fn awaiting(message: &Message) -> Event {
        Event::MessageAwaiting {
            thread_id: message.thread_id,
            cursor: Some(position_before(message, message.blocks.len())),
            message_id: message.id,
            pending: message.pending(),
        }
    }

    pub fn completed(message: &Message) -> Event {
        Event::MessageCompleted {
            thread_id: message.thread_id,
            cursor: Some(end_cursor(message)),
            message_id: message.id,
            status: message.status,
            stop_reason: message.stop_reason.clone(),
            usage: message.usage,
            error: message.error.clone(),
        }
    }

    /// Everything a subscriber needs to see a whole message from scratch.
    pub fn whole_message(message: &Message) -> Vec<Event> {
        match message.role {
            Role::User => vec![Event::MessageCreated {
                thread_id: message.thread_id,
                cursor: Some(end_cursor(message)),
                message: message.clone(),
            }],
            Role::Assistant => {
                let mut out = vec![Event::started(message)];
                out.extend(Event::describe_message(message, 0, 0, true));
                out
            }
        }
    }

    pub fn started(message: &Message) -> Event {
        Event::MessageStarted {
            thread_id: message.thread_id,
            cursor: Some(Cursor::new(message.id, 0, 0)),
            message_id: message.id,
            role: message.role,
            model: message.model.clone(),
        }
    }
}

/// The position right before block `block` of `message`: the end of the
/// block before it (`M:0:0` before the first).
pub fn position_before(message: &Message, block: usize) -> Cursor {
    match block.checked_sub(1).and_then(|b| message.blocks.get(b).map(|blk| (b, blk))) {
        Some((b, blk)) => Cursor::new(message.id, b, blk.text.len()),
        None => Cursor::new(message.id, 0, 0),
    }
}

/// The cursor right after a finished message (or a user message).
pub fn end_cursor(message: &Message) -> Cursor {
    match message.role {
        Role::User => Cursor::new(message.id, 1, 0),
        Role::Assistant => Cursor::new(message.id, message.blocks.len(), 0),
    }
}
