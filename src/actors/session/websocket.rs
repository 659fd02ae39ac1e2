//! A WebSocket session's client side: the frames its client sends
//! (`send`, `cancel`, `tool_results`, `approval`, read here or, for a
//! thread of a project socket, by that socket; pings answered; binary
//! refused), and how the socket
//! closes on what the client sent wrong (the close codes, shared with the
//! chat socket).

use super::*;
use crate::{
    actors::thread::{Resolve, ResolveError},
    domain::{answers, turn::Answer},
};

/// How a WebSocket closes on what its client sent wrong: the close code
/// and its reason (a chat socket closes alike).
pub fn protocol_close(e: &ProtocolError) -> (u16, &'static str) {
    match e {
        ProtocolError::Overflow => (close::SIZE, "frame too large"),
        ProtocolError::Io(e) if Refused::of(e) == Some(Refused::TooLarge) => (close::SIZE, "message too large"),
        ProtocolError::Io(e) if Refused::of(e) == Some(Refused::Busy) => (close::AGAIN, "server busy; try again later"),
        ProtocolError::Io(e) if e.kind() == std::io::ErrorKind::InvalidData => (close::INVALID, "invalid UTF-8"),
        _ => (close::PROTOCOL, "protocol error"),
    }
}

/// Logs why a client's frames closed its WebSocket (`protocol_close`):
/// the client's doing, so WARN within the bound on what peers can make
/// the service log (`telemetry::peer`). A connection that ended inside a
/// frame is a client gone (a closed tab, a lost network), not a mistake:
/// DEBUG only.
pub fn log_protocol_close(e: &ProtocolError, whose: &dyn std::fmt::Display) {
    let (code, _) = protocol_close(e);
    let cut = match e {
        ProtocolError::Io(io) => io
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<actix_web::error::PayloadError>())
            .is_some_and(|p| matches!(p, actix_web::error::PayloadError::Incomplete(_))),
        _ => false,
    };
    if cut {
        tracing::debug!(error.message = %e, "{whose}: websocket connection cut inside a frame");
        return;
    }
    let fault = if code == close::AGAIN { PeerFault::WebSocketBudget } else { PeerFault::WebSocket };
    crate::telemetry::peer::log(fault, &format_args!("{whose}: {code} {e}"));
}

/// WebSocket close codes the sessions send (RFC 6455 §7.4).
pub mod close {
    pub const AWAY: u16 = 1001;
    pub const PROTOCOL: u16 = 1002;
    pub const INVALID: u16 = 1007;
    pub const SIZE: u16 = 1009;
    pub const AGAIN: u16 = 1013;
    pub const POLICY: u16 = 1008;
    pub const UNSUPPORTED: u16 = 1003;
}

impl SessionActor {
    fn on_client_frame(&mut self, text: &str, ctx: &mut Context<Self>) {
        match serde_json::from_str(text) {
            Ok(frame) => self.on_frame(frame, ctx),
            Err(e) => self.write_error(Code::BadRequest, &format!("malformed frame: {e}"), ctx),
        }
    }

