//! `POST /v1/projects/{pid}/chat`: a turn of the AI SDK's
//! `DefaultChatTransport`. Its newest user message is asked on the chat's
//! thread (made on the chat's first turn), exactly as POST messages asks
//! it (validation, limits, 409 while an answer runs, the question stored
//! before the answer), and the answer streams back as the UI message
//! stream, like the seed route's: from its first byte, ending with it (or
//! where it awaits input). A turn whose last message is an answer of the
//! chat continues that answer instead (`continuation.rs`): what its tool
//! parts answer is resolved, and the same UI message streams on from
//! where its client was.

use actix_web::{web, HttpRequest, HttpResponse};
use uuid::Uuid;

use super::{ask_turn, checked_turn, continuation, title_of, ui_response};
use crate::{
    actors::session::Transport,
    delivery::{continuation::Continuation, pipe::pipe, subscriber::UiRequest},
    domain::{
        chat_request::{ChatBody, UiMessage},
        cursor::Resume,
        event::end_cursor,
        ui_stream,
    },
    error::ApiError,
    http::{
        events::{admit, start_session, STREAM_BUFFER},
        AppState,
    },
};

#[utoipa::path(post, path = "/v1/projects/{pid}/chat", tag = "chat", operation_id = "turn",
    params(("pid" = Uuid, Path, description = "Project id")),
    request_body = ChatBody,
    responses((status = 200, description = "The answer as the AI SDK's UI message stream (`data:` lines, then \
        `data: [DONE]`; header `x-vercel-ai-ui-message-stream: v1`), up to its end or to where it awaits input. \
        When the last message is an answer of the chat, what its tool parts answer (results, decisions) is \
        resolved and the same UI message streams on from where its client was: `start` with its id, the \
        decisions that hold, then the answer's chunks after that step (also when another tab answered first)",
        content_type = "text/event-stream", body = String)))]
#[tracing::instrument(skip_all, fields(project_id = %path))]
pub async fn post(
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    body: web::Json<ChatBody>,
    req: HttpRequest,
) -> Result<HttpResponse, actix_web::Error> {
    let project_id = *path;
    let ChatBody { id, messages, model, max_tokens, trigger, .. } = body.into_inner();
    if let Some(answer) = continuation::answer_of(&messages) {
        return continue_answer(&state, project_id, &id, answer, &req).await;
    }
    let message = checked_turn(&state.deps.settings.limits, &id, &messages, model, max_tokens)?;
    state.store.get_project(project_id).await.map_err(ApiError::from)?.ok_or_else(|| ApiError::not_found("project"))?;
    let title = title_of(&message.content);
    let thread = state.store.chat_thread_or_create(project_id, &id, Some(title)).await.map_err(ApiError::from)?;
    // Admitted before the answer starts: a refused stream starts nothing.
    let admission = admit(&state, &req, thread.id)?;
    let started = ask_turn(&state, project_id, thread.id, trigger, message).await?;
    let (tx, rx) = pipe(STREAM_BUFFER);
    let request = UiRequest { message_id: started.assistant_message.id, continuation: None };
    // From right after the question: the answer from its first byte.
    start_session(
        &state,
        thread.id,
        admission,
        Transport::Ui { tx, request },
        Resume::At(end_cursor(&started.user_message)),
    );
    Ok(ui_response(&req, rx))
}

/// A turn that continues `answer` (see `continuation.rs`).
async fn continue_answer(
    state: &AppState,
    project_id: Uuid,
    id: &str,
    answer: &UiMessage,
    req: &HttpRequest,
) -> Result<HttpResponse, actix_web::Error> {
    let thread = continuation::chat_of(state, project_id, id, None).await?;
    let admission = admit(state, req, thread.id)?;
    let continued = continuation::resolve(state, project_id, &thread, answer).await?;
    let (tx, rx) = pipe(STREAM_BUFFER);
    // A fresh pipe always has room for its first frame.
    let _ = tx.try_send(ui_stream::sse_lines(continued.prefix.iter(), false));
    let continuation = Some(Continuation::new(continued.prefix.len() as u64));
    let request = UiRequest { message_id: continued.answer, continuation };
    start_session(state, thread.id, admission, Transport::Ui { tx, request }, Resume::At(continued.from));
    Ok(ui_response(req, rx))
}
