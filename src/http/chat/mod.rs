//! The AI SDK's chat protocol (npm `ai` 7.0), so that a `useChat` app can
//! point its transport at a project and get this service's streams:
//!
//! - `POST …/chat` (`post.rs`): a turn of `DefaultChatTransport`; answers
//!   the UI message stream of the answer over SSE.
//! - `GET …/chat/{id}/stream` (`resume.rs`): the transport's resume; 204
//!   when nothing runs, else the running answer from its start (the SDK
//!   rebuilds the message from a replay), then live; an answer awaiting
//!   input likewise, up to where it waits (a reloaded tab sees the calls
//!   that wait, and what for). `POST
//!   …/chat/{id}/cancel` stops the answer: the SDK's `stop()` only aborts
//!   its fetch, and closing a connection never cancels (see README).
//! - `GET …/chat/ws` (`ws.rs`): `WebSocketChatTransport`, several chats on
//!   one socket, served by a `ChatSocket` actor.
//!
//! A turn (either transport) whose last message is an answer of the chat
//! continues it with the results and decisions its tool parts hold
//! (`continuation.rs`): the same UI message streams on.
//!
//! A chat is a thread. Its id is the thread's id, or the client's own id,
//! which the chat's first turn records (`store::chats`) for a new thread of
//! the caller's project. Every answer is the thread's, so `/events`, `/ws`
//! and the page show it at once; the UI chunks are encoded once per frame
//! (`domain::frame`).

pub mod continuation;
pub mod post;
pub mod resume;
pub mod socket;
pub mod ws;

use std::convert::Infallible;

use actix_web::{
    http::header::{HeaderName, HeaderValue},
    HttpRequest, HttpResponse,
};
use bytes::Bytes;
use futures_util::Stream;
use uuid::Uuid;

use super::{
    auth::{caller_of, Caller},
    messages::{start_turn, Turn},
    AppState,
};
use crate::{
    actors::{
        registry::ask,
        thread::{FindRunning, LiveMessages, RunningAnswer},
    },
    // (`title_of`: a chat's new thread is titled by its first question.)
    domain::{chat_request, event::end_cursor, title::title_of, ui_stream, MessageStatus, Role, Thread},
    error::{ApiError, Code},
};

/// The thread chat `id` names in project `project_id`, if any (an id that
/// could name no chat names none).
pub async fn chat_thread(state: &AppState, project_id: Uuid, id: &str) -> Result<Option<Thread>, ApiError> {
    if chat_request::chat_id(id).is_err() {
        return Ok(None);
    }
    Ok(state.store.chat_thread(project_id, id).await?)
}

/// The answer running on chat `id`, or awaiting input there, and the
/// chat's thread, for a client that resumes it (`None`: no such chat, or
/// nothing runs or waits). A stream token finds only its own thread's.
pub async fn running_answer(
    state: &AppState,
    project_id: Uuid,
    id: &str,
    token: Option<Uuid>,
) -> Result<Option<(Uuid, RunningAnswer)>, ApiError> {
    let Some(thread) = chat_thread(state, project_id, id).await? else { return Ok(None) };
    token_opens(token, thread.id)?;
    let running = ask(&state.registry, thread.id, || FindRunning).await??;
    let found = match running {
        Some(answer) => Some(answer),
        None => awaiting_answer(state, thread.id).await?,
    };
    Ok(found.map(|answer| (thread.id, answer)))
}

/// The thread's last answer if it awaits input (as its actor holds it:
/// stored so, it may have gone on since), after its question.
async fn awaiting_answer(state: &AppState, thread_id: Uuid) -> Result<Option<RunningAnswer>, ApiError> {
    let (last, _) = state.store.list_messages(thread_id, 2, Some(i64::MAX), None).await?;
    let [question, answer] = last.as_slice() else { return Ok(None) };
    if answer.role != Role::Assistant || !answer.is_awaiting() {
        return Ok(None);
    }
    let live = ask(&state.registry, thread_id, || LiveMessages { ids: vec![answer.id] }).await?;
    let waits = live
        .iter()
        .any(|m| m.id == answer.id && matches!(m.status, MessageStatus::AwaitingInput | MessageStatus::Streaming));
    Ok(waits.then(|| RunningAnswer { answer: answer.id, question: end_cursor(question) }))
}

/// A turn's question as a message to ask: the chat id must be one, the
/// newest user message must have text, and the message must pass the
/// limits of the messages route.
pub fn checked_turn(
    limits: &crate::config::LimitSettings,
    id: &str,
    messages: &[chat_request::UiMessage],
    model: Option<String>,
    max_tokens: Option<u32>,
) -> Result<super::messages::NewMessage, ApiError> {
    chat_request::chat_id(id)?;
    let content = chat_request::question(messages, limits.max_content_bytes)?;
    let message = super::messages::NewMessage { content, model, max_tokens, tools: Vec::new() };
    message.validate(limits)?;
    Ok(message)
}

/// Starts a turn's answer on the chat's thread. A `regenerate-message`
/// (the SDK dropped the answer it regenerates and sends the messages up to
/// its question) asks the thread's newest question again when it is the
/// one sent, as POST messages `{regenerate: true}` does: the thread keeps
/// the earlier answer, the question is not stored twice, and the model is
/// shown the thread up to that question. Otherwise the question is new.
pub async fn ask_turn(
    state: &AppState,
    project_id: Uuid,
    thread_id: Uuid,
    trigger: chat_request::Trigger,
    message: super::messages::NewMessage,
) -> Result<crate::actors::thread::Started, ApiError> {
    let turn = match trigger {
        chat_request::Trigger::SubmitMessage => Turn::Question(message),
        chat_request::Trigger::RegenerateMessage => Turn::Regenerate(message),
    };
    start_turn(state, project_id, thread_id, turn).await
}

/// The thread a stream token caller may touch (`None`: not a stream token).
pub fn token_thread(req: &HttpRequest) -> Option<Uuid> {
    match caller_of(req) {
        Some(Caller::Stream { thread, .. }) => Some(thread),
        _ => None,
    }
}

/// Refuses a stream token of another thread: the chat routes name a chat,
/// not a thread, so the access check leaves this to the handler, once the
/// chat's thread is known.
pub fn token_opens(token_thread: Option<Uuid>, thread_id: Uuid) -> Result<(), ApiError> {
    match token_thread {
        Some(thread) if thread != thread_id => Err(not_its_thread()),
        _ => Ok(()),
    }
}

/// What a stream token used on another thread's chat is told.
pub fn not_its_thread() -> ApiError {
    ApiError::new(Code::Unauthorized, "a stream token opens only its own thread's chat")
}

/// A UI message stream answer: SSE with the protocol's header.
fn ui_response<S>(req: &HttpRequest, body: S) -> HttpResponse
where
    S: Stream<Item = Result<Bytes, Infallible>> + 'static,
{
    let mut response = super::events::sse_response(req, body);
    let (name, value) = ui_stream::HEADER;
    response.headers_mut().insert(HeaderName::from_static(name), HeaderValue::from_static(value));
    response
}
