//! ThreadActor: one per live thread. Owns the thread's conversation (all
//! its messages, loaded when the actor starts), at most one running
//! generation, and the thread's fan-out.
//!
//! Who sends it what: HTTP handlers and WebSocket sessions send
//! `StartGeneration` and `Cancel`; sessions send `Subscribe`, `CatchUp` and
//! `Unsubscribe`; the registry sends `Stop`; admin and history handlers
//! ask `ThreadStatusQuery` and `LiveMessage`. The provider's stream arrives
//! as a stream of `GenEvent`s on the actor's own context.
//!
//! For each chunk it appends the text to the block, encodes one frame and
//! publishes it: it never waits for a subscriber and never touches the
//! database on that path. A timer sends the persistence actor a checkpoint
//! of the streaming message once per flush interval when it changed.
//!
//! It keeps running when every subscriber has left; it stops after the idle
//! timeout with no subscribers and no generation, or when told to.

use std::{collections::HashSet, sync::Arc};

use actix::prelude::*;
use chrono::Utc;
use futures_util::{stream, StreamExt};
use tokio::sync::oneshot;
use uuid::Uuid;

use super::{
    persistence::{Checkpoint, Write, WriteError},
    registry::{GenerationChanged, Registry, ThreadStopped},
    Deps, ThreadError,
};
use crate::{
    broadcast::{local::LocalFanout, Fanout, Signal, SignalStream},
    domain::{
        cursor::{Cursor, Resume},
        event::{end_cursor, Event, ThreadStatus},
        frame::Frame,
        new_id, Block, BlockKind, Message, MessageError, MessageStatus, Role, Thread, Usage,
    },
    model::{ChatTurn, FailureCode, ModelRequest, ProviderEvent},
    store::WriteOp,
};

/// At most one `thread.presence` event per thread this often.
const PRESENCE_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

// ----- messages -------------------------------------------------------

/// Starts a generation answering `content`.
#[derive(Message)]
#[rtype(result = "Result<Started, ThreadError>")]
pub struct StartGeneration {
    /// The project the caller named: the thread must be of it (else
    /// `NotFound`), so a live actor answers without a database read.
    pub project_id: Option<Uuid>,
    pub content: String,
    pub model: Option<String>,
    pub max_tokens: Option<u32>,
}

pub struct Started {
    pub user_message: Message,
    pub assistant_message: Message,
    /// Answered once the user message is committed.
    pub committed: oneshot::Receiver<Result<(), WriteError>>,
}

/// Ends a generation whose user message could not be stored.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AbortGeneration {
    pub assistant_message_id: Uuid,
}

/// Cancels the running generation; answers its message id.
#[derive(Message)]
#[rtype(result = "Result<Uuid, ThreadError>")]
pub struct Cancel;

/// A new subscriber, fresh (`from: None`) or resuming from a cursor.
#[derive(Message)]
#[rtype(result = "Result<Subscription, ThreadError>")]
pub struct Subscribe {
    pub session_id: u64,
    pub from: Resume,
}

pub struct Subscription {
    /// Frames for this subscriber alone: `ready`, maybe `error`
    /// (`cursor_invalid`), then what it has not seen yet.
    pub frames: Vec<Frame>,
    /// Everything published from now on.
    pub signals: SignalStream,
    /// The sequence number `frames` bring the subscriber up to.
    pub head_seq: u64,
    /// Which ring `signals` reads (`Fanout::id`).
    pub fanout_id: u64,
    /// The actor to send `CatchUp`, `Unsubscribe` and commands to.
    pub thread: Addr<ThreadActor>,
}

/// A subscriber fell behind its stream: what it missed after `from`, and
/// the sequence number those frames bring it up to.
#[derive(Message)]
#[rtype(result = "Result<CatchUpReply, ThreadError>")]
pub struct CatchUp {
    pub from: Option<Cursor>,
}

