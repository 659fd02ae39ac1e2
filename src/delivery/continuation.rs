//! A request that continues an answer: the AI SDK's next request once its
//! client has answered the calls a step ended with (`http::chat`). Its
//! client holds the answer up to that step's end, so the request's stream
//! is what it wrote first (`start` again, with the answer's id, and what
//! its client must be told of the calls) and then the answer's chunks
//! after that step's end. Its subscription starts at the end of the step's
//! last block, so the first `finish-step` it meets is that step's: the
//! chunks up to it (the block's end, `finish-step`) are the client's
//! already, and are skipped. Over the WebSocket transport the request
//! numbers its chunks from 0 without a gap: those it wrote first, then the
//! answer's, shifted.

use std::cell::Cell;

use crate::domain::ui_stream::Piece;

#[derive(Debug, Clone)]
pub struct Continuation {
    /// How many chunks the request wrote before the answer's.
    written: u64,
    /// The canonical number of the answer's first chunk after the step's
    /// end, once that end was met.
    from: Cell<Option<u64>>,
}

impl Continuation {
    /// A continuation whose request wrote `written` chunks first.
    pub fn new(written: u64) -> Continuation {
        Continuation { written, from: Cell::new(None) }
    }

    /// The pieces of a frame (in order) this request sends, each with the
    /// number it sends it under. Skipping is by number, so a frame met
    /// again (a catch-up after a full pipe) is taken alike.
    pub fn take<'a>(&self, pieces: impl IntoIterator<Item = &'a Piece>) -> Vec<(u64, &'a Piece)> {
        let mut out = Vec::new();
        for piece in pieces {
            match self.from.get() {
                None if piece.ends_step => self.from.set(Some(piece.seq + 1)),
                Some(from) if piece.seq >= from => out.push((piece.seq - from + self.written, piece)),
                _ => {}
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn piece(seq: u64, json: &'static str) -> Piece {
        Piece { seq, json: Bytes::from_static(json.as_bytes()), ends_step: json == r#"{"type":"finish-step"}"# }
    }

    #[test]
    fn the_steps_end_is_skipped_and_what_follows_is_numbered_on_from_what_was_written() {
        let c = Continuation::new(2);
        // The step's first result: its last call's end, `finish-step`, then
        // the result.
        let first = [
            piece(9, r#"{"type":"tool-input-available"}"#),
            piece(10, r#"{"type":"finish-step"}"#),
            piece(11, r#"{"type":"tool-output-available"}"#),
        ];
        let taken: Vec<(u64, u64)> = c.take(&first).into_iter().map(|(n, p)| (n, p.seq)).collect();
        assert_eq!(taken, [(2, 11)]);
        // Met again (a catch-up): the same.
        let again: Vec<(u64, u64)> = c.take(&first).into_iter().map(|(n, p)| (n, p.seq)).collect();
        assert_eq!(again, [(2, 11)]);
        let next = [piece(12, r#"{"type":"start-step"}"#), piece(13, r#"{"type":"finish-step"}"#)];
        let taken: Vec<u64> = c.take(&next).into_iter().map(|(n, _)| n).collect();
        assert_eq!(taken, [3, 4], "a later step's end is the client's to see");
    }

    #[test]
    fn nothing_is_sent_before_the_steps_end() {
        let c = Continuation::new(1);
        assert!(c.take(&[piece(4, r#"{"type":"tool-input-delta"}"#)]).is_empty());
    }
}
