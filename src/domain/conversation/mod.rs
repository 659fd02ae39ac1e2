//! The conversation of one thread as pure, synchronous data: its messages
//! and the answer being generated. The thread actor owns one and asks it
//! what to publish and what to replay; nothing here waits, times or stores.
//!
//! - `ask` accepts a question: the user message and an empty assistant
//!   message that streams, and the events announcing them. `ask_again`
//!   (a regenerate) asks the newest question again: a new answer after
//!   the earlier ones, which stay. `context` is what the model is shown:
//!   of several answers to one question only the newest.
//! - `apply` turns one provider event into the contract events it causes
//!   (and says when the answer ended); `finish` ends it. It gives a tool
//!   call without an id, or with one already used in the thread, an id of
//!   its own (`call_<uuid>`), so the stored block, its events, the AI SDK's
//!   `toolCallId` and what the provider is told next all name one call.
//! - `replay` says what a subscriber at a cursor has not seen
//!   (`replay.rs`), `head` where a subscriber that has seen everything
//!   settled stands.
//! - `ui_context` says what the AI SDK's UI message stream needs to know
//!   of an event (`ui.rs`).

mod replay;
#[cfg(test)]
mod tests;
mod ui;

use chrono::{DateTime, Utc};
use uuid::Uuid;

pub use self::replay::Replay;
use super::{
    continuation::{Cut, Seam},
    cursor::{Cursor, Resume},
    event::{self, end_cursor, Event},
    new_id,
    provider_event::{FailureCode, ProviderEvent},
    tools::ToolDef,
    turn::{self, Call, CallState},
    Block, BlockKind, Message, MessageError, MessageStatus, Needs, Role, Usage,
};

pub struct Conversation {
    thread_id: Uuid,
    messages: Vec<Message>,
    /// The last message is an answer being generated.
    running: bool,
    /// Where the latest answer's deltas ended (the UI stream's numbers);
    /// boxed, as most threads never serve the UI stream.
    published: Box<ui::Published>,
    /// The running answer's text is all its readers were sent (false when
    /// it was loaded without its owner's whole log): decides whether its
    /// end, if it is interrupted, is exact.
    tail_exact: bool,
    /// Where the running answer's current step began: the provider numbers
    /// a step's blocks from 0, the answer holds every step's.
    step_base: usize,
    /// A mirror: the last `message.step` it passed on (each is told once).
    stepped: Option<(Uuid, usize)>,
    /// A mirror: the last `message.awaiting` it passed on.
    awaited: Option<(Uuid, Vec<crate::domain::PendingCall>)>,
    /// The newest answer was asked by `ask_again`: its question was stored
    /// before it (forgetting the answer keeps the question).
    again: Option<Uuid>,
    /// A continuation's model call has not opened its first block yet.
    opening: Option<Opening>,
    /// A continuation's first text block (its index) and its seam with
    /// the partial text, until the seam is decided.
    /// (Boxed: most conversations never hold one.)
    seam: Option<Box<(usize, Seam)>>,
    /// The newest answer's latest `message.continued`: a subscriber that
    /// catches up from before it (it fell behind, or its node took the
    /// answer over) is told it at its place (`replay::with_continued`).
    continued: Option<Box<Event>>,
}

/// A question just accepted.
pub struct Asked {
    pub user: Message,
    pub assistant: Message,
    /// `message.created`, then `message.started`.
    pub events: Vec<Event>,
}

/// What one provider event did to the running answer.
#[derive(Debug, Default, PartialEq)]
pub struct Applied {
    /// Events to publish, in order.
    pub events: Vec<Event>,
    /// The answer's state changed (a checkpoint is due).
    pub changed: bool,
    /// The answer ended so: call `finish`.
    pub ended: Option<Ending>,
}

/// How a continuation's first block opens.
#[derive(Debug, Clone, Copy)]
struct Opening {
    /// The answer's last block, if it is text: the partial text the
    /// continuation's seam is with.
    last_text: Option<usize>,
    /// The continuation's text goes on in that block.
    merge: bool,
}

/// A mirrored event that cannot be applied: the mirror lacks what comes
/// before it (it must be loaded again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap;

/// How an answer ends by the provider's doing.
#[derive(Debug, Clone, PartialEq)]
pub enum Ending {
    Complete,
    /// `cut`: the provider cut it short (it may be continued).
    Failed {
        code: FailureCode,
        message: String,
        cut: Option<Cut>,
    },
}

