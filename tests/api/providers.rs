//! The real Anthropic and OpenAI-compatible clients against a fake upstream
//! that speaks each protocol byte for byte: one test per fault, through the
//! service's HTTP API, asserting the final message, its text, what a
//! subscriber saw and, for cancel, stalls and every limit, that the
//! upstream saw its connection closed. The last tests are a hostile or
//! broken provider: no response head, a drip of bytes, pings for ever,
//! one huge event, output past `max_tokens`, tool calls without ids.

use std::time::Duration;

use clap::Parser;
use convo::{
    config::{Secret, Settings},
    startup::Application,
};
use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::fake_upstream::{anthropic as a, openai as o, End, FakeUpstream, Piece, Reply};

const WAIT: Duration = Duration::from_secs(20);

pub struct Harness {
    pub base: String,
    pub client: reqwest::Client,
    pub pid: String,
    pub tid: String,
    pub upstream: FakeUpstream,
    _dir: tempfile::TempDir,
}

/// A server whose provider (`anthropic` or `openai`) talks to a fake
/// upstream answering `replies`, and a thread on it.
pub async fn harness(provider: &str, replies: Vec<Reply>, extra: &[&str]) -> Harness {
    convo::telemetry::init_for_tests();
    let upstream = FakeUpstream::start(replies).await;
    let dir = tempfile::tempdir().unwrap();
    let db = crate::support::database_url(dir.path()).await;
    let openai_base = format!("{}/v1", upstream.url);
    let mut args = vec![
        "convo",
        "--bind",
        "127.0.0.1:0",
        "--database-url",
        &db,
        "--provider",
        provider,
        "--anthropic-base-url",
        &upstream.url,
        "--openai-base-url",
        &openai_base,
        "--upstream-retry-min-ms",
        "10",
        "--upstream-retry-max-ms",
        "40",
        "--flush-interval-ms",
        "10",
        "--heartbeat-ms",
        "200",
    ];
    // A flag given in `extra` replaces its default (clap refuses repeats).
    for pair in extra.chunks(2) {
        if let Some(i) = args.iter().position(|a| *a == pair[0]) {
            args.drain(i..i + 2);
        }
    }
    args.extend_from_slice(extra);
    let mut settings = Settings::try_parse_from(args).unwrap();
    settings.provider.anthropic_api_key = Secret::new("sk-test-key");
    let app = Application::build(settings).await.unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    actix_web::rt::spawn(app.run_until_stopped());
    let client = reqwest::Client::new();
    let p: Value = client
        .post(format!("{base}/v1/projects"))
        .json(&json!({"name": "p"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let pid = p["id"].as_str().unwrap().to_owned();
    let t: Value = client
        .post(format!("{base}/v1/projects/{pid}/threads"))
        .json(&json!({"system": "You are terse.", "model": "model-of-thread"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let tid = t["id"].as_str().unwrap().to_owned();
    Harness { base, client, pid, tid, upstream, _dir: dir }
}

impl Harness {
    pub fn url(&self, rest: &str) -> String {
        format!("{}/v1/projects/{}/threads/{}{rest}", self.base, self.pid, self.tid)
    }

    /// Makes this harness's thread a new one, created with `body` (its
    /// tools, say).
    pub async fn new_thread(&mut self, body: Value) {
        let created = self.client.post(format!("{}/v1/projects/{}/threads", self.base, self.pid)).json(&body).send();
        let created = created.await.unwrap();
        assert_eq!(created.status(), 201);
        let thread: Value = created.json().await.unwrap();
        self.tid = thread["id"].as_str().unwrap().to_owned();
    }

    /// Opens /events, posts `content`, and returns every event up to the
    /// message's `message.completed` (or `message.awaiting`: a step that
    /// ended with calls the answer waits on).
    pub async fn ask(&self, body: Value) -> Vec<Value> {
        let sse = self.client.get(self.url("/events")).send().await.unwrap();
        let mut events = sse.bytes_stream().eventsource();
        let ready = tokio::time::timeout(WAIT, events.next()).await.unwrap().unwrap().unwrap();
        assert_eq!(ready.event, "ready");
        let posted = self.client.post(self.url("/messages")).json(&body).send().await.unwrap();
        assert_eq!(posted.status(), 202);
        let mut seen = Vec::new();
        loop {
            let ev = tokio::time::timeout(WAIT, events.next()).await.expect("event in time").unwrap().unwrap();
            let data: Value = serde_json::from_str(&ev.data).unwrap();
            seen.push(data.clone());
            if ev.event == "message.completed" || ev.event == "message.awaiting" {
                return seen;
            }
        }
    }

    pub async fn last_message(&self) -> Value {
        let page: Value = self.client.get(self.url("/messages")).send().await.unwrap().json().await.unwrap();
        page["data"].as_array().unwrap().last().unwrap().clone()
    }
}

/// The text of block 0 as the deltas built it, checking offsets.
pub fn streamed_text(events: &[Value], block: u64) -> String {
    let mut text = String::new();
    for e in events.iter().filter(|e| e["type"] == "message.delta" && e["block"] == block) {
        assert_eq!(e["offset"].as_u64().unwrap() as usize, text.len(), "offsets continue without gap or overlap");
        text.push_str(e["text"].as_str().unwrap());
    }
    text
}

pub fn completed(events: &[Value]) -> &Value {
    events.last().filter(|e| e["type"] == "message.completed").expect("ends with message.completed")
}

#[actix_web::test]
async fn anthropic_streams_a_whole_answer_and_sends_the_conversation_in_order() {
    let mut first = a::text_answer(&["Bonjour, ", "ça va ", "😀 bien"]);
    // Split TCP writes inside a multi-byte character, an unknown event, and
    // a data field spread over two lines.
    first.insert(4, Piece::Split(a::text_delta(0, "—split—"), 7));
    first.insert(5, Piece::Bytes(a::event("content_block_flourish", &json!({"type": "content_block_flourish"}))));
    first.insert(6, Piece::Bytes(b"event: content_block_delta\ndata: {\"type\": \"content_block_delta\", \"index\": 0,\ndata: \"delta\": {\"type\": \"text_delta\", \"text\": \"!\"}}\n\n".to_vec()));
    let second = a::text_answer(&["second answer"]);
    let h = harness(
        "anthropic",
        vec![Reply::Stream { pieces: first, end: End::Clean }, Reply::Stream { pieces: second, end: End::Clean }],
        &[],
    )
    .await;

    let events = h.ask(json!({"content": "first question", "max_tokens": 77})).await;
    let text = streamed_text(&events, 0);
    assert_eq!(text, "Bonjour, —split—!ça va 😀 bien");
    assert_eq!(completed(&events)["status"], "complete");
    let stored = h.last_message().await;
    assert_eq!(stored["content"], text);
    assert_eq!(stored["status"], "complete");
    assert_eq!(stored["stop_reason"], "end_turn");
    assert_eq!(stored["usage"]["input_tokens"], 11);
    assert_eq!(stored["usage"]["output_tokens"], 3);

    let events = h.ask(json!({"content": "second question", "model": "model-of-request"})).await;
    assert_eq!(streamed_text(&events, 0), "second answer");
    let metrics = h.client.get(format!("{}/metrics", h.base)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("convo_upstream_unknown_events_total 1"), "the unknown event type was counted");

    let requests = h.upstream.requests();
    assert_eq!(requests.len(), 2);
    let r = &requests[1];
    assert_eq!(r.path, "/v1/messages");
    assert_eq!(r.header("x-api-key"), Some("sk-test-key"));
    assert_eq!(r.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(requests[0].body["model"], "model-of-thread");
    assert_eq!(requests[0].body["max_tokens"], 77);
    assert_eq!(r.body["model"], "model-of-request");
    assert_eq!(r.body["stream"], true);
    assert_eq!(r.body["system"], "You are terse.");
    let turns: Vec<(String, String)> = r.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["role"].as_str().unwrap().to_owned(), m["content"][0]["text"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(
        turns,
        vec![
            ("user".into(), "first question".into()),
            ("assistant".into(), text.clone()),
            ("user".into(), "second question".into())
        ]
    );
}

#[actix_web::test]
async fn anthropic_thinking_and_tool_use_blocks_are_kept_apart() {
    let pieces = vec![
        Piece::Bytes(a::message_start(5)),
        Piece::Bytes(a::event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}}),
        )),
        Piece::Bytes(a::event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Let me think."}}),
        )),
        Piece::Bytes(a::event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "SIG123"}}),
        )),
        Piece::Bytes(a::block_stop(0)),
        Piece::Bytes(a::text_start(1)),
        Piece::Bytes(a::text_delta(1, "Checking the weather.")),
        Piece::Bytes(a::block_stop(1)),
        Piece::Bytes(a::event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}}),
        )),
        Piece::Bytes(a::event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "{\"city\": "}}),
        )),
        Piece::Bytes(a::event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "\"Paris\"}"}}),
        )),
        Piece::Bytes(a::block_stop(2)),
        Piece::Bytes(a::message_delta("tool_use", 42)),
        Piece::Bytes(a::message_stop()),
    ];
    let h = harness("anthropic", vec![Reply::Stream { pieces, end: End::Clean }], &[]).await;
    let events = h.ask(json!({"content": "weather?"})).await;
    let kinds: Vec<&str> =
        events.iter().filter(|e| e["type"] == "message.block").map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["thinking", "text", "tool_use"]);
    let tool = events.iter().find(|e| e["type"] == "message.block" && e["kind"] == "tool_use").unwrap();
    assert_eq!(tool["id"], "toolu_1");
    assert_eq!(tool["name"], "get_weather");
    let stored = h.last_message().await;
    assert_eq!(stored["content"], "Checking the weather.");
    assert_eq!(stored["blocks"][0]["text"], "Let me think.");
    assert_eq!(stored["blocks"][2]["text"], "{\"city\": \"Paris\"}");
    assert_eq!(stored["stop_reason"], "tool_use");
    assert_eq!(stored["usage"]["output_tokens"], 42);
    assert!(!stored.to_string().contains("SIG123"), "signatures are never shown");
    assert!(!events.iter().any(|e| e.to_string().contains("SIG123")));
}

