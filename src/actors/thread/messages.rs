//! The thread actor's messages: what HTTP handlers, sessions, the
//! registry and the sweeper send it, and the notices it sends the
//! registry (`GenerationChanged`, `ThreadStopped`, through `Notices`).

use super::*;

/// Sent by a thread actor when its generation starts or ends (to whoever
/// keeps the thread's status: the registry).
#[derive(Message)]
#[rtype(result = "()")]
pub struct GenerationChanged {
    pub thread_id: Uuid,
    pub incarnation: u64,
    pub generating: bool,
}

/// Sent by a thread actor from `stopping`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ThreadStopped {
    pub thread_id: Uuid,
    pub incarnation: u64,
}

/// Where a thread actor sends its two notices (the registry, which knows
/// the thread actor; the thread actor knows only these).
pub struct Notices {
    pub generation: Recipient<GenerationChanged>,
    pub stopped: Recipient<ThreadStopped>,
}

/// Starts a generation answering `content`.
#[derive(Message)]
#[rtype(result = "Result<Started, ThreadError>")]
pub struct StartGeneration {
    /// The project the caller named: the thread must be of it (else
    /// `NotFound`), so a live actor answers without a database read.
    pub project_id: Option<Uuid>,
    pub content: String,
    pub model: Option<String>,
    pub max_tokens: Option<u32>,
    /// The question's own tools, for this turn alone (with the thread's).
    pub tools: Vec<crate::domain::tools::ToolDef>,
    /// The tools of the thread's MCP servers, once listed for this turn
    /// (the actor lists them first when the thread has servers).
    pub mcp_tools: Option<Vec<crate::domain::tools::ToolDef>>,
    /// A regenerate that names its question (the AI SDK's
    /// `regenerate-message`): when `content` is the thread's newest
    /// question, that question is asked again (as `AskAgain`), not stored
    /// a second time; otherwise `content` is a new question.
    pub again_if_newest: bool,
}

/// Asks the thread's newest user message again (a regenerate): a new
/// answer after the earlier ones, which the thread keeps; the model is
/// shown the thread up to that question, not its earlier answers. Also
/// how a `failed`, `interrupted` or `cancelled` answer is tried again.
/// Admitted as a question is (busy while an answer runs or awaits);
/// `NothingToAsk` when the thread has no question. `Started` names that
/// question as its `user_message`.
#[derive(Message)]
#[rtype(result = "Result<Started, ThreadError>")]
pub struct AskAgain {
    pub project_id: Option<Uuid>,
    pub model: Option<String>,
    pub max_tokens: Option<u32>,
    /// Tools for this answer alone (with the thread's).
    pub tools: Vec<crate::domain::tools::ToolDef>,
}

/// A turn as the actor starts it, either way it was asked.
pub(super) struct Turn {
    pub project_id: Option<Uuid>,
    /// The new question; `None`: the newest one again.
    pub question: Option<String>,
    pub model: Option<String>,
    pub max_tokens: Option<u32>,
    pub tools: Vec<crate::domain::tools::ToolDef>,
    pub mcp_tools: Option<Vec<crate::domain::tools::ToolDef>>,
    /// See `StartGeneration::again_if_newest`.
    pub again_if_newest: bool,
}

impl From<StartGeneration> for Turn {
    fn from(m: StartGeneration) -> Turn {
        let StartGeneration { project_id, content, model, max_tokens, tools, mcp_tools, again_if_newest } = m;
        Turn { project_id, question: Some(content), model, max_tokens, tools, mcp_tools, again_if_newest }
    }
}

impl From<AskAgain> for Turn {
    fn from(m: AskAgain) -> Turn {
        let AskAgain { project_id, model, max_tokens, tools } = m;
        Turn { project_id, question: None, model, max_tokens, tools, mcp_tools: None, again_if_newest: false }
    }
}

pub struct Started {
    /// The question: new, or the one asked again.
    pub user_message: Message,
    pub assistant_message: Message,
    /// Answered once the user message (a regenerate: the answer) is
    /// committed.
    pub committed: oneshot::Receiver<Result<(), WriteError>>,
}

