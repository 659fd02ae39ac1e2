//! Messages: post (202 once the user message is committed), history (with
//! a streaming message's live text), cancel.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{clamp_limit, threads::find, AppState};
use crate::{
    actors::{
        persistence::WriteError,
        registry::{ask, Peek},
        thread::{AbortGeneration, Cancel, LiveMessages, StartGeneration, Started},
    },
    config::LimitSettings,
    domain::{Message, MessageStatus},
    error::{ApiError, Code},
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewMessage {
    pub content: String,
    pub model: Option<String>,
    pub max_tokens: Option<u32>,
}

impl NewMessage {
    pub fn validate(&self, limits: &LimitSettings) -> Result<(), ApiError> {
        if self.content.trim().is_empty() {
            return Err(ApiError::bad_request("`content` must not be empty"));
        }
        if self.content.len() > limits.max_content_bytes {
            let message = format!("`content` is larger than {} bytes", limits.max_content_bytes);
            return Err(ApiError::new(Code::PayloadTooLarge, message));
        }
        match self.max_tokens {
            Some(0) => Err(ApiError::bad_request("`max_tokens` must be at least 1")),
            Some(n) if n > limits.max_tokens_cap => {
                Err(ApiError::bad_request(format!("`max_tokens` must be at most {}", limits.max_tokens_cap)))
            }
            _ => Ok(()),
        }
    }
}

pub fn write_error(e: WriteError) -> ApiError {
    match e {
        WriteError::Unavailable => ApiError::unavailable(),
        WriteError::Rejected(msg) => ApiError::internal(&msg),
    }
}

/// Starts a generation and waits until its user message is committed. If
/// the commit fails, the generation is aborted and the caller told so.
pub async fn start(state: &AppState, thread_id: Uuid, body: NewMessage) -> Result<Started, actix_web::Error> {
    let NewMessage { content, model, max_tokens } = body;
    let make = || StartGeneration { content: content.clone(), model: model.clone(), max_tokens };
    let mut started = ask(&state.registry, thread_id, make).await.map_err(ApiError::from)?.map_err(ApiError::from)?;
    let committed = (&mut started.committed).await;
    match committed {
        Ok(Ok(())) => Ok(started),
        failed => {
            let id = started.assistant_message.id;
            let _ = ask(&state.registry, thread_id, || AbortGeneration { assistant_message_id: id }).await;
            Err(match failed {
                Ok(Err(e)) => write_error(e),
                _ => ApiError::unavailable(),
            }
            .into())
        }
    }
}

#[derive(Serialize)]
struct Accepted {
    user_message: Message,
    assistant_message: Message,
}

#[tracing::instrument(skip_all, fields(project_id = %path.0, thread_id = %path.1))]
pub async fn post(
    state: web::Data<AppState>,
    path: web::Path<(Uuid, Uuid)>,
    body: web::Json<NewMessage>,
) -> Result<HttpResponse, actix_web::Error> {
    body.validate(&state.deps.settings.limits)?;
    let thread = find(&state, path.0, path.1).await?;
    state.post_limiter.check(thread.project_id)?;
    let started = start(&state, thread.id, body.into_inner()).await?;
    Ok(HttpResponse::Accepted()
        .json(Accepted { user_message: started.user_message, assistant_message: started.assistant_message }))
}

#[derive(Deserialize)]
pub struct HistoryQuery {
    limit: Option<u64>,
    before: Option<i64>,
    after: Option<i64>,
}

#[derive(Serialize)]
struct HistoryPage {
    data: Vec<Message>,
    has_more: bool,
}

#[tracing::instrument(skip_all, fields(project_id = %path.0, thread_id = %path.1))]
pub async fn history(
    state: web::Data<AppState>,
    path: web::Path<(Uuid, Uuid)>,
    query: web::Query<HistoryQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = clamp_limit(query.limit, 50, 200)?;
    if query.before.is_some() && query.after.is_some() {
        return Err(ApiError::bad_request("give `before` or `after`, not both"));
    }
    let thread = find(&state, path.0, path.1).await?;
    let (mut data, has_more) = state.store.list_messages(thread.id, limit, query.before, query.after).await?;
    // The database holds the last checkpoint; the live actor holds the text
    // of this instant, and a just-ended message before its write commits.
    let streaming: Vec<Uuid> = data.iter().filter(|m| m.status == MessageStatus::Streaming).map(|m| m.id).collect();
    if !streaming.is_empty() {
        if let Ok(Some(actor)) = state.registry.send(Peek { thread_id: thread.id }).await {
            for live in actor.send(LiveMessages { ids: streaming }).await.unwrap_or_default() {
                if let Some(slot) = data.iter_mut().find(|m| m.id == live.id) {
                    *slot = live;
                }
            }
        }
    }
    Ok(HttpResponse::Ok().json(HistoryPage { data, has_more }))
}

#[derive(Serialize)]
struct Cancelled {
    message_id: Uuid,
}

#[tracing::instrument(skip_all, fields(project_id = %path.0, thread_id = %path.1))]
pub async fn cancel(state: web::Data<AppState>, path: web::Path<(Uuid, Uuid)>) -> Result<HttpResponse, ApiError> {
    let thread = find(&state, path.0, path.1).await?;
    let message_id = ask(&state.registry, thread.id, || Cancel).await??;
    Ok(HttpResponse::Accepted().json(Cancelled { message_id }))
}