#[actix_web::test]
async fn anthropic_retries_overload_and_rate_limits_before_the_first_delta() {
    let overloaded =
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}).to_string();
    let h = harness(
        "anthropic",
        vec![
            Reply::Status { code: 529, body: overloaded.clone(), retry_after: None },
            Reply::Status { code: 429, body: overloaded, retry_after: Some(1) },
            Reply::Stream { pieces: a::text_answer(&["after retries"]), end: End::Clean },
        ],
        &[],
    )
    .await;
    let events = h.ask(json!({"content": "hi"})).await;
    assert_eq!(completed(&events)["status"], "complete");
    assert_eq!(streamed_text(&events, 0), "after retries");
    let requests = h.upstream.requests();
    assert_eq!(requests.len(), 3);
    let waited = requests[2].at - requests[1].at;
    assert!(waited >= Duration::from_millis(950), "retry-after: 1 was honoured (waited {waited:?})");
}

#[actix_web::test]
async fn anthropic_gives_up_after_the_configured_attempts() {
    let body = json!({"type": "error", "error": {"type": "api_error", "message": "Internal"}}).to_string();
    let h =
        harness("anthropic", vec![Reply::Status { code: 503, body, retry_after: None }], &["--upstream-attempts", "3"])
            .await;
    let events = h.ask(json!({"content": "hi"})).await;
    let done = completed(&events);
    assert_eq!(done["status"], "failed");
    assert_eq!(done["error"]["code"], "upstream_error");
    assert_eq!(h.upstream.requests().len(), 3);
    let stored = h.last_message().await;
    assert_eq!(stored["status"], "failed");
    assert_eq!(stored["content"], "");
}

