//! A chat request that continues an answer, as pure decisions. The AI
//! SDK's client answers an answer's calls in the answer's own UI message
//! (`addToolOutput`: a tool part `output-available` or `output-error`;
//! `addToolApprovalResponse`: `approval-responded`) and sends the chat
//! with that message last. Such a request:
//!
//! - answers (`answers`) the calls the answer awaits, and only those, with
//!   what the client's parts hold (the thread actor resolves them once:
//!   another tab may have won);
//! - streams the same UI message on from where its client was
//!   (`resumes_at`): the end of the step whose calls it knows last;
//! - writes first (`prefix`) `start` with the answer's id, the decision
//!   that holds for each call its client decided on (its own, or the one
//!   that won), and each approved call that now awaits its client's
//!   result, whole, so that the client runs it (`onToolCall`).

use bytes::Bytes;

use super::{
    chat_request::{UiMessage, UiPart},
    cursor::Cursor,
    event::position_before,
    turn::{self, Answer, CallState},
    ui_stream, BlockKind, Message, Needs, PendingCall,
};

/// The largest reason a decision may give (as on `POST …/approvals`).
pub const MAX_REASON_BYTES: usize = 2000;

/// The parts of `message` for call `id`.
fn part<'a>(message: &'a UiMessage, id: &str) -> Option<&'a UiPart> {
    message.parts.iter().rev().find(|p| p.call() == Some(id))
}

/// What `message` answers of the calls that wait (`pending`): a result
/// for a call awaiting one, a decision for a call awaiting approval;
/// parts in any other state answer nothing.
pub fn answers(message: &UiMessage, pending: &[PendingCall]) -> Vec<(String, Answer)> {
    let mut out = Vec::new();
    for call in pending {
        let Some(part) = part(message, &call.tool_call_id) else { continue };
        let answer = match (call.needs, part.state.as_deref()) {
            (Needs::Result, Some("output-available")) => Answer::Result { output: Ok(part.output.clone()) },
            (Needs::Result, Some("output-error")) => {
                Answer::Result { output: Err(part.error_text.clone().unwrap_or_default()) }
            }
            (Needs::Approval, Some("approval-responded")) => {
                let Some(approval) = part.approval.as_ref() else { continue };
                let Some(approved) = approval.approved else { continue };
                Answer::Decision { approved, reason: approval.reason.clone() }
            }
            _ => continue,
        };
        out.push((call.tool_call_id.clone(), answer));
    }
    out
}

/// Where the client of `message` was in `answer`: right after the last
/// block of the step whose calls it knows last (its results, or the
/// answer's end while it awaits, follow). `None` if it knows none.
pub fn resumes_at(answer: &Message, message: &UiMessage) -> Option<Cursor> {
    let known = |id: Option<&str>| id.is_some_and(|id| message.parts.iter().any(|p| p.call() == Some(id)));
    let last = answer.blocks.iter().rposition(|b| b.kind == BlockKind::ToolUse && known(b.id.as_deref()))?;
    let end = answer.blocks[last..]
        .iter()
        .position(|b| b.kind == BlockKind::ToolResult)
        .map_or(answer.blocks.len(), |i| last + i);
    Some(position_before(answer, end))
}

/// The decision a person made on call `id` of `answer`, if one was made:
/// its call's state while the answer holds that step's calls, else its
/// result (a call asked for approval and answered otherwise than denied
/// was approved).
fn decision(answer: &Message, id: &str) -> Option<bool> {
    if let Some(call) = answer.calls.iter().find(|c| c.id == id) {
        return match &call.state {
            CallState::Resolved { approved, .. } => *approved,
            CallState::NeedsResult { approved: true } | CallState::Runs { approved: true } => Some(true),
            CallState::NeedsResult { approved: false }
            | CallState::Runs { approved: false }
            | CallState::NeedsApproval => None,
        };
    }
    let result =
        answer.blocks.iter().find(|b| b.kind == BlockKind::ToolResult && b.tool_use_id.as_deref() == Some(id))?;
    let denied = result.is_error
        && serde_json::from_str::<String>(&result.text).is_ok_and(|t| t.starts_with(turn::reason::DENIED));
    Some(!denied)
}

/// The chunks a continuation writes before the answer's (see the module).
pub fn prefix(answer: &Message, message: &UiMessage) -> Vec<Bytes> {
    let mut out = vec![ui_stream::start(&answer.id.to_string())];
    let decided = message.parts.iter().filter(|p| p.state.as_deref() == Some("approval-responded"));
    for id in decided.filter_map(UiPart::call) {
        if let Some(approved) = decision(answer, id) {
            out.push(ui_stream::approval_response(id, approved));
        }
    }
    if answer.is_awaiting() {
        for call in &answer.calls {
            let approved = call.state == CallState::NeedsResult { approved: true };
            let run = part(message, &call.id)
                .is_some_and(|p| !matches!(p.state.as_deref(), Some("output-available" | "output-error")));
            if approved && run {
                out.push(ui_stream::input_available(&call.id, &call.name, call.input.clone()));
            }
        }
    }
    out
}

/// Whether `answers` keep the limits of the tools routes: a reason of at
/// most `MAX_REASON_BYTES`, with no NUL.
pub fn check(answers: &[(String, Answer)]) -> Result<(), super::input::InputError> {
    for (_, answer) in answers {
        if let Answer::Decision { reason: Some(reason), .. } = answer {
            super::input::text("reason", reason, MAX_REASON_BYTES)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
