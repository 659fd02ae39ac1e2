//! Answering the calls an answer awaits (`Resolve`): results and
//! decisions posted from any tab or node. Each call is answered exactly
//! once: the answers are checked against the calls this actor holds,
//! written, and acknowledged only once stored; the same answer again is no
//! change, a different one a conflict.
//!
//! - One node: the answers apply at once (so a racing request sees them),
//!   every tab hears of them and, when nothing waits any more, the next
//!   step starts while their write commits, as a question's answer starts
//!   while the question commits: the commit is not in the path of the next
//!   step's first delta. The request is answered after the commit (503 if
//!   it failed: the answer goes on, its next write carries the answers,
//!   and the same answers posted again are no change). While the database
//!   is known to be down, the write comes first and nothing else is
//!   handled meanwhile.
//! - Cluster mode: the node that resolves takes the thread's lease through
//!   the same fenced path as a question, reads the answer again from the
//!   database, and writes under the lease; if every call is answered it
//!   runs the next step under that lease, else it lets the lease go. A node
//!   that finds the lease held judges the request by what is stored (it is
//!   often already answered) and otherwise waits for the holder to let go.
//!
//! What an answer does to a call is `domain::turn`; what follows once all
//! are answered is `thread/steps.rs`.

use super::{lease::ForAnswer, *};
use crate::domain::{
    turn::{self, Answer, Call, CallState, Outcome},
    Needs,
};

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

impl ResolveError {
    /// Its code in the contract.
    pub fn code(&self) -> crate::domain::codes::Code {
        use crate::domain::codes::Code;
        match self {
            ResolveError::Thread(e) => e.code(),
            ResolveError::NotAwaiting | ResolveError::Mismatch(..) => Code::NotAwaiting,
            ResolveError::UnknownCall(_) => Code::NotFound,
            ResolveError::AlreadyResolved(_) => Code::ToolCallResolved,
        }
    }
}

/// Cluster mode: how many times a request finds the lease held (each
/// time waiting for its holder to let go) before it gives up, 503.
const ATTEMPTS: u32 = 3;

type Resolving = ResponseActFuture<ThreadActor, Result<Resolution, ResolveError>>;

fn ready(result: Result<Resolution, ResolveError>) -> Resolving {
    Box::pin(actix::fut::ready(result))
}

impl Handler<Resolve> for ThreadActor {
    type Result = Resolving;

