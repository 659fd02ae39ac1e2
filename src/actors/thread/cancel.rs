//! Cancelling an answer (`Cancel`, `CancelAnswer`): one running here ends
//! `cancelled` (once the lease is renewed, if it runs late), one running on
//! another node is cancelled by its owner, and one awaiting input has what
//! waits answered `cancelled` (`steps.rs`; under the lease in cluster mode).

use super::*;

impl Handler<Cancel> for ThreadActor {
    type Result = ResponseActFuture<Self, Result<Uuid, ThreadError>>;

    fn handle(&mut self, _: Cancel, ctx: &mut Context<Self>) -> Self::Result {
        let awaiting = match self.found() {
            Ok((_, conversation)) => conversation.awaiting().map(|m| m.id),
            Err(e) => return Box::pin(actix::fut::ready(Err(e))),
        };
        match (awaiting, self.lease_ttl()) {
            (None, _) => Box::pin(actix::fut::ready(self.cancel_running(ctx))),
            (Some(_), None) => Box::pin(actix::fut::ready(self.cancel_awaiting(ctx).ok_or(ThreadError::NotGenerating))),
            (Some(answer), Some(_)) => self.cancel_awaiting_clustered(answer, 3, ctx),
        }
    }
}

impl ThreadActor {
    /// Cancels the running answer, here or (another node runs it) by its
    /// owner.
    fn cancel_running(&mut self, ctx: &mut Context<Self>) -> Result<Uuid, ThreadError> {
        let (_, conversation) = self.found()?;
        let id = conversation.running().map(|m| m.id).ok_or(ThreadError::NotGenerating)?;
        match self.generation.is_some() {
            true => self.cancel_here(ctx),
            // Another node runs it: its owner cancels it.
            false => self.publisher.fanout().command(crate::broadcast::Command::Cancel),
        }
        Ok(id)
    }
}

impl ThreadActor {
    /// Cancels the answer running here; while the lease runs late (cluster
    /// mode) nothing is published, so the cancel waits for the renewal.
    pub(super) fn cancel_here(&mut self, ctx: &mut Context<Self>) {
        if self.lease_lapsing() {
            self.cancel_held = true;
            self.renew(ctx);
        } else {
            self.finish(MessageStatus::Cancelled, None, ctx);
        }
    }
}

impl Handler<CancelAnswer> for ThreadActor {
    type Result = Result<Uuid, ThreadError>;

    fn handle(&mut self, msg: CancelAnswer, ctx: &mut Context<Self>) -> Self::Result {
        let (_, conversation) = self.found()?;
        match conversation.running().map(|m| m.id) {
            Some(id) if id == msg.message_id => self.cancel_running(ctx),
            _ => Err(ThreadError::NotGenerating),
        }
    }
}
