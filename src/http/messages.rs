//! Messages: post (202 once the user message is committed; or, with
//! `regenerate`, the newest question asked again once its new answer is),
//! history (with a streaming message's live text), cancel.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{clamp_limit, threads::find, AppState};
use crate::{
    actors::{
        registry::{ask, Lookup, Peek},
        thread::{AbortGeneration, AskAgain, Cancel, LiveMessages, StartGeneration, Started, ThreadActor},
        ThreadError,
    },
    config::LimitSettings,
    domain::{input, Message, MessageStatus},
    error::ApiError,
};

// The schema keeps the name `NewMessage`; `openapi::document` adds that
// the body is one or the other (JSON Schema `oneOf`).
/// A question (`content`), or `regenerate: true` with no `content`: the
/// thread's newest user message asked again (a new answer; the thread
/// keeps the earlier ones, and the model is shown the thread up to that
/// question, not the earlier answers to it).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NewMessage)]
pub struct PostedMessage {
    /// The question; not blank, no NUL, at most `--max-content-bytes`.
    /// Required unless `regenerate` is true, and then not given.
    #[serde(default, deserialize_with = "input::not_null")]
    #[schema(pattern = r"^[^\x00]*[^\s\x00][^\x00]*$", nullable = false)]
    content: Option<String>,
    /// `true`: ask the newest user message again, with no `content` (also
    /// how a `failed`, `interrupted` or `cancelled` answer is retried);
    /// 400 when the thread has none.
    #[serde(default)]
    regenerate: bool,
    /// Overrides the thread's model for this answer.
    #[schema(min_length = 1, max_length = 200, pattern = r"^[^\x00]*[^\s\x00][^\x00]*$")]
    model: Option<String>,
    /// At least 1, at most `--max-tokens-cap`.
    #[schema(minimum = 1)]
    #[serde(default, deserialize_with = "input::whole_u32")]
    max_tokens: Option<u32>,
    /// Tools for this answer alone, offered with the thread's (one of the
    /// same name replaces the thread's), through every step.
    #[serde(default)]
    #[schema(max_items = 128)]
    tools: Vec<crate::domain::tools::ToolDef>,
}

impl PostedMessage {
    /// What it asks, checked: a question, or the newest one again.
    fn turn(self, limits: &LimitSettings) -> Result<Turn, ApiError> {
        let PostedMessage { content, regenerate, model, max_tokens, tools } = self;
        match (content, regenerate) {
            (Some(content), false) => {
                let message = NewMessage { content, model, max_tokens, tools };
                message.validate(limits)?;
                Ok(Turn::Question(message))
            }
            (None, true) => {
                input::answer_options(model.as_deref(), max_tokens, limits.max_tokens_cap)?;
                Ok(Turn::Again { model, max_tokens, tools })
            }
            (Some(_), true) => Err(ApiError::bad_request(
                "`regenerate: true` asks the newest user message again: it takes no `content`",
            )),
            (None, false) => {
                Err(ApiError::bad_request("`content` is required (or `regenerate: true`, with no `content`)"))
            }
        }
    }
}

/// A question to ask (every way in: REST, the seed route, the chat
/// routes).
pub struct NewMessage {
    /// Not blank, no NUL, at most `--max-content-bytes`.
    pub content: String,
    /// Overrides the thread's model for this answer.
    pub model: Option<String>,
    /// At least 1, at most `--max-tokens-cap`.
    pub max_tokens: Option<u32>,
    /// Tools for this answer alone, offered with the thread's (one of the
    /// same name replaces the thread's), through every step.
    pub tools: Vec<crate::domain::tools::ToolDef>,
}

/// What a turn asks.
pub enum Turn {
    Question(NewMessage),
    /// A regenerate that names its question (the AI SDK's
    /// `regenerate-message`): the newest question again when it is this
    /// one, else this question.
    Regenerate(NewMessage),
    /// The newest user message again (`regenerate`).
    Again {
        model: Option<String>,
        max_tokens: Option<u32>,
        tools: Vec<crate::domain::tools::ToolDef>,
    },
}

