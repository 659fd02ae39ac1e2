//! Project API keys (admin) and thread-scoped stream tokens.

use actix_web::{web, HttpResponse};
use serde_json::json;
use uuid::Uuid;

use super::{auth, threads::find, AppState};
use crate::error::ApiError;

/// `POST /admin/projects/{pid}/keys`: a new key, shown this once.
#[tracing::instrument(skip_all, fields(project_id = %path))]
pub async fn create(state: web::Data<AppState>, path: web::Path<Uuid>) -> Result<HttpResponse, ApiError> {
    let project = state.store.get_project(*path).await?.ok_or_else(|| ApiError::not_found("project"))?;
    let key = auth::new_key()?;
    let id = state.store.create_key(project.id, auth::key_hash(&key)).await?;
    tracing::info!(key_id = %id, "project key created");
    Ok(HttpResponse::Created().json(json!({ "id": id, "project_id": project.id, "key": key })))
}

/// `DELETE /admin/projects/{pid}/keys/{key_id}`.
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
#[tracing::instrument(skip_all, fields(project_id = %path.0, thread_id = %path.1))]
pub async fn stream_token(state: web::Data<AppState>, path: web::Path<(Uuid, Uuid)>) -> Result<HttpResponse, ApiError> {
    let thread = find(&state, path.0, path.1).await?;
    let (token, expires_at) = state.auth.stream_token(thread.id);
    Ok(HttpResponse::Created().json(json!({ "token": token, "expires_at": expires_at })))
}
