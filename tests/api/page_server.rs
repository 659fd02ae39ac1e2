//! What the page needs of the server (issue 25): `GET …/threads?q=` finds
//! threads by their titles (any case, `%` and `_` literal, paged like the
//! list); `POST …/messages` with `{"regenerate": true}` asks the newest
//! question again (both answers kept, the model shown the thread up to
//! that question, also the retry of a failed or cancelled answer, 409
//! while busy, 400 when it cannot be); and a thread made without a title
//! is titled by its first question, which every subscriber hears as
//! `thread.updated` (on every node in cluster mode), whichever way the
//! question came.

use std::sync::Arc;

use serde_json::{json, Value};
use tokio::sync::Notify;

use crate::{
    fake_upstream::{anthropic as a, End, FakeUpstream, Piece, Reply},
    providers::{cut_answer, harness, Harness},
    support::{error_code, eventually, Events as _, Server, Ws},
    tools::{calls_answer, text_answer},
};

/// A new project on `server`: its id.
async fn project(server: &Server) -> String {
    let p = server.post_json("/v1/projects", json!({"name": "page"})).await;
    p["id"].as_str().unwrap().to_owned()
}

/// A thread of `pid` made with `body`: its path, `/v1/projects/{pid}/threads/{tid}`.
async fn thread(server: &Server, pid: &str, body: Value) -> String {
    let t = server.post_json(&format!("/v1/projects/{pid}/threads"), body).await;
    format!("/v1/projects/{pid}/threads/{}", t["id"].as_str().unwrap())
}