impl Conversation {
    /// A thread's conversation as loaded. An answer still `streaming` at
    /// its end is running (on another node, in cluster mode).
    pub fn new(thread_id: Uuid, messages: Vec<Message>) -> Conversation {
        let running = messages.last().is_some_and(|m| m.role == Role::Assistant && !m.is_finished());
        let mut published = Box::<ui::Published>::default();
        let mut step_base = 0;
        if let Some(answer) = messages.last().filter(|_| running) {
            published.adopt(answer);
            step_base = turn::step_start(&answer.blocks);
        }
        Conversation {
            thread_id,
            messages,
            running,
            published,
            tail_exact: true,
            step_base,
            stepped: None,
            awaited: None,
            again: None,
            opening: None,
            seam: None,
            continued: None,
        }
    }

    /// The running answer was loaded without every frame its owner
    /// published (its log was unreadable or gone): readers may have seen
    /// more than it holds, so an interruption's end is not exact.
    pub fn tail_unknown(&mut self) {
        self.tail_exact = false;
    }

    /// The running answer holds every byte its readers were sent.
    pub fn tail_is_exact(&self) -> bool {
        self.tail_exact
    }

    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// The answer being generated.
    pub fn running(&self) -> Option<&Message> {
        self.messages.last().filter(|_| self.running)
    }

    /// The messages that are not running, in order.
    pub fn settled(&self) -> &[Message] {
        &self.messages[..self.messages.len() - usize::from(self.running)]
    }

    /// The settled messages the model is shown, in order: those with text,
    /// and of the answers to one question only the newest (a regenerate's
    /// answer stands in for the earlier ones; while it runs, none of them
    /// is shown).
    pub fn context(&self) -> Vec<&Message> {
        let shown: Vec<&Message> =
            self.settled().iter().filter(|m| m.blocks.iter().any(|b| !b.text.is_empty())).collect();
        let superseded = |i: usize| match shown.get(i + 1) {
            Some(next) => next.role == Role::Assistant,
            None => self.running,
        };
        shown.iter().enumerate().filter(|(i, m)| m.role == Role::User || !superseded(*i)).map(|(_, m)| *m).collect()
    }

    /// The newest user message: the question a regenerate asks again.
    pub fn newest_question(&self) -> Option<&Message> {
        self.messages.iter().rev().find(|m| m.role == Role::User)
    }

    /// Where a subscriber that has seen every settled message stands.
    pub fn head(&self) -> Option<Cursor> {
        self.settled().last().map(end_cursor)
    }

    pub fn message(&self, id: Uuid) -> Option<&Message> {
        self.messages.iter().rev().find(|m| m.id == id)
    }

    /// Accepts `content`; the answer `answer_id`, by `model`, starts
    /// streaming. Nothing may be running.
    pub fn ask(&mut self, content: String, model: String, answer_id: Uuid, now: DateTime<Utc>) -> Asked {
        debug_assert!(!self.running, "one answer at a time");
        let position = self.messages.last().map_or(0, |m| m.position + 1);
        let user = Message {
            id: new_id(),
            thread_id: self.thread_id,
            position,
            role: Role::User,
            blocks: vec![Block::text(content)],
            status: MessageStatus::Complete,
            model: None,
            stop_reason: None,
            usage: Usage::default(),
            error: None,
            created_at: now,
            completed_at: Some(now),
            calls: Vec::new(),
            tools: Vec::new(),
            exact_end: false,
            continuations: 0,
            touched_at: None,
            handed_over: false,
            restart_seam: None,
        };
        let assistant = Message {
            id: answer_id,
            position: position + 1,
            role: Role::Assistant,
            blocks: Vec::new(),
            status: MessageStatus::Streaming,
            model: Some(model),
            completed_at: None,
            ..user.clone()
        };
        let mut events = Event::whole_message(&user);
        self.messages.push(user.clone());
        self.again = None;
        events.push(self.answer(assistant.clone()));
        Asked { user, assistant, events }
    }

    /// Asks the newest question again (a regenerate): the answer
    /// `answer_id`, by `model`, starts streaming after the thread's last
    /// message; the earlier answers stay. `user` is that question, as
    /// stored; the events announce only the answer. `None` when the thread
    /// has no question. Nothing may be running.
    pub fn ask_again(&mut self, model: String, answer_id: Uuid, now: DateTime<Utc>) -> Option<Asked> {
        debug_assert!(!self.running, "one answer at a time");
        let user = self.newest_question()?.clone();
        let position = self.messages.last().map_or(0, |m| m.position + 1);
        let assistant = Message {
            id: answer_id,
            position,
            role: Role::Assistant,
            blocks: Vec::new(),
            status: MessageStatus::Streaming,
            model: Some(model),
            stop_reason: None,
            usage: Usage::default(),
            error: None,
            created_at: now,
            completed_at: None,
            calls: Vec::new(),
            tools: Vec::new(),
            exact_end: false,
            continuations: 0,
            touched_at: None,
            handed_over: false,
            restart_seam: None,
            ..user.clone()
        };
        self.again = Some(answer_id);
        let events = vec![self.answer(assistant.clone())];
        Some(Asked { user, assistant, events })
    }

