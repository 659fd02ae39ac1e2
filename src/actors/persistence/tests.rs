//! The persistence actor against a real SQLite store.
use super::*;
use crate::{
    config::DatabaseSettings,
    domain::{new_id, Block, MessageStatus, Role, Usage},
};

fn message(thread_id: Uuid, position: i64, text: &str) -> Message {
    Message {
        id: new_id(),
        thread_id,
        position,
        role: Role::Assistant,
        blocks: vec![Block::text(text.to_owned())],
        status: MessageStatus::Streaming,
        model: None,
        stop_reason: None,
        usage: Usage::default(),
        error: None,
        created_at: chrono::Utc::now(),
        completed_at: None,
        calls: Vec::new(),
        tools: Vec::new(),
        exact_end: false,
        continuations: 0,
        touched_at: None,
        handed_over: false,
        restart_seam: None,
    }
}

/// A persistence actor flushing every `flush_interval_ms` over a fresh
/// SQLite store that holds one thread.
struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
    thread: crate::domain::Thread,
    metrics: Arc<Metrics>,
    healthy: Arc<AtomicBool>,
    actor: Addr<PersistenceActor>,
}

async fn fixture(flush_interval_ms: u64) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let settings = DatabaseSettings {
        database_url: None,
        data_dir: dir.path().into(),
        flush_interval_ms,
        db_max_connections: 2,
        db_min_connections: 1,
    };
    let store = Store::connect(&settings).await.unwrap();
    let project = store.create_project("p").await.unwrap();
    let thread = store.create_thread(project.id, Default::default()).await.unwrap();
    let metrics = Arc::new(Metrics::new());
    let healthy = Arc::new(AtomicBool::new(true));
    let actor =
        PersistenceActor::new(store.clone(), metrics.clone(), healthy.clone(), "n".into(), settings.flush_interval())
            .start();
    Fixture { _dir: dir, store, thread, metrics, healthy, actor }
}

#[actix_rt::test]
async fn a_refused_row_is_set_aside_alone_in_the_next_interval() {
    let Fixture { store, thread, metrics, healthy, actor, _dir } = fixture(20).await;
    let (good_ack, good) = oneshot::channel();
    let (bad_ack, bad) = oneshot::channel();
    let mut streaming = message(thread.id, 0, "kept");
    actor.do_send(Write { ops: vec![WriteOp::Insert(streaming.clone())], ack: Some(good_ack) });
    // Its thread does not exist: the database refuses this one row.
    actor.do_send(Write { ops: vec![WriteOp::Insert(message(new_id(), 0, "orphan"))], ack: Some(bad_ack) });
    streaming.blocks[0].text.push_str(" and more");
    actor.do_send(Checkpoint { message: streaming.clone(), fence: None });
    assert!(matches!(bad.await.unwrap(), Err(WriteError::Rejected(_))));
    good.await.unwrap().unwrap();
    actor.send(Drain).await.unwrap();
    let stored = store.all_messages(thread.id).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].blocks[0].text, "kept and more", "the newest state landed");
    assert_eq!(metrics.persistence_rows_rejected.get(), 1);
    assert!(healthy.load(Ordering::Relaxed), "a refused row says nothing of the database's health");
}

/// A write someone waits for does not wait for the flush timer that
/// checkpoints armed: with a one-second interval it is committed right
/// after the transaction before it, not a second later; checkpoints alone
/// still wait for the interval.
#[actix_rt::test]
async fn a_write_someone_waits_for_goes_out_before_the_interval() {
    let Fixture { store, thread, actor, _dir, .. } = fixture(1000).await;
    // The first write of an idle queue goes out at once; the interval
    // starts with it.
    let first = message(thread.id, 0, "first");
    let (ack, done) = oneshot::channel();
    actor.do_send(Write { ops: vec![WriteOp::Insert(first.clone())], ack: Some(ack) });
    done.await.unwrap().unwrap();
    // A checkpoint arms the timer for the rest of the interval...
    let mut streaming = first.clone();
    streaming.blocks[0].text.push_str(" and more");
    actor.do_send(Checkpoint { message: streaming, fence: None });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(store.all_messages(thread.id).await.unwrap()[0].blocks[0].text, "first", "checkpoints wait");
    // ...which a waited-for write does not wait out (and takes the
    // checkpoint with it).
    let started = Instant::now();
    let (ack, done) = oneshot::channel();
    actor.do_send(Write { ops: vec![WriteOp::Insert(message(thread.id, 1, "second"))], ack: Some(ack) });
    done.await.unwrap().unwrap();
    assert!(started.elapsed() < Duration::from_millis(500), "waited {:?}", started.elapsed());
    let stored = store.all_messages(thread.id).await.unwrap();
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0].blocks[0].text, "first and more");
}
