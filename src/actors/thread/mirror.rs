//! The thread actor as a mirror (cluster mode): it loads the thread with
//! every frame its owner logged, applies the owner's frames as they come
//! (`Inbound`), loads again after a gap, and takes over an answer whose
//! owner is gone.

use super::*;
use crate::domain::continuation::Cut;
use crate::{
    broadcast::{Command, Inbound},
    store::{Acquired, StoreError},
};

impl ThreadActor {
    /// Loads the thread, its messages and, for an answer still streaming,
    /// every frame its owner logged: the conversation as its owner holds
    /// it (the database alone may be a flush interval behind).
    pub(super) fn load(&self) -> LoadFuture {
        let store = self.deps.store.clone();
        let (thread_id, cluster) = (self.thread_id, self.lease_ttl().is_some());
        let ready = self.publisher.fanout().ready();
        async move {
            if cluster {
                if let Err(e) = ready.await {
                    tracing::warn!(thread_id = %thread_id, error.message = %e, "not linked to the other nodes");
                    return Err(Load::Unlinked);
                }
            }
            let thread = store.find_thread(thread_id).await?;
            let messages = store.all_messages(thread_id).await?;
            Ok((thread, Conversation::new(thread_id, messages)))
        }
        .into_actor(self)
        .then(move |loaded, act, _| {
            let log = match &loaded {
                Ok((_, conversation)) if cluster => conversation.running().map(|m| act.publisher.fanout().log(m.id)),
                _ => None,
            };
            async move {
                let (thread, mut conversation) = loaded?;
                if let Some(log) = log {
                    match log.await {
                        // Every answer's log begins with its own start: an
                        // empty one was lost (Redis restarted empty).
                        Ok(frames) if frames.is_empty() => {
                            tracing::warn!(thread_id = %thread_id, "the answer's log is gone; its tail is unknown");
                            conversation.tail_unknown();
                        }
                        Ok(frames) => mirror_all(&mut conversation, &frames),
                        Err(e) => {
                            tracing::warn!(thread_id = %thread_id, error.message = %e, "the answer's log is unreadable");
                            conversation.tail_unknown();
                        }
                    }
                }
                Ok((thread, conversation))
            }
            .into_actor(act)
        })
        .boxed_local()
    }

    /// Loads the conversation again after missing another node's frames,
    /// then has every subscriber catch up from its cursor.
    pub(super) fn resync(&mut self, ctx: &mut Context<Self>) {
        tracing::debug!(thread_id = %self.thread_id, "frames missed; loading the conversation again");
        let pause = self.deps.settings.database.flush_interval() * 2;
        ctx.wait(
            actix::clock::sleep(pause)
                .into_actor(self)
                .then(|(), act, _| act.load())
                .map(|loaded, act, _| {
                    if let (Ok((_, conversation)), Loaded::Found { conversation: held, .. }) = (loaded, &mut act.loaded)
                    {
                        *held = conversation;
                        act.publisher.resync();
                    }
                })
                .boxed_local(),
        );
    }
}

/// Why a thread could not be loaded.
#[derive(Debug, thiserror::Error)]
pub(super) enum Load {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("not linked to the thread's other nodes")]
    Unlinked,
}

pub(super) type LoadFuture = actix::fut::LocalBoxActorFuture<ThreadActor, Result<(Option<Thread>, Conversation), Load>>;

/// Applies logged frames to a conversation loaded from the database.
fn mirror_all(conversation: &mut Conversation, frames: &[Frame]) {
    for frame in frames {
        if let Some(event) = Event::from_json(frame.json()) {
            let _ = conversation.mirror(&event, Utc::now());
        }
    }
}

impl Handler<Inbound> for ThreadActor {
    type Result = ();

