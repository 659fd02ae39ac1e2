//! The client's bytes cut into whole frames, each in a buffer of its own
//! that the budget pays for.
//!
//! A frame's header is read as it passes (`parse_header`) and checked as
//! actix-http's decoder checks it (reserved bits, mask, opcode), and for
//! size: an over-size frame or message, or a control frame longer than
//! 125 bytes, is refused before its payload. Its bytes
//! are then copied, as they arrive, into a buffer sized for that frame
//! alone: it grows by doubling, never past the frame's declared length,
//! and each growth of a data frame's buffer is taken from the budget
//! before it is allocated, so what the budget says is held is what is
//! allocated. (A decoder that buffers the stream itself sizes its buffer
//! by what the header declares, or doubles it as chunks come: both held
//! more than the bytes received, and out of the budget's sight.) The
//! chunks the connection read are dropped as soon as they are copied, so
//! none of them is pinned by a frame that never ends.

use std::sync::Arc;

use actix_http::ws::{Parser, ProtocolError};
use bytes::{Buf, Bytes, BytesMut};

use super::{Budget, Refused};

/// The longest payload of a control frame (RFC 6455 §5.5).
const MAX_CONTROL_PAYLOAD: u64 = 125;

/// The first allocation of a frame's buffer, when the frame is larger.
const FIRST_ALLOCATION: usize = 4 * 1024;

/// A whole frame (header and payload), and the budget its buffer holds.
pub(super) struct Whole {
    pub bytes: BytesMut,
    pub charged: usize,
}

/// Where the reader is in the client's byte stream.
enum At {
    /// Reading a frame header: the bytes so far.
    Header { bytes: [u8; 14], have: usize },
    /// Inside a frame: its whole length (header included), and whether it
    /// belongs to a data message (whose buffer the budget pays for).
    Frame { len: usize, data: bool },
}

pub(super) struct Frames {
    budget: Arc<Budget>,
    limit: u64,
    at: At,
    /// The frame being received.
    buf: BytesMut,
    /// Of `buf`'s capacity, what is taken from the budget.
    charged: usize,
    /// Payload bytes of the current data message so far, its frames' as
    /// declared.
    message_len: u64,
}

impl Frames {
    pub fn new(limit: usize, budget: Arc<Budget>) -> Frames {
        Frames {
            budget,
            limit: limit as u64,
            at: At::Header { bytes: [0; 14], have: 0 },
            buf: BytesMut::new(),
            charged: 0,
            message_len: 0,
        }
    }

    /// Takes bytes from `input` until a frame is whole, then returns it;
    /// `None` once `input` is used up with no frame whole.
    pub fn next(&mut self, input: &mut Bytes) -> Result<Option<Whole>, ProtocolError> {
        while !input.is_empty() {
            match &mut self.at {
                At::Header { bytes, have } => {
                    bytes[*have] = input[0];
                    *have += 1;
                    input.advance(1);
                    if let Some(header) = parse_header(&bytes[..*have]) {
                        let header_bytes = *bytes;
                        self.frame_begins(&header, &header_bytes[..header.len])?;
                    }
                }
                At::Frame { len, data } => {
                    let (len, data) = (*len, *data);
                    let n = (len - self.buf.len()).min(input.len());
                    self.make_room(self.buf.len() + n, len, data)?;
                    self.buf.extend_from_slice(&input[..n]);
                    input.advance(n);
                }
            }
            if let At::Frame { len, .. } = self.at {
                if self.buf.len() == len {
                    return Ok(Some(self.frame_ends()));
                }
            }
        }
        Ok(None)
    }

    /// A whole header has arrived: checks it, the frame's size, and the
    /// message's across its continuation frames, before any payload.
    fn frame_begins(&mut self, header: &Header, header_bytes: &[u8]) -> Result<(), ProtocolError> {
        // The decoder's own checks of a header (a maximum size of 0 keeps
        // it from reserving room for the payload it is not given).
        Parser::parse(&mut BytesMut::from(header_bytes), true, 0)?;
        let data = header.opcode < 8;
        if data {
            // A continuation adds to its message; a new data frame starts
            // one (a new message while one is unfinished is the decoder's
            // protocol error, after this).
            let before = if header.opcode == 0 { self.message_len } else { 0 };
            let total = before.checked_add(header.payload).ok_or(Refused::TooLarge)?;
            if total > self.limit {
                return Err(Refused::TooLarge.into());
            }
            self.message_len = if header.fin { 0 } else { total };
        }
        if !data && header.payload > MAX_CONTROL_PAYLOAD {
            return Err(ProtocolError::InvalidLength(header.payload as usize));
        }
        let len = header.len + header.payload as usize;
        self.at = At::Frame { len, data };
        self.make_room(header.len, len, data)?;
        self.buf.extend_from_slice(header_bytes);
        Ok(())
    }

    /// Makes `buf` hold at least `needed` bytes of a frame of `len`:
    /// doubling, never past `len`, paid from the budget first for a data
    /// frame.
    fn make_room(&mut self, needed: usize, len: usize, data: bool) -> Result<(), ProtocolError> {
        let capacity = self.buf.capacity();
        if needed <= capacity {
            return Ok(());
        }
        let grown = needed.max(capacity * 2).max(FIRST_ALLOCATION).min(len);
        if data {
            let more = grown.saturating_sub(self.charged);
            if !self.budget.take(more) {
                return Err(Refused::Busy.into());
            }
            self.charged += more;
        }
        // A buffer of exactly `grown` bytes (`reserve` would round up as it
        // pleases): what the budget paid for.
        let mut buf = BytesMut::with_capacity(grown);
        buf.extend_from_slice(&self.buf);
        self.buf = buf;
        Ok(())
    }

    /// What the budget paid for the frame being received, and the
    /// capacity of its buffer.
    #[cfg(test)]
    pub fn paid(&self) -> (usize, usize) {
        (self.charged, self.buf.capacity())
    }

    fn frame_ends(&mut self) -> Whole {
        self.at = At::Header { bytes: [0; 14], have: 0 };
        Whole { bytes: std::mem::take(&mut self.buf), charged: std::mem::take(&mut self.charged) }
    }
}

impl Drop for Frames {
    fn drop(&mut self) {
        self.budget.give(self.charged);
    }
}

pub(super) struct Header {
    pub fin: bool,
    pub opcode: u8,
    pub payload: u64,
    /// The header's own length in bytes.
    pub len: usize,
}

/// The frame header in `bytes`, once they hold all of it (RFC 6455 §5.2).
pub(super) fn parse_header(bytes: &[u8]) -> Option<Header> {
    if bytes.len() < 2 {
        return None;
    }
    let masked = bytes[1] & 0x80 != 0;
    let (extended, short) = match bytes[1] & 0x7f {
        126 => (2, None),
        127 => (8, None),
        n => (0, Some(n as u64)),
    };
    let len = 2 + extended + if masked { 4 } else { 0 };
    if bytes.len() < len {
        return None;
    }
    let payload = short.unwrap_or_else(|| bytes[2..2 + extended].iter().fold(0u64, |acc, b| (acc << 8) | *b as u64));
    Some(Header { fin: bytes[0] & 0x80 != 0, opcode: bytes[0] & 0x0f, payload, len })
}
