//! Fan-out of one generation to several subscribers over SSE and
//! WebSocket: identical, gap-free text for everyone, late joiners
//! included, and generations that outlive their audience.

use serde_json::json;

use crate::support::{error_code, Events as _, Server, Transcript, Ws};

async fn two_sse_and_one_ws(extra: &[&str]) {
    let server = Server::temp(extra).await;
    let thread = server.thread().await;
    let mut a = server.sse(&thread, None).await;
    let mut b = server.sse(&thread, None).await;
    let mut w = Ws::open(&server.base, &thread, None).await;
    for ready in [a.next().await.unwrap(), b.next().await.unwrap(), w.next().await.unwrap()] {
        assert_eq!(ready.kind, "ready");
    }
    let out_before = server.get_json("/admin/stats").await["chunks"]["out"].as_u64().unwrap();
    let id = server.ask(&thread, "hello all").await;
    let mut ts = Vec::new();
    let mut deltas = 0;
    for evs in
        [a.until("message.completed").await, b.until("message.completed").await, w.until("message.completed").await]
    {
        deltas += evs.iter().filter(|e| e.kind == "message.delta").count() as u64;
        let mut t = Transcript::default();
        t.apply_all(&evs);
        // (Not positions of the thread: presence, and the title the first
        // question gives the untitled thread.)
        let unplaced = ["thread.presence", "ready", "thread.updated"];
        assert!(evs.iter().all(|e| !e.data["cursor"].is_null() || unplaced.contains(&e.kind.as_str())));
        ts.push(t);
    }
    let stored = server.finished(&thread, &id).await;
    assert_eq!(stored["status"], "complete");
    for t in &ts {
        t.assert_matches(&stored);
        assert_eq!(t.completed, vec![(id.clone(), "complete".to_owned())]);
        assert_eq!(t.blocks, ts[0].blocks, "every subscriber saw the same text");
    }
    // Operators see every delta delivered, to every subscriber.
    let out = server.get_json("/admin/stats").await["chunks"]["out"].as_u64().unwrap();
    assert_eq!(out - out_before, deltas, "chunks.out counts what the subscribers received");
}

#[actix_web::test]
async fn two_sse_and_one_ws_subscriber_receive_identical_complete_text() {
    two_sse_and_one_ws(&[]).await;
}

#[actix_web::test]
async fn identical_text_with_a_thinking_block_first() {
    two_sse_and_one_ws(&["--sim-thinking"]).await;
}

#[actix_web::test]
async fn a_subscriber_joining_mid_generation_ends_with_the_same_text() {
    // Long enough that the late subscriber surely joins mid-answer, however
    // slow the machine; the answer is cancelled once it has joined.
    let server = Server::temp(&["--sim-chunks", "400", "--sim-interval-ms", "15", "--sim-thinking"]).await;
    let thread = server.thread().await;
    let mut early = server.sse(&thread, None).await;
    let id = server.ask(&thread, "join me").await;
    // Wait until the text block streams, then join.
    loop {
        let ev = early.next().await.unwrap();
        if ev.kind == "message.delta" && ev.data["block"] == 1 {
            break;
        }
    }
    let mut late = server.sse(&thread, None).await;
    let mut evs = Vec::new();
    while evs.iter().filter(|e: &&crate::support::Ev| e.kind != "thread.presence").count() < 6 {
        evs.push(late.next().await.unwrap());
    }
    let r = server.client.post(format!("{}{thread}/cancel", server.base)).send().await.unwrap();
    assert_eq!(r.status(), 202);
    evs.extend(late.until("message.completed").await);
    assert_eq!(evs[0].kind, "ready");
    assert_eq!(evs[0].data["status"], "generating");
    assert_eq!(evs[0].data["active_message_id"], id.as_str());
    let kinds: Vec<&str> = evs.iter().map(|e| e.kind.as_str()).filter(|k| *k != "thread.presence").take(6).collect();
    assert_eq!(kinds, ["ready", "message.started", "message.block", "message.delta", "message.block", "message.delta"]);
    let mut t = Transcript::default();
    t.apply_all(&evs);
    t.assert_matches(&server.finished(&thread, &id).await);
}

