//! The thread actor's lifecycle and its message handlers (the actor, its
//! state and its messages are in `thread.rs`; this file is its half that
//! reacts).

use super::*;

impl Actor for ThreadActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(256);
        let store = self.deps.store.clone();
        let thread_id = self.thread_id;
        // Nothing else runs until the conversation is loaded; messages wait
        // in the mailbox meanwhile.
        ctx.wait(
            async move {
                let thread = store.find_thread(thread_id).await?;
                let messages = store.all_messages(thread_id).await?;
                Ok::<_, crate::store::StoreError>((thread, messages))
            }
            .into_actor(self)
            .map(|loaded, act, ctx| match loaded {
                Ok((Some(thread), messages)) => {
                    act.loaded = Loaded::Found { thread, conversation: Conversation::new(act.thread_id, messages) };
                    act.touch(ctx);
                }
                // Either way the actor stops, but only after answering what
                // already waits in its mailbox (items run after the mailbox):
                // a request that raced a deletion hears `NotFound`, not a
                // dropped message.
                Ok((None, _)) => {
                    tracing::debug!(thread_id = %act.thread_id, "thread not found; actor stops");
                    act.loaded = Loaded::Missing;
                    ctx.run_later(std::time::Duration::ZERO, |_, ctx| ctx.stop());
                }
                Err(e) => {
                    tracing::error!(thread_id = %act.thread_id, error.message = %e, "could not load thread");
                    act.loaded = Loaded::Failed;
                    ctx.run_later(std::time::Duration::ZERO, |_, ctx| ctx.stop());
                }
            }),
        );
    }

    fn stopping(&mut self, _: &mut Context<Self>) -> Running {
        self.registry.do_send(ThreadStopped { thread_id: self.thread_id, incarnation: self.incarnation });
        Running::Stop
    }
}

impl StreamHandler<GenEvent> for ThreadActor {
    fn handle(&mut self, item: GenEvent, ctx: &mut Context<Self>) {
        if self.generation.as_ref().map(|g| g.gen) != Some(item.gen) {
            return;
        }
        let event = item.event.unwrap_or_else(|| ProviderEvent::Failed {
            code: crate::model::FailureCode::UpstreamError,
            message: "the upstream stream ended before the answer was complete".to_owned(),
        });
        self.on_provider_event(event, ctx);
    }

    // The provider's stream ending is an event of the generation, not of
    // the actor: keep running.
    fn finished(&mut self, _: &mut Context<Self>) {}
}

impl Handler<StartGeneration> for ThreadActor {
    type Result = Result<Started, ThreadError>;

    fn handle(&mut self, msg: StartGeneration, ctx: &mut Context<Self>) -> Self::Result {
        // First: a caller of another project learns nothing, not even
        // that this thread is busy.
        let (thread, _) = self.found()?;
        if msg.project_id.is_some_and(|p| p != thread.project_id) {
            return Err(ThreadError::NotFound);
        }
        if self.refuse_work {
            return Err(ThreadError::ShuttingDown);
        }
        if self.generation.is_some() {
            return Err(ThreadError::Busy);
        }
        // Refuse rather than accept what could not be stored.
        if !self.deps.db_healthy.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(ThreadError::Unavailable);
        }
        let slot = self.deps.capacity.admit_generation(thread.project_id)?;
        let model =
            msg.model.or_else(|| thread.model.clone()).unwrap_or_else(|| self.deps.provider.default_model().to_owned());
        let conversation = self.conversation_mut().ok_or(ThreadError::NotFound)?;
        let asked = conversation.ask(msg.content, model.clone(), Utc::now());
        let (ack, committed) = oneshot::channel();
        self.deps.persistence.do_send(Write {
            ops: vec![WriteOp::Insert(asked.user.clone()), WriteOp::Insert(asked.assistant.clone())],
            ack: Some(ack),
        });
        self.publish(&asked.events);

        // The model starts at once, in parallel with the commit: time to
        // first token does not wait for the disk. If the commit fails the
        // handler sends `AbortGeneration`.
        let max_tokens = msg.max_tokens.unwrap_or(self.deps.settings.provider.max_tokens);
        let request = self.model_request(model, max_tokens).ok_or(ThreadError::NotFound)?;
        let gen = self.next_gen;
        self.next_gen += 1;
        let events = self
            .deps
            .provider
            .stream(request)
            .map(move |e| GenEvent { gen, event: Some(e) })
            .chain(stream::once(async move { GenEvent { gen, event: None } }));
        let stream = ctx.add_stream(events);
        // Streaming text is checkpointed once per flush interval, and only
        // while an answer runs: an idle actor runs no such timer.
        let checkpoints = ctx.run_interval(self.deps.settings.database.flush_interval(), |act, _| act.checkpoint());
        self.generation = Some(Generation { gen, stream, checkpoints, _slot: slot });
        self.set_generating(true);
        self.touch(ctx);
        tracing::info!(thread_id = %self.thread_id, message_id = %asked.assistant.id, "generation started");
        Ok(Started { user_message: asked.user, assistant_message: asked.assistant, committed })
    }
}

