//! A project's MCP servers: `POST /v1/projects/{pid}/mcp-servers` adds one
//! (`{name, url, headers?}`: the URL passes the outbound guard, the headers
//! are stored to be sent and never shown again), `GET` lists them (header
//! names only), `DELETE …/mcp-servers/{name}` removes one. A thread's
//! `mcp_servers` offer their tools (`http::threads`).

use std::collections::BTreeMap;

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::AppState;
use crate::{
    domain::{
        codes::Code,
        mcp::{valid_server_name, McpServer, McpServerView, MAX_HEADERS, MAX_HEADER_VALUE},
    },
    error::ApiError,
};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMcpServer {
    /// `^[a-zA-Z0-9_-]{1,32}$`, unique in the project; its tools are
    /// offered as `<name>_<tool>`.
    #[schema(pattern = r"^[a-zA-Z0-9_-]{1,32}$")]
    name: String,
    /// The server's Streamable HTTP endpoint (https, and no inside address,
    /// unless `--allow-private-urls`).
    #[schema(min_length = 1, max_length = 2000, pattern = r"^[^\x00]*$")]
    url: String,
    /// Sent with every request to the server (an Authorization, say); at
    /// most 16, never shown again.
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct McpServerList {
    data: Vec<McpServerView>,
}

/// Whether `name: value` can be sent as a header (and is not one the
/// transport sets itself).
fn check_header(name: &str, value: &str) -> Result<(), ApiError> {
    let reserved = ["host", "content-length", "content-type", "accept", "mcp-session-id", "mcp-protocol-version"];
    let valid_name = reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_ok();
    if !valid_name || reserved.contains(&name.to_ascii_lowercase().as_str()) {
        return Err(ApiError::bad_request(format!("header {name:?} cannot be set")));
    }
    if value.len() > MAX_HEADER_VALUE || reqwest::header::HeaderValue::from_str(value).is_err() {
        return Err(ApiError::bad_request(format!(
            "the value of header {name:?} must be visible ASCII of at most {MAX_HEADER_VALUE} bytes"
        )));
    }
    Ok(())
}

#[utoipa::path(post, path = "/v1/projects/{pid}/mcp-servers", tag = "tools", params(("pid" = Uuid, Path, description = "Project id")), request_body = NewMcpServer,
    responses((status = 201, description = "The server (its header names only)", body = McpServerView)))]
#[tracing::instrument(skip_all, fields(project_id = %path))]
pub async fn add(
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    body: web::Json<NewMcpServer>,
) -> Result<HttpResponse, ApiError> {
    let project_id = *path;
    let NewMcpServer { name, url, headers } = body.into_inner();
    if !valid_server_name(&name) {
        return Err(ApiError::bad_request("`name` must match ^[a-zA-Z0-9_-]{1,32}$"));
    }
    if headers.len() > MAX_HEADERS {
        return Err(ApiError::bad_request(format!("at most {MAX_HEADERS} headers")));
    }
    for (k, v) in &headers {
        check_header(k, v)?;
    }
    state
        .deps
        .settings
        .outbound
        .guard()
        .check_url_resolved(&url)
        .await
        .map_err(|refused| ApiError::bad_request(format!("`url`: {refused}")))?;
    state.store.get_project(project_id).await?.ok_or_else(|| ApiError::not_found("project"))?;
    let server = McpServer { name, url, headers, created_at: chrono::Utc::now() };
    if !state.store.add_mcp_server(project_id, &server).await? {
        return Err(ApiError::new(
            Code::McpServerExists,
            format!("the project has an MCP server named {:?}; DELETE it first", server.name),
        ));
    }
    tracing::info!(server = %server.name, "an MCP server was added");
    Ok(HttpResponse::Created().json(McpServerView::from(&server)))
}

#[utoipa::path(get, path = "/v1/projects/{pid}/mcp-servers", tag = "tools", params(("pid" = Uuid, Path, description = "Project id")),
    responses((status = 200, description = "The project's MCP servers, by name", body = McpServerList)))]
#[tracing::instrument(skip_all, fields(project_id = %path))]
pub async fn list(state: web::Data<AppState>, path: web::Path<Uuid>) -> Result<HttpResponse, ApiError> {
    state.store.get_project(*path).await?.ok_or_else(|| ApiError::not_found("project"))?;
    let servers = state.store.mcp_servers(*path).await?;
    Ok(HttpResponse::Ok().json(McpServerList { data: servers.iter().map(McpServerView::from).collect() }))
}

#[utoipa::path(delete, path = "/v1/projects/{pid}/mcp-servers/{name}", tag = "tools", params(("pid" = Uuid, Path, description = "Project id"), ("name" = String, Path, description = "Server name")),
    responses((status = 204, description = "Removed (threads that name it offer its tools no more)")))]
#[tracing::instrument(skip_all, fields(project_id = %path.0))]
pub async fn remove(state: web::Data<AppState>, path: web::Path<(Uuid, String)>) -> Result<HttpResponse, ApiError> {
    let (project_id, name) = path.into_inner();
    match state.store.remove_mcp_server(project_id, &name).await? {
        true => Ok(HttpResponse::NoContent().finish()),
        false => Err(ApiError::not_found("MCP server")),
    }
}
