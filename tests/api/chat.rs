//! The AI SDK's chat routes as a `useChat` app meets them: `POST …/chat`
//! with `DefaultChatTransport`'s body answers the UI message stream (its
//! header, its chunks, `[DONE]`), a chat id of the client's own makes a
//! thread and finds it again, bad bodies are refused with nothing stored,
//! the resume answers 204 when idle and the whole running answer
//! otherwise, a busy thread answers 409, keys and stream tokens hold, the
//! same answer is on `/events` and `/ws`, the cancel route stops it for everyone,
//! closing a connection does not, and an upstream failure is the SDK's
//! `error` chunk. (The SDK itself drives these routes in `tests/aisdk`.)

use std::sync::Arc;

use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::sync::Notify;

use crate::{
    access::ADMIN,
    fake_upstream::{anthropic as a, End, Piece, Reply},
    providers::{cut_answer, harness},
    support::{error_code, eventually, Events as _, Server, Transcript, WAIT},
};

/// `DefaultChatTransport`'s body for a first turn asking `text`.
pub fn turn(chat: &str, text: &str) -> Value {
    json!({
        "id": chat,
        "trigger": "submit-message",
        "messageId": null,
        "messages": [{"id": "u1", "role": "user", "parts": [{"type": "text", "text": text}]}],
    })
}

/// A UI message stream read as the SDK reads it: `data:` lines of JSON
/// chunks, then `data: [DONE]`.
pub struct UiStream {
    lines: std::pin::Pin<Box<dyn futures_util::Stream<Item = String> + Send>>,
}

impl UiStream {
    pub fn of(resp: reqwest::Response) -> UiStream {
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        assert_eq!(resp.headers()["x-vercel-ai-ui-message-stream"], "v1");
        let mut buf = String::new();
        let lines = resp.bytes_stream().flat_map(move |chunk| {
            buf.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
            let mut out = Vec::new();
            while let Some(end) = buf.find("\n\n") {
                out.push(buf[..end].to_owned());
                buf.drain(..end + 2);
            }
            futures_util::stream::iter(out)
        });
        UiStream { lines: Box::pin(lines) }
    }

    /// The next chunk, `None` at `[DONE]` (keep-alive comments skipped).
    pub async fn next(&mut self) -> Option<Value> {
        loop {
            let line = tokio::time::timeout(WAIT, self.lines.next()).await.expect("a chunk in time")?;
            if line.starts_with(':') {
                continue;
            }
            let data = line.strip_prefix("data: ").unwrap_or_else(|| panic!("only data lines: {line:?}"));
            if data == "[DONE]" {
                assert!(self.lines.next().await.is_none(), "nothing after [DONE]");
                return None;
            }
            return Some(serde_json::from_str(data).unwrap());
        }
    }

    pub async fn rest(&mut self) -> Vec<Value> {
        let mut out = Vec::new();
        while let Some(chunk) = self.next().await {
            out.push(chunk);
        }
        out
    }
}

/// The text of each part, rebuilt from chunks as the SDK does: a delta
/// needs its part's start, and text goes to the part it names.
pub fn parts(chunks: &[Value]) -> Vec<(String, String)> {
    let mut parts: Vec<(String, String, String)> = Vec::new();
    for c in chunks {
        let kind = c["type"].as_str().unwrap();
        match kind {
            "text-start" | "reasoning-start" => {
                parts.push((kind.replace("-start", ""), c["id"].as_str().unwrap().into(), String::new()))
            }
            "text-delta" | "reasoning-delta" => {
                let part = parts.iter_mut().find(|p| p.1 == c["id"]).expect("a delta after its start");
                part.2.push_str(c["delta"].as_str().unwrap());
            }
            _ => {}
        }
    }
    parts.into_iter().map(|(kind, _, text)| (kind, text)).collect()
}

async fn project(server: &Server) -> String {
    server.post_json("/v1/projects", json!({"name": "chat"})).await["id"].as_str().unwrap().to_owned()
}

async fn post_turn(server: &Server, pid: &str, body: &Value) -> reqwest::Response {
    server.client.post(format!("{}/v1/projects/{pid}/chat", server.base)).json(body).send().await.unwrap()
}

async fn threads_of(server: &Server, pid: &str) -> Vec<Value> {
    server.get_json(&format!("/v1/projects/{pid}/threads")).await["data"].as_array().unwrap().clone()
}

