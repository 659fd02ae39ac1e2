//! Answers cut short by the provider finish anyway: the real clients
//! against the fake upstream (issue 28 items 1 to 3 and 5). Each test
//! cuts an answer one way (a dropped connection, an error event after the
//! 200, a stall; mid-text, mid-thinking, mid-tool-input), then checks what
//! a tab saw (`message.continued`, the deltas at the next offsets), what
//! was stored (one message, `complete`, its `continuations`), and what the
//! model was asked the second time (the partial answer, in the form its
//! model takes).

use std::time::Duration;

use serde_json::{json, Value};

use crate::{
    fake_upstream::{anthropic as a, openai as o, End, Piece, Reply},
    providers::{completed, harness, streamed_text, Harness},
};

/// An Anthropic answer cut after `text` (one text block), ended by `end`
/// after `tail`.
fn cut_after(text: &[&str], tail: Vec<Piece>, end: End) -> Reply {
    let mut pieces = vec![Piece::Bytes(a::message_start(9)), Piece::Bytes(a::text_start(0))];
    pieces.extend(text.iter().map(|t| Piece::Bytes(a::text_delta(0, t))));
    pieces.extend(tail);
    Reply::Stream { pieces, end }
}

fn whole(text: &[&str]) -> Reply {
    Reply::Stream { pieces: a::text_answer(text), end: End::Clean }
}

/// The events of `kind` among `events`.
fn of<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == kind).collect()
}

/// The messages the model was sent in request `i`.
fn sent(h: &Harness, i: usize) -> Vec<Value> {
    h.upstream.requests()[i].body["messages"].as_array().unwrap().clone()
}

async fn messages(h: &Harness) -> Vec<Value> {
    let page: Value = h.client.get(h.url("/messages")).send().await.unwrap().json().await.unwrap();
    page["data"].as_array().unwrap().clone()
}

async fn metrics(h: &Harness) -> String {
    h.client.get(format!("{}/metrics", h.base)).send().await.unwrap().text().await.unwrap()
}

#[actix_web::test]
async fn a_dropped_answer_goes_on_in_the_same_message_and_block() {
    let replies = vec![cut_after(&["Hello, ", "wor"], vec![], End::Drop), whole(&["ld! The ", "end."])];
    let mut h = harness("anthropic", replies, &[]).await;
    h.new_thread(json!({"model": "claude-sonnet-4-5"})).await;
    let events = h.ask(json!({"content": "greet"})).await;

    // The tab: the partial text, `message.continued`, the rest at the
    // next offsets of the same block (checked by `streamed_text`).
    let continued = of(&events, "message.continued");
    assert_eq!(continued.len(), 1);
    assert_eq!((continued[0]["attempt"].as_u64(), continued[0]["reason"].as_str()), (Some(1), Some("connection_lost")));
    let done = completed(&events);
    assert_eq!(done["status"], "complete");
    assert_eq!(streamed_text(&events, 0), "Hello, world! The end.");
    assert!(of(&events, "message.block").len() == 1, "no new block: {events:?}");
    let at = events.iter().position(|e| e["type"] == "message.continued").unwrap();
    assert_eq!(events[at - 1]["text"], "wor", "continued after the partial text");
    assert_eq!(events[at]["cursor"], events[at - 1]["cursor"], "where the answer stood");

    // Stored: one answer, complete, continued once.
    let stored = h.last_message().await;
    assert_eq!(stored["status"], "complete");
    assert_eq!(stored["content"], "Hello, world! The end.");
    assert_eq!(stored["continuations"], 1);
    assert_eq!(stored["blocks"].as_array().unwrap().len(), 1);
    assert_eq!(messages(&h).await.len(), 2, "the question and its one answer");

    // The model was asked again with the partial answer as a prefill
    // (Claude 4.5 takes one), and nothing else after it.
    let second = sent(&h, 1);
    assert_eq!(
        second.last().unwrap(),
        &json!({"role": "assistant", "content": [{"type": "text", "text": "Hello, wor"}]})
    );
    assert_eq!(second[second.len() - 2]["role"], "user");

    // A cursor from before the cut stays valid: resumed there, a tab gets
    // exactly the rest.
    let cursor = events[at - 1]["cursor"].as_str().unwrap();
    let resumed = crate::support::Sse::open(h.client.get(h.url(&format!("/events?cursor={cursor}")))).await;
    let mut resumed = resumed;
    let mut rest = String::new();
    loop {
        let ev = resumed.next().await.unwrap();
        assert_ne!(ev.kind, "error", "{:?}", ev.data);
        if ev.kind == "message.delta" {
            rest.push_str(ev.data["text"].as_str().unwrap());
        }
        if ev.kind == "message.completed" {
            break;
        }
    }
    assert_eq!(rest, "ld! The end.");

    let m = metrics(&h).await;
    assert!(
        m.lines().any(|l| l.starts_with("convo_continuations_total")
            && l.contains("reason=\"connection_lost\"")
            && l.contains("outcome=\"continued\"")
            && l.ends_with(" 1")),
        "{m}"
    );
}

