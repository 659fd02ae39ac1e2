//! The actors and who talks to whom.
//!
//! - `Registry` (one) finds or starts the `ThreadActor` of a thread on one
//!   of a fixed set of arbiters (chosen by a hash of the thread id), and
//!   forgets it when it stops.
//! - `ThreadActor` (one per live thread) owns the thread's conversation,
//!   at most one running generation and its fan-out. It publishes encoded
//!   frames without ever waiting for a subscriber.
//! - `SessionActor` (one per SSE, WebSocket or seed-route connection)
//!   reads the thread's fan-out at its transport's pace and catches up from
//!   its cursor when it falls behind.
//! - `PersistenceActor` (one) writes everything in one transaction per
//!   flush interval.
//!
//! HTTP handlers talk to the registry and thread actors; thread actors talk
//! to the persistence actor and the registry; sessions talk to their thread
//! actor. Nothing here names a sea-orm type: only `store/` does.

pub mod persistence;
pub mod registry;
pub mod session;
pub mod thread;

use std::sync::Arc;

use actix::Addr;

use crate::{config::Settings, metrics::Metrics, model::Provider, store::Store};

/// What every thread actor needs, shared.
pub struct Deps {
    pub store: Store,
    pub persistence: Addr<persistence::PersistenceActor>,
    pub provider: Arc<dyn Provider>,
    pub metrics: Arc<Metrics>,
    pub settings: Arc<Settings>,
    /// Whether the last write reached the database (see `PersistenceActor`).
    pub db_healthy: Arc<std::sync::atomic::AtomicBool>,
    /// This process's name among nodes sharing the database.
    pub node_id: String,
    /// Rate and concurrency allowances (generations hold their slot).
    pub capacity: Arc<crate::capacity::Capacity>,
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
}

impl From<ThreadError> for crate::error::ApiError {
    fn from(e: ThreadError) -> Self {
        use crate::error::{ApiError, Code};
        match e {
            ThreadError::Busy => ApiError::new(Code::ThreadBusy, e.to_string()),
            ThreadError::NotGenerating => ApiError::new(Code::NotGenerating, e.to_string()),
            ThreadError::NotFound => ApiError::not_found("thread"),
            ThreadError::Unavailable | ThreadError::ShuttingDown => ApiError::new(Code::Unavailable, e.to_string()),
            ThreadError::Refused(refusal) => refusal.into(),
        }
    }
}
