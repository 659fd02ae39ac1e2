//! Cursors: `<message_id>:<block>:<offset>`, the position right after an
//! event. Text is the log: a block's text is append-only, so a byte offset
//! into it names a position exactly, and resume needs no per-chunk storage.
//!
//! Positions inside one assistant message (n = its number of blocks):
//! `message.started` is `M:0:0`, `message.block` b is `M:b:0`, a delta
//! ending at byte e of block b is `M:b:e`, and `message.completed` is
//! `M:n:0`. A user message's `message.created` is `M:1:0` (it has one
//! block and is complete when created).

use std::{fmt, str::FromStr};

use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cursor {
    pub message_id: Uuid,
    pub block: usize,
    pub offset: usize,
}

impl Cursor {
    pub fn new(message_id: Uuid, block: usize, offset: usize) -> Self {
        Cursor { message_id, block, offset }
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.message_id, self.block, self.offset)
    }
}

/// Where a new subscriber asks to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// No cursor: a fresh subscriber.
    Fresh,
    /// Right after this position.
    At(Cursor),
    /// A cursor was sent but is not one (`cursor_invalid`, then fresh).
    Malformed,
}

impl Resume {
    /// The cursor asked for, if one was and it parsed.
    pub fn cursor(self) -> Option<Cursor> {
        match self {
            Resume::At(c) => Some(c),
            Resume::Fresh | Resume::Malformed => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a cursor is `<message_id>:<block>:<offset>`")]
pub struct CursorParseError;

impl FromStr for Cursor {
    type Err = CursorParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.trim().splitn(3, ':');
        let (Some(id), Some(block), Some(offset)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(CursorParseError);
        };
        let message_id = Uuid::try_parse(id).map_err(|_| CursorParseError)?;
        let block = block.parse().map_err(|_| CursorParseError)?;
        let offset = offset.parse().map_err(|_| CursorParseError)?;
        Ok(Cursor { message_id, block, offset })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_text() {
        let c = Cursor::new(Uuid::now_v7(), 2, 17);
        assert_eq!(c.to_string().parse::<Cursor>(), Ok(c));
    }

    #[test]
    fn rejects_malformed_text() {
        for bad in [
            "",
            "x:1:2",
            "0190a0c2-0000-7000-8000-000000000000:1",
            "0190a0c2-0000-7000-8000-000000000000:-1:0",
            "0190a0c2-0000-7000-8000-000000000000:1:2:3",
        ] {
            assert!(bad.parse::<Cursor>().is_err(), "{bad}");
        }
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn any_cursor_round_trips(id in any::<u128>(), block in 0usize..10_000, offset in 0usize..10_000_000) {
            let c = Cursor::new(Uuid::from_u128(id), block, offset);
            prop_assert_eq!(c.to_string().parse::<Cursor>(), Ok(c));
        }

        #[test]
        fn any_text_parses_or_is_refused_without_panicking(
            text in prop_oneof![".{0,80}", "([0-9a-f]{32}|[0-9a-f-]{36}):[0-9+-]{0,6}:[0-9a-z+-]{0,10}"],
        ) {
            if let Ok(c) = text.parse::<Cursor>() {
                // Whatever parsed names the same position when written back.
                prop_assert_eq!(c.to_string().parse::<Cursor>(), Ok(c));
            }
        }
    }
}
