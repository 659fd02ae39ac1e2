//! Answers in several steps, as pure data: what the calls of a step that
//! ended wait for, what a result or a decision does to them (exactly once:
//! the same again changes nothing, a different one is refused), and when
//! the next step starts. No I/O: the thread actor and the store carry out
//! what this says, on whichever node, and the property tests below hold
//! it to its promises for any order of results, duplicates and races.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    block::{Block, BlockKind},
    tools::{Approval, Run, ToolDef},
};

/// One call of a step, and what it waits for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Call {
    pub id: String,
    pub name: String,
    /// The input, parsed (an input that is not a JSON object is `{}`, and
    /// its call was answered with an error at once).
    pub input: Value,
    pub state: CallState,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum CallState {
    /// A person must approve it first.
    NeedsApproval,
    /// Its result is awaited (a client tool; `approved`: a person
    /// approved it first).
    NeedsResult {
        #[serde(default)]
        approved: bool,
    },
    /// The service runs it (a tool at a URL) and awaits its own result;
    /// nobody else may answer it. Stored so: a node that takes the answer
    /// over after its owner died runs it again.
    Runs {
        #[serde(default)]
        approved: bool,
    },
    /// Answered: the text of its `tool_result` block.
    Resolved {
        text: String,
        is_error: bool,
        /// Set when a person decided on it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        approved: Option<bool>,
    },
}

impl Call {
    pub fn is_resolved(&self) -> bool {
        matches!(self.state, CallState::Resolved { .. })
    }

    /// The contract's view of it while it waits.
    pub fn pending(&self) -> Option<PendingCall> {
        let needs = match self.state {
            CallState::NeedsApproval => Needs::Approval,
            CallState::NeedsResult { .. } => Needs::Result,
            // Not the client's to answer: it is not pending for anyone.
            CallState::Runs { .. } | CallState::Resolved { .. } => return None,
        };
        Some(PendingCall { tool_call_id: self.id.clone(), name: self.name.clone(), input: self.input.clone(), needs })
    }
}

/// The error results the service gives calls itself.
pub mod reason {
    pub const UNKNOWN_TOOL: &str = "unknown tool";
    pub const INPUT_CUT_OFF: &str = "input cut off";
    pub const DENIED: &str = "denied by the user";
    pub const CANCELLED: &str = "cancelled";
    pub const MAX_STEPS: &str = "max_steps";
    /// The step was cut (its model call failed, or its node stopped).
    pub const STEP_CUT: &str = "the answer was cut off";
    /// A call approved whose tool is gone from the answer's tools.
    pub const NOT_RUNNABLE: &str = "this tool is run by the service, which cannot run it";
    /// A client posted a result for a call the service runs.
    pub const RUN_BY_SERVICE: &str = "it is run by the service";
    pub const NEEDS_APPROVAL: &str = "it waits for a person's approval first";
    pub const NO_APPROVAL: &str = "it needs no approval";
}

/// An error result's text: the reason as a JSON string.
pub fn error_text(reason: &str) -> String {
    Value::String(reason.to_owned()).to_string()
}

/// The calls of the step that ended with `blocks` (the message's blocks
/// from the step's first), given the tools it was offered. A call to no
/// tool of those, or whose input is not a JSON object (cut short), is
/// answered with an error at once; the others wait for what their tool
/// says.
pub fn calls_of_step(blocks: &[Block], tools: &[ToolDef]) -> Vec<Call> {
    blocks
        .iter()
        .filter(|b| b.kind == BlockKind::ToolUse)
        .map(|b| {
            let id = b.id.clone().unwrap_or_default();
            let name = b.name.clone().unwrap_or_default();
            let parsed = match b.text.trim() {
                "" => Some(Value::Object(Default::default())),
                text => serde_json::from_str::<Value>(text).ok().filter(Value::is_object),
            };
            let tool = tools.iter().find(|t| t.name == name);
            let (input, state) = match (parsed, tool) {
                (None, _) => (Value::Object(Default::default()), resolved_error(reason::INPUT_CUT_OFF)),
                (Some(input), None) => (input, resolved_error(reason::UNKNOWN_TOOL)),
                (Some(input), Some(tool)) => (input, waiting_for(tool)),
            };
            Call { id, name, input, state }
        })
        .collect()
}

fn resolved_error(reason: &str) -> CallState {
    CallState::Resolved { text: error_text(reason), is_error: true, approved: None }
}

/// What a call of `tool` waits for first.
fn waiting_for(tool: &ToolDef) -> CallState {
    match (tool.approval, &tool.run) {
        (Approval::Always, _) => CallState::NeedsApproval,
        (Approval::Never, Run::Client) => CallState::NeedsResult { approved: false },
        (Approval::Never, Run::Url(_) | Run::Mcp { .. }) => CallState::Runs { approved: false },
    }
}

