//! Threads: create, list (newest first, cursor paging, `q` searches the
//! titles), get, delete.
//! A thread's `status` is not stored: it is `generating` while its live
//! actor runs a generation, which the registry knows, or in cluster mode
//! while any node holds its lease for an answer.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{clamp_limit, AppState};
use crate::{
    actors::{
        persistence::Write,
        registry::{ask, BeginDelete, EndDelete, Generating, Lookup},
        thread::{Stop, StopReason, UpdateThread},
        ThreadError,
    },
    domain::{
        event::ThreadStatus,
        input,
        tools::{ToolChoice, ToolDef},
        Thread, ThreadPatch, ThreadSettings, ThreadView,
    },
    error::ApiError,
    store::{Fence, WriteOp},
};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewThread {
    /// At most 200 characters.
    #[schema(max_length = 200, pattern = r"^[^\x00]*$")]
    title: Option<String>,
    /// The system prompt sent with every answer.
    #[schema(pattern = r"^[^\x00]*$")]
    system: Option<String>,
    /// The model of this thread's answers (default: the provider's).
    #[schema(min_length = 1, max_length = 200, pattern = r"^[^\x00]*[^\s\x00][^\x00]*$")]
    model: Option<String>,
    /// The tools every answer of the thread may call (at most 128).
    #[serde(default)]
    #[schema(max_items = 128)]
    tools: Vec<ToolDef>,
    tool_choice: Option<ToolChoice>,
    /// MCP servers of the project whose tools the answers may call, each
    /// tool offered as `<server>_<tool>` (listed when a turn starts).
    #[serde(default)]
    #[schema(max_items = 16)]
    mcp_servers: Vec<String>,
}

/// Checks a thread's tool settings: the definitions as one set with the
/// tools of its MCP servers (listed now: each server must be the
/// project's and answer), and what the service runs itself (`runnable`).
async fn check_tools(
    state: &AppState,
    project_id: Uuid,
    tools: &[ToolDef],
    choice: Option<&ToolChoice>,
    mcp_servers: &[String],
) -> Result<(), ApiError> {
    crate::domain::tools::check(tools, choice).map_err(|e| ApiError::bad_request(e.0))?;
    if mcp_servers.len() > 16 {
        return Err(ApiError::bad_request("at most 16 MCP servers"));
    }
    let mut all = tools.to_vec();
    let mut named = std::collections::HashSet::new();
    for name in mcp_servers {
        // Checked before any lookup: a name no server can have (a NUL, say,
        // which Postgres refuses in a query) is the caller's mistake.
        if !crate::domain::mcp::valid_server_name(name) {
            return Err(ApiError::bad_request(format!("{name:?} is not an MCP server name (^[a-zA-Z0-9_-]{{1,32}}$)")));
        }
        if !named.insert(name) {
            return Err(ApiError::bad_request(format!("MCP server {name:?} is named twice")));
        }
        let listed = mcp_tools(state, project_id, name).await?;
        all.extend(crate::domain::mcp::offered(name, &listed));
    }
    if !mcp_servers.is_empty() {
        crate::domain::tools::check(&all, choice)
            .map_err(|e| ApiError::bad_request(format!("with the tools of its MCP servers: {}", e.0)))?;
    }
    runnable(state, project_id, tools).await
}

/// The tools the project's MCP server `name` lists now; 400 when there is
/// no such server or it cannot be listed.
async fn mcp_tools(
    state: &AppState,
    project_id: Uuid,
    name: &str,
) -> Result<Vec<crate::domain::mcp::ListedTool>, ApiError> {
    let server = state
        .store
        .mcp_server(project_id, name)
        .await?
        .ok_or_else(|| ApiError::bad_request(format!("no MCP server named {name:?} in this project")))?;
    state
        .deps
        .tool_caller
        .mcp_tools(project_id, &server)
        .await
        .map_err(|e| ApiError::bad_request(format!("MCP server {name:?} could not list its tools: {e}")))
}

