//! The UI message stream's chunks as the AI SDK names them: each kind of
//! block and its end, the answer's end in every status, a step's end, a
//! result and an answer awaiting input, the canonical numbers, replayed
//! text split where it was published, and the WebSocket envelopes.

use uuid::Uuid;

use super::{request::decimal_len, *};
use crate::domain::{cursor::Cursor, Usage};

fn started(id: Uuid) -> Event {
    Event::MessageStarted {
        thread_id: Uuid::nil(),
        cursor: Some(Cursor::new(id, 0, 0)),
        message_id: id,
        role: Role::Assistant,
        model: None,
    }
}

fn block(id: Uuid, b: usize, kind: BlockKind, tool: Option<(&str, &str)>) -> Event {
    Event::MessageBlock {
        thread_id: Uuid::nil(),
        cursor: Some(Cursor::new(id, b, 0)),
        message_id: id,
        block: b,
        kind,
        id: tool.map(|t| t.0.to_owned()),
        name: tool.map(|t| t.1.to_owned()),
        tool_use_id: None,
        is_error: None,
    }
}

fn delta_of(id: Uuid, b: usize, offset: usize, text: &str) -> Event {
    Event::MessageDelta {
        thread_id: Uuid::nil(),
        cursor: Some(Cursor::new(id, b, offset + text.len())),
        message_id: id,
        block: b,
        offset,
        text: text.to_owned(),
    }
}

fn completed(id: Uuid, status: MessageStatus, error: Option<&str>) -> Event {
    Event::MessageCompleted {
        thread_id: Uuid::nil(),
        cursor: None,
        message_id: id,
        status,
        stop_reason: Some("end_turn".into()),
        usage: Usage::default(),
        error: error
            .map(|m| MessageError { code: crate::domain::codes::MessageErrorCode::UpstreamError, message: m.into() }),
    }
}

fn text_of(pieces: &[Piece]) -> Vec<String> {
    pieces.iter().map(|p| String::from_utf8(p.json.to_vec()).unwrap()).collect()
}

fn at(seq: u64) -> Context {
    Context { seq, ..Context::default() }
}

fn in_block(seq: u64, index: usize, kind: BlockKind, tool: Option<Arc<Tool>>) -> Context {
    Context { seq, block: Some(BlockRef { index, kind, tool }), ..Context::default() }
}

