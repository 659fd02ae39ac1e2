//! The seed-compatible route keeps the original service's exact wire
//! format, while other tabs watch the same generation through /events:
//! its request takes `query` or `content`, and an answer that fails
//! midway ends with the seed's error line.

use std::sync::Arc;

use serde_json::{json, Value};
use tokio::sync::Notify;

use crate::{
    fake_upstream::{anthropic as a, End, Piece, Reply},
    providers::{cut_answer, harness},
    support::{error_code, eventually, Events as _, Server, Transcript, WAIT},
};

/// A seed route answer, checked line by line: every line but the last is a
/// chunk written byte for byte as the original service wrote it. Returns
/// the chunks' text joined and the last line's data.
async fn seed_answer(resp: reqwest::Response) -> (String, String) {
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let body = tokio::time::timeout(WAIT, resp.bytes()).await.expect("the answer ends in time").unwrap();
    let body = String::from_utf8(body.to_vec()).unwrap();
    let mut chunks = String::new();
    let mut lines = body.split("\n\n").filter(|l| !l.is_empty()).peekable();
    let mut last = "";
    while let Some(line) = lines.next() {
        let data = line.strip_prefix("data: ").unwrap_or_else(|| panic!("only data lines: {line:?}"));
        let v: Value = serde_json::from_str(data).unwrap();
        if lines.peek().is_some() {
            assert_eq!(v["type"], "chunk");
            let text = v["content"].as_str().unwrap();
            // Byte for byte what the original service wrote.
            assert_eq!(data, format!("{{\"type\": \"chunk\", \"content\": {}}}", serde_json::to_string(text).unwrap()));
            chunks.push_str(text);
        }
        last = data;
    }
    (chunks, last.to_owned())
}

/// The seed route of a `/v1/…/threads/{tid}` path.
fn seed_url(server: &Server, thread: &str) -> String {
    format!("{}{}/query/stream", server.base, thread.trim_start_matches("/v1"))
}

#[actix_web::test]
async fn query_stream_speaks_the_seed_wire_format_exactly() {
    let server = Server::temp(&["--sim-chunks", "15", "--sim-thinking"]).await;
    let thread = server.thread().await;
    let mut watcher = server.sse(&thread, None).await;
    let resp = server.client.post(seed_url(&server, &thread)).json(&json!({"query": "the old way"})).send();
    let (chunks, last) = seed_answer(resp.await.unwrap()).await;
    assert_eq!(last, r#"{"type": "done"}"#);

    let messages = server.messages(&thread).await;
    let answer = messages.last().unwrap();
    assert_eq!(messages[messages.len() - 2]["content"], "the old way");
    assert_eq!(answer["status"], "complete");
    assert_eq!(chunks, answer["content"].as_str().unwrap(), "chunks are the text blocks only, in full");

    let mut t = Transcript::default();
    t.apply_all(&watcher.until("message.completed").await);
    t.assert_matches(answer);
}

#[actix_web::test]
async fn query_stream_takes_content_as_well_and_refuses_a_body_without_either() {
    let server = Server::temp(&["--sim-chunks", "40"]).await;
    let thread = server.thread().await;
    let url = seed_url(&server, &thread);
    for body in [json!({}), json!({"model": "sim"}), json!({"content": ""}), json!({"question": "what?"})] {
        let r = server.client.post(&url).json(&body).send().await.unwrap();
        assert_eq!(error_code(r).await, (400, "bad_request".into()), "{body}");
    }
    assert!(server.messages(&thread).await.is_empty(), "nothing refused was stored");

    let (chunks, last) =
        seed_answer(server.client.post(&url).json(&json!({"content": "the new way"})).send().await.unwrap()).await;
    assert_eq!(last, r#"{"type": "done"}"#);
    let messages = server.messages(&thread).await;
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0]["role"], "user");
    assert_eq!(messages[0]["content"], "the new way");
    assert_eq!(messages[1]["status"], "complete");
    assert_eq!(chunks, messages[1]["content"].as_str().unwrap());
}

#[actix_web::test]
async fn query_stream_ends_with_the_error_line_when_the_upstream_fails_mid_answer() {
    // An `error` event after some text, then a connection dropped mid-body;
    // each held back until the route's own subscriber is in place, so the
    // failure reaches it live.
    let gates = [Arc::new(Notify::new()), Arc::new(Notify::new())];
    let held = |gate: &Arc<Notify>, tail: Vec<Piece>| {
        let mut pieces = vec![Piece::Wait(gate.clone())];
        pieces.extend(cut_answer(tail));
        pieces
    };
    let replies = vec![
        Reply::Stream {
            pieces: held(&gates[0], vec![Piece::Bytes(a::error("overloaded_error", "Overloaded"))]),
            end: End::Clean,
        },
        Reply::Stream { pieces: held(&gates[1], vec![]), end: End::Drop },
    ];
    let h = harness("anthropic", replies, &["--continue-max-attempts", "0"]).await;
    let url = format!("{}/projects/{}/threads/{}/query/stream", h.base, h.pid, h.tid);
    let subscribers = || async {
        let detail: Value =
            h.client.get(format!("{}/admin/threads/{}", h.base, h.tid)).send().await.unwrap().json().await.unwrap();
        detail["subscribers"].as_u64()
    };
    for (gate, question) in gates.iter().zip(["first", "second"]) {
        let resp = h.client.post(&url).json(&json!({"query": question})).send().await.unwrap();
        eventually(|| async { (subscribers().await == Some(1)).then_some(()) }).await;
        gate.notify_one();
        let (chunks, last) = seed_answer(resp).await;
        assert_eq!(chunks, "partial tëxt", "the text before the failure arrived whole");
        let stored = h.last_message().await;
        assert_eq!(stored["status"], "failed");
        assert_eq!(stored["content"], "partial tëxt");
        let message = stored["error"]["message"].as_str().expect("a failed message says why");
        assert!(!message.is_empty());
        // Byte for byte the seed's error line, with the stored reason.
        let expected = format!("{{\"type\": \"error\", \"message\": {}}}", serde_json::to_string(message).unwrap());
        assert_eq!(last, expected, "{question}");
        // The route's subscriber is gone before the next question.
        eventually(|| async { (subscribers().await.unwrap_or(0) == 0).then_some(()) }).await;
    }
    assert_eq!(h.upstream.requests().len(), 2, "no retry after the first text");
}

/// An answer that ends before the route's session has subscribed reaches
/// it in the session's first (replayed) frames, where the session does not
/// look for the end of its message: the response never ends.
#[actix_web::test]
async fn query_stream_ends_when_the_answer_ended_before_the_route_subscribed() {
    let gate = Arc::new(Notify::new());
    let mut pieces = a::text_answer(&["quick ", "answer"]);
    pieces.push(Piece::Wait(gate.clone()));
    // A long flush interval: the route subscribes only once the question
    // is committed, well after the answer ended.
    let h =
        harness("anthropic", vec![Reply::Stream { pieces, end: End::Clean }], &["--flush-interval-ms", "300"]).await;
    let url = format!("{}/projects/{}/threads/{}/query/stream", h.base, h.pid, h.tid);
    let resp = h.client.post(&url).json(&json!({"query": "quick?"})).send().await.unwrap();
    // The whole answer is stored before the body is read.
    eventually(|| async { (h.last_message().await["status"] == "complete").then_some(()) }).await;
    let (chunks, last) = seed_answer(resp).await;
    assert_eq!(chunks, "quick answer");
    assert_eq!(last, r#"{"type": "done"}"#);
    gate.notify_one();
}
