//! The thread actor's lifecycle and its message handlers (the actor, its
//! state and its messages are in `thread.rs`; this file is its half that
//! reacts).

use super::*;

impl Actor for ThreadActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(256);
        // Nothing else runs until the conversation is loaded; messages wait
        // in the mailbox meanwhile.
        ctx.wait(self.load().map(|loaded, act, ctx| match loaded {
            Ok((Some(thread), mut conversation)) => {
                // (A node stopped between the last answer of a step and its
                // next step, or while the service ran a call: it goes on
                // now. In cluster mode the sweeper has the answer taken
                // over instead.)
                let due = conversation.awaiting().is_some_and(|m| crate::domain::turn::service_due(&m.calls));
                // (One node: an answer the last run left streaming, cut by
                // a crash, goes on, or ends `interrupted`.)
                let mut cut = act.lease_ttl().is_none()
                    && conversation.running().is_some()
                    && act.deps.take_cut_at_start(act.thread_id);
                if cut {
                    conversation.tail_unknown();
                }
                act.loaded = Loaded::Found { thread: Box::new(thread), conversation };
                act.touch(ctx);
                if due && act.lease_ttl().is_none() {
                    ctx.notify(ContinueAnswer);
                }
                if std::mem::take(&mut cut) {
                    act.continue_found(crate::domain::continuation::Cut::Restart, ctx);
                }
                // Cluster mode: the other nodes' counts come before any
                // subscriber is answered, so its `ready` counts them.
                if act.lease_ttl().is_some() {
                    let others = act.publisher.fanout().presence();
                    ctx.wait(others.into_actor(act).map(|others, act, ctx| act.others_counted(others, ctx)));
                }
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
                tracing::warn!(thread_id = %act.thread_id, error.message = %e, "could not load thread");
                act.linked = !matches!(e, mirror::Load::Unlinked);
                act.loaded = Loaded::Failed;
                ctx.run_later(std::time::Duration::ZERO, |_, ctx| ctx.stop());
            }
        }));
    }

    fn stopping(&mut self, _: &mut Context<Self>) -> Running {
        self.notices.stopped.do_send(ThreadStopped { thread_id: self.thread_id, incarnation: self.incarnation });
        Running::Stop
    }
}

impl StreamHandler<GenEvent> for ThreadActor {
    fn handle(&mut self, item: GenEvent, ctx: &mut Context<Self>) {
        // Cluster mode: while the lease runs late, nothing is published;
        // the events wait for a renewal, in order.
        if !self.held.is_empty() || self.lease_lapsing() {
            self.held.push_back(item);
            self.renew(ctx);
            return;
        }
        self.on_gen_event(item, ctx);
    }

    // The provider's stream ending is an event of the generation, not of
    // the actor: keep running.
    fn finished(&mut self, _: &mut Context<Self>) {}
}

impl ThreadActor {
    /// One event of a generation's provider stream (the stream's end is
    /// `None`: cut before the answer was complete).
    pub(super) fn on_gen_event(&mut self, item: GenEvent, ctx: &mut Context<Self>) {
        if self.generation.as_ref().map(|g| g.gen) != Some(item.gen) {
            return;
        }
        let event = item.event.unwrap_or_else(|| ProviderEvent::Failed {
            code: crate::model::FailureCode::UpstreamError,
            message: "the upstream stream ended before the answer was complete".to_owned(),
            cut: Some(crate::domain::continuation::Cut::ConnectionLost),
        });
        self.on_provider_event(event, ctx);
    }
}

impl Handler<StartGeneration> for ThreadActor {
    type Result = ResponseActFuture<Self, Result<Started, ThreadError>>;

    fn handle(&mut self, msg: StartGeneration, ctx: &mut Context<Self>) -> Self::Result {
        self.start_turn(msg.into(), ctx)
    }
}

impl Handler<AskAgain> for ThreadActor {
    type Result = ResponseActFuture<Self, Result<Started, ThreadError>>;