    /// `assistant` streams from now on, as the thread's last message: its
    /// `message.started`.
    fn answer(&mut self, assistant: Message) -> Event {
        let started = Event::started(&assistant);
        self.published.start(assistant.id);
        self.messages.push(assistant);
        self.running = true;
        self.tail_exact = true;
        self.step_base = 0;
        self.opening = None;
        self.seam = None;
        self.continued = None;
        started
    }

    /// The answer `id` is offered its question's own `tools` too, through
    /// every step.
    pub fn offer_own_tools(&mut self, id: Uuid, tools: Vec<ToolDef>) {
        if let Some(m) = self.messages.last_mut().filter(|m| m.id == id) {
            m.tools = tools;
        }
    }

    /// Forgets a question and its answer that could not be stored (a
    /// regenerate's answer alone: its question was stored before).
    pub fn forget(&mut self, assistant_id: Uuid) {
        if self.messages.last().map(|m| m.id) == Some(assistant_id) {
            let asked = if self.again == Some(assistant_id) { 1 } else { 2 };
            self.messages.truncate(self.messages.len().saturating_sub(asked));
            self.running = false;
            self.again = None;
        }
    }

    /// Applies one provider event to the running answer.
    pub fn apply(&mut self, event: ProviderEvent) -> Applied {
        // A continuation's held seam is let go before anything that ends
        // its block; its first block decides where its text goes.
        let released = match &event {
            ProviderEvent::BlockStart { .. } | ProviderEvent::Stop { .. } | ProviderEvent::Failed { .. } => {
                self.release_seam()
            }
            _ => None,
        };
        if let ProviderEvent::BlockStart { index, kind, .. } = &event {
            if let Some(opening) = self.opening.take() {
                if self.open_continuation(opening, *index, *kind) {
                    return Applied::default();
                }
            }
        }
        if let ProviderEvent::Delta { index, text } = &event {
            let at = self.step_base + index;
            if let Some((block, seam)) = self.seam.as_deref_mut().filter(|(b, _)| *b == at) {
                let block = *block;
                let passed = seam.feed(text);
                return match passed.is_empty() {
                    true => Applied::default(),
                    false => self.apply_delta(block, passed),
                };
            }
        }
        let mut applied = self.apply_event(event);
        if let Some(delta) = released {
            applied.events.insert(0, delta);
            applied.changed = true;
        }
        applied
    }

    /// The running answer, cut short, goes on (its `attempt`-th
    /// continuation, for `reason`): its next model call's text continues
    /// its last text block, or (`fresh_block`: after a crash, where what
    /// readers saw past the stored text is unknown, so the cut block stays
    /// as stored) begins a block of its own. `message.continued`; `None`
    /// if nothing runs.
    pub fn continue_cut(&mut self, attempt: u32, reason: Cut, fresh_block: bool) -> Option<Event> {
        if !self.running {
            return None;
        }
        let message = self.messages.last_mut()?;
        message.continuations = attempt;
        message.handed_over = false;
        let n = message.blocks.len();
        if fresh_block && message.restart_seam.is_none() {
            message.restart_seam = Some(n);
        }
        self.step_base = n;
        let last_text = n.checked_sub(1).filter(|&last| message.blocks[last].kind == BlockKind::Text);
        self.opening = Some(Opening { last_text, merge: !fresh_block && last_text.is_some() });
        self.seam = None;
        let continued = Event::MessageContinued {
            thread_id: self.thread_id,
            cursor: Some(event::position_before(message, n)),
            message_id: message.id,
            attempt,
            reason: reason.as_str().to_owned(),
        };
        self.continued = Some(Box::new(continued.clone()));
        Some(continued)
    }