#[actix_web::test]
async fn a_turn_answers_the_ui_message_stream_and_a_chat_id_finds_its_thread_again() {
    let server = Server::temp(&["--sim-thinking"]).await;
    let pid = project(&server).await;
    let chunks = UiStream::of(post_turn(&server, &pid, &turn("Xq3bT9aLmPz01RkE", "first question")).await).rest().await;
    let threads = threads_of(&server, &pid).await;
    assert_eq!(threads.len(), 1, "the chat's first turn made a thread");
    assert_eq!(threads[0]["title"], "first question");
    let thread = format!("/v1/projects/{pid}/threads/{}", threads[0]["id"].as_str().unwrap());
    let messages = server.messages(&thread).await;
    assert_eq!(messages[0]["content"], "first question");
    let answer = &messages[1];
    assert_eq!(answer["status"], "complete");

    let kinds: Vec<&str> = chunks.iter().map(|c| c["type"].as_str().unwrap()).collect();
    assert_eq!(&kinds[..3], ["start", "start-step", "reasoning-start"]);
    assert_eq!(&kinds[kinds.len() - 3..], ["text-end", "finish-step", "finish"]);
    assert_eq!(chunks[0]["messageId"], answer["id"], "the UI message is the stored answer");
    assert_eq!(chunks.last().unwrap()["finishReason"], "stop");
    let blocks: Vec<(String, String)> = answer["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            let kind = if b["kind"] == "thinking" { "reasoning" } else { "text" };
            (kind.to_owned(), b["text"].as_str().unwrap().to_owned())
        })
        .collect();
    assert_eq!(parts(&chunks), blocks, "every part byte for byte as stored");

    // The same id again: the same thread, which now holds both turns.
    let again = turn("Xq3bT9aLmPz01RkE", "second question");
    UiStream::of(post_turn(&server, &pid, &again).await).rest().await;
    assert_eq!(threads_of(&server, &pid).await.len(), 1);
    assert_eq!(server.messages(&thread).await.len(), 4);
    // A thread's own id is its chat id too.
    let tid = threads[0]["id"].as_str().unwrap();
    UiStream::of(post_turn(&server, &pid, &turn(tid, "third")).await).rest().await;
    assert_eq!(server.messages(&thread).await.len(), 6);
    assert_eq!(threads_of(&server, &pid).await.len(), 1);
}

#[actix_web::test]
async fn bad_bodies_are_refused_in_the_contracts_shape_and_nothing_is_stored() {
    let server = Server::temp(&[]).await;
    let pid = project(&server).await;
    let user = |parts: Value| json!([{"id": "u", "role": "user", "parts": parts}]);
    let bodies = [
        json!({}),
        json!({"id": "c1", "trigger": "submit-message"}),
        json!({"id": "c1", "trigger": "resume-stream", "messages": user(json!([{"type": "text", "text": "q"}]))}),
        json!({"id": "c1", "trigger": "submit-message", "messages": []}),
        json!({"id": "c1", "trigger": "submit-message", "messages": user(json!([{"type": "text", "text": "   "}]))}),
        json!({"id": "c1", "trigger": "submit-message", "messages": user(json!([{"type": "file", "url": "x"}]))}),
        json!({"id": "c1", "trigger": "submit-message", "messages": user(json!([{"type": "text", "text": "nul\u{0}"}]))}),
        json!({"id": "", "trigger": "submit-message", "messages": user(json!([{"type": "text", "text": "q"}]))}),
        json!({"id": "a\nb", "trigger": "submit-message", "messages": user(json!([{"type": "text", "text": "q"}]))}),
        json!({"id": "c1", "trigger": "submit-message", "messages": user(json!([{"type": "text", "text": "q"}])), "max_tokens": 0}),
    ];
    for body in &bodies {
        assert_eq!(error_code(post_turn(&server, &pid, body).await).await, (400, "bad_request".into()), "{body}");
    }
    let r = server
        .client
        .post(format!("{}/v1/projects/{pid}/chat", server.base))
        .header("content-type", "text/plain")
        .body(turn("c1", "q").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, (415, "unsupported_media_type".into()));
    // A turn that ends with an answer continues it: no such chat, no such
    // answer.
    let answer = json!({"id": "c1", "trigger": "submit-message",
        "messages": [{"id": "a", "role": "assistant", "parts": [{"type": "text", "text": "q"}]}]});
    assert_eq!(error_code(post_turn(&server, &pid, &answer).await).await, (404, "not_found".into()));
    assert!(threads_of(&server, &pid).await.is_empty(), "no thread was made for a refused turn");
    let missing = post_turn(&server, "0190a0a0-0000-7000-8000-000000000000", &turn("c1", "q")).await;
    assert_eq!(error_code(missing).await, (404, "not_found".into()));
}