    fn handle(&mut self, msg: AskAgain, ctx: &mut Context<Self>) -> Self::Result {
        self.start_turn(msg.into(), ctx)
    }
}

impl ThreadActor {
    /// Starts the answer of a turn, a new question's or a regenerate's:
    /// one way for both (admission, the MCP listing, the lease in cluster
    /// mode).
    fn start_turn(
        &mut self,
        mut msg: Turn,
        ctx: &mut Context<Self>,
    ) -> ResponseActFuture<Self, Result<Started, ThreadError>> {
        // A thread with MCP servers: their tools are listed first (cached
        // briefly), and offered through every step of this turn.
        let servers = self.found().ok().filter(|(t, _)| !t.mcp_servers.is_empty() && msg.mcp_tools.is_none());
        if let Some((project_id, servers)) = servers.map(|(t, _)| (t.project_id, t.mcp_servers.clone())) {
            if self.admit_peek(&msg).is_ok() {
                let caller = self.deps.tool_caller.clone();
                let listing = async move { caller.offered_mcp_tools(project_id, &servers).await };
                return Box::pin(listing.into_actor(self).then(move |tools, act, ctx| {
                    msg.mcp_tools = Some(tools);
                    act.start_turn(msg, ctx)
                }));
            }
        }
        let admitted = self.admit(&msg);
        let answer = crate::domain::new_id();
        let slot = match (admitted, self.lease_ttl()) {
            (Err(e), _) => return Box::pin(actix::fut::ready(Err(e))),
            (Ok(slot), None) => return Box::pin(actix::fut::ready(self.begin(msg, slot, answer, ctx))),
            (Ok(slot), Some(_)) => slot,
        };
        // Cluster mode: the answer runs where the question arrived, under the
        // thread's lease; if another node holds it for an answer, the thread
        // is busy, at once. The conversation is read again from the
        // database, which is exact once nothing runs.
        self.start_taking(ctx);
        let store = self.deps.store.clone();
        let thread_id = self.thread_id;
        Box::pin(
            self.take_lease(answer)
                .then(move |taken, act, _| {
                    let load = async move {
                        match taken? {
                            Some(taken) => Ok(Some((taken, store.all_messages(thread_id).await?))),
                            None => Ok(None),
                        }
                    };
                    load.into_actor(act)
                })
                .map(move |acquired: Result<_, crate::store::StoreError>, act, ctx| {
                    act.taking_done();
                    match acquired {
                        Ok(Some((lease::Taken { epoch, sent }, messages))) => {
                            let conversation = Conversation::new(act.thread_id, messages);
                            // A shutdown began while the lease was taken:
                            // no answer starts now.
                            if act.deps.shutdown.is_draining() {
                                act.release(Fence { thread_id: act.thread_id, owner: act.deps.node_id.clone(), epoch });
                                return Err(ThreadError::ShuttingDown);
                            }
                            if conversation.running().is_some() {
                                // An answer of an owner that died: it is ended first.
                                ctx.notify(TakeOver);
                                let fence = Fence { thread_id: act.thread_id, owner: act.deps.node_id.clone(), epoch };
                                act.release(fence);
                                return Err(ThreadError::Busy);
                            }
                            // An answer awaits input (stored so by a node
                            // that let the lease go): the thread is busy.
                            let awaiting = conversation.awaiting().is_some();
                            if let Loaded::Found { conversation: held, .. } = &mut act.loaded {
                                *held = conversation;
                            }
                            if awaiting {
                                act.release(Fence { thread_id: act.thread_id, owner: act.deps.node_id.clone(), epoch });
                                return Err(ThreadError::Busy);
                            }
                            // A regenerate needs a question (the database's
                            // word: this node's mirror may lag).
                            if msg.question.is_none()
                                && act.conversation().and_then(Conversation::newest_question).is_none()
                            {
                                act.release(Fence { thread_id: act.thread_id, owner: act.deps.node_id.clone(), epoch });
                                return Err(ThreadError::NothingToAsk);
                            }
                            act.hold(epoch, sent, ctx);
                            act.begin(msg, slot, answer, ctx)
                        }
                        Ok(None) => Err(ThreadError::Busy),
                        Err(e) => Err(ThreadError::from_store(&e)),
                    }
                }),
        )
    }