    fn handle(&mut self, msg: Inbound, ctx: &mut Context<Self>) {
        match msg {
            Inbound::Frame(frame) => {
                // One owner: while this node holds the lease, another
                // node's frames are a stale owner's.
                // A frame of a newer owner: this node lost the lease.
                if self.role.lease().is_some_and(|l| frame.pos.epoch > l.fence.epoch) {
                    self.lose_lease("another node publishes in a newer epoch", ctx);
                }
                if !self.role.mirrors(frame.pos.epoch, self.seen_epoch) {
                    tracing::debug!(thread_id = %self.thread_id, epoch = frame.pos.epoch, seen = self.seen_epoch,
                        owner = self.role.lease().is_some(), "a stale owner's frame is ignored");
                    return;
                }
                self.seen_epoch = frame.pos.epoch;
                let Some(event) = Event::from_json(frame.json()) else {
                    tracing::debug!(thread_id = %self.thread_id, "an unreadable frame");
                    return;
                };
                let Some(conversation) = self.conversation_mut() else {
                    tracing::debug!(thread_id = %self.thread_id, "a frame before the conversation is loaded");
                    return;
                };
                match conversation.mirror(&event, Utc::now()) {
                    Ok(true) => {
                        // The form between nodes leaves the UI stream's
                        // context out: this node's mirror supplies it.
                        let context = self.ui_context(&event);
                        self.publisher.relay(std::sync::Arc::new(frame.with_ui(context)))
                    }
                    Ok(false) => {}
                    Err(_) => {
                        tracing::debug!(thread_id = %self.thread_id, kind = frame.kind.as_str(), "a frame leaves a gap");
                        self.resync(ctx)
                    }
                }
            }
            Inbound::Presence { node, count } => {
                match count {
                    0 => self.others.remove(&node),
                    n => self.others.insert(node, n),
                };
                self.presence_changed(ctx);
            }
            Inbound::Command(Command::Cancel) => {
                if self.generation.is_some() {
                    self.cancel_here(ctx);
                }
            }
            Inbound::Command(Command::Released { epoch }) => self.released(epoch, ctx),
            Inbound::Command(Command::ThreadChanged) => self.reload_settings(ctx),
            Inbound::Command(Command::Deleted) => self.stop(StopReason::Deleted, false, ctx),
            Inbound::Command(Command::Stopped) => self.stop(StopReason::Stopped, false, ctx),
            Inbound::Lost => {
                self.linked = false;
                if self.role.stops_when_unlinked() {
                    // A mirror that misses frames cannot serve: its
                    // subscribers resume elsewhere, or here once linked.
                    self.publisher.close(StreamCode::Unavailable);
                    ctx.stop();
                }
            }
        }
    }
}

impl Handler<TakeOver> for ThreadActor {
    type Result = ();

    fn handle(&mut self, _: TakeOver, ctx: &mut Context<Self>) {
        if self.lease_ttl().is_none() || !self.role.may_take_over(self.generation.is_some()) {
            return;
        }
        let sent = std::time::Instant::now();
        ctx.wait(
            self.acquire(None)
                .into_actor(self)
                .then(move |epoch, act, _| match epoch {
                    Ok(Acquired::Taken(epoch)) => {
                        act.load().map(move |loaded, _, _| loaded.map(|l| Some((epoch, l)))).boxed_local()
                    }
                    Ok(Acquired::Held { .. }) => actix::fut::ready(Ok(None)).boxed_local(),
                    Err(e) => actix::fut::ready(Err(Load::Store(e))).boxed_local(),
                })
                .map(move |taken, act, ctx| match taken {
                    Ok(Some((epoch, (_, conversation)))) => {
                        act.hold(epoch, sent, ctx);
                        if let Loaded::Found { conversation: held, .. } = &mut act.loaded {
                            *held = conversation;
                        }
                        act.publisher.resync();
                        let running = act.conversation().and_then(Conversation::running).map(|m| m.id);
                        match running {
                            Some(id) => {
                                let handed =
                                    act.conversation().and_then(Conversation::running).is_some_and(|m| m.handed_over);
                                tracing::warn!(thread_id = %act.thread_id, message_id = %id, epoch, handed,
                                "took over an answer whose owner is gone");
                                let cut = if handed { Cut::Handoff } else { Cut::OwnerLost };
                                act.continue_found(cut, ctx);
                            }
                            // The owner's log holds its answer's end, which
                            // its final write did not reach the database:
                            // that state is written now, then let go.
                            None => match act.conversation().and_then(|c| c.messages().last()).cloned() {
                                Some(last) if last.role == crate::domain::Role::Assistant => {
                                    tracing::warn!(thread_id = %act.thread_id, message_id = %last.id, epoch,
                                        "took over an answer that had ended; its final state is written");
                                    act.write_final_then_release(last, ctx);
                                }
                                _ => {
                                    if let Some(lease) = act.role.stop_owning() {
                                        ctx.cancel_future(lease.timer);
                                        act.release(lease.fence);
                                    }
                                }
                            },
                        }
                    }
                    Ok(None) => {}
                    Err(e) => tracing::warn!(thread_id = %act.thread_id, error.message = %e, "could not take over"),
                }),
        );
    }
}
