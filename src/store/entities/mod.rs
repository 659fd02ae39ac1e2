//! sea-orm entities, one file per table. Only `store/` uses them; the rest
//! of the service speaks `domain` types (see `store::convert`).

pub mod api_key;
pub mod chat_alias;
pub mod mcp_server;
pub mod message;
pub mod node;
pub mod notification_delivery;
pub mod notification_event;
pub mod project;
pub mod push_subscription;
pub mod thread;
pub mod tool_secret;
pub mod vapid_key;
pub mod webhook;
