//! What goes over a thread's channel: a tag (a frame, a subscriber count,
//! a command), the sending node (a node never acts on its own), the body.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// What goes over a thread's channel: a tag, the sending node, the body.
pub(super) fn envelope(tag: u8, node: &str, body: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(body.len() + node.len() + 2);
    buf.put_u8(tag);
    buf.put_u8(node.len().min(255) as u8);
    buf.put_slice(&node.as_bytes()[..node.len().min(255)]);
    buf.put_slice(body);
    buf.freeze()
}

pub(super) fn open_envelope(mut bytes: &[u8]) -> Option<(u8, &str, &[u8])> {
    if bytes.len() < 2 {
        return None;
    }
    let tag = bytes.get_u8();
    let len = bytes.get_u8() as usize;
    let node = std::str::from_utf8(bytes.get(..len)?).ok()?;
    Some((tag, node, &bytes[len..]))
}

pub(super) const TAG_FRAME: u8 = b'F';
pub(super) const TAG_PRESENCE: u8 = b'P';
pub(super) const TAG_COMMAND: u8 = b'C';

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_carry_their_node_and_body() {
        let e = envelope(TAG_FRAME, "node-a", b"body");
        assert_eq!(open_envelope(&e), Some((TAG_FRAME, "node-a", &b"body"[..])));
        assert_eq!(open_envelope(b"F"), None);
    }
}
