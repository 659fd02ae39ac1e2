//! Answers in several steps: what the thread actor does when a step ends
//! asking for tools (the answer awaits input, or goes on at once), when a
//! result or a decision is posted (`Resolve`: exactly once, stored before
//! it is acknowledged), and when every call of the step is answered (the
//! next step streams into the same message). What each call waits for and
//! what an answer does to it is `domain::turn`; this file carries it out.
//!
//! While an answer awaits input it holds no generation and, in cluster
//! mode, no lease: the thread is busy because its last message says so.

use std::time::Instant;

use super::*;
use crate::domain::turn::{self, Answer, Call, Outcome};

/// Results or decisions posted for the awaiting answer's calls.
#[derive(Message)]
#[rtype(result = "Result<Resolution, ResolveError>")]
pub struct Resolve {
    /// The project the caller named (another project's thread is 404).
    pub project_id: Option<Uuid>,
    pub answers: Vec<(String, Answer)>,
}

/// What a `Resolve` did: which calls it answered, which already had that
/// very answer.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Resolution {
    pub message_id: Uuid,
    pub resolved: Vec<String>,
    pub unchanged: Vec<String>,
}

/// Why a `Resolve` changed nothing.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ResolveError {
    #[error(transparent)]
    Thread(#[from] ThreadError),
    #[error("no answer of this thread awaits input")]
    NotAwaiting,
    #[error("tool call {0} is not one the answer awaits")]
    UnknownCall(String),
    #[error("tool call {0} already has a different answer")]
    AlreadyResolved(String),
    #[error("tool call {0} does not wait for this: {1}")]
    Mismatch(String, &'static str),
}

/// An awaiting answer whose calls are all answered goes on (after a
/// restart, or told by another node).
#[derive(Message)]
#[rtype(result = "()")]
pub struct ContinueAnswer;

impl ThreadActor {
    /// The tools a step of this thread's answers may call.
    fn tools(&self) -> Vec<crate::domain::tools::ToolDef> {
        self.found().map(|(t, _)| t.tools.clone()).unwrap_or_default()
    }

    /// A step ended normally. If it asked for tools, the answer awaits
    /// input or goes on (then `true`); otherwise it is complete (`false`).
    pub(super) fn on_step_end(&mut self, ctx: &mut Context<Self>) -> bool {
        let tools = self.tools();
        let Some(conversation) = self.conversation() else { return false };
        let Some(mut calls) = conversation.step_calls(&tools) else { return false };
        let steps = conversation.steps();
        if steps >= self.deps.settings.limits.max_steps.max(1) {
            // The last step this answer may take asked for more: its calls
            // are answered so, and the answer ends.
            turn::resolve_rest(&mut calls, turn::reason::MAX_STEPS);
            self.append_results(&calls);
            if let Some(conversation) = self.conversation_mut() {
                conversation.set_stop_reason("max_steps");
            }
            self.finish(MessageStatus::Complete, None, ctx);
            return true;
        }
        if turn::all_resolved(&calls) {
            self.next_step(calls, ctx);
        } else {
            self.await_input(calls, ctx);
        }
        true
    }

    /// The results of `calls` become the running answer's next blocks.
    fn append_results(&mut self, calls: &[Call]) {
        let Some(id) = self.conversation().and_then(|c| c.running().or(c.awaiting()).map(|m| m.id)) else { return };
        let events = self.conversation_mut().and_then(|c| c.resume_with(id, calls)).unwrap_or_default();
        self.dirty = true;
        self.publish(&events, Some(id));
    }

    /// Every call is answered: their results go into the answer, and the
    /// next step streams into it.
    fn next_step(&mut self, calls: Vec<Call>, ctx: &mut Context<Self>) {
        let Some((thread, conversation)) = self.found().ok() else { return };
        let Some(answer) = conversation.running().or(conversation.awaiting()) else { return };
        let (id, project) = (answer.id, thread.project_id);
        let model = answer.model.clone().unwrap_or_else(|| self.deps.provider.default_model().to_owned());
        let max_tokens = self.generation.as_ref().map_or(self.deps.settings.provider.max_tokens, |g| g.max_tokens);
        // The step that ended leaves its generation (its stream is over).
        if let Some(generation) = self.generation.take() {
            ctx.cancel_future(generation.stream);
            ctx.cancel_future(generation.checkpoints);
        }
        self.append_results(&calls);
        if let Some(step) = self.conversation().and_then(Conversation::step_begins) {
            self.publish(&[step], Some(id));
        }
        let slot = self.deps.capacity.continue_generation(project);
        if let Err(e) = self.start_stream(model, max_tokens, id, slot, Instant::now(), ctx) {
            tracing::warn!(thread_id = %self.thread_id, message_id = %id, error.message = %e, "the next step could not start");
            return;
        }
        tracing::info!(thread_id = %self.thread_id, message_id = %id, "next step started");
    }

    /// Some calls wait: the answer awaits input. Its generation ends (and
    /// its lease is let go once the state is stored), and every tab is told
    /// what waits.
    fn await_input(&mut self, calls: Vec<Call>, ctx: &mut Context<Self>) {
        if let Some(generation) = self.generation.take() {
            ctx.cancel_future(generation.stream);
            ctx.cancel_future(generation.checkpoints);
            self.set_generating(false);
        }
        let Some((message, _)) = self.conversation_mut().and_then(|c| c.await_input(calls)) else { return };
        self.dirty = false;
        // Tabs are told what waits once it is stored: a call they see can
        // be answered, from any node, after any restart.
        self.store_state(message.clone(), ctx);
        tracing::info!(thread_id = %self.thread_id, message_id = %message.id, pending = message.pending().len(),
            "the answer awaits input");
        self.touch(ctx);
    }

    /// Stores an answer's state between steps: fenced, and the lease let go
    /// after, in cluster mode.
    fn store_state(&mut self, message: Message, ctx: &mut Context<Self>) {
        if self.fence().is_some() {
            // `FinalWritten` announces it.
            return self.write_final_then_release(message, ctx);
        }
        let (ack, done) = oneshot::channel();
        let id = message.id;
        self.deps.persistence.do_send(Write { ops: vec![WriteOp::Update(message)], ack: Some(ack) });
        ctx.spawn(done.into_actor(self).map(move |written, act, _| {
            if !matches!(written, Ok(Ok(()))) {
                tracing::warn!(thread_id = %act.thread_id, message_id = %id,
                    "an answer awaiting input could not be stored; its final write will carry it");
            }
            act.announce_awaiting(id);
        }));
    }

    /// Tells every tab what the answer `id` awaits, if it still does.
    pub(super) fn announce_awaiting(&mut self, id: Uuid) {
        let Some(awaiting) = self.conversation().and_then(Conversation::awaiting).filter(|m| m.id == id) else {
            return;
        };
        let event = Event::awaiting(awaiting);
        self.publish(&[event], Some(id));
    }

    /// Cancels an answer that awaits input: what still waits is answered
    /// `cancelled`, and the answer ends so.
    pub(super) fn cancel_awaiting(&mut self, ctx: &mut Context<Self>) -> Option<Uuid> {
        let message = self.conversation()?.awaiting()?.clone();
        let mut calls = message.calls.clone();
        turn::resolve_rest(&mut calls, turn::reason::CANCELLED);
        self.append_results(&calls);
        self.finish(MessageStatus::Cancelled, None, ctx);
        Some(message.id)
    }
}

impl Handler<Resolve> for ThreadActor {
    /// Atomic: the actor handles nothing else until the answers are
    /// stored, so two racing requests see each other (exactly once).
    type Result = AtomicResponse<Self, Result<Resolution, ResolveError>>;

    fn handle(&mut self, msg: Resolve, _: &mut Context<Self>) -> Self::Result {
        let checked = self.check_resolve(&msg);
        let (message, calls, report) = match checked {
            Ok(Checked::Done(report)) => return AtomicResponse::new(Box::pin(actix::fut::ready(Ok(report)))),
            Ok(Checked::Apply { message, calls, report }) => (message, calls, report),
            Err(e) => return AtomicResponse::new(Box::pin(actix::fut::ready(Err(e)))),
        };
        // Stored before it is acknowledged: a result posted survives a
        // crash (and continues the answer after the restart).
        let mut stored = (*message).clone();
        stored.calls = calls.clone();
        let (ack, done) = oneshot::channel();
        self.deps.persistence.do_send(Write { ops: vec![self.fenced(WriteOp::Update(stored))], ack: Some(ack) });
        AtomicResponse::new(Box::pin(done.into_actor(self).map(move |written, act, ctx| {
            if !matches!(written, Ok(Ok(()))) {
                return Err(ResolveError::Thread(ThreadError::Unavailable));
            }
            act.resolved(&message, calls, &report.resolved, ctx);
            Ok(report)
        })))
    }
}

/// What a `Resolve` comes to before anything is written.
enum Checked {
    /// Nothing to change: every answer was given already.
    Done(Resolution),
    /// `calls` are the answer's calls once these answers are applied.
    Apply { message: Box<Message>, calls: Vec<Call>, report: Resolution },
}

impl ThreadActor {
    /// Applies the answers to a copy of the awaiting answer's calls, all or
    /// none: an unknown call, a conflict or a mismatch refuses the whole
    /// request.
    fn check_resolve(&self, msg: &Resolve) -> Result<Checked, ResolveError> {
        let (thread, conversation) = self.found()?;
        if msg.project_id.is_some_and(|p| p != thread.project_id) {
            return Err(ThreadError::NotFound.into());
        }
        let Some(message) = conversation.awaiting() else {
            return self.check_settled(msg);
        };
        let mut calls = message.calls.clone();
        let mut report = Resolution { message_id: message.id, resolved: Vec::new(), unchanged: Vec::new() };
        for (id, answer) in &msg.answers {
            match turn::answer(&mut calls, id, answer, &thread.tools) {
                Outcome::Resolved => report.resolved.push(id.clone()),
                Outcome::Unchanged => report.unchanged.push(id.clone()),
                Outcome::Conflict => return Err(ResolveError::AlreadyResolved(id.clone())),
                Outcome::Unknown => return Err(ResolveError::UnknownCall(id.clone())),
                Outcome::Mismatch => {
                    let why = match answer {
                        Answer::Result { .. } => "it waits for a person's approval first",
                        Answer::Decision { .. } => "it needs no approval",
                    };
                    return Err(ResolveError::Mismatch(id.clone(), why));
                }
            }
        }
        if report.resolved.is_empty() {
            return Ok(Checked::Done(report));
        }
        Ok(Checked::Apply { message: Box::new(message.clone()), calls, report })
    }

    /// No answer awaits: answers the answer moved on from are no change
    /// when they are what it got (its results are blocks now).
    fn check_settled(&self, msg: &Resolve) -> Result<Checked, ResolveError> {
        let (_, conversation) = self.found()?;
        let answer = conversation.messages().iter().rev().find(|m| m.role == crate::domain::Role::Assistant);
        let Some(answer) = answer else { return Err(ResolveError::NotAwaiting) };
        let mut report = Resolution { message_id: answer.id, resolved: Vec::new(), unchanged: Vec::new() };
        for (id, given) in &msg.answers {
            let block = answer.blocks.iter().find(|b| b.tool_use_id.as_deref() == Some(id.as_str()));
            let Some(block) = block else { return Err(ResolveError::NotAwaiting) };
            let same = match given {
                Answer::Result { output: Ok(value) } => {
                    !block.is_error && serde_json::from_str::<serde_json::Value>(&block.text).is_ok_and(|v| &v == value)
                }
                Answer::Result { output: Err(e) } => block.is_error && block.text == turn::error_text(e),
                Answer::Decision { approved, .. } => {
                    let denied = block.is_error && block.text.starts_with(&format!("\"{}", turn::reason::DENIED));
                    *approved != denied
                }
            };
            match same {
                true => report.unchanged.push(id.clone()),
                false => return Err(ResolveError::AlreadyResolved(id.clone())),
            }
        }
        Ok(Checked::Done(report))
    }

    /// Answers are stored: every tab hears of them; an approved call that
    /// now needs its result is awaited again; once every call is answered
    /// the answer goes on.
    fn resolved(&mut self, message: &Message, calls: Vec<Call>, ids: &[String], ctx: &mut Context<Self>) {
        let Some(conversation) = self.conversation_mut() else { return };
        conversation.set_calls(message.id, calls.clone());
        let thread_id = self.thread_id;
        let cursor = Some(crate::domain::event::position_before(message, message.blocks.len()));
        let mut events = Vec::new();
        for id in ids {
            let (Some(before), Some(now)) =
                (message.calls.iter().find(|c| &c.id == id), calls.iter().find(|c| &c.id == id))
            else {
                continue;
            };
            let Some(pending) = before.pending() else { continue };
            let (approved, is_error) = match &now.state {
                turn::CallState::Resolved { is_error, approved, .. } => (*approved, Some(*is_error)),
                turn::CallState::NeedsResult { approved } => (Some(*approved), None),
                turn::CallState::NeedsApproval => (None, None),
            };
            let is_error = if pending.needs == crate::domain::Needs::Approval { None } else { is_error };
            events.push(Event::ToolResolved {
                thread_id,
                cursor,
                message_id: message.id,
                tool_call_id: id.clone(),
                needs: pending.needs,
                approved,
                is_error,
            });
        }
        // An approved client call now waits for its result: said again.
        let was_approval =
            |id: &String| message.calls.iter().any(|c| &c.id == id && c.state == turn::CallState::NeedsApproval);
        let now_waits =
            |id: &String| calls.iter().any(|c| &c.id == id && matches!(c.state, turn::CallState::NeedsResult { .. }));
        if ids.iter().any(|id| was_approval(id) && now_waits(id)) {
            if let Some(awaiting) = self.conversation().and_then(Conversation::awaiting) {
                events.push(Event::awaiting(awaiting));
            }
        }
        self.publish(&events, Some(message.id));
        if turn::all_resolved(&calls) {
            self.next_step(calls, ctx);
        }
    }
}

impl Handler<ContinueAnswer> for ThreadActor {
    type Result = ();

    fn handle(&mut self, _: ContinueAnswer, ctx: &mut Context<Self>) {
        let Some(awaiting) = self.conversation().and_then(Conversation::awaiting) else { return };
        if self.generation.is_none() && turn::all_resolved(&awaiting.calls) {
            let calls = awaiting.calls.clone();
            tracing::info!(thread_id = %self.thread_id, message_id = %awaiting.id, "an answer whose calls were all answered goes on");
            self.next_step(calls, ctx);
        }
    }
}
