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

use super::lease::ForAnswer;
use super::*;
use crate::domain::turn::{self, Call};

/// An awaiting answer whose calls are all answered goes on, and calls the
/// service runs that wait for it run (after a restart, or told by the
/// sweeper).
#[derive(Message)]
#[rtype(result = "()")]
pub struct ContinueAnswer;

impl ThreadActor {
    /// The tools a step of this thread's answers may call.
    pub(super) fn tools(&self) -> Vec<crate::domain::tools::ToolDef> {
        let Ok((thread, conversation)) = self.found() else { return Vec::new() };
        let answer = conversation.running().or(conversation.awaiting());
        match answer.filter(|m| !m.tools.is_empty()) {
            Some(m) => crate::domain::tools::merged(&thread.tools, &m.tools),
            None => thread.tools.clone(),
        }
    }

    /// A step ended normally. If it asked for tools, the answer awaits
    /// input or goes on (then `true`); otherwise it is complete (`false`).
    pub(super) fn on_step_end(&mut self, ctx: &mut Context<Self>) -> bool {
        let tools = self.tools();
        let Some(conversation) = self.conversation() else { return false };
        let Some(mut calls) = conversation.step_calls(&tools) else { return false };
        let steps = conversation.steps();
        if steps >= usize::from(self.deps.settings.limits.max_steps) {
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

    /// The running answer ends `status` (not complete) in a step that
    /// made calls: each gets its error result first, so every `tool_use`
    /// has its `tool_result` and the thread can be asked again.
    pub(super) fn answer_cut_calls(&mut self, status: MessageStatus) {
        let tools = self.tools();
        let Some(mut calls) = self.conversation().and_then(|c| c.cut_calls(&tools)) else { return };
        let reason = match status {
            MessageStatus::Cancelled => turn::reason::CANCELLED,
            _ => turn::reason::STEP_CUT,
        };
        turn::resolve_rest(&mut calls, reason);
        self.append_results(&calls);
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
    pub(super) fn next_step(&mut self, calls: Vec<Call>, ctx: &mut Context<Self>) {
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
        let call = ModelCall { model, max_tokens, answer: id, continuation: None };
        if let Err(e) = self.start_stream(call, slot, Instant::now(), ctx) {
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
        // be answered, from any node, after any restart. Calls the service
        // runs start then too: stored first, so a node that takes the
        // answer over runs them again.
        self.store_state(message.clone(), ctx);
        tracing::info!(thread_id = %self.thread_id, message_id = %message.id, pending = message.pending().len(),
            "the answer awaits input");
        self.touch(ctx);
    }

    /// Stores an answer's state between steps: fenced in cluster mode, and
    /// the lease let go after unless the service has calls of it to run
    /// (they run under the lease).
    fn store_state(&mut self, message: Message, ctx: &mut Context<Self>) {
        let runs = turn::to_run(&message.calls).next().is_some();
        if self.fence().is_some() && !runs {
            // `FinalWritten` announces it.
            return self.write_final_then_release(message, ctx);
        }
        let (ack, done) = oneshot::channel();
        let id = message.id;
        self.deps.persistence.do_send(Write { ops: vec![self.fenced(WriteOp::Update(message))], ack: Some(ack) });
        ctx.spawn(done.into_actor(self).map(move |written, act, ctx| {
            match written {
                Ok(Ok(())) => {}
                Ok(Err(WriteError::Fenced)) => return act.lose_lease("an awaiting answer's write was refused", ctx),
                _ => tracing::warn!(thread_id = %act.thread_id, message_id = %id,
                    "an answer awaiting input could not be stored; its final write will carry it"),
            }
            act.announce_awaiting(id);
            act.start_runs(ctx);
        }));
    }

    /// Tells every tab what the answer `id` awaits, if it still does and
    /// something waits for a person or the client.
    pub(super) fn announce_awaiting(&mut self, id: Uuid) {
        let Some(awaiting) = self.conversation().and_then(Conversation::awaiting).filter(|m| m.id == id) else {
            return;
        };
        if let Some(event) = Event::awaiting_someone(awaiting) {
            self.publish(&[event], Some(id));
        }
    }

    /// Cancels an answer that awaits input: what still waits is answered
    /// `cancelled`, and the answer ends so.
    pub(super) fn cancel_awaiting(&mut self, ctx: &mut Context<Self>) -> Option<Uuid> {
        let message = self.conversation()?.awaiting()?.clone();
        self.stop_runs(ctx);
        let mut calls = message.calls.clone();
        turn::resolve_rest(&mut calls, turn::reason::CANCELLED);
        self.append_results(&calls);
        self.finish(MessageStatus::Cancelled, None, ctx);
        Some(message.id)
    }
}

impl ThreadActor {
    /// Cluster mode: cancels the answer `answer` that awaits input, under
    /// the thread's lease. If another holds it, what is stored says what to
    /// do: an answer that went on is cancelled by its owner; one still
    /// awaiting is being answered, so the cancel waits for the holder to
    /// let go (`attempts` times).
    pub(super) fn cancel_awaiting_clustered(
        &mut self,
        answer: Uuid,
        attempts: u32,
        ctx: &mut Context<Self>,
    ) -> ResponseActFuture<Self, Result<Uuid, ThreadError>> {
        let ttl = self.lease_ttl().unwrap_or_default();
        let ready = |r| -> ResponseActFuture<Self, Result<Uuid, ThreadError>> { Box::pin(actix::fut::ready(r)) };
        if self.fence().is_some() {
            // Held here while the service runs calls of it: ended here.
            if let Some(id) = self.cancel_awaiting(ctx) {
                return ready(Ok(id));
            }
        }
        Box::pin(self.own_answer(answer, ctx).then(move |owned, act, ctx| match owned {
            Err(e) => ready(Err(ThreadError::from_store(&e))),
            Ok(ForAnswer::Owned) => {
                if let Some(id) = act.cancel_awaiting(ctx) {
                    return ready(Ok(id));
                }
                act.let_go(ctx);
                match act.conversation().and_then(Conversation::running).map(|m| m.id) {
                    // Its owner died in a step: that answer is ended.
                    Some(id) => {
                        ctx.notify(TakeOver);
                        ready(Ok(id))
                    }
                    None => ready(Err(ThreadError::NotGenerating)),
                }
            }
            Ok(ForAnswer::Held { epoch, stored }) => {
                if let Some(id) = stored.running().map(|m| m.id) {
                    act.publisher.fanout().command(crate::broadcast::Command::Cancel);
                    return ready(Ok(id));
                }
                match stored.awaiting() {
                    Some(_) if attempts > 1 => Box::pin(
                        act.when_released(epoch, ttl)
                            .into_actor(act)
                            .then(move |(), act, ctx| act.cancel_awaiting_clustered(answer, attempts - 1, ctx)),
                    ),
                    Some(_) => ready(Err(ThreadError::Unavailable)),
                    None => ready(Err(ThreadError::NotGenerating)),
                }
            }
        }))
    }
}

impl Handler<ContinueAnswer> for ThreadActor {
    type Result = ();

    fn handle(&mut self, _: ContinueAnswer, ctx: &mut Context<Self>) {
        if self.generation.is_some() || self.refuse_work || self.deps.shutdown.is_draining() {
            return;
        }
        let Some(conversation) = self.conversation() else { return };
        if self.lease_ttl().is_none() {
            return self.continue_if_due(ctx);
        }
        // Cluster mode: under the lease, as the database has it.
        let Some(answer) = conversation.messages().last().filter(|m| m.role == crate::domain::Role::Assistant) else {
            return;
        };
        let answer = answer.id;
        let owning = self.own_answer(answer, ctx);
        ctx.spawn(owning.map(|owned, act, ctx| match owned {
            Ok(ForAnswer::Owned) => {
                act.continue_if_due(ctx);
                if act.generation.is_none() && act.runs.is_empty() {
                    act.let_go(ctx);
                }
            }
            Ok(ForAnswer::Held { .. }) => {}
            Err(e) => tracing::debug!(thread_id = %act.thread_id, error.message = %e, "an answer due to go on waits"),
        }));
    }
}

impl ThreadActor {
    /// The answer awaiting input goes on if every call of its step is
    /// answered; the calls the service runs that wait for it run (again:
    /// at least once).
    fn continue_if_due(&mut self, ctx: &mut Context<Self>) {
        let Some(awaiting) = self.conversation().and_then(Conversation::awaiting) else { return };
        if turn::all_resolved(&awaiting.calls) {
            let calls = awaiting.calls.clone();
            tracing::info!(thread_id = %self.thread_id, message_id = %awaiting.id, "an answer whose calls were all answered goes on");
            self.next_step(calls, ctx);
        } else {
            self.start_runs(ctx);
        }
    }
}