    /// A continuation's first block (provider index `index`, of `kind`)
    /// opens: text goes on in the cut text block (then `true`: no new
    /// block, nothing to publish), anything else opens after the answer's
    /// blocks. Either way a text block's start is held at its seam with
    /// the partial text.
    fn open_continuation(&mut self, opening: Opening, index: usize, kind: BlockKind) -> bool {
        let Some(message) = self.messages.last() else { return false };
        if kind != BlockKind::Text {
            return false;
        }
        let partial = opening.last_text.and_then(|b| message.blocks.get(b)).map_or("", |b| b.text.as_str());
        let seam = Seam::after(partial);
        match opening.last_text.filter(|_| opening.merge && index == 0) {
            Some(into) => {
                self.step_base = into;
                self.seam = Some(Box::new((into, seam)));
                true
            }
            None => {
                self.seam = Some(Box::new((self.step_base + index, seam)));
                false
            }
        }
    }

    /// A continuation's held seam text, let go (its overlap cut): its delta.
    fn release_seam(&mut self) -> Option<Event> {
        let (block, mut seam) = *self.seam.take()?;
        let text = seam.release();
        if text.is_empty() {
            return None;
        }
        self.apply_delta(block, text).events.pop()
    }

    /// Appends `text` to block `index` (the running answer's last).
    fn apply_delta(&mut self, index: usize, text: String) -> Applied {
        let base = self.step_base;
        self.apply_event(ProviderEvent::Delta { index: index - base, text })
    }

    /// Applies one provider event as it is.
    fn apply_event(&mut self, event: ProviderEvent) -> Applied {
        let thread_id = self.thread_id;
        let base = self.step_base;
        let event = match event {
            ProviderEvent::BlockStart { index, kind: BlockKind::ToolUse, id, name } if self.running => {
                let id = Some(self.call_id(id));
                ProviderEvent::BlockStart { index: base + index, kind: BlockKind::ToolUse, id, name }
            }
            ProviderEvent::BlockStart { index, kind, id, name } => {
                ProviderEvent::BlockStart { index: base + index, kind, id, name }
            }
            ProviderEvent::Delta { index, text } => ProviderEvent::Delta { index: base + index, text },
            ProviderEvent::Signature { index, signature } => {
                ProviderEvent::Signature { index: base + index, signature }
            }
            other => other,
        };
        let Some(message) = self.messages.last_mut().filter(|_| self.running) else { return Applied::default() };
        let id = message.id;
        let fail = |message: String| Applied {
            ended: Some(Ending::Failed { code: FailureCode::UpstreamError, message, cut: None }),
            ..Applied::default()
        };
        match event {
            ProviderEvent::Started { input_tokens } => {
                if let Some(n) = input_tokens {
                    message.usage.input_tokens = n;
                }
                Applied { changed: true, ..Applied::default() }
            }
            ProviderEvent::Usage { input_tokens, output_tokens } => {
                if let Some(n) = input_tokens {
                    message.usage.input_tokens = n;
                }
                if let Some(n) = output_tokens {
                    message.usage.output_tokens = n;
                }
                Applied { changed: true, ..Applied::default() }
            }
            ProviderEvent::BlockStart { index, kind, id: block_id, name } => {
                if index != message.blocks.len() {
                    return fail(format!("upstream opened block {index} out of order"));
                }
                message.blocks.push(Block { id: block_id.clone(), name: name.clone(), ..Block::new(kind) });
                self.published.block(id, kind, block_id.as_deref(), name.as_deref());
                let event = Event::MessageBlock {
                    thread_id,
                    cursor: Some(Cursor::new(id, index, 0)),
                    message_id: id,
                    block: index,
                    kind,
                    id: block_id,
                    name,
                    tool_use_id: None,
                    is_error: None,
                };
                Applied { events: vec![event], changed: true, ended: None }
            }
            ProviderEvent::Delta { index, text } => {
                // The blocks are one log: text goes to the last block only.
                // (A cursor `M:b:e` says every block before `b` is whole; text
                // added to an earlier block could never be resumed.)
                let last = message.blocks.len().checked_sub(1);
                if last != Some(index) {
                    return fail(match last {
                        Some(last) if index < last => {
                            format!("upstream wrote to block {index} after block {last} began")
                        }
                        _ => format!("upstream wrote to unknown block {index}"),
                    });
                }
                let Some(block) = message.blocks.get_mut(index) else {
                    return fail(format!("upstream wrote to unknown block {index}"));
                };
                if text.is_empty() {
                    return Applied::default();
                }
                let offset = block.text.len();
                block.text.push_str(&text);
                self.published.delta(id, index, offset + text.len());
                let event = Event::MessageDelta {
                    thread_id,
                    cursor: Some(Cursor::new(id, index, offset + text.len())),
                    message_id: id,
                    block: index,
                    offset,
                    text,
                };
                Applied { events: vec![event], changed: true, ended: None }
            }
            ProviderEvent::Signature { index, signature } => match message.blocks.get_mut(index) {
                Some(block) => {
                    block.signature.get_or_insert_with(String::new).push_str(&signature);
                    Applied { changed: true, ..Applied::default() }
                }
                None => Applied::default(),
            },
            ProviderEvent::StopReason { stop_reason } => {
                message.stop_reason = Some(stop_reason);
                Applied { changed: true, ..Applied::default() }
            }
            ProviderEvent::Stop { stop_reason } => {
                if stop_reason.is_some() {
                    message.stop_reason = stop_reason;
                }
                Applied { ended: Some(Ending::Complete), ..Applied::default() }
            }
            ProviderEvent::Failed { code, message, cut } => {
                Applied { ended: Some(Ending::Failed { code, message, cut }), ..Applied::default() }
            }
        }
    }

