//! ThreadActor: one per live thread. It orchestrates; the thread's state
//! is its `Conversation` (pure, in `domain::conversation`), which says what
//! to publish and what to replay. The actor owns what is not pure: its
//! mailbox, the provider's stream of the running answer, the timers
//! (checkpoints while an answer runs, heartbeats while anyone listens,
//! presence coalescing, the idle stop), the persistence calls and its
//! fan-out (`broadcast::publisher`, over a `Fanout` from its dependencies).
//!
//! Who sends it what: HTTP handlers and WebSocket sessions send
//! `StartGeneration` (a question), `AskAgain` (a regenerate) and
//! `Cancel`; sessions send `Subscribe`, `CatchUp` and
//! `Unsubscribe`; the registry sends `Stop`; admin and history handlers
//! ask `ThreadStatusQuery` and `LiveMessages`. The provider's stream
//! arrives as `GenEvent`s on the actor's own context. It never waits for a
//! subscriber and never touches the database on the streaming path.
//!
//! In cluster mode each node with subscribers of the thread has one: the
//! node whose actor holds the thread's lease (`thread/lease.rs`) runs the
//! answer and publishes it over every node; the others mirror it from the
//! frames they receive (`thread/mirror.rs`), and serve their own
//! subscribers from the mirror exactly as the owner does. Which of these
//! the actor is now is its `Role` (`thread/role.rs`, pure). Its messages
//! are in `thread/messages.rs`, its handlers in `thread/handlers.rs`.
//!
//! It keeps running when every subscriber has left; it stops after the idle
//! timeout with no subscribers and no generation, or when told to.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use actix::{prelude::*, WeakAddr};
use chrono::Utc;
use futures_util::{stream, StreamExt};
use tokio::sync::oneshot;
use uuid::Uuid;

use super::{
    persistence::{Checkpoint, LeaseLost, Write, WriteError},
    Deps, ThreadError,
};
use crate::{
    broadcast::{publisher::Publisher, Missed, SignalStream},
    domain::{
        codes::StreamCode,
        conversation::{Conversation, Ending},
        cursor::{Cursor, Resume},
        event::{Event, ThreadStatus},
        frame::{Frame, StreamPos},
        Message, MessageError, MessageStatus, Thread,
    },
    model::{ChatTurn, ModelRequest, ProviderEvent},
    store::{Fence, WriteOp},
};

/// The thread as loaded when the actor started.
enum Loaded {
    Pending,
    Found {
        /// (Boxed: a thread with its tools is large.)
        thread: Box<Thread>,
        conversation: Conversation,
    },
    /// No such thread (deleted, or never was).
    Missing,
    /// The database could not be read.
    Failed,
}

/// One model call of an answer: its first step, a later one, or a
/// continuation of a cut one.
struct ModelCall {
    model: String,
    max_tokens: u32,
    /// The answer it writes.
    answer: Uuid,
    /// A continuation: the form the partial answer is sent in.
    continuation: Option<crate::domain::continuation::FormSetting>,
}

struct Generation {
    gen: u64,
    stream: SpawnHandle,
    checkpoints: SpawnHandle,
    /// The answer it writes.
    answer: Uuid,
    /// Its `max_tokens`, for its later steps too.
    max_tokens: u32,
    /// When the message was accepted, until its first delta is published.
    awaiting_first_delta: Option<std::time::Instant>,
    /// This model call added content (a block or text): if it is cut, it
    /// made progress, and may be continued.
    progressed: bool,
    /// Held while the generation runs: counts against the project's and
    /// the node's concurrent generations.
    _slot: crate::capacity::GenerationSlot,
}

