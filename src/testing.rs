//! What unit tests of several modules share (built for tests only).

use std::{
    future::Future,
    sync::{
        atomic::{AtomicU8, Ordering},
        Arc,
    },
    time::Duration,
};

use actix_rt::Arbiter;

/// Notes, when dropped, whether a Tokio runtime context was there (as a
/// database query's connection needs one to go back to its pool).
pub struct Witness(Arc<AtomicU8>);

impl Drop for Witness {
    fn drop(&mut self) {
        let had = tokio::runtime::Handle::try_current().is_ok();
        self.0.store(if had { 1 } else { 2 }, Ordering::SeqCst);
    }
}

/// Runs the future `hold` makes (given a `Witness` to hold, and never
/// ending) on a thread made by `arbiter`, stops that thread, and says
/// whether the witness was dropped with a runtime context. Panics if the
/// thread panicked.
pub fn context_at_drop<F, Fut>(arbiter: impl FnOnce() -> Arbiter, hold: F) -> bool
where
    F: FnOnce(Witness) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let seen = Arc::new(AtomicU8::new(0));
    let work = hold(Witness(seen.clone()));
    actix_rt::System::new().block_on(async move {
        let thread = arbiter();
        thread.spawn(work);
        tokio::time::sleep(Duration::from_millis(50)).await;
        thread.stop();
        let joined = tokio::task::spawn_blocking(move || thread.join()).await;
        assert!(matches!(joined, Ok(Ok(()))), "the thread ended without a panic");
    });
    match seen.load(Ordering::SeqCst) {
        0 => panic!("the witness was never dropped"),
        seen => seen == 1,
    }
}
