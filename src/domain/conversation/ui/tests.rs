//! The UI chunks of an answer in several steps: the first request's
//! stream up to where the answer awaits input, the request that continues
//! it, a replay of the whole message, and another node's mirror all agree
//! on every chunk and its number.

use chrono::Utc;
use serde_json::{json, Value};
use uuid::Uuid;

use super::super::*;
use crate::domain::{
    tools::{Approval, Run, ToolDef},
    turn::{self, Answer},
    ui_stream::{pieces, Piece},
};

fn tool(name: &str, approval: Approval) -> ToolDef {
    ToolDef {
        name: name.into(),
        description: None,
        input_schema: json!({"type": "object"}),
        approval,
        run: Run::Client,
    }
}

fn start(index: usize, kind: BlockKind, call: Option<(&str, &str)>) -> ProviderEvent {
    ProviderEvent::BlockStart { index, kind, id: call.map(|c| c.0.to_owned()), name: call.map(|c| c.1.to_owned()) }
}

fn text(index: usize, t: &str) -> ProviderEvent {
    ProviderEvent::Delta { index, text: t.into() }
}

/// What one published event reads as, with its numbers.
fn read(c: &Conversation, e: &Event) -> Vec<Piece> {
    pieces(e, &c.ui_context(e), true)
}

fn chunks(pieces: &[Piece]) -> Vec<Value> {
    pieces.iter().map(|p| serde_json::from_slice(&p.json).unwrap()).collect()
}

fn kinds(pieces: &[Piece]) -> Vec<String> {
    chunks(pieces).iter().map(|c| c["type"].as_str().unwrap().to_owned()).collect()
}

fn numbers(pieces: &[Piece]) -> Vec<u64> {
    pieces.iter().map(|p| p.seq).collect()
}

/// What a request that continues after the step its client has sends:
/// everything after the first `finish-step` it meets.
fn continued(pieces: &[Piece]) -> Vec<Piece> {
    let end = pieces.iter().position(|p| p.ends_step).expect("a step's end");
    pieces[end + 1..].to_vec()
}

/// An answer in two steps, as the thread actor drives it: text and two
/// calls (one the client answers, one a person must approve), the answer
/// awaiting input, a result and a denial, then a second step of text.
/// Every event it publishes, the conversation as it was after each, and
/// the replay a reloaded client got while it awaited.
struct Run2 {
    c: Conversation,
    published: Vec<Event>,
    live: Vec<Vec<Piece>>,
    awaited_at: usize,
    while_awaiting: Vec<Piece>,
    /// The replay of a reader that joined once the next step began, before
    /// its first block.
    between_steps: Vec<Piece>,
    question_end: crate::domain::cursor::Cursor,
    answer: Uuid,
}

