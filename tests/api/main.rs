//! One black-box test binary: each test starts the real server on a random
//! port and talks HTTP, SSE and WebSocket to it like a client.

mod fake_upstream;
mod lifecycle;
mod pg;
mod providers;
mod resume;
mod slow;
mod support;
