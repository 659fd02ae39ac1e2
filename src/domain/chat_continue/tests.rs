//! What a continuing request answers (only calls that wait, only with what
//! they wait for), where its client resumes (after the step whose calls it
//! knows last), and what it writes first (the answer's id, the decisions
//! that hold, an approved call to run).

use chrono::Utc;
use serde_json::{json, Value};
use uuid::Uuid;

use super::*;
use crate::domain::{
    turn::{error_text, Call},
    Block, MessageStatus, Role, Usage,
};

fn call_block(id: &str, input: &str) -> Block {
    Block { id: Some(id.into()), name: Some("look".into()), text: input.into(), ..Block::new(BlockKind::ToolUse) }
}

fn answer(blocks: Vec<Block>, status: MessageStatus, calls: Vec<Call>) -> Message {
    Message {
        id: Uuid::now_v7(),
        thread_id: Uuid::nil(),
        position: 1,
        role: Role::Assistant,
        blocks,
        status,
        model: None,
        stop_reason: None,
        usage: Usage::default(),
        error: None,
        created_at: Utc::now(),
        completed_at: None,
        calls,
        tools: Vec::new(),
        exact_end: false,
        continuations: 0,
        touched_at: None,
        handed_over: false,
        restart_seam: None,
    }
}

fn ui(parts: Value) -> UiMessage {
    serde_json::from_value(json!({"id": "m", "role": "assistant", "parts": parts})).unwrap()
}

fn pending(id: &str, needs: Needs) -> PendingCall {
    PendingCall { tool_call_id: id.into(), name: "look".into(), input: json!({}), needs }
}

fn call(id: &str, state: CallState) -> Call {
    Call { id: id.into(), name: "look".into(), input: json!({"city": "Oslo"}), state }
}

fn texts(chunks: &[Bytes]) -> Vec<Value> {
    chunks.iter().map(|c| serde_json::from_slice(c).unwrap()).collect()
}

#[test]
fn a_message_answers_only_the_calls_that_wait_and_only_with_what_they_wait_for() {
    let message = ui(json!([
        {"type": "step-start"},
        {"type": "tool-look", "toolCallId": "a", "state": "approval-responded",
            "approval": {"id": "a", "approved": false, "reason": "not now"}},
        {"type": "tool-look", "toolCallId": "b", "state": "output-available", "output": {"t": 21}},
        {"type": "dynamic-tool", "toolName": "x", "toolCallId": "c", "state": "output-error", "errorText": "boom"},
        {"type": "tool-look", "toolCallId": "d", "state": "input-available"},
        // A result for a call that waits for approval is no answer.
        {"type": "tool-look", "toolCallId": "e", "state": "output-available", "output": 1},
        // Nor is a part of a call that does not wait.
        {"type": "tool-look", "toolCallId": "old", "state": "output-available", "output": 2},
        {"type": "text", "toolCallId": "b", "text": "not a tool part"},
    ]));
    let waiting = [
        pending("a", Needs::Approval),
        pending("b", Needs::Result),
        pending("c", Needs::Result),
        pending("d", Needs::Result),
        pending("e", Needs::Approval),
    ];
    assert_eq!(
        answers(&message, &waiting),
        [
            ("a".to_owned(), Answer::Decision { approved: false, reason: Some("not now".into()) }),
            ("b".to_owned(), Answer::Result { output: Ok(json!({"t": 21})) }),
            ("c".to_owned(), Answer::Result { output: Err("boom".into()) }),
        ]
    );
    let null = ui(json!([{"type": "tool-look", "toolCallId": "b", "state": "output-available", "output": null}]));
    assert_eq!(answers(&null, &waiting[1..2]), [("b".to_owned(), Answer::Result { output: Ok(Value::Null) })]);
    let long = [("a".to_owned(), Answer::Decision { approved: true, reason: Some("x".repeat(2001)) })];
    assert!(check(&long).is_err());
}

#[test]
fn the_client_resumes_after_the_step_whose_calls_it_knows_last() {
    let m = answer(
        vec![
            Block::text("Let me look."),
            call_block("a", r#"{"q":1}"#),
            call_block("b", "{}"),
            Block::tool_result("a", "1".into(), false),
            Block::tool_result("b", "2".into(), false),
            Block::text("Then:"),
            call_block("c", r#"{"q":3}"#),
        ],
        MessageStatus::AwaitingInput,
        vec![],
    );
    let at = |parts: Value| resumes_at(&m, &ui(parts));
    // It has the first step: it goes on at its results.
    assert_eq!(at(json!([{"type": "tool-look", "toolCallId": "a"}])), Some(Cursor::new(m.id, 2, 2)));
    // It has the second: the answer awaits right after it.
    assert_eq!(
        at(json!([{"type": "tool-look", "toolCallId": "a"}, {"type": "tool-look", "toolCallId": "c"}])),
        Some(Cursor::new(m.id, 6, 7))
    );
    assert_eq!(at(json!([{"type": "tool-look", "toolCallId": "zzz"}])), None, "it knows no call of this answer");
}

#[test]
fn the_prefix_repeats_the_answers_id_says_each_decision_that_holds_and_asks_for_an_approved_calls_result() {
    let blocks = vec![call_block("a", "{}"), call_block("b", "{}")];
    let calls = vec![
        call("a", CallState::NeedsResult { approved: true }),
        call(
            "b",
            CallState::Resolved { text: error_text("denied by the user"), is_error: true, approved: Some(false) },
        ),
    ];
    let m = answer(blocks, MessageStatus::AwaitingInput, calls);
    // This client approved both; b's denial, from another tab, won.
    let message = ui(json!([
        {"type": "tool-look", "toolCallId": "a", "state": "approval-responded", "approval": {"id": "a", "approved": true}},
        {"type": "tool-look", "toolCallId": "b", "state": "approval-responded", "approval": {"id": "b", "approved": true}},
    ]));
    assert_eq!(
        texts(&prefix(&m, &message)),
        [
            json!({"type": "start", "messageId": m.id.to_string()}),
            json!({"type": "tool-approval-response", "approvalId": "a", "approved": true}),
            json!({"type": "tool-approval-response", "approvalId": "b", "approved": false}),
            json!({"type": "tool-input-available", "toolCallId": "a", "toolName": "look", "input": {"city": "Oslo"}}),
        ]
    );
    // The answer went on (its calls are the next step's): the results say
    // what was decided, and nothing is asked to run.
    let moved = answer(
        vec![
            call_block("a", "{}"),
            call_block("b", "{}"),
            Block::tool_result("a", "{\"t\":1}".into(), false),
            Block::tool_result("b", error_text("denied by the user: no"), true),
            Block::text("Done."),
        ],
        MessageStatus::Complete,
        vec![],
    );
    assert_eq!(
        texts(&prefix(&moved, &message))[1..],
        [
            json!({"type": "tool-approval-response", "approvalId": "a", "approved": true}),
            json!({"type": "tool-approval-response", "approvalId": "b", "approved": false}),
        ]
    );
    // A client that sent a result has nothing to run again.
    let ran = ui(json!([{"type": "tool-look", "toolCallId": "a", "state": "output-available", "output": 1}]));
    assert_eq!(prefix(&m, &ran).len(), 1, "only start");
}