    /// The id a new tool call of the running answer goes by: the
    /// provider's, unless it gave none or one a call of this thread has
    /// already (ids are unique within a thread: results and approvals name
    /// calls by them); then a fresh `call_<uuid>`. A mirror never calls
    /// this: the owner's frames carry the id it chose.
    fn call_id(&self, given: Option<String>) -> String {
        let used = |id: &str| {
            self.messages
                .iter()
                .flat_map(|m| &m.blocks)
                .any(|b| b.kind == BlockKind::ToolUse && b.id.as_deref() == Some(id))
        };
        match given {
            Some(id) if !id.is_empty() && !used(&id) => id,
            given => {
                let fresh = format!("call_{}", new_id().simple());
                tracing::warn!(
                    thread_id = %self.thread_id,
                    message_id = ?self.running().map(|m| m.id),
                    given = ?given,
                    assigned = %fresh,
                    "the model provider sent a tool call without an id, or with one already used in the thread: it gets one of its own"
                );
                fresh
            }
        }
    }

    /// Ends the running answer with `status`, its text kept: the message as
    /// it ends and its `message.completed`. `None` if nothing runs. An
    /// interruption's end is exact unless the answer's tail is unknown
    /// (`tail_unknown`).
    pub fn finish(
        &mut self,
        status: MessageStatus,
        error: Option<MessageError>,
        now: DateTime<Utc>,
    ) -> Option<(Message, Event)> {
        if !self.running {
            return None;
        }
        self.running = false;
        let message = self.messages.last_mut()?;
        message.status = status;
        message.error = error;
        message.completed_at = Some(now);
        message.exact_end = status == MessageStatus::Interrupted && self.tail_exact;
        let message = message.clone();
        let completed = Event::completed(&message);
        Some((message, completed))
    }

    /// Cluster mode: the running answer is handed over to another node
    /// (this one stops for a deploy): it stays streaming, marked so; the
    /// state to write.
    pub fn hand_over(&mut self) -> Option<Message> {
        let message = self.messages.last_mut().filter(|_| self.running)?;
        message.handed_over = true;
        Some(message.clone())
    }

