//! The events of a subscription, as the contract names them. Each carries
//! `type`, `thread_id` and `cursor`; serde writes them flat.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

use super::{
    codes::{ErrorCode, EventKind},
    cursor::Cursor,
    BlockKind, Message, MessageError, MessageStatus, Role, Usage,
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

/// The thread's state as a new subscriber sees it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ThreadStatus {
    Idle,
    Generating,
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

    pub fn cursor(&self) -> Option<Cursor> {
        match self {
            Event::Ready { cursor, .. }
            | Event::MessageCreated { cursor, .. }
            | Event::MessageStarted { cursor, .. }
            | Event::MessageBlock { cursor, .. }
            | Event::MessageDelta { cursor, .. }
            | Event::MessageCompleted { cursor, .. }
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
                out.push(Event::MessageBlock {
                    thread_id,
                    cursor: Some(Cursor::new(id, b, 0)),
                    message_id: id,
                    block: b,
                    kind: blk.kind,
                    id: blk.id.clone(),
                    name: blk.name.clone(),
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
        if message.is_finished() {
            out.push(Event::completed(message));
        }
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
        if message.is_finished() {
            out.push(Event::completed(message));
        }
        out
    }

    /// `message.completed` for a finished message.
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

/// The cursor right after a finished message (or a user message).
pub fn end_cursor(message: &Message) -> Cursor {
    match message.role {
        Role::User => Cursor::new(message.id, 1, 0),
        Role::Assistant => Cursor::new(message.id, message.blocks.len(), 0),
    }
}
