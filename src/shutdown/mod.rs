//! The process's one ordered shutdown (SIGTERM/SIGINT, or
//! `AppHandle::shutdown`), in five steps, all within `--shutdown-grace-ms`
//! from the signal:
//!
//! 1. **Stop taking work.** `/readyz` answers 503 and every new question
//!    (REST, WebSocket `send`, the seed route, a chat turn) gets 503
//!    `unavailable` at once, so a load balancer moves traffic elsewhere.
//!    Subscribers may still join: they watch the answers that go on.
//! 2. **Let running answers end**, until the grace minus
//!    `--shutdown-reserve-ms`.
//! 3. **End what is left** `interrupted` (text kept), and tell every
//!    subscriber `shutting_down`; in cluster mode the node's last frames
//!    and its presence entries leave Redis; the last writes are committed.
//! 4. **Let readers drain.** The listener closes, idle connections close,
//!    and a stream's connection closes once its client has read its
//!    closing event: every connection lingers after its last byte
//!    (`linger::Lingering`) until its peer closes it too, so a reader
//!    that is far behind still gets its `shutting_down` when it reads on
//!    (closing with unread input would reset the connection and throw away
//!    what the peer's kernel still held).
//! 5. **Exit**, as soon as the last connection closed, or at the grace.
//!
//! `Shutdown` is the state those steps share with the rest of the process:
//! whether it is draining, its deadline, and the open connections.

pub mod linger;

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc, OnceLock,
};

use tokio::{sync::Notify, time::Instant};

/// Shared by the HTTP layer, the thread actors and the shutdown itself.
#[derive(Debug)]
pub struct Shutdown {
    /// Set once, when the shutdown begins: by when it must be over.
    deadline: OnceLock<Instant>,
    /// Accepted connections not yet closed.
    connections: AtomicUsize,
    /// Woken when the last connection closes.
    all_closed: Notify,
    /// The shutdown is over (its last step done).
    over: tokio::sync::watch::Sender<bool>,
}

impl Shutdown {
    pub fn new() -> Arc<Shutdown> {
        Arc::new(Shutdown {
            deadline: OnceLock::new(),
            connections: AtomicUsize::new(0),
            all_closed: Notify::new(),
            over: tokio::sync::watch::channel(false).0,
        })
    }

    /// The shutdown's last step is done: the process may exit.
    pub fn finish(&self) {
        self.over.send_replace(true);
    }

    /// Resolves once the shutdown is over.
    pub async fn finished(&self) {
        let mut over = self.over.subscribe();
        let _ = over.wait_for(|done| *done).await;
    }

    /// Begins the shutdown (step 1): from now on the process takes no new
    /// work. Its deadline; a second call keeps the first.
    pub fn begin(&self, grace: std::time::Duration) -> Instant {
        *self.deadline.get_or_init(|| Instant::now() + grace)
    }

    /// Whether the shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.deadline.get().is_some()
    }

    /// By when the shutdown must be over, once it has begun.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline.get().copied()
    }

    /// Counts an accepted connection until the returned guard is dropped.
    pub fn connection(self: &Arc<Self>) -> ConnectionGuard {
        self.connections.fetch_add(1, Ordering::AcqRel);
        ConnectionGuard(self.clone())
    }

    /// Accepted connections not yet closed.
    pub fn open_connections(&self) -> usize {
        self.connections.load(Ordering::Acquire)
    }

    /// Resolves once no accepted connection is open.
    pub async fn connections_closed(&self) {
        loop {
            let notified = self.all_closed.notified();
            if self.open_connections() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// One open connection, counted by its `Shutdown` until dropped.
#[derive(Debug)]
pub struct ConnectionGuard(Arc<Shutdown>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        if self.0.connections.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.all_closed.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures_util::FutureExt;

    use super::*;

    #[tokio::test]
    async fn the_wait_for_connections_ends_with_the_last_one() {
        let shutdown = Shutdown::new();
        let (a, b) = (shutdown.connection(), shutdown.connection());
        let mut closed = Box::pin(shutdown.connections_closed());
        assert!(closed.as_mut().now_or_never().is_none());
        drop(a);
        assert!(closed.as_mut().now_or_never().is_none(), "one is still open");
        drop(b);
        closed.await;
        assert_eq!(shutdown.open_connections(), 0);
    }

    #[tokio::test]
    async fn the_deadline_is_set_once() {
        let shutdown = Shutdown::new();
        assert!(!shutdown.is_draining());
        let first = shutdown.begin(Duration::from_secs(5));
        let second = shutdown.begin(Duration::from_secs(50));
        assert_eq!(first, second);
        assert!(shutdown.is_draining());
    }
}
