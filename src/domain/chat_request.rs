//! What the AI SDK's chat transports send (npm `ai` 7.0): the body of
//! `DefaultChatTransport`'s POST (`id`, `messages`, `trigger`,
//! `messageId`, and whatever the app's `body` adds), and the client frames
//! of `WebSocketChatTransport` (`send`, `resume`, `abort`). The question a
//! turn asks is the text of its newest user message; the service keeps the
//! conversation itself, so older messages are not read.

use serde::Deserialize;

use super::input::{self, InputError};
use crate::domain::codes::Code;

/// A chat id: a thread's id, or any id of the client's (`useChat`
/// generates 16 letters and digits). Not empty, at most 200 characters, no
/// control characters, and not `.` or `..` (the SDK puts it in a path).
pub fn chat_id(id: &str) -> Result<(), InputError> {
    let bad = |message: &str| Err(InputError { code: Code::BadRequest, message: message.to_owned() });
    if id.is_empty() || id.chars().count() > input::MAX_LABEL_CHARS {
        return bad("`id` must be 1 to 200 characters");
    }
    if id.chars().any(char::is_control) || id == "." || id == ".." {
        return bad("`id` must not hold control characters, nor be `.` or `..`");
    }
    Ok(())
}

/// Why a turn is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Trigger {
    SubmitMessage,
    RegenerateMessage,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum UiRole {
    System,
    User,
    Assistant,
}

/// One part of a UI message: a user message's `text` parts are its
/// question; an answer's tool parts (`tool-<name>`, `dynamic-tool`) say
/// what its client answered of its calls (`domain::chat_continue`).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct UiPart {
    /// `text`, `reasoning`, `file`, `tool-…`, `step-start`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// A text part's text.
    pub text: Option<String>,
    /// A tool part's call.
    #[serde(rename = "toolCallId")]
    pub tool_call_id: Option<String>,
    /// A tool part's state: `input-available`, `approval-requested`,
    /// `approval-responded` (a person decided), `output-available` (the
    /// client's result), `output-error`, …
    pub state: Option<String>,
    /// `output-available`: the call's output.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub output: serde_json::Value,
    /// `output-error`: why the call failed.
    #[serde(rename = "errorText")]
    pub error_text: Option<String>,
    /// A call that asked for approval: its id, and the decision.
    pub approval: Option<UiApproval>,
}

impl UiPart {
    /// A tool part's call id.
    pub fn call(&self) -> Option<&str> {
        let tool = self.kind.starts_with("tool-") || self.kind == "dynamic-tool";
        self.tool_call_id.as_deref().filter(|_| tool)
    }
}

/// A tool part's approval (`addToolApprovalResponse` fills in `approved`).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct UiApproval {
    pub id: String,
    pub approved: Option<bool>,
    pub reason: Option<String>,
}

/// A message of the chat, as `useChat` holds it.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct UiMessage {
    pub id: Option<String>,
    pub role: UiRole,
    pub parts: Vec<UiPart>,
}

/// `DefaultChatTransport`'s body. Fields the app's own `body` adds are
/// ignored, except `model` and `max_tokens`, as on POST messages.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ChatBody {
    /// The chat: a thread id, or the client's own id (`useChat`'s).
    #[schema(min_length = 1, max_length = 200, pattern = r"^[^\x00-\x1f\x7f]+$")]
    pub id: String,
    /// The chat's messages: the text of the newest user message is asked,
    /// unless the last is an answer of the chat, which the request then
    /// continues with the results and decisions its tool parts hold.
    pub messages: Vec<UiMessage>,
    /// Checked (an unknown trigger is refused). `regenerate-message` asks
    /// the thread's newest question again when it is the newest user
    /// message sent (`http::chat::ask_turn`): a new answer, the earlier one
    /// kept in the thread, the question not stored twice.
    pub trigger: Trigger,
    /// The message to regenerate (`regenerate-message`): part of the
    /// transport's body, accepted and not read (the messages sent end at
    /// the question it answered).
    #[serde(rename = "messageId")]
    pub message_id: Option<String>,
    #[schema(min_length = 1, max_length = 200, pattern = r"^[^\x00]*[^\s\x00][^\x00]*$")]
    pub model: Option<String>,
    #[schema(minimum = 1)]
    #[serde(default, deserialize_with = "input::whole_u32")]
    pub max_tokens: Option<u32>,
}

/// The app's `body` inside a WebSocket `send` frame.
#[derive(Debug, Default, Deserialize)]
pub struct Extra {
    pub model: Option<String>,
    #[serde(default, deserialize_with = "input::whole_u32")]
    pub max_tokens: Option<u32>,
}

/// A frame of `WebSocketChatTransport`'s client. Its `headers` and
/// `metadata` are not read: the socket's handshake says who calls.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ChatFrame {
    Send {
        #[serde(rename = "requestId")]
        request_id: String,
        id: String,
        trigger: Trigger,
        messages: Vec<UiMessage>,
        #[serde(default)]
        body: Option<Extra>,
    },
    Resume {
        #[serde(rename = "requestId")]
        request_id: String,
        id: String,
        /// Only the chunks numbered after this one (none: all of them).
        #[serde(rename = "lastSequence")]
        last_sequence: Option<u64>,
    },
    Abort {
        #[serde(rename = "requestId")]
        request_id: String,
    },
}