pub struct CatchUpReply {
    pub frames: Vec<Frame>,
    pub head_seq: u64,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Unsubscribe {
    pub session_id: u64,
}

/// Why a thread actor is told to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The thread was deleted.
    Deleted,
    /// An operator stopped the actor.
    Stopped,
    /// The process is shutting down.
    ShuttingDown,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Stop {
    pub reason: StopReason,
}

/// These messages as the actor holds them now: their live text, or their
/// final state before its write is committed.
#[derive(Message)]
#[rtype(result = "Vec<Message>")]
pub struct LiveMessages {
    pub ids: Vec<Uuid>,
}

#[derive(Message)]
#[rtype(result = "StatusReport")]
pub struct ThreadStatusQuery;

/// What operators see of a live thread actor.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct StatusReport {
    pub thread_id: Uuid,
    pub subscribers: usize,
    pub generating: bool,
    pub active_message_id: Option<Uuid>,
    /// Frames in the fan-out ring not yet read by the slowest relay.
    pub mailbox_depth: usize,
    pub last_activity: chrono::DateTime<Utc>,
    pub messages_in_memory: usize,
}

/// One event of generation `gen`; `None` when the provider's stream ended.
pub struct GenEvent {
    gen: u64,
    event: Option<ProviderEvent>,
}

// ----- actor ----------------------------------------------------------

struct Generation {
    gen: u64,
    handle: SpawnHandle,
    /// Held while the generation runs: counts against the project's and
    /// the node's concurrent generations.
    _slot: crate::capacity::GenerationSlot,
}

pub struct ThreadActor {
    thread_id: Uuid,
    incarnation: u64,
    deps: Arc<Deps>,
    registry: Addr<Registry>,
    refuse_work: bool,
    thread: Option<Thread>,
    /// Loading the conversation failed (the database was unavailable):
    /// requests are answered `Unavailable`, not `NotFound`.
    load_failed: bool,
    messages: Vec<Message>,
    generation: Option<Generation>,
    next_gen: u64,
    fanout: LocalFanout,
    seq: u64,
    subscribers: HashSet<u64>,
    /// The subscriber count last published, and whether a publication is
    /// already scheduled (see `presence_changed`).
    presence_published: usize,
    presence_scheduled: bool,
    idle_timer: Option<SpawnHandle>,
    dirty: bool,
    last_activity: chrono::DateTime<Utc>,
}

impl ThreadActor {
    pub fn new(thread_id: Uuid, incarnation: u64, deps: Arc<Deps>, registry: Addr<Registry>, closing: bool) -> Self {
        let capacity = deps.settings.streaming.broadcast_capacity;
        ThreadActor {
            thread_id,
            incarnation,
            deps,
            registry,
            refuse_work: closing,
            thread: None,
            load_failed: false,
            messages: Vec::new(),
            generation: None,
            next_gen: 1,
            fanout: LocalFanout::new(capacity),
            seq: 0,
            subscribers: HashSet::new(),
            presence_published: 0,
            presence_scheduled: false,
            idle_timer: None,
            dirty: false,
            last_activity: Utc::now(),
        }
    }

    /// The thread, once loaded; why not otherwise.
    fn loaded(&self) -> Result<&Thread, ThreadError> {
        match (&self.thread, self.load_failed) {
            (Some(thread), _) => Ok(thread),
            (None, true) => Err(ThreadError::Unavailable),
            (None, false) => Err(ThreadError::NotFound),
        }
    }

    fn active(&self) -> Option<&Message> {
        self.generation.as_ref().and_then(|_| self.messages.last())
    }

    fn publish(&mut self, event: &Event, text_block: bool) {
        self.seq += 1;
        let frame = Frame::encode(event, self.seq, text_block);
        self.fanout.publish(Signal::Frame(Arc::new(frame)));
    }

    /// Tells subscribers the count changed, at most once per
    /// `PRESENCE_EVERY`: a hundred tabs joining or leaving at once (a
    /// reconnect storm) is one `thread.presence` event, not one per change
    /// to each of the others, which grew with the square of the count.
    fn presence_changed(&mut self, ctx: &mut Context<Self>) {
        if self.presence_scheduled {
            return;
        }
        self.presence_scheduled = true;
        ctx.run_later(PRESENCE_EVERY, |act, _| {
            act.presence_scheduled = false;
            let count = act.subscribers.len();
            if count != act.presence_published {
                act.presence_published = count;
                act.fanout.publish(Signal::Presence(count));
            }
        });
    }

