//! A chat's running answer: `GET /v1/projects/{pid}/chat/{id}/stream`
//! (the AI SDK's resume) and `POST /v1/projects/{pid}/chat/{id}/cancel`
//! (its stop, for real). An answer awaiting input is resumed too: the
//! stream ends where it waits, with its calls and what they wait for (a
//! `tool-approval-request` for each that waits for a person), so a
//! reloaded tab shows them and can answer.
//!
//! The SDK's resume replaces its partial message with a replay
//! (`resumeStreamIsReplay`): the first `start` chunk resets the message,
//! and its `messageId` names the message it replaces. So the running
//! answer is streamed from its start (a subscription from right after its
//! question), then live: nothing repeated, nothing missing, however much
//! of it the client had shown.

use actix_web::{web, HttpRequest, HttpResponse};
use uuid::Uuid;

use super::{chat_thread, running_answer, token_thread, ui_response};
use crate::{
    actors::{registry::ask, session::Transport, thread::Cancel},
    delivery::{pipe::pipe, subscriber::UiRequest},
    domain::cursor::Resume,
    error::ApiError,
    http::{
        events::{admit, is_head, start_session, STREAM_BUFFER},
        messages::Cancelled,
        AppState,
    },
};

#[utoipa::path(get, path = "/v1/projects/{pid}/chat/{id}/stream", tag = "chat", operation_id = "resume",
    params(("pid" = Uuid, Path, description = "Project id"), ("id" = String, Path, description = "Chat id: a thread id, or the client's own"),
        ("token" = Option<String>, Query, description = "A stream token of the chat's thread")),
    responses(
        (status = 200, description = "The running answer as the UI message stream, from its start, then live; \
            an answer awaiting input up to where it waits (its approvals asked, `finish` with `tool-calls`)",
            content_type = "text/event-stream", body = String),
        (status = 204, description = "Nothing is generating or awaiting input on this chat")))]
#[tracing::instrument(skip_all, fields(project_id = %path.0))]
pub async fn stream(
    state: web::Data<AppState>,
    path: web::Path<(Uuid, String)>,
    req: HttpRequest,
) -> Result<HttpResponse, actix_web::Error> {
    let (project_id, id) = path.into_inner();
    let Some((thread_id, running)) = running_answer(&state, project_id, &id, token_thread(&req)).await? else {
        return Ok(HttpResponse::NoContent().finish());
    };
    if is_head(&req) {
        return Ok(ui_response(&req, futures_util::stream::empty()));
    }
    let admission = admit(&state, &req, thread_id)?;
    let (tx, rx) = pipe(STREAM_BUFFER);
    let transport = Transport::Ui { tx, request: UiRequest { message_id: running.answer, continuation: None } };
    start_session(&state, thread_id, admission, transport, Resume::At(running.question));
    Ok(ui_response(&req, rx))
}

#[utoipa::path(post, path = "/v1/projects/{pid}/chat/{id}/cancel", tag = "chat", operation_id = "cancel",
    params(("pid" = Uuid, Path, description = "Project id"), ("id" = String, Path, description = "Chat id: a thread id, or the client's own")),
    responses((status = 202, description = "The running answer ends `cancelled`, for every client that watches it", body = Cancelled)))]
#[tracing::instrument(skip_all, fields(project_id = %path.0))]
pub async fn cancel(state: web::Data<AppState>, path: web::Path<(Uuid, String)>) -> Result<HttpResponse, ApiError> {
    let (project_id, id) = path.into_inner();
    let thread = chat_thread(&state, project_id, &id).await?.ok_or_else(|| ApiError::not_found("chat"))?;
    let message_id = ask(&state.registry, thread.id, || Cancel).await??;
    Ok(HttpResponse::Accepted().json(Cancelled { message_id }))
}
