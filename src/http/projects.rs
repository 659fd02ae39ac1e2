//! `POST /v1/projects`, `GET /v1/projects/{pid}`.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use uuid::Uuid;

use super::AppState;
use crate::error::ApiError;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewProject {
    name: String,
}

#[tracing::instrument(skip_all)]
pub async fn create(state: web::Data<AppState>, body: web::Json<NewProject>) -> Result<HttpResponse, ApiError> {
    let name = body.name.trim();
    if name.is_empty() || name.len() > 200 {
        return Err(ApiError::bad_request("`name` must be 1 to 200 characters"));
    }
    let project = state.store.create_project(name).await?;
    Ok(HttpResponse::Created().json(project))
}

#[tracing::instrument(skip_all, fields(project_id = %path))]
pub async fn get(state: web::Data<AppState>, path: web::Path<Uuid>) -> Result<HttpResponse, ApiError> {
    let project = state.store.get_project(*path).await?.ok_or_else(|| ApiError::not_found("project"))?;
    Ok(HttpResponse::Ok().json(project))
}
