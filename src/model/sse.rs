//! The line framer in front of `eventsource-stream`: it cuts a provider's
//! response body into complete SSE lines, scanning each byte once, and
//! holds each event to a size limit.
//!
//! Why it exists: `eventsource-stream` appends every chunk to one buffer
//! and scans that whole buffer for a line end again after each chunk, so
//! one long line costs time in the square of its length (an 8 MB event
//! took 11 s), and nothing bounds what it buffers. Fed one complete line
//! at a time, its buffer never holds more than that line and each of its
//! scans is of new bytes; the crate still does the SSE field parsing.
//!
//! The framer also says which lines are progress: a blank line that ends
//! an event, and a comment line (the keep-alive the SSE spec suggests).
//! A byte, or a line of an unfinished event, is not: a provider that
//! drips bytes must still finish an event within the stall limit.
//!
//! Line ends follow the SSE spec (CRLF, CR or LF); each line is handed on
//! ending in one LF, so the crate never waits to see whether an LF
//! follows a CR. Each line is checked to be UTF-8 here, since the crate's
//! own decoder keeps everything after a bad byte buffered until the body
//! ends.

use bytes::Bytes;

/// A complete line, ending in LF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub bytes: Bytes,
    /// It ends an event, or is a comment: the provider is making progress.
    pub progress: bool,
}

/// Why the body cannot be read as SSE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// One event (its lines since the last blank line) passed this many bytes.
    TooLarge(usize),
    /// A line is not UTF-8.
    NotUtf8,
}

/// Cuts a byte stream into lines; see the module documentation.
#[derive(Debug)]
pub struct Framer {
    max_event: usize,
    /// The current line's bytes so far, when it began in an earlier chunk.
    partial: Vec<u8>,
    /// Bytes of the current event's complete lines, one per line end.
    event: usize,
    /// The current event has a field line (not only comments).
    fields: bool,
    /// The last chunk ended in CR: an LF first in the next one is the
    /// rest of that line end, not a blank line.
    after_cr: bool,
    /// Bytes examined for a line end (tests: each byte exactly once).
    #[cfg(test)]
    scanned: usize,
}

impl Framer {
    /// A framer that refuses an event over `max_event` bytes.
    pub fn new(max_event: usize) -> Framer {
        Framer {
            max_event,
            partial: Vec::new(),
            event: 0,
            fields: false,
            after_cr: false,
            #[cfg(test)]
            scanned: 0,
        }
    }