pub struct ThreadActor {
    thread_id: Uuid,
    deps: Arc<Deps>,
    notices: Notices,
    /// This actor's number in the registry, and the epoch of its stream
    /// positions.
    incarnation: u64,
    refuse_work: bool,
    loaded: Loaded,
    generation: Option<Generation>,
    next_gen: u64,
    publisher: Publisher,
    subscribers: HashSet<u64>,
    heartbeat: Option<SpawnHandle>,
    idle_timer: Option<SpawnHandle>,
    /// The running answer changed since its last checkpoint.
    dirty: bool,
    last_activity: chrono::DateTime<Utc>,
    /// Its part in the thread: alone, or in cluster mode a mirror, taking
    /// the lease, or the lease's owner (holding it).
    role: Role<lease::Lease>,
    /// Cluster mode: the highest owner epoch heard of; frames of an older
    /// one come from an owner that lost its lease.
    seen_epoch: u64,
    /// Cluster mode: other nodes' counts of the thread's subscribers.
    others: HashMap<String, usize>,
    /// Cluster mode: other nodes' frames reach this actor.
    linked: bool,
    /// Its own address, for the persistence actor's `LeaseLost`.
    me: WeakAddr<ThreadActor>,
    /// Cluster mode: the highest lease epoch known let go (by this node or
    /// told by its owner).
    released_epoch: u64,
    /// Cluster mode: questions waiting for the lease of an epoch to be let
    /// go (its answer ended; its final write is being committed).
    lease_waiters: Vec<(u64, oneshot::Sender<()>)>,
    /// Cluster mode: provider events that wait while the lease runs late
    /// (published once a renewal goes through).
    held: std::collections::VecDeque<GenEvent>,
    /// Cluster mode: a cancel that came while the lease ran late (done once
    /// a renewal goes through).
    cancel_held: bool,
    /// Calls the service runs for the awaiting answer, by tool call id.
    runs: HashMap<String, runs::Running>,
}

impl ThreadActor {
    pub fn new(
        thread_id: Uuid,
        incarnation: u64,
        deps: Arc<Deps>,
        notices: Notices,
        closing: bool,
        me: Addr<ThreadActor>,
    ) -> Self {
        // Positions: one node's are its actor's incarnation, then a
        // sequence. In cluster mode they are the epoch of the lease of the
        // answer's owner (0 until this actor hears of one), so that every
        // node orders a thread's frames alike.
        let deps_clustered = deps.lease.is_some();
        let epoch = if deps_clustered { 0 } else { incarnation };
        let publisher = Publisher::new(deps.fanouts.open(thread_id, me.clone().recipient()), epoch);
        ThreadActor {
            thread_id,
            deps,
            notices,
            incarnation,
            refuse_work: closing,
            loaded: Loaded::Pending,
            generation: None,
            next_gen: 1,
            publisher,
            subscribers: HashSet::new(),
            heartbeat: None,
            idle_timer: None,
            dirty: false,
            last_activity: Utc::now(),
            role: Role::new(deps_clustered),
            seen_epoch: 0,
            others: HashMap::new(),
            linked: true,
            me: me.downgrade(),
            released_epoch: 0,
            lease_waiters: Vec::new(),
            held: std::collections::VecDeque::new(),
            cancel_held: false,
            runs: HashMap::new(),
        }
    }

    /// The thread and its conversation, once loaded; why not otherwise.
    fn found(&self) -> Result<(&Thread, &Conversation), ThreadError> {
        match &self.loaded {
            Loaded::Found { thread, conversation } => Ok((thread.as_ref(), conversation)),
            Loaded::Failed => Err(ThreadError::Unavailable),
            Loaded::Pending | Loaded::Missing => Err(ThreadError::NotFound),
        }
    }

    fn conversation_mut(&mut self) -> Option<&mut Conversation> {
        match &mut self.loaded {
            Loaded::Found { conversation, .. } => Some(conversation),
            _ => None,
        }
    }

    fn conversation(&self) -> Option<&Conversation> {
        self.found().ok().map(|(_, c)| c)
    }

    /// Publishes `events` of the answer `log` in order, each encoded once.
    fn publish(&mut self, events: &[Event], log: Option<Uuid>) {
        for event in events {
            let context = self.ui_context(event);
            self.publisher.publish(event, context, log);
        }
    }

    /// What `event`'s UI message stream form needs (see `ui_stream`).
    pub(super) fn ui_context(&self, event: &Event) -> crate::domain::ui_stream::Context {
        self.conversation().map(|c| c.ui_context(event)).unwrap_or_default()
    }

