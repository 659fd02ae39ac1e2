//! Exact resume: a subscriber that disconnects after k events and comes
//! back with its last cursor ends byte-identical to the stored message,
//! whether the thread's actor is live, has idled out, or the whole
//! service restarted.

use serde_json::Value;

use crate::support::{database_url, eventually, Ev, Events as _, Server, Transcript};

/// Reads the first `k` deltas of a fresh subscription (plus what precedes
/// them) and returns the events and the last cursor.
async fn first_deltas(server: &Server, thread: &str, k: usize) -> (Vec<Ev>, String) {
    let mut sse = server.sse(thread, None).await;
    let mut seen = Vec::new();
    let mut deltas = 0;
    while deltas < k {
        let ev = sse.next().await.expect("stream open");
        if ev.kind == "message.delta" {
            deltas += 1;
        }
        seen.push(ev);
    }
    let cursor = seen.iter().rev().find(|e| !e.id.is_empty()).map(|e| e.id.clone()).expect("a cursor");
    (seen, cursor)
}

/// Resumes from `cursor` and returns the events up to the `n`th
/// `message.completed`.
async fn resume(server: &Server, thread: &str, cursor: &str, completions: usize) -> Vec<Ev> {
    let mut sse = server.sse(thread, Some(cursor)).await;
    let ready = sse.next().await.unwrap();
    assert_eq!(ready.kind, "ready");
    let mut out = Vec::new();
    let mut done = 0;
    while done < completions {
        let ev = sse.next().await.expect("stream open");
        assert_ne!(ev.kind, "error", "no error on a valid cursor: {:?}", ev.data);
        if ev.kind == "message.completed" {
            done += 1;
        }
        out.push(ev);
    }
    out
}

#[actix_web::test]
async fn reconnecting_after_k_chunks_continues_exactly_across_blocks() {
    // Two blocks (thinking, then text) of multi-byte text, slow enough that
    // every subscriber below joins while it streams.
    let server =
        Server::temp(&["--sim-thinking", "--sim-chunks", "24", "--sim-chunk-chars", "3", "--sim-interval-ms", "25"])
            .await;
    let thread = server.thread().await;
    let ks = [1usize, 2, 3, 4, 5, 6, 7, 9, 12, 15, 18, 22, 26, 29];
    let mut tasks = Vec::new();
    for k in ks {
        let (server, thread) = (server.clone(), thread.clone());
        tasks.push(actix_web::rt::spawn(async move {
            let (seen, cursor) = first_deltas(&server, &thread, k).await;
            let rest = resume(&server, &thread, &cursor, 1).await;
            (k, seen, rest)
        }));
    }
    // Every reader is a subscriber of the thread actor before the answer
    // starts: the last ones wait for delta 29 of 30, 25 ms apart.
    let tid = thread.rsplit('/').next().unwrap().to_owned();
    eventually(|| async {
        let detail = server.get_json(&format!("/admin/threads/{tid}")).await;
        (detail["subscribers"] == ks.len()).then_some(())
    })
    .await;
    let _ = server.ask(&thread, "resume me").await;
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    let messages = server.messages(&thread).await;
    let stored = messages.last().unwrap().clone();
    let stored = server.finished(&thread, stored["id"].as_str().unwrap()).await;
    assert_eq!(stored["blocks"].as_array().unwrap().len(), 2);
    for (k, seen, rest) in results {
        let mut t = Transcript::default();
        t.apply_all(&seen);
        t.apply_all(&rest);
        t.assert_matches(&stored);
        assert_eq!(t.completed.len(), 1, "k={k}: one completion");
        assert_eq!(t.kinds.len(), 2, "k={k}: both blocks announced");
    }
}

#[actix_web::test]
async fn reconnecting_after_completion_and_two_more_messages_gets_everything_in_order() {
    let server = Server::temp(&["--sim-chunks", "12", "--sim-interval-ms", "10"]).await;
    let thread = server.thread().await;
    let mut sse = server.sse(&thread, None).await;
    let first = server.ask(&thread, "one").await;
    let mut seen = Vec::new();
    let mut deltas = 0;
    while deltas < 4 {
        let ev = sse.next().await.unwrap();
        deltas += (ev.kind == "message.delta") as usize;
        seen.push(ev);
    }
    drop(sse);
    let cursor = seen.last().unwrap().id.clone();
    server.finished(&thread, &first).await;
    let second = server.ask(&thread, "two").await;
    server.finished(&thread, &second).await;
    let third = server.ask(&thread, "three").await;
    server.finished(&thread, &third).await;

    let rest = resume(&server, &thread, &cursor, 3).await;
    let mut t = Transcript::default();
    t.apply_all(&seen);
    t.apply_all(&rest);
    for id in [&first, &second, &third] {
        t.assert_matches(&server.message(&thread, id).await);
    }
    let order: Vec<&str> = t.completed.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(order, [first.as_str(), second.as_str(), third.as_str()]);
    let created: Vec<&Value> = rest.iter().filter(|e| e.kind == "message.created").map(|e| &e.data).collect();
    assert_eq!(created.len(), 2, "the later user messages come whole");
    assert_eq!(created[0]["message"]["content"], "two");
}