#[actix_web::test]
async fn resume_is_204_when_idle_and_the_whole_running_answer_otherwise() {
    let server = Server::temp(&["--sim-interval-ms", "30", "--sim-chunks", "30"]).await;
    let pid = project(&server).await;
    let resume = |chat: &str| server.client.get(format!("{}/v1/projects/{pid}/chat/{chat}/stream", server.base)).send();
    assert_eq!(resume("never-used").await.unwrap().status(), 204, "an unknown chat has nothing running");

    let mut first = UiStream::of(post_turn(&server, &pid, &turn("resumed", "go")).await);
    // Some text arrived before the resume.
    let mut seen = Vec::new();
    while seen.iter().filter(|c: &&Value| c["type"] == "text-delta").count() < 3 {
        seen.push(first.next().await.unwrap());
    }
    let mut again = UiStream::of(resume("resumed").await.unwrap());
    let replayed = again.rest().await;
    assert_eq!(replayed[0]["type"], "start", "a replay from the start, which the SDK rebuilds from");
    assert_eq!(replayed[0]["messageId"], seen[0]["messageId"]);
    seen.extend(first.rest().await);
    assert_eq!(parts(&replayed), parts(&seen), "nothing repeated, nothing missing");
    let tid = threads_of(&server, &pid).await[0]["id"].as_str().unwrap().to_owned();
    let stored = server.messages(&format!("/v1/projects/{pid}/threads/{tid}")).await;
    assert_eq!(parts(&replayed), [("text".to_owned(), stored[1]["content"].as_str().unwrap().to_owned())]);
    assert_eq!(resume("resumed").await.unwrap().status(), 204, "idle again once the answer ended");
    assert_eq!(resume(&tid).await.unwrap().status(), 204);
}

#[actix_web::test]
async fn a_busy_chat_answers_409_like_the_messages_route() {
    let server = Server::temp(&["--sim-interval-ms", "40", "--sim-chunks", "50"]).await;
    let pid = project(&server).await;
    let running = post_turn(&server, &pid, &turn("busy", "one")).await;
    assert_eq!(running.status(), 200);
    let again = post_turn(&server, &pid, &turn("busy", "two")).await;
    assert_eq!(error_code(again).await, (409, "thread_busy".into()));
    let tid = threads_of(&server, &pid).await[0]["id"].as_str().unwrap().to_owned();
    let thread = format!("/v1/projects/{pid}/threads/{tid}");
    let r = server.client.post(format!("{}{thread}/messages", server.base)).json(&json!({"content": "x"})).send();
    assert_eq!(error_code(r.await.unwrap()).await, (409, "thread_busy".into()));
    assert_eq!(server.messages(&thread).await.len(), 2, "the refused turns stored nothing");
}

#[actix_web::test]
async fn the_same_answer_is_on_events_and_ws_and_the_cancel_route_stops_it_for_everyone() {
    let server = Server::temp(&["--sim-interval-ms", "30", "--sim-chunks", "60"]).await;
    let thread = server.thread().await;
    let (pid, tid) = {
        let mut parts = thread.trim_start_matches("/v1/projects/").split("/threads/");
        (parts.next().unwrap().to_owned(), parts.next().unwrap().to_owned())
    };
    let mut watcher = server.sse(&thread, None).await;
    assert_eq!(watcher.next().await.unwrap().kind, "ready");
    let mut ws_watcher = crate::support::Ws::open(&server.base, &thread, None).await;
    assert_eq!(ws_watcher.next().await.unwrap().kind, "ready");
    let mut ui = UiStream::of(post_turn(&server, &pid, &turn(&tid, "watched")).await);
    let mut chunks = Vec::new();
    while chunks.iter().filter(|c: &&Value| c["type"] == "text-delta").count() < 2 {
        chunks.push(ui.next().await.unwrap());
    }
    let cancel = format!("{}/v1/projects/{pid}/chat/{tid}/cancel", server.base);
    let r = server.client.post(&cancel).send().await.unwrap();
    assert_eq!(r.status(), 202);
    chunks.extend(ui.rest().await);
    assert_eq!(chunks.last().unwrap()["type"], "abort", "the UI stream ends aborted");
    let answer = server.messages(&thread).await.pop().unwrap();
    assert_eq!(answer["status"], "cancelled");
    assert_eq!(parts(&chunks), [("text".to_owned(), answer["content"].as_str().unwrap().to_owned())]);
    let mut t = Transcript::default();
    let events = watcher.until("message.completed").await;
    assert_eq!(events.last().unwrap().data["status"], "cancelled");
    t.apply_all(&events);
    t.assert_matches(&answer);
    let mut over_ws = Transcript::default();
    over_ws.apply_all(&ws_watcher.until("message.completed").await);
    over_ws.assert_matches(&answer);
    assert_eq!(error_code(server.client.post(&cancel).send().await.unwrap()).await, (409, "not_generating".into()));
    let unknown = format!("{}/v1/projects/{pid}/chat/unknown/cancel", server.base);
    assert_eq!(error_code(server.client.post(&unknown).send().await.unwrap()).await, (404, "not_found".into()));
}

