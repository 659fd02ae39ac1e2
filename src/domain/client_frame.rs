//! The frames a WebSocket client sends (API.md, "WebSocket client
//! frames"): a serde-tagged enum, so a frame is one of these or an error,
//! never a string compared by hand.

use serde::Deserialize;

use super::input;

/// A frame of the WebSocket client.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientFrame {
    Send {
        content: String,
        model: Option<String>,
        #[serde(default, deserialize_with = "input::whole_u32")]
        max_tokens: Option<u32>,
    },
    Cancel,
    /// Results of the awaiting answer's calls, as POST `tool-results`.
    ToolResults {
        results: Vec<super::answers::ToolResult>,
    },
    /// A person's decision on a call, as POST `approvals`.
    Approval {
        tool_call_id: String,
        approved: bool,
        reason: Option<String>,
    },
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::ClientFrame;

    proptest! {
        #[test]
        fn any_client_text_is_a_frame_or_an_error(text in "\\PC{0,200}") {
            let _ = serde_json::from_str::<ClientFrame>(&text);
        }

        #[test]
        fn send_frames_keep_their_content(content in "\\PC{1,200}") {
            let frame = serde_json::json!({"type": "send", "content": content}).to_string();
            match serde_json::from_str::<ClientFrame>(&frame) {
                Ok(ClientFrame::Send { content: got, .. }) => prop_assert_eq!(got, content),
                other => prop_assert!(false, "{other:?}"),
            }
        }

        #[test]
        fn unknown_fields_and_types_are_refused(extra in "[a-z_]{1,10}") {
            // A number is only right for `max_tokens`; any other field,
            // known with the wrong type or unknown, is refused.
            let frame = serde_json::json!({"type": "send", "content": "x", extra.clone(): 1}).to_string();
            prop_assert_eq!(serde_json::from_str::<ClientFrame>(&frame).is_err(), extra != "max_tokens");
            let kind = serde_json::json!({"type": extra}).to_string();
            prop_assert_eq!(serde_json::from_str::<ClientFrame>(&kind).is_ok(), extra == "cancel");
        }
    }
}
