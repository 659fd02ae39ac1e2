//! Answering the calls of an answer that awaits input: `POST
//! …/threads/{tid}/tool-results` (a call's output, or its error) and `POST
//! …/threads/{tid}/approvals` (a person's decision). The first answer of a
//! call wins, from any tab or node; the same again is no change (listed in
//! `unchanged`), a different one is 409 `tool_call_resolved`. A stream
//! token of the thread is accepted too, so a tab in secured mode answers.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use uuid::Uuid;

use super::{threads::find, AppState};
use crate::{
    actors::{
        registry::ask,
        thread::{Resolution, Resolve, ResolveError},
    },
    domain::{
        answers::{self, ToolResult},
        turn::Answer,
    },
    error::ApiError,
};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolResults {
    #[schema(min_items = 1, max_items = 128)]
    results: Vec<ToolResult>,
}

/// A person's decision on a call of a tool that needs approval.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalDecision {
    #[schema(min_length = 1, max_length = 200, pattern = r"^[^\x00]*$")]
    tool_call_id: String,
    approved: bool,
    /// Why (told to the model with a denial): at most 2,000 bytes of
    /// UTF-8 (413 `payload_too_large` beyond).
    #[schema(pattern = r"^[^\x00]*$")]
    reason: Option<String>,
}

#[utoipa::path(post, path = "/v1/projects/{pid}/threads/{tid}/tool-results", tag = "tools", params(("pid" = Uuid, Path, description = "Project id"), ("tid" = Uuid, Path, description = "Thread id")), request_body = ToolResults,
    responses((status = 200, description = "Which calls it answered, and which had this very answer already", body = Resolution)))]
#[tracing::instrument(skip_all, fields(project_id = %path.0, thread_id = %path.1))]
pub async fn results(
    state: web::Data<AppState>,
    path: web::Path<(Uuid, Uuid)>,
    body: web::Json<ToolResults>,
) -> Result<HttpResponse, ApiError> {
    let answers = answers::results(body.into_inner().results)?;
    resolve(&state, *path, answers).await
}

#[utoipa::path(post, path = "/v1/projects/{pid}/threads/{tid}/approvals", tag = "tools", params(("pid" = Uuid, Path, description = "Project id"), ("tid" = Uuid, Path, description = "Thread id")), request_body = ApprovalDecision,
    responses((status = 200, description = "The decision, or the same decision again", body = Resolution)))]
#[tracing::instrument(skip_all, fields(project_id = %path.0, thread_id = %path.1))]
pub async fn approvals(
    state: web::Data<AppState>,
    path: web::Path<(Uuid, Uuid)>,
    body: web::Json<ApprovalDecision>,
) -> Result<HttpResponse, ApiError> {
    let ApprovalDecision { tool_call_id, approved, reason } = body.into_inner();
    let answer = answers::decision(tool_call_id, approved, reason)?;
    resolve(&state, *path, vec![answer]).await
}

/// Hands the answers to the thread's actor; the contract's error for what
/// it refused.
async fn resolve(
    state: &AppState,
    (project_id, thread_id): (Uuid, Uuid),
    answers: Vec<(String, Answer)>,
) -> Result<HttpResponse, ApiError> {
    find(state, project_id, thread_id).await?;
    let make = || Resolve { project_id: Some(project_id), answers: answers.clone() };
    match ask(&state.registry, thread_id, make).await? {
        Ok(resolution) => Ok(HttpResponse::Ok().json(resolution)),
        Err(e) => Err(resolve_error(e)),
    }
}

/// A refused answer in the contract's shape.
pub fn resolve_error(e: ResolveError) -> ApiError {
    match e {
        ResolveError::Thread(e) => e.into(),
        e => ApiError::new(e.code(), e.to_string()),
    }
}