/// Ends a generation whose user message could not be stored.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AbortGeneration {
    pub assistant_message_id: Uuid,
}

/// Cancels the running generation; answers its message id.
#[derive(Message)]
#[rtype(result = "Result<Uuid, ThreadError>")]
pub struct Cancel;

/// Cancels answer `message_id` if it is the one running (a chat request's
/// abort, which must not stop a later answer another client asked for).
#[derive(Message)]
#[rtype(result = "Result<Uuid, ThreadError>")]
pub struct CancelAnswer {
    pub message_id: Uuid,
}

/// The answer running now, if any, for a client that resumes it.
#[derive(Message)]
#[rtype(result = "Result<Option<RunningAnswer>, ThreadError>")]
pub struct FindRunning;

pub struct RunningAnswer {
    /// The answer's id.
    pub answer: Uuid,
    /// Where the message before it ends (its question, or a regenerate's
    /// earlier answer): a subscription from there replays the answer from
    /// its start, then follows it.
    pub question: Cursor,
}

/// A new subscriber, fresh or resuming.
#[derive(Message)]
#[rtype(result = "Result<Subscription, ThreadError>")]
pub struct Subscribe {
    pub session_id: u64,
    pub from: Resume,
}

pub struct Subscription {
    /// Frames for this subscriber alone: `ready`, maybe an `error`
    /// (`cursor_invalid`, `cursor_ahead`), then what it has not seen, up to
    /// the broadcast position `head`.
    pub replay: Missed,
    /// Everything published from now on.
    pub signals: SignalStream,
    /// Which ring `signals` reads (`Fanout::id`).
    pub fanout_id: u64,
    /// The actor to send `CatchUp`, `Unsubscribe` and commands to.
    pub thread: Addr<ThreadActor>,
}

/// A subscriber fell behind its stream: what it missed after `from`.
#[derive(Message)]
#[rtype(result = "Result<Missed, ThreadError>")]
pub struct CatchUp {
    pub from: Option<Cursor>,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Unsubscribe {
    pub session_id: u64,
}

/// Why a thread actor is told to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The thread was deleted.
    Deleted,
    /// An operator stopped the actor.
    Stopped,
    /// The process is shutting down.
    ShuttingDown,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Stop {
    pub reason: StopReason,
}

/// These messages as the actor holds them now: their live text, or their
/// final state before its write is committed.
#[derive(Message)]
#[rtype(result = "Vec<Message>")]
pub struct LiveMessages {
    pub ids: Vec<Uuid>,
}

#[derive(Message)]
#[rtype(result = "StatusReport")]
pub struct ThreadStatusQuery;

/// Cluster mode: read the other nodes' subscriber counts again (a node
/// came back to life).
#[derive(Message)]
#[rtype(result = "()")]
pub struct RefreshPresence;

/// Cluster mode: the thread's owner is gone (its lease expired with an
/// answer streaming, or it handed the answer over in a deploy); take the
/// lease with every byte the owner logged and continue that answer (or,
/// past its budget, end it `interrupted`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct TakeOver;

/// What operators see of a live thread actor.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct StatusReport {
    pub thread_id: Uuid,
    pub subscribers: usize,
    pub generating: bool,
    pub active_message_id: Option<Uuid>,
    /// Frames in the fan-out ring not yet read by the slowest relay.
    pub mailbox_depth: usize,
    pub last_activity: chrono::DateTime<Utc>,
    pub messages_in_memory: usize,
    /// Cluster mode: this node holds the thread's lease, with this epoch.
    pub owned_epoch: Option<u64>,
    /// Tool calls the service runs here now for the awaiting answer.
    pub running_calls: Vec<super::RunningCall>,
}

/// One event of generation `gen`; `None` when the provider's stream ended.
pub struct GenEvent {
    pub(super) gen: u64,
    pub(super) event: Option<ProviderEvent>,
}
