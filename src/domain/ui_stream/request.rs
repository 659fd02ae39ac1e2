//! The `WebSocketChatTransport`'s envelope around the UI stream's chunks:
//! one request's server frames (`chunk` with its `sequence`, and the
//! `start`, `end`, `no-active` and `error` controls), its `requestId`
//! encoded once.

use bytes::{Bytes, BytesMut};

use super::Piece;

/// The `WebSocketChatTransport`'s server frames of one request, as JSON
/// texts: its `requestId` is encoded once, and each chunk is written
/// around the frame's shared bytes without JSON work.
#[derive(Debug, Clone)]
pub struct Request {
    /// `{"type":"chunk","requestId":"…","sequence":`
    chunk_prefix: Bytes,
    /// `"requestId":"…"` with its quotes.
    id_json: String,
}

const CHUNK_KEY: &[u8] = b",\"chunk\":";

/// How many digits `n` has in decimal.
pub(super) fn decimal_len(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

impl Request {
    pub fn new(request_id: &str) -> Request {
        // unwrap: a string always serializes.
        let id_json = format!("\"requestId\":{}", serde_json::to_string(request_id).unwrap());
        let chunk_prefix = Bytes::from(format!("{{\"type\":\"chunk\",{id_json},\"sequence\":"));
        Request { chunk_prefix, id_json }
    }

    /// `{"type":"chunk","requestId":…,"sequence":…,"chunk":…}`
    pub fn chunk(&self, piece: &Piece) -> Vec<u8> {
        let mut out = BytesMut::new();
        self.put_chunk_json(piece.seq, &piece.json, &mut out);
        out.to_vec()
    }

    /// `chunk()` as one WebSocket text frame, appended to `out`.
    pub fn put_chunk(&self, piece: &Piece, out: &mut BytesMut) {
        self.put_numbered(piece.seq, &piece.json, out);
    }

    /// The chunk `json` as one WebSocket text frame numbered `seq` (a
    /// request that numbers its chunks its own way), appended to `out`.
    pub fn put_numbered(&self, seq: u64, json: &[u8], out: &mut BytesMut) {
        let len = self.chunk_prefix.len() + decimal_len(seq) + CHUNK_KEY.len() + json.len() + 1;
        out.reserve(len + 10);
        crate::domain::websocket::put_ws_header(out, crate::domain::websocket::WsOp::Text, len);
        self.put_chunk_json(seq, json, out);
    }

    fn put_chunk_json(&self, seq: u64, json: &[u8], out: &mut BytesMut) {
        use std::fmt::Write as _;
        out.extend_from_slice(&self.chunk_prefix);
        // unwrap: writing to a BytesMut cannot fail.
        write!(out, "{seq}").unwrap();
        out.extend_from_slice(CHUNK_KEY);
        out.extend_from_slice(json);
        out.extend_from_slice(b"}");
    }

    fn control(&self, kind: &str) -> Vec<u8> {
        format!("{{\"type\":\"{kind}\",{}}}", self.id_json).into_bytes()
    }

    /// `start`: a resume found an answer running.
    pub fn start(&self) -> Vec<u8> {
        self.control("start")
    }

    /// `end`: the request's stream is complete.
    pub fn end(&self) -> Vec<u8> {
        self.control("end")
    }

    /// `no-active`: nothing runs for the chat.
    pub fn no_active(&self) -> Vec<u8> {
        self.control("no-active")
    }

    /// `error`: the request failed (the SDK errors its stream).
    pub fn error(&self, message: &str) -> Vec<u8> {
        // unwrap: a string always serializes.
        let text = serde_json::to_string(message).unwrap();
        format!("{{\"type\":\"error\",{},\"errorText\":{text}}}", self.id_json).into_bytes()
    }
}