#[actix_web::test]
async fn anthropic_client_errors_are_not_retried_and_keep_the_upstream_message() {
    for code in [400u16, 401, 403, 404] {
        let body = json!({"type": "error", "error": {"type": "invalid_request_error", "message": format!("refused with {code}")}}).to_string();
        let h = harness("anthropic", vec![Reply::Status { code, body, retry_after: None }], &[]).await;
        let events = h.ask(json!({"content": "hi"})).await;
        let done = completed(&events);
        assert_eq!(done["status"], "failed");
        assert!(done["error"]["message"].as_str().unwrap().contains(&format!("refused with {code}")));
        assert_eq!(h.upstream.requests().len(), 1, "no retry for {code}");
    }
}

/// The first part of an answer (its text: "partial tëxt"), then the given
/// ending.
pub fn cut_answer(tail: Vec<Piece>) -> Vec<Piece> {
    let mut pieces = vec![
        Piece::Bytes(a::message_start(9)),
        Piece::Bytes(a::text_start(0)),
        Piece::Bytes(a::text_delta(0, "partial ")),
        Piece::Bytes(a::text_delta(0, "tëxt")),
        Piece::Bytes(a::message_delta("end_turn", 2)),
    ];
    pieces.extend(tail);
    pieces
}

/// (Its tests run with continuations off: what a cut answer does when it
/// may not go on; `continuation.rs` has what it does when it may.)
async fn assert_failed_with_partial(h: &Harness, code: &str) {
    let events = h.ask(json!({"content": "hi"})).await;
    let done = completed(&events);
    assert_eq!(done["status"], "failed");
    assert_eq!(done["error"]["code"], code);
    assert_eq!(streamed_text(&events, 0), "partial tëxt");
    let stored = h.last_message().await;
    assert_eq!(stored["status"], "failed");
    assert_eq!(stored["content"], "partial tëxt");
    assert_eq!(stored["usage"]["input_tokens"], 9);
    assert_eq!(h.upstream.requests().len(), 1, "no retry after the first delta");
}

#[actix_web::test]
async fn anthropic_error_event_after_200_fails_and_keeps_the_text() {
    let pieces = cut_answer(vec![Piece::Bytes(a::error("overloaded_error", "Overloaded"))]);
    let h =
        harness("anthropic", vec![Reply::Stream { pieces, end: End::Clean }], &["--continue-max-attempts", "0"]).await;
    assert_failed_with_partial(&h, "upstream_error").await;
}

#[actix_web::test]
async fn nul_characters_from_the_model_are_stored_not_lost() {
    // Postgres refuses NUL in a text column: a model's text (stored as
    // JSON, where it is escaped) keeps it, an upstream error message
    // (a text column) holds U+FFFD instead, and nothing is set aside.
    let pieces = vec![
        Piece::Bytes(a::message_start(9)),
        Piece::Bytes(a::text_start(0)),
        Piece::Bytes(a::text_delta(0, "a \u{0} b")),
        Piece::Bytes(a::error("api_error", "bad \u{0} thing")),
    ];
    let h =
        harness("anthropic", vec![Reply::Stream { pieces, end: End::Clean }], &["--continue-max-attempts", "0"]).await;
    let events = h.ask(json!({"content": "hi"})).await;
    assert_eq!(streamed_text(&events, 0), "a \u{0} b");
    // Stop the actor: history then reads the database alone.
    let stop = h.client.delete(format!("{}/admin/threads/{}", h.base, h.tid)).send().await.unwrap();
    assert_eq!(stop.status(), 204);
    let stored = crate::support::eventually(|| async {
        let m = h.last_message().await;
        (m["status"] == "failed").then_some(m)
    })
    .await;
    assert_eq!(stored["content"], "a \u{0} b");
    assert_eq!(stored["error"]["message"], "model provider error (api_error): bad \u{FFFD} thing");
    let stats: Value = h.client.get(format!("{}/metrics", h.base)).send().await.unwrap().text().await.unwrap().into();
    assert!(stats.as_str().unwrap().contains("convo_persistence_rows_rejected_total 0"), "{stats}");
}

#[actix_web::test]
async fn anthropic_dropped_connection_fails_and_keeps_the_text() {
    let h = harness(
        "anthropic",
        vec![Reply::Stream { pieces: cut_answer(vec![]), end: End::Drop }],
        &["--continue-max-attempts", "0"],
    )
    .await;
    assert_failed_with_partial(&h, "upstream_error").await;
}

#[actix_web::test]
async fn anthropic_stream_without_message_stop_is_not_complete() {
    let h = harness(
        "anthropic",
        vec![Reply::Stream { pieces: cut_answer(vec![]), end: End::Clean }],
        &["--continue-max-attempts", "0"],
    )
    .await;
    assert_failed_with_partial(&h, "upstream_error").await;
}

#[actix_web::test]
async fn anthropic_stall_times_out_and_closes_the_upstream_connection() {
    let h = harness(
        "anthropic",
        vec![Reply::Stream { pieces: cut_answer(vec![]), end: End::Hold }],
        &["--continue-max-attempts", "0", "--upstream-stall-ms", "1500"],
    )
    .await;
    assert_failed_with_partial(&h, "upstream_timeout").await;
    assert!(h.upstream.wait_hangup(WAIT).await, "the upstream saw its connection closed");
}