#[actix_web::test]
async fn closing_the_turns_connection_does_not_stop_the_answer() {
    let server = Server::temp(&["--sim-interval-ms", "20", "--sim-chunks", "40"]).await;
    let pid = project(&server).await;
    let mut ui = UiStream::of(post_turn(&server, &pid, &turn("closed-tab", "go on")).await);
    ui.next().await.unwrap();
    drop(ui);
    let tid = threads_of(&server, &pid).await[0]["id"].as_str().unwrap().to_owned();
    let thread = format!("/v1/projects/{pid}/threads/{tid}");
    let id = server.messages(&thread).await[1]["id"].as_str().unwrap().to_owned();
    assert_eq!(server.finished(&thread, &id).await["status"], "complete", "a reload resumes it instead");
}

async fn mint(server: &Server, pid: &str, tid: &str, key: &str) -> String {
    let t = server.post_json_as(key, &format!("/v1/projects/{pid}/threads/{tid}/stream-token"), None).await;
    t["token"].as_str().unwrap().to_owned()
}

#[actix_web::test]
async fn keys_and_stream_tokens_hold_on_the_chat_routes() {
    let server = Server::temp(&["--admin-token", ADMIN]).await;
    let c = &server.client;
    let (pid, key) = server.project_with_key(ADMIN).await;
    let (_, other_key) = server.project_with_key(ADMIN).await;
    let url = format!("{}/v1/projects/{pid}/chat", server.base);
    assert_eq!(error_code(c.post(&url).json(&turn("k", "q")).send().await.unwrap()).await.0, 401);
    let foreign = c.post(&url).bearer_auth(&other_key).json(&turn("k", "q")).send().await.unwrap();
    assert_eq!(error_code(foreign).await, (404, "not_found".into()), "another project's chat does not exist");
    UiStream::of(c.post(&url).bearer_auth(&key).json(&turn("k", "q")).send().await.unwrap()).rest().await;

    // A stream token of the chat's thread opens its resume, and only that.
    let threads: Value = c
        .get(format!("{}/v1/projects/{pid}/threads", server.base))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let tid = threads["data"][0]["id"].as_str().unwrap().to_owned();
    let token = mint(&server, &pid, &tid, &key).await;
    let resume = |chat: &str, token: &str| {
        c.get(format!("{}/v1/projects/{pid}/chat/{chat}/stream?token={token}", server.base)).send()
    };
    assert_eq!(resume("k", &token).await.unwrap().status(), 204);
    assert_eq!(resume(&tid, &token).await.unwrap().status(), 204);
    let other = server.post_json_as(&key, &format!("/v1/projects/{pid}/threads"), Some(json!({}))).await;
    let other_token = mint(&server, &pid, other["id"].as_str().unwrap(), &key).await;
    assert_eq!(error_code(resume("k", &other_token).await.unwrap()).await, (401, "unauthorized".into()));
    let turn_with_token = c.post(format!("{url}?token={token}")).json(&turn("k", "q")).send().await.unwrap();
    assert_eq!(error_code(turn_with_token).await.0, 401, "a stream token asks nothing");
    let cancel = c.post(format!("{}/v1/projects/{pid}/chat/k/cancel?token={token}", server.base)).send().await.unwrap();
    assert_eq!(error_code(cancel).await.0, 401);
}