    /// Whether `msg` would be refused at once (another project's caller, a
    /// busy thread), before the thread's MCP servers are listed for it.
    fn admit_peek(&self, msg: &Turn) -> Result<(), ThreadError> {
        let conversation = self.callers_conversation(msg)?;
        if self.generation.is_some() || conversation.running().is_some() || conversation.awaiting().is_some() {
            return Err(ThreadError::Busy);
        }
        Ok(())
    }

    /// The conversation, for a caller of the thread's project: a caller of
    /// another project learns nothing, not even that the thread is busy.
    fn callers_conversation(&self, msg: &Turn) -> Result<&Conversation, ThreadError> {
        let (thread, conversation) = self.found()?;
        match msg.project_id.is_some_and(|p| p != thread.project_id) {
            true => Err(ThreadError::NotFound),
            false => Ok(conversation),
        }
    }

    /// The checks before an answer starts; its generation slot.
    fn admit(&self, msg: &Turn) -> Result<crate::capacity::GenerationSlot, ThreadError> {
        let conversation = self.callers_conversation(msg)?;
        let (thread, _) = self.found()?;
        if !msg.tools.is_empty() {
            let all = crate::domain::tools::merged(&thread.tools, &msg.tools);
            crate::domain::tools::check(&all, thread.tool_choice.as_ref()).map_err(|e| ThreadError::BadTools(e.0))?;
        }
        if self.refuse_work || self.deps.shutdown.is_draining() {
            return Err(ThreadError::ShuttingDown);
        }
        // Running or being started here. (Whether it runs on another
        // node, the lease says: a mirror may be a frame behind.)
        // (An answer awaiting input keeps the thread busy too.)
        let running = conversation.running().is_some() || conversation.awaiting().is_some();
        match self.role.admits_question(self.generation.is_some(), running, self.linked) {
            Ok(()) => {}
            Err(NotNow::Busy) => return Err(ThreadError::Busy),
            Err(NotNow::Unlinked) => return Err(ThreadError::Unavailable),
        }
        // Refuse rather than accept what could not be stored.
        if !self.deps.db_healthy.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(ThreadError::Unavailable);
        }
        Ok(self.deps.capacity.admit_generation(thread.project_id)?)
    }

    /// Starts the answer `answer` (under the lease, in cluster mode).
    fn begin(
        &mut self,
        msg: Turn,
        slot: crate::capacity::GenerationSlot,
        answer: Uuid,
        ctx: &mut Context<Self>,
    ) -> Result<Started, ThreadError> {
        let accepted = std::time::Instant::now();
        let (thread, _) = self.found()?;
        let model =
            msg.model.or_else(|| thread.model.clone()).unwrap_or_else(|| self.deps.provider.default_model().to_owned());
        let thread_tools = thread.tools.clone();
        // A regenerate that names its question asks the newest one again
        // when it is that question.
        let question = match msg.question {
            Some(q)
                if msg.again_if_newest
                    && self
                        .conversation()
                        .and_then(Conversation::newest_question)
                        .is_some_and(|m| m.content() == q) =>
            {
                None
            }
            question => question,
        };
        let again = question.is_none();
        // An untitled thread's first question titles it.
        let title = question.as_deref().filter(|_| self.untitled()).map(crate::domain::title::title_of);
        let conversation = self.conversation_mut().ok_or(ThreadError::NotFound)?;
        let mut asked = match question {
            Some(content) => conversation.ask(content, model.clone(), answer, Utc::now()),
            None => conversation.ask_again(model.clone(), answer, Utc::now()).ok_or(ThreadError::NothingToAsk)?,
        };
        // The answer's own tools: the question's, and its MCP servers'
        // (but one of the thread's or the question's own name).
        let mut own = msg.tools;
        for tool in msg.mcp_tools.unwrap_or_default() {
            if !own.iter().chain(&thread_tools).any(|t| t.name == tool.name) {
                own.push(tool);
            }
        }
        if !own.is_empty() {
            conversation.offer_own_tools(answer, own.clone());
            asked.assistant.tools = own;
        }
        let (mut ack, committed) = oneshot::channel();
        // A regenerate's question is stored already.
        let mut ops = Vec::with_capacity(3);
        if !again {
            ops.push(self.fenced(WriteOp::Insert(asked.user.clone())));
        }
        ops.push(self.fenced(WriteOp::Insert(asked.assistant.clone())));
        // The title is written with the question (one transaction, through
        // the one writer), and told once both are stored.
        if let Some(title) = title {
            let op = self.title_from_question(title, ack, ctx);
            ack = op.1;
            ops.push(op.0);
        }
        self.deps.persistence.do_send(Write { ops, ack: Some(ack) });
        self.publish(&asked.events, Some(asked.assistant.id));

        // The model starts at once, in parallel with the commit: time to
        // first token does not wait for the disk. If the commit fails the
        // handler sends `AbortGeneration`.
        let max_tokens = msg.max_tokens.unwrap_or(self.deps.settings.provider.max_tokens);
        let call = ModelCall { model, max_tokens, answer: asked.assistant.id, continuation: None };
        self.start_stream(call, slot, accepted, ctx)?;
        tracing::info!(thread_id = %self.thread_id, message_id = %asked.assistant.id, "generation started");
        Ok(Started { user_message: asked.user, assistant_message: asked.assistant, committed })
    }

    /// Starts a model call for the running answer `answer` (its first step
    /// or a later one): the provider's stream comes to the actor as
    /// `GenEvent`s, and checkpoints run while it does.
    pub(super) fn start_stream(
        &mut self,
        call: ModelCall,
        slot: crate::capacity::GenerationSlot,
        accepted: std::time::Instant,
        ctx: &mut Context<Self>,
    ) -> Result<(), ThreadError> {
        let ModelCall { model, max_tokens, answer, continuation } = call;
        let request = self.model_request(model, max_tokens, continuation).ok_or(ThreadError::NotFound)?;
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
        let awaiting_first_delta = Some(accepted);
        self.generation = Some(Generation {
            gen,
            stream,
            checkpoints,
            answer,
            max_tokens,
            awaiting_first_delta,
            progressed: false,
            _slot: slot,
        });
        self.set_generating(true);
        self.touch(ctx);
        Ok(())
    }
}