/// `GET …/threads` with the query `query`: status and body.
async fn list(server: &Server, pid: &str, query: &[(&str, &str)]) -> (u16, Value) {
    let url = format!("{}/v1/projects/{pid}/threads", server.base);
    let r = server.client.get(url).query(query).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// The titles of a page of threads, in order.
fn titles(page: &Value) -> Vec<String> {
    page["data"].as_array().unwrap().iter().map(|t| t["title"].as_str().unwrap_or("<none>").to_owned()).collect()
}

/// The titles `q` finds, newest first (one page of 100).
async fn found(server: &Server, pid: &str, q: &str) -> Vec<String> {
    let (status, page) = list(server, pid, &[("q", q), ("limit", "100")]).await;
    assert_eq!(status, 200, "q={q:?}: {page}");
    titles(&page)
}

#[actix_web::test]
async fn q_finds_threads_by_title_in_any_case_with_the_patterns_own_characters_literal() {
    let server = Server::temp(&[]).await;
    let pid = project(&server).await;
    for title in
        ["Rust async", "Python tips", "learning RUST", "100% sure", "100 percent", "snake_case", "snakeXcase", "wow!"]
    {
        thread(&server, &pid, json!({"title": title})).await;
    }
    thread(&server, &pid, json!({})).await;
    thread(&server, &pid, json!({"title": r"C:\path"})).await;

    assert_eq!(found(&server, &pid, "rust").await, ["learning RUST", "Rust async"], "newest first, any case");
    assert_eq!(found(&server, &pid, "RuSt AS").await, ["Rust async"]);
    assert_eq!(found(&server, &pid, "%").await, ["100% sure"], "% is itself, not any text");
    assert_eq!(found(&server, &pid, "100%").await, ["100% sure"]);
    assert_eq!(found(&server, &pid, "_").await, ["snake_case"], "_ is itself, not any character");
    assert_eq!(found(&server, &pid, "!").await, ["wow!"], "the pattern's escape character is itself too");
    assert_eq!(found(&server, &pid, r"\p").await, [r"C:\path"], "and so is a backslash");
    let none = list(&server, &pid, &[("q", "no such words")]).await;
    assert_eq!(none, (200, json!({"data": [], "next_cursor": null})), "no match: an empty page");
    // An empty q filters nothing (the untitled thread too).
    assert_eq!(found(&server, &pid, "").await.len(), 10);
    // Another project's threads are never found.
    let other = project(&server).await;
    assert!(found(&server, &other, "rust").await.is_empty());
}

#[actix_web::test]
async fn q_pages_newest_first_and_an_overlong_or_nul_q_is_refused() {
    let server = Server::temp(&[]).await;
    let pid = project(&server).await;
    for i in 0..5 {
        thread(&server, &pid, json!({"title": format!("Page {i}")})).await;
        thread(&server, &pid, json!({"title": format!("other {i}")})).await;
    }
    let mut seen = Vec::new();
    let mut cursor = String::new();
    let mut pages = 0;
    loop {
        let (status, page) = list(&server, &pid, &[("q", "page"), ("limit", "2"), ("cursor", &cursor)]).await;
        assert_eq!(status, 200, "{page}");
        pages += 1;
        seen.extend(titles(&page));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(seen, ["Page 4", "Page 3", "Page 2", "Page 1", "Page 0"], "every match once, newest first");
    assert_eq!(pages, 3);

    // 200 characters (not bytes) are fine; 201 are not.
    let most = "é".repeat(200);
    assert_eq!(list(&server, &pid, &[("q", &most)]).await.0, 200);
    let url = format!("{}/v1/projects/{pid}/threads", server.base);
    let long = server.client.get(&url).query(&[("q", "é".repeat(201))]).send().await.unwrap();
    assert_eq!(error_code(long).await, (400, "bad_request".to_owned()));
    let nul = server.client.get(&url).query(&[("q", "a\0b")]).send().await.unwrap();
    assert_eq!(error_code(nul).await, (400, "bad_request".to_owned()));
}

/// POSTs `body` to the harness thread's messages: status and body.
async fn post(h: &Harness, body: Value) -> (u16, Value) {
    let url = format!("{}/v1/projects/{}/threads/{}/messages", h.base, h.pid, h.tid);
    let r = h.client.post(url).json(&body).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// The harness's server, for the support helpers.
fn server_of(h: &Harness) -> (Server, String) {
    (Server::attach(h.base.clone()), format!("/v1/projects/{}/threads/{}", h.pid, h.tid))
}

/// Waits for the answer `id` of the harness thread to end; the message.
async fn ended(h: &Harness, id: &Value) -> Value {
    let (server, thread) = server_of(h);
    server.ended(&thread, id.as_str().unwrap()).await
}

/// The (role, text) of each message the upstream was sent in request `i`.
fn sent(upstream: &FakeUpstream, i: usize) -> Vec<(String, String)> {
    let requests = upstream.requests();
    requests[i].body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let text = m["content"].as_array().unwrap().iter().filter_map(|b| b["text"].as_str()).collect();
            (m["role"].as_str().unwrap().to_owned(), text)
        })
        .collect()
}

fn turn(role: &str, text: &str) -> (String, String) {
    (role.to_owned(), text.to_owned())
}

#[actix_web::test]
async fn regenerate_keeps_both_answers_and_shows_the_model_the_thread_up_to_the_question() {
    let replies = ["first answer", "second answer", "third answer"].map(text_answer).to_vec();
    let h = harness("anthropic", replies, &[]).await;
    let (status, asked) = post(&h, json!({"content": "What is 2+2?"})).await;
    assert_eq!(status, 202, "{asked}");
    assert_eq!(ended(&h, &asked["assistant_message"]["id"]).await["content"], "first answer");

    let (status, again) = post(&h, json!({"regenerate": true, "max_tokens": 55})).await;
    assert_eq!(status, 202, "{again}");
    assert_eq!(again["user_message"], asked["user_message"], "the newest question, as stored");
    assert_eq!(again["assistant_message"]["position"], 2);
    assert_eq!(again["assistant_message"]["status"], "streaming");
    assert_ne!(again["assistant_message"]["id"], asked["assistant_message"]["id"]);
    assert_eq!(ended(&h, &again["assistant_message"]["id"]).await["content"], "second answer");

    let (server, thread) = server_of(&h);
    let messages = server.messages(&thread).await;
    let rows: Vec<(i64, String, String)> = messages
        .iter()
        .map(|m| {
            (m["position"].as_i64().unwrap(), m["role"].as_str().unwrap().into(), m["content"].as_str().unwrap().into())
        })
        .collect();
    assert_eq!(
        rows,
        [
            (0, "user".into(), "What is 2+2?".into()),
            (1, "assistant".into(), "first answer".into()),
            (2, "assistant".into(), "second answer".into()),
        ],
        "the thread keeps both answers, and the question once"
    );
    // The model was asked the question alone, not its earlier answer.
    assert_eq!(sent(&h.upstream, 1), [turn("user", "What is 2+2?")]);
    assert_eq!(h.upstream.requests()[1].body["max_tokens"], 55);
    assert_eq!(h.upstream.requests()[1].body["system"], "You are terse.");

    // A next question: the newest answer stands for the question's earlier ones.
    let (status, next) = post(&h, json!({"content": "And 3+3?"})).await;
    assert_eq!(status, 202);
    ended(&h, &next["assistant_message"]["id"]).await;
    assert_eq!(
        sent(&h.upstream, 2),
        [turn("user", "What is 2+2?"), turn("assistant", "second answer"), turn("user", "And 3+3?")]
    );
}

#[actix_web::test]
async fn regenerate_retries_a_failed_or_cancelled_answer_without_showing_it_to_the_model() {
    let gate = Arc::new(Notify::new());
    // Its text, then nothing until the test lets it go on.
    let mut held = a::text_answer(&["partial "]);
    held.insert(4, Piece::Wait(gate.clone()));
    let replies = vec![
        Reply::Stream {
            pieces: cut_answer(vec![Piece::Bytes(a::error("overloaded_error", "Overloaded"))]),
            end: End::Clean,
        },
        text_answer("retried after a failure"),
        Reply::Stream { pieces: held, end: End::Clean },
        text_answer("retried after a cancel"),
    ];
    let h = harness("anthropic", replies, &["--continue-max-attempts", "0"]).await;

    let (_, asked) = post(&h, json!({"content": "tell me"})).await;
    let failed = ended(&h, &asked["assistant_message"]["id"]).await;
    assert_eq!((failed["status"].as_str(), failed["content"].as_str()), (Some("failed"), Some("partial tëxt")));
    let (status, retry) = post(&h, json!({"regenerate": true})).await;
    assert_eq!(status, 202, "{retry}");
    let done = ended(&h, &retry["assistant_message"]["id"]).await;
    assert_eq!(
        (done["status"].as_str(), done["content"].as_str()),
        (Some("complete"), Some("retried after a failure"))
    );
    assert_eq!(sent(&h.upstream, 1), [turn("user", "tell me")], "the failed answer's text is not sent");

    // A cancelled answer: asked again the same way.
    let (_, second) = post(&h, json!({"content": "go on"})).await;
    let id = second["assistant_message"]["id"].as_str().unwrap().to_owned();
    let (server, thread) = server_of(&h);
    eventually(|| async { (server.message(&thread, &id).await["content"] == "partial ").then_some(()) }).await;
    let cancel = h.client.post(format!("{}{thread}/cancel", h.base)).send().await.unwrap();
    assert_eq!(cancel.status(), 202);
    gate.notify_one();
    assert_eq!(ended(&h, &second["assistant_message"]["id"]).await["status"], "cancelled");
    let (status, retry) = post(&h, json!({"regenerate": true})).await;
    assert_eq!(status, 202, "{retry}");
    assert_eq!(retry["user_message"]["content"], "go on");
    assert_eq!(ended(&h, &retry["assistant_message"]["id"]).await["content"], "retried after a cancel");
    assert_eq!(
        sent(&h.upstream, 3),
        [turn("user", "tell me"), turn("assistant", "retried after a failure"), turn("user", "go on")]
    );
    let statuses: Vec<String> =
        server.messages(&thread).await.iter().map(|m| m["status"].as_str().unwrap().to_owned()).collect();
    assert_eq!(statuses, ["complete", "failed", "complete", "complete", "cancelled", "complete"]);
}

#[actix_web::test]
async fn regenerate_is_refused_while_busy_and_when_it_cannot_be() {
    let gate = Arc::new(Notify::new());
    let mut held = a::text_answer(&["slow"]);
    held.insert(0, Piece::Wait(gate.clone()));
    let replies = vec![
        Reply::Stream { pieces: held, end: End::Clean },
        calls_answer("let me look", &[("toolu_a", "look", "{}")]),
    ];
    let mut h = harness("anthropic", replies, &[]).await;

    // No question yet: nothing to ask again.
    let (status, body) = post(&h, json!({"regenerate": true})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("bad_request")), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("no user message"), "{body}");
    // Bodies that are neither a question nor a regenerate.
    for bad in [
        json!({"content": "hi", "regenerate": true}),
        json!({}),
        json!({"regenerate": false}),
        json!({"regenerate": null}),
        json!({"content": null, "regenerate": true}),
        json!({"regenerate": "yes"}),
        json!({"regenerate": true, "max_tokens": 0}),
    ] {
        let (status, body) = post(&h, bad.clone()).await;
        assert_eq!((status, body["error"]["code"].as_str()), (400, Some("bad_request")), "{bad}: {body}");
    }
    assert!(h.upstream.requests().is_empty(), "nothing was asked");

    // While an answer runs: 409, like a question.
    let (status, running) = post(&h, json!({"content": "slowly", "regenerate": false})).await;
    assert_eq!(status, 202, "regenerate: false is a question: {running}");
    let (status, body) = post(&h, json!({"regenerate": true})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("thread_busy")), "{body}");
    gate.notify_one();
    ended(&h, &running["assistant_message"]["id"]).await;

    // While an answer awaits input: 409 too.
    h.new_thread(json!({"tools": [{"name": "look", "input_schema": {"type": "object"}}]})).await;
    let (_, waiting) = post(&h, json!({"content": "look it up"})).await;
    let (server, thread) = server_of(&h);
    let id = waiting["assistant_message"]["id"].as_str().unwrap().to_owned();
    eventually(|| async { (server.message(&thread, &id).await["status"] == "awaiting_input").then_some(()) }).await;
    let (status, body) = post(&h, json!({"regenerate": true})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("thread_busy")), "{body}");
    assert_eq!(server.messages(&thread).await.len(), 2, "nothing was added");
}