    /// The cursor right after the last message that is not running.
    fn head_cursor(&self) -> Option<Cursor> {
        let settled =
            if self.generation.is_some() { self.messages.len().saturating_sub(1) } else { self.messages.len() };
        self.messages[..settled].last().map(end_cursor)
    }

    /// The events a subscriber at `from` has not seen, and whether `from`
    /// named no message of this thread.
    fn replay(&self, from: Option<Cursor>) -> (Vec<Event>, bool) {
        let fresh = || match self.active() {
            Some(m) => Event::whole_message(m),
            None => Vec::new(),
        };
        let Some(c) = from else { return (fresh(), false) };
        let Some(i) = self.messages.iter().position(|m| m.id == c.message_id) else {
            return (fresh(), true);
        };
        let m = &self.messages[i];
        let mut out = Vec::new();
        if m.role == Role::Assistant {
            let n = m.blocks.len();
            let valid =
                c.block < n && m.blocks[c.block].text.is_char_boundary(c.offset) || c.block == n && c.offset == 0;
            if !valid {
                return (fresh(), true);
            }
            if c.block < n {
                out.extend(Event::describe_message(m, c.block, c.offset, c.offset == 0 && c.block == 0));
            } else if n == 0 && m.is_finished() {
                // `M:0:0` of an empty message is both `started` and
                // `completed`: re-send the completion rather than lose it.
                out.push(Event::completed(m));
            }
        }
        for later in &self.messages[i + 1..] {
            out.extend(Event::whole_message(later));
        }
        (out, false)
    }

    fn encode_all(&self, events: &[Event]) -> Vec<Frame> {
        events
            .iter()
            .map(|e| {
                let text = match e {
                    Event::MessageDelta { message_id, block, .. } => self.block_is_text(*message_id, *block),
                    _ => false,
                };
                Frame::encode(e, 0, text)
            })
            .collect()
    }

    fn block_is_text(&self, message_id: Uuid, block: usize) -> bool {
        self.messages
            .iter()
            .rev()
            .find(|m| m.id == message_id)
            .and_then(|m| m.blocks.get(block))
            .is_some_and(|b| b.kind == BlockKind::Text)
    }

    fn touch(&mut self, ctx: &mut Context<Self>) {
        self.last_activity = Utc::now();
        if let Some(t) = self.idle_timer.take() {
            ctx.cancel_future(t);
        }
        if self.subscribers.is_empty() && self.generation.is_none() {
            let timeout = self.deps.settings.streaming.idle_timeout();
            self.idle_timer = Some(ctx.run_later(timeout, |act, ctx| {
                if act.subscribers.is_empty() && act.generation.is_none() {
                    tracing::debug!(thread_id = %act.thread_id, "thread actor idle; stopping");
                    ctx.stop();
                }
            }));
        }
    }

    fn set_generating(&self, generating: bool) {
        self.registry.do_send(GenerationChanged {
            thread_id: self.thread_id,
            incarnation: self.incarnation,
            generating,
        });
    }

    fn model_request(&self, model: String, max_tokens: u32) -> ModelRequest {
        let settled = &self.messages[..self.messages.len().saturating_sub(1)];
        ModelRequest {
            model,
            system: self.thread.as_ref().and_then(|t| t.system.clone()),
            turns: settled
                .iter()
                .filter(|m| m.blocks.iter().any(|b| !b.text.is_empty()))
                .map(|m| ChatTurn { role: m.role, blocks: m.blocks.clone() })
                .collect(),
            max_tokens,
        }
    }

