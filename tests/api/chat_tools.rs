//! The AI SDK's chat routes with tools, chunk by chunk, against a fake
//! Anthropic upstream that streams tool calls: a turn's stream ends where
//! the answer awaits input (the approval asked, `finish` with
//! `tool-calls`); the next request, whose last message is that answer
//! with the client's result or decision in its tool part, resolves it and
//! gets the same UI message on from the step's end (over SSE and over the
//! chat WebSocket, numbered from 0 there); a reload while it awaits sees
//! the approval asked; a request that comes after another tab's decision
//! won gets the finished message with the winning decision, never a 409.
//! (The SDK's own client drives the same in `tests/aisdk`.)

use serde_json::{json, Value};

use crate::{
    chat::{turn, UiStream},
    chat_ws::ChatWs,
    providers::{harness, Harness},
    tools::{calls_answer, text_answer},
};

/// A chat whose thread offers `tools`: its id is the thread's.
async fn chat_with(h: &Harness, tools: Value) -> String {
    let url = format!("{}/v1/projects/{}/threads", h.base, h.pid);
    let t: Value = h.client.post(&url).json(&json!({"tools": tools})).send().await.unwrap().json().await.unwrap();
    t["id"].as_str().expect("a thread").to_owned()
}

async fn post_chat(h: &Harness, body: &Value) -> reqwest::Response {
    h.client.post(format!("{}/v1/projects/{}/chat", h.base, h.pid)).json(body).send().await.unwrap()
}

/// The next request of a client that answered in answer `id`'s own
/// message: its tool `parts`, after the step it saw.
fn answered(chat: &str, id: &str, parts: Value) -> Value {
    json!({
        "id": chat, "trigger": "submit-message", "messageId": id,
        "messages": [
            {"id": "u1", "role": "user", "parts": [{"type": "text", "text": "q"}]},
            {"id": id, "role": "assistant", "parts": parts},
        ],
    })
}

/// The chunks' types, a run of deltas as one (a reader that joins late
/// gets the text so far in one).
fn kinds(chunks: &[Value]) -> Vec<&str> {
    let mut out: Vec<&str> = chunks.iter().map(|c| c["type"].as_str().unwrap()).collect();
    out.dedup_by(|a, b| a == b && a.ends_with("-delta"));
    out
}

async fn messages(h: &Harness, chat: &str) -> Vec<Value> {
    let url = format!("{}/v1/projects/{}/threads/{chat}/messages", h.base, h.pid);
    let page: Value = h.client.get(url).send().await.unwrap().json().await.unwrap();
    page["data"].as_array().unwrap().clone()
}

