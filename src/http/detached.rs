//! Work of a socket's actor that must not be dropped with it: a socket
//! (a chat WebSocket, a project socket) runs what a frame asks (database
//! queries, asking a thread) as a task of its worker's runtime and awaits
//! only the answer (`detached`).

use crate::error::ApiError;

/// `work` run as a task of the worker's runtime, its answer awaited here.
/// A socket that closes (or a worker that stops) drops only the waiting:
/// the work, with any database query in it, ends on the runtime, which
/// drops its tasks inside its own context. (Dropped with the socket's
/// actor instead, a query's connection was returned to its pool by
/// spawning outside any runtime context: sqlx panics there, and that
/// panic in a destructor aborted the process.)
pub async fn detached<T: Send + 'static>(
    work: impl std::future::Future<Output = Result<T, ApiError>> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn(work).await.unwrap_or_else(|_| Err(ApiError::unavailable()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_left_on_a_stopped_worker_is_dropped_with_a_runtime_context() {
        // An HTTP worker's thread: actix's own runtime, as actix-server
        // makes it.
        let had = crate::testing::context_at_drop(actix_rt::Arbiter::new, |witness| async move {
            let _ = detached(async move {
                let _held = witness;
                std::future::pending::<Result<(), ApiError>>().await
            })
            .await;
        });
        assert!(had, "dropped without a runtime context");
    }
}