#[actix_web::test]
async fn cancel_drops_the_upstream_request_at_once() {
    let mut pieces = vec![
        Piece::Bytes(a::message_start(3)),
        Piece::Bytes(a::text_start(0)),
        Piece::Bytes(a::text_delta(0, "before cancel")),
    ];
    pieces.push(Piece::Pause(Duration::from_secs(30)));
    pieces.extend(a::text_answer(&["never sent"]));
    let h = harness("anthropic", vec![Reply::Stream { pieces, end: End::Clean }], &[]).await;

    let sse = h.client.get(h.url("/events")).send().await.unwrap();
    let mut events = sse.bytes_stream().eventsource();
    assert_eq!(events.next().await.unwrap().unwrap().event, "ready");
    assert_eq!(h.client.post(h.url("/messages")).json(&json!({"content": "go"})).send().await.unwrap().status(), 202);
    loop {
        let ev = tokio::time::timeout(WAIT, events.next()).await.unwrap().unwrap().unwrap();
        if ev.event == "message.delta" {
            break;
        }
    }
    assert_eq!(h.client.post(h.url("/cancel")).send().await.unwrap().status(), 202);
    assert!(h.upstream.wait_hangup(Duration::from_secs(5)).await, "cancel closed the upstream connection");
    let stored = h.last_message().await;
    assert_eq!(stored["status"], "cancelled");
    assert_eq!(stored["content"], "before cancel");
}

#[actix_web::test]
async fn unreachable_upstream_fails_after_retries() {
    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let url = format!("http://{closed}");
    let h = harness(
        "anthropic",
        vec![Reply::Status { code: 500, body: String::new(), retry_after: None }],
        &["--anthropic-base-url", &url, "--upstream-attempts", "2"],
    )
    .await;
    let events = h.ask(json!({"content": "hi"})).await;
    let done = completed(&events);
    assert_eq!(done["status"], "failed");
    assert_eq!(done["error"]["code"], "upstream_error");
}

#[actix_web::test]
async fn openai_compatible_streams_text_tool_calls_and_usage() {
    let pieces = vec![
        Piece::Bytes(o::chunk(json!({"role": "assistant", "content": ""}), None)),
        Piece::Bytes(o::chunk(json!({"content": "Hola "}), None)),
        Piece::Split(o::chunk(json!({"content": "señor"}), None), 5),
        Piece::Bytes(o::chunk(
            json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{\"q\":"}}]}),
            None,
        )),
        Piece::Bytes(o::chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}), None)),
        Piece::Bytes(o::chunk(json!({}), Some("tool_calls"))),
        Piece::Bytes(o::usage(12, 7)),
        Piece::Bytes(o::done()),
    ];
    let h = harness("openai", vec![Reply::Stream { pieces, end: End::Clean }], &[]).await;
    let events = h.ask(json!({"content": "hola"})).await;
    assert_eq!(completed(&events)["status"], "complete");
    assert_eq!(streamed_text(&events, 0), "Hola señor");
    let stored = h.last_message().await;
    assert_eq!(stored["content"], "Hola señor");
    assert_eq!(stored["blocks"][1]["kind"], "tool_use");
    assert_eq!(stored["blocks"][1]["id"], "call_1");
    assert_eq!(stored["blocks"][1]["name"], "lookup");
    assert_eq!(stored["blocks"][1]["text"], "{\"q\":1}");
    assert_eq!(stored["stop_reason"], "tool_calls");
    assert_eq!(stored["usage"]["input_tokens"], 12);
    assert_eq!(stored["usage"]["output_tokens"], 7);
    let r = &h.upstream.requests()[0];
    assert_eq!(r.path, "/v1/chat/completions");
    assert_eq!(r.body["stream"], true);
    assert_eq!(r.body["stream_options"]["include_usage"], true);
    assert_eq!(r.body["messages"][0], json!({"role": "system", "content": "You are terse."}));
    assert_eq!(r.body["messages"][1], json!({"role": "user", "content": "hola"}));
}

#[actix_web::test]
async fn openai_error_chunk_is_never_a_clean_stop() {
    let pieces = vec![
        Piece::Bytes(o::chunk(json!({"content": "partial"}), None)),
        Piece::Bytes(o::data(&json!({"error": {"message": "model crashed", "type": "server_error"}}))),
        Piece::Bytes(o::done()),
    ];
    let h = harness("openai", vec![Reply::Stream { pieces, end: End::Clean }], &["--continue-max-attempts", "0"]).await;
    let events = h.ask(json!({"content": "hola"})).await;
    let done = completed(&events);
    assert_eq!(done["status"], "failed");
    assert!(done["error"]["message"].as_str().unwrap().contains("model crashed"));
    assert_eq!(h.last_message().await["content"], "partial");
}

#[actix_web::test]
async fn openai_stream_cut_before_done_fails() {
    let pieces = vec![Piece::Bytes(o::chunk(json!({"content": "half an ans"}), None))];
    let h = harness("openai", vec![Reply::Stream { pieces, end: End::Drop }], &["--continue-max-attempts", "0"]).await;
    let events = h.ask(json!({"content": "hola"})).await;
    assert_eq!(completed(&events)["status"], "failed");
    assert_eq!(h.last_message().await["content"], "half an ans");
}