    /// Ends the running generation with `status`; the text so far is kept.
    fn finish(&mut self, status: MessageStatus, error: Option<MessageError>, ctx: &mut Context<Self>) {
        let Some(generation) = self.generation.take() else { return };
        ctx.cancel_future(generation.handle);
        let Some(message) = self.messages.last_mut() else { return };
        message.status = status;
        message.error = error;
        message.completed_at = Some(Utc::now());
        let message = message.clone();
        self.deps.persistence.do_send(Checkpoint { message: message.clone() });
        self.dirty = false;
        self.publish(&Event::completed(&message), false);
        self.set_generating(false);
        tracing::info!(thread_id = %self.thread_id, message_id = %message.id, status = ?status, "generation ended");
        self.touch(ctx);
    }

    fn on_provider_event(&mut self, event: ProviderEvent, ctx: &mut Context<Self>) {
        let thread_id = self.thread_id;
        let Some(message) = self.messages.last_mut() else { return };
        let id = message.id;
        match event {
            ProviderEvent::Started { input_tokens } => {
                if let Some(n) = input_tokens {
                    message.usage.input_tokens = n;
                }
            }
            ProviderEvent::BlockStart { index, kind, id: block_id, name } => {
                if index != message.blocks.len() {
                    let error = format!("upstream opened block {index} out of order");
                    return self.fail(FailureCode::UpstreamError, error, ctx);
                }
                message.blocks.push(Block { id: block_id.clone(), name: name.clone(), ..Block::new(kind) });
                let event = Event::MessageBlock {
                    thread_id,
                    cursor: Some(Cursor::new(id, index, 0)),
                    message_id: id,
                    block: index,
                    kind,
                    id: block_id,
                    name,
                };
                self.dirty = true;
                self.publish(&event, false);
            }
            ProviderEvent::Delta { index, text } => {
                let Some(block) = message.blocks.get_mut(index) else {
                    return self.fail(
                        FailureCode::UpstreamError,
                        format!("upstream wrote to unknown block {index}"),
                        ctx,
                    );
                };
                if text.is_empty() {
                    return;
                }
                let offset = block.text.len();
                block.text.push_str(&text);
                let is_text = block.kind == BlockKind::Text;
                let event = Event::MessageDelta {
                    thread_id,
                    cursor: Some(Cursor::new(id, index, offset + text.len())),
                    message_id: id,
                    block: index,
                    offset,
                    text,
                };
                self.deps.metrics.chunks_in.inc();
                self.dirty = true;
                self.publish(&event, is_text);
            }
            ProviderEvent::Signature { index, signature } => {
                if let Some(block) = message.blocks.get_mut(index) {
                    block.signature.get_or_insert_with(String::new).push_str(&signature);
                }
            }
            ProviderEvent::Usage { input_tokens, output_tokens } => {
                if let Some(n) = input_tokens {
                    message.usage.input_tokens = n;
                }
                if let Some(n) = output_tokens {
                    message.usage.output_tokens = n;
                }
            }
            ProviderEvent::StopReason { stop_reason } => message.stop_reason = Some(stop_reason),
            ProviderEvent::Stop { stop_reason } => {
                if stop_reason.is_some() {
                    message.stop_reason = stop_reason;
                }
                self.finish(MessageStatus::Complete, None, ctx);
            }
            ProviderEvent::Failed { code, message } => self.fail(code, message, ctx),
        }
    }

    fn fail(&mut self, code: FailureCode, message: String, ctx: &mut Context<Self>) {
        tracing::warn!(thread_id = %self.thread_id, code = code.as_str(), error.message = %message, "generation failed");
        let error = MessageError { code: code.as_str().to_owned(), message };
        self.finish(MessageStatus::Failed, Some(error), ctx);
    }

