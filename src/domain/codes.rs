//! The names the contract gives things, each as an enum with one table:
//! error codes of HTTP answers (`Code`, with their statuses), the `type`s
//! of stream events (`EventKind`), and the codes an `error` event carries
//! that no HTTP answer does (`StreamCode`), and why a message ended other
//! than complete (`MessageErrorCode`). Nothing compares these as strings;
//! the strings exist only on the wire and in the database.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a message ended other than `complete` (`Message.error.code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MessageErrorCode {
    /// The service stopped while it streamed (gracefully or not).
    Interrupted,
    /// The model provider refused, erred, dropped the stream, or wrote
    /// what cannot be kept (too long, malformed).
    UpstreamError,
    /// The model provider was silent too long, or the call took too long.
    UpstreamTimeout,
    /// The message could not be stored.
    Unavailable,
}

impl MessageErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageErrorCode::Interrupted => "interrupted",
            MessageErrorCode::UpstreamError => "upstream_error",
            MessageErrorCode::UpstreamTimeout => "upstream_timeout",
            MessageErrorCode::Unavailable => "unavailable",
        }
    }
}

impl From<super::provider_event::FailureCode> for MessageErrorCode {
    fn from(code: super::provider_event::FailureCode) -> Self {
        use super::provider_event::FailureCode;
        match code {
            FailureCode::UpstreamError => MessageErrorCode::UpstreamError,
            FailureCode::UpstreamTimeout => MessageErrorCode::UpstreamTimeout,
        }
    }
}

/// Defines `Code` from one table (variant, its name in the contract, its
/// HTTP status), with `Code::ALL` built from the same table, so no code
/// can be missing from the API description.
macro_rules! codes {
    ($($variant:ident = $name:literal, $status:literal;)+) => {
        /// The contract's error codes and their HTTP statuses.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Code {
            $($variant,)+
        }

        impl Code {
            /// Every code, for the API description.
            pub const ALL: &'static [Code] = &[$(Code::$variant,)+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Code::$variant => $name,)+
                }
            }

            /// Its HTTP status.
            pub fn status(self) -> u16 {
                match self {
                    $(Code::$variant => $status,)+
                }
            }
        }
    };
}

codes! {
    BadRequest = "bad_request", 400;
    Unauthorized = "unauthorized", 401;
    Forbidden = "forbidden", 403;
    NotFound = "not_found", 404;
    MethodNotAllowed = "method_not_allowed", 405;
    ThreadBusy = "thread_busy", 409;
    NotGenerating = "not_generating", 409;
    NotAwaiting = "not_awaiting", 409;
    ToolSecretMissing = "tool_secret_missing", 400;
    ToolCallResolved = "tool_call_resolved", 409;
    McpServerExists = "mcp_server_exists", 409;
    RequestTimeout = "request_timeout", 408;
    PayloadTooLarge = "payload_too_large", 413;
    UnsupportedMediaType = "unsupported_media_type", 415;
    RateLimited = "rate_limited", 429;
    UpstreamError = "upstream_error", 502;
    Unavailable = "unavailable", 503;
    Internal = "internal", 500;
}

impl Code {
    /// The code an HTTP status stands for, for answers that actix wrote
    /// itself (see `http::error_shape`).
    pub fn for_status(status: u16) -> Code {
        match status {
            400 | 411 | 414 | 431 => Code::BadRequest,
            408 => Code::RequestTimeout,
            401 => Code::Unauthorized,
            403 => Code::Forbidden,
            404 => Code::NotFound,
            405 => Code::MethodNotAllowed,
            413 => Code::PayloadTooLarge,
            415 => Code::UnsupportedMediaType,
            429 => Code::RateLimited,
            502 | 504 => Code::UpstreamError,
            503 => Code::Unavailable,
            _ => Code::Internal,
        }
    }
}

/// The `type` of a stream event (the SSE event name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    Ready,
    MessageCreated,
    MessageStarted,
    MessageBlock,
    MessageDelta,
    MessageCompleted,
    Presence,
    Error,
    MessageAwaiting,
    ToolResolved,
    MessageStep,
    ThreadUpdated,
    Ack,
    MessageContinued,
}