/// What a call of `tool` waits for once a person approved it.
fn approved_waits_for(tool: Option<&ToolDef>) -> CallState {
    match tool.map(|t| &t.run) {
        Some(Run::Client) => CallState::NeedsResult { approved: true },
        Some(Run::Url(_) | Run::Mcp { .. }) => CallState::Runs { approved: true },
        None => CallState::Resolved { text: error_text(reason::NOT_RUNNABLE), is_error: true, approved: Some(true) },
    }
}

/// What is posted for one call.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// Its result: the output as JSON, or an error message.
    Result { output: Result<Value, String> },
    /// A person's decision.
    Decision { approved: bool, reason: Option<String> },
}

/// What an answer did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It resolved (or, for an approval, moved on) its call.
    Resolved,
    /// The call already had this very answer: nothing changed.
    Unchanged,
    /// The call already had a different answer (`tool_call_resolved`).
    Conflict,
    /// The answer does not fit what the call waits for (a result for a
    /// call awaiting approval or run by the service, a decision for one
    /// that needs none): why.
    Mismatch(&'static str),
    /// No such call in this step.
    Unknown,
}

/// Applies `answer` to call `id` of `calls`, once: the first answer wins;
/// the same again changes nothing; a different one is a conflict. An
/// approved call of a client tool then waits for its result; a denied one
/// is answered with an error the model sees.
pub fn answer(calls: &mut [Call], id: &str, answer: &Answer, tools: &[ToolDef]) -> Outcome {
    let Some(call) = calls.iter_mut().find(|c| c.id == id) else { return Outcome::Unknown };
    let tool = tools.iter().find(|t| t.name == call.name);
    let (next, outcome) = match (&call.state, answer) {
        (CallState::NeedsApproval, Answer::Decision { approved: false, reason: why }) => {
            let text = match why {
                Some(why) => format!("{}: {why}", reason::DENIED),
                None => reason::DENIED.to_owned(),
            };
            (
                Some(CallState::Resolved { text: error_text(&text), is_error: true, approved: Some(false) }),
                Outcome::Resolved,
            )
        }
        (CallState::NeedsApproval, Answer::Decision { approved: true, .. }) => {
            (Some(approved_waits_for(tool)), Outcome::Resolved)
        }
        (CallState::NeedsApproval, Answer::Result { .. }) => (None, Outcome::Mismatch(reason::NEEDS_APPROVAL)),
        (CallState::NeedsResult { approved }, Answer::Result { output }) => {
            (Some(result_state(output, approved.then_some(true))), Outcome::Resolved)
        }
        (CallState::Runs { .. }, Answer::Result { .. }) => (None, Outcome::Mismatch(reason::RUN_BY_SERVICE)),
        (
            CallState::NeedsResult { approved: true } | CallState::Runs { approved: true },
            Answer::Decision { approved: a, .. },
        ) => (None, if *a { Outcome::Unchanged } else { Outcome::Conflict }),
        (CallState::NeedsResult { approved: false } | CallState::Runs { approved: false }, Answer::Decision { .. }) => {
            (None, Outcome::Mismatch(reason::NO_APPROVAL))
        }
        (CallState::Resolved { approved, .. }, Answer::Decision { approved: a, .. }) => match approved {
            Some(was) if was == a => (None, Outcome::Unchanged),
            Some(_) => (None, Outcome::Conflict),
            None => (None, Outcome::Mismatch(reason::NO_APPROVAL)),
        },
        (state @ CallState::Resolved { approved, .. }, Answer::Result { output }) => {
            let same = *approved != Some(false) && result_state(output, *approved) == *state;
            (None, if same { Outcome::Unchanged } else { Outcome::Conflict })
        }
    };
    if let Some(next) = next {
        call.state = next;
    }
    outcome
}

/// The service's own result for call `id`, which it ran: the call is
/// answered if it still waits for the service (a call cancelled meanwhile,
/// or answered by an earlier run, keeps what it has: `Unchanged` or
/// `Conflict`).
pub fn ran(calls: &mut [Call], id: &str, output: &Result<Value, String>) -> Outcome {
    let Some(call) = calls.iter_mut().find(|c| c.id == id) else { return Outcome::Unknown };
    match &call.state {
        CallState::Runs { approved } => {
            call.state = result_state(output, approved.then_some(true));
            Outcome::Resolved
        }
        CallState::Resolved { text, is_error, .. } => {
            let same = matches!(result_state(output, None),
                CallState::Resolved { text: t, is_error: e, .. } if t == *text && e == *is_error);
            if same {
                Outcome::Unchanged
            } else {
                Outcome::Conflict
            }
        }
        _ => Outcome::Mismatch(reason::RUN_BY_SERVICE),
    }
}

/// The calls the service runs itself that wait for it.
pub fn to_run(calls: &[Call]) -> impl Iterator<Item = &Call> {
    calls.iter().filter(|c| matches!(c.state, CallState::Runs { .. }))
}