fn two_steps() -> Run2 {
    let tools = [tool("look", Approval::Never), tool("ask", Approval::Always)];
    let mut c = Conversation::new(Uuid::nil(), Vec::new());
    let asked = c.ask("Weather?".into(), "m".into(), crate::domain::new_id(), Utc::now());
    let answer = asked.assistant.id;
    let question_end = crate::domain::event::end_cursor(&asked.user);
    let mut run = Run2 {
        live: asked.events.iter().map(|e| read(&c, e)).collect(),
        published: asked.events,
        c,
        awaited_at: 0,
        while_awaiting: Vec::new(),
        between_steps: Vec::new(),
        question_end,
        answer,
    };
    let publish = |run: &mut Run2, events: Vec<Event>| {
        for e in events {
            run.live.push(read(&run.c, &e));
            run.published.push(e);
        }
    };
    for e in [
        start(0, BlockKind::Text, None),
        text(0, "Let me "),
        text(0, "look."),
        start(1, BlockKind::ToolUse, Some(("a", "look"))),
        text(1, r#"{"city""#),
        text(1, r#":"Oslo"}"#),
        start(2, BlockKind::ToolUse, Some(("b", "ask"))),
        text(2, "{}"),
        ProviderEvent::Stop { stop_reason: Some("tool_use".into()) },
    ] {
        let events = run.c.apply(e).events;
        publish(&mut run, events);
    }
    let mut calls = run.c.step_calls(&tools).expect("the step asked for tools");
    let (_, awaiting) = run.c.await_input(calls.clone()).unwrap();
    publish(&mut run, vec![awaiting]);
    run.awaited_at = run.live.len();
    let replay = run.c.replay(crate::domain::cursor::Resume::At(question_end));
    run.while_awaiting = replay.events.iter().flat_map(|e| read(&run.c, e)).collect();

    let result = Answer::Result { output: Ok(json!({"temp": 21})) };
    assert_eq!(turn::answer(&mut calls, "a", &result, &tools), turn::Outcome::Resolved);
    let denial = Answer::Decision { approved: false, reason: Some("not now".into()) };
    assert_eq!(turn::answer(&mut calls, "b", &denial, &tools), turn::Outcome::Resolved);
    run.c.set_calls(answer, calls.clone());
    let resolved = calls
        .iter()
        .map(|call| Event::ToolResolved {
            thread_id: Uuid::nil(),
            cursor: None,
            message_id: answer,
            tool_call_id: call.id.clone(),
            needs: if call.id == "b" { Needs::Approval } else { Needs::Result },
            approved: (call.id == "b").then_some(false),
            is_error: (call.id == "a").then_some(false),
        })
        .collect();
    publish(&mut run, resolved);
    let results = run.c.resume_with(answer, &calls).unwrap();
    publish(&mut run, results);
    let step = run.c.step_begins().unwrap();
    publish(&mut run, vec![step]);
    let replay = run.c.replay(crate::domain::cursor::Resume::At(question_end));
    run.between_steps = replay.events.iter().flat_map(|e| read(&run.c, e)).collect();
    for e in [start(0, BlockKind::Text, None), text(0, "It is 21."), ProviderEvent::Stop { stop_reason: None }] {
        let events = run.c.apply(e).events;
        publish(&mut run, events);
    }
    let (_, completed) = run.c.finish(MessageStatus::Complete, None, Utc::now()).unwrap();
    publish(&mut run, vec![completed]);
    run
}

#[test]
fn the_first_stream_ends_where_the_answer_awaits_with_the_approval_asked() {
    let run = two_steps();
    let first: Vec<Piece> = run.live[..run.awaited_at].iter().flatten().cloned().collect();
    assert_eq!(
        kinds(&first),
        [
            "start",
            "start-step",
            "text-start",
            "text-delta",
            "text-delta",
            "text-end",
            "tool-input-start",
            "tool-input-delta",
            "tool-input-delta",
            "tool-input-available",
            "tool-input-start",
            "tool-input-delta",
            "tool-input-available",
            "finish-step",
            "tool-approval-request",
            "finish",
        ]
    );
    assert_eq!(numbers(&first), (0..16).collect::<Vec<_>>());
    let all = chunks(&first);
    assert_eq!(all[14], json!({"type": "tool-approval-request", "approvalId": "b", "toolCallId": "b"}));
    assert_eq!(all[15], json!({"type": "finish", "finishReason": "tool-calls"}));
    assert_eq!(all[12]["input"], json!({}));
    // A client that reloads while it awaits gets the same (its deltas
    // coalesced, then split again where they were published).
    assert_eq!(run.while_awaiting, first);
}

#[test]
fn the_continuation_and_a_replay_of_the_whole_message_agree_on_every_chunk() {
    let run = two_steps();
    let after: Vec<Piece> = run.live[run.awaited_at..].iter().flatten().cloned().collect();
    let sent = continued(&after);
    assert_eq!(
        chunks(&sent),
        [
            json!({"type": "tool-output-available", "toolCallId": "a", "output": {"temp": 21}}),
            json!({"type": "tool-output-denied", "toolCallId": "b"}),
            json!({"type": "start-step"}),
            json!({"type": "text-start", "id": "5"}),
            json!({"type": "text-delta", "id": "5", "delta": "It is 21."}),
            json!({"type": "text-end", "id": "5"}),
            json!({"type": "finish-step"}),
            json!({"type": "finish", "finishReason": "stop"}),
        ]
    );
    assert_eq!(numbers(&sent), (14..22).collect::<Vec<_>>(), "numbered on from the step's end");

    // A request that comes once the answer has ended: its subscription
    // starts at the end of the step its client has.
    let m = run.c.message(run.answer).unwrap();
    let from = crate::domain::event::position_before(m, 3);
    let replayed: Vec<Piece> =
        run.c.replay(crate::domain::cursor::Resume::At(from)).events.iter().flat_map(|e| read(&run.c, e)).collect();
    assert_eq!(continued(&replayed), sent);

    // The whole message from its start: the first stream up to the step's
    // end, then the continuation; no number twice, none missing.
    let whole: Vec<Piece> = run
        .c
        .replay(crate::domain::cursor::Resume::At(run.question_end))
        .events
        .iter()
        .flat_map(|e| read(&run.c, e))
        .collect();
    assert_eq!(numbers(&whole), (0..22).collect::<Vec<_>>());
    let first: Vec<Piece> = run.live[..run.awaited_at].iter().flatten().cloned().collect();
    assert_eq!(whole[..14], first[..14]);
    assert_eq!(whole[14..], sent[..]);
    // A reader that joined between the steps was told the next one began.
    assert_eq!(run.between_steps[..], whole[..17]);
    assert_eq!(kinds(&run.between_steps[16..]), ["start-step"]);
}

#[test]
fn another_nodes_mirror_reads_every_event_as_the_owner_does() {
    let run = two_steps();
    let mut mirror = Conversation::new(Uuid::nil(), Vec::new());
    for (e, owner) in run.published.iter().zip(&run.live) {
        mirror.mirror(e, Utc::now()).unwrap();
        assert_eq!(&read(&mirror, e), owner, "{e:?}");
    }
}