impl Handler<AbortGeneration> for ThreadActor {
    type Result = ();

    fn handle(&mut self, msg: AbortGeneration, ctx: &mut Context<Self>) {
        let running = self.conversation().and_then(Conversation::running).map(|m| m.id);
        if running == Some(msg.assistant_message_id) {
            let error = MessageError {
                code: crate::domain::codes::MessageErrorCode::Unavailable,
                message: "the message could not be stored".into(),
            };
            self.finish(MessageStatus::Failed, Some(error), ctx);
        }
        // Neither message reached the database: forget them.
        if let Some(conversation) = self.conversation_mut() {
            conversation.forget(msg.assistant_message_id);
        }
    }
}

impl Handler<FindRunning> for ThreadActor {
    type Result = Result<Option<RunningAnswer>, ThreadError>;

    fn handle(&mut self, _: FindRunning, _: &mut Context<Self>) -> Self::Result {
        let (_, conversation) = self.found()?;
        let messages = conversation.messages();
        let Some(answer) = conversation.running() else { return Ok(None) };
        // An answer always follows its question (a regenerate's, an
        // earlier answer to it): from the end of the message before it, a
        // subscription replays the answer from its start.
        let question = messages.len().checked_sub(2).map(|i| &messages[i]).ok_or(ThreadError::NotGenerating)?;
        Ok(Some(RunningAnswer { answer: answer.id, question: crate::domain::event::end_cursor(question) }))
    }
}

