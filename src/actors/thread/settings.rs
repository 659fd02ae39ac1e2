//! A thread's settings change (`UpdateThread`, a PATCH): written, then the
//! thread actor answers with them and every subscriber hears
//! `thread.updated`. What its answers may call (tools, tool choice, MCP
//! servers) cannot change while an answer runs or awaits input: 409
//! `thread_busy`, as a question then.
//!
//! Each node tells its own subscribers (`thread.updated` is not a position
//! of the thread's log): in cluster mode the node that wrote tells the
//! others (`Command::ThreadChanged`), and each reads the thread again, so
//! the next answer on any node is made with the new settings.
//!
//! A thread with no title gets one from its first question (whichever way
//! it came: REST, a `send` frame, the seed route, a chat turn), told the
//! same way (`title_from_question`).

use super::*;
use crate::{
    broadcast::Command,
    domain::{ThreadPatch, ThreadView},
};

/// Changes the thread's settings; answers the thread as written.
#[derive(Message)]
#[rtype(result = "Result<Thread, ThreadError>")]
pub struct UpdateThread {
    pub project_id: Uuid,
    pub patch: ThreadPatch,
}

impl Handler<UpdateThread> for ThreadActor {
    type Result = ResponseActFuture<Self, Result<Thread, ThreadError>>;

    fn handle(&mut self, msg: UpdateThread, ctx: &mut Context<Self>) -> Self::Result {
        let (thread, conversation) = match self.found() {
            Ok(found) => found,
            Err(e) => return Box::pin(actix::fut::ready(Err(e))),
        };
        if thread.project_id != msg.project_id {
            return Box::pin(actix::fut::ready(Err(ThreadError::NotFound)));
        }
        let tools = msg.patch.changes_tools(thread);
        let busy_here = self.generation.is_some()
            || matches!(self.role, Role::Starting)
            || conversation.running().is_some()
            || conversation.awaiting().is_some();
        if tools && busy_here {
            return Box::pin(actix::fut::ready(Err(ThreadError::Busy)));
        }
        let updated = msg.patch.apply(thread, Utc::now());
        let (store, thread_id, clustered) = (self.deps.store.clone(), self.thread_id, self.lease_ttl().is_some());
        let write = async move {
            // Cluster mode: an answer may run or await on another node
            // (the database knows: its lease, its stored status).
            if tools && clustered {
                let ids = [thread_id];
                if !store.answering(&ids).await?.is_empty() || !store.awaiting(&ids).await?.is_empty() {
                    return Ok(Err(ThreadError::Busy));
                }
            }
            // A deletion may have won the race since the thread was read.
            Ok(if store.update_thread(&updated).await? { Ok(updated) } else { Err(ThreadError::NotFound) })
        };
        // Nothing else is handled until it is written: a question cannot
        // start between the check and the write.
        let (tx, rx) = oneshot::channel();
        ctx.wait(write.into_actor(self).map(move |written: Result<_, crate::store::StoreError>, act, _| {
            let result = match written {
                Ok(Ok(thread)) => {
                    act.settings_changed(thread.clone());
                    act.publisher.fanout().command(Command::ThreadChanged);
                    Ok(thread)
                }
                Ok(Err(refused)) => Err(refused),
                Err(e) => Err(ThreadError::from_store(&e)),
            };
            let _ = tx.send(result);
        }));
        Box::pin(async move { rx.await.unwrap_or(Err(ThreadError::Unavailable)) }.into_actor(self))
    }
}

/// The batch with a thread's title from its first question has an
/// outcome (`title_from_question`).
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Titled {
    written: bool,
}

impl Handler<Titled> for ThreadActor {
    type Result = ();

    fn handle(&mut self, msg: Titled, ctx: &mut Context<Self>) {
        match msg.written {
            true => {
                if let Ok((thread, _)) = self.found() {
                    self.settings_changed(thread.clone());
                }
                self.publisher.fanout().command(Command::ThreadChanged);
            }
            false => self.reload_thread(false, ctx),
        }
    }
}

impl ThreadActor {
    /// The thread's settings are now `thread`'s: this node's subscribers
    /// hear it.
    fn settings_changed(&mut self, thread: Thread) {
        let Loaded::Found { thread: held, conversation } = &mut self.loaded else { return };
        let status = if self.generation.is_some() || conversation.running().is_some() {
            ThreadStatus::Generating
        } else if conversation.awaiting().is_some() {
            ThreadStatus::AwaitingInput
        } else {
            ThreadStatus::Idle
        };
        **held = thread.clone();
        let view = Box::new(ThreadView::new(thread, status));
        self.publisher.notice(&Event::ThreadUpdated { thread_id: self.thread_id, cursor: None, thread: view });
    }

    /// The thread has no title and no question yet: its first question
    /// titles it.
    pub(super) fn untitled(&self) -> bool {
        self.found()
            .is_ok_and(|(thread, conversation)| thread.title.is_none() && conversation.newest_question().is_none())
    }

    /// Titles the thread by its first question, just accepted: the title
    /// is held at once (a PATCH handled here meanwhile keeps it); its
    /// write, to go in the question's batch (written only if the thread
    /// still has none: a PATCH on another node may have given it one); and
    /// the ack that batch answers instead of `ack`. Once the batch is
    /// committed, `ack` hears it and the actor is told (`Titled`): this
    /// node's subscribers hear `thread.updated` and the other nodes read
    /// the thread again, as after a PATCH. Not committed, the thread is
    /// read again as stored.
    pub(super) fn title_from_question(
        &mut self,
        title: String,
        ack: oneshot::Sender<Result<(), WriteError>>,
        ctx: &mut Context<Self>,
    ) -> (WriteOp, oneshot::Sender<Result<(), WriteError>>) {
        let at = Utc::now();
        if let Loaded::Found { thread, .. } = &mut self.loaded {
            thread.title = Some(title.clone());
            thread.updated_at = at;
        }
        let (batch, stored) = oneshot::channel();
        let me = ctx.address();
        // Not the actor's own future: the caller hears the commit even if
        // the actor stops first, as without a title.
        actix::spawn(async move {
            let outcome = stored.await;
            let written = matches!(outcome, Ok(Ok(())));
            if let Ok(outcome) = outcome {
                let _ = ack.send(outcome);
            }
            me.do_send(Titled { written });
        });
        (self.fenced(WriteOp::Title { thread_id: self.thread_id, title, at }), batch)
    }

    /// Another node changed the thread's settings: read again, and told.
    pub(super) fn reload_settings(&mut self, ctx: &mut Context<Self>) {
        self.reload_thread(true, ctx);
    }

    /// Reads the thread again; `tell`: this node's subscribers hear it.
    fn reload_thread(&mut self, tell: bool, ctx: &mut Context<Self>) {
        let (store, thread_id) = (self.deps.store.clone(), self.thread_id);
        ctx.spawn(async move { store.find_thread(thread_id).await }.into_actor(self).map(move |found, act, _| {
            match found {
                Ok(Some(thread)) if tell => act.settings_changed(thread),
                Ok(Some(thread)) => {
                    if let Loaded::Found { thread: held, .. } = &mut act.loaded {
                        **held = thread;
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(thread_id = %act.thread_id, error.message = %e, "a thread's new settings could not be read")
                }
            }
        }));
    }
}