/// Checks the tools the service runs itself: a URL passes the outbound
/// guard (its scheme, and every address it names or resolves to now) and
/// needs the project's tool secret to sign its calls; an MCP tool needs
/// its server, which must list it.
pub async fn runnable(state: &AppState, project_id: Uuid, tools: &[ToolDef]) -> Result<(), ApiError> {
    use crate::domain::{codes::Code, tools::Run};
    let guard = state.deps.settings.outbound.guard();
    let mut signed = false;
    for tool in tools {
        match &tool.run {
            Run::Client => {}
            Run::Url(url) => {
                guard
                    .check_url_resolved(url)
                    .await
                    .map_err(|refused| ApiError::bad_request(format!("tool {:?}: {refused}", tool.name)))?;
                signed = true;
            }
            Run::Mcp { server, tool: named } => {
                let wanted = named.as_deref().unwrap_or(&tool.name);
                let listed = mcp_tools(state, project_id, server).await?;
                if !listed.iter().any(|t| t.name == wanted) {
                    return Err(ApiError::bad_request(format!(
                        "tool {:?}: MCP server {server:?} has no tool {wanted:?}",
                        tool.name
                    )));
                }
            }
        }
    }
    if signed && state.store.tool_secrets(project_id).await?.is_empty() {
        return Err(ApiError::new(
            Code::ToolSecretMissing,
            "a tool run at a URL is signed with the project's tool secret, which this project has not made yet \
             (POST /v1/projects/{pid}/tool-secret)",
        ));
    }
    Ok(())
}

/// The status of each of `ids`: generating here (the registry knows);
/// else awaiting input if its last answer waits (the database knows);
/// else in cluster mode generating on any node (a live lease held for an
/// answer); else idle.
async fn statuses(state: &AppState, ids: Vec<Uuid>) -> Result<Vec<ThreadStatus>, ApiError> {
    let here = match state.registry.send(Generating { thread_ids: ids.clone() }).await {
        Ok(here) => here,
        Err(_) => return Err(ThreadError::Unavailable.into()),
    };
    let anywhere = match state.deps.lease {
        Some(_) => state.store.answering(&ids).await?,
        None => Vec::new(),
    };
    let awaiting = state.store.awaiting(&ids).await?;
    Ok(ids
        .iter()
        .zip(here)
        .map(|(id, here)| match (here, awaiting.contains(id), anywhere.contains(id)) {
            (true, _, _) => ThreadStatus::Generating,
            // Stored awaiting input: a lease still held is the one its step
            // lets go, or a decision's being written. (A next step that
            // began on another node a moment ago is stored so within a
            // flush interval.)
            (false, true, _) => ThreadStatus::AwaitingInput,
            (false, false, true) => ThreadStatus::Generating,
            (false, false, false) => ThreadStatus::Idle,
        })
        .collect())
}

/// The thread, if it exists in that project; 404 otherwise.
pub async fn find(state: &AppState, project_id: Uuid, thread_id: Uuid) -> Result<Thread, ApiError> {
    state.store.get_thread(project_id, thread_id).await?.ok_or_else(|| ApiError::not_found("thread"))
}

#[utoipa::path(post, path = "/v1/projects/{pid}/threads", tag = "threads", params(("pid" = Uuid, Path, description = "Project id")), request_body = NewThread,
    responses((status = 201, description = "The new thread", body = ThreadView)))]
#[tracing::instrument(skip_all, fields(project_id = %path))]
pub async fn create(
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    body: web::Json<NewThread>,
) -> Result<HttpResponse, ApiError> {
    let project_id = *path;
    state.store.get_project(project_id).await?.ok_or_else(|| ApiError::not_found("project"))?;
    let NewThread { title, system, model, tools, tool_choice, mcp_servers } = body.into_inner();
    input::label("title", title.as_deref())?;
    input::model(model.as_deref())?;
    if let Some(system) = &system {
        input::text("system", system, state.deps.settings.limits.max_content_bytes)?;
    }
    check_tools(&state, project_id, &tools, tool_choice.as_ref(), &mcp_servers).await?;
    let settings = ThreadSettings { title, system, model, tools, tool_choice, mcp_servers };
    let thread = state.store.create_thread(project_id, settings).await?;
    Ok(HttpResponse::Created().json(ThreadView::new(thread, ThreadStatus::Idle)))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Page size, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u64>,
    /// `next_cursor` of the previous page.
    #[param(pattern = r"^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})?$")]
    cursor: Option<String>,
    /// Only threads whose title holds this text, in any case (`%` and `_`
    /// match themselves); empty: every thread. At most 200 characters.
    /// Pages the same way (pass `q` with each `cursor`).
    #[param(max_length = 200, pattern = r"^[^\x00]*$")]
    q: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct ThreadPage {
    data: Vec<ThreadView>,
    next_cursor: Option<String>,
}

#[utoipa::path(get, path = "/v1/projects/{pid}/threads", tag = "threads", params(("pid" = Uuid, Path, description = "Project id"), ListQuery),
    responses((status = 200, description = "Threads, newest first (with `q`: those whose title holds it)", body = ThreadPage)))]
