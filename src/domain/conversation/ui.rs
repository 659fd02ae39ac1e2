//! What the UI message stream needs of the conversation (see
//! `domain::ui_stream`): for each event, the kind of the block a delta
//! extends, the block an announcement or a completion ends, and the
//! canonical number of its first chunk.
//!
//! Numbers count chunks from the answer's `start`: two for `start` and
//! `start-step`, then per block its opening, one per delta the block was
//! published in, and its end; a result is one chunk, and the steps'
//! `finish-step` and `start-step` lie between the blocks (`Numbers`). A
//! reader's chunks are the same however it reads them (live, replayed,
//! caught up): only `message.awaiting`, which ends a stream, says a
//! step's end otherwise, under the numbers the step's first result will
//! have. So the deltas of the latest answer are
//! remembered by where each ended (`Published`): a few bytes per delta of
//! one answer per thread, never per subscriber. A message whose deltas
//! this conversation did not see (loaded from the database) counts each
//! block's text as one delta.

use std::{borrow::Cow, sync::Arc};

use uuid::Uuid;

use super::Conversation;
use crate::domain::{
    event::Event,
    turn::{self, CallState},
    ui_stream::{Answered, BlockRef, Closed, Context, Tool},
    Block, BlockKind, Message,
};

/// Where the deltas of one answer ended, block by block.
#[derive(Debug, Default)]
pub(super) struct Published {
    message: Option<Uuid>,
    blocks: Vec<PublishedBlock>,
}

#[derive(Debug)]
struct PublishedBlock {
    /// The byte offset at which each delta ended, in order.
    ends: Vec<usize>,
    /// A tool_use block's call, shared by the contexts of its deltas.
    tool: Option<Arc<Tool>>,
}

impl Published {
    /// A new answer starts: what was kept of the last one goes.
    pub(super) fn start(&mut self, message: Uuid) {
        self.message = Some(message);
        self.blocks.clear();
    }

    /// A running answer loaded as it stands: each block's text so far
    /// counts as one delta, and what follows is numbered after it.
    pub(super) fn adopt(&mut self, answer: &Message) {
        self.start(answer.id);
        for block in &answer.blocks {
            self.block(answer.id, block.kind, block.id.as_deref(), block.name.as_deref());
            self.delta(answer.id, self.blocks.len() - 1, block.text.len());
        }
    }

    /// Answer `message` opened a block.
    pub(super) fn block(&mut self, message: Uuid, kind: BlockKind, id: Option<&str>, name: Option<&str>) {
        if self.message == Some(message) {
            let tool = (kind == BlockKind::ToolUse).then(|| {
                Arc::new(Tool {
                    id: id.unwrap_or_default().to_owned(),
                    name: name.unwrap_or_default().to_owned(),
                    answered: None,
                })
            });
            self.blocks.push(PublishedBlock { ends: Vec::new(), tool });
        }
    }

    /// A delta of block `block` of `message` ended at byte `end`.
    pub(super) fn delta(&mut self, message: Uuid, block: usize, end: usize) {
        if self.message != Some(message) {
            return;
        }
        if let Some(b) = self.blocks.get_mut(block) {
            if end > 0 && b.ends.last().is_none_or(|&last| end > last) {
                b.ends.push(end);
            }
        }
    }

    fn of(&self, message: Uuid, block: usize) -> Option<&PublishedBlock> {
        self.blocks.get(block).filter(|_| self.message == Some(message))
    }
}

impl Conversation {
    /// The UI stream's context of `event`, as this conversation stands
    /// (after the event).
    pub fn ui_context(&self, event: &Event) -> Context {
        let Some(message) = event.message_of().and_then(|id| self.message(id)) else { return Context::default() };
        let numbers = Numbers { conversation: self, message };
        let is_result = |b: usize| message.blocks.get(b).is_some_and(|b| b.kind == BlockKind::ToolResult);
        match event {
            Event::MessageStep { cursor, .. } => {
                // Its cursor is the end of the last result before the step.
                let first = cursor.map_or(message.blocks.len(), |c| c.block + 1);
                Context { seq: numbers.at(first), ..Context::default() }
            }
            Event::MessageBlock { block, .. } if is_result(*block) => match numbers.ends_step(*block) {
                // The step's first result: its last block ends, and the step.
                true => Context {
                    seq: numbers.at(*block) - 1,
                    closes: numbers.closed(block - 1),
                    step_end: true,
                    ..Context::default()
                },
                false => Context { seq: numbers.at(*block), ..Context::default() },
            },
            Event::MessageBlock { block, .. } if *block > 0 && !is_result(block - 1) => {
                Context { seq: numbers.opening(*block) - 1, closes: numbers.closed(block - 1), ..Context::default() }
            }
            Event::MessageBlock { block, .. } => Context { seq: numbers.opening(*block), ..Context::default() },
            Event::MessageDelta { block, .. } if is_result(*block) => Context {
                seq: numbers.at(*block) + u64::from(numbers.ends_step(*block)),
                block: numbers.block_ref(*block),
                ..Context::default()
            },
            Event::MessageDelta { block, offset, text, .. } => {
                let ends = numbers.ends(*block);
                let first = ends.partition_point(|&e| e <= *offset);
                let last = ends.partition_point(|&e| e < offset + text.len());
                let splits = ends.get(first..last).map(Box::<[usize]>::from).unwrap_or_default();
                Context {
                    seq: numbers.opening(*block) + 1 + first as u64,
                    block: numbers.block_ref(*block),
                    splits,
                    ..Context::default()
                }
            }
            // The answer's end, or where it waits: its last block ends
            // there (unless that is a result, which has no end).
            Event::MessageCompleted { .. } | Event::MessageAwaiting { .. } => match message.blocks.len() {
                0 => Context { seq: 2, ..Context::default() },
                n if is_result(n - 1) => Context { seq: numbers.at(n), ..Context::default() },
                n => Context {
                    seq: numbers.at(n) - 1,
                    closes: numbers.closed(n - 1),
                    step_end: matches!(event, Event::MessageAwaiting { .. }),
                    ..Context::default()
                },
            },
            _ => Context::default(),
        }
    }
}

