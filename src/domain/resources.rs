//! The resources of the HTTP contract: projects, threads and messages made
//! of content blocks. A message's text is append-only per block, which is
//! what makes byte-offset cursors exact.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize, Serializer};
use utoipa::ToSchema;
use uuid::Uuid;

pub use super::{
    block::{Block, BlockKind},
    turn::{Needs, PendingCall},
};

#[derive(Debug, Clone, Serialize, PartialEq, ToSchema)]
pub struct Project {
    pub id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

/// A thread as stored; its `status` is not stored but derived from its live
/// actor (see `http::threads`).
#[derive(Debug, Clone, PartialEq)]
pub struct Thread {
    pub id: Uuid,
    pub project_id: Uuid,
    pub title: Option<String>,
    pub system: Option<String>,
    pub model: Option<String>,
    /// The tools every answer of the thread may call.
    pub tools: Vec<super::tools::ToolDef>,
    pub tool_choice: Option<super::tools::ToolChoice>,
    /// MCP servers whose tools the thread's answers may call.
    pub mcp_servers: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A thread as the contract shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = Thread)]
pub struct ThreadView {
    pub id: Uuid,
    pub project_id: Uuid,
    pub title: Option<String>,
    pub system: Option<String>,
    pub model: Option<String>,
    pub tools: Vec<super::tools::ToolDef>,
    pub tool_choice: Option<super::tools::ToolChoice>,
    pub mcp_servers: Vec<String>,
    pub status: ThreadStatus,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

impl ThreadView {
    pub fn new(t: Thread, status: ThreadStatus) -> Self {
        ThreadView {
            id: t.id,
            project_id: t.project_id,
            title: t.title,
            system: t.system,
            model: t.model,
            tools: t.tools,
            tool_choice: t.tool_choice,
            mcp_servers: t.mcp_servers,
            status,
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }
}

/// A change of a thread's settings (PATCH): each field given replaces the
/// thread's; `Some(None)` clears one that may be absent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ThreadPatch {
    pub title: Option<Option<String>>,
    pub system: Option<Option<String>>,
    pub model: Option<Option<String>>,
    pub tools: Option<Vec<super::tools::ToolDef>>,
    pub tool_choice: Option<Option<super::tools::ToolChoice>>,
    pub mcp_servers: Option<Vec<String>>,
}

impl ThreadPatch {
    /// `thread` with the patch applied, updated at `now`.
    pub fn apply(&self, thread: &Thread, now: DateTime<Utc>) -> Thread {
        let mut t = thread.clone();
        let set = |field: &mut Option<String>, given: &Option<Option<String>>| {
            if let Some(value) = given {
                field.clone_from(value);
            }
        };
        set(&mut t.title, &self.title);
        set(&mut t.system, &self.system);
        set(&mut t.model, &self.model);
        if let Some(tools) = &self.tools {
            t.tools.clone_from(tools);
        }
        if let Some(choice) = &self.tool_choice {
            t.tool_choice.clone_from(choice);
        }
        if let Some(servers) = &self.mcp_servers {
            t.mcp_servers.clone_from(servers);
        }
        t.updated_at = now;
        t
    }

    /// Whether the patch changes what `thread`'s answers may call (which
    /// cannot change while an answer runs or awaits input).
    pub fn changes_tools(&self, thread: &Thread) -> bool {
        self.tools.as_ref().is_some_and(|t| *t != thread.tools)
            || self.tool_choice.as_ref().is_some_and(|c| *c != thread.tool_choice)
            || self.mcp_servers.as_ref().is_some_and(|m| *m != thread.mcp_servers)
    }
}

/// What a thread is made with (its settings, none required).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ThreadSettings {
    pub title: Option<String>,
    pub system: Option<String>,
    pub model: Option<String>,
    pub tools: Vec<super::tools::ToolDef>,
    pub tool_choice: Option<super::tools::ToolChoice>,
    pub mcp_servers: Vec<String>,
}

