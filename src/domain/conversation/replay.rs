//! Replay: what a subscriber that starts at a cursor has not seen.
//!
//! - No cursor: the running answer so far (a fresh subscriber joining).
//! - A cursor that names no position of this thread (malformed, an
//!   unknown message, a byte offset inside a character): `cursor_invalid`,
//!   then the fresh replay.
//! - A cursor that names a message but lies past its stored text (past a
//!   block's end, or in a block that was never stored: a crash lost the
//!   tail the client saw), or at the very end of an `interrupted` message
//!   whose end is not known to be exact (a crash, where that cannot be
//!   told), or at or past the blocks of an answer continued after a
//!   crash (`Message::restart_seam`: such a cursor may be from before the
//!   crash, naming text the crash lost): `cursor_ahead`, then that message again
//!   from its start (`Event::rebuild_message`), then every later message.
//! - Otherwise: the rest of the cursor's block, its later blocks, its
//!   completion if it ended, then every later message, whole.

use super::Conversation;
use crate::domain::{
    codes::StreamCode,
    cursor::{Cursor, Resume},
    event::{end_cursor, Event},
    Message, MessageStatus, Role,
};

/// What a new subscriber is sent before live events.
#[derive(Debug, Clone, PartialEq)]
pub struct Replay {
    /// The `ready` event's cursor: where the subscriber stands before
    /// `events`.
    pub cursor: Option<Cursor>,
    /// `cursor_invalid` or `cursor_ahead`, sent right after `ready`.
    pub notice: Option<StreamCode>,
    pub events: Vec<Event>,
}

/// Where a cursor lies in the message it names.
enum Place {
    /// On a position of the message.
    On,
    /// Past its stored text.
    Ahead,
    /// Nowhere (inside a character).
    Nowhere,
}

fn place(message: &Message, c: Cursor) -> Place {
    if message.role == Role::User {
        // A user message has one position after it; any cursor naming it
        // means "seen".
        return Place::On;
    }
    // Continued after a crash: a reader may have seen blocks the crash
    // lost, and the continuation's blocks now stand at their indices. A
    // cursor there may have been given before the crash or after it; it
    // cannot tell, so it is never taken at its word (the message again,
    // from its start, is right either way).
    if message.restart_seam.is_some_and(|seam| c.block >= seam) {
        return Place::Ahead;
    }
    let n = message.blocks.len();
    match message.blocks.get(c.block) {
        Some(block) if c.offset > block.text.len() => Place::Ahead,
        Some(block) if block.text.is_char_boundary(c.offset) => Place::On,
        Some(_) => Place::Nowhere,
        // The end of an interrupted message whose end is not known to be
        // exact (a crash): the client saw its last block to some end, or
        // the start of a block after it, and the crash may have lost
        // either from the database; which, the cursor cannot tell. So it
        // gets the message again (the same text, if nothing was lost).
        None if c.block == n
            && c.offset == 0
            && message.status == MessageStatus::Interrupted
            && !message.exact_end
            && n > 0 =>
        {
            Place::Ahead
        }
        None if c.block == n && c.offset == 0 => Place::On,
        None => Place::Ahead,
    }
}

/// What follows cursor `c` inside `message` (on one of its positions).
fn rest_of(message: &Message, c: Cursor) -> Vec<Event> {
    if message.role == Role::User {
        return Vec::new();
    }
    let n = message.blocks.len();
    if c.block < n {
        // `M:0:0` is both `message.started` and block 0's start: re-send
        // the block's announcement rather than risk losing it.
        return Event::describe_message(message, c.block, c.offset, c.block == 0 && c.offset == 0);
    }
    if n == 0 && message.is_finished() {
        // `M:0:0` of an empty message is both `started` and `completed`:
        // re-send the completion rather than lose it.
        return vec![Event::completed(message)];
    }
    Vec::new()
}