impl NewMessage {
    pub fn validate(&self, limits: &LimitSettings) -> Result<(), ApiError> {
        input::message(
            &self.content,
            self.model.as_deref(),
            self.max_tokens,
            limits.max_content_bytes,
            limits.max_tokens_cap,
        )
        .map_err(ApiError::from)
    }
}

/// Starts a generation on thread `thread_id` of project `project_id` and
/// waits until its user message is committed. A live thread actor checks
/// the project itself (no database read on the hot path); otherwise the
/// thread is looked up before an actor is started for it. If the commit
/// fails, the generation is aborted and the caller told so.
pub async fn start(state: &AppState, project_id: Uuid, thread_id: Uuid, body: NewMessage) -> Result<Started, ApiError> {
    start_turn(state, project_id, thread_id, Turn::Question(body)).await
}

/// `start` for either turn: a question (`StartGeneration`), or the newest
/// question again (`AskAgain`, which waits for its answer's commit: the
/// question is stored already). Both take the thread actor's one way in.
pub async fn start_turn(state: &AppState, project_id: Uuid, thread_id: Uuid, turn: Turn) -> Result<Started, ApiError> {
    let again_if_newest = matches!(turn, Turn::Regenerate(_));
    let answer = match turn {
        Turn::Question(question) | Turn::Regenerate(question) => {
            let NewMessage { content, model, max_tokens, tools } = question;
            let make = || StartGeneration {
                project_id: Some(project_id),
                content: content.clone(),
                model: model.clone(),
                max_tokens,
                tools: tools.clone(),
                mcp_tools: None,
                again_if_newest,
            };
            ask_thread(state, project_id, thread_id, &tools, make).await?
        }
        Turn::Again { model, max_tokens, tools } => {
            let make =
                || AskAgain { project_id: Some(project_id), model: model.clone(), max_tokens, tools: tools.clone() };
            ask_thread(state, project_id, thread_id, &tools, make).await?
        }
    };
    let mut started = answer.map_err(ApiError::from)?;
    let committed = (&mut started.committed).await;
    match committed {
        Ok(Ok(())) => Ok(started),
        failed => {
            let id = started.assistant_message.id;
            let _ = ask(&state.registry, thread_id, || AbortGeneration { assistant_message_id: id }).await;
            Err(match failed {
                Ok(Err(e)) => ApiError::from(e),
                _ => ApiError::unavailable(),
            })
        }
    }
}