#[tracing::instrument(skip_all, fields(project_id = %path))]
pub async fn list(
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let project_id = *path;
    let limit = clamp_limit(query.limit, 20, 100)?;
    let before = match query.cursor.as_deref() {
        None | Some("") => None,
        Some(c) => {
            Some(Uuid::try_parse(c).map_err(|_| ApiError::bad_request("`cursor` is not a cursor of this list"))?)
        }
    };
    input::label("q", query.q.as_deref())?;
    state.store.get_project(project_id).await?.ok_or_else(|| ApiError::not_found("project"))?;
    let (threads, next) = state.store.list_threads(project_id, limit, before, query.q.as_deref()).await?;
    let flags = statuses(&state, threads.iter().map(|t| t.id).collect()).await?;
    let data = threads.into_iter().zip(flags).map(|(t, s)| ThreadView::new(t, s)).collect();
    Ok(HttpResponse::Ok().json(ThreadPage { data, next_cursor: next.map(|id| id.to_string()) }))
}

#[utoipa::path(get, path = "/v1/projects/{pid}/threads/{tid}", tag = "threads", params(("pid" = Uuid, Path, description = "Project id"), ("tid" = Uuid, Path, description = "Thread id")),
    responses((status = 200, description = "The thread", body = ThreadView)))]
#[tracing::instrument(skip_all, fields(project_id = %path.0, thread_id = %path.1))]
pub async fn get(state: web::Data<AppState>, path: web::Path<(Uuid, Uuid)>) -> Result<HttpResponse, ApiError> {
    let thread = find(&state, path.0, path.1).await?;
    let flags = statuses(&state, vec![thread.id]).await?;
    Ok(HttpResponse::Ok().json(ThreadView::new(thread, flags.first().copied().unwrap_or(ThreadStatus::Idle))))
}

/// A PATCH of a thread: any of its settings. A field given as `null`
/// clears it (`title`, `system`, `model`, `tool_choice`); `tools` and
/// `mcp_servers` are replaced whole (`[]` clears them).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ThreadChange {
    #[serde(default, deserialize_with = "given")]
    #[schema(max_length = 200, pattern = r"^[^\x00]*$")]
    title: Option<Option<String>>,
    #[serde(default, deserialize_with = "given")]
    #[schema(pattern = r"^[^\x00]*$")]
    system: Option<Option<String>>,
    #[serde(default, deserialize_with = "given")]
    #[schema(min_length = 1, max_length = 200, pattern = r"^[^\x00]*[^\s\x00][^\x00]*$")]
    model: Option<Option<String>>,
    #[schema(max_items = 128)]
    tools: Option<Vec<ToolDef>>,
    #[serde(default, deserialize_with = "given")]
    tool_choice: Option<Option<ToolChoice>>,
    /// Replaces the thread's MCP servers (at most 16).
    #[schema(max_items = 16)]
    mcp_servers: Option<Vec<String>>,
}

/// A field that is present, `null` or not: `Some` (absent is `None`, by
/// `default`).
fn given<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[utoipa::path(patch, path = "/v1/projects/{pid}/threads/{tid}", tag = "threads", params(("pid" = Uuid, Path, description = "Project id"), ("tid" = Uuid, Path, description = "Thread id")), request_body = ThreadChange,
    responses((status = 200, description = "The thread as changed; every subscriber hears `thread.updated`", body = ThreadView)))]
