//! Plain data of the service: ids, resources, cursors and the encoded
//! events. Nothing here does I/O; every other layer speaks these types.

pub mod cursor;
pub mod event;
pub mod frame;
pub mod input;
pub mod resources;

pub use resources::*;

/// A fresh UUIDv7: time-ordered, so "newest first" is "largest id first".
pub fn new_id() -> uuid::Uuid {
    uuid::Uuid::now_v7()
}
