//! Slow subscribers: one that stops reading must not hold up the
//! generation or other subscribers, must not grow a queue on the server,
//! and ends byte-exact once it reads again (catching up with coalesced
//! deltas); one that stays stuck too long is closed with `slow_consumer`
//! and resumes from its cursor.

use crate::support::{database_url, Events as _, RawSse, Server, Transcript};

/// Large chunks, so a client that does not read fills every buffer on the
/// way (its socket, the HTTP client's, the session's channel) and then the
/// thread's small ring.
const BIG: &[&str] = &[
    "--sim-chunks",
    "200",
    "--sim-chunk-chars",
    "4000",
    "--sim-interval-ms",
    "2",
    "--broadcast-capacity",
    "8",
    "--socket-send-buffer",
    "8192",
    "--flush-interval-ms",
    "500",
];

#[actix_web::test]
async fn a_stalled_reader_does_not_delay_others_and_catches_up_byte_exact() {
    let dir = tempfile::tempdir().unwrap();
    let db = database_url(dir.path()).await;
    let server = Server::start(&db, BIG).await;
    let thread = server.thread().await;
    let mut slow = RawSse::open(&server.base, &format!("{thread}/events"), None).await;
    let mut fast = server.sse(&thread, None).await;
    assert_eq!(slow.next().await.unwrap().kind, "ready");

    let id = server.ask(&thread, "a long answer").await;
    // The fast reader gets the whole answer while the slow one reads nothing.
    let mut fast_t = Transcript::default();
    fast_t.apply_all(&fast.until("message.completed").await);
    let stored = server.finished(&thread, &id).await;
    fast_t.assert_matches(&stored);

    // Now the slow reader reads: everything arrives, exactly once.
    let mut slow_t = Transcript::default();
    slow_t.apply_all(&slow.until("message.completed").await);
    slow_t.assert_matches(&stored);
    let stats = server.get_json("/admin/stats").await;
    assert!(stats["catch_ups"].as_u64().unwrap() >= 1, "the slow reader caught up from its cursor: {stats}");
    assert_eq!(stats["slow_consumers"], 0);
}

#[actix_web::test]
async fn a_reader_stuck_too_long_is_closed_as_slow_consumer_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let db = database_url(dir.path()).await;
    let mut args = BIG.to_vec();
    args.extend(["--slow-consumer-ms", "300"]);
    let server = Server::start(&db, &args).await;
    let thread = server.thread().await;
    let mut slow = RawSse::open(&server.base, &format!("{thread}/events"), None).await;
    assert_eq!(slow.next().await.unwrap().kind, "ready");
    let id = server.ask(&thread, "a long answer").await;
    let stored = server.finished(&thread, &id).await;
    crate::support::eventually(|| async {
        (server.get_json("/admin/stats").await["slow_consumers"] == 1).then_some(())
    })
    .await;

    // What was buffered arrives, then the error, then the end.
    let mut t = Transcript::default();
    let mut closed_with = None;
    while let Some(ev) = slow.next().await {
        if ev.kind == "error" {
            closed_with = Some(ev.data["code"].as_str().unwrap().to_owned());
            continue;
        }
        t.apply(&ev);
    }
    assert_eq!(closed_with.as_deref(), Some("slow_consumer"));
    let cursor = t.last_id.clone().expect("some frames arrived before the close");

    let mut again = server.sse(&thread, Some(&cursor)).await;
    t.apply_all(&again.until("message.completed").await);
    t.assert_matches(&stored);
}