#[actix_web::test]
async fn an_upstream_failure_mid_answer_is_the_sdks_error_chunk_and_the_answer_is_stored_failed() {
    let gate = Arc::new(Notify::new());
    let mut pieces = vec![Piece::Wait(gate.clone())];
    pieces.extend(cut_answer(vec![Piece::Bytes(a::error("overloaded_error", "Overloaded"))]));
    let h =
        harness("anthropic", vec![Reply::Stream { pieces, end: End::Clean }], &["--continue-max-attempts", "0"]).await;
    let body = turn(&h.tid, "fails midway");
    let resp = h.client.post(format!("{}/v1/projects/{}/chat", h.base, h.pid)).json(&body).send().await.unwrap();
    let mut ui = UiStream::of(resp);
    assert_eq!(ui.next().await.unwrap()["type"], "start");
    gate.notify_one();
    let chunks = ui.rest().await;
    let stored = eventually(|| async {
        let last = h.last_message().await;
        (last["status"] == "failed").then_some(last)
    })
    .await;
    let kinds: Vec<&str> = chunks.iter().map(|c| c["type"].as_str().unwrap()).collect();
    assert_eq!(&kinds[kinds.len() - 4..], ["text-end", "error", "finish-step", "finish"]);
    let error = chunks.iter().find(|c| c["type"] == "error").unwrap();
    assert_eq!(error["errorText"], stored["error"]["message"]);
    assert_eq!(chunks.last().unwrap()["finishReason"], "error");
    assert_eq!(parts(&chunks), [("text".to_owned(), "partial tëxt".to_owned())]);
}