/// The `thread.updated` events `events` holds.
fn updates(events: &[crate::support::Ev]) -> Vec<Value> {
    events.iter().filter(|e| e.kind == "thread.updated").map(|e| e.data["thread"].clone()).collect()
}

#[actix_web::test]
async fn an_untitled_thread_is_titled_by_its_first_question_and_every_tab_hears_it() {
    let server = Server::temp(&[]).await;
    let pid = project(&server).await;
    let thread = thread(&server, &pid, json!({})).await;
    let mut tab = server.sse(&thread, None).await;
    tab.until("ready").await;
    let question = "How do I read a file in Rust?\nI tried std::fs but it panics.";
    let id = server.ask(&thread, question).await;
    let told = tab.until("thread.updated").await;
    let heard = told.last().unwrap();
    assert_eq!(heard.data["thread"]["title"], "How do I read a file in Rust?");
    assert_eq!(heard.data["thread"]["id"], thread.rsplit('/').next().unwrap());
    assert!(told.iter().any(|e| e.kind == "message.created"), "the question came first");
    let got = server.get_json(&thread).await;
    assert_eq!(got["title"], "How do I read a file in Rust?");
    assert_eq!(found(&server, &pid, "read a FILE").await, ["How do I read a file in Rust?"], "and q finds it");

    // The second question changes nothing.
    server.finished(&thread, &id).await;
    let second = server.ask(&thread, "Something else entirely").await;
    let mut events = Vec::new();
    while !events.iter().any(|e: &crate::support::Ev| e.kind == "message.completed" && e.data["message_id"] == second) {
        events.extend(tab.until("message.completed").await);
    }
    assert!(updates(&events).is_empty(), "no second title: {events:?}");
    assert_eq!(server.get_json(&thread).await["title"], "How do I read a file in Rust?");

    // A long first line is cut at a word, with an ellipsis.
    let long = thread_titled_by(&server, &pid, &format!("{} end", "word ".repeat(30))).await;
    assert!(long.ends_with("word…") && long.chars().count() <= 81, "{long}");
}

