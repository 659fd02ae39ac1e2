//! Project API keys (admin) and thread-scoped stream tokens.

use actix_web::{web, HttpResponse};
use serde::Serialize;
use uuid::Uuid;

use super::{auth, threads::find, AppState};
use crate::error::ApiError;

/// A new project key: `key` is shown this once.
#[derive(Serialize, utoipa::ToSchema)]
struct NewKey {
    id: Uuid,
    project_id: Uuid,
    key: String,
}

/// A stream token and when it expires.
#[derive(Serialize, utoipa::ToSchema)]
struct StreamToken {
    token: String,
    expires_at: chrono::DateTime<chrono::Utc>,
}

/// `POST /admin/projects/{pid}/keys`: a new key, shown this once.
#[utoipa::path(post, path = "/admin/projects/{pid}/keys", tag = "admin", params(("pid" = Uuid, Path, description = "Project id")),
    responses((status = 201, description = "The new key, shown this once (stored as a hash)", body = NewKey)))]
#[tracing::instrument(skip_all, fields(project_id = %path))]
pub async fn create(state: web::Data<AppState>, path: web::Path<Uuid>) -> Result<HttpResponse, ApiError> {
    let project = state.store.get_project(*path).await?.ok_or_else(|| ApiError::not_found("project"))?;
    let key = auth::new_key()?;
    let id = state.store.create_key(project.id, auth::key_hash(&key)).await?;
    tracing::info!(key_id = %id, "project key created");
    Ok(HttpResponse::Created().json(NewKey { id, project_id: project.id, key }))
}

/// `DELETE /admin/projects/{pid}/keys/{key_id}`.
#[utoipa::path(delete, path = "/admin/projects/{pid}/keys/{key_id}", tag = "admin",
    params(("pid" = Uuid, Path, description = "Project id"), ("key_id" = Uuid, Path, description = "Key id")),
    responses((status = 204, description = "Revoked: the key opens nothing from now on")))]
#[tracing::instrument(skip_all, fields(project_id = %path.0, key_id = %path.1))]
pub async fn revoke(state: web::Data<AppState>, path: web::Path<(Uuid, Uuid)>) -> Result<HttpResponse, ApiError> {
    if state.store.revoke_key(path.0, path.1).await? {
        tracing::info!("project key revoked");
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::not_found("key"))
    }
}

/// `POST …/threads/{tid}/stream-token`: a short-lived token for this
/// thread's `/events` and `/ws`, for browsers (which cannot send headers
/// there).
#[utoipa::path(post, path = "/v1/projects/{pid}/threads/{tid}/stream-token", tag = "streams", params(("pid" = Uuid, Path, description = "Project id"), ("tid" = Uuid, Path, description = "Thread id")),
    responses((status = 201, description = "A token for this thread's /events and /ws (`?token=`)", body = StreamToken)))]
#[tracing::instrument(skip_all, fields(project_id = %path.0, thread_id = %path.1))]
pub async fn stream_token(
    state: web::Data<AppState>,
    path: web::Path<(Uuid, Uuid)>,
    req: actix_web::HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let thread = find(&state, path.0, path.1).await?;
    // The access guard always records the caller; without it, mint nothing
    // (a token minted as "open" would count against no key).
    let caller = auth::caller_of(&req).ok_or_else(|| ApiError::new(crate::error::Code::Internal, "no caller"))?;
    let (token, expires_at) = state.auth.stream_token(thread.id, &caller)?;
    Ok(HttpResponse::Created().json(StreamToken { token, expires_at }))
}
