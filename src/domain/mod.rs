//! Plain data of the service: ids, resources, cursors, the contract's
//! names, the conversation model and the encoded events. Nothing here does
//! I/O or names another module of the crate (no actix, tokio or sea-orm):
//! every other layer speaks these types.

pub mod answers;
pub mod block;
pub mod chat_continue;
pub mod chat_request;
pub mod client_frame;
pub mod codes;
pub mod continuation;
pub mod conversation;
pub mod cursor;
pub mod event;
pub mod frame;
pub mod input;
pub mod mcp;
pub mod project_socket;
pub mod provider_event;
pub mod resources;
pub mod title;
pub mod tools;
pub mod turn;
pub mod ui_stream;
pub mod websocket;

pub use resources::*;

/// A fresh UUIDv7: time-ordered, so "newest first" is "largest id first".
pub fn new_id() -> uuid::Uuid {
    uuid::Uuid::now_v7()
}