impl ThreadSettings {
    /// The thread `id` of `project_id` with these settings, made `now`.
    pub fn into_thread(self, id: Uuid, project_id: Uuid, now: DateTime<Utc>) -> Thread {
        Thread {
            id,
            project_id,
            title: self.title,
            system: self.system,
            model: self.model,
            tools: self.tools,
            tool_choice: self.tool_choice,
            mcp_servers: self.mcp_servers,
            created_at: now,
            updated_at: now,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    User,
    Assistant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    Complete,
    Streaming,
    /// A step ended with calls that wait for results or approvals.
    AwaitingInput,
    Cancelled,
    Failed,
    Interrupted,
}

/// The thread's state as a new subscriber sees it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ThreadStatus {
    Idle,
    Generating,
    /// Its answer waits for results or approvals.
    AwaitingInput,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// Why a message ended `failed` (or any other non-complete status).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MessageError {
    pub code: super::codes::MessageErrorCode,
    pub message: String,
}

impl MessageError {
    /// Why a message is `interrupted`: the same whether the service was
    /// stopped gracefully mid-answer or found the message streaming when
    /// it started again after a crash.
    pub fn interrupted() -> MessageError {
        MessageError {
            code: super::codes::MessageErrorCode::Interrupted,
            message: "the service stopped while this message streamed".to_owned(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub id: Uuid,
    pub thread_id: Uuid,
    pub position: i64,
    pub role: Role,
    pub blocks: Vec<Block>,
    pub status: MessageStatus,
    pub model: Option<String>,
    pub stop_reason: Option<String>,
    pub usage: Usage,
    pub error: Option<MessageError>,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    /// The calls of its last step while it awaits input (those answered
    /// and those that wait); empty otherwise.
    pub calls: Vec<super::turn::Call>,
    /// An answer's own tools, offered with the thread's for that turn
    /// alone, through every step: its question's, and the tools its
    /// thread's MCP servers listed when the turn began. Not part of the
    /// contract's Message.
    pub tools: Vec<super::tools::ToolDef>,
    /// An `interrupted` message whose text is exactly what its readers
    /// were sent (stopped gracefully, or taken over with its owner's whole
    /// log), so a cursor at its end has seen it all. Not part of the
    /// contract's Message: it decides how such a cursor resumes.
    pub exact_end: bool,
    /// How many times the answer was continued after a cut.
    pub continuations: u32,
    /// When its row was last written (as loaded; `None` for a message not
    /// yet stored): how long ago a streaming answer found after a crash
    /// was cut. Not part of the contract's Message.
    pub touched_at: Option<DateTime<Utc>>,
    /// Cluster mode: left streaming by a node that stopped for a deploy,
    /// for another to continue. Not part of the contract's Message.
    pub handed_over: bool,
    /// Continued after a crash (or a take-over without its owner's log):
    /// how many blocks it had as stored then. Readers may have seen more
    /// than was stored, and other text now stands at those positions: a
    /// cursor at or past that block gets `cursor_ahead`. Not part of the
    /// contract's Message.
    pub restart_seam: Option<usize>,
}

impl Message {
    /// The text blocks joined: what a text-only client shows.
    pub fn content(&self) -> String {
        self.blocks.iter().filter(|b| b.kind == BlockKind::Text).map(|b| b.text.as_str()).collect()
    }

    /// Not streaming now (ended, or awaiting input between steps).
    pub fn is_finished(&self) -> bool {
        self.status != MessageStatus::Streaming
    }

    /// An answer waiting for results or approvals: the thread is busy.
    pub fn is_awaiting(&self) -> bool {
        self.status == MessageStatus::AwaitingInput
    }

    /// The calls that wait, as the contract shows them.
    pub fn pending(&self) -> Vec<PendingCall> {
        self.calls.iter().filter_map(super::turn::Call::pending).collect()
    }
}

/// The public shape of a block: the stored one less its signature.
/// A block as the contract shows it (`signature` stays inside).
#[derive(Serialize, ToSchema)]
#[schema(as = Block)]
struct BlockView<'a> {
    kind: BlockKind,
    text: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    /// `tool_result` only: the call it answers, and whether it is an error.
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_use_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    is_error: Option<bool>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = Message)]
struct MessageView<'a> {
    id: Uuid,
    thread_id: Uuid,
    position: i64,
    role: Role,
    content: String,
    blocks: Vec<BlockView<'a>>,
    status: MessageStatus,
    model: Option<&'a str>,
    stop_reason: Option<&'a str>,
    usage: Usage,
    error: Option<&'a MessageError>,
    created_at: DateTime<Utc>,
    completed_at: Option<DateTime<Utc>>,
    continuations: u32,
    /// While `awaiting_input`: the calls that wait.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pending: Vec<PendingCall>,
}

impl Serialize for Message {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        MessageView {
            id: self.id,
            thread_id: self.thread_id,
            position: self.position,
            role: self.role,
            content: self.content(),
            blocks: self
                .blocks
                .iter()
                .map(|b| BlockView {
                    kind: b.kind,
                    text: &b.text,
                    id: b.id.as_deref(),
                    name: b.name.as_deref(),
                    tool_use_id: b.tool_use_id.as_deref(),
                    is_error: (b.kind == BlockKind::ToolResult).then_some(b.is_error),
                })
                .collect(),
            status: self.status,
            model: self.model.as_deref(),
            stop_reason: self.stop_reason.as_deref(),
            usage: self.usage,
            error: self.error.as_ref(),
            created_at: self.created_at,
            completed_at: self.completed_at,
            continuations: self.continuations,
            pending: self.pending(),
        }
        .serialize(serializer)
    }
}

/// A message read back from its contract shape (another node's
/// `message.created`); `content` is derived, so it is not read.
#[derive(Deserialize)]
struct MessageWire {
    id: Uuid,
    thread_id: Uuid,
    position: i64,
    role: Role,
    blocks: Vec<Block>,
    status: MessageStatus,
    model: Option<String>,
    stop_reason: Option<String>,
    usage: Usage,
    error: Option<MessageError>,
    created_at: DateTime<Utc>,
    completed_at: Option<DateTime<Utc>>,
    #[serde(default)]
    continuations: u32,
}

impl<'de> Deserialize<'de> for Message {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let m = MessageWire::deserialize(d)?;
        Ok(Message {
            id: m.id,
            thread_id: m.thread_id,
            position: m.position,
            role: m.role,
            blocks: m.blocks,
            status: m.status,
            model: m.model,
            stop_reason: m.stop_reason,
            usage: m.usage,
            error: m.error,
            created_at: m.created_at,
            completed_at: m.completed_at,
            calls: Vec::new(),
            tools: Vec::new(),
            exact_end: false,
            continuations: m.continuations,
            touched_at: None,
            handed_over: false,
            restart_seam: None,
        })
    }
}

/// A message is described by the view it serializes as.
impl utoipa::PartialSchema for Message {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        <MessageView<'static> as utoipa::PartialSchema>::schema()
    }
}

impl ToSchema for Message {
    fn name() -> std::borrow::Cow<'static, str> {
        "Message".into()
    }

    fn schemas(schemas: &mut Vec<(String, utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>)>) {
        <MessageView<'static> as ToSchema>::schemas(schemas);
    }
}
