//! Slow subscribers: one that stops reading must not hold up the
//! generation or other subscribers, must not grow a queue on the server,
//! and ends byte-exact once it reads again (catching up with coalesced
//! deltas); one that stays stuck too long, over SSE or WebSocket, is
//! closed with `slow_consumer` and resumes from its cursor.

use crate::support::{eventually, Events as _, RawSse, Server, Transcript, Ws};

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
    let server = Server::temp(BIG).await;
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
    let mut args = BIG.to_vec();
    args.extend(["--slow-consumer-ms", "300"]);
    let server = Server::temp(&args).await;
    let thread = server.thread().await;
    let mut slow = RawSse::open(&server.base, &format!("{thread}/events"), None).await;
    assert_eq!(slow.next().await.unwrap().kind, "ready");
    let id = server.ask(&thread, "a long answer").await;
    let stored = server.finished(&thread, &id).await;
    eventually(|| async { (server.get_json("/admin/stats").await["slow_consumers"] == 1).then_some(()) }).await;

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
    let evs = again.until("message.completed").await;
    t.apply_all(&evs);
    t.assert_matches(&stored);
}

#[actix_web::test]
async fn a_stalled_websocket_reader_is_closed_as_slow_consumer_while_others_get_everything() {
    // Long enough that the two readers below, reading all along, are never
    // taken for slow ones on a loaded machine; the stalled one never reads.
    let mut args = BIG.to_vec();
    args.extend(["--slow-consumer-ms", "2000"]);
    let server = Server::temp(&args).await;
    let thread = server.thread().await;
    let tid = thread.rsplit('/').next().unwrap().to_owned();
    let mut stalled = Ws::open_small(&server.base, &thread).await;
    assert_eq!(stalled.next().await.unwrap().kind, "ready");
    let mut sse = server.sse(&thread, None).await;
    let mut ws = Ws::open(&server.base, &thread, None).await;
    let subscribers = || async { server.get_json(&format!("/admin/threads/{tid}")).await["subscribers"].as_u64() };
    eventually(|| async { (subscribers().await == Some(3)).then_some(()) }).await;

    // From here on `stalled` is not read until the server has given up on it.
    let id = server.ask(&thread, "a long answer").await;
    let (sse_events, ws_events) = tokio::join!(sse.until("message.completed"), ws.until("message.completed"));
    let stored = server.finished(&thread, &id).await;
    assert_eq!(stored["status"], "complete");
    for events in [sse_events, ws_events] {
        let mut t = Transcript::default();
        t.apply_all(&events);
        t.assert_matches(&stored);
    }
    eventually(|| async { (server.get_json("/admin/stats").await["slow_consumers"] == 1).then_some(()) }).await;
    eventually(|| async { (subscribers().await == Some(2)).then_some(()) }).await;
    assert_eq!(server.get_json("/admin/stats").await["subscribers"]["ws"], 1, "only the stalled socket was closed");

    // What was buffered arrives, then the closing error, then a close frame.
    let mut evs = stalled.until("error").await;
    let error = evs.pop().unwrap();
    assert_eq!(error.data["code"], "slow_consumer");
    let close = stalled.close_frame().await.expect("a close frame");
    assert_eq!(close, (1001, "slow_consumer".to_owned()), "closed as going away");
    // Resumed from the last frame it got (not from the error's cursor: see
    // `the_closing_errors_cursor_is_where_the_reader_stopped`).
    let mut t = Transcript::default();
    t.apply_all(&evs);
    let cursor = t.last_id.clone().expect("some frames arrived before the close");

    // It resumes from its cursor, byte-exact.
    let mut again = Ws::open(&server.base, &thread, Some(&cursor)).await;
    let evs = again.until("message.completed").await;
    t.apply_all(&evs);
    t.assert_matches(&stored);
    assert_eq!(server.get_json("/admin/stats").await["slow_consumers"], 1);
}

