//! Answers in several steps, through the API against a fake Anthropic
//! upstream that streams tool calls as the real one does: a step that
//! ends with client calls awaits input (stored, told to every tab, the
//! thread busy); a result or a decision posted from any tab resolves its
//! call exactly once; the next step streams into the same message;
//! approvals have one winner; cancel and the step limit answer what is
//! left, so the thread can be asked again.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::{
    fake_upstream::{anthropic as a, End, Piece, Reply},
    providers::{harness, Harness},
};

const WAIT: Duration = Duration::from_secs(20);

/// An answer of `text`, then the calls `(id, name, input JSON)`, each
/// input streamed in two fragments, ending with `stop_reason: tool_use`.
pub fn calls_answer(text: &str, calls: &[(&str, &str, &str)]) -> Reply {
    let mut pieces = vec![Piece::Bytes(a::message_start(20)), Piece::Bytes(a::text_start(0))];
    pieces.push(Piece::Bytes(a::text_delta(0, text)));
    pieces.push(Piece::Bytes(a::block_stop(0)));
    for (i, (id, name, input)) in calls.iter().enumerate() {
        let index = i + 1;
        pieces.push(Piece::Bytes(a::tool_start(index, Some(id), name)));
        let (head, tail) = input.split_at(input.len() / 2);
        pieces.push(Piece::Bytes(a::input_delta(index, head)));
        pieces.push(Piece::Bytes(a::input_delta(index, tail)));
        pieces.push(Piece::Bytes(a::block_stop(index)));
    }
    pieces.push(Piece::Bytes(a::message_delta("tool_use", 30)));
    pieces.push(Piece::Bytes(a::message_stop()));
    Reply::Stream { pieces, end: End::Clean }
}

pub fn text_answer(text: &str) -> Reply {
    Reply::Stream { pieces: a::text_answer(&[text]), end: End::Clean }
}

/// A thread with `tools` on the harness's server: its URL prefix.
async fn thread_with(h: &Harness, tools: Value) -> String {
    let url = format!("{}/v1/projects/{}/threads", h.base, h.pid);
    let t: Value = h.client.post(&url).json(&json!({"tools": tools})).send().await.unwrap().json().await.unwrap();
    format!("{url}/{}", t["id"].as_str().expect("a thread"))
}

/// A subscriber of `thread` as JSON events.
struct Tab {
    events: std::pin::Pin<Box<dyn futures_util::Stream<Item = Value>>>,
}

impl Tab {
    async fn open(h: &Harness, thread: &str) -> Tab {
        let resp = h.client.get(format!("{thread}/events")).send().await.unwrap();
        let events = eventsource_stream::Eventsource::eventsource(resp.bytes_stream())
            .filter_map(|e| async move { e.ok().and_then(|e| serde_json::from_str(&e.data).ok()) });
        let mut tab = Tab { events: Box::pin(events) };
        assert_eq!(tab.next().await["type"], "ready");
        tab
    }

    async fn next(&mut self) -> Value {
        tokio::time::timeout(WAIT, self.events.next()).await.expect("an event in time").expect("the stream goes on")
    }

    /// Events up to and including the first of `kind`.
    async fn until(&mut self, kind: &str) -> Vec<Value> {
        let mut out = Vec::new();
        loop {
            let ev = self.next().await;
            let done = ev["type"] == kind;
            out.push(ev);
            if done {
                return out;
            }
        }
    }
}

