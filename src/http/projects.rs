//! `POST /v1/projects`, `GET /v1/projects/{pid}`.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use uuid::Uuid;

use super::AppState;
use crate::error::ApiError;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProject {
    /// Not blank, no NUL, at most 200 characters.
    #[schema(max_length = 200, pattern = r"^[^\x00]*[^\s\x00][^\x00]*$")]
    name: String,
}

#[utoipa::path(post, path = "/v1/projects", tag = "projects", request_body = NewProject,
    responses((status = 201, description = "The new project", body = crate::domain::Project)))]
#[tracing::instrument(skip_all)]
pub async fn create(state: web::Data<AppState>, body: web::Json<NewProject>) -> Result<HttpResponse, ApiError> {
    // Limits apply to what was sent (as the schema says); the trimmed
    // name is stored.
    crate::domain::input::label("name", Some(&body.name))?;
    let name = body.name.trim();
    if name.is_empty() {
        return Err(ApiError::bad_request("`name` must not be blank"));
    }
    let project = state.store.create_project(name).await?;
    Ok(HttpResponse::Created().json(project))
}

#[utoipa::path(get, path = "/v1/projects/{pid}", tag = "projects", params(("pid" = Uuid, Path, description = "Project id")),
    responses((status = 200, description = "The project", body = crate::domain::Project)))]
#[tracing::instrument(skip_all, fields(project_id = %path))]
pub async fn get(state: web::Data<AppState>, path: web::Path<Uuid>) -> Result<HttpResponse, ApiError> {
    let project = state.store.get_project(*path).await?.ok_or_else(|| ApiError::not_found("project"))?;
    Ok(HttpResponse::Ok().json(project))
}