/// The thread's last answer once it no longer streams.
async fn settled(h: &Harness, chat: &str) -> Value {
    for _ in 0..400 {
        let last = messages(h, chat).await.pop().unwrap();
        if last["status"] != "streaming" {
            return last;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("the answer did not settle");
}

const LOOK: &str = r#"{"city": "Oslo"}"#;

/// UI chunks with each run of deltas of one part joined into one.
fn joined_deltas(chunks: &[Value]) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    for c in chunks {
        let (kind, field) = match c["type"].as_str() {
            Some("text-delta") => ("text-delta", "delta"),
            Some("tool-input-delta") => ("tool-input-delta", "inputTextDelta"),
            _ => ("", ""),
        };
        let part = |v: &Value| v.get("id").or_else(|| v.get("toolCallId")).cloned();
        match out.last_mut() {
            Some(last) if !kind.is_empty() && last["type"] == kind && part(last) == part(c) => {
                let joined =
                    format!("{}{}", last[field].as_str().unwrap_or_default(), c[field].as_str().unwrap_or_default());
                last[field] = joined.into();
            }
            _ => out.push(c.clone()),
        }
    }
    out
}

/// A chat whose tool `look` the client runs, and whose model calls it
/// once, then answers.
async fn weather_chat() -> (Harness, String) {
    let replies = vec![calls_answer("Let me look.", &[("toolu_1", "look", LOOK)]), text_answer("It is 21.")];
    let h = harness("anthropic", replies, &[]).await;
    let chat = chat_with(&h, json!([{"name": "look", "input_schema": {"type": "object"}}])).await;
    (h, chat)
}

#[actix_web::test]
async fn a_client_tools_result_continues_the_same_ui_message_after_the_step() {
    let (h, chat) = weather_chat().await;

    let first = UiStream::of(post_chat(&h, &turn(&chat, "Weather?")).await).rest().await;
    assert_eq!(
        kinds(&first),
        [
            "start",
            "start-step",
            "text-start",
            "text-delta",
            "text-end",
            "tool-input-start",
            "tool-input-delta",
            "tool-input-available",
            "finish-step",
            "finish",
        ],
        "the stream ends where the answer awaits the call's result"
    );
    let n = first.len();
    assert_eq!(first[n - 3]["input"], json!({"city": "Oslo"}));
    assert_eq!(first[n - 1]["finishReason"], "tool-calls");
    let id = first[0]["messageId"].as_str().unwrap().to_owned();
    assert_eq!(settled(&h, &chat).await["status"], "awaiting_input");

    let result = json!({"type": "tool-look", "toolCallId": "toolu_1", "state": "output-available",
        "input": {"city": "Oslo"}, "output": {"temp": 21}});
    let parts = json!([{"type": "step-start"}, {"type": "text", "text": "Let me look.", "state": "done"}, result]);
    let next = UiStream::of(post_chat(&h, &answered(&chat, &id, parts.clone())).await).rest().await;
    assert_eq!(next[0], json!({"type": "start", "messageId": id}), "the same UI message");
    assert_eq!(next[1], json!({"type": "tool-output-available", "toolCallId": "toolu_1", "output": {"temp": 21}}));
    assert_eq!(
        kinds(&next[2..]),
        ["start-step", "text-start", "text-delta", "text-end", "finish-step", "finish"],
        "the next step, and nothing of the first again"
    );
    assert_eq!(next[4]["delta"], "It is 21.");
    let stored = settled(&h, &chat).await;
    assert_eq!((stored["id"].as_str(), stored["status"].as_str()), (Some(id.as_str()), Some("complete")));
    assert_eq!(
        stored["blocks"][2],
        json!({"kind": "tool_result", "tool_use_id": "toolu_1", "is_error": false, "text": "{\"temp\":21}"})
    );
    assert_eq!(messages(&h, &chat).await.len(), 2, "one question, one answer");

    // The same request again (a retry, or another tab with the same
    // result): the finished message from the step's end, no 409.
    let again = UiStream::of(post_chat(&h, &answered(&chat, &id, parts)).await).rest().await;
    assert_eq!(again, next);
    assert_eq!(h.upstream.requests().len(), 2, "the result was resolved once");
}

#[actix_web::test]
async fn a_reload_sees_the_approval_asked_and_a_late_decision_gets_the_one_that_won() {
    let replies =
        vec![calls_answer("Deleting.", &[("toolu_9", "delete", r#"{"path": "/tmp/x"}"#)]), text_answer("Kept it.")];
    let h = harness("anthropic", replies, &[]).await;
    let chat =
        chat_with(&h, json!([{"name": "delete", "input_schema": {"type": "object"}, "approval": "always"}])).await;
    let resume = format!("{}/v1/projects/{}/chat/{chat}/stream", h.base, h.pid);
    assert_eq!(h.client.get(&resume).send().await.unwrap().status(), 204, "nothing yet");

    let first = UiStream::of(post_chat(&h, &turn(&chat, "Delete it")).await).rest().await;
    let n = first.len();
    assert_eq!(kinds(&first[n - 4..]), ["tool-input-available", "finish-step", "tool-approval-request", "finish"]);
    assert_eq!(
        first[n - 2],
        json!({"type": "tool-approval-request", "approvalId": "toolu_9", "toolCallId": "toolu_9"})
    );
    let id = first[0]["messageId"].as_str().unwrap().to_owned();

    // A tab that reloads gets the answer as it stands: the approval asked.
    // (The SDK's resume replaces the message with the replay, so how a
    // part's text is cut into deltas is not compared: the replay may send
    // the tool's input in one delta where the live stream sent two.)
    let reloaded = UiStream::of(h.client.get(&resume).send().await.unwrap()).rest().await;
    assert_eq!(joined_deltas(&reloaded), joined_deltas(&first));

    let decided = |approved: bool| {
        json!([{"type": "step-start"}, {"type": "tool-delete", "toolCallId": "toolu_9", "state": "approval-responded",
            "input": {"path": "/tmp/x"}, "approval": {"id": "toolu_9", "approved": approved, "reason": "no"}}])
    };
    // Tab A denies.
    let a = UiStream::of(post_chat(&h, &answered(&chat, &id, decided(false))).await).rest().await;
    assert_eq!(a[0], json!({"type": "start", "messageId": id}));
    assert_eq!(a[1], json!({"type": "tool-approval-response", "approvalId": "toolu_9", "approved": false}));
    assert_eq!(a[2], json!({"type": "tool-output-denied", "toolCallId": "toolu_9"}));
    assert_eq!(kinds(&a[3..]), ["start-step", "text-start", "text-delta", "text-end", "finish-step", "finish"]);
    let stored = settled(&h, &chat).await;
    assert_eq!(stored["status"], "complete");
    assert_eq!(stored["blocks"][2]["text"], "\"denied by the user: no\"");

    // Tab B approved too, later: no 409, but the finished message, with
    // the decision that won.
    let b = UiStream::of(post_chat(&h, &answered(&chat, &id, decided(true))).await).rest().await;
    assert_eq!(b, a);
    assert_eq!(h.upstream.requests().len(), 2);
    assert_eq!(h.client.get(&resume).send().await.unwrap().status(), 204, "nothing runs or waits");
}

#[actix_web::test]
async fn an_approved_client_call_is_handed_to_the_client_to_run_then_its_result_goes_on() {
    let replies =
        vec![calls_answer("Deleting.", &[("toolu_5", "delete", r#"{"path": "/tmp/y"}"#)]), text_answer("Deleted.")];
    let h = harness("anthropic", replies, &[]).await;
    let chat =
        chat_with(&h, json!([{"name": "delete", "input_schema": {"type": "object"}, "approval": "always"}])).await;
    let first = UiStream::of(post_chat(&h, &turn(&chat, "Delete it")).await).rest().await;
    let id = first[0]["messageId"].as_str().unwrap().to_owned();
    let part = |state: &str, extra: Value| {
        let mut p = json!({"type": "tool-delete", "toolCallId": "toolu_5", "state": state, "input": {"path": "/tmp/y"},
            "approval": {"id": "toolu_5", "approved": true}});
        p.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        json!([{"type": "step-start"}, p])
    };
    let approved =
        UiStream::of(post_chat(&h, &answered(&chat, &id, part("approval-responded", json!({})))).await).rest().await;
    assert_eq!(
        approved,
        [
            json!({"type": "start", "messageId": id}),
            json!({"type": "tool-approval-response", "approvalId": "toolu_5", "approved": true}),
            json!({"type": "tool-input-available", "toolCallId": "toolu_5", "toolName": "delete", "input": {"path": "/tmp/y"}}),
            json!({"type": "finish", "finishReason": "tool-calls"}),
        ],
        "the approval holds, and the call waits for the client to run it"
    );
    assert_eq!(settled(&h, &chat).await["pending"][0]["needs"], "result");
    let ran = part("output-available", json!({"output": {"deleted": true}}));
    let next = UiStream::of(post_chat(&h, &answered(&chat, &id, ran)).await).rest().await;
    assert_eq!(next[1], json!({"type": "tool-output-available", "toolCallId": "toolu_5", "output": {"deleted": true}}));
    assert_eq!(kinds(&next[2..]), ["start-step", "text-start", "text-delta", "text-end", "finish-step", "finish"]);
    assert_eq!(settled(&h, &chat).await["status"], "complete");
}

#[actix_web::test]
async fn over_the_chat_websocket_a_continuation_is_numbered_from_zero_without_a_gap() {
    let (h, chat) = weather_chat().await;
    let mut ws =
        ChatWs::connect(&format!("{}/v1/projects/{}/chat/ws", h.base.replace("http://", "ws://"), h.pid)).await;
    let mut others = Vec::new();
    let mut first = turn(&chat, "Weather?");
    first["type"] = "send".into();
    first["requestId"] = "r1".into();
    ws.send(first).await;
    let (chunks, end) = ws.request("r1", 0, &mut others).await;
    assert_eq!(end["type"], "end");
    assert_eq!(chunks.last().unwrap(), &json!({"type": "finish", "finishReason": "tool-calls"}));
    let id = chunks[0]["messageId"].as_str().unwrap().to_owned();

    let mut next = answered(
        &chat,
        &id,
        json!([{"type": "tool-look", "toolCallId": "toolu_1", "state": "output-available", "output": {"temp": 21}}]),
    );
    next["type"] = "send".into();
    next["requestId"] = "r2".into();
    ws.send(next).await;
    let (chunks, end) = ws.request("r2", 0, &mut others).await;
    assert_eq!(end["type"], "end");
    assert_eq!(chunks[0], json!({"type": "start", "messageId": id}));
    assert_eq!(
        kinds(&chunks[1..]),
        ["tool-output-available", "start-step", "text-start", "text-delta", "text-end", "finish-step", "finish"]
    );
    assert!(others.is_empty(), "{others:?}");
    assert_eq!(settled(&h, &chat).await["status"], "complete");
}