/// The canonical numbers of one message's chunks: `start` and
/// `start-step` (0, 1), then block by block what `ui_stream::pieces`
/// makes of it. A block of text, thinking or a call: its opening, one
/// chunk per published delta, its end (written by what follows it), and
/// `start-step` before it when it begins a step after results. A result:
/// one chunk, and `finish-step` before it when it is the first after its
/// step's calls.
struct Numbers<'a> {
    conversation: &'a Conversation,
    message: &'a Message,
}

impl Numbers<'_> {
    /// Where block `block`'s deltas ended.
    fn ends(&self, block: usize) -> Cow<'_, [usize]> {
        if let Some(published) = self.conversation.published.of(self.message.id, block) {
            return Cow::Borrowed(&published.ends);
        }
        match self.message.blocks.get(block).map(|b| b.text.len()) {
            Some(0) | None => Cow::Borrowed(&[]),
            Some(len) => Cow::Owned(vec![len]),
        }
    }

    fn is_result(&self, block: usize) -> bool {
        self.message.blocks.get(block).is_some_and(|b| b.kind == BlockKind::ToolResult)
    }

    /// Block `block` (that may be the one to come) begins a step: it
    /// follows results and is none.
    fn begins_step(&self, block: usize) -> bool {
        block > 0 && self.is_result(block - 1) && !self.is_result(block)
    }

    /// Result `block` is its step's first: the step ends before it.
    fn ends_step(&self, block: usize) -> bool {
        block > 0 && self.is_result(block) && !self.is_result(block - 1)
    }

    /// How many chunks block `block` makes.
    fn cost(&self, block: usize) -> u64 {
        if self.is_result(block) {
            u64::from(self.ends_step(block)) + u64::from(!self.ends(block).is_empty())
        } else {
            u64::from(self.begins_step(block)) + self.ends(block).len() as u64 + 2
        }
    }

    /// The number of the first chunk at block `block` (or after the last).
    fn at(&self, block: usize) -> u64 {
        2 + (0..block).map(|b| self.cost(b)).sum::<u64>()
    }

    /// The number of block `block`'s opening chunk.
    fn opening(&self, block: usize) -> u64 {
        self.at(block) + u64::from(self.begins_step(block))
    }

    fn block_ref(&self, block: usize) -> Option<BlockRef> {
        let b = self.message.blocks.get(block)?;
        let tool = match (b.kind, self.conversation.published.of(self.message.id, block)) {
            (BlockKind::ToolResult, _) => {
                let id = b.tool_use_id.clone().unwrap_or_default();
                let answered = answered(self.message, &id, b);
                Some(Arc::new(Tool { id, name: String::new(), answered: Some(answered) }))
            }
            (_, Some(published)) => published.tool.clone(),
            (kind, None) => (kind == BlockKind::ToolUse).then(|| {
                Arc::new(Tool {
                    id: b.id.clone().unwrap_or_default(),
                    name: b.name.clone().unwrap_or_default(),
                    answered: None,
                })
            }),
        };
        Some(BlockRef { index: block, kind: b.kind, tool })
    }

    fn closed(&self, block: usize) -> Option<Box<Closed>> {
        let block_ref = self.block_ref(block)?;
        let input = (block_ref.kind == BlockKind::ToolUse).then(|| self.message.blocks[block].text.clone());
        Some(Box::new(Closed { block: block_ref, input }))
    }
}

/// How call `id` was answered, by its result `block`: a denial is what a
/// person decided (the call, while the answer holds its step's calls, or
/// else the result's text: `turn::reason::DENIED`).
fn answered(message: &Message, id: &str, block: &Block) -> Answered {
    if !block.is_error {
        return Answered::Output;
    }
    let denied = match message.calls.iter().find(|c| c.id == id).map(|c| &c.state) {
        Some(CallState::Resolved { approved, .. }) => *approved == Some(false),
        _ => serde_json::from_str::<String>(&block.text).is_ok_and(|t| t.starts_with(turn::reason::DENIED)),
    };
    if denied {
        Answered::Denied
    } else {
        Answered::Error
    }
}

#[cfg(test)]
mod tests;