    /// The lines `chunk` completes, in order. After a fault the framer
    /// must not be used again.
    pub fn push(&mut self, chunk: Bytes) -> Result<Vec<Line>, Fault> {
        let mut lines = Vec::new();
        if chunk.is_empty() {
            return Ok(lines);
        }
        let mut at = usize::from(std::mem::take(&mut self.after_cr) && chunk[0] == b'\n');
        while at < chunk.len() {
            let rest = &chunk[at..];
            let Some(found) = rest.iter().position(|&b| b == b'\n' || b == b'\r') else {
                #[cfg(test)]
                {
                    self.scanned += rest.len();
                }
                // An unfinished line: refused as soon as it would pass the
                // limit, so no more than the limit is ever held.
                self.within(self.partial.len() + rest.len())?;
                self.partial.extend_from_slice(rest);
                break;
            };
            #[cfg(test)]
            {
                self.scanned += found + 1;
            }
            let end = at + found;
            let length = self.partial.len() + found;
            if length > 0 {
                // (A blank line ends the event: it adds nothing to it.)
                self.within(length + 1)?;
            }
            let line = if self.partial.is_empty() && chunk[end] == b'\n' {
                // The common case, a whole LF line inside one chunk: no copy.
                chunk.slice(at..=end)
            } else {
                let mut line = std::mem::take(&mut self.partial);
                line.extend_from_slice(&chunk[at..end]);
                line.push(b'\n');
                Bytes::from(line)
            };
            at = end + 1;
            if chunk[end] == b'\r' {
                match chunk.get(at) {
                    Some(b'\n') => at += 1,
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
            lines.push(self.complete(line)?);
        }
        Ok(lines)
    }

    /// Whether the current event may grow to `line` more bytes.
    fn within(&self, line: usize) -> Result<(), Fault> {
        if self.event.saturating_add(line) > self.max_event {
            return Err(Fault::TooLarge(self.max_event));
        }
        Ok(())
    }

    /// Accounts for one complete line (ending in LF).
    fn complete(&mut self, bytes: Bytes) -> Result<Line, Fault> {
        let content = &bytes[..bytes.len() - 1];
        if content.is_empty() {
            let progress = std::mem::take(&mut self.fields);
            self.event = 0;
            return Ok(Line { bytes, progress });
        }
        std::str::from_utf8(content).map_err(|_| Fault::NotUtf8)?;
        self.event += bytes.len();
        let comment = content[0] == b':';
        self.fields |= !comment;
        Ok(Line { bytes, progress: comment })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame(max: usize, pieces: &[&[u8]]) -> Result<Vec<Line>, Fault> {
        let mut framer = Framer::new(max);
        let mut out = Vec::new();
        for p in pieces {
            out.extend(framer.push(Bytes::copy_from_slice(p))?);
        }
        Ok(out)
    }

    fn texts(lines: &[Line]) -> Vec<(&str, bool)> {
        lines.iter().map(|l| (std::str::from_utf8(&l.bytes).unwrap(), l.progress)).collect()
    }

    #[test]
    fn every_line_end_becomes_one_lf_and_events_and_comments_are_progress() {
        let lines = frame(1 << 20, &[b"event: a\r\ndata: 1\r\rdata: 2\n: keep\n\n\n"]).unwrap();
        assert_eq!(
            texts(&lines),
            [
                ("event: a\n", false),
                ("data: 1\n", false),
                ("\n", true),
                ("data: 2\n", false),
                (": keep\n", true),
                ("\n", true),
                // A blank line that ends nothing is no progress.
                ("\n", false),
            ]
        );
    }

    #[test]
    fn a_crlf_split_between_chunks_is_one_line_end() {
        let lines = frame(1 << 20, &[b"data: x\r", b"\ndata: y\r", b"\r\n"]).unwrap();
        assert_eq!(texts(&lines), [("data: x\n", false), ("data: y\n", false), ("\n", true)]);
    }

    #[test]
    fn an_event_over_the_limit_is_refused_before_its_line_ends() {
        // Two lines of 8 bytes each fit in 16; a third, unfinished, does not.
        let mut framer = Framer::new(16);
        assert_eq!(framer.push(Bytes::from_static(b"data: a\ndata: b\n")).unwrap().len(), 2);
        assert_eq!(framer.push(Bytes::from_static(b"d")), Err(Fault::TooLarge(16)));
        // A blank line starts the count again.
        let mut framer = Framer::new(16);
        let ok = framer.push(Bytes::from_static(b"data: a\ndata: b\n\ndata: c\ndata: d\n\n")).unwrap();
        assert_eq!(ok.len(), 6);
        // One long line, in pieces: refused while it is still coming.
        let mut framer = Framer::new(1024);
        let piece = Bytes::from(vec![b'x'; 100]);
        let results: Vec<_> = (0..20).map(|_| framer.push(piece.clone())).collect();
        assert!(results[..10].iter().all(Result::is_ok));
        assert_eq!(results[10], Err(Fault::TooLarge(1024)));
        assert!(framer.partial.len() <= 1024);
    }

    #[test]
    fn a_line_that_is_not_utf8_is_refused() {
        assert_eq!(frame(1024, &[b"data: \xff\n"]), Err(Fault::NotUtf8));
        // A character split between chunks is fine.
        let lines = frame(1024, &["data: é\n".as_bytes()[..7].as_ref(), &"data: é\n".as_bytes()[7..]]).unwrap();
        assert_eq!(texts(&lines), [("data: é\n", false)]);
    }

    #[test]
    fn a_long_line_in_small_pieces_is_scanned_once() {
        // 8 MiB in 1 KiB pieces: the work is the bytes, not their square.
        let mut framer = Framer::new(16 << 20);
        let piece = Bytes::from(vec![b'a'; 1024]);
        let mut total = 0;
        framer.push(Bytes::from_static(b"data: ")).unwrap();
        total += 6;
        for _ in 0..8 * 1024 {
            assert!(framer.push(piece.clone()).unwrap().is_empty());
            total += piece.len();
        }
        let lines = framer.push(Bytes::from_static(b"\n\n")).unwrap();
        total += 2;
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].bytes.len(), 6 + 8 * 1024 * 1024 + 1);
        assert_eq!(framer.scanned, total);
    }

    fn transcript() -> Vec<u8> {
        "event: message_start\ndata: {\"a\":1}\r\n\r\n: ping\n\nevent: d\ndata: Grüße\rdata: 世界\r\r\ndata: last\n\n"
            .as_bytes()
            .to_vec()
    }

    proptest! {
        /// However the bytes are split, the same lines come out.
        #[test]
        fn any_split_frames_the_same(cuts in proptest::collection::vec(0usize..200, 0..20)) {
            let bytes = transcript();
            let whole = frame(1 << 20, &[&bytes]).unwrap();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % bytes.len()).collect();
            cuts.sort_unstable();
            cuts.dedup();
            let mut pieces = Vec::new();
            let mut from = 0;
            for c in cuts {
                pieces.push(&bytes[from..c]);
                from = c;
            }
            pieces.push(&bytes[from..]);
            prop_assert_eq!(frame(1 << 20, &pieces).unwrap(), whole);
        }
    }
}