#[actix_web::test]
async fn claude_4_6_is_asked_to_go_on_with_an_instruction_never_stored() {
    let overloaded = vec![Piece::Bytes(a::error("overloaded_error", "Overloaded"))];
    let replies = vec![cut_after(&["First half, "], overloaded, End::Clean), whole(&["second half."])];
    let mut h = harness("anthropic", replies, &[]).await;
    h.new_thread(json!({"model": "claude-opus-4-6"})).await;
    let events = h.ask(json!({"content": "go"})).await;
    let continued = of(&events, "message.continued");
    assert_eq!(continued[0]["reason"], "provider_error");
    assert_eq!(completed(&events)["status"], "complete");
    assert_eq!(h.last_message().await["content"], "First half, second half.");

    // Claude 4.6 refuses a prefill: the partial answer as it is (its
    // trailing space kept), then a user message asking to go on.
    let second = sent(&h, 1);
    let n = second.len();
    assert_eq!(second[n - 2], json!({"role": "assistant", "content": [{"type": "text", "text": "First half, "}]}));
    assert_eq!(second[n - 1]["role"], "user");
    let asked = second[n - 1]["content"][0]["text"].as_str().unwrap();
    assert!(asked.contains("without repeating"), "{asked}");
    // The instruction is never stored nor shown.
    let stored = messages(&h).await;
    assert_eq!(stored.len(), 2);
    assert!(stored.iter().all(|m| !m["content"].as_str().unwrap().contains("without repeating")));
}

/// `--continue-form` forces one form whatever the model: `instruction`
/// for Claude 4.5 (which would take a prefill), `prefill` for Claude 4.6
/// (which would get an instruction; a proxy that accepts prefills, say).
#[actix_web::test]
async fn the_operator_can_force_either_form_for_every_model() {
    let overloaded = || vec![Piece::Bytes(a::error("overloaded_error", "Overloaded"))];
    for (form, model) in [("instruction", "claude-sonnet-4-5"), ("prefill", "claude-opus-4-6")] {
        let replies = vec![cut_after(&["Begun, "], overloaded(), End::Clean), whole(&["ended."])];
        let mut h = harness("anthropic", replies, &["--continue-form", form]).await;
        h.new_thread(json!({"model": model})).await;
        let events = h.ask(json!({"content": "go"})).await;
        assert_eq!(completed(&events)["status"], "complete", "{form}");
        assert_eq!(h.last_message().await["content"], "Begun, ended.", "{form}");
        let second = sent(&h, 1);
        let n = second.len();
        match form {
            "instruction" => {
                assert_eq!(
                    second[n - 2],
                    json!({"role": "assistant", "content": [{"type": "text", "text": "Begun, "}]})
                );
                assert_eq!(second[n - 1]["role"], "user", "the instruction comes last");
                assert!(second[n - 1]["content"][0]["text"].as_str().unwrap().contains("without repeating"));
            }
            _ => assert_eq!(
                second[n - 1],
                json!({"role": "assistant", "content": [{"type": "text", "text": "Begun,"}]}),
                "a prefill, its trailing whitespace trimmed"
            ),
        }
        assert_eq!(messages(&h).await.len(), 2, "{form}: nothing but the question and its answer stored");
    }
}

