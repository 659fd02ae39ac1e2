//! convo: an actor-based service that streams LLM conversations to many
//! subscribers at once over SSE and WebSocket, with exact resume, batched
//! persistence and no polling. See `ARCHITECTURE.md` for the map.

pub mod actors;
pub mod broadcast;
pub mod capacity;
pub mod config;
pub mod delivery;
pub mod domain;
pub mod error;
pub mod http;
pub mod mcp_client;
pub mod metrics;
pub mod model;
pub mod notify;
pub mod outbound;
mod serve;
pub mod shutdown;
pub mod signing;
pub mod startup;
pub mod store;
pub mod telemetry;
#[cfg(test)]
mod testing;
pub mod tls;
pub mod tool_calls;
pub mod ws_guard;