#[tracing::instrument(skip_all, fields(project_id = %path.0, thread_id = %path.1))]
pub async fn update(
    state: web::Data<AppState>,
    path: web::Path<(Uuid, Uuid)>,
    body: web::Json<ThreadChange>,
) -> Result<HttpResponse, ApiError> {
    let ThreadChange { title, system, model, tools, tool_choice, mcp_servers } = body.into_inner();
    input::label("title", title.as_ref().and_then(Option::as_deref))?;
    input::model(model.as_ref().and_then(Option::as_deref))?;
    if let Some(Some(system)) = &system {
        input::text("system", system, state.deps.settings.limits.max_content_bytes)?;
    }
    let thread = find(&state, path.0, path.1).await?;
    // The tools as they will be, checked as one set with the choice.
    let new_tools = tools.as_ref().unwrap_or(&thread.tools);
    let new_choice = tool_choice.as_ref().map_or(thread.tool_choice.as_ref(), Option::as_ref);
    let servers = mcp_servers.as_deref().unwrap_or(&thread.mcp_servers);
    check_tools(&state, thread.project_id, new_tools, new_choice, servers).await?;
    let patch = ThreadPatch { title, system, model, tools, tool_choice, mcp_servers };
    let (project_id, thread_id) = (thread.project_id, thread.id);
    let updated = ask(&state.registry, thread_id, || UpdateThread { project_id, patch: patch.clone() }).await??;
    let flags = statuses(&state, vec![thread_id]).await?;
    Ok(HttpResponse::Ok().json(ThreadView::new(updated, flags.first().copied().unwrap_or(ThreadStatus::Idle))))
}

/// How long a DELETE waits for its write before it answers 503 (the
/// deletion itself goes on and completes when the database takes writes).
const DELETE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Stops the live actor (its subscribers get `thread_deleted`, a running
/// generation ends `cancelled`), then deletes the rows behind its last
/// writes, through the same write queue so the order holds. From the start
/// until the delete's write has an outcome, no actor starts for the thread
/// (`BeginDelete`): a request racing the deletion gets 404.
#[utoipa::path(delete, path = "/v1/projects/{pid}/threads/{tid}", tag = "threads", params(("pid" = Uuid, Path, description = "Project id"), ("tid" = Uuid, Path, description = "Thread id")),
    responses((status = 204, description = "Deleted; live subscribers got `thread_deleted`")))]
#[tracing::instrument(skip_all, fields(project_id = %path.0, thread_id = %path.1))]
pub async fn delete(state: web::Data<AppState>, path: web::Path<(Uuid, Uuid)>) -> Result<HttpResponse, ApiError> {
    let thread = find(&state, path.0, path.1).await?;
    if !state.deps.db_healthy.load(std::sync::atomic::Ordering::Relaxed) {
        return Err(ApiError::unavailable());
    }
    let registry = state.registry.clone();
    let mut op = WriteOp::DeleteThread(thread.id);
    if let Some(lease) = state.deps.lease {
        // Cluster mode: every node's actor of the thread stops (this one
        // tells the others), and the deletion seizes the thread's lease,
        // whoever holds it: a node still running an answer for it can
        // write nothing more (and has nothing left to write).
        if let Ok(Some(actor)) = registry.send(Lookup { thread_id: thread.id }).await {
            let _ = actor.send(Stop { reason: StopReason::Deleted }).await;
        }
        let owner = state.deps.node_id.clone();
        let epoch = state.store.seize_lease(thread.id, &owner, lease.as_millis() as u64).await?;
        op = WriteOp::Fenced(Fence { thread_id: thread.id, owner, epoch }, Box::new(op));
    }
    registry.send(BeginDelete { thread_id: thread.id }).await.map_err(|_| ApiError::unavailable())?;
    let (ack, done) = tokio::sync::oneshot::channel();
    state.deps.persistence.do_send(Write { ops: vec![op], ack: Some(ack) });
    // The deletion ends when its write does, even if this request gave up
    // waiting: only then may an actor start for the id again.
    let outcome = actix_web::rt::spawn(async move {
        let outcome = done.await;
        registry.do_send(EndDelete { thread_id: thread.id });
        outcome
    });
    match tokio::time::timeout(DELETE_WAIT, outcome).await {
        Ok(Ok(Ok(Ok(())))) => Ok(HttpResponse::NoContent().finish()),
        Ok(Ok(Ok(Err(e)))) => Err(e.into()),
        _ => Err(ApiError::unavailable()),
    }
}
