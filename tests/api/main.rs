//! One black-box test binary: each test starts the real server on a random
//! port and talks HTTP, SSE and WebSocket to it like a client.

mod access;
mod binary;
mod chat;
mod chat_tools;
mod chat_ws;
mod cluster;
mod cluster_faults;
mod fake_upstream;
mod fanout;
mod lifecycle;
mod limits;
mod logs;
mod mcp;
mod mcp_server;
mod openapi;
mod operations;
mod outage;
mod page;
mod pg;
mod provider_tls;
mod providers;
mod rest;
mod resume;
mod routes;
mod seed_route;
mod server_tools;
mod shutdown;
mod slow;
mod support;
mod thread_settings;
mod tls;
mod tls_http2;
mod tools;
mod tools_faults;
mod websocket;
