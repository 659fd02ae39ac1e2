//! How a subscriber's frames are written (`Wire`): the thread's events as
//! SSE or WebSocket (alone, or one thread of a project socket), the seed route's one message, or one answer as the AI
//! SDK's UI stream over an HTTP request (`UiRequest`) or a chat
//! WebSocket's request (`ChatRequest`).

use std::rc::Rc;

use uuid::Uuid;

use super::continuation::Continuation;
use crate::domain::ui_stream::Request;

/// How a subscriber's frames are written.
#[derive(Debug, Clone)]
pub enum Wire {
    Sse,
    Ws,
    /// One thread of a project socket: its WebSocket frames, muxed with
    /// the other threads' on one connection; the socket pings, and a
    /// closing `error` ends this thread's subscription (`unsubscribed`),
    /// not the connection.
    Channel,
    /// The seed route: only this message's text, in its own wire format.
    Seed(Uuid),
    /// The AI SDK's UI message stream over SSE: only this message.
    Ui(UiRequest),
    /// One request of a chat WebSocket (the AI SDK's
    /// `WebSocketChatTransport`): this message's UI chunks in the
    /// request's frames.
    Chat(ChatRequest),
}

/// What an HTTP request of the AI SDK's chat protocol follows.
#[derive(Debug, Clone)]
pub struct UiRequest {
    pub message_id: Uuid,
    /// It continues the answer after a step its client has.
    pub continuation: Option<Continuation>,
}

/// What a chat WebSocket's request follows.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    pub message_id: Uuid,
    pub request: Rc<Request>,
    /// Only chunks numbered after this one (a resume's `lastSequence`).
    pub after: Option<u64>,
    /// It continues the answer after a step its client has.
    pub continuation: Option<Continuation>,
}

impl Wire {
    /// The one message a wire that follows one answer follows.
    pub(super) fn message(&self) -> Option<Uuid> {
        match self {
            Wire::Seed(id) | Wire::Ui(UiRequest { message_id: id, .. }) => Some(*id),
            Wire::Chat(c) => Some(c.message_id),
            Wire::Sse | Wire::Ws | Wire::Channel => None,
        }
    }
}