    /// Cluster mode: the fence this node's writes for the thread carry.
    fn fence(&self) -> Option<Fence> {
        self.role.lease().map(|l| l.fence.clone())
    }

    /// `op` as this node may write it: fenced by its lease in cluster mode.
    fn fenced(&self, op: WriteOp) -> WriteOp {
        match self.fence() {
            Some(fence) => WriteOp::Fenced(fence, Box::new(op)),
            None => op,
        }
    }

    /// Encodes `events` for one subscriber.
    fn encode(&self, events: &[Event]) -> Vec<Frame> {
        events.iter().map(|e| Frame::encode_in(e, StreamPos::NONE, self.ui_context(e))).collect()
    }

    /// Subscribers of the thread on every node.
    fn watching(&self) -> usize {
        self.subscribers.len() + self.others.values().sum::<usize>()
    }

    /// A count changed, here (`local`) or on another node.
    fn presence_changed(&mut self, ctx: &mut Context<Self>) {
        if self.publisher.presence_changed() {
            ctx.run_later(crate::broadcast::publisher::PRESENCE_EVERY, |act, _| {
                let count = act.watching();
                act.publisher.flush_presence(count, act.subscribers.len());
            });
        }
    }

    /// Notes activity; arms the idle stop when nobody listens and nothing
    /// runs (`idle`), and runs heartbeats only while somebody listens.
    fn touch(&mut self, ctx: &mut Context<Self>) {
        self.last_activity = Utc::now();
        if let Some(t) = self.idle_timer.take() {
            ctx.cancel_future(t);
        }
        match (self.subscribers.is_empty(), self.heartbeat.is_some()) {
            (false, false) => {
                // Twice per heartbeat period: a subscriber sent nothing for
                // half a period gets its keep-alive, so no idle gap exceeds
                // one period.
                let half = self.deps.settings.streaming.heartbeat() / 2;
                self.heartbeat = Some(ctx.run_interval(half, |act, _| act.publisher.tick(act.subscribers.len())));
            }
            (true, true) => {
                if let Some(h) = self.heartbeat.take() {
                    ctx.cancel_future(h);
                }
            }
            _ => {}
        }
        if self.idle() {
            let timeout = self.deps.settings.streaming.idle_timeout();
            self.idle_timer = Some(ctx.run_later(timeout, |act, ctx| {
                if act.idle() {
                    tracing::debug!(thread_id = %act.thread_id, "thread actor idle; stopping");
                    ctx.stop();
                }
            }));
        }
    }

    /// Nobody listens and nothing runs: no generation, no tool call.
    fn idle(&self) -> bool {
        self.subscribers.is_empty() && self.generation.is_none() && self.runs.is_empty()
    }

    fn set_generating(&self, generating: bool) {
        self.notices.generation.do_send(GenerationChanged {
            thread_id: self.thread_id,
            incarnation: self.incarnation,
            generating,
        });
    }

    /// Ends the running answer with `status`, the text so far kept: its
    /// final state is written (in cluster mode fenced, and the lease let
    /// go once it is committed) and its `message.completed` published.
    fn finish(&mut self, status: MessageStatus, error: Option<MessageError>, ctx: &mut Context<Self>) {
        let had_generation = match self.generation.take() {
            Some(generation) => {
                ctx.cancel_future(generation.stream);
                ctx.cancel_future(generation.checkpoints);
                true
            }
            None => false,
        };
        if status != MessageStatus::Complete {
            self.answer_cut_calls(status);
        }
        let Some((message, completed)) = self.conversation_mut().and_then(|c| c.finish(status, error, Utc::now()))
        else {
            return;
        };
        self.dirty = false;
        match self.fence() {
            None => self.deps.persistence.do_send(Checkpoint { message: message.clone(), fence: None }),
            Some(_) => self.write_final_then_release(message.clone(), ctx),
        }
        self.publish(&[completed], Some(message.id));
        if had_generation {
            self.set_generating(false);
        }
        tracing::info!(thread_id = %self.thread_id, message_id = %message.id, status = ?status, "generation ended");
        self.touch(ctx);
    }