    fn handle(&mut self, msg: Resolve, ctx: &mut Context<Self>) -> Resolving {
        if let Err(e) = self.may_resolve(&msg) {
            return ready(Err(e));
        }
        if self.lease_ttl().is_some() {
            return self.resolve_clustered(msg, ATTEMPTS, ctx);
        }
        if self.deps.db_healthy.load(std::sync::atomic::Ordering::Relaxed) {
            return self.resolve_stored(msg, ctx);
        }
        // The database is down: nothing else is handled until the answers
        // are stored (or refused).
        let (tx, rx) = oneshot::channel();
        let stored = self.resolve_stored(msg, ctx);
        ctx.wait(stored.map(move |result, _, _| {
            let _ = tx.send(result);
        }));
        Box::pin(async move { rx.await.unwrap_or(Err(ThreadError::Unavailable.into())) }.into_actor(self))
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
    fn may_resolve(&self, msg: &Resolve) -> Result<(), ResolveError> {
        let (thread, _) = self.found()?;
        if msg.project_id.is_some_and(|p| p != thread.project_id) {
            return Err(ThreadError::NotFound.into());
        }
        // A next step would start on a node that stops: answered elsewhere,
        // or after the restart.
        if self.refuse_work || self.deps.shutdown.is_draining() {
            return Err(ThreadError::ShuttingDown.into());
        }
        Ok(())
    }

    /// Checks `msg` against this actor's conversation (exact: alone, or
    /// holding the lease) and stores what it changes; once stored, every
    /// tab hears of it and the answer goes on if nothing waits any more.
    fn resolve_stored(&mut self, msg: Resolve, ctx: &mut Context<Self>) -> Resolving {
        let checked = self.found().map(|(thread, conversation)| check(thread, conversation, &msg));
        match checked {
            Ok(Ok(Checked::Done(report))) => ready(Ok(report)),
            Ok(Ok(Checked::Apply { message, calls, report })) => self.store_answers(*message, calls, report, ctx),
            Ok(Err(e)) => ready(Err(e)),
            Err(e) => ready(Err(e.into())),
        }
    }

    /// Stores the awaiting answer `message` with its calls now `calls`
    /// (answered as `report` says); then (at once on one node) every tab
    /// hears of it and the answer goes on if nothing waits any more.
    pub(super) fn store_answers(
        &mut self,
        message: Message,
        calls: Vec<Call>,
        report: Resolution,
        ctx: &mut Context<Self>,
    ) -> Resolving {
        // Stored before it is acknowledged: a result posted survives a
        // crash (and continues the answer after the restart).
        let mut stored = message.clone();
        stored.calls = calls.clone();
        let (ack, done) = oneshot::channel();
        self.deps.persistence.do_send(Write { ops: vec![self.fenced(WriteOp::Update(stored))], ack: Some(ack) });
        let at_once = self.lease_ttl().is_none() && self.deps.db_healthy.load(std::sync::atomic::Ordering::Relaxed);
        if at_once {
            self.resolved(&message, calls, &report.resolved, ctx);
            let message_id = message.id;
            return Box::pin(done.into_actor(self).map(move |written, act, _| match written {
                Ok(Ok(())) => Ok(report),
                _ => {
                    tracing::warn!(thread_id = %act.thread_id, %message_id,
                        "answers to an answer's calls could not be stored now; the answer's next write carries them");
                    Err(ThreadError::Unavailable.into())
                }
            }));
        }
        Box::pin(done.into_actor(self).map(move |written, act, ctx| match written {
            Ok(Ok(())) => {
                act.resolved(&message, calls, &report.resolved, ctx);
                Ok(report)
            }
            Ok(Err(WriteError::Fenced)) => {
                act.lose_lease("a decision's write was refused", ctx);
                Err(ThreadError::Unavailable.into())
            }
            _ => Err(ThreadError::Unavailable.into()),
        }))
    }

    /// Cluster mode: resolves under the thread's lease (module doc).
    fn resolve_clustered(&mut self, msg: Resolve, attempts: u32, ctx: &mut Context<Self>) -> Resolving {
        let Ok((_, conversation)) = self.found() else { return ready(Err(ThreadError::NotFound.into())) };
        if self.generation.is_some() || self.fence().is_some() {
            // The answer's next step runs here (nothing awaits), or this
            // actor holds the lease while the service runs calls of it:
            // either way its conversation is exact.
            return self.resolve_stored(msg, ctx);
        }
        let Some(answer) = conversation.messages().iter().rev().find(|m| m.role == crate::domain::Role::Assistant)
        else {
            return ready(Err(ResolveError::NotAwaiting));
        };
        let ttl = self.lease_ttl().unwrap_or_default();
        Box::pin(self.own_answer(answer.id, ctx).then(move |owned, act, ctx| match owned {
            Err(e) => ready(Err(ThreadError::from_store(&e).into())),
            Ok(ForAnswer::Owned) => {
                if act.conversation().and_then(Conversation::running).is_some() {
                    // Its owner died in a step: that answer is ended first.
                    act.let_go(ctx);
                    ctx.notify(TakeOver);
                }
                Box::pin(act.resolve_stored(msg, ctx).map(|result, act, ctx| {
                    if act.generation.is_none() && act.runs.is_empty() {
                        act.let_go(ctx);
                    }
                    result
                }))
            }
            Ok(ForAnswer::Held { epoch, stored }) => {
                let Ok((thread, _)) = act.found() else { return ready(Err(ThreadError::NotFound.into())) };
                match check(thread, &stored, &msg) {
                    Ok(Checked::Done(report)) => ready(Ok(report)),
                    Err(e) => ready(Err(e)),
                    Ok(Checked::Apply { .. }) if attempts > 1 => Box::pin(
                        act.when_released(epoch, ttl)
                            .into_actor(act)
                            .then(move |(), act, ctx| act.resolve_clustered(msg, attempts - 1, ctx)),
                    ),
                    Ok(Checked::Apply { .. }) => {
                        tracing::warn!(thread_id = %act.thread_id, "a decision found the thread's lease held too long");
                        ready(Err(ThreadError::Unavailable.into()))
                    }
                }
            }
        }))
    }

    /// Answers are stored: every tab hears of them; an approved call that
    /// now needs its result is awaited again; once every call is answered
    /// the answer goes on.
    pub(super) fn resolved(&mut self, message: &Message, calls: Vec<Call>, ids: &[String], ctx: &mut Context<Self>) {
        let Some(conversation) = self.conversation_mut() else { return };
        conversation.set_calls(message.id, calls.clone());
        let mut events: Vec<Event> =
            ids.iter().filter_map(|id| resolved_event(self.thread_id, message, &calls, id)).collect();
        // An approved client call now waits for its result: said again.
        let was_approval =
            |id: &String| message.calls.iter().any(|c| &c.id == id && c.state == CallState::NeedsApproval);
        let now_waits =
            |id: &String| calls.iter().any(|c| &c.id == id && matches!(c.state, CallState::NeedsResult { .. }));
        if ids.iter().any(|id| was_approval(id) && now_waits(id)) {
            if let Some(awaiting) = self.conversation().and_then(Conversation::awaiting) {
                events.push(Event::awaiting(awaiting));
            }
        }
        self.publish(&events, Some(message.id));
        if turn::all_resolved(&calls) {
            self.next_step(calls, ctx);
        } else {
            // An approved call the service runs: it runs now.
            self.start_runs(ctx);
        }
    }
}

/// `tool.resolved` for the call `id` of `message`, now in `calls`.
fn resolved_event(thread_id: Uuid, message: &Message, calls: &[Call], id: &String) -> Option<Event> {
    let needs = match message.calls.iter().find(|c| &c.id == id)?.state {
        CallState::NeedsApproval => Needs::Approval,
        CallState::NeedsResult { .. } | CallState::Runs { .. } => Needs::Result,
        CallState::Resolved { .. } => return None,
    };
    let now = calls.iter().find(|c| &c.id == id)?;
    let (approved, is_error) = match &now.state {
        CallState::Resolved { is_error, approved, .. } => (*approved, Some(*is_error)),
        CallState::NeedsResult { approved } | CallState::Runs { approved } => (Some(*approved), None),
        CallState::NeedsApproval => (None, None),
    };
    let is_error = if needs == Needs::Approval { None } else { is_error };
    Some(Event::ToolResolved {
        thread_id,
        cursor: Some(crate::domain::event::position_before(message, message.blocks.len())),
        message_id: message.id,
        tool_call_id: id.clone(),
        needs,
        approved,
        is_error,
    })
}

/// Applies the answers to a copy of the awaiting answer's calls, all or
/// none: an unknown call, a conflict or a mismatch refuses the whole
/// request.
fn check(thread: &Thread, conversation: &Conversation, msg: &Resolve) -> Result<Checked, ResolveError> {
    let Some(message) = conversation.awaiting() else {
        return check_settled(conversation, msg);
    };
    let mut calls = message.calls.clone();
    let mut report = Resolution { message_id: message.id, resolved: Vec::new(), unchanged: Vec::new() };
    let tools = crate::domain::tools::merged(&thread.tools, &message.tools);
    for (id, answer) in &msg.answers {
        match turn::answer(&mut calls, id, answer, &tools) {
            Outcome::Resolved => report.resolved.push(id.clone()),
            Outcome::Unchanged => report.unchanged.push(id.clone()),
            Outcome::Conflict => return Err(ResolveError::AlreadyResolved(id.clone())),
            Outcome::Unknown => return Err(ResolveError::UnknownCall(id.clone())),
            Outcome::Mismatch(why) => return Err(ResolveError::Mismatch(id.clone(), why)),
        }
    }
    if report.resolved.is_empty() {
        return Ok(Checked::Done(report));
    }
    Ok(Checked::Apply { message: Box::new(message.clone()), calls, report })
}

/// No answer awaits: answers the answer moved on from are no change when
/// they are what it got (its results are blocks now).
fn check_settled(conversation: &Conversation, msg: &Resolve) -> Result<Checked, ResolveError> {
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
