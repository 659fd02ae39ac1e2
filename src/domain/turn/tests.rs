//! The step logic's promises, for any order: each call is resolved once
//! (its first fitting answer), a repeat changes nothing, a different answer
//! is a conflict, and the step goes on exactly when every call is answered.

use proptest::prelude::*;
use serde_json::json;

use super::*;

fn tool(name: &str, approval: Approval) -> ToolDef {
    ToolDef {
        name: name.into(),
        description: None,
        input_schema: json!({"type": "object"}),
        approval,
        run: Run::Client,
    }
}

fn tools() -> Vec<ToolDef> {
    vec![tool("look", Approval::Never), tool("pay", Approval::Always)]
}

fn call_block(id: &str, name: &str, input: &str) -> Block {
    Block { id: Some(id.into()), name: Some(name.into()), text: input.into(), ..Block::new(BlockKind::ToolUse) }
}

#[test]
fn a_step_s_calls_wait_for_what_their_tool_says() {
    let blocks = vec![
        Block::text("let me see"),
        call_block("a", "look", r#"{"q": 1}"#),
        call_block("b", "pay", "{}"),
        call_block("c", "nope", "{}"),
        call_block("d", "look", r#"{"cut": "#),
        call_block("e", "look", ""),
    ];
    let calls = calls_of_step(&blocks, &tools());
    let states: Vec<_> = calls.iter().map(|c| c.state.clone()).collect();
    assert_eq!(states[0], CallState::NeedsResult { approved: false });
    assert_eq!(calls[0].input, json!({"q": 1}));
    assert_eq!(states[1], CallState::NeedsApproval);
    assert_eq!(
        states[2],
        CallState::Resolved { text: error_text(reason::UNKNOWN_TOOL), is_error: true, approved: None }
    );
    assert_eq!(
        states[3],
        CallState::Resolved { text: error_text(reason::INPUT_CUT_OFF), is_error: true, approved: None }
    );
    assert_eq!(calls[4].input, json!({}), "an empty input is an empty object");
    let pending: Vec<_> = calls.iter().filter_map(Call::pending).map(|p| (p.tool_call_id, p.needs)).collect();
    assert_eq!(pending, [("a".into(), Needs::Result), ("b".into(), Needs::Approval), ("e".into(), Needs::Result)]);
}

fn url_tool(name: &str, approval: Approval) -> ToolDef {
    ToolDef { run: Run::Url("https://tools.example.com/run".into()), ..tool(name, approval) }
}

#[test]
fn a_call_the_service_runs_waits_for_it_alone_and_is_answered_once() {
    let tools = vec![url_tool("fetch", Approval::Never), tool("look", Approval::Never)];
    let mut calls = calls_of_step(&[call_block("s", "fetch", "{}"), call_block("c", "look", "{}")], &tools);
    assert_eq!(calls[0].state, CallState::Runs { approved: false });
    assert_eq!(calls[0].pending(), None, "nobody else is asked for it");
    assert_eq!(to_run(&calls).map(|c| c.id.as_str()).collect::<Vec<_>>(), ["s"]);
    assert!(service_due(&calls), "the service has work on it");
    let posted = Answer::Result { output: Ok(json!(1)) };
    assert_eq!(answer(&mut calls, "s", &posted, &tools), Outcome::Mismatch(reason::RUN_BY_SERVICE));
    assert_eq!(
        answer(&mut calls, "s", &Answer::Decision { approved: true, reason: None }, &tools),
        Outcome::Mismatch(reason::NO_APPROVAL)
    );
    assert_eq!(ran(&mut calls, "s", &Ok(json!({"t": 21}))), Outcome::Resolved);
    assert_eq!(calls[0].state, CallState::Resolved { text: r#"{"t":21}"#.into(), is_error: false, approved: None });
    assert_eq!(ran(&mut calls, "s", &Ok(json!({"t": 21}))), Outcome::Unchanged, "a run again (at least once)");
    assert_eq!(ran(&mut calls, "s", &Err("down".into())), Outcome::Conflict);
    assert_eq!(ran(&mut calls, "c", &Ok(json!(1))), Outcome::Mismatch(reason::RUN_BY_SERVICE));
    assert_eq!(ran(&mut calls, "zz", &Ok(json!(1))), Outcome::Unknown);
    assert!(!service_due(&calls), "only the client's call waits now");
    assert!(to_run(&calls).next().is_none());
}

#[test]
fn a_call_the_service_runs_after_approval_runs_only_once_approved() {
    let tools = vec![url_tool("pay", Approval::Always)];
    let mut calls = calls_of_step(&[call_block("p", "pay", "{}"), call_block("q", "pay", "{}")], &tools);
    assert!(to_run(&calls).next().is_none(), "nothing runs before its approval");
    let yes = Answer::Decision { approved: true, reason: None };
    assert_eq!(answer(&mut calls, "p", &yes, &tools), Outcome::Resolved);
    assert_eq!(calls[0].state, CallState::Runs { approved: true });
    assert_eq!(answer(&mut calls, "p", &yes, &tools), Outcome::Unchanged, "a second tab's same decision");
    let no = Answer::Decision { approved: false, reason: None };
    assert_eq!(answer(&mut calls, "p", &no, &tools), Outcome::Conflict);
    assert_eq!(answer(&mut calls, "q", &no, &tools), Outcome::Resolved);
    assert_eq!(to_run(&calls).map(|c| c.id.as_str()).collect::<Vec<_>>(), ["p"], "a denied call never runs");
    assert_eq!(ran(&mut calls, "p", &Err("boom".into())), Outcome::Resolved);
    assert_eq!(calls[0].state, CallState::Resolved { text: error_text("boom"), is_error: true, approved: Some(true) });
    assert!(all_resolved(&calls));
}

#[test]
fn an_approval_then_a_result_or_a_denial() {
    let tools = tools();
    let mut calls = calls_of_step(&[call_block("p", "pay", "{}")], &tools);
    let result = Answer::Result { output: Ok(json!({"ok": true})) };
    assert_eq!(
        answer(&mut calls, "p", &result, &tools),
        Outcome::Mismatch(reason::NEEDS_APPROVAL),
        "approval comes first"
    );
    let yes = Answer::Decision { approved: true, reason: None };
    assert_eq!(answer(&mut calls, "p", &yes, &tools), Outcome::Resolved);
    assert_eq!(calls[0].pending().map(|p| p.needs), Some(Needs::Result), "approved: its result is awaited");
    assert_eq!(answer(&mut calls, "p", &yes, &tools), Outcome::Unchanged);
    let no = Answer::Decision { approved: false, reason: None };
    assert_eq!(answer(&mut calls, "p", &no, &tools), Outcome::Conflict);
    assert_eq!(answer(&mut calls, "p", &result, &tools), Outcome::Resolved);
    assert!(all_resolved(&calls));
    assert_eq!(answer(&mut calls, "p", &yes, &tools), Outcome::Unchanged, "the decision still stands");
    assert_eq!(answer(&mut calls, "p", &result, &tools), Outcome::Unchanged);

    let mut denied = calls_of_step(&[call_block("q", "pay", "{}")], &tools);
    let no = Answer::Decision { approved: false, reason: Some("too much".into()) };
    assert_eq!(answer(&mut denied, "q", &no, &tools), Outcome::Resolved);
    let blocks = result_blocks(&denied);
    assert_eq!((blocks[0].is_error, blocks[0].text.as_str()), (true, r#""denied by the user: too much""#));
    assert_eq!(answer(&mut denied, "q", &result, &tools), Outcome::Conflict, "no result for a denied call");
    assert_eq!(answer(&mut denied, "zzz", &result, &tools), Outcome::Unknown);
}

#[test]
fn what_is_left_is_answered_by_the_service() {
    let tools = tools();
    let mut calls = calls_of_step(&[call_block("a", "look", "{}"), call_block("b", "pay", "{}")], &tools);
    answer(&mut calls, "a", &Answer::Result { output: Err("boom".into()) }, &tools);
    resolve_rest(&mut calls, reason::CANCELLED);
    let blocks = result_blocks(&calls);
    assert_eq!(blocks.len(), 2, "every tool_use has its tool_result");
    assert_eq!(blocks[0].text, r#""boom""#);
    assert_eq!(blocks[1].text, r#""cancelled""#);
    assert_eq!(blocks[1].tool_use_id.as_deref(), Some("b"));
}

#[test]
fn steps_are_counted_by_their_results() {
    let mut blocks = vec![Block::text("a"), call_block("x", "look", "{}")];
    assert_eq!(step_start(&blocks), 0);
    blocks.push(Block::tool_result("x", "1".into(), false));
    assert_eq!(step_start(&blocks), 3);
    blocks.push(Block::text("b"));
    blocks.push(call_block("y", "look", "{}"));
    blocks.push(Block::tool_result("y", "2".into(), false));
    blocks.push(Block::text("c"));
    let steps: Vec<_> = (0..blocks.len()).map(|i| step_of(&blocks, i)).collect();
    assert_eq!(steps, [1, 1, 1, 2, 2, 2, 3]);
    blocks.push(call_block("z", "look", "{}"));
    blocks.push(Block::tool_result("z", "3".into(), false));
    assert_eq!(step_of(&blocks, blocks.len()), 4, "the step to come after the last results");
}

/// An answer posted for call `i` of four: a result (one of two outputs)
/// or a decision.
#[test]
fn every_call_goes_back_to_the_model_with_a_result() {
    let result =
        |id: &str| Block { tool_use_id: Some(id.into()), text: "1".into(), ..Block::new(BlockKind::ToolResult) };
    // Step 1: two calls, one answered; step 2: a call its answer never got
    // to (cut by a crash, or a thread offered no tools).
    let blocks = vec![
        call_block("a", "look", "{}"),
        call_block("b", "look", "{}"),
        result("a"),
        Block::text("and"),
        call_block("c", "look", "{}"),
    ];
    let turns = as_turns(crate::domain::Role::Assistant, &blocks);
    type Shape = Vec<(crate::domain::Role, Vec<(BlockKind, Option<String>, bool)>)>;
    let shape: Shape = turns
        .iter()
        .map(|(role, blocks)| {
            (*role, blocks.iter().map(|b| (b.kind, b.tool_use_id.clone().or(b.id.clone()), b.is_error)).collect())
        })
        .collect();
    use crate::domain::Role::{Assistant, User};
    use BlockKind::{Text, ToolResult, ToolUse};
    assert_eq!(
        shape,
        [
            (Assistant, vec![(ToolUse, Some("a".into()), false), (ToolUse, Some("b".into()), false)]),
            (User, vec![(ToolResult, Some("a".into()), false), (ToolResult, Some("b".into()), true)]),
            (Assistant, vec![(Text, None, false), (ToolUse, Some("c".into()), false)]),
            (User, vec![(ToolResult, Some("c".into()), true)]),
        ]
    );
    assert_eq!(turns[3].1[0].text, error_text(reason::STEP_CUT));
}

fn any_answer() -> impl Strategy<Value = (usize, Answer)> {
    let result = prop_oneof![Just(Ok(json!(1))), Just(Ok(json!(2))), Just(Err("no".to_owned()))]
        .prop_map(|output| Answer::Result { output });
    let decision = any::<bool>().prop_map(|approved| Answer::Decision { approved, reason: None });
    (0..4usize, prop_oneof![result, decision])
}

proptest! {
    /// Whatever arrives, in any order and however often: each call ends as
    /// its first fitting answers made it, later answers report `Unchanged`
    /// exactly when they repeat what stands, and the step is ready exactly
    /// when every call is answered.
    #[test]
    fn each_call_is_resolved_once_whatever_arrives(answers in proptest::collection::vec(any_answer(), 0..40)) {
        let tools = tools();
        let blocks = [
            call_block("c0", "look", "{}"),
            call_block("c1", "pay", "{}"),
            call_block("c2", "look", "{}"),
            call_block("c3", "pay", "{}"),
        ];
        let mut calls = calls_of_step(&blocks, &tools);
        let mut resolved_at: Vec<Option<CallState>> = vec![None; 4];
        for (i, a) in &answers {
            let before = calls[*i].clone();
            let outcome = answer(&mut calls, &format!("c{i}"), a, &tools);
            match outcome {
                Outcome::Resolved => prop_assert_ne!(&before, &calls[*i], "a resolution changes its call"),
                _ => prop_assert_eq!(&before, &calls[*i], "nothing else changes anything"),
            }
            if let (None, CallState::Resolved { .. }) = (&resolved_at[*i], &calls[*i].state) {
                resolved_at[*i] = Some(calls[*i].state.clone());
            }
            if let Some(first) = &resolved_at[*i] {
                prop_assert_eq!(first, &calls[*i].state, "once resolved, a call never changes");
            }
        }
        prop_assert_eq!(all_resolved(&calls), resolved_at.iter().all(Option::is_some));
        prop_assert_eq!(result_blocks(&calls).len(), resolved_at.iter().filter(|r| r.is_some()).count());
    }
}