    fn on_provider_event(&mut self, event: ProviderEvent, ctx: &mut Context<Self>) {
        if let Some(generation) = self.generation.as_mut() {
            generation.progressed |= matches!(&event, ProviderEvent::BlockStart { .. })
                || matches!(&event, ProviderEvent::Delta { text, .. } if !text.is_empty());
        }
        let Some(conversation) = self.conversation_mut() else { return };
        let applied = conversation.apply(event);
        let chunks = applied.events.iter().filter(|e| matches!(e, Event::MessageDelta { .. })).count();
        self.deps.metrics.chunks_in.inc_by(chunks as u64);
        let accepted = self.generation.as_mut().filter(|_| chunks > 0).and_then(|g| g.awaiting_first_delta.take());
        self.dirty |= applied.changed;
        let log = self.generation.as_ref().map(|g| g.answer);
        self.publish(&applied.events, log);
        if let Some(accepted) = accepted {
            self.deps.metrics.first_delta_seconds.observe(accepted.elapsed().as_secs_f64());
        }
        match applied.ended {
            None => {}
            Some(Ending::Complete) => {
                let goes_on = self.on_step_end(ctx);
                if !goes_on {
                    self.finish(MessageStatus::Complete, None, ctx)
                }
            }
            Some(Ending::Failed { code, message, cut }) => {
                if let Some(cut) = cut {
                    if self.continue_after_cut(cut, &message, ctx) {
                        return;
                    }
                }
                tracing::warn!(thread_id = %self.thread_id, code = code.as_str(), error.message = %message, "generation failed");
                let error = MessageError { code: code.into(), message };
                self.finish(MessageStatus::Failed, Some(error), ctx);
            }
        }
    }

    /// The running answer's newest state, if it changed.
    fn checkpoint(&mut self) {
        if !std::mem::take(&mut self.dirty) {
            return;
        }
        if let Some(message) = self.conversation().and_then(Conversation::running) {
            let fence = self.fence().map(|f| (f, self.inbox()));
            self.deps.persistence.do_send(Checkpoint { message: message.clone(), fence });
        }
    }

    /// What the provider is asked: the thread's system prompt, its tools,
    /// the settled messages of its context (`Conversation::context`: with
    /// text, and of a question's answers only the newest, none while a
    /// regenerate's runs), and the steps so far of the answer that runs
    /// (its calls and their results: a step after the first), which its
    /// size limit counts.
    fn model_request(
        &self,
        model: String,
        max_tokens: u32,
        continuation: Option<crate::domain::continuation::FormSetting>,
    ) -> Option<ModelRequest> {
        let (thread, conversation) = self.found().ok()?;
        let mut turns: Vec<ChatTurn> = conversation
            .context()
            .into_iter()
            .flat_map(|m| crate::domain::turn::as_turns(m.role, &m.blocks))
            .map(|(role, blocks)| ChatTurn { role, blocks })
            .collect();
        if let Some(running) = conversation.running() {
            let steps = crate::domain::turn::as_turns(running.role, &running.blocks);
            turns.extend(steps.into_iter().map(|(role, blocks)| ChatTurn { role, blocks }));
        }
        let answer_bytes = conversation.running().map_or(0, |m| crate::model::bounds::stored_bytes(&m.blocks));
        Some(ModelRequest {
            model,
            system: thread.system.clone(),
            turns,
            max_tokens,
            answer_bytes,
            tools: self.tools(),
            tool_choice: thread.tool_choice.clone(),
            continuation,
        })
    }
}

mod cancel;
mod continuing;
mod handlers;
mod lease;
mod messages;
mod mirror;
mod resolve;
mod role;
mod runs;
mod settings;
mod steps;

pub use messages::*;
pub use resolve::{Resolution, Resolve, ResolveError};
use role::{NotNow, Role};
pub use runs::RunningCall;
pub use settings::UpdateThread;
pub use steps::ContinueAnswer;