#[actix_web::test]
async fn the_upstream_is_never_called_past_the_node_generation_cap() {
    let mut pieces = vec![Piece::Bytes(a::message_start(3)), Piece::Bytes(a::text_start(0))];
    pieces.push(Piece::Pause(Duration::from_secs(30)));
    let slow = Reply::Stream { pieces, end: End::Clean };
    let h = harness("anthropic", vec![slow.clone(), slow], &["--max-generations", "1"]).await;
    assert_eq!(h.client.post(h.url("/messages")).json(&json!({"content": "one"})).send().await.unwrap().status(), 202);

    // Another project's thread: the node is at its cap, so the message is
    // refused before anything is sent upstream, and nothing is stored.
    let send = |req: reqwest::RequestBuilder| async move { req.send().await.unwrap().json::<Value>().await.unwrap() };
    let p = send(h.client.post(format!("{}/v1/projects", h.base)).json(&json!({"name": "q"}))).await;
    let threads = format!("{}/v1/projects/{}/threads", h.base, p["id"].as_str().unwrap());
    let t = send(h.client.post(&threads).json(&json!({}))).await;
    let other = format!("{threads}/{}", t["id"].as_str().unwrap());
    let r = h.client.post(format!("{other}/messages")).json(&json!({"content": "two"})).send().await.unwrap();
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(crate::support::error_code(r).await, (503, "unavailable".into()));
    assert_eq!(send(h.client.get(format!("{other}/messages"))).await["data"], json!([]));
    crate::support::eventually(|| async { (h.upstream.requests().len() == 1).then_some(()) }).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(h.upstream.requests().len(), 1, "one generation, one upstream call");

    // Cancelling the first frees the slot: the next message reaches the upstream.
    assert_eq!(h.client.post(h.url("/cancel")).send().await.unwrap().status(), 202);
    let r = h.client.post(format!("{other}/messages")).json(&json!({"content": "two"})).send().await.unwrap();
    assert_eq!(r.status(), 202);
    crate::support::eventually(|| async { (h.upstream.requests().len() == 2).then_some(()) }).await;
}

#[actix_web::test]
async fn start_and_delivery_latencies_are_histograms_in_metrics() {
    let overloaded =
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}).to_string();
    let h = harness(
        "anthropic",
        vec![
            Reply::Status { code: 529, body: overloaded, retry_after: None },
            Reply::Stream { pieces: a::text_answer(&["one ", "two ", "three"]), end: End::Clean },
        ],
        &[],
    )
    .await;
    let events = h.ask(json!({"content": "hi"})).await;
    assert_eq!(completed(&events)["status"], "complete");
    let deltas = events.iter().filter(|e| e["type"] == "message.delta").count() as f64;
    let text = h.client.get(format!("{}/metrics", h.base)).send().await.unwrap().text().await.unwrap();
    let value = |name: &str| crate::operations::metric(&text, name);
    // Each attempt's head (the refused one too), one first delta per
    // answer, and every chunk handed to the one subscriber's worker.
    assert_eq!(value("convo_upstream_first_byte_seconds_count"), 2.0);
    assert_eq!(value("convo_first_delta_seconds_count"), 1.0);
    assert_eq!(value("convo_chunk_delivery_seconds_count"), deltas);
    assert!(value("convo_first_delta_seconds_sum") > 0.0);
    assert!(text.contains("convo_first_delta_seconds_bucket{le=\"0.001\"}"));
}

// ----- a hostile or broken provider (issue 21) --------------------------

