//! The actors and who talks to whom.
//!
//! - `Registry` (one) finds or starts the `ThreadActor` of a thread on one
//!   of a fixed set of arbiters (chosen by a hash of the thread id), and
//!   forgets it when it stops.
//! - `ThreadActor` (one per live thread) orchestrates the thread's
//!   conversation (`domain::conversation`), at most one running generation
//!   and its fan-out. It publishes encoded frames without ever waiting for
//!   a subscriber.
//! - `SessionActor` (one per SSE, WebSocket or seed-route connection) does
//!   a subscriber's control work: subscribing, writing its replay, catching
//!   up when it falls behind, closing it, reading WebSocket input. The
//!   chunks themselves go from the thread's fan-out to the subscriber's
//!   pipe through its worker's relay (`delivery::relay`), not through it.
//! - `PersistenceActor` (one) writes everything in one transaction per
//!   flush interval.
//! - `Sweeper` (one, cluster mode only) writes the node's heartbeat and has
//!   answers whose owner died taken over.
//!
//! HTTP handlers talk to the registry and thread actors; thread actors talk
//! to the persistence actor and the registry; sessions talk to their thread
//! actor. Nothing here names a sea-orm type: only `store/` does.

pub mod persistence;
pub mod registry;
pub mod session;
pub mod sweeper;
pub mod thread;

use std::sync::Arc;

use actix::Addr;

use crate::{config::Settings, metrics::Metrics, model::Provider, store::Store};

/// What every thread actor needs, shared.
pub struct Deps {
    pub store: Store,
    pub persistence: Addr<persistence::PersistenceActor>,
    pub provider: Arc<dyn Provider>,
    /// Makes the calls of tools the service runs itself.
    pub tool_caller: Arc<crate::tool_calls::ToolCaller>,
    pub metrics: Arc<Metrics>,
    pub settings: Arc<Settings>,
    /// Whether the last write reached the database (see `PersistenceActor`).
    pub db_healthy: Arc<std::sync::atomic::AtomicBool>,
    /// This process's name among nodes sharing the database.
    pub node_id: String,
    /// Cluster mode: how long a thread's lease lasts unrenewed (`None`:
    /// one node, no leases).
    pub lease: Option<std::time::Duration>,
    /// Where each thread actor gets its fan-out.
    pub fanouts: Arc<dyn crate::broadcast::Fanouts>,
    /// Rate and concurrency allowances (generations hold their slot).
    pub capacity: Arc<crate::capacity::Capacity>,
    /// The process's shutdown: once it begins, no new answer starts.
    pub shutdown: Arc<crate::shutdown::Shutdown>,
    /// One node: threads whose answer the last run left streaming (a
    /// crash), to be continued by their actor as it loads; each is taken
    /// once.
    pub cut_at_start: std::sync::Mutex<std::collections::HashSet<uuid::Uuid>>,
}

impl Deps {
    /// Whether `thread_id`'s answer was left streaming by the last run
    /// (then it is no longer listed).
    pub fn take_cut_at_start(&self, thread_id: uuid::Uuid) -> bool {
        self.cut_at_start.lock().unwrap_or_else(|p| p.into_inner()).remove(&thread_id)
    }
}

/// Errors of thread operations, each one of the contract's codes.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ThreadError {
    #[error("a generation is already running on this thread")]
    Busy,
    #[error("no generation is running on this thread")]
    NotGenerating,
    #[error("thread not found")]
    NotFound,
    #[error("the thread actor is not available")]
    Unavailable,
    #[error("the service is shutting down")]
    ShuttingDown,
    #[error(transparent)]
    Refused(#[from] crate::capacity::Refusal),
    /// A question's own tools do not fit with the thread's.
    #[error("{0}")]
    BadTools(String),
    /// A regenerate on a thread with no question to ask again.
    #[error("the thread has no user message to ask again: post a question with `content` first")]
    NothingToAsk,
}

impl ThreadError {
    /// The contract's code of this error (the one place it is decided;
    /// `error::ApiError` and the sessions' `error` events both use it).
    pub fn code(&self) -> crate::domain::codes::Code {
        use crate::domain::codes::Code;
        match self {
            ThreadError::Busy => Code::ThreadBusy,
            ThreadError::NotGenerating => Code::NotGenerating,
            ThreadError::NotFound => Code::NotFound,
            ThreadError::Unavailable | ThreadError::ShuttingDown => Code::Unavailable,
            ThreadError::Refused(refusal) => refusal.code(),
            ThreadError::BadTools(_) | ThreadError::NothingToAsk => Code::BadRequest,
        }
    }

    /// A database failure, as a thread operation's error.
    pub fn from_store(e: &crate::store::StoreError) -> ThreadError {
        tracing::warn!(error.message = %e, "a thread operation could not reach the database");
        ThreadError::Unavailable
    }
}