    fn checkpoint(&mut self) {
        if !self.dirty || self.generation.is_none() {
            return;
        }
        if let Some(m) = self.messages.last() {
            self.deps.persistence.do_send(Checkpoint { message: m.clone() });
        }
        self.dirty = false;
    }
}

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
                    act.thread = Some(thread);
                    act.messages = messages;
                    act.touch(ctx);
                }
                // Either way the actor stops, but only after answering what
                // already waits in its mailbox (items run after the mailbox):
                // a request that raced a deletion hears `NotFound`, not a
                // dropped message.
                Ok((None, _)) => {
                    tracing::debug!(thread_id = %act.thread_id, "thread not found; actor stops");
                    ctx.run_later(std::time::Duration::ZERO, |_, ctx| ctx.stop());
                }
                Err(e) => {
                    tracing::error!(thread_id = %act.thread_id, error.message = %e, "could not load thread");
                    act.load_failed = true;
                    ctx.run_later(std::time::Duration::ZERO, |_, ctx| ctx.stop());
                }
            }),
        );
        let interval = self.deps.settings.database.flush_interval();
        ctx.run_interval(interval, |act, _| act.checkpoint());
        // Twice per heartbeat period: a subscriber sent nothing for half a
        // period gets its keep-alive (relay), so no idle gap exceeds one period
        // (ticking once per period, a tick a hair early would skip and
        // leave two periods: 30 s against the contract's 15).
        ctx.run_interval(self.deps.settings.streaming.heartbeat() / 2, |act, _| {
            if !act.subscribers.is_empty() {
                act.fanout.publish(Signal::Tick);
            }
        });
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
        match item.event {
            Some(event) => self.on_provider_event(event, ctx),
            None => self.fail(
                FailureCode::UpstreamError,
                "the upstream stream ended before the answer was complete".to_owned(),
                ctx,
            ),
        }
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
        let thread = self.loaded()?;
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
        let now = Utc::now();
        let position = self.messages.last().map_or(0, |m| m.position + 1);
        let user = Message {
            id: new_id(),
            thread_id: self.thread_id,
            position,
            role: Role::User,
            blocks: vec![Block::text(msg.content)],
            status: MessageStatus::Complete,
            model: None,
            stop_reason: None,
            usage: Usage::default(),
            error: None,
            created_at: now,
            completed_at: Some(now),
        };
        let assistant = Message {
            id: new_id(),
            position: position + 1,
            role: Role::Assistant,
            blocks: Vec::new(),
            status: MessageStatus::Streaming,
            model: Some(model.clone()),
            completed_at: None,
            ..user.clone()
        };
        let (ack, committed) = oneshot::channel();
        self.deps.persistence.do_send(Write {
            ops: vec![WriteOp::Insert(user.clone()), WriteOp::Insert(assistant.clone())],
            ack: Some(ack),
        });
        self.messages.push(user.clone());
        self.publish(&Event::whole_message(&user)[0], false);
        self.messages.push(assistant.clone());
        self.publish(&Event::started(&assistant), false);

        // The model starts at once, in parallel with the commit: time to
        // first token does not wait for the disk. If the commit fails the
        // handler sends `AbortGeneration`.
        let max_tokens = msg.max_tokens.unwrap_or(self.deps.settings.provider.max_tokens);
        let request = self.model_request(model, max_tokens);
        let gen = self.next_gen;
        self.next_gen += 1;
        let events = self
            .deps
            .provider
            .stream(request)
            .map(move |e| GenEvent { gen, event: Some(e) })
            .chain(stream::once(async move { GenEvent { gen, event: None } }));
        let handle = ctx.add_stream(events);
        self.generation = Some(Generation { gen, handle, _slot: slot });
        self.set_generating(true);
        self.touch(ctx);
        tracing::info!(thread_id = %self.thread_id, message_id = %assistant.id, "generation started");
        Ok(Started { user_message: user, assistant_message: assistant, committed })
    }
}

impl Handler<AbortGeneration> for ThreadActor {
    type Result = ();

    fn handle(&mut self, msg: AbortGeneration, ctx: &mut Context<Self>) {
        if self.active().map(|m| m.id) == Some(msg.assistant_message_id) {
            let error = MessageError { code: "unavailable".into(), message: "the message could not be stored".into() };
            self.finish(MessageStatus::Failed, Some(error), ctx);
        }
        // Neither message reached the database: forget them.
        if self.messages.last().map(|m| m.id) == Some(msg.assistant_message_id) {
            self.messages.pop();
            self.messages.pop();
        }
    }
}