    /// Applies an event that the thread's owner on another node published:
    /// this conversation mirrors the owner's. Duplicates and text already
    /// held change nothing (`Ok(false)`), so a frame that arrives both from
    /// the owner's log and live is harmless; what would leave a hole is
    /// refused (`Gap`).
    pub fn mirror(&mut self, event: &Event, now: DateTime<Utc>) -> Result<bool, Gap> {
        match event {
            Event::MessageCreated { message, .. } => {
                if self.message(message.id).is_some() {
                    return Ok(false);
                }
                let next = self.messages.last().map_or(0, |m| m.position + 1);
                if message.position != next || self.running {
                    return Err(Gap);
                }
                self.messages.push(message.clone());
                Ok(true)
            }
            Event::MessageStarted { message_id, role, model, .. } => {
                if let Some(m) = self.message(*message_id) {
                    self.running = !m.is_finished() && self.messages.last().map(|l| l.id) == Some(*message_id);
                    return Ok(false);
                }
                // After its question, or after an earlier answer to it (a
                // regenerate); never while another answer runs or waits.
                let follows = |m: &&Message| m.role == Role::User || (m.is_finished() && !m.is_awaiting());
                let Some(before) = self.messages.last().filter(follows) else { return Err(Gap) };
                let answer = Message {
                    id: *message_id,
                    position: before.position + 1,
                    role: *role,
                    blocks: Vec::new(),
                    status: MessageStatus::Streaming,
                    model: model.clone(),
                    stop_reason: None,
                    usage: Usage::default(),
                    error: None,
                    created_at: now,
                    completed_at: None,
                    thread_id: self.thread_id,
                    calls: Vec::new(),
                    tools: Vec::new(),
                    exact_end: false,
                    continuations: 0,
                    touched_at: None,
                    handed_over: false,
                    restart_seam: None,
                };
                self.messages.push(answer);
                self.running = true;
                self.tail_exact = true;
                self.published.start(*message_id);
                Ok(true)
            }
            Event::MessageBlock { message_id, block, kind, id, name, tool_use_id, is_error, .. } => {
                // A result block of an answer that awaited input: it goes on.
                if *kind == BlockKind::ToolResult && self.resume(*message_id) {
                    self.running = true;
                }
                let Some(answer) = self.streaming(*message_id)? else { return Ok(false) };
                match (*block).cmp(&answer.blocks.len()) {
                    std::cmp::Ordering::Less => Ok(false),
                    std::cmp::Ordering::Equal => {
                        answer.blocks.push(Block {
                            id: id.clone(),
                            name: name.clone(),
                            tool_use_id: tool_use_id.clone(),
                            is_error: is_error.unwrap_or(false),
                            ..Block::new(*kind)
                        });
                        self.published.block(*message_id, *kind, id.as_deref(), name.as_deref());
                        Ok(true)
                    }
                    std::cmp::Ordering::Greater => Err(Gap),
                }
            }
            Event::MessageDelta { message_id, block, offset, text, .. } => {
                let Some(answer) = self.streaming(*message_id)? else { return Ok(false) };
                let held = answer.blocks.get_mut(*block).ok_or(Gap)?;
                let have = held.text.len();
                if offset + text.len() <= have {
                    return Ok(false);
                }
                let new = have.checked_sub(*offset).filter(|&from| text.is_char_boundary(from)).ok_or(Gap)?;
                held.text.push_str(&text[new..]);
                let end = held.text.len();
                self.published.delta(*message_id, *block, end);
                Ok(true)
            }
            Event::MessageCompleted { message_id, status, stop_reason, usage, error, .. } => {
                let Some(m) = self.streaming(*message_id)? else { return Ok(false) };
                m.status = *status;
                m.stop_reason = stop_reason.clone();
                m.usage = *usage;
                m.error = error.clone();
                m.completed_at = Some(now);
                // This node's readers were sent exactly what this mirror
                // applied, and it applied the owner's frames up to here.
                m.exact_end = *status == MessageStatus::Interrupted;
                self.running = false;
                Ok(true)
            }
            Event::MessageAwaiting { message_id, pending, .. } => {
                if self.streaming_or_awaiting(*message_id)?.is_none() {
                    return Ok(false);
                }
                // (Heard already: the same calls wait.)
                let heard = (*message_id, pending.clone());
                if self.awaited.as_ref() == Some(&heard) {
                    return Ok(false);
                }
                self.awaited = Some(heard);
                let Some(m) = self.streaming_or_awaiting(*message_id)? else { return Ok(false) };
                m.status = MessageStatus::AwaitingInput;
                // What a mirror knows of the calls: those that wait.
                m.calls = pending
                    .iter()
                    .map(|p| Call {
                        id: p.tool_call_id.clone(),
                        name: p.name.clone(),
                        input: p.input.clone(),
                        state: match p.needs {
                            Needs::Approval => CallState::NeedsApproval,
                            Needs::Result => CallState::NeedsResult { approved: false },
                        },
                    })
                    .collect();
                self.running = false;
                Ok(true)
            }
            Event::ToolResolved { message_id, tool_call_id, is_error, approved, .. } => {
                let Some(m) = self.streaming_or_awaiting(*message_id)? else { return Ok(false) };
                if !m.calls.iter().any(|c| &c.id == tool_call_id) {
                    // A call the service ran (never pending, so not among
                    // the calls this mirror was told of): known by its block.
                    let Some(call) = ran_call(m, tool_call_id) else { return Ok(false) };
                    m.calls.push(call);
                }
                let Some(call) = m.calls.iter_mut().find(|c| &c.id == tool_call_id) else { return Ok(false) };
                // (Heard already: an approval that left the call waiting
                // for its result, or an answer.)
                let heard = match call.state {
                    CallState::NeedsApproval => false,
                    CallState::NeedsResult { approved: was } | CallState::Runs { approved: was } => {
                        was && is_error.is_none()
                    }
                    CallState::Resolved { .. } => true,
                };
                if heard {
                    return Ok(false);
                }
                if *approved == Some(true) && is_error.is_none() {
                    // Approved: the service runs it, or (a client's call)
                    // the owner's `message.awaiting` that follows says it
                    // waits for its result. Either way nobody is asked yet.
                    call.state = CallState::Runs { approved: true };
                    return Ok(true);
                }
                // (Its text comes as a result block when the answer goes on.)
                call.state = CallState::Resolved {
                    text: String::new(),
                    is_error: is_error.unwrap_or(*approved == Some(false)),
                    approved: *approved,
                };
                Ok(true)
            }
            Event::MessageStep { message_id, step, .. } => {
                // Told once: the step its results began.
                let Some(m) = self.streaming(*message_id)? else { return Ok(false) };
                let now = turn::step_of(&m.blocks, m.blocks.len());
                if *step != now || self.stepped == Some((*message_id, now)) {
                    return Ok(false);
                }
                self.stepped = Some((*message_id, now));
                Ok(true)
            }
            Event::MessageContinued { message_id, attempt, .. } => {
                let Some(m) = self.streaming(*message_id)? else { return Ok(false) };
                let changed = m.continuations != *attempt;
                m.continuations = *attempt;
                self.continued = Some(Box::new(event.clone()));
                Ok(changed)
            }
            Event::Ready { .. }
            | Event::Presence { .. }
            | Event::Error { .. }
            | Event::ThreadUpdated { .. }
            | Event::Ack { .. } => Ok(false),
        }
    }