/// Asks the thread's actor `make()`'s turn, once the answer's own
/// `tools` are checked. Not `registry::ask` alone: it starts an actor for
/// any id. Here a live actor is asked as it is (`Peek` never starts one);
/// only a thread found in the database gets one started (also when the
/// live one stopped between the peek and the send).
async fn ask_thread<M>(
    state: &AppState,
    project_id: Uuid,
    thread_id: Uuid,
    tools: &[crate::domain::tools::ToolDef],
    make: impl Fn() -> M,
) -> Result<Result<Started, ThreadError>, ApiError>
where
    M: actix::Message<Result = Result<Started, ThreadError>> + Send + 'static,
    ThreadActor: actix::Handler<M>,
{
    if !tools.is_empty() {
        super::threads::runnable(state, project_id, tools).await?;
    }
    let live = state.registry.send(Peek { thread_id }).await.ok().flatten();
    let answer = match live {
        Some(actor) => actor.send(make()).await.ok(),
        None => None,
    };
    match answer {
        Some(answer) => Ok(answer),
        None => {
            find(state, project_id, thread_id).await?;
            ask(&state.registry, thread_id, make).await.map_err(ApiError::from)
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
struct Accepted {
    user_message: Message,
    assistant_message: Message,
}

#[utoipa::path(post, path = "/v1/projects/{pid}/threads/{tid}/messages", tag = "messages", params(("pid" = Uuid, Path, description = "Project id"), ("tid" = Uuid, Path, description = "Thread id")),
    request_body = PostedMessage,
    responses((status = 202, description = "Stored; the answer streams on /events and /ws. With `regenerate`, \
        `user_message` is the newest user message, asked again, and the earlier answers stay", body = Accepted)))]
#[tracing::instrument(skip_all, fields(project_id = %path.0, thread_id = %path.1))]
pub async fn post(
    state: web::Data<AppState>,
    path: web::Path<(Uuid, Uuid)>,
    body: web::Json<PostedMessage>,
) -> Result<HttpResponse, actix_web::Error> {
    let turn = body.into_inner().turn(&state.deps.settings.limits)?;
    let started = start_turn(&state, path.0, path.1, turn).await?;
    Ok(HttpResponse::Accepted()
        .json(Accepted { user_message: started.user_message, assistant_message: started.assistant_message }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Page size, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<u64>,
    /// Messages before this position: the newest page below it.
    before: Option<i64>,
    /// Messages after this position (with `before`: the range between).
    after: Option<i64>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct HistoryPage {
    data: Vec<Message>,
    has_more: bool,
}

#[utoipa::path(get, path = "/v1/projects/{pid}/threads/{tid}/messages", tag = "messages", params(("pid" = Uuid, Path, description = "Project id"), ("tid" = Uuid, Path, description = "Thread id"), HistoryQuery),
    responses((status = 200, description = "Messages by position; a streaming one shows its live text", body = HistoryPage)))]
#[tracing::instrument(skip_all, fields(project_id = %path.0, thread_id = %path.1))]
pub async fn history(
    state: web::Data<AppState>,
    path: web::Path<(Uuid, Uuid)>,
    query: web::Query<HistoryQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = clamp_limit(query.limit, 50, 200)?;
    let thread = find(&state, path.0, path.1).await?;
    let (mut data, has_more) = state.store.list_messages(thread.id, limit, query.before, query.after).await?;
    // The database holds the last checkpoint; the live actor holds the text
    // of this instant, and a just-ended message before its write commits.
    // (An answer stored awaiting input may have gone on since.)
    let streaming: Vec<Uuid> = data
        .iter()
        .filter(|m| matches!(m.status, MessageStatus::Streaming | MessageStatus::AwaitingInput))
        .map(|m| m.id)
        .collect();
    if !streaming.is_empty() {
        // In cluster mode the answer may run on another node: this node's
        // actor of the thread (started if need be) mirrors it live.
        let actor = match state.deps.lease {
            Some(_) => state.registry.send(Lookup { thread_id: thread.id }).await.ok().flatten(),
            None => state.registry.send(Peek { thread_id: thread.id }).await.ok().flatten(),
        };
        if let Some(actor) = actor {
            for live in actor.send(LiveMessages { ids: streaming }).await.unwrap_or_default() {
                if let Some(slot) = data.iter_mut().find(|m| m.id == live.id) {
                    *slot = live;
                }
            }
        }
    }
    Ok(HttpResponse::Ok().json(HistoryPage { data, has_more }))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Cancelled {
    pub message_id: Uuid,
}

#[utoipa::path(post, path = "/v1/projects/{pid}/threads/{tid}/cancel", tag = "messages", params(("pid" = Uuid, Path, description = "Project id"), ("tid" = Uuid, Path, description = "Thread id")),
    responses((status = 202, description = "The running answer ends `cancelled`", body = Cancelled)))]
#[tracing::instrument(skip_all, fields(project_id = %path.0, thread_id = %path.1))]
pub async fn cancel(state: web::Data<AppState>, path: web::Path<(Uuid, Uuid)>) -> Result<HttpResponse, ApiError> {
    let thread = find(&state, path.0, path.1).await?;
    let message_id = ask(&state.registry, thread.id, || Cancel).await??;
    Ok(HttpResponse::Accepted().json(Cancelled { message_id }))
}
