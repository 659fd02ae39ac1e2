//! Operations: `/admin/stats`, `/admin/threads[/{tid}]`, `/metrics`,
//! `/healthz`, `/readyz`.

use actix_web::{web, HttpResponse};
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use super::AppState;
use crate::{
    actors::{
        registry::{ListThreads, Peek},
        thread::{StatusReport, Stop, StopReason, ThreadStatusQuery},
        ThreadError,
    },
    error::{ApiError, Code},
};

#[utoipa::path(get, path = "/admin/stats", tag = "admin",
    responses((status = 200, description = "Counters of actors, subscribers, chunks and persistence", body = serde_json::Value)))]
pub async fn stats(state: web::Data<AppState>) -> HttpResponse {
    let m = &state.deps.metrics;
    let batches = m.persistence_batches.get();
    let rows = m.persistence_rows.get();
    let (sse, ws) = (m.subscribers_sse.get(), m.subscribers_ws.get());
    let pending = state.deps.capacity.ws_budget();
    HttpResponse::Ok().json(json!({
        "uptime_secs": m.started_at.elapsed().as_secs_f64(),
        "provider": state.deps.provider.name(),
        "threads": { "live": m.threads_live.get(), "generating": m.threads_generating.get() },
        "subscribers": { "sse": sse, "ws": ws, "total": sse + ws },
        "chunks": { "in": m.chunks_in.get(), "out": m.chunks_out.get() },
        "slow_consumers": m.slow_consumers.get(),
        "catch_ups": m.catch_ups.get(),
        // What unfinished WebSocket messages of all sockets hold now, the
        // most they ever held at once, and their cap (0: none).
        "websocket_pending": {
            "held_bytes": pending.held(),
            "peak_bytes": pending.peak(),
            "cap_bytes": pending.cap(),
        },
        "persistence": {
            "queue_depth": m.persistence_queue_depth.get(),
            "batches": batches,
            "transactions": m.persistence_transactions.get(),
            "rows": rows,
            "rows_per_batch": if batches == 0 { 0.0 } else { rows as f64 / batches as f64 },
            "last_batch_rows": m.persistence_last_batch_rows.get(),
            "last_batch_ms": m.persistence_last_batch_seconds.get() * 1000.0,
            "failures": m.persistence_failures.get(),
        },
        // Notification deliveries: pending in the outbox (of every node),
        // the oldest one's age, and what this node sent.
        "outbox": {
            "depth": m.outbox_depth.get(),
            "oldest_pending_secs": m.outbox_oldest_seconds.get(),
            "sent": m.notifications_sent.get(),
            "failed": m.notifications_failed.get(),
            "retried": m.notifications_retried.get(),
            "in_flight": m.notifications_in_flight.get(),
        },
    }))
}

/// The live thread actors.
#[derive(Serialize, utoipa::ToSchema)]
struct LiveThreads {
    data: Vec<StatusReport>,
}

#[utoipa::path(get, path = "/admin/threads", tag = "admin",
    responses((status = 200, description = "Every live thread actor", body = LiveThreads)))]
pub async fn threads(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let rows = state.registry.send(ListThreads).await.map_err(|_| ApiError::from(ThreadError::Unavailable))?;
    Ok(HttpResponse::Ok().json(LiveThreads { data: rows }))
}

/// A live thread actor, and in cluster mode who owns the thread.
#[derive(Serialize, utoipa::ToSchema)]
struct ThreadDetail {
    #[serde(flatten)]
    report: StatusReport,
    /// Cluster mode: the node holding the thread's lease (while an answer
    /// runs), and the lease's epoch (fencing token).
    owner_node: Option<String>,
    epoch: Option<u64>,
    /// Cluster mode: why the lease is unknown (the database did not
    /// answer in time).
    #[serde(skip_serializing_if = "Option::is_none")]
    lease_error: Option<String>,
}

#[utoipa::path(get, path = "/admin/threads/{tid}", tag = "admin", params(("tid" = Uuid, Path, description = "Thread id")),
    responses((status = 200, description = "The live thread actor", body = ThreadDetail)))]
pub async fn thread(state: web::Data<AppState>, path: web::Path<Uuid>) -> Result<HttpResponse, ApiError> {
    let actor = state
        .registry
        .send(Peek { thread_id: *path })
        .await
        .ok()
        .flatten()
        .ok_or_else(|| ApiError::not_found("live thread actor"))?;
    let report = bounded(actor.send(ThreadStatusQuery), "the thread actor")
        .await?
        .map_err(|_| ApiError::not_found("live thread actor"))?;
    // The actor's view is there even while the database is not: the
    // lease is then unknown, and the answer says why.
    let (lease, lease_error) = match state.deps.lease {
        Some(_) => match bounded(state.store.lease_of(*path), "the database").await {
            Ok(Ok(lease)) => (lease, None),
            Ok(Err(e)) => (None, Some(format!("the database: {e}"))),
            Err(e) => (None, Some(e.message)),
        },
        None => (None, None),
    };
    let (owner_node, epoch) = match lease {
        Some(l) if l.live => (Some(l.owner), Some(l.epoch)),
        Some(l) => (None, Some(l.epoch)),
        None => (None, None),
    };
    Ok(HttpResponse::Ok().json(ThreadDetail { report, owner_node, epoch, lease_error }))
}