    /// The answer `id` if it streams or awaits input.
    fn streaming_or_awaiting(&mut self, id: Uuid) -> Result<Option<&mut Message>, Gap> {
        match self.messages.iter_mut().rev().find(|m| m.id == id) {
            Some(m) if m.status == MessageStatus::Streaming || m.is_awaiting() => Ok(Some(m)),
            Some(_) => Ok(None),
            None => Err(Gap),
        }
    }

    /// Answer `id`, awaiting input, streams again; `false` if it was not
    /// the last message awaiting.
    fn resume(&mut self, id: Uuid) -> bool {
        match self.messages.last_mut().filter(|m| m.id == id && m.is_awaiting()) {
            Some(m) => {
                m.status = MessageStatus::Streaming;
                m.stop_reason = None;
                m.completed_at = None;
                true
            }
            None => false,
        }
    }

    /// The running answer ends for `reason` (say, its step limit).
    pub fn set_stop_reason(&mut self, reason: &str) {
        if let Some(m) = self.messages.last_mut().filter(|_| self.running) {
            m.stop_reason = Some(reason.to_owned());
        }
    }

    /// The last message, if it is an answer awaiting input.
    pub fn awaiting(&self) -> Option<&Message> {
        self.messages.last().filter(|m| m.is_awaiting())
    }

    /// The calls of the step the running answer just ended, if the step
    /// made any, each waiting for what `tools` say of it. Whatever the stop
    /// reason: OpenAI-compatible servers often say `stop` after calls, and
    /// a step cut at `max_tokens` still owes each call its result (one cut
    /// off is answered so, and the model may try again). An answer offered
    /// no tools has no further steps: a call it makes anyway ends it, as a
    /// block.
    pub fn step_calls(&self, tools: &[ToolDef]) -> Option<Vec<Call>> {
        if tools.is_empty() {
            return None;
        }
        let answer = self.running()?;
        let step = &answer.blocks[self.step_base.min(answer.blocks.len())..];
        let calls = turn::calls_of_step(step, tools);
        (!calls.is_empty()).then_some(calls)
    }

    /// The calls of the running answer's step so far, for a step that is
    /// cut (cancelled, failed, interrupted) before it asked for them: each
    /// still needs its error result. `None` when there are none, or the
    /// answer was offered no tools.
    pub fn cut_calls(&self, tools: &[ToolDef]) -> Option<Vec<Call>> {
        let answer = self.running().filter(|_| !tools.is_empty())?;
        let calls = turn::calls_of_step(&answer.blocks[self.step_base.min(answer.blocks.len())..], tools);
        (!calls.is_empty()).then_some(calls)
    }

    /// The running answer's step count so far.
    pub fn steps(&self) -> usize {
        self.running().map_or(0, |m| turn::step_of(&m.blocks, m.blocks.len()))
    }

    /// The running answer waits for `calls` (some of which wait): it is
    /// stored so, and `message.awaiting` says what waits.
    pub fn await_input(&mut self, calls: Vec<Call>) -> Option<(Message, Event)> {
        if !self.running {
            return None;
        }
        self.running = false;
        let message = self.messages.last_mut()?;
        message.status = MessageStatus::AwaitingInput;
        message.calls = calls;
        let message = message.clone();
        let event = Event::awaiting(&message);
        Some((message, event))
    }