/// A new untitled thread of `pid`, asked `question`: the title it gets.
async fn thread_titled_by(server: &Server, pid: &str, question: &str) -> String {
    let thread = thread(server, pid, json!({})).await;
    let id = server.ask(&thread, question).await;
    server.finished(&thread, &id).await;
    eventually(|| async { server.get_json(&thread).await["title"].as_str().map(str::to_owned) }).await
}

#[actix_web::test]
async fn a_thread_with_a_title_keeps_it() {
    let server = Server::temp(&[]).await;
    let pid = project(&server).await;
    // Given at creation.
    let named = thread(&server, &pid, json!({"title": "Mine"})).await;
    let mut tab = server.sse(&named, None).await;
    tab.until("ready").await;
    let id = server.ask(&named, "a question").await;
    let events = tab.until("message.completed").await;
    assert!(updates(&events).is_empty(), "{events:?}");
    server.finished(&named, &id).await;
    assert_eq!(server.get_json(&named).await["title"], "Mine");

    // Given by a PATCH before the first question.
    let patched = thread(&server, &pid, json!({})).await;
    let r = server.client.patch(format!("{}{patched}", server.base)).json(&json!({"title": "Set"})).send().await;
    assert_eq!(r.unwrap().status(), 200);
    let id = server.ask(&patched, "first question").await;
    server.finished(&patched, &id).await;
    assert_eq!(server.get_json(&patched).await["title"], "Set");

    // Cleared by a PATCH after the first question: it stays cleared.
    let cleared = thread(&server, &pid, json!({})).await;
    let id = server.ask(&cleared, "first").await;
    server.finished(&cleared, &id).await;
    eventually(|| async { (server.get_json(&cleared).await["title"] == "first").then_some(()) }).await;
    let r = server.client.patch(format!("{}{cleared}", server.base)).json(&json!({"title": null})).send().await;
    assert_eq!(r.unwrap().status(), 200);
    let id = server.ask(&cleared, "second").await;
    server.finished(&cleared, &id).await;
    assert_eq!(server.get_json(&cleared).await["title"], Value::Null);
}

