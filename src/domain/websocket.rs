//! WebSocket framing as a server writes it (RFC 6455 §5.2): unmasked,
//! final frames, so the bytes of a frame are the same for every client
//! and are encoded once. A leaf: it knows no other module of the crate.

use bytes::{BufMut, Bytes, BytesMut};

/// The WebSocket opcodes the server sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WsOp {
    Text = 0x1,
    Close = 0x8,
    Ping = 0x9,
    Pong = 0xA,
}

/// One unmasked (server) WebSocket frame with FIN set (RFC 6455 §5.2).
pub fn ws_frame(op: WsOp, payload: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(payload.len() + 10);
    put_ws_header(&mut buf, op, payload.len());
    buf.put_slice(payload);
    buf.freeze()
}

/// The head of an unmasked, final WebSocket frame of `len` payload bytes.
pub fn put_ws_header(buf: &mut BytesMut, op: WsOp, len: usize) {
    buf.put_u8(0x80 | op as u8);
    match len {
        n @ 0..=125 => buf.put_u8(n as u8),
        n @ 126..=0xffff => {
            buf.put_u8(126);
            buf.put_u16(n as u16);
        }
        n => {
            buf.put_u8(127);
            buf.put_u64(n as u64);
        }
    }
}

/// A WebSocket close frame with its code and reason (cut to fit a
/// control frame's 125 bytes).
pub fn ws_close(code: u16, reason: &str) -> Bytes {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = Vec::with_capacity(2 + end);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    ws_frame(WsOp::Close, &payload)
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;

    use super::*;

    #[test]
    fn websocket_frames_match_what_actix_writes() {
        for len in [0, 5, 125, 126, 65535, 65536] {
            let payload = vec![b'x'; len];
            let mut theirs = BytesMut::new();
            actix_http::ws::Parser::write_message(&mut theirs, &payload[..], actix_http::ws::OpCode::Text, true, false);
            assert_eq!(ws_frame(WsOp::Text, &payload), theirs.freeze(), "{len}");
        }
        let mut theirs = BytesMut::new();
        let reason =
            actix_http::ws::CloseReason { code: actix_http::ws::CloseCode::Away, description: Some("bye".into()) };
        actix_http::ws::Parser::write_close(&mut theirs, Some(reason), false);
        assert_eq!(ws_close(1001, "bye"), theirs.freeze());
    }
}