    /// The awaiting answer's calls changed (answered here or elsewhere).
    pub fn set_calls(&mut self, id: Uuid, calls: Vec<Call>) {
        if let Some(m) = self.messages.last_mut().filter(|m| m.id == id) {
            m.calls = calls;
        }
    }

    /// The answer whose step's `calls` are all answered goes on (it may
    /// await input, or still stream after calls answered at once): their
    /// results become its next blocks, and it streams again. The events:
    /// each result's block and text. `None` if it is not the last answer.
    pub fn resume_with(&mut self, id: Uuid, calls: &[Call]) -> Option<Vec<Event>> {
        let thread_id = self.thread_id;
        let m = self.messages.last_mut().filter(|m| m.id == id && m.role == Role::Assistant)?;
        m.status = MessageStatus::Streaming;
        m.stop_reason = None;
        m.completed_at = None;
        m.calls = calls.to_vec();
        self.running = true;
        let mut events = Vec::new();
        for block in turn::result_blocks(calls) {
            let m = self.messages.last_mut()?;
            let index = m.blocks.len();
            let (tool_use_id, is_error, text) = (block.tool_use_id.clone(), block.is_error, block.text.clone());
            m.blocks.push(Block { text: String::new(), ..block });
            self.published.block(id, BlockKind::ToolResult, tool_use_id.as_deref(), None);
            events.push(Event::MessageBlock {
                thread_id,
                cursor: Some(Cursor::new(id, index, 0)),
                message_id: id,
                block: index,
                kind: BlockKind::ToolResult,
                id: None,
                name: None,
                tool_use_id,
                is_error: Some(is_error),
            });
            let m = self.messages.last_mut()?;
            m.blocks[index].text.push_str(&text);
            self.published.delta(id, index, text.len());
            events.push(Event::MessageDelta {
                thread_id,
                cursor: Some(Cursor::new(id, index, text.len())),
                message_id: id,
                block: index,
                offset: 0,
                text,
            });
        }
        self.step_base = self.messages.last().map_or(0, |m| m.blocks.len());
        Some(events)
    }

    /// `message.step` of the step that begins now in the running answer.
    pub fn step_begins(&self) -> Option<Event> {
        let m = self.running()?;
        Some(Event::step(m, m.blocks.len()))
    }

    /// The answer `id`, if it is the one streaming now; `Ok(None)` if it
    /// has ended (what it says is held already).
    fn streaming(&mut self, id: Uuid) -> Result<Option<&mut Message>, Gap> {
        match self.messages.iter_mut().rev().find(|m| m.id == id) {
            Some(m) if m.is_finished() => Ok(None),
            Some(m) => Ok(Some(m)),
            None => Err(Gap),
        }
    }

    /// What a new subscriber starting at `from` has not seen.
    pub fn replay(&self, from: Resume) -> Replay {
        let mut replay = replay::replay(self, from);
        let at = match from {
            Resume::At(c) => Some(c),
            Resume::Fresh | Resume::Malformed => None,
        };
        // (A cursor that got `cursor_invalid` or `cursor_ahead` is sent
        // the message from its start.)
        let at = at.filter(|_| replay.notice.is_none());
        replay.events = replay::with_continued(replay.events, self.continued.as_deref(), at);
        replay
    }

    /// What a subscriber at `from` (a position it was given) missed, each
    /// block's text coalesced into one delta. No cursor: it started on an
    /// empty thread and has seen nothing since, so everything is new.
    pub fn catch_up(&self, from: Option<Cursor>) -> Vec<Event> {
        match from {
            Some(cursor) => self.replay(Resume::At(cursor)).events,
            None => replay::with_continued(
                self.messages.iter().flat_map(Event::whole_message).collect(),
                self.continued.as_deref(),
                None,
            ),
        }
    }
}

/// A call of `answer` that a mirror hears answered but was never told
/// waits (the service ran it): its `tool_use` block, still without a
/// result, makes it one of the answer's calls.
fn ran_call(answer: &Message, id: &str) -> Option<Call> {
    let block = answer.blocks.iter().find(|b| b.kind == BlockKind::ToolUse && b.id.as_deref() == Some(id))?;
    let answered =
        answer.blocks.iter().any(|b| b.kind == BlockKind::ToolResult && b.tool_use_id.as_deref() == Some(id));
    if answered {
        return None;
    }
    let input = serde_json::from_str(&block.text).unwrap_or_else(|_| serde_json::Value::Object(Default::default()));
    Some(Call {
        id: id.to_owned(),
        name: block.name.clone().unwrap_or_default(),
        input,
        state: CallState::Runs { approved: false },
    })
}