#[actix_web::test]
async fn a_websocket_send_and_the_seed_route_title_an_untitled_thread_too() {
    let server = Server::temp(&[]).await;
    let pid = project(&server).await;
    let by_socket = thread(&server, &pid, json!({})).await;
    let mut ws = Ws::open(&server.base, &by_socket, None).await;
    ws.until("ready").await;
    ws.send(json!({"type": "send", "content": "Asked over the socket"})).await;
    let told = ws.until("thread.updated").await;
    assert_eq!(updates(&told)[0]["title"], "Asked over the socket");

    let by_seed = thread(&server, &pid, json!({})).await;
    let seed = by_seed.trim_start_matches("/v1");
    let r =
        server.client.post(format!("{}{seed}/query/stream", server.base)).json(&json!({"query": "Asked the seed way"}));
    let body = r.send().await.unwrap().text().await.unwrap();
    assert!(body.contains(r#"{"type": "done"}"#), "{body}");
    let title = eventually(|| async { server.get_json(&by_seed).await["title"].as_str().map(str::to_owned) }).await;
    assert_eq!(title, "Asked the seed way");
}

/// Cluster mode: the node that titles the thread tells the others, whose
/// subscribers hear `thread.updated` as after a PATCH.
#[actix_web::test]
async fn in_cluster_mode_every_node_hears_the_title() {
    let Some(cluster) = crate::cluster::Cluster::start(2, None, &["--sim-chunks", "5"]).await else { return };
    let pid = project(cluster.node(0)).await;
    let thread = thread(cluster.node(0), &pid, json!({})).await;
    let mut far = cluster.node(1).sse(&thread, None).await;
    far.until("ready").await;
    let id = cluster.node(0).ask(&thread, "Titled on one node").await;
    let told = far.until("thread.updated").await;
    assert_eq!(updates(&told)[0]["title"], "Titled on one node");
    cluster.node(1).finished(&thread, &id).await;
    assert_eq!(cluster.node(1).get_json(&thread).await["title"], "Titled on one node");
    // A regenerate asked on the other node answers the same question.
    let r = cluster.node(1).client.post(format!("{}{thread}/messages", cluster.node(1).base));
    let again: Value = r.json(&json!({"regenerate": true})).send().await.unwrap().json().await.unwrap();
    assert_eq!(again["assistant_message"]["position"], 2, "{again}");
    let done = cluster.node(0).ended(&thread, again["assistant_message"]["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "complete");
    assert_eq!(cluster.node(0).messages(&thread).await.len(), 3);
}