pub(super) fn replay(conversation: &Conversation, from: Resume) -> Replay {
    let messages = conversation.messages();
    // A fresh subscriber gets the turn in progress whole: the running
    // answer, or the one that awaits input (ending in its
    // `message.awaiting`, so a tab that opens while a call waits is told
    // what waits), from just before it.
    let fresh = |notice| match conversation.running().or_else(|| conversation.awaiting()) {
        Some(current) => Replay {
            cursor: messages.len().checked_sub(2).map(|i| end_cursor(&messages[i])),
            notice,
            events: Event::whole_message(current),
        },
        None => Replay { cursor: conversation.head(), notice, events: Vec::new() },
    };
    let c = match from {
        Resume::Fresh => return fresh(None),
        Resume::Malformed => return fresh(Some(StreamCode::CursorInvalid)),
        Resume::At(c) => c,
    };
    let Some(i) = messages.iter().position(|m| m.id == c.message_id) else {
        return fresh(Some(StreamCode::CursorInvalid));
    };
    let later = messages[i + 1..].iter().flat_map(Event::whole_message);
    match place(&messages[i], c) {
        Place::Nowhere => fresh(Some(StreamCode::CursorInvalid)),
        Place::On => Replay {
            cursor: Some(c),
            notice: None,
            events: rest_of(&messages[i], c).into_iter().chain(later).collect(),
        },
        Place::Ahead => Replay {
            cursor: i.checked_sub(1).map(|p| end_cursor(&messages[p])),
            notice: Some(StreamCode::CursorAhead),
            events: Event::rebuild_message(&messages[i]).into_iter().chain(later).collect(),
        },
    }
}

/// `events` (what a subscriber at `from` is sent; `None`: from the
/// start) with `continued` (a `message.continued`) at its place: before
/// the first event of its message past its position (a delta that spans
/// that position is split there), or last when nothing of its message
/// is past it yet. Left out for a subscriber already past it.
pub(super) fn with_continued(events: Vec<Event>, continued: Option<&Event>, from: Option<Cursor>) -> Vec<Event> {
    let Some(Event::MessageContinued { message_id, cursor: Some(at), .. }) = continued else { return events };
    if from.is_some_and(|c| c.message_id == *message_id && (c.block, c.offset) > (at.block, at.offset)) {
        return events;
    }
    let at_pos = (at.block, at.offset);
    let mut pending = continued.cloned();
    let mut out = Vec::with_capacity(events.len() + 2);
    for event in events {
        if pending.is_none() || event.message_of() != Some(*message_id) {
            out.push(event);
            continue;
        }
        match event {
            Event::MessageDelta { thread_id, message_id, block, offset, text, .. }
                if block == at.block && offset < at.offset && at.offset < offset + text.len() =>
            {
                // (A continuation begins on a character boundary.)
                let (head, tail) = text.split_at(at.offset - offset);
                let end = offset + text.len();
                out.push(Event::MessageDelta {
                    thread_id,
                    cursor: Some(*at),
                    message_id,
                    block,
                    offset,
                    text: head.to_owned(),
                });
                out.extend(pending.take());
                out.push(Event::MessageDelta {
                    thread_id,
                    cursor: Some(Cursor::new(message_id, block, end)),
                    message_id,
                    block,
                    offset: at.offset,
                    text: tail.to_owned(),
                });
            }
            event => {
                // Where the event begins: a delta at its offset, anything
                // else at its cursor.
                let begins = match &event {
                    Event::MessageDelta { block, offset, .. } => Some((*block, *offset)),
                    other => other.cursor().map(|c| (c.block, c.offset)),
                };
                let past = match &event {
                    Event::MessageDelta { .. } => begins.is_some_and(|b| b >= at_pos),
                    _ => begins.is_some_and(|b| b > at_pos),
                };
                if past {
                    out.extend(pending.take());
                }
                out.push(event);
            }
        }
    }
    // Nothing of its message past it yet (the continuation has not
    // written): it comes last.
    out.extend(pending);
    out
}