/// Whether the service has work on an awaiting answer with `calls`: every
/// call is answered (its next step is due) or a call waits for the service
/// to run it. Stored with the answer, so a node that finds it without an
/// owner (after a crash, or its owner's death) takes it on.
pub fn service_due(calls: &[Call]) -> bool {
    all_resolved(calls) || to_run(calls).next().is_some()
}

fn result_state(output: &Result<Value, String>, approved: Option<bool>) -> CallState {
    match output {
        Ok(value) => CallState::Resolved { text: value.to_string(), is_error: false, approved },
        Err(message) => CallState::Resolved { text: error_text(message), is_error: true, approved },
    }
}

/// Whether every call is answered: the next step may start.
pub fn all_resolved(calls: &[Call]) -> bool {
    calls.iter().all(Call::is_resolved)
}

/// Answers every call still waiting with the error `why` (a cancel, the
/// step limit): every `tool_use` gets its `tool_result`.
pub fn resolve_rest(calls: &mut [Call], why: &str) {
    for call in calls.iter_mut().filter(|c| !c.is_resolved()) {
        call.state = resolved_error(why);
    }
}

/// The `tool_result` blocks of answered calls, in the calls' order.
pub fn result_blocks(calls: &[Call]) -> Vec<Block> {
    calls
        .iter()
        .filter_map(|c| match &c.state {
            CallState::Resolved { text, is_error, .. } => Some(Block::tool_result(&c.id, text.clone(), *is_error)),
            _ => None,
        })
        .collect()
}

/// A message's blocks as the turns a model is told: an answer in several
/// steps is its assistant's blocks up to each run of `tool_result` blocks,
/// which go back as the user's turn (as both Anthropic's and
/// OpenAI-compatible APIs want them), then the next step's. A message
/// with no results is one turn.
///
/// Every call goes back with a result: a call left without one (its answer
/// ended before it was answered, say by a crash, or in a thread offered no
/// tools) gets an error result, as both APIs refuse a call unanswered.
pub fn as_turns(role: super::Role, blocks: &[Block]) -> Vec<(super::Role, Vec<Block>)> {
    let mut turns: Vec<(super::Role, Vec<Block>)> = Vec::new();
    for block in &with_every_result(blocks) {
        let role = if block.kind == BlockKind::ToolResult { super::Role::User } else { role };
        match turns.last_mut() {
            Some((last, blocks)) if *last == role => blocks.push(block.clone()),
            _ => turns.push((role, vec![block.clone()])),
        }
    }
    turns
}

/// `blocks` with an error result after each step's last result (or the
/// step's end) for each call of the step that has none.
fn with_every_result(blocks: &[Block]) -> Vec<Block> {
    let mut out = Vec::with_capacity(blocks.len());
    let mut open: Vec<String> = Vec::new();
    let missing = |open: &mut Vec<String>| {
        open.drain(..)
            .map(|id| Block {
                tool_use_id: Some(id),
                is_error: true,
                ..Block { text: error_text(reason::STEP_CUT), ..Block::new(BlockKind::ToolResult) }
            })
            .collect::<Vec<_>>()
    };
    for (i, block) in blocks.iter().enumerate() {
        match block.kind {
            BlockKind::ToolUse => open.extend(block.id.clone()),
            BlockKind::ToolResult => open.retain(|id| block.tool_use_id.as_ref() != Some(id)),
            _ => {}
        }
        out.push(block.clone());
        let step_ends = block.kind == BlockKind::ToolResult
            && blocks.get(i + 1).is_none_or(|next| next.kind != BlockKind::ToolResult);
        if step_ends {
            out.extend(missing(&mut open));
        }
    }
    out.extend(missing(&mut open));
    out
}

/// The index of the first block of the last step of an answer with
/// `blocks`: a step begins at block 0 and after each run of
/// `tool_result` blocks.
pub fn step_start(blocks: &[Block]) -> usize {
    blocks.iter().rposition(|b| b.kind == BlockKind::ToolResult).map_or(0, |i| i + 1)
}

/// Which step (from 1) the block at `index` belongs to (`index` may be
/// the number of blocks: the block to come): one more than the runs of
/// `tool_result` blocks before it.
pub fn step_of(blocks: &[Block], index: usize) -> usize {
    let index = index.min(blocks.len());
    1 + (1..=index)
        .filter(|&i| {
            blocks[i - 1].kind == BlockKind::ToolResult && blocks.get(i).is_none_or(|b| b.kind != BlockKind::ToolResult)
        })
        .count()
}

/// A call that waits (`Message::pending`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PendingCall {
    pub tool_call_id: String,
    pub name: String,
    /// The call's input, parsed.
    #[schema(value_type = Object)]
    pub input: serde_json::Value,
    pub needs: Needs,
}

/// What a pending call waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Needs {
    /// A person's decision (`approvals`).
    Approval,
    /// Its result, from a tab or the application (`tool-results`).
    Result,
}

#[cfg(test)]
mod tests;