impl Handler<Cancel> for ThreadActor {
    type Result = Result<Uuid, ThreadError>;

    fn handle(&mut self, _: Cancel, ctx: &mut Context<Self>) -> Self::Result {
        let id = self.active().map(|m| m.id).ok_or(ThreadError::NotGenerating)?;
        self.finish(MessageStatus::Cancelled, None, ctx);
        Ok(id)
    }
}

impl Handler<Subscribe> for ThreadActor {
    type Result = Result<Subscription, ThreadError>;

    fn handle(&mut self, msg: Subscribe, ctx: &mut Context<Self>) -> Self::Result {
        self.loaded()?;
        self.subscribers.insert(msg.session_id);
        let (events, invalid) = match msg.from {
            Resume::Malformed => (self.replay(None).0, true),
            from => self.replay(from.cursor()),
        };
        let cursor = if invalid { self.head_cursor() } else { msg.from.cursor().or_else(|| self.head_cursor()) };
        let ready = Event::Ready {
            thread_id: self.thread_id,
            cursor,
            status: if self.generation.is_some() { ThreadStatus::Generating } else { ThreadStatus::Idle },
            active_message_id: self.active().map(|m| m.id),
            subscribers: self.subscribers.len(),
        };
        let mut frames = vec![Frame::encode(&ready, 0, false)];
        if invalid {
            let error = Event::Error {
                thread_id: self.thread_id,
                cursor,
                code: "cursor_invalid".into(),
                message: "the cursor names no position of this thread; starting fresh".into(),
            };
            frames.push(Frame::encode(&error, 0, false));
        }
        frames.extend(self.encode_all(&events));
        let signals = self.fanout.subscribe();
        self.presence_changed(ctx);
        self.touch(ctx);
        Ok(Subscription { frames, signals, head_seq: self.seq, fanout_id: self.fanout.id(), thread: ctx.address() })
    }
}

impl Handler<CatchUp> for ThreadActor {
    type Result = Result<CatchUpReply, ThreadError>;

    fn handle(&mut self, msg: CatchUp, _: &mut Context<Self>) -> Self::Result {
        // No cursor: the subscriber started on an empty thread (its `ready`
        // had none) and has seen no message since, so everything is new to
        // it (`replay(None)` is a fresh subscriber's view: the running
        // message only).
        let events = match msg.from {
            Some(_) => self.replay(msg.from).0,
            None => self.messages.iter().flat_map(Event::whole_message).collect(),
        };
        Ok(CatchUpReply { frames: self.encode_all(&events), head_seq: self.seq })
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
        let (status, code, message) = match msg.reason {
            StopReason::Deleted => (MessageStatus::Cancelled, "thread_deleted", "the thread was deleted"),
            StopReason::Stopped => (MessageStatus::Cancelled, "thread_stopped", "an operator stopped this thread"),
            StopReason::ShuttingDown => {
                (MessageStatus::Interrupted, "shutting_down", "the service is shutting down; reconnect to resume")
            }
        };
        self.refuse_work = true;
        self.finish(status, None, ctx);
        self.fanout.publish(Signal::Closed { code, message });
        ctx.stop();
    }
}

impl Handler<LiveMessages> for ThreadActor {
    type Result = MessageResult<LiveMessages>;

    fn handle(&mut self, msg: LiveMessages, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.messages.iter().rev().filter(|m| msg.ids.contains(&m.id)).cloned().collect())
    }
}

impl Handler<ThreadStatusQuery> for ThreadActor {
    type Result = MessageResult<ThreadStatusQuery>;

    fn handle(&mut self, _: ThreadStatusQuery, _: &mut Context<Self>) -> Self::Result {
        MessageResult(StatusReport {
            thread_id: self.thread_id,
            subscribers: self.subscribers.len(),
            generating: self.generation.is_some(),
            active_message_id: self.active().map(|m| m.id),
            mailbox_depth: self.fanout.backlog(),
            last_activity: self.last_activity,
            messages_in_memory: self.messages.len(),
        })
    }
}