/// The question of a turn: the text parts of its newest user message,
/// joined by a line break; refused (400) when there is none, or it is
/// blank, or too large (413).
pub fn question(messages: &[UiMessage], max_bytes: usize) -> Result<String, InputError> {
    let bad = |message: &str| InputError { code: Code::BadRequest, message: message.to_owned() };
    let newest = messages.iter().rev().find(|m| m.role == UiRole::User).ok_or_else(|| bad("no user message"))?;
    let texts: Vec<&str> = newest.parts.iter().filter(|p| p.kind == "text").filter_map(|p| p.text.as_deref()).collect();
    let content = texts.join("\n");
    if content.trim().is_empty() {
        return Err(bad("the newest user message has no text"));
    }
    input::text("content", &content, max_bytes)?;
    Ok(content)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn body(v: serde_json::Value) -> Result<ChatBody, serde_json::Error> {
        serde_json::from_value(v)
    }

    #[test]
    fn the_transports_body_asks_its_newest_user_messages_text() {
        let b = body(json!({
            "id": "Xq3bT9aLmPz01RkE", "trigger": "submit-message", "messageId": null, "sessionId": "app's own",
            "messages": [
                {"id": "1", "role": "user", "parts": [{"type": "text", "text": "first"}]},
                {"id": "2", "role": "assistant", "parts": [{"type": "step-start"}, {"type": "text", "text": "reply", "state": "done"}]},
                {"id": "3", "role": "user", "parts": [{"type": "file", "url": "x"}, {"type": "text", "text": "second"}, {"type": "text", "text": "part"}]},
            ],
        }))
        .unwrap();
        assert_eq!(b.trigger, Trigger::SubmitMessage);
        assert_eq!(question(&b.messages, 100).unwrap(), "second\npart");
        assert!(chat_id(&b.id).is_ok());
    }

    #[test]
    fn bad_bodies_and_questions_are_refused() {
        assert!(body(json!({"id": "c", "messages": [], "trigger": "resume-stream"})).is_err(), "unknown trigger");
        assert!(body(json!({"id": "c", "trigger": "submit-message"})).is_err(), "no messages");
        assert!(body(json!({"id": "c", "messages": [{"role": "robot", "parts": []}], "trigger": "submit-message"}))
            .is_err());
        let only = |parts: serde_json::Value| {
            vec![serde_json::from_value::<UiMessage>(json!({"role": "user", "parts": parts})).unwrap()]
        };
        assert_eq!(question(&[], 100).unwrap_err().code, Code::BadRequest);
        assert_eq!(question(&only(json!([{"type": "text", "text": "  "}])), 100).unwrap_err().code, Code::BadRequest);
        assert_eq!(question(&only(json!([{"type": "file"}])), 100).unwrap_err().code, Code::BadRequest);
        assert_eq!(question(&only(json!([{"type": "text", "text": "a\0"}])), 100).unwrap_err().code, Code::BadRequest);
        assert_eq!(
            question(&only(json!([{"type": "text", "text": "long"}])), 3).unwrap_err().code,
            Code::PayloadTooLarge
        );
        for id in ["", ".", "..", "a\nb", &"x".repeat(201)] {
            assert!(chat_id(id).is_err(), "{id:?}");
        }
    }

    #[test]
    fn websocket_frames_are_told_apart_by_type() {
        let send = json!({"type": "send", "requestId": "r", "id": "c", "trigger": "submit-message", "messageId": null,
            "messages": [{"id": "1", "role": "user", "parts": [{"type": "text", "text": "q"}]}],
            "headers": {}, "body": {"model": "m"}, "metadata": null});
        match serde_json::from_value::<ChatFrame>(send).unwrap() {
            ChatFrame::Send { body, .. } => assert_eq!(body.unwrap().model.as_deref(), Some("m")),
            other => panic!("{other:?}"),
        }
        let resume =
            json!({"type": "resume", "requestId": "r", "id": "c", "headers": {}, "body": {}, "metadata": null});
        assert!(matches!(serde_json::from_value(resume), Ok(ChatFrame::Resume { last_sequence: None, .. })));
        let after = json!({"type": "resume", "requestId": "r", "id": "c", "lastSequence": 7});
        assert!(matches!(serde_json::from_value(after), Ok(ChatFrame::Resume { last_sequence: Some(7), .. })));
        assert!(matches!(
            serde_json::from_value(json!({"type": "abort", "requestId": "r"})),
            Ok(ChatFrame::Abort { .. })
        ));
        assert!(serde_json::from_value::<ChatFrame>(json!({"type": "abort"})).is_err());
        assert!(serde_json::from_value::<ChatFrame>(
            json!({"type": "resume", "requestId": "r", "id": "c", "lastSequence": -1})
        )
        .is_err());
    }
}