impl Handler<AbortGeneration> for ThreadActor {
    type Result = ();

    fn handle(&mut self, msg: AbortGeneration, ctx: &mut Context<Self>) {
        let running = self.conversation().and_then(Conversation::running).map(|m| m.id);
        if running == Some(msg.assistant_message_id) {
            let error = MessageError { code: "unavailable".into(), message: "the message could not be stored".into() };
            self.finish(MessageStatus::Failed, Some(error), ctx);
        }
        // Neither message reached the database: forget them.
        if let Some(conversation) = self.conversation_mut() {
            conversation.forget(msg.assistant_message_id);
        }
    }
}

impl Handler<Cancel> for ThreadActor {
    type Result = Result<Uuid, ThreadError>;

    fn handle(&mut self, _: Cancel, ctx: &mut Context<Self>) -> Self::Result {
        let (_, conversation) = self.found()?;
        let id = conversation.running().map(|m| m.id).ok_or(ThreadError::NotGenerating)?;
        self.finish(MessageStatus::Cancelled, None, ctx);
        Ok(id)
    }
}

impl Handler<Subscribe> for ThreadActor {
    type Result = Result<Subscription, ThreadError>;

    fn handle(&mut self, msg: Subscribe, ctx: &mut Context<Self>) -> Self::Result {
        let (_, conversation) = self.found()?;
        let replay = conversation.replay(msg.from);
        let running = conversation.running().map(|m| m.id);
        self.subscribers.insert(msg.session_id);
        let ready = Event::Ready {
            thread_id: self.thread_id,
            cursor: replay.cursor,
            status: if running.is_some() { ThreadStatus::Generating } else { ThreadStatus::Idle },
            active_message_id: running,
            subscribers: self.subscribers.len(),
        };
        let mut events = vec![ready];
        if let Some(code) = replay.notice {
            events.push(Event::error(self.thread_id, replay.cursor, code, code.message()));
        }
        events.extend(replay.events);
        let frames = self.encode(&events);
        let signals = self.publisher.subscribe();
        self.presence_changed(ctx);
        self.touch(ctx);
        Ok(Subscription {
            replay: Missed { frames, head: self.publisher.head() },
            signals,
            fanout_id: self.publisher.id(),
            thread: ctx.address(),
        })
    }
}

impl Handler<CatchUp> for ThreadActor {
    type Result = Result<Missed, ThreadError>;

    fn handle(&mut self, msg: CatchUp, _: &mut Context<Self>) -> Self::Result {
        let (_, conversation) = self.found()?;
        let events = conversation.catch_up(msg.from);
        Ok(Missed { frames: self.encode(&events), head: self.publisher.head() })
    }
}

impl Handler<Unsubscribe> for ThreadActor {
    type Result = ();

    fn handle(&mut self, msg: Unsubscribe, ctx: &mut Context<Self>) {
        if self.subscribers.remove(&msg.session_id) {
            self.presence_changed(ctx);
        }
        self.touch(ctx);
    }
}

impl Handler<Stop> for ThreadActor {
    type Result = ();

    fn handle(&mut self, msg: Stop, ctx: &mut Context<Self>) {
        let (status, error, code) = match msg.reason {
            StopReason::Deleted => (MessageStatus::Cancelled, None, StreamCode::ThreadDeleted),
            StopReason::Stopped => (MessageStatus::Cancelled, None, StreamCode::ThreadStopped),
            StopReason::ShuttingDown => {
                (MessageStatus::Interrupted, Some(MessageError::interrupted()), StreamCode::ShuttingDown)
            }
        };
        self.refuse_work = true;
        self.finish(status, error, ctx);
        self.publisher.close(code);
        ctx.stop();
    }
}

impl Handler<LiveMessages> for ThreadActor {
    type Result = MessageResult<LiveMessages>;

    fn handle(&mut self, msg: LiveMessages, _: &mut Context<Self>) -> Self::Result {
        let live = self
            .conversation()
            .map(|c| c.messages().iter().rev().filter(|m| msg.ids.contains(&m.id)).cloned().collect::<Vec<_>>());
        MessageResult(live.unwrap_or_default())
    }
}

impl Handler<ThreadStatusQuery> for ThreadActor {
    type Result = MessageResult<ThreadStatusQuery>;

    fn handle(&mut self, _: ThreadStatusQuery, _: &mut Context<Self>) -> Self::Result {
        let conversation = self.conversation();
        MessageResult(StatusReport {
            thread_id: self.thread_id,
            subscribers: self.subscribers.len(),
            generating: self.generation.is_some(),
            active_message_id: conversation.and_then(Conversation::running).map(|m| m.id),
            mailbox_depth: self.publisher.backlog(),
            last_activity: self.last_activity,
            messages_in_memory: conversation.map_or(0, |c| c.messages().len()),
        })
    }
}