/// Polls the thread's newest message until it ends, for at most `within`.
async fn settled_within(h: &Harness, within: Duration) -> Value {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let last = h.last_message().await;
        if last["role"] == "assistant" && last["status"] != "streaming" {
            return last;
        }
        assert!(tokio::time::Instant::now() < deadline, "the answer did not end within {within:?}: {last}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[actix_web::test]
async fn an_event_over_the_size_limit_fails_the_answer_and_keeps_the_text() {
    // One text delta of 100 KiB, under a limit of 64 KiB: it would have
    // been read whole, and the answer ended `complete`.
    let huge = a::text_delta(0, &"x".repeat(100 * 1024));
    let pieces = cut_answer(vec![Piece::Chunked(huge, 1024), Piece::Bytes(a::message_stop())]);
    let h =
        harness("anthropic", vec![Reply::Stream { pieces, end: End::Hold }], &["--upstream-max-event-bytes", "65536"])
            .await;
    assert_failed_with_partial(&h, "upstream_error").await;
    let stored = h.last_message().await;
    assert_eq!(stored["error"]["message"], "the model provider sent an event over 65536 bytes");
    assert!(h.upstream.wait_hangup(WAIT).await, "the upstream saw its connection closed");
}

#[actix_web::test]
async fn a_large_event_under_the_limit_is_read_in_linear_time() {
    // 3 MiB in one event, arriving in 1 KiB chunks: reading it used to
    // cost the square of its size (each chunk re-scanned the whole
    // buffer: minutes here); now it is read once, well within the bound.
    let text = "y".repeat(3 << 20);
    let pieces = vec![
        Piece::Bytes(a::message_start(3)),
        Piece::Bytes(a::text_start(0)),
        Piece::Chunked(a::text_delta(0, &text), 1024),
        Piece::Bytes(a::message_delta("end_turn", 1)),
        Piece::Bytes(a::message_stop()),
    ];
    let h = harness(
        "anthropic",
        vec![Reply::Stream { pieces, end: End::Clean }],
        &[
            "--upstream-max-event-bytes",
            "8388608",
            "--upstream-bytes-per-token",
            "1024",
            "--max-answer-bytes",
            "8388608",
        ],
    )
    .await;
    // No subscriber: a client's own SSE parser is not what is measured.
    let posted = h.client.post(h.url("/messages")).json(&json!({"content": "big", "max_tokens": 64000})).send();
    assert_eq!(posted.await.unwrap().status(), 202);
    let stored = settled_within(&h, Duration::from_secs(15)).await;
    assert_eq!(stored["status"], "complete", "{}", stored["error"]);
    assert_eq!(stored["content"].as_str().unwrap().len(), text.len());
}

#[actix_web::test]
async fn a_provider_that_never_sends_its_head_is_retried_then_fails() {
    // A silent first attempt is retried like a refused connection.
    let h = harness(
        "anthropic",
        vec![Reply::Silent, Reply::Stream { pieces: a::text_answer(&["second try"]), end: End::Clean }],
        &["--upstream-head-timeout-ms", "300", "--upstream-attempts", "2"],
    )
    .await;
    let events = h.ask(json!({"content": "hi"})).await;
    assert_eq!(completed(&events)["status"], "complete");
    assert_eq!(streamed_text(&events, 0), "second try");
    assert_eq!(h.upstream.requests().len(), 2);
    assert!(h.upstream.wait_hangup(WAIT).await, "the silent attempt's connection was closed");

    // Silent on every attempt: `failed`, once the attempts ran out.
    let h =
        harness("anthropic", vec![Reply::Silent], &["--upstream-head-timeout-ms", "300", "--upstream-attempts", "3"])
            .await;
    let events = h.ask(json!({"content": "hi"})).await;
    let done = completed(&events);
    assert_eq!(done["status"], "failed");
    assert_eq!(done["error"]["code"], "upstream_timeout");
    assert_eq!(done["error"]["message"], "the model provider sent no response head within 300 ms");
    assert_eq!(h.upstream.requests().len(), 3);
    assert_eq!(h.last_message().await["status"], "failed");
}

#[actix_web::test]
async fn a_provider_that_drips_bytes_stalls_all_the_same() {
    // A byte every 50 ms: the next event would take seconds to finish,
    // and each byte used to count as progress.
    let mut drip = a::text_delta(0, " never whole");
    drip.extend(a::text_delta(0, " nor this"));
    let pieces = cut_answer(vec![Piece::Drip(drip, Duration::from_millis(50))]);
    let h = harness(
        "anthropic",
        vec![Reply::Stream { pieces, end: End::Hold }],
        &["--continue-max-attempts", "0", "--upstream-stall-ms", "1000"],
    )
    .await;
    let started = std::time::Instant::now();
    assert_failed_with_partial(&h, "upstream_timeout").await;
    assert!(started.elapsed() < Duration::from_secs(6), "failed by the stall, not the drip's end");
    assert!(h.upstream.wait_hangup(WAIT).await, "the upstream saw its connection closed");
}

#[actix_web::test]
async fn a_model_call_has_a_total_time_limit_of_its_own() {
    // Pings every 100 ms are whole events: the stall never fires.
    let pinging = || {
        let mut pieces = vec![Piece::Bytes(a::message_start(9)), Piece::Bytes(a::text_start(0))];
        pieces.push(Piece::Bytes(a::text_delta(0, "slow")));
        for _ in 0..12 {
            pieces.extend([Piece::Pause(Duration::from_millis(100)), Piece::Bytes(a::ping())]);
        }
        pieces.extend([Piece::Bytes(a::message_delta("end_turn", 1)), Piece::Bytes(a::message_stop())]);
        Reply::Stream { pieces, end: End::Clean }
    };
    let endless = cut_answer(vec![Piece::Forever(a::ping(), Duration::from_millis(100))]);
    let h = harness(
        "anthropic",
        vec![pinging(), pinging(), Reply::Stream { pieces: endless, end: End::Clean }],
        &["--upstream-call-timeout-ms", "2000", "--upstream-stall-ms", "1000"],
    )
    .await;
    // Each call has its own allowance: two calls of 1.2 s each, on one
    // thread, both end in time.
    for _ in 0..2 {
        let events = h.ask(json!({"content": "hi"})).await;
        assert_eq!(completed(&events)["status"], "complete");
        assert_eq!(streamed_text(&events, 0), "slow");
    }
    let events = h.ask(json!({"content": "hi"})).await;
    let done = completed(&events);
    assert_eq!(done["status"], "failed");
    assert_eq!(done["error"]["code"], "upstream_timeout");
    assert_eq!(done["error"]["message"], "the model call took longer than 2000 ms");
    assert_eq!(streamed_text(&events, 0), "partial tëxt");
    assert_eq!(h.last_message().await["content"], "partial tëxt");
    assert!(h.upstream.wait_hangup(WAIT).await, "the upstream saw its connection closed");
}

/// "ab€" again and again, cut to at most `bytes` at a character boundary.
fn ab_euro(bytes: usize) -> String {
    let mut text = String::new();
    for c in "ab€".chars().cycle() {
        if text.len() + c.len_utf8() > bytes {
            return text;
        }
        text.push(c);
    }
    unreachable!()
}

#[actix_web::test]
async fn a_provider_that_streams_past_max_tokens_is_cut() {
    // Deltas without end. `max_tokens` 10 at 32 bytes per token: 320
    // bytes, 32 of them the text block's own cost: 288 bytes of text, cut
    // before a "€" that does not fit whole.
    let endless = || Reply::Stream {
        pieces: vec![
            Piece::Bytes(a::message_start(4)),
            Piece::Bytes(a::text_start(0)),
            Piece::Forever(a::text_delta(0, "ab€"), Duration::from_millis(1)),
        ],
        end: End::Clean,
    };
    let h = harness(
        "anthropic",
        vec![endless(), Reply::Stream { pieces: a::text_answer(&["fine"]), end: End::Clean }],
        &[],
    )
    .await;
    let kept = ab_euro(288);
    assert_eq!(kept.len(), 287);
    let events = h.ask(json!({"content": "go on", "max_tokens": 10})).await;
    let done = completed(&events);
    assert_eq!(done["status"], "failed");
    assert_eq!(done["error"]["code"], "upstream_error");
    assert_eq!(
        done["error"]["message"],
        "answer too long: one model call may add 320 bytes (10 tokens at 32 bytes each)"
    );
    assert_eq!(streamed_text(&events, 0), kept);
    let stored = h.last_message().await;
    assert_eq!((stored["status"].as_str(), stored["content"].as_str()), (Some("failed"), Some(kept.as_str())));
    assert!(h.upstream.wait_hangup(WAIT).await, "the upstream saw its connection closed");
    // The next question sends what was kept, no more.
    let events = h.ask(json!({"content": "next"})).await;
    assert_eq!(completed(&events)["status"], "complete");
    let history = &h.upstream.requests()[1].body["messages"];
    assert_eq!(history[1]["content"][0]["text"], kept);

    // The whole message's limit, when it is the smaller: 100 bytes, 68
    // of them text.
    let h = harness("anthropic", vec![endless()], &["--max-answer-bytes", "100"]).await;
    let events = h.ask(json!({"content": "go on", "max_tokens": 10})).await;
    let done = completed(&events);
    assert_eq!(done["status"], "failed");
    assert_eq!(done["error"]["code"], "upstream_error");
    assert_eq!(done["error"]["message"], "answer too long: the message may hold 100 bytes");
    assert_eq!(streamed_text(&events, 0), ab_euro(68));
    assert!(h.upstream.wait_hangup(WAIT).await, "the upstream saw its connection closed");
}

#[actix_web::test]
async fn tool_calls_without_an_id_or_with_a_used_one_get_an_id_of_their_own() {
    let call = |index: usize, id: Option<&str>, name: &str| {
        [
            Piece::Bytes(a::tool_start(index, id, name)),
            Piece::Bytes(a::input_delta(index, "{}")),
            Piece::Bytes(a::block_stop(index)),
        ]
    };
    let tools_answer = |calls: Vec<[Piece; 3]>| {
        let mut pieces = vec![Piece::Bytes(a::message_start(5))];
        pieces.extend(calls.into_iter().flatten());
        pieces.extend([Piece::Bytes(a::message_delta("tool_use", 3)), Piece::Bytes(a::message_stop())]);
        Reply::Stream { pieces, end: End::Clean }
    };
    let h = harness(
        "anthropic",
        vec![
            tools_answer(vec![
                call(0, None, "no_id"),
                call(1, Some("toolu_dup"), "first"),
                call(2, Some("toolu_dup"), "second"),
            ]),
            tools_answer(vec![call(0, Some("toolu_dup"), "again")]),
            Reply::Stream { pieces: a::text_answer(&["done"]), end: End::Clean },
        ],
        &[],
    )
    .await;
    let assigned = |id: &str| {
        let uuid = id.strip_prefix("call_").unwrap_or_else(|| panic!("an id of the service's own: {id}"));
        assert!(uuid::Uuid::parse_str(uuid).is_ok(), "{id}");
    };

    // Over /events: the announced ids are the stored ids.
    let events = h.ask(json!({"content": "tools"})).await;
    assert_eq!(completed(&events)["status"], "complete");
    let announced: Vec<String> =
        events.iter().filter(|e| e["type"] == "message.block").map(|e| e["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(announced.len(), 3);
    assigned(&announced[0]);
    assert_eq!(announced[1], "toolu_dup");
    assigned(&announced[2]);
    assert_ne!(announced[0], announced[2]);
    let stored = h.last_message().await;
    let stored_ids: Vec<&str> =
        stored["blocks"].as_array().unwrap().iter().map(|b| b["id"].as_str().unwrap()).collect();
    assert_eq!(stored_ids, announced);

    // Over the AI SDK's chat route: an id used by an earlier answer of the
    // thread is replaced too, and `toolCallId` is the stored id.
    let url = format!("{}/v1/projects/{}/chat", h.base, h.pid);
    let body = crate::chat::turn(&h.tid, "more tools");
    let chunks = crate::chat::UiStream::of(h.client.post(&url).json(&body).send().await.unwrap()).rest().await;
    let stored = h.last_message().await;
    let id = stored["blocks"][0]["id"].as_str().unwrap().to_owned();
    assigned(&id);
    assert!(!announced.contains(&id));
    let calls: Vec<&Value> = chunks.iter().filter(|c| c["type"].as_str().unwrap().starts_with("tool-input")).collect();
    assert!(!calls.is_empty());
    assert!(calls.iter().all(|c| c["toolCallId"] == id.as_str()), "{calls:?}");

    // The provider is told the assigned ids on the next call (the thread
    // offers tools now: a request without any tells past calls as text),
    // each with a result (these answers ended before any was given).
    let r = h.client.patch(h.url("")).json(&json!({"tools": [{"name": "again", "input_schema": {}}]})).send();
    assert_eq!(r.await.unwrap().status(), 200);
    h.ask(json!({"content": "and now?"})).await;
    let asked = &h.upstream.requests()[2].body["messages"];
    let sent: Vec<&str> = asked
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|m| m["content"].as_array().unwrap())
        .filter(|c| c["type"] == "tool_use")
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    let mut expected: Vec<&str> = announced.iter().map(String::as_str).collect();
    expected.push(&id);
    assert_eq!(sent, expected);
    let answered: Vec<&str> = asked
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|m| m["content"].as_array().unwrap())
        .filter(|c| c["type"] == "tool_result")
        .map(|c| c["tool_use_id"].as_str().unwrap())
        .collect();
    assert_eq!(answered, expected, "every call goes back with a result");
}

/// A thread's tools as the contract writes them: one needs approval, the
/// other says who runs it; neither is the provider's business.
fn thread_tools() -> Value {
    json!([
        {"name": "get_weather", "description": "The weather in a city, now",
         "input_schema": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
                          "required": ["city"]},
         "approval": "always"},
        {"name": "get_time", "input_schema": {"type": "object", "properties": {"tz": {"type": "string"}}},
         "run": "client"},
    ])
}

/// Two parallel calls, inputs with multi-byte text and escapes, so their
/// fragments are cut inside keys, strings and characters' neighbours.
const CALLS: [(&str, &str, &str); 2] = [
    ("call_weather_1", "get_weather", r#"{"city": "Zürich \"Altstadt\"", "unit": "c"}"#),
    ("call_time_2", "get_time", r#"{"tz":"Europe/Zurich"}"#),
];

/// The answer's `tool_use` blocks as stored and as streamed: kinds, ids,
/// names, and the input text the deltas built, which is exactly the
/// model's.
async fn assert_calls_stored(h: &Harness, events: &[Value], first: usize, stop_reason: &str) {
    let announced: Vec<(String, String)> = events
        .iter()
        .filter(|e| e["type"] == "message.block" && e["kind"] == "tool_use")
        .map(|e| (e["id"].as_str().unwrap().to_owned(), e["name"].as_str().unwrap().to_owned()))
        .collect();
    let expected: Vec<(String, String)> =
        CALLS.iter().map(|(id, name, _)| (id.to_string(), name.to_string())).collect();
    assert_eq!(announced, expected);
    let stored = h.last_message().await;
    for (i, (id, name, input)) in CALLS.iter().enumerate() {
        let block = &stored["blocks"][first + i];
        assert_eq!(
            (block["kind"].as_str(), block["id"].as_str(), block["name"].as_str()),
            (Some("tool_use"), Some(*id), Some(*name))
        );
        assert_eq!(block["text"], *input, "the exact input text");
        assert_eq!(streamed_text(events, (first + i) as u64), *input, "the deltas build it");
    }
    assert_eq!(stored["blocks"].as_array().unwrap().len(), first + CALLS.len());
    assert_eq!(stored["stop_reason"], stop_reason, "the provider's own reason");
    assert_ne!(stored["status"], "failed");
}

#[actix_web::test]
async fn anthropic_is_told_the_threads_tools_and_streams_parallel_calls() {
    let pieces = a::tool_answer(Some("Checking both."), &CALLS);
    let mut h = harness("anthropic", vec![Reply::Stream { pieces, end: End::Clean }], &[]).await;
    h.new_thread(json!({"tools": thread_tools(), "tool_choice": {"type": "tool", "name": "get_weather"}})).await;
    let events = h.ask(json!({"content": "weather and time in Zürich?"})).await;

    let body = &h.upstream.requests()[0].body;
    assert_eq!(
        body["tools"],
        json!([
            {"name": "get_weather", "description": "The weather in a city, now",
             "input_schema": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
                              "required": ["city"]}},
            {"name": "get_time", "input_schema": {"type": "object", "properties": {"tz": {"type": "string"}}}},
        ])
    );
    assert_eq!(body["tool_choice"], json!({"type": "tool", "name": "get_weather"}));
    assert_eq!(streamed_text(&events, 0), "Checking both.");
    assert_calls_stored(&h, &events, 1, "tool_use").await;
}

#[actix_web::test]
async fn openai_is_told_the_threads_tools_and_streams_parallel_calls() {
    let pieces = o::tool_answer(None, &CALLS);
    let mut h = harness("openai", vec![Reply::Stream { pieces, end: End::Clean }], &[]).await;
    h.new_thread(json!({"tools": thread_tools(), "tool_choice": {"type": "any"}})).await;
    let events = h.ask(json!({"content": "weather and time in Zürich?"})).await;

    let body = &h.upstream.requests()[0].body;
    assert_eq!(
        body["tools"],
        json!([
            {"type": "function", "function": {"name": "get_weather", "description": "The weather in a city, now",
             "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
                            "required": ["city"]}}},
            {"type": "function", "function": {"name": "get_time",
             "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}}}},
        ])
    );
    assert_eq!(body["tool_choice"], "required");
    assert_calls_stored(&h, &events, 0, "tool_calls").await;
    assert_eq!(h.last_message().await["usage"]["output_tokens"], 13);
}

#[actix_web::test]
async fn openai_arguments_of_a_call_after_the_next_call_began_fail_the_answer() {
    // Blocks are a log: the first call's input cannot grow once the
    // second call's block began.
    let pieces = vec![
        Piece::Bytes(o::call_start(0, "call_1", "get_time")),
        Piece::Bytes(o::call_arguments(0, "{\"tz\":")),
        Piece::Bytes(o::call_start(1, "call_2", "get_time")),
        Piece::Bytes(o::call_arguments(0, "\"UTC\"}")),
        Piece::Bytes(o::chunk(json!({}), Some("tool_calls"))),
        Piece::Bytes(o::done()),
    ];
    let mut h = harness("openai", vec![Reply::Stream { pieces, end: End::Clean }], &[]).await;
    h.new_thread(json!({"tools": thread_tools()})).await;
    let events = h.ask(json!({"content": "time?"})).await;
    let done = completed(&events);
    assert_eq!(done["status"], "failed");
    assert!(done["error"]["message"].as_str().unwrap().contains("after block 1 began"), "{done}");
    assert_eq!(h.last_message().await["blocks"][0]["text"], "{\"tz\":", "what came in order is kept");
}