#[actix_web::test]
async fn resume_works_after_the_actor_idled_out_and_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = database_url(dir.path()).await;
    let server = Server::start(&db, &["--idle-timeout-ms", "150", "--sim-chunks", "10"]).await;
    let thread = server.thread().await;
    let mut sse = server.sse(&thread, None).await;
    let id = server.ask(&thread, "remember").await;
    let mut seen = Vec::new();
    loop {
        let ev = sse.next().await.unwrap();
        let stop = ev.kind == "message.delta" && ev.data["offset"].as_u64().unwrap() > 0;
        seen.push(ev);
        if stop {
            break;
        }
    }
    drop(sse);
    let cursor = seen.last().unwrap().id.clone();
    let stored = server.finished(&thread, &id).await;
    eventually(|| async { (server.get_json("/admin/stats").await["threads"]["live"] == 0).then_some(()) }).await;

    let rest = resume(&server, &thread, &cursor, 1).await;
    let mut t = Transcript::default();
    t.apply_all(&seen);
    t.apply_all(&rest);
    t.assert_matches(&stored);

    server.handle.as_ref().unwrap().shutdown().await;
    let again = Server::start(&db, &[]).await;
    let rest = resume(&again, &thread, &cursor, 1).await;
    let mut t = Transcript::default();
    t.apply_all(&seen);
    t.apply_all(&rest);
    t.assert_matches(&stored);
}

#[actix_web::test]
async fn an_unknown_or_malformed_cursor_gets_cursor_invalid_then_a_fresh_start() {
    // Long enough to be still streaming at the end, however slow the
    // machine; cancelled below.
    let server = Server::temp(&["--sim-chunks", "2000", "--sim-interval-ms", "10"]).await;
    let thread = server.thread().await;
    let id = server.ask(&thread, "x").await;
    // A byte offset inside a multi-byte character of the live text.
    let inside = eventually(|| async {
        let m = server.message(&thread, &id).await;
        let text = m["blocks"][0]["text"].as_str().unwrap_or("").to_owned();
        text.char_indices().find(|(_, c)| c.len_utf8() > 1).map(|(i, _)| i + 1)
    })
    .await;
    let bogus = format!("{}:0:5", uuid::Uuid::now_v7());
    let inside_a_char = format!("{id}:0:{inside}");
    for cursor in [bogus.as_str(), "not-a-cursor", inside_a_char.as_str()] {
        let mut sse = server.sse(&thread, Some(cursor)).await;
        assert_eq!(sse.next().await.unwrap().kind, "ready");
        let err = sse.next().await.unwrap();
        assert_eq!(err.kind, "error", "{cursor}");
        assert_eq!(err.data["code"], "cursor_invalid");
        assert_eq!(sse.next().await.unwrap().kind, "message.started", "then the fresh-subscriber replay");
    }
    // A header that is not even ASCII is a malformed cursor, not none.
    let latin1 = reqwest::header::HeaderValue::from_bytes(b"caf\xe9:0:1").unwrap();
    let mut sse = crate::support::Sse::open(
        server.client.get(format!("{}{thread}/events", server.base)).header("Last-Event-ID", latin1),
    )
    .await;
    assert_eq!(sse.next().await.unwrap().kind, "ready");
    assert_eq!(sse.next().await.unwrap().data["code"], "cursor_invalid");
    let _ = reqwest::Client::new().post(format!("{}{thread}/cancel", server.base)).send().await;
}

#[actix_web::test]
async fn the_cursor_query_parameter_resumes_over_sse_and_websocket() {
    let server = Server::temp(&["--sim-chunks", "60", "--sim-interval-ms", "10", "--sim-thinking"]).await;
    let thread = server.thread().await;
    let mut ws = crate::support::Ws::open(&server.base, &thread, None).await;
    let id = server.ask(&thread, "both ways").await;
    let mut seen = Vec::new();
    let mut deltas = 0;
    while deltas < 12 {
        let ev = ws.next().await.unwrap();
        deltas += (ev.kind == "message.delta") as usize;
        seen.push(ev);
    }
    drop(ws);
    let cursor = seen.last().unwrap().id.clone();

    let mut again = crate::support::Ws::open(&server.base, &thread, Some(&cursor)).await;
    let ws_rest = again.until("message.completed").await;
    assert_eq!(ws_rest[0].kind, "ready");
    let sse_url = format!("{}{thread}/events?cursor={cursor}", server.base);
    let mut sse = crate::support::Sse::open(server.client.get(sse_url)).await;
    let sse_rest = sse.until("message.completed").await;

    let stored = server.finished(&thread, &id).await;
    for rest in [ws_rest, sse_rest] {
        let mut t = Transcript::default();
        t.apply_all(&seen);
        t.apply_all(&rest);
        t.assert_matches(&stored);
    }
}
