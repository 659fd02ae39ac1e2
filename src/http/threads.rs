//! Threads: create, list (newest first, cursor paging), get, delete.
//! A thread's `status` is not stored: it is `generating` while its live
//! actor runs a generation, which the registry knows.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{clamp_limit, AppState};
use crate::{
    actors::{
        persistence::Write,
        registry::{Generating, Peek},
        thread::{Stop, StopReason},
        ThreadError,
    },
    domain::{event::ThreadStatus, Thread},
    error::ApiError,
    store::WriteOp,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewThread {
    title: Option<String>,
    system: Option<String>,
    model: Option<String>,
}

/// A thread as the contract shows it.
#[derive(Serialize)]
pub struct ThreadView {
    id: Uuid,
    project_id: Uuid,
    title: Option<String>,
    system: Option<String>,
    model: Option<String>,
    status: ThreadStatus,
    created_at: chrono::DateTime<chrono::Utc>,
    updated_at: chrono::DateTime<chrono::Utc>,
}

impl ThreadView {
    fn new(t: Thread, generating: bool) -> Self {
        ThreadView {
            id: t.id,
            project_id: t.project_id,
            title: t.title,
            system: t.system,
            model: t.model,
            status: if generating { ThreadStatus::Generating } else { ThreadStatus::Idle },
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }
}

async fn generating(state: &AppState, ids: Vec<Uuid>) -> Result<Vec<bool>, ApiError> {
    state.registry.send(Generating { thread_ids: ids }).await.map_err(|_| ThreadError::Unavailable.into())
}

/// The thread, if it exists in that project; 404 otherwise.
pub async fn find(state: &AppState, project_id: Uuid, thread_id: Uuid) -> Result<Thread, ApiError> {
    state.store.get_thread(project_id, thread_id).await?.ok_or_else(|| ApiError::not_found("thread"))
}

#[tracing::instrument(skip_all, fields(project_id = %path))]
pub async fn create(
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    body: web::Json<NewThread>,
) -> Result<HttpResponse, ApiError> {
    let project_id = *path;
    state.store.get_project(project_id).await?.ok_or_else(|| ApiError::not_found("project"))?;
    let NewThread { title, system, model } = body.into_inner();
    let thread = state.store.create_thread(project_id, title, system, model).await?;
    Ok(HttpResponse::Created().json(ThreadView::new(thread, false)))
}

#[derive(Deserialize)]
pub struct ListQuery {
    limit: Option<u64>,
    cursor: Option<String>,
}

#[derive(Serialize)]
struct ThreadPage {
    data: Vec<ThreadView>,
    next_cursor: Option<String>,
}

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
    state.store.get_project(project_id).await?.ok_or_else(|| ApiError::not_found("project"))?;
    let (threads, next) = state.store.list_threads(project_id, limit, before).await?;
    let flags = generating(&state, threads.iter().map(|t| t.id).collect()).await?;
    let data = threads.into_iter().zip(flags).map(|(t, g)| ThreadView::new(t, g)).collect();
    Ok(HttpResponse::Ok().json(ThreadPage { data, next_cursor: next.map(|id| id.to_string()) }))
}

#[tracing::instrument(skip_all, fields(project_id = %path.0, thread_id = %path.1))]
pub async fn get(state: web::Data<AppState>, path: web::Path<(Uuid, Uuid)>) -> Result<HttpResponse, ApiError> {
    let thread = find(&state, path.0, path.1).await?;
    let flags = generating(&state, vec![thread.id]).await?;
    Ok(HttpResponse::Ok().json(ThreadView::new(thread, flags.first().copied().unwrap_or(false))))
}

/// Stops the live actor (its subscribers get `thread_deleted`, a running
/// generation ends `cancelled`), then deletes the rows behind its last
/// writes, through the same write queue so the order holds.
#[tracing::instrument(skip_all, fields(project_id = %path.0, thread_id = %path.1))]
pub async fn delete(state: web::Data<AppState>, path: web::Path<(Uuid, Uuid)>) -> Result<HttpResponse, ApiError> {
    let thread = find(&state, path.0, path.1).await?;
    if let Ok(Some(actor)) = state.registry.send(Peek { thread_id: thread.id }).await {
        let _ = actor.send(Stop { reason: StopReason::Deleted }).await;
    }
    let (ack, done) = tokio::sync::oneshot::channel();
    state.deps.persistence.do_send(Write { ops: vec![WriteOp::DeleteThread(thread.id)], ack: Some(ack) });
    match done.await {
        Ok(Ok(())) => Ok(HttpResponse::NoContent().finish()),
        Ok(Err(e)) => Err(super::messages::write_error(e)),
        Err(_) => Err(ApiError::unavailable()),
    }
}
