//! The worker side of fan-out: how a frame the thread published reaches
//! each subscriber's socket on an HTTP worker. Everything here lives on
//! the worker's own thread (`Rc`, `Cell`, no locks); the thread's side,
//! which is `Send`, is `crate::broadcast`.
//!
//! - `relay`: one per thread per worker, reading the thread's fan-out and
//!   writing each frame into every local subscriber's pipe;
//! - `subscriber`: one subscriber's pipe, cursor, heartbeats and presence;
//!   `wire`: the format it is written in; `state`: its delivery states and every transition;
//! - `catch_up`: how one that is joining or behind comes level again;
//! - `continuation`: a chat request that continues an answer after a step
//!   its client has (what it skips, how it numbers what it sends);
//! - `pipe`: the bounded hand-off between a subscriber and its response
//!   body; `mux`: several pipes as one body (a chat WebSocket's requests).

pub mod catch_up;
pub mod continuation;
pub mod mux;
pub mod pipe;
pub mod relay;
pub mod state;
pub mod subscriber;
pub mod wire;