impl Handler<Subscribe> for ThreadActor {
    type Result = Result<Subscription, ThreadError>;

    fn handle(&mut self, msg: Subscribe, ctx: &mut Context<Self>) -> Self::Result {
        // A mirror cut off from the other nodes would serve nothing: the
        // tab is told at once, and resumes once the link is back.
        if !self.role.serves(self.linked, self.publisher.fanout().linked()) {
            return Err(ThreadError::Unavailable);
        }
        // Stopping (a shutdown's last steps): a stream that started now
        // would get no closing event.
        if self.refuse_work {
            return Err(ThreadError::ShuttingDown);
        }
        let (_, conversation) = self.found()?;
        let replay = conversation.replay(msg.from);
        let running = conversation.running().map(|m| m.id);
        let awaiting = conversation.awaiting().map(|m| m.id);
        self.subscribers.insert(msg.session_id);
        let ready = Event::Ready {
            thread_id: self.thread_id,
            cursor: replay.cursor,
            status: match (running, awaiting) {
                (Some(_), _) => ThreadStatus::Generating,
                (None, Some(_)) => ThreadStatus::AwaitingInput,
                (None, None) => ThreadStatus::Idle,
            },
            active_message_id: running.or(awaiting),
            subscribers: self.watching(),
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
        self.stop(msg.reason, true, ctx);
    }
}

impl ThreadActor {
    /// Stops: a running answer ends, subscribers are told why. A deletion
    /// or an operator's stop is told to the thread's other nodes too
    /// (`tell_others`), a shutdown is this node's alone.
    pub(super) fn stop(&mut self, reason: StopReason, tell_others: bool, ctx: &mut Context<Self>) {
        let (status, error, code, command) = match reason {
            StopReason::Deleted => {
                (MessageStatus::Cancelled, None, StreamCode::ThreadDeleted, Some(crate::broadcast::Command::Deleted))
            }
            StopReason::Stopped => {
                (MessageStatus::Cancelled, None, StreamCode::ThreadStopped, Some(crate::broadcast::Command::Stopped))
            }
            StopReason::ShuttingDown => {
                (MessageStatus::Interrupted, Some(MessageError::interrupted()), StreamCode::ShuttingDown, None)
            }
        };
        if let Some(command) = command.filter(|_| tell_others) {
            self.publisher.fanout().command(command);
        }
        self.refuse_work = true;
        // (Cluster mode: a shutdown hands the answer over, if it may be
        // continued, rather than ending it.)
        let handed = reason == StopReason::ShuttingDown && self.generation.is_some() && self.hand_over(ctx);
        if self.generation.is_some() && !handed {
            self.finish(status, error, ctx);
        }
        // This node's subscribers leave the other nodes' counts (a node
        // that stops takes its entries with it; one that dies leaves the
        // live set, and its entries stop counting).
        if !self.subscribers.is_empty() {
            self.subscribers.clear();
            self.publisher.fanout().share_presence(0);
        }
        self.publisher.close(code);
        ctx.stop();
    }
}

impl Handler<RefreshPresence> for ThreadActor {
    type Result = ();

    fn handle(&mut self, _: RefreshPresence, ctx: &mut Context<Self>) {
        let others = self.publisher.fanout().presence();
        ctx.spawn(others.into_actor(self).map(|others, act, ctx| act.others_counted(others, ctx)));
    }
}

impl ThreadActor {
    /// The other nodes' counts of the thread's subscribers, as read.
    fn others_counted(&mut self, others: Vec<(String, usize)>, ctx: &mut Context<Self>) {
        self.others = others.into_iter().collect();
        self.presence_changed(ctx);
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
            owned_epoch: self.role.lease().map(|l| l.fence.epoch),
            running_calls: self.running_calls(),
        })
    }
}