impl EventKind {
    /// Every kind, in declaration order: a kind's index is its tag.
    const ALL: [EventKind; 14] = [
        EventKind::Ready,
        EventKind::MessageCreated,
        EventKind::MessageStarted,
        EventKind::MessageBlock,
        EventKind::MessageDelta,
        EventKind::MessageCompleted,
        EventKind::Presence,
        EventKind::Error,
        EventKind::MessageAwaiting,
        EventKind::ToolResolved,
        EventKind::MessageStep,
        EventKind::ThreadUpdated,
        EventKind::Ack,
        EventKind::MessageContinued,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Ready => "ready",
            EventKind::MessageCreated => "message.created",
            EventKind::MessageStarted => "message.started",
            EventKind::MessageBlock => "message.block",
            EventKind::MessageDelta => "message.delta",
            EventKind::MessageCompleted => "message.completed",
            EventKind::Presence => "thread.presence",
            EventKind::Error => "error",
            EventKind::MessageAwaiting => "message.awaiting",
            EventKind::ToolResolved => "tool.resolved",
            EventKind::MessageStep => "message.step",
            EventKind::ThreadUpdated => "thread.updated",
            EventKind::Ack => "ack",
            EventKind::MessageContinued => "message.continued",
        }
    }

    /// Whether an event of this kind moves a subscriber's position (its
    /// cursor is where the subscriber is after it). `error` and
    /// `thread.presence` carry a cursor but are not positions, nor does
    /// `thread.updated` (the thread's state now, not a step of its log)
    /// or `ack` (one socket's answer).
    pub fn is_position(self) -> bool {
        !matches!(self, EventKind::Presence | EventKind::Error | EventKind::ThreadUpdated | EventKind::Ack)
    }

    /// Its one-byte tag on the wire between nodes (`Frame::to_wire`).
    pub fn tag(self) -> u8 {
        self as u8
    }

    pub fn from_tag(tag: u8) -> Option<EventKind> {
        Self::ALL.get(usize::from(tag)).copied()
    }
}

/// Codes of `error` events that end or reset a stream, and that no HTTP
/// answer carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamCode {
    /// The cursor names no position of this thread: a fresh replay follows.
    CursorInvalid,
    /// The cursor lies past the stored text (a crash lost the tail): the
    /// message follows again from its start.
    CursorAhead,
    /// The subscriber read too slowly and is closed; it resumes by cursor.
    SlowConsumer,
    /// The service is stopping; resume by cursor.
    ShuttingDown,
    /// The thread was deleted: do not reconnect.
    ThreadDeleted,
    /// An operator stopped the thread's actor, or it went away; resume.
    ThreadStopped,
    /// This node lost its link to the thread's other nodes (cluster mode);
    /// resume, here or elsewhere.
    Unavailable,
}

impl StreamCode {
    pub fn as_str(self) -> &'static str {
        match self {
            StreamCode::CursorInvalid => "cursor_invalid",
            StreamCode::CursorAhead => "cursor_ahead",
            StreamCode::SlowConsumer => "slow_consumer",
            StreamCode::ShuttingDown => "shutting_down",
            StreamCode::ThreadDeleted => "thread_deleted",
            StreamCode::ThreadStopped => "thread_stopped",
            StreamCode::Unavailable => "unavailable",
        }
    }

    /// The sentence the `error` event carries.
    pub fn message(self) -> &'static str {
        match self {
            StreamCode::CursorInvalid => "the cursor names no position of this thread; starting fresh",
            StreamCode::CursorAhead => {
                "the cursor lies past the stored text (the tail was lost); the message follows again from its start"
            }
            StreamCode::SlowConsumer => "this subscriber read too slowly; reconnect with your cursor to resume",
            StreamCode::ShuttingDown => "the service is shutting down; reconnect to resume",
            StreamCode::ThreadDeleted => "the thread was deleted",
            StreamCode::ThreadStopped => "the thread is no longer live; reconnect to resume",
            StreamCode::Unavailable => "this node cannot reach the thread's other nodes now; reconnect to resume",
        }
    }
}

/// The code of an `error` event: one of the HTTP contract's (a refused
/// WebSocket `send`, say) or a stream's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    Api(Code),
    Stream(StreamCode),
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Api(code) => code.as_str(),
            ErrorCode::Stream(code) => code.as_str(),
        }
    }
}

impl From<Code> for ErrorCode {
    fn from(code: Code) -> Self {
        ErrorCode::Api(code)
    }
}

impl From<StreamCode> for ErrorCode {
    fn from(code: StreamCode) -> Self {
        ErrorCode::Stream(code)
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use StreamCode::*;
        let name = std::borrow::Cow::<str>::deserialize(d)?;
        let stream =
            [CursorInvalid, CursorAhead, SlowConsumer, ShuttingDown, ThreadDeleted, ThreadStopped, Unavailable];
        let found = Code::ALL.iter().map(|c| ErrorCode::Api(*c)).chain(stream.into_iter().map(ErrorCode::Stream));
        found.into_iter().find(|c| c.as_str() == name).ok_or_else(|| serde::de::Error::custom("an unknown code"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_its_own_snake_case_name_and_an_error_status() {
        let mut names: Vec<&str> = Code::ALL.iter().map(|c| c.as_str()).collect();
        for (code, name) in Code::ALL.iter().zip(&names) {
            assert!(name.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{name}");
            assert!((400..600).contains(&code.status()), "{name}");
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Code::ALL.len(), "names repeat");
    }

    #[test]
    fn event_kinds_survive_their_wire_tag() {
        for tag in 0..=255u8 {
            if let Some(kind) = EventKind::from_tag(tag) {
                assert_eq!(kind.tag(), tag);
            }
        }
        assert_eq!(EventKind::from_tag(EventKind::MessageDelta.tag()), Some(EventKind::MessageDelta));
        assert!(EventKind::Ready.is_position() && !EventKind::Presence.is_position());
    }
}