#[test]
fn an_answer_with_thinking_text_and_a_tool_call_reads_as_the_sdk_names_it() {
    let id = Uuid::now_v7();
    let tool = Arc::new(Tool { id: "toolu_1".into(), name: "weather".into(), answered: None });
    let thinking = BlockRef { index: 0, kind: BlockKind::Thinking, tool: None };
    let text = BlockRef { index: 1, kind: BlockKind::Text, tool: None };
    let call = BlockRef { index: 2, kind: BlockKind::ToolUse, tool: Some(tool.clone()) };
    let steps = [
        (started(id), at(0)),
        (block(id, 0, BlockKind::Thinking, None), at(2)),
        (delta_of(id, 0, 0, "hm"), in_block(3, 0, BlockKind::Thinking, None)),
        (
            block(id, 1, BlockKind::Text, None),
            Context { closes: Some(Box::new(Closed { block: thinking, input: None })), ..at(4) },
        ),
        (delta_of(id, 1, 0, "Héllo \"x\""), in_block(6, 1, BlockKind::Text, None)),
        (
            block(id, 2, BlockKind::ToolUse, Some(("toolu_1", "weather"))),
            Context { closes: Some(Box::new(Closed { block: text, input: None })), ..at(7) },
        ),
        (delta_of(id, 2, 0, "{\"city\":"), in_block(9, 2, BlockKind::ToolUse, Some(tool.clone()))),
        (
            completed(id, MessageStatus::Complete, None),
            Context {
                closes: Some(Box::new(Closed { block: call, input: Some("{\"city\": \"Oslo\"}".into()) })),
                ..at(10)
            },
        ),
    ];
    let mut all = Vec::new();
    for (event, context) in &steps {
        all.extend(pieces(event, context, true));
    }
    let seqs: Vec<u64> = all.iter().map(|p| p.seq).collect();
    assert_eq!(seqs, (0..13).collect::<Vec<_>>(), "numbers run without gap");
    assert_eq!(
        text_of(&all),
        [
            format!(r#"{{"type":"start","messageId":"{id}"}}"#),
            r#"{"type":"start-step"}"#.into(),
            r#"{"type":"reasoning-start","id":"0"}"#.into(),
            r#"{"type":"reasoning-delta","id":"0","delta":"hm"}"#.into(),
            r#"{"type":"reasoning-end","id":"0"}"#.into(),
            r#"{"type":"text-start","id":"1"}"#.into(),
            r#"{"type":"text-delta","id":"1","delta":"Héllo \"x\""}"#.into(),
            r#"{"type":"text-end","id":"1"}"#.into(),
            r#"{"type":"tool-input-start","toolCallId":"toolu_1","toolName":"weather"}"#.into(),
            r#"{"type":"tool-input-delta","toolCallId":"toolu_1","inputTextDelta":"{\"city\":"}"#.into(),
            r#"{"type":"tool-input-available","toolCallId":"toolu_1","toolName":"weather","input":{"city":"Oslo"}}"#
                .into(),
            r#"{"type":"finish-step"}"#.into(),
            r#"{"type":"finish","finishReason":"stop"}"#.into(),
        ]
    );
}

#[test]
fn a_replayed_delta_is_one_chunk_over_sse_and_its_published_deltas_when_numbered() {
    let id = Uuid::now_v7();
    let context = Context { splits: vec![5, 9].into(), ..in_block(3, 0, BlockKind::Text, None) };
    // The block's text from byte 2: published as [2..5], [5..9], [9..12].
    let event = delta_of(id, 0, 2, "llo wörld");
    let split = pieces(&event, &context, true);
    let deltas: Vec<Value> = split.iter().map(|p| serde_json::from_slice::<Value>(&p.json).unwrap()).collect();
    assert_eq!(deltas.iter().map(|d| d["delta"].as_str().unwrap()).collect::<Vec<_>>(), ["llo", " wö", "rld"]);
    assert_eq!(split.iter().map(|p| p.seq).collect::<Vec<_>>(), [3, 4, 5]);
    let lines = sse(&event, &context).unwrap();
    let line = String::from_utf8(lines.to_vec()).unwrap();
    assert_eq!(line, "data: {\"type\":\"text-delta\",\"id\":\"0\",\"delta\":\"llo wörld\"}\n\n");
}

#[test]
fn a_failed_answer_ends_with_its_error_and_a_cancelled_one_with_abort() {
    let id = Uuid::now_v7();
    let text = Closed { block: BlockRef { index: 0, kind: BlockKind::Text, tool: None }, input: None };
    let failed = completed(id, MessageStatus::Failed, Some("Overloaded"));
    let context = Context { closes: Some(Box::new(text.clone())), ..at(4) };
    let lines = String::from_utf8(sse(&failed, &context).unwrap().to_vec()).unwrap();
    assert_eq!(
        lines,
        "data: {\"type\":\"text-end\",\"id\":\"0\"}\n\n\
         data: {\"type\":\"error\",\"errorText\":\"Overloaded\"}\n\n\
         data: {\"type\":\"finish-step\"}\n\n\
         data: {\"type\":\"finish\",\"finishReason\":\"error\"}\n\n\
         data: [DONE]\n\n"
    );
    let cancelled = pieces(&completed(id, MessageStatus::Cancelled, None), &context, true);
    assert_eq!(text_of(&cancelled), [r#"{"type":"text-end","id":"0"}"#, r#"{"type":"abort","reason":"cancelled"}"#]);
}

#[test]
fn a_tool_input_that_is_not_json_is_a_tool_input_error() {
    let id = Uuid::now_v7();
    let tool = Some(Arc::new(Tool { id: "t".into(), name: "n".into(), answered: None }));
    let cut = Closed { block: BlockRef { index: 0, kind: BlockKind::ToolUse, tool }, input: Some("{\"a\":".into()) };
    let got = pieces(
        &completed(id, MessageStatus::Cancelled, None),
        &Context { closes: Some(Box::new(cut)), ..at(3) },
        false,
    );
    let first: Value = serde_json::from_slice(&got[0].json).unwrap();
    assert_eq!(first["type"], "tool-input-error");
    assert_eq!(first["input"], "{\"a\":");
}

#[test]
fn events_of_no_ui_form_have_none() {
    let presence = Event::Presence { thread_id: Uuid::nil(), cursor: None, subscribers: 2 };
    assert!(sse(&presence, &Context::default()).is_none());
    let orphan = delta_of(Uuid::nil(), 0, 0, "x");
    assert!(pieces(&orphan, &Context::default(), true).is_empty(), "a delta needs its block");
}

#[test]
fn a_chunk_frame_written_in_place_is_the_chunk_in_a_websocket_frame() {
    let request = Request::new("req");
    let long = format!(r#"{{"type":"text-delta","id":"0","delta":"{}"}}"#, "x".repeat(200));
    for (seq, json) in
        [(0, r#"{"type":"start-step"}"#.to_owned()), (9, long.clone()), (10, long), (123_456, "{}".into())]
    {
        let piece = Piece { seq, json: Bytes::from(json), ends_step: false };
        let mut out = BytesMut::from(&b"before"[..]);
        request.put_chunk(&piece, &mut out);
        let mut want = b"before".to_vec();
        want.extend_from_slice(&crate::domain::websocket::ws_frame(
            crate::domain::websocket::WsOp::Text,
            &request.chunk(&piece),
        ));
        assert_eq!(&out[..], &want[..], "seq {seq}");
    }
    assert_eq!((decimal_len(0), decimal_len(9), decimal_len(10), decimal_len(u64::MAX)), (1, 1, 2, 20));
}

#[test]
fn request_frames_carry_the_request_id_encoded_once() {
    let request = Request::new("r\"1");
    let piece = Piece { seq: 7, json: Bytes::from_static(br#"{"type":"start-step"}"#), ends_step: false };
    let chunk: Value = serde_json::from_slice(&request.chunk(&piece)).unwrap();
    assert_eq!(
        chunk,
        serde_json::json!({"type": "chunk", "requestId": "r\"1", "sequence": 7, "chunk": {"type": "start-step"}})
    );
    for (bytes, kind) in [(request.start(), "start"), (request.end(), "end"), (request.no_active(), "no-active")] {
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v, serde_json::json!({"type": kind, "requestId": "r\"1"}));
    }
    let error: Value = serde_json::from_slice(&request.error("busy")).unwrap();
    assert_eq!(error["errorText"], "busy");
}

fn result_ref(index: usize, call: &str, answered: Answered) -> BlockRef {
    let tool = Arc::new(Tool { id: call.into(), name: String::new(), answered: Some(answered) });
    BlockRef { index, kind: BlockKind::ToolResult, tool: Some(tool) }
}

fn chunks_of(event: &Event, context: &Context) -> Vec<Value> {
    pieces(event, context, true).iter().map(|p| serde_json::from_slice(&p.json).unwrap()).collect()
}

#[test]
fn a_calls_result_is_one_chunk_its_output_its_error_or_its_denial() {
    let id = Uuid::now_v7();
    let cases = [
        (
            Answered::Output,
            r#"{"temp":21}"#,
            serde_json::json!({"type": "tool-output-available", "toolCallId": "c", "output": {"temp": 21}}),
        ),
        (
            Answered::Output,
            "null",
            serde_json::json!({"type": "tool-output-available", "toolCallId": "c", "output": null}),
        ),
        (
            Answered::Error,
            r#""no such city""#,
            serde_json::json!({"type": "tool-output-error", "toolCallId": "c", "errorText": "no such city"}),
        ),
        (
            Answered::Denied,
            r#""denied by the user: no""#,
            serde_json::json!({"type": "tool-output-denied", "toolCallId": "c"}),
        ),
    ];
    for (answered, text, want) in cases {
        let context = Context { seq: 9, block: Some(result_ref(4, "c", answered)), ..Context::default() };
        let got = pieces(&delta_of(id, 4, 0, text), &context, true);
        assert_eq!(got.len(), 1, "{answered:?}");
        assert_eq!(got[0].seq, 9);
        assert_eq!(serde_json::from_slice::<Value>(&got[0].json).unwrap(), want);
    }
    // Its text is published whole: a delta further in is nothing.
    let context = Context { seq: 9, block: Some(result_ref(4, "c", Answered::Output)), ..Context::default() };
    assert!(pieces(&delta_of(id, 4, 3, "x"), &context, true).is_empty());
}

#[test]
fn the_steps_first_result_ends_the_step_and_the_next_step_starts_with_start_step() {
    let id = Uuid::now_v7();
    let tool = Some(Arc::new(Tool { id: "c".into(), name: "look".into(), answered: None }));
    let call = Closed { block: BlockRef { index: 1, kind: BlockKind::ToolUse, tool }, input: Some("{}".into()) };
    let mut first = block(id, 2, BlockKind::ToolResult, None);
    if let Event::MessageBlock { tool_use_id, is_error, .. } = &mut first {
        *tool_use_id = Some("c".into());
        *is_error = Some(false);
    }
    let context = Context { seq: 6, closes: Some(Box::new(call)), step_end: true, ..Context::default() };
    let got = pieces(&first, &context, true);
    assert_eq!(
        chunks_of(&first, &context),
        [
            serde_json::json!({"type": "tool-input-available", "toolCallId": "c", "toolName": "look", "input": {}}),
            serde_json::json!({"type": "finish-step"}),
        ]
    );
    assert_eq!(got.iter().map(|p| (p.seq, p.ends_step)).collect::<Vec<_>>(), [(6, false), (7, true)]);
    // A later result of the same step: nothing until its text.
    assert!(pieces(&block(id, 3, BlockKind::ToolResult, None), &at(9), true).is_empty());
    let step = Event::MessageStep { thread_id: Uuid::nil(), cursor: None, message_id: id, step: 2 };
    assert_eq!(chunks_of(&step, &at(10)), [serde_json::json!({"type": "start-step"})]);
}

#[test]
fn an_answer_awaiting_input_ends_its_stream_asking_for_each_approval() {
    use crate::domain::{Needs, PendingCall};
    let id = Uuid::now_v7();
    let call = |id: &str, needs| PendingCall { tool_call_id: id.into(), name: "n".into(), input: Value::Null, needs };
    let awaiting = Event::MessageAwaiting {
        thread_id: Uuid::nil(),
        cursor: None,
        message_id: id,
        pending: vec![call("r", Needs::Result), call("p", Needs::Approval)],
    };
    let tool = Some(Arc::new(Tool { id: "p".into(), name: "n".into(), answered: None }));
    let last = Closed { block: BlockRef { index: 1, kind: BlockKind::ToolUse, tool }, input: Some("{}".into()) };
    let context = Context { seq: 8, closes: Some(Box::new(last)), step_end: true, ..Context::default() };
    let lines = String::from_utf8(sse(&awaiting, &context).unwrap().to_vec()).unwrap();
    assert_eq!(
        lines,
        "data: {\"type\":\"tool-input-available\",\"toolCallId\":\"p\",\"toolName\":\"n\",\"input\":{}}\n\n\
         data: {\"type\":\"finish-step\"}\n\n\
         data: {\"type\":\"tool-approval-request\",\"approvalId\":\"p\",\"toolCallId\":\"p\"}\n\n\
         data: {\"type\":\"finish\",\"finishReason\":\"tool-calls\"}\n\n\
         data: [DONE]\n\n"
    );
    let numbered = pieces(&awaiting, &context, true);
    assert_eq!(numbered.iter().map(|p| p.seq).collect::<Vec<_>>(), [8, 9, 10, 11]);
    assert!(numbered[1].ends_step, "a continuation goes on after it");
    assert!(ends_stream(&awaiting));
}

#[test]
fn a_continuations_own_chunks_say_the_message_a_decision_and_a_call_to_run() {
    let text = |b: Bytes| serde_json::from_slice::<Value>(&b).unwrap();
    assert_eq!(text(start("m1")), serde_json::json!({"type": "start", "messageId": "m1"}));
    assert_eq!(
        text(approval_response("c", false)),
        serde_json::json!({"type": "tool-approval-response", "approvalId": "c", "approved": false})
    );
    assert_eq!(
        text(input_available("c", "look", serde_json::json!({"q": 1}))),
        serde_json::json!({"type": "tool-input-available", "toolCallId": "c", "toolName": "look", "input": {"q": 1}})
    );
    let lines = sse_lines([start("m1")].iter(), false);
    assert_eq!(&lines[..], b"data: {\"type\":\"start\",\"messageId\":\"m1\"}\n\n");
}