async fn post(h: &Harness, url: String, body: Value) -> (u16, Value) {
    let r = h.client.post(url).json(&body).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn last_message(h: &Harness, thread: &str) -> Value {
    let page: Value = h.client.get(format!("{thread}/messages")).send().await.unwrap().json().await.unwrap();
    page["data"].as_array().unwrap().last().unwrap().clone()
}

#[actix_web::test]
async fn a_client_call_awaits_its_result_and_the_answer_goes_on_in_the_same_message() {
    let replies = vec![
        calls_answer("Let me look.", &[("toolu_1", "look", r#"{"city": "Oslo"}"#)]),
        text_answer("It is 21 degrees."),
    ];
    let h = harness("anthropic", replies, &[]).await;
    let thread = thread_with(&h, json!([{"name": "look", "input_schema": {"type": "object"}}])).await;
    let mut tab = Tab::open(&h, &thread).await;
    let mut other = Tab::open(&h, &thread).await;
    let (status, asked) = post(&h, format!("{thread}/messages"), json!({"content": "Weather in Oslo?"})).await;
    assert_eq!(status, 202);
    let answer_id = asked["assistant_message"]["id"].as_str().unwrap().to_owned();

    // The step ends with the call: every tab is told what waits.
    let first = tab.until("message.awaiting").await;
    let awaiting = first.last().unwrap();
    assert_eq!(awaiting["message_id"], answer_id.as_str());
    assert_eq!(
        awaiting["pending"],
        json!([{"tool_call_id": "toolu_1", "name": "look", "input": {"city": "Oslo"}, "needs": "result"}])
    );
    assert_eq!(other.until("message.awaiting").await.last().unwrap()["pending"], awaiting["pending"]);
    let stored = last_message(&h, &thread).await;
    assert_eq!(
        (stored["status"].as_str(), stored["pending"][0]["tool_call_id"].as_str()),
        (Some("awaiting_input"), Some("toolu_1"))
    );
    let t: Value = h.client.get(&thread).send().await.unwrap().json().await.unwrap();
    assert_eq!(t["status"], "awaiting_input");
    // A question while it waits: the thread is busy.
    let (busy, body) = post(&h, format!("{thread}/messages"), json!({"content": "and?"})).await;
    assert_eq!((busy, body["error"]["code"].as_str()), (409, Some("thread_busy")));

    // A result from one tab resolves it; the answer goes on, live to all.
    let result = json!({"results": [{"tool_call_id": "toolu_1", "output": {"celsius": 21}}]});
    let (status, resolved) = post(&h, format!("{thread}/tool-results"), result.clone()).await;
    assert_eq!(status, 200, "{resolved}");
    assert_eq!(resolved, json!({"message_id": answer_id, "resolved": ["toolu_1"], "unchanged": []}));
    let rest = tab.until("message.completed").await;
    let kinds: Vec<&str> = rest.iter().map(|e| e["type"].as_str().unwrap()).collect();
    let resolved_at = kinds.iter().position(|k| *k == "tool.resolved").expect("tool.resolved");
    let step_at = kinds.iter().position(|k| *k == "message.step").expect("message.step");
    assert!(resolved_at < step_at, "{kinds:?}");
    let result_block = rest.iter().find(|e| e["type"] == "message.block" && e["kind"] == "tool_result").unwrap();
    assert_eq!((result_block["block"].as_u64(), result_block["tool_use_id"].as_str()), (Some(2), Some("toolu_1")));
    assert_eq!(rest[step_at]["step"], 2);
    assert!(
        rest.iter().all(|e| e.get("message_id").is_none_or(|id| id == answer_id.as_str())),
        "one message throughout"
    );
    let done = rest.last().unwrap();
    assert_eq!((done["status"].as_str(), done["message_id"].as_str()), (Some("complete"), Some(answer_id.as_str())));
    other.until("message.completed").await;

    // Stored: one answer holding both steps.
    let page: Value = h.client.get(format!("{thread}/messages")).send().await.unwrap().json().await.unwrap();
    let messages = page["data"].as_array().unwrap();
    assert_eq!(messages.len(), 2, "a question and one answer, no duplicate");
    let kinds: Vec<&str> =
        messages[1]["blocks"].as_array().unwrap().iter().map(|b| b["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["text", "tool_use", "tool_result", "text"]);
    assert_eq!(messages[1]["blocks"][2]["text"], r#"{"celsius":21}"#);
    assert_eq!(messages[1]["content"], "Let me look.It is 21 degrees.");
    assert!(messages[1].get("pending").is_none());
    let requests = h.upstream.requests();
    assert_eq!(requests.len(), 2, "one model call per step");
    // The first call offered the thread's tools; the second carries the
    // step's call and its result, as Anthropic wants them.
    assert_eq!(requests[0].body["tools"][0]["name"], "look");
    let turns = requests[1].body["messages"].as_array().unwrap();
    let (call, given) = (&turns[turns.len() - 2], &turns[turns.len() - 1]);
    assert_eq!((call["role"].as_str(), call["content"][1]["type"].as_str()), (Some("assistant"), Some("tool_use")));
    assert_eq!(call["content"][1]["input"], json!({"city": "Oslo"}));
    assert_eq!(given["role"], "user");
    assert_eq!(given["content"][0]["type"], "tool_result");
    assert_eq!(given["content"][0]["tool_use_id"], "toolu_1");
    assert_eq!(given["content"][0]["content"], r#"{"celsius":21}"#);

    // The same result again is no change; a different one is refused.
    let (status, again) = post(&h, format!("{thread}/tool-results"), result).await;
    assert_eq!((status, again["unchanged"].clone()), (200, json!(["toolu_1"])));
    let different = json!({"results": [{"tool_call_id": "toolu_1", "output": {"celsius": 5}}]});
    let (status, body) = post(&h, format!("{thread}/tool-results"), different).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("tool_call_resolved")));
    // And the thread takes the next question.
    let (status, _) = post(&h, format!("{thread}/messages"), json!({"content": "thanks"})).await;
    assert_eq!(status, 202);
}

#[actix_web::test]
async fn an_approval_has_one_winner_and_a_denial_is_the_models_error_result() {
    let replies =
        vec![calls_answer("I will pay.", &[("toolu_p", "pay", r#"{"amount": 5}"#)]), text_answer("Not paid.")];
    let h = harness("anthropic", replies, &[]).await;
    let tools = json!([{"name": "pay", "input_schema": {"type": "object"}, "approval": "always"}]);
    let thread = thread_with(&h, tools).await;
    let mut tab = Tab::open(&h, &thread).await;
    post(&h, format!("{thread}/messages"), json!({"content": "Pay 5"})).await;
    let awaiting = tab.until("message.awaiting").await.pop().unwrap();
    assert_eq!(awaiting["pending"][0]["needs"], "approval");
    // A result before the decision is refused.
    let early = json!({"results": [{"tool_call_id": "toolu_p", "output": "paid"}]});
    let (status, body) = post(&h, format!("{thread}/tool-results"), early).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("not_awaiting")));
    // Two tabs decide at once: one wins.
    let deny = json!({"tool_call_id": "toolu_p", "approved": false, "reason": "too much"});
    let approve = json!({"tool_call_id": "toolu_p", "approved": true});
    let (d, ap) = tokio::join!(
        post(&h, format!("{thread}/approvals"), deny.clone()),
        post(&h, format!("{thread}/approvals"), approve)
    );
    let mut statuses = vec![d.0, ap.0];
    statuses.sort();
    assert_eq!(statuses, [200, 409], "one decision wins: {d:?} {ap:?}");
    let denied = d.0 == 200;
    // Whoever won, the same decision again is no change.
    let winner = if denied { deny } else { json!({"tool_call_id": "toolu_p", "approved": true}) };
    let (status, again) = post(&h, format!("{thread}/approvals"), winner).await;
    assert_eq!((status, again["unchanged"].clone()), (200, json!(["toolu_p"])));
    if denied {
        let rest = tab.until("message.completed").await;
        let resolved = rest.iter().find(|e| e["type"] == "tool.resolved").unwrap();
        assert_eq!((resolved["needs"].as_str(), resolved["approved"].as_bool()), (Some("approval"), Some(false)));
        let stored = last_message(&h, &thread).await;
        let result = &stored["blocks"][2];
        assert_eq!((result["kind"].as_str(), result["is_error"].as_bool()), (Some("tool_result"), Some(true)));
        assert_eq!(result["text"], r#""denied by the user: too much""#);
        assert_eq!(stored["status"], "complete");
    } else {
        // Approved: the call now waits for its result, told again.
        let again = tab.until("message.awaiting").await.pop().unwrap();
        assert_eq!(again["pending"][0]["needs"], "result");
        let result = json!({"results": [{"tool_call_id": "toolu_p", "output": "paid"}]});
        assert_eq!(post(&h, format!("{thread}/tool-results"), result).await.0, 200);
        assert_eq!(tab.until("message.completed").await.pop().unwrap()["status"], "complete");
    }
}

#[actix_web::test]
async fn cancel_and_the_step_limit_answer_what_waits_and_the_thread_goes_on() {
    let replies = vec![calls_answer("Looking.", &[("toolu_a", "look", "{}"), ("toolu_b", "look", "{}")])];
    let h = harness("anthropic", replies, &["--max-steps", "5"]).await;
    let thread = thread_with(&h, json!([{"name": "look", "input_schema": {"type": "object"}}])).await;
    let mut tab = Tab::open(&h, &thread).await;
    post(&h, format!("{thread}/messages"), json!({"content": "look twice"})).await;
    let awaiting = tab.until("message.awaiting").await.pop().unwrap();
    assert_eq!(awaiting["pending"].as_array().unwrap().len(), 2, "parallel calls wait together");
    // One of the two answered: still waiting for the other.
    let one = json!({"results": [{"tool_call_id": "toolu_a", "error": "no network"}]});
    assert_eq!(post(&h, format!("{thread}/tool-results"), one).await.0, 200);
    assert_eq!(tab.until("tool.resolved").await.pop().unwrap()["is_error"], true);
    assert_eq!(last_message(&h, &thread).await["status"], "awaiting_input");
    // Cancel while it waits: it ends cancelled, every call with its result.
    let (status, cancelled) = post(&h, format!("{thread}/cancel"), json!({})).await;
    assert_eq!((status, cancelled["message_id"].clone()), (202, awaiting["message_id"].clone()));
    assert_eq!(tab.until("message.completed").await.pop().unwrap()["status"], "cancelled");
    let stored = last_message(&h, &thread).await;
    let results: Vec<(&str, &str)> = stored["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["kind"] == "tool_result")
        .map(|b| (b["tool_use_id"].as_str().unwrap(), b["text"].as_str().unwrap()))
        .collect();
    assert_eq!(results, [("toolu_a", r#""no network""#), ("toolu_b", r#""cancelled""#)]);
    assert_eq!(post(&h, format!("{thread}/messages"), json!({"content": "again"})).await.0, 202);
}

#[actix_web::test]
async fn past_max_steps_the_answer_ends_with_its_calls_answered() {
    let replies = vec![calls_answer("Looking.", &[("toolu_m", "look", "{}")])];
    let h = harness("anthropic", replies, &["--max-steps", "1"]).await;
    let thread = thread_with(&h, json!([{"name": "look", "input_schema": {"type": "object"}}])).await;
    let mut tab = Tab::open(&h, &thread).await;
    post(&h, format!("{thread}/messages"), json!({"content": "look"})).await;
    let done = tab.until("message.completed").await.pop().unwrap();
    assert_eq!((done["status"].as_str(), done["stop_reason"].as_str()), (Some("complete"), Some("max_steps")));
    let stored = last_message(&h, &thread).await;
    assert_eq!(stored["blocks"][2]["text"], r#""max_steps""#);
    assert_eq!(post(&h, format!("{thread}/messages"), json!({"content": "again"})).await.0, 202);
    // Nothing awaits now.
    let late = json!({"results": [{"tool_call_id": "toolu_m", "output": 1}]});
    assert_eq!(post(&h, format!("{thread}/tool-results"), late).await.0, 409);
}

#[actix_web::test]
async fn tool_definitions_are_checked() {
    let h = harness("anthropic", vec![text_answer("x")], &[]).await;
    let url = format!("{}/v1/projects/{}/threads", h.base, h.pid);
    for tools in [
        json!([{"name": "bad name", "input_schema": {}}]),
        json!([{"name": "a", "input_schema": {}}, {"name": "a", "input_schema": {}}]),
        json!([{"name": "a", "input_schema": [1]}]),
        json!([{"name": "a", "input_schema": {}, "run": "elsewhere"}]),
        json!((0..129).map(|i| json!({"name": format!("t{i}"), "input_schema": {}})).collect::<Vec<_>>()),
    ] {
        let r = h.client.post(&url).json(&json!({"tools": tools})).send().await.unwrap();
        let (status, code) = crate::support::error_code(r).await;
        assert_eq!((status, code.as_str()), (400, "bad_request"), "{tools}");
    }
    // Tools the service would run itself: this version runs none.
    let at_url = json!({"tools": [{"name": "a", "input_schema": {}, "run": {"url": "https://tools.example.com/a"}}]});
    let r = h.client.post(&url).json(&at_url).send().await.unwrap();
    assert_eq!(crate::support::error_code(r).await, (400, "tool_secret_missing".to_owned()));
    let on_mcp = json!({"tools": [{"name": "a", "input_schema": {}, "run": {"mcp": "files"}}]});
    let r = h.client.post(&url).json(&on_mcp).send().await.unwrap();
    assert_eq!(crate::support::error_code(r).await, (400, "bad_request".to_owned()));
    let choice = json!({"tools": [{"name": "a", "input_schema": {}}], "tool_choice": {"type": "tool", "name": "b"}});
    assert_eq!(h.client.post(&url).json(&choice).send().await.unwrap().status(), 400);
    let ok = json!({"tools": [{"name": "a", "input_schema": {"type": "object"}, "approval": "always"}], "tool_choice": {"type": "any"}});
    let t: Value = h.client.post(&url).json(&ok).send().await.unwrap().json().await.unwrap();
    assert_eq!(t["tools"][0]["approval"], "always");
    assert_eq!(t["tool_choice"], json!({"type": "any"}));
}

/// The socket's next event but counts (`thread.presence`).
async fn next(ws: &mut crate::support::Ws) -> Value {
    loop {
        let ev = ws.next_json().await.expect("the socket stays open");
        if ev["type"] != "thread.presence" {
            return ev;
        }
    }
}

/// The `/ws` frames answer calls as the REST routes do, and the socket
/// hears `ack` or `error` with the route's code.
#[actix_web::test]
async fn websocket_frames_answer_calls_and_are_acknowledged() {
    let replies = vec![
        calls_answer("Checking.", &[("toolu_w", "look", "{}"), ("toolu_p", "pay", "{}")]),
        text_answer("All done."),
    ];
    let h = harness("anthropic", replies, &[]).await;
    let tools = json!([
        {"name": "look", "input_schema": {"type": "object"}},
        {"name": "pay", "input_schema": {"type": "object"}, "approval": "always"},
    ]);
    let thread = thread_with(&h, tools).await;
    let path = thread.trim_start_matches(&h.base).to_owned();
    let mut ws = crate::support::Ws::open(&h.base, &path, None).await;
    post(&h, format!("{thread}/messages"), json!({"content": "go"})).await;
    loop {
        if next(&mut ws).await["type"] == "message.awaiting" {
            break;
        }
    }
    // A malformed frame and an unknown call: errors, the socket stays.
    ws.send(json!({"type": "tool_results", "results": []})).await;
    let e = next(&mut ws).await;
    assert_eq!((e["type"].as_str(), e["code"].as_str()), (Some("error"), Some("bad_request")));
    ws.send(json!({"type": "approval", "tool_call_id": "toolu_none", "approved": true})).await;
    let e = next(&mut ws).await;
    assert_eq!((e["type"].as_str(), e["code"].as_str()), (Some("error"), Some("not_found")));
    // The result: acknowledged, and told like any other.
    ws.send(json!({"type": "tool_results", "results": [{"tool_call_id": "toolu_w", "output": [1, 2]}]})).await;
    let mut seen = Vec::new();
    let ack = loop {
        let ev = next(&mut ws).await;
        if ev["type"] == "ack" {
            break ev;
        }
        seen.push(ev);
    };
    assert_eq!(ack["for"], "tool_results");
    assert_eq!((ack["resolved"].clone(), ack["unchanged"].clone()), (json!(["toolu_w"]), json!([])));
    // The decision: acknowledged (once stored: the next step may be
    // under way, or done, by then); the answer goes on and completes.
    ws.send(json!({"type": "approval", "tool_call_id": "toolu_p", "approved": false, "reason": "not today"})).await;
    let mut kinds = Vec::new();
    let mut acked = None;
    while acked.is_none() || !kinds.iter().any(|k| k == "message.completed") {
        let ev = next(&mut ws).await;
        let kind = ev["type"].as_str().unwrap().to_owned();
        if kind == "ack" {
            acked = Some(ev.clone());
        }
        kinds.push(kind);
    }
    let acked = acked.expect("the decision is acknowledged");
    assert_eq!((acked["for"].as_str(), acked["resolved"].clone()), (Some("approval"), json!(["toolu_p"])));
    assert!(kinds.contains(&"message.step".to_owned()), "{kinds:?}");
    // A different decision now: the route's 409 code.
    ws.send(json!({"type": "approval", "tool_call_id": "toolu_p", "approved": true})).await;
    let e = next(&mut ws).await;
    assert_eq!((e["type"].as_str(), e["code"].as_str()), (Some("error"), Some("tool_call_resolved")));
    let stored = last_message(&h, &thread).await;
    assert_eq!(stored["blocks"][3]["text"], "[1,2]");
    assert_eq!(stored["blocks"][4]["text"], r#""denied by the user: not today""#);
}

#[actix_web::test]
async fn a_question_s_own_tools_are_offered_for_its_turn_alone() {
    let replies = vec![calls_answer("Paying.", &[("toolu_q", "pay", "{}")]), text_answer("Paid."), text_answer("Hi.")];
    let h = harness("anthropic", replies, &[]).await;
    let thread = thread_with(&h, json!([{"name": "look", "input_schema": {"type": "object"}}])).await;
    let mut tab = Tab::open(&h, &thread).await;
    let own = json!([{"name": "pay", "input_schema": {"type": "object"}, "approval": "always"}]);
    let (status, body) = post(&h, format!("{thread}/messages"), json!({"content": "pay", "tools": own})).await;
    assert_eq!(status, 202, "{body}");
    let awaiting = tab.until("message.awaiting").await.pop().unwrap();
    assert_eq!(awaiting["pending"][0]["needs"], "approval", "the question's tool says how it is answered");
    let decision = json!({"tool_call_id": "toolu_q", "approved": false});
    assert_eq!(post(&h, format!("{thread}/approvals"), decision).await.0, 200);
    tab.until("message.completed").await;
    let (status, _) = post(&h, format!("{thread}/messages"), json!({"content": "and now"})).await;
    assert_eq!(status, 202);
    tab.until("message.completed").await;
    let offered: Vec<Vec<String>> = h
        .upstream
        .requests()
        .iter()
        .map(|r| r.body["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_owned()).collect())
        .collect();
    assert_eq!(offered, [vec!["look", "pay"], vec!["look", "pay"], vec!["look"]], "every step of its turn, no other");
    // Checked with the thread's: a bad one, or too many in all, is 400.
    let many: Vec<Value> = (0..128).map(|i| json!({"name": format!("t{i}"), "input_schema": {}})).collect();
    for tools in [json!([{"name": "bad name", "input_schema": {}}]), json!(many)] {
        let (status, body) = post(&h, format!("{thread}/messages"), json!({"content": "x", "tools": tools})).await;
        assert_eq!((status, body["error"]["code"].as_str()), (400, Some("bad_request")), "{body}");
    }
}