#[actix_web::test]
async fn the_message_rate_and_the_stream_caps_hold_on_chat_turns() {
    let server = Server::temp(&["--posts-per-minute", "1", "--sim-chunks", "2"]).await;
    let pid = project(&server).await;
    UiStream::of(post_turn(&server, &pid, &turn("limited", "one")).await).rest().await;
    let r = post_turn(&server, &pid, &turn("limited", "two")).await;
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(error_code(r).await, (429, "rate_limited".into()));
    let tid = threads_of(&server, &pid).await[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(server.messages(&format!("/v1/projects/{pid}/threads/{tid}")).await.len(), 2);

    let crowded =
        Server::temp(&["--max-subscribers-per-thread", "1", "--sim-interval-ms", "30", "--sim-chunks", "40"]).await;
    let pid = project(&crowded).await;
    let running = post_turn(&crowded, &pid, &turn("crowded", "go")).await;
    assert_eq!(running.status(), 200);
    let resume = crowded.client.get(format!("{}/v1/projects/{pid}/chat/crowded/stream", crowded.base)).send();
    assert_eq!(error_code(resume.await.unwrap()).await, (429, "rate_limited".into()), "the turn holds the one place");
}

/// The SDK's `regenerate()` (`trigger: regenerate-message`, the messages
/// up to the question it answered) asks the thread's newest question
/// again, as POST messages `{regenerate: true}` does: a new answer after
/// the earlier one, which the thread keeps, the question stored once, and
/// the model shown the thread up to that question. A regenerate whose
/// newest user message is not the thread's newest question (edited in
/// the app) asks it as a new question.
#[actix_web::test]
async fn the_transports_model_and_max_tokens_are_asked_and_regenerate_asks_the_same_question_again() {
    let replies = ["first answer", "second answer", "third answer"]
        .map(|text| Reply::Stream { pieces: a::text_answer(&[text]), end: End::Clean })
        .to_vec();
    let h = harness("anthropic", replies, &[]).await;
    let url = format!("{}/v1/projects/{}/chat", h.base, h.pid);
    let mut body = turn(&h.tid, "which model?");
    body["model"] = json!("model-from-the-sdk");
    body["max_tokens"] = json!(77);
    let first = UiStream::of(h.client.post(&url).json(&body).send().await.unwrap()).rest().await;
    assert_eq!(parts(&first), [("text".to_owned(), "first answer".to_owned())]);
    let asked = &h.upstream.requests()[0].body;
    assert_eq!((asked["model"].as_str(), asked["max_tokens"].as_u64()), (Some("model-from-the-sdk"), Some(77)));

    body["trigger"] = json!("regenerate-message");
    let second = UiStream::of(h.client.post(&url).json(&body).send().await.unwrap()).rest().await;
    assert_eq!(parts(&second), [("text".to_owned(), "second answer".to_owned())]);
    let thread = format!("{}/v1/projects/{}/threads/{}/messages", h.base, h.pid, h.tid);
    let stored = || async {
        let page: Value = h.client.get(&thread).send().await.unwrap().json().await.unwrap();
        let data = page["data"].as_array().unwrap().clone();
        data.iter()
            .map(|m| (m["role"].as_str().unwrap().to_owned(), m["content"].as_str().unwrap().to_owned()))
            .collect::<Vec<_>>()
    };
    let pair = |role: &str, text: &str| (role.to_owned(), text.to_owned());
    assert_eq!(
        stored().await,
        [pair("user", "which model?"), pair("assistant", "first answer"), pair("assistant", "second answer")],
        "the thread keeps both answers, and the question once"
    );
    let again = &h.upstream.requests()[1].body;
    assert_eq!(again["messages"], h.upstream.requests()[0].body["messages"], "asked as it was the first time");
    assert_eq!(again["model"], "model-from-the-sdk");

    // An edited question sent as a regenerate is a new question.
    let mut edited = turn(&h.tid, "which model, really?");
    edited["trigger"] = json!("regenerate-message");
    let third = UiStream::of(h.client.post(&url).json(&edited).send().await.unwrap()).rest().await;
    assert_eq!(parts(&third), [("text".to_owned(), "third answer".to_owned())]);
    assert_eq!(stored().await.last().unwrap(), &pair("assistant", "third answer"));
    assert_eq!(stored().await[3], pair("user", "which model, really?"));
    assert_eq!(h.upstream.requests().len(), 3);
}

/// The whole body of a UI message stream, as its `data:` payloads (the
/// closing `[DONE]` included), however many closings it holds.
async fn data_lines(resp: reqwest::Response) -> Vec<String> {
    let body = tokio::time::timeout(WAIT, resp.text()).await.expect("the stream ends").unwrap();
    body.split("\n\n").filter_map(|event| event.strip_prefix("data: ")).map(str::to_owned).collect()
}

/// Deleting a chat's thread mid-answer ends its UI message streams (the
/// turn's and a resume's) once: `abort` then `[DONE]`, nothing after; the
/// stream closing for the deleted thread writes no second `error` and
/// `[DONE]`.
#[actix_web::test]
async fn deleting_the_thread_mid_answer_closes_each_ui_stream_once() {
    let server = Server::temp(&["--sim-interval-ms", "20", "--sim-chunks", "200"]).await;
    let pid = project(&server).await;
    let turn_stream = post_turn(&server, &pid, &turn("doomed", "go")).await;
    assert_eq!(turn_stream.status(), 200);
    let tid = threads_of(&server, &pid).await[0]["id"].as_str().unwrap().to_owned();
    let resumed = server.client.get(format!("{}/v1/projects/{pid}/chat/{tid}/stream", server.base)).send();
    let resumed = resumed.await.unwrap();
    assert_eq!(resumed.status(), 200);
    let mut turn_stream = turn_stream.bytes_stream();
    let mut head = String::new();
    while head.matches("text-delta").count() < 3 {
        let chunk = tokio::time::timeout(WAIT, turn_stream.next()).await.expect("text in time").unwrap().unwrap();
        head.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    let r = server.client.delete(format!("{}/v1/projects/{pid}/threads/{tid}", server.base)).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let mut rest = String::new();
    while let Some(chunk) = tokio::time::timeout(WAIT, turn_stream.next()).await.expect("the stream ends") {
        rest.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
    }
    let turn_lines: Vec<String> =
        (head + &rest).split("\n\n").filter_map(|e| e.strip_prefix("data: ")).map(str::to_owned).collect();
    for (name, lines) in [("the turn", turn_lines), ("a resume", data_lines(resumed).await)] {
        let closings: Vec<&String> =
            lines.iter().filter(|l| *l == "[DONE]" || l.contains("\"type\":\"error\"")).collect();
        assert_eq!(closings, ["[DONE]"], "{name}: one closing, {lines:?}");
        let n = lines.len();
        assert_eq!(lines[n - 1], "[DONE]", "{name}");
        let last: Value = serde_json::from_str(&lines[n - 2]).unwrap();
        assert_eq!(last["type"], "abort", "{name}: the answer ended cancelled: {lines:?}");
    }
}
