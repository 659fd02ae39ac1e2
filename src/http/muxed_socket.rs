//! What a WebSocket that carries several streams does for itself, the
//! same for a chat socket (`chat/socket.rs`, one stream per request) and a
//! project socket (`project_socket.rs`, one per thread): its body is a mux
//! (`delivery::mux`) whose control pipe carries its own frames; it reads
//! its client's frames, answers pings, pings on its own timer (it may
//! carry no stream at all) and closes a peer silent past
//! `--ws-timeout-ms`; it stops when its client goes away, and its
//! streams' sessions then see their clients gone.
//!
//! Each socket's actor holds a `MuxedSocket` and implements `Muxed`: what
//! to do with a text frame or a binary one; the rest is here.

use std::{rc::Rc, time::Instant};

use actix::prelude::*;
use actix_ws::{AggregatedMessage, ProtocolError};
use bytes::Bytes;

use crate::{
    actors::session::{close, log_protocol_close, protocol_close, SessionLimits},
    delivery::mux::Mux,
    domain::websocket::{ws_close, ws_frame, WsOp},
    ws_guard::Incoming,
};

/// The client's frames as the socket's actor reads them.
pub type ClientItem = Result<AggregatedMessage, ProtocolError>;

/// The state every such socket keeps.
pub struct MuxedSocket {
    pub mux: Rc<Mux>,
    incoming: Option<Incoming>,
    last_heard: Instant,
    pub limits: SessionLimits,
}

/// A socket's actor: its `MuxedSocket`, and what its client's frames mean.
pub trait Muxed: Actor<Context = Context<Self>> + StreamHandler<ClientItem> {
    fn socket(&self) -> &MuxedSocket;
    fn socket_mut(&mut self) -> &mut MuxedSocket;
    /// Whose socket it is, for the logs.
    fn whose(&self) -> String;
    fn on_text(&mut self, text: &str, ctx: &mut Context<Self>);
    fn on_binary(&mut self, ctx: &mut Context<Self>);
}

impl MuxedSocket {
    pub fn new(mux: Mux, incoming: Incoming, limits: SessionLimits) -> MuxedSocket {
        MuxedSocket { mux: Rc::new(mux), incoming: Some(incoming), last_heard: Instant::now(), limits }
    }
}

/// The socket's start: it reads its client, stops when its body goes, and
/// pings every `every`, closing a peer silent too long.
pub fn start<A: Muxed>(act: &mut A, every: std::time::Duration, ctx: &mut Context<A>) {
    if let Some(incoming) = act.socket_mut().incoming.take() {
        ctx.add_stream(incoming);
    }
    let mux = act.socket().mux.clone();
    ctx.spawn(async move { mux.control.closed().await }.into_actor(act).map(|_, _, ctx| ctx.stop()));
    ctx.run_interval(every, |act, ctx| {
        let socket = act.socket();
        if socket.last_heard.elapsed() > socket.limits.peer_timeout {
            tracing::debug!("{}: websocket peer silent; closing", act.whose());
            return close_with(act, close::AWAY, "no pong", ctx);
        }
        let _ = socket.mux.control.try_send(ws_frame(WsOp::Ping, b""));
    });
}

/// The socket stops: its streams' sessions see their clients gone.
pub fn stopping<A: Muxed>(act: &mut A) {
    act.socket().mux.clear();
}

/// Frames of the socket's own (whole WebSocket frames), once there is
/// room; a client that reads nothing for the slow-consumer time is closed.
pub fn control<A: Muxed>(act: &mut A, frames: Bytes, ctx: &mut Context<A>) {
    let (mux, patience) = (act.socket().mux.clone(), act.socket().limits.slow_consumer);
    let send = async move { tokio::time::timeout(patience, mux.control.send(frames)).await };
    ctx.spawn(send.into_actor(act).map(|sent, _, ctx| {
        if !matches!(sent, Ok(Ok(()))) {
            ctx.stop();
        }
    }));
}

/// A close frame (it fits even when the control pipe is full), then stop.
pub fn close_with<A: Muxed>(act: &mut A, code: u16, reason: &str, ctx: &mut Context<A>) {
    act.socket().mux.control.push_final(ws_close(code, reason));
    ctx.stop();
}

/// One frame of the client (the body of the actor's `StreamHandler`).
pub fn handle<A: Muxed>(act: &mut A, item: ClientItem, ctx: &mut Context<A>) {
    act.socket_mut().last_heard = Instant::now();
    match item {
        Ok(AggregatedMessage::Text(text)) => act.on_text(&text, ctx),
        Ok(AggregatedMessage::Binary(_)) => act.on_binary(ctx),
        Ok(AggregatedMessage::Ping(bytes)) => {
            let _ = act.socket().mux.control.try_send(ws_frame(WsOp::Pong, &bytes));
        }
        Ok(AggregatedMessage::Pong(_)) => {}
        Ok(AggregatedMessage::Close(_)) => ctx.stop(),
        Err(e) => {
            let (code, reason) = protocol_close(&e);
            log_protocol_close(&e, &act.whose());
            close_with(act, code, reason, ctx)
        }
    }
}