/// The closing `error` carries a cursor (SSE `id:`, WebSocket `cursor`),
/// which a client resumes from (an EventSource sends it as `Last-Event-ID`
/// by itself). It must name what the reader got, not the frames the server
/// was still waiting to hand it when it gave up.
#[actix_web::test]
async fn the_closing_errors_cursor_is_where_the_reader_stopped() {
    let mut args = BIG.to_vec();
    args.extend(["--slow-consumer-ms", "300"]);
    let server = Server::temp(&args).await;
    let thread = server.thread().await;
    let mut slow = RawSse::open(&server.base, &format!("{thread}/events"), None).await;
    assert_eq!(slow.next().await.unwrap().kind, "ready");
    let id = server.ask(&thread, "a long answer").await;
    server.finished(&thread, &id).await;
    eventually(|| async { (server.get_json("/admin/stats").await["slow_consumers"] == 1).then_some(()) }).await;
    let mut evs = slow.until("error").await;
    let error = evs.pop().unwrap();
    let last = evs.iter().rev().find(|e| e.kind == "message.delta").expect("some text arrived");
    assert_eq!(error.id, last.id, "the error's cursor is the end of the last delta delivered");
}

/// On shutdown every subscriber gets its closing `error`
/// (`shutting_down`), also one that was behind: its cursor is where that
/// reader stopped, so it resumes byte-exact after the restart.
#[actix_web::test]
async fn readers_that_are_behind_get_their_shutting_down_error_too() {
    let dir = tempfile::tempdir().unwrap();
    let db = crate::support::database_url(dir.path()).await;
    let mut args = BIG.to_vec();
    args[1] = "5000"; // `--sim-chunks`: still streaming at the shutdown
                      // The whole grace for the readers: the answer is interrupted at once.
    args.extend(["--shutdown-grace-ms", "4000", "--shutdown-reserve-ms", "4000"]);
    let server = Server::start(&db, &args).await;
    let thread = server.thread().await;
    let mut behind = Vec::new();
    for _ in 0..8 {
        let mut slow = RawSse::open(&server.base, &format!("{thread}/events"), None).await;
        assert_eq!(slow.next().await.unwrap().kind, "ready");
        behind.push(slow);
    }
    let mut live = server.sse(&thread, None).await;
    let id = server.ask(&thread, "a long answer").await;
    // Well into the answer: the stalled readers are far behind.
    let mut live_evs = Vec::new();
    while live_evs.iter().filter(|e: &&crate::support::Ev| e.kind == "message.delta").count() < 50 {
        live_evs.push(live.next().await.unwrap());
    }
    eventually(|| async { (server.get_json("/admin/stats").await["catch_ups"].as_u64()? >= 8).then_some(()) }).await;
    let handle = server.handle.clone().unwrap();
    let stopping = actix_web::rt::spawn(async move { handle.shutdown().await });
    // From now on the stalled readers read, slowly: 20 KB/s. Before their
    // error: the kernel's buffers (about 20 KB here) and at most 8 KiB of
    // the server's; no longer the 16 frames (80 KB) of their pipes.
    let readers: Vec<_> = behind
        .into_iter()
        .map(|mut slow| {
            slow.pace = Some((2048, std::time::Duration::from_millis(100)));
            actix_web::rt::spawn(async move {
                let mut evs = Vec::new();
                while let Some(ev) = slow.next().await {
                    evs.push(ev);
                }
                evs
            })
        })
        .collect();
    while let Some(ev) = live.try_next().await {
        live_evs.push(ev);
    }
    assert_eq!(
        live_evs.last().map(|e| e.data["code"].clone()),
        Some("shutting_down".into()),
        "the live reader is told"
    );
    let mut transcripts = Vec::new();
    for reader in readers {
        let mut evs = reader.await.unwrap();
        let mut t = Transcript::default();
        let last = evs.pop().unwrap();
        assert_eq!((last.kind.as_str(), last.data["code"].as_str()), ("error", Some("shutting_down")), "{last:?}");
        t.apply_all(&evs);
        assert!(t.completed.is_empty(), "a reader far behind did not get to the end");
        assert_eq!(t.last_id.as_deref(), Some(last.id.as_str()), "its cursor is the last position it got");
        transcripts.push(t);
    }
    stopping.await.unwrap();
    // After the restart each resumes from its cursor, byte-exact.
    let again = Server::start(&db, &[]).await;
    let stored = again.message(&thread, &id).await;
    assert_eq!(stored["status"], "interrupted");
    for mut t in transcripts {
        let cursor = t.last_id.clone().unwrap();
        let mut sse = again.sse(&thread, Some(&cursor)).await;
        t.apply_all(&sse.until("message.completed").await);
        t.assert_matches(&stored);
    }
}
