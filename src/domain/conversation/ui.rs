//! What the UI message stream needs of the conversation (see
//! `domain::ui_stream`): for each event, the kind of the block a delta
//! extends, the block an announcement or a completion ends, and the
//! canonical number of its first chunk.
//!
//! Numbers count chunks from the answer's `start`: two for `start` and
//! `start-step`, then per block its opening, one per delta the block was
//! published in, and its end. So the deltas of the latest answer are
//! remembered by where each ended (`Published`): a few bytes per delta of
//! one answer per thread, never per subscriber. A message whose deltas
//! this conversation did not see (loaded from the database) counts each
//! block's text as one delta.

use std::{borrow::Cow, sync::Arc};

use uuid::Uuid;

use super::Conversation;
use crate::domain::{
    event::Event,
    ui_stream::{BlockRef, Closed, Context, Tool},
    BlockKind, Message,
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
                Arc::new(Tool { id: id.unwrap_or_default().to_owned(), name: name.unwrap_or_default().to_owned() })
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
        let Some(message) = event_message(event).and_then(|id| self.message(id)) else { return Context::default() };
        let numbers = Numbers { conversation: self, message };
        match event {
            Event::MessageBlock { block, .. } if *block > 0 => {
                Context { seq: numbers.opening(*block) - 1, closes: numbers.closed(block - 1), ..Context::default() }
            }
            Event::MessageBlock { block, .. } => Context { seq: numbers.opening(*block), ..Context::default() },
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
            Event::MessageCompleted { .. } => match message.blocks.len() {
                0 => Context { seq: 2, ..Context::default() },
                n => Context {
                    seq: numbers.opening(n - 1) + 1 + numbers.ends(n - 1).len() as u64,
                    closes: numbers.closed(n - 1),
                    ..Context::default()
                },
            },
            _ => Context::default(),
        }
    }
}

fn event_message(event: &Event) -> Option<Uuid> {
    match event {
        Event::MessageStarted { message_id, .. }
        | Event::MessageBlock { message_id, .. }
        | Event::MessageDelta { message_id, .. }
        | Event::MessageCompleted { message_id, .. } => Some(*message_id),
        _ => None,
    }
}

/// The canonical numbers of one message's chunks.
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

    /// The number of block `block`'s opening chunk.
    fn opening(&self, block: usize) -> u64 {
        2 + (0..block).map(|b| self.ends(b).len() as u64 + 2).sum::<u64>()
    }

    fn block_ref(&self, block: usize) -> Option<BlockRef> {
        let b = self.message.blocks.get(block)?;
        let tool = match self.conversation.published.of(self.message.id, block) {
            Some(published) => published.tool.clone(),
            None => (b.kind == BlockKind::ToolUse).then(|| {
                Arc::new(Tool { id: b.id.clone().unwrap_or_default(), name: b.name.clone().unwrap_or_default() })
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
