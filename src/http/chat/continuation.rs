//! A chat request whose last message is an answer of the chat: the AI
//! SDK's next request once its client has answered the calls a step ended
//! with (`addToolOutput`, `addToolApprovalResponse`, then
//! `sendAutomaticallyWhen` or `sendMessage()`), on `POST …/chat` and on the
//! chat WebSocket alike. What the answer's tool parts hold for the calls it
//! awaits is resolved through the thread actor's `Resolve`, exactly as
//! `POST …/tool-results` and `…/approvals` do (`domain::chat_continue`
//! picks them). Whatever that says (it answered, the same was answered
//! already, another tab's answer won, the answer went on), the request
//! gets the same UI message from where its client was: its subscription
//! starts at the end of that step (`delivery::continuation`), and it
//! writes first what `chat_continue::prefix` says. So a request whose
//! answers come too late gets the running continuation, or the finished
//! message, with the winning decisions, and never a 409.

use uuid::Uuid;

use super::{chat_thread, token_opens};
use crate::{
    actors::{
        registry::ask,
        thread::{LiveMessages, Resolve, ResolveError},
    },
    domain::{
        chat_continue,
        chat_request::{UiMessage, UiRole},
        cursor::Cursor,
        Message, Thread,
    },
    error::ApiError,
    http::AppState,
};

/// What a continuation streams.
pub struct Continued {
    /// The answer it continues.
    pub answer: Uuid,
    /// Where its subscription starts: right after the step its client has.
    pub from: Cursor,
    /// The chunks it writes first (`start` with the answer's id, …).
    pub prefix: Vec<bytes::Bytes>,
}

/// The answer a request continues: its last message, if that is the
/// assistant's. (A request that asks a question ends with the user's.)
pub fn answer_of(messages: &[UiMessage]) -> Option<&UiMessage> {
    messages.last().filter(|m| m.role == UiRole::Assistant)
}

/// The thread of chat `id` a continuation names (it must exist: its
/// answer is there), if the caller may touch it.
pub async fn chat_of(state: &AppState, project_id: Uuid, id: &str, token: Option<Uuid>) -> Result<Thread, ApiError> {
    let thread = chat_thread(state, project_id, id).await?.ok_or_else(|| ApiError::not_found("chat"))?;
    token_opens(token, thread.id)?;
    Ok(thread)
}

/// The answer `id` of `thread` as its actor holds it now.
async fn live(state: &AppState, thread: &Thread, id: Uuid) -> Result<Message, ApiError> {
    let found = ask(&state.registry, thread.id, || LiveMessages { ids: vec![id] }).await?;
    found.into_iter().find(|m| m.id == id).ok_or_else(|| ApiError::not_found("answer"))
}

/// Resolves what `message` answers of the calls its answer awaits, and
/// says how the request streams on.
pub async fn resolve(
    state: &AppState,
    project_id: Uuid,
    thread: &Thread,
    message: &UiMessage,
) -> Result<Continued, ApiError> {
    let id = message.id.as_deref().and_then(|id| Uuid::parse_str(id).ok());
    let id = id.ok_or_else(|| ApiError::not_found("answer"))?;
    let answer = live(state, thread, id).await?;
    let answers = chat_continue::answers(message, &answer.pending());
    chat_continue::check(&answers)?;
    if !answers.is_empty() {
        let make = || Resolve { project_id: Some(project_id), answers: answers.clone() };
        match ask(&state.registry, thread.id, make).await? {
            Ok(resolution) => {
                tracing::info!(thread_id = %thread.id, message_id = %id, resolved = resolution.resolved.len(),
                    unchanged = resolution.unchanged.len(), "a chat request answered calls")
            }
            // Another tab's answer won, or the answer went on meanwhile:
            // the request shows what holds.
            Err(
                e @ (ResolveError::AlreadyResolved(_)
                | ResolveError::NotAwaiting
                | ResolveError::UnknownCall(_)
                | ResolveError::Mismatch(..)),
            ) => {
                tracing::info!(thread_id = %thread.id, message_id = %id, why = %e,
                    "a chat request's answers came too late; it gets the answer as it stands")
            }
            Err(ResolveError::Thread(e)) => return Err(e.into()),
        }
    }
    // As it stands now: its results and decisions, maybe its next step.
    let answer = live(state, thread, id).await?;
    let from = chat_continue::resumes_at(&answer, message)
        .ok_or_else(|| ApiError::bad_request("the last message names no tool call of its answer"))?;
    Ok(Continued { answer: id, from, prefix: chat_continue::prefix(&answer, message) })
}
