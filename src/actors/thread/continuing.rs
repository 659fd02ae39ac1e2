//! Answers cut short that finish anyway: what the thread actor does when
//! the running answer's model call is cut by the provider (a drop, an
//! error event after its 200, a stall), or when it finds an answer cut by
//! a crash (one node, at start-up) or by its node's death or deploy
//! (cluster mode, at a take-over). The answer goes on in the same message:
//! `message.continued`, then the model is asked again with the partial
//! answer and its text follows at the next offsets. The rules (budget,
//! form, seam) are `domain::continuation`'s; this file carries them out.
//!
//! Never continued: a cancelled answer, one that ended on a limit (time,
//! size, `max_steps`) or a refused request (their failures carry no cut),
//! and a model call that was cut before it added anything.

use std::time::{Duration, Instant};

use super::*;
use crate::domain::continuation::{Cut, Refused};

impl ThreadActor {
    /// The running answer's model call was cut by the provider (`why`):
    /// it goes on if its budget lets it (then `true`); otherwise the
    /// caller ends it as before.
    pub(super) fn continue_after_cut(&mut self, cut: Cut, why: &str, ctx: &mut Context<Self>) -> bool {
        let Some(generation) = self.generation.as_ref() else { return false };
        let taken = self.conversation().and_then(Conversation::running).map_or(0, |m| m.continuations);
        let decided = match generation.progressed {
            false => Err(Refused::NoProgress),
            true => self.deps.settings.continuing.budget().next(taken, Duration::ZERO),
        };
        let attempt = match decided {
            Ok(_) if self.refuse_work => {
                self.count_continuation(cut, Refused::Stopping.as_str());
                return false;
            }
            Ok(attempt) => attempt,
            Err(refused) => {
                self.count_continuation(cut, refused.as_str());
                return false;
            }
        };
        let Some(generation) = self.generation.take() else { return false };
        ctx.cancel_future(generation.stream);
        ctx.cancel_future(generation.checkpoints);
        tracing::warn!(thread_id = %self.thread_id, message_id = %generation.answer, reason = cut.as_str(), attempt,
            error.message = %why, "an answer was cut short; it goes on");
        self.go_on(attempt, cut, false, generation._slot, generation.max_tokens, ctx)
    }

    /// An answer found cut (`cut`: a crash, its owner's death, a deploy's
    /// hand-over) runs in this actor's conversation with no model call: it
    /// goes on if its budget (age included) and the generation caps let
    /// it, else it ends `interrupted` as before. Its text goes on in the cut
    /// block when this node holds every byte its readers were sent; else
    /// (a crash, a take-over without the owner's log) in a block of its
    /// own, so a reader that saw more than was stored is told
    /// `cursor_ahead` rather than handed other text at its offsets.
    pub(super) fn continue_found(&mut self, cut: Cut, ctx: &mut Context<Self>) {
        let Ok((thread, conversation)) = self.found() else { return };
        let Some(answer) = conversation.running() else { return };
        let project = thread.project_id;
        let fresh_block = !conversation.tail_is_exact();
        let age = (Utc::now() - answer.touched_at.unwrap_or(answer.created_at)).to_std().unwrap_or_default();
        let decided = self.deps.settings.continuing.budget().next(answer.continuations, age).and_then(|attempt| {
            let slot = self.deps.capacity.resume_generation(project).map_err(|_| Refused::AtCapacity)?;
            Ok((attempt, slot))
        });
        match decided {
            Ok(_) if self.refuse_work || self.deps.shutdown.is_draining() => {
                self.count_continuation(cut, Refused::Stopping.as_str())
            }
            Ok((attempt, slot)) => {
                let max_tokens = self.deps.settings.provider.max_tokens;
                tracing::warn!(thread_id = %self.thread_id, message_id = %answer.id, reason = cut.as_str(), attempt,
                    "an answer found cut short goes on");
                if self.go_on(attempt, cut, fresh_block, slot, max_tokens, ctx) {
                    return;
                }
            }
            Err(refused) => self.count_continuation(cut, refused.as_str()),
        }
        self.finish(MessageStatus::Interrupted, Some(MessageError::interrupted()), ctx);
    }

    /// The running answer goes on (its `attempt`-th continuation): a step
    /// cut in its calls' input gets their error results first (the
    /// continuation is then its next step, asked as any step is);
    /// otherwise the model is asked to go on from the partial answer.
    fn go_on(
        &mut self,
        attempt: u32,
        cut: Cut,
        fresh_block: bool,
        slot: crate::capacity::GenerationSlot,
        max_tokens: u32,
        ctx: &mut Context<Self>,
    ) -> bool {
        let Some(answer) = self.conversation().and_then(Conversation::running) else { return false };
        let id = answer.id;
        let model = answer.model.clone().unwrap_or_else(|| self.deps.provider.default_model().to_owned());
        let blocks_before = answer.blocks.len();
        self.answer_cut_calls(MessageStatus::Failed);
        let new_step =
            self.conversation().and_then(Conversation::running).map_or(0, |m| m.blocks.len()) > blocks_before;
        let Some(continued) = self.conversation_mut().and_then(|c| c.continue_cut(attempt, cut, fresh_block)) else {
            return false;
        };
        self.dirty = true;
        self.publish(&[continued], Some(id));
        if new_step {
            if let Some(step) = self.conversation().and_then(Conversation::step_begins) {
                self.publish(&[step], Some(id));
            }
        }
        self.count_continuation(cut, "continued");
        let form = (!new_step).then(|| self.deps.settings.continuing.form());
        let call = ModelCall { model, max_tokens, answer: id, continuation: form };
        if let Err(e) = self.start_stream(call, slot, Instant::now(), ctx) {
            tracing::warn!(thread_id = %self.thread_id, message_id = %id, error.message = %e, "a continuation could not start");
            return false;
        }
        // Stored at once: a node or a restart that finds it later knows it
        // took this continuation.
        self.checkpoint();
        true
    }

    /// Cluster mode, at the end of a shutdown's grace: the running answer
    /// is handed over rather than ended: its state is written as it is,
    /// still streaming and marked handed over, and the lease let go, so
    /// another node's sweeper takes it over at once and continues it
    /// (`Cut::Handoff`). `false` (it ends `interrupted`) when this node
    /// holds no lease or the answer may not be continued.
    pub(super) fn hand_over(&mut self, ctx: &mut Context<Self>) -> bool {
        if self.fence().is_none() {
            return false;
        }
        let Some(answer) = self.conversation().and_then(Conversation::running) else { return false };
        if let Err(refused) = self.deps.settings.continuing.budget().next(answer.continuations, Duration::ZERO) {
            self.count_continuation(Cut::Handoff, refused.as_str());
            return false;
        }
        let Some(generation) = self.generation.take() else { return false };
        ctx.cancel_future(generation.stream);
        ctx.cancel_future(generation.checkpoints);
        let Some(message) = self.conversation_mut().and_then(Conversation::hand_over) else { return false };
        self.dirty = false;
        tracing::info!(thread_id = %self.thread_id, message_id = %message.id,
            "a running answer is handed over to another node");
        self.write_final_then_release(message, ctx);
        self.set_generating(false);
        true
    }

    fn count_continuation(&self, cut: Cut, outcome: &str) {
        self.deps.metrics.continuations.with_label_values(&[cut.as_str(), outcome]).inc();
    }
}