/// How long an operations answer waits for one part of the service: a
/// probe or an operator must hear within a second what is wrong.
const ANSWER_WITHIN: std::time::Duration = std::time::Duration::from_millis(800);

/// `work`, or 503 naming `what` did not answer in time.
async fn bounded<T>(work: impl std::future::Future<Output = T>, what: &str) -> Result<T, ApiError> {
    tokio::time::timeout(ANSWER_WITHIN, work).await.map_err(|_| {
        ApiError::new(Code::Unavailable, format!("{what} does not answer within {} ms", ANSWER_WITHIN.as_millis()))
    })
}

/// A node of the cluster and how many threads it owns now.
#[derive(Serialize, utoipa::ToSchema)]
struct NodeRow {
    node_id: String,
    threads_owned: u64,
}

/// The cluster as this node sees it.
#[derive(Serialize, utoipa::ToSchema)]
struct ClusterView {
    /// This node.
    node_id: String,
    /// Whether this node runs in cluster mode (`--redis-url`).
    clustered: bool,
    /// Nodes whose heartbeat is recent (three leases), with their threads.
    nodes: Vec<NodeRow>,
    /// Whether Redis answers this node.
    redis: Option<bool>,
}

#[utoipa::path(get, path = "/admin/cluster", tag = "admin",
    responses((status = 200, description = "This node, the live nodes and the threads each owns", body = ClusterView)))]
pub async fn cluster(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let node_id = state.deps.node_id.clone();
    let Some(bus) = &state.bus else {
        let nodes = vec![NodeRow { node_id: node_id.clone(), threads_owned: 0 }];
        return Ok(HttpResponse::Ok().json(ClusterView { node_id, clustered: false, nodes, redis: None }));
    };
    let lease = state.deps.lease.unwrap_or_default();
    let within = (lease * crate::actors::sweeper::LIVE_WITHIN).as_millis() as u64;
    let read = async {
        Ok::<_, crate::store::StoreError>((state.store.live_nodes(within).await?, state.store.leases_by_owner().await?))
    };
    let (live, owned) = bounded(read, "the database").await??;
    let owned: std::collections::HashMap<String, u64> = owned.into_iter().collect();
    let nodes =
        live.into_iter().map(|n| NodeRow { threads_owned: owned.get(&n).copied().unwrap_or(0), node_id: n }).collect();
    let redis = Some(bus.ping().await.is_ok());
    Ok(HttpResponse::Ok().json(ClusterView { node_id, clustered: true, nodes, redis }))
}

/// Stops a live thread actor; its generation ends `cancelled`.
#[utoipa::path(delete, path = "/admin/threads/{tid}", tag = "admin", params(("tid" = Uuid, Path, description = "Thread id")),
    responses((status = 204, description = "Stopped; its subscribers were told, a running answer ended `cancelled`")))]
pub async fn stop_thread(state: web::Data<AppState>, path: web::Path<Uuid>) -> Result<HttpResponse, ApiError> {
    let actor = state
        .registry
        .send(Peek { thread_id: *path })
        .await
        .ok()
        .flatten()
        .ok_or_else(|| ApiError::not_found("live thread actor"))?;
    let _ = actor.send(Stop { reason: StopReason::Stopped }).await;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(state.deps.metrics.render())
}

/// A probe's answer.
#[derive(Serialize, utoipa::ToSchema)]
struct Health {
    status: &'static str,
}

#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process is up", body = Health)))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "ok" })
}

/// Ready when the database answers within 800 ms and takes writes
/// (the persistence actor's last write, or its probe, went through), and
/// not once a shutdown has begun.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "The database answers and takes writes", body = Health)))]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if state.deps.shutdown.is_draining() {
        return Err(ApiError::new(Code::Unavailable, "the service is shutting down"));
    }
    if !state.deps.db_healthy.load(std::sync::atomic::Ordering::Relaxed) {
        return Err(ApiError::new(Code::Unavailable, "the database does not take writes"));
    }
    // Both checks at once, each bounded: the answer comes within a second
    // and names what is wrong.
    let redis = async {
        match &state.bus {
            Some(bus) => bounded(bus.ping(), "redis (the cluster's link)").await.map(|r| r.is_ok()),
            None => Ok(true),
        }
    };
    let database = bounded(state.store.ping(), "the database");
    let (redis, database) = tokio::join!(redis, database);
    match redis {
        Ok(true) => {}
        Ok(false) => return Err(ApiError::new(Code::Unavailable, "redis (the cluster's link) does not answer")),
        Err(e) => return Err(e),
    }
    match database {
        Ok(Ok(())) => Ok(HttpResponse::Ok().json(Health { status: "ready" })),
        Ok(Err(e)) => {
            tracing::warn!(error.message = %e, "readiness: database unreachable");
            Err(ApiError::new(Code::Unavailable, "the database does not answer"))
        }
        Err(e) => Err(e),
    }
}