#[actix_web::test]
async fn a_continuation_that_repeats_the_end_of_the_partial_text_has_the_repeat_cut() {
    let replies = vec![
        cut_after(&["The quick brown fox ", "jumps over the lazy"], vec![], End::Drop),
        // Repeats 13 bytes of the end, split across deltas.
        whole(&["over the ", "lazy dog", "."]),
    ];
    let h = harness("anthropic", replies, &[]).await;
    let events = h.ask(json!({"content": "fox"})).await;
    assert_eq!(streamed_text(&events, 0), "The quick brown fox jumps over the lazy dog.");
    assert_eq!(h.last_message().await["content"], "The quick brown fox jumps over the lazy dog.");
}

#[actix_web::test]
async fn a_cut_in_thinking_sends_whole_thinking_back_signed_and_drops_the_partial_one() {
    let thinking = |index: usize| {
        a::event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": {"type": "thinking", "thinking": ""}}),
        )
    };
    let think = |index: usize, text: &str| {
        a::event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": index, "delta": {"type": "thinking_delta", "thinking": text}}),
        )
    };
    let signature = a::event(
        "content_block_delta",
        &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "c2ln"}}),
    );
    let first = vec![
        Piece::Bytes(a::message_start(9)),
        Piece::Bytes(thinking(0)),
        Piece::Bytes(think(0, "Whole thought, 🤔.")),
        Piece::Bytes(signature),
        Piece::Bytes(a::block_stop(0)),
        Piece::Bytes(thinking(1)),
        Piece::Bytes(think(1, "half a thou")),
    ];
    let replies = vec![Reply::Stream { pieces: first, end: End::Drop }, whole(&["The answer."])];
    let mut h = harness("anthropic", replies, &[]).await;
    h.new_thread(json!({"model": "claude-sonnet-4-5"})).await;
    let events = h.ask(json!({"content": "think"})).await;
    assert_eq!(completed(&events)["status"], "complete");
    assert_eq!(of(&events, "message.continued").len(), 1);

    // The signed thought goes back byte for byte; the unsigned partial one
    // cannot be sent, and with nothing else to go on from, the request is
    // asked again as it was.
    let second = sent(&h, 1);
    // Thinking is on: the instruction form (a prefill would be refused).
    assert_eq!(second.len(), sent(&h, 0).len() + 2, "the thought, then the instruction: {second:?}");
    let thought = &second[second.len() - 2];
    let whole_thought = json!({"type": "thinking", "thinking": "Whole thought, 🤔.", "signature": "c2ln"});
    assert_eq!(thought, &json!({"role": "assistant", "content": [whole_thought]}), "the partial thought is not sent");
    assert_eq!(second.last().unwrap()["role"], "user");
    // Stored: both thoughts as they were shown, then the answer's text.
    let stored = h.last_message().await;
    let kinds: Vec<&str> = stored["blocks"].as_array().unwrap().iter().map(|b| b["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["thinking", "thinking", "text"]);
    assert_eq!(stored["blocks"][1]["text"], "half a thou");
    assert_eq!(stored["content"], "The answer.");
}

#[actix_web::test]
async fn a_cut_in_a_tool_input_answers_the_call_with_an_error_and_goes_on_as_the_next_step() {
    let first = vec![
        Piece::Bytes(a::message_start(9)),
        Piece::Bytes(a::text_start(0)),
        Piece::Bytes(a::text_delta(0, "Checking.")),
        Piece::Bytes(a::block_stop(0)),
        Piece::Bytes(a::tool_start(1, Some("toolu_cut"), "look")),
        Piece::Bytes(a::input_delta(1, "{\"city\": \"Par")),
    ];
    let replies = vec![Reply::Stream { pieces: first, end: End::Drop }, whole(&["I could not look."])];
    let mut h = harness("anthropic", replies, &[]).await;
    h.new_thread(json!({"tools": [{"name": "look", "input_schema": {"type": "object"}}]})).await;
    let events = h.ask(json!({"content": "weather in Paris?"})).await;
    assert_eq!(completed(&events)["status"], "complete");
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    let continued = kinds.iter().position(|k| *k == "message.continued").expect("continued");
    let step = kinds.iter().position(|k| *k == "message.step").expect("a new step");
    assert!(continued < step, "{kinds:?}");
    assert_eq!(of(&events, "message.step")[0]["step"], 2);

    // The call cut mid-input got its error result, and the model was told.
    let stored = h.last_message().await;
    let blocks = stored["blocks"].as_array().unwrap();
    let kinds: Vec<&str> = blocks.iter().map(|b| b["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["text", "tool_use", "tool_result", "text"]);
    assert_eq!((blocks[2]["tool_use_id"].as_str(), blocks[2]["is_error"].as_bool()), (Some("toolu_cut"), Some(true)));
    assert!(blocks[2]["text"].as_str().unwrap().contains("input cut off"), "{}", blocks[2]);
    let second = sent(&h, 1);
    let told = second.last().unwrap();
    assert_eq!(told["role"], "user");
    assert_eq!(told["content"][0]["type"], "tool_result");
    assert_eq!(told["content"][0]["is_error"], true);
    assert_eq!(stored["continuations"], 1);
}

#[actix_web::test]
async fn an_answer_cut_past_its_budget_fails_as_before_with_what_it_had() {
    let cut = |t: &'static str| cut_after(&[t], vec![], End::Drop);
    let replies = vec![cut("one, "), cut("two, "), cut("three, "), whole(&["never asked"])];
    let h = harness("anthropic", replies, &["--continue-max-attempts", "2"]).await;
    let events = h.ask(json!({"content": "count"})).await;
    let continued = of(&events, "message.continued");
    let attempts: Vec<u64> = continued.iter().map(|e| e["attempt"].as_u64().unwrap()).collect();
    assert_eq!(attempts, [1, 2]);
    let done = completed(&events);
    assert_eq!(done["status"], "failed");
    assert_eq!(done["error"]["code"], "upstream_error");
    let stored = h.last_message().await;
    assert_eq!(stored["content"], "one, two, three, ");
    assert_eq!(stored["continuations"], 2);
    assert_eq!(h.upstream.requests().len(), 3);
    let m = metrics(&h).await;
    assert!(m.lines().any(|l| l.contains("outcome=\"budget_spent\"") && l.ends_with(" 1")), "{m}");
}

#[actix_web::test]
async fn a_stalled_answer_goes_on_and_one_cut_before_any_text_does_not() {
    // A stall after text: continued (reason `stalled`).
    let replies = vec![cut_after(&["Slow "], vec![], End::Hold), whole(&["but done."])];
    let h = harness("anthropic", replies, &["--upstream-stall-ms", "800"]).await;
    let events = h.ask(json!({"content": "slow"})).await;
    assert_eq!(of(&events, "message.continued")[0]["reason"], "stalled");
    assert_eq!(h.last_message().await["content"], "Slow but done.");

    // Cut before the model wrote anything (after the upstream's own
    // retries): asking again would most likely fail the same way.
    let empty = Reply::Stream { pieces: vec![Piece::Bytes(a::message_start(9))], end: End::Drop };
    let h = harness("anthropic", vec![empty], &["--upstream-attempts", "2"]).await;
    let events = h.ask(json!({"content": "nothing"})).await;
    assert!(of(&events, "message.continued").is_empty());
    assert_eq!(completed(&events)["status"], "failed");
    assert_eq!(h.upstream.requests().len(), 2, "the upstream layer's own retry only");
    let m = metrics(&h).await;
    assert!(m.lines().any(|l| l.contains("outcome=\"no_progress\"")), "{m}");
}

#[actix_web::test]
async fn limits_and_cancels_are_never_continued() {
    // The call's own time limit.
    let slow =
        cut_after(&["tick "], vec![Piece::Forever(a::text_delta(0, "tick "), Duration::from_millis(50))], End::Clean);
    let h = harness("anthropic", vec![slow.clone()], &["--upstream-call-timeout-ms", "600"]).await;
    let events = h.ask(json!({"content": "tick"})).await;
    assert_eq!(completed(&events)["error"]["code"], "upstream_timeout");
    assert!(of(&events, "message.continued").is_empty());
    assert_eq!(h.upstream.requests().len(), 1);

    // The answer's size limit.
    let h = harness("anthropic", vec![slow], &["--max-answer-bytes", "200"]).await;
    let events = h.ask(json!({"content": "tick"})).await;
    assert_eq!(completed(&events)["status"], "failed");
    assert!(completed(&events)["error"]["message"].as_str().unwrap().contains("too long"));
    assert!(of(&events, "message.continued").is_empty());
    assert_eq!(h.upstream.requests().len(), 1);

    // A request the provider finds wrong, mid-stream.
    let wrong = vec![Piece::Bytes(a::error("invalid_request_error", "bad"))];
    let h = harness("anthropic", vec![cut_after(&["so "], wrong, End::Clean)], &[]).await;
    let events = h.ask(json!({"content": "x"})).await;
    assert_eq!(completed(&events)["status"], "failed");
    assert_eq!(h.upstream.requests().len(), 1);

    // A cancel: the drop it causes is not a cut.
    let held = cut_after(&["before cancel"], vec![Piece::Pause(Duration::from_secs(30))], End::Drop);
    let h = harness("anthropic", vec![held, whole(&["never"])], &[]).await;
    let tab = crate::support::Sse::open(h.client.get(h.url("/events"))).await;
    let mut tab = tab;
    assert_eq!(h.client.post(h.url("/messages")).json(&json!({"content": "go"})).send().await.unwrap().status(), 202);
    while tab.next().await.unwrap().kind != "message.delta" {}
    assert_eq!(h.client.post(h.url("/cancel")).send().await.unwrap().status(), 202);
    let mut kinds = Vec::new();
    loop {
        let ev = tab.next().await.unwrap();
        kinds.push(ev.kind.clone());
        if ev.kind == "message.completed" {
            assert_eq!(ev.data["status"], "cancelled");
            break;
        }
    }
    assert!(!kinds.iter().any(|k| k == "message.continued"), "{kinds:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(h.upstream.requests().len(), 1);
}

#[actix_web::test]
async fn openai_compatible_servers_are_asked_with_the_partial_answer_as_a_prefill() {
    let cut = vec![Piece::Bytes(o::chunk(json!({"role": "assistant", "content": "half an "}), None))];
    let rest = vec![
        Piece::Bytes(o::chunk(json!({"content": "answer."}), None)),
        Piece::Bytes(o::chunk(json!({}), Some("stop"))),
        Piece::Bytes(o::done()),
    ];
    let replies = vec![Reply::Stream { pieces: cut, end: End::Drop }, Reply::Stream { pieces: rest, end: End::Clean }];
    let h = harness("openai", replies, &[]).await;
    let events = h.ask(json!({"content": "hola"})).await;
    assert_eq!(completed(&events)["status"], "complete");
    assert_eq!(of(&events, "message.continued")[0]["reason"], "connection_lost");
    assert_eq!(h.last_message().await["content"], "half an answer.");
    // The partial answer, its trailing space trimmed, as the last message.
    assert_eq!(sent(&h, 1).last().unwrap(), &json!({"role": "assistant", "content": "half an"}));
}

#[actix_web::test]
async fn continuations_can_be_turned_off() {
    let replies = vec![cut_after(&["only this"], vec![], End::Drop), whole(&["never"])];
    let h = harness("anthropic", replies, &["--continue-max-attempts", "0"]).await;
    let events = h.ask(json!({"content": "x"})).await;
    assert!(of(&events, "message.continued").is_empty());
    assert_eq!(completed(&events)["status"], "failed");
    let stored = h.last_message().await;
    assert_eq!((stored["content"].as_str(), stored["continuations"].as_u64()), (Some("only this"), Some(0)));
    assert_eq!(h.upstream.requests().len(), 1);
}

#[actix_web::test]
async fn the_ai_sdk_stream_of_a_continued_answer_is_one_text_part_that_finishes_normally() {
    use crate::chat::{parts, turn, UiStream};
    let replies = vec![cut_after(&["Half of ", "it"], vec![], End::Drop), whole(&[", and the rest."])];
    let h = harness("anthropic", replies, &[]).await;
    let resp = h.client.post(format!("{}/v1/projects/{}/chat", h.base, h.pid)).json(&turn(&h.tid, "go")).send();
    let chunks = UiStream::of(resp.await.unwrap()).rest().await;
    let kinds: Vec<&str> = chunks.iter().map(|c| c["type"].as_str().unwrap()).collect();
    assert!(!kinds.contains(&"error"), "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| **k == "text-start").count(), 1, "{kinds:?}");
    assert_eq!(chunks.last().unwrap()["finishReason"], "stop");
    assert_eq!(parts(&chunks), [("text".to_owned(), "Half of it, and the rest.".to_owned())]);
    assert_eq!(h.last_message().await["continuations"], 1);
}