#[actix_web::test]
async fn a_generation_completes_when_every_subscriber_left() {
    let server = Server::temp(&["--sim-chunks", "30", "--sim-interval-ms", "10", "--sim-chunk-chars", "5"]).await;
    let thread = server.thread().await;
    let mut a = server.sse(&thread, None).await;
    let mut w = Ws::open(&server.base, &thread, None).await;
    let id = server.ask(&thread, "go on without me").await;
    a.until("message.delta").await;
    w.until("message.delta").await;
    drop(a);
    drop(w);
    let stored = server.finished(&thread, &id).await;
    assert_eq!(stored["status"], "complete");
    assert_eq!(stored["content"].as_str().unwrap().chars().count(), 30 * 5, "the whole answer was stored");
    assert!(stored["usage"]["output_tokens"].as_u64().unwrap() > 0);
    assert!(stored["usage"]["input_tokens"].as_u64().unwrap() > 0);
}

#[actix_web::test]
async fn busy_thread_refuses_and_cancel_keeps_the_partial_text() {
    let server = Server::temp(&["--sim-chunks", "500", "--sim-interval-ms", "10"]).await;
    let thread = server.thread().await;
    let mut sse = server.sse(&thread, None).await;
    let id = server.ask(&thread, "long one").await;
    let mut t = Transcript::default();
    let mut deltas = 0;
    while deltas < 3 {
        let ev = sse.next().await.unwrap();
        deltas += (ev.kind == "message.delta") as usize;
        t.apply(&ev);
    }
    let url = |p: &str| format!("{}{thread}{p}", server.base);
    let busy = server.client.post(url("/messages")).json(&json!({"content": "me too"})).send().await.unwrap();
    assert_eq!(error_code(busy).await, (409, "thread_busy".to_owned()));

    let cancel = server.client.post(url("/cancel")).send().await.unwrap();
    assert_eq!(cancel.status(), 202);
    let body: serde_json::Value = cancel.json().await.unwrap();
    assert_eq!(body["message_id"], id.as_str());
    t.apply_all(&sse.until("message.completed").await);
    assert_eq!(t.completed, vec![(id.clone(), "cancelled".to_owned())]);
    let stored = server.finished(&thread, &id).await;
    assert_eq!(stored["status"], "cancelled");
    assert!(!stored["content"].as_str().unwrap().is_empty());
    t.assert_matches(&stored);
    assert!(stored["usage"]["output_tokens"].as_u64().unwrap() >= 3, "usage is kept on cancel");

    let idle = server.client.post(url("/cancel")).send().await.unwrap();
    assert_eq!(error_code(idle).await, (409, "not_generating".to_owned()));
    // The thread takes the next message.
    assert_eq!(
        server.client.post(url("/messages")).json(&json!({"content": "next"})).send().await.unwrap().status(),
        202
    );
}

/// Presence is coalesced: a crowd of tabs opening (or closing) at once is
/// a few `thread.presence` events to the others, ending at the right
/// count, not one per change.
#[actix_web::test]
async fn a_crowd_joining_and_leaving_at_once_is_a_few_presence_events() {
    let server = Server::temp(&[]).await;
    let thread = server.thread().await;
    let mut watcher = server.sse(&thread, None).await;
    assert_eq!(watcher.next().await.unwrap().kind, "ready");

    async fn counts_until(watcher: &mut crate::support::Sse, target: u64) -> Vec<u64> {
        let mut counts = Vec::new();
        while counts.last() != Some(&target) {
            let ev = tokio::time::timeout(std::time::Duration::from_secs(10), watcher.next())
                .await
                .unwrap_or_else(|_| panic!("no presence of {target} yet: {counts:?}"))
                .unwrap();
            if ev.kind == "thread.presence" {
                counts.push(ev.data["subscribers"].as_u64().unwrap());
            }
        }
        counts
    }

    let mut crowd = futures_util::future::join_all((0..30).map(|_| server.sse(&thread, None))).await;
    for s in crowd.iter_mut() {
        assert_eq!(s.next().await.unwrap().kind, "ready");
    }
    let joined = counts_until(&mut watcher, 31).await;
    assert!(joined.len() < 25, "one presence event per join: {joined:?}");

    drop(crowd);
    let left = counts_until(&mut watcher, 1).await;
    assert!(left.len() < 25, "one presence event per departure: {left:?}");
}
