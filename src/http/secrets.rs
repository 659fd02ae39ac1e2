//! `POST /v1/projects/{pid}/tool-secret`: a new signing secret for the
//! calls the service makes on the project's behalf (tools at a URL),
//! shown once. For a day after a rotation calls carry signatures by the
//! new and the previous secret, so retries in flight still verify.

use actix_web::{web, HttpResponse};
use serde::Serialize;
use uuid::Uuid;

use super::AppState;
use crate::error::ApiError;

/// A new signing secret, shown once.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ToolSecret {
    /// `whsec_…`: the key of the Standard Webhooks signatures the
    /// project's tool endpoints verify.
    secret: String,
}

#[utoipa::path(post, path = "/v1/projects/{pid}/tool-secret", tag = "tools", params(("pid" = Uuid, Path, description = "Project id")),
    responses((status = 201, description = "The new secret (the previous one signs too for 24 h)", body = ToolSecret)))]
#[tracing::instrument(skip_all, fields(project_id = %path))]
pub async fn rotate(state: web::Data<AppState>, path: web::Path<Uuid>) -> Result<HttpResponse, ApiError> {
    let project_id = *path;
    state.store.get_project(project_id).await?.ok_or_else(|| ApiError::not_found("project"))?;
    let secret = crate::signing::new_secret();
    state.store.rotate_tool_secret(project_id, &secret).await?;
    tracing::info!("the project's tool secret was rotated");
    Ok(HttpResponse::Created().json(ToolSecret { secret }))
}
