//! The frames of a project socket (`GET /v1/projects/{pid}/ws`, API.md "A
//! socket for many threads"): what its client sends, parsed once into
//! `ProjectFrame`, and the two frames of the socket's own that the
//! threads' events do not cover.
//!
//! A client frame is `subscribe`, `unsubscribe`, or one of a thread
//! WebSocket's own frames (`send`, `cancel`, `tool_results`, `approval`)
//! with the `thread_id` it is for. The server's frames are the threads'
//! events (each names its thread), plus `unsubscribed` `{thread_id,
//! cursor, code}`: that thread's subscription ended (its `error` event
//! just before says why, as a thread's own socket would have closed
//! there); subscribe again from `cursor` to resume. An error about a frame
//! that names no thread is an `error` event whose `thread_id` is null.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{client_frame::ClientFrame, cursor::Cursor};

/// A frame of a project socket's client.
#[derive(Debug)]
pub enum ProjectFrame {
    /// Follow `thread_id` from `cursor` (fresh without one), opened by
    /// `token` in secured mode.
    Subscribe {
        thread_id: Uuid,
        cursor: Option<String>,
        token: Option<String>,
    },
    Unsubscribe {
        thread_id: Uuid,
    },
    /// A thread WebSocket's frame, for `thread_id`.
    Thread {
        thread_id: Uuid,
        frame: ClientFrame,
    },
}

/// Why a client frame is not one; `thread_id` when it named a thread, so
/// the error goes with that thread's events.
#[derive(Debug)]
pub struct FrameError {
    pub thread_id: Option<Uuid>,
    pub message: String,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum Own {
    Subscribe { thread_id: Uuid, cursor: Option<String>, token: Option<String> },
    Unsubscribe { thread_id: Uuid },
}

impl ProjectFrame {
    pub fn parse(text: &str) -> Result<ProjectFrame, FrameError> {
        let bad = |thread_id, message: String| FrameError { thread_id, message: format!("malformed frame: {message}") };
        let mut value: serde_json::Value = serde_json::from_str(text).map_err(|e| bad(None, e.to_string()))?;
        let kind = value.get("type").and_then(|t| t.as_str()).unwrap_or_default();
        if matches!(kind, "subscribe" | "unsubscribe") {
            let thread_id = value.get("thread_id").and_then(|t| t.as_str()).and_then(|t| Uuid::try_parse(t).ok());
            return match serde_json::from_value::<Own>(value) {
                Ok(Own::Subscribe { thread_id, cursor, token }) => {
                    Ok(ProjectFrame::Subscribe { thread_id, cursor, token })
                }
                Ok(Own::Unsubscribe { thread_id }) => Ok(ProjectFrame::Unsubscribe { thread_id }),
                Err(e) => Err(bad(thread_id, e.to_string())),
            };
        }
        let named = value.as_object_mut().and_then(|o| o.remove("thread_id"));
        let thread_id = match named.as_ref().map(|t| t.as_str().and_then(|t| Uuid::try_parse(t).ok())) {
            Some(Some(id)) => id,
            Some(None) => return Err(bad(None, "`thread_id` is not a thread id".into())),
            None => return Err(bad(None, "every frame names its `thread_id`".into())),
        };
        match serde_json::from_value::<ClientFrame>(value) {
            Ok(frame) => Ok(ProjectFrame::Thread { thread_id, frame }),
            Err(e) => Err(bad(Some(thread_id), e.to_string())),
        }
    }
}

#[derive(Serialize)]
struct Unsubscribed<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    thread_id: Uuid,
    cursor: Option<String>,
    code: &'a str,
}

/// The JSON of `unsubscribed`: `thread_id`'s subscription ended at
/// `cursor` (where to resume), for the reason `code`.
pub fn unsubscribed(thread_id: Uuid, cursor: Option<Cursor>, code: &str) -> Vec<u8> {
    let frame = Unsubscribed { kind: "unsubscribed", thread_id, cursor: cursor.map(|c| c.to_string()), code };
    serde_json::to_vec(&frame).expect("plain data serializes")
}

#[derive(Serialize)]
struct SocketError<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    thread_id: Option<Uuid>,
    cursor: Option<String>,
    code: &'a str,
    message: &'a str,
}

/// The JSON of an `error` event of the socket itself (a frame that is not
/// one, a subscription refused): `thread_id` when it is about one.
pub fn socket_error(thread_id: Option<Uuid>, code: &str, message: &str) -> Vec<u8> {
    let frame = SocketError { kind: "error", thread_id, cursor: None, code, message };
    serde_json::to_vec(&frame).expect("plain data serializes")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const T: &str = "0190c1f6-8a4b-7c3d-9e2f-0123456789ab";

    #[test]
    fn subscribe_and_unsubscribe_frames() {
        let frame = json!({"type": "subscribe", "thread_id": T, "cursor": "c", "token": "t"}).to_string();
        match ProjectFrame::parse(&frame).unwrap() {
            ProjectFrame::Subscribe { thread_id, cursor, token } => {
                assert_eq!(thread_id.to_string(), T);
                assert_eq!((cursor.as_deref(), token.as_deref()), (Some("c"), Some("t")));
            }
            other => panic!("{other:?}"),
        }
        let frame = json!({"type": "unsubscribe", "thread_id": T}).to_string();
        assert!(matches!(ProjectFrame::parse(&frame).unwrap(), ProjectFrame::Unsubscribe { .. }));
    }

    #[test]
    fn a_thread_frame_is_its_own_frame_plus_the_thread() {
        let frame = json!({"type": "send", "thread_id": T, "content": "hi"}).to_string();
        match ProjectFrame::parse(&frame).unwrap() {
            ProjectFrame::Thread { frame: ClientFrame::Send { content, .. }, .. } => assert_eq!(content, "hi"),
            other => panic!("{other:?}"),
        }
        let frame = json!({"type": "cancel", "thread_id": T}).to_string();
        assert!(matches!(
            ProjectFrame::parse(&frame).unwrap(),
            ProjectFrame::Thread { frame: ClientFrame::Cancel, .. }
        ));
    }

    #[test]
    fn errors_name_the_thread_when_the_frame_did() {
        let unknown = json!({"type": "send", "thread_id": T, "content": "x", "extra": 1}).to_string();
        assert_eq!(ProjectFrame::parse(&unknown).unwrap_err().thread_id.map(|t| t.to_string()).as_deref(), Some(T));
        let bad_sub = json!({"type": "subscribe", "thread_id": T, "cursor": 5}).to_string();
        assert!(ProjectFrame::parse(&bad_sub).unwrap_err().thread_id.is_some());
        for text in ["nope", r#"{"type":"cancel"}"#, r#"{"type":"cancel","thread_id":"x"}"#, r#"[1]"#] {
            let e = ProjectFrame::parse(text).unwrap_err();
            assert!(e.thread_id.is_none(), "{text}");
            assert!(e.message.starts_with("malformed frame"), "{}", e.message);
        }
    }

    #[test]
    fn the_socket_frames_are_flat_json() {
        let t = Uuid::try_parse(T).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&unsubscribed(t, None, "slow_consumer")).unwrap();
        assert_eq!(v, json!({"type": "unsubscribed", "thread_id": T, "cursor": null, "code": "slow_consumer"}));
        let v: serde_json::Value = serde_json::from_slice(&socket_error(None, "bad_request", "no")).unwrap();
        assert_eq!(
            v,
            json!({"type": "error", "thread_id": null, "cursor": null, "code": "bad_request", "message": "no"})
        );
    }
}