    fn on_frame(&mut self, frame: ClientFrame, ctx: &mut Context<Self>) {
        let registry = self.registry.clone();
        let thread_id = self.thread_id;
        match frame {
            ClientFrame::Send { content, model, max_tokens } => {
                let checked = input::message(
                    &content,
                    model.as_deref(),
                    max_tokens,
                    self.limits.max_content_bytes,
                    self.limits.max_tokens_cap,
                );
                if let Err(e) = checked {
                    return self.write_error(e.code, &e.message, ctx);
                }
                let fut = async move {
                    let start = || StartGeneration {
                        project_id: None,
                        content: content.clone(),
                        model: model.clone(),
                        max_tokens,
                        tools: Vec::new(),
                        mcp_tools: None,
                        again_if_newest: false,
                    };
                    let started = ask(&registry, thread_id, start).await??;
                    let id = started.assistant_message.id;
                    match started.committed.await {
                        Ok(Ok(())) => Ok(()),
                        _ => {
                            let _ = ask(&registry, thread_id, || AbortGeneration { assistant_message_id: id }).await;
                            Err(ThreadError::Unavailable)
                        }
                    }
                };
                ctx.spawn(fut.into_actor(self).map(|res, act, ctx| {
                    if let Err(e) = res {
                        act.write_error(e.code(), &e.to_string(), ctx);
                    }
                }));
            }
            ClientFrame::ToolResults { results } => match answers::results(results) {
                Ok(given) => self.resolve("tool_results", given, ctx),
                Err(e) => self.write_error(e.code, &e.message, ctx),
            },
            ClientFrame::Approval { tool_call_id, approved, reason } => {
                match answers::decision(tool_call_id, approved, reason) {
                    Ok(given) => self.resolve("approval", vec![given], ctx),
                    Err(e) => self.write_error(e.code, &e.message, ctx),
                }
            }
            ClientFrame::Cancel => {
                let fut = async move { ask(&registry, thread_id, || Cancel).await? };
                ctx.spawn(fut.into_actor(self).map(|res, act, ctx| {
                    if let Err(e) = res {
                        act.write_error(e.code(), &e.to_string(), ctx);
                    }
                }));
            }
        }
    }

    /// Answers calls of the thread's awaiting answer, as the REST routes
    /// do; the socket hears `ack` (`for`: the frame's type) or `error`
    /// with the route's code.
    fn resolve(&mut self, frame: &'static str, given: Vec<(String, Answer)>, ctx: &mut Context<Self>) {
        let (registry, thread_id) = (self.registry.clone(), self.thread_id);
        let fut = async move {
            let make = || Resolve { project_id: None, answers: given.clone() };
            ask(&registry, thread_id, make).await.map_err(ResolveError::Thread)?
        };
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| match res {
            Ok(done) => {
                let event = Event::Ack {
                    thread_id: act.thread_id,
                    cursor: None,
                    for_frame: frame.to_owned(),
                    message_id: done.message_id,
                    resolved: done.resolved,
                    unchanged: done.unchanged,
                };
                act.write_event(event, ctx);
            }
            Err(e) => act.write_error(e.code(), &e.to_string(), ctx),
        }));
    }

    /// A close frame (WebSocket only; it fits even when the pipe is full),
    /// then stop.
    pub(super) fn close_ws(&mut self, code: u16, description: &str, ctx: &mut Context<Self>) {
        self.subscriber().write_ws_close(code, description);
        ctx.stop();
    }
}

impl Handler<ChannelFrame> for SessionActor {
    type Result = ();

    fn handle(&mut self, ChannelFrame(frame): ChannelFrame, ctx: &mut Context<Self>) {
        self.on_frame(frame, ctx);
    }
}

impl StreamHandler<Result<AggregatedMessage, ProtocolError>> for SessionActor {
    fn handle(&mut self, item: Result<AggregatedMessage, ProtocolError>, ctx: &mut Context<Self>) {
        self.subscriber().heard();
        match item {
            Ok(AggregatedMessage::Text(text)) => self.on_client_frame(&text, ctx),
            Ok(AggregatedMessage::Binary(_)) => {
                self.write_error(Code::BadRequest, "binary frames are not supported; send JSON text frames", ctx)
            }
            Ok(AggregatedMessage::Ping(bytes)) => {
                let _ = self.subscriber().try_send(ws_frame(WsOp::Pong, &bytes));
            }
            Ok(AggregatedMessage::Pong(_)) => {}
            Ok(AggregatedMessage::Close(_)) => ctx.stop(),
            Err(e) => {
                let (code, reason) = protocol_close(&e);
                log_protocol_close(&e, &format_args!("thread {}", self.thread_id));
                self.close_ws(code, reason, ctx)
            }
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
