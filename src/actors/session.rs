//! SessionActor: one per subscriber connection. The same actor serves the
//! three transports (SSE, WebSocket, and the seed route's SSE dialect);
//! only `write` knows the difference.
//!
//! It subscribes to its thread actor (fresh or from a cursor), writes the
//! frames it is handed, then reads the thread's fan-out stream. While its
//! transport is full it waits (`ctx.wait`), which stops it from reading the
//! stream: the frames stay in the thread's shared ring and nothing queues
//! per subscriber. If it falls further behind than the ring holds, the
//! stream says `Lagged` and the session asks its thread for what it missed
//! after its cursor (one coalesced delta per block), then skips the frames
//! that catch-up already covered.
//!
//! It remembers the cursor of the last positional frame it wrote. It stops
//! when its client goes away or its thread closes, and then unsubscribes.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use actix::prelude::*;
use actix_http::ws::OpCode;
use actix_ws::{AggregatedMessage, AggregatedMessageStream, CloseCode, ProtocolError};
use bytes::Bytes;
use serde::Deserialize;
use uuid::Uuid;

use super::{
    registry::{ask, Registry},
    thread::{AbortGeneration, Cancel, CatchUp, StartGeneration, Subscribe, ThreadActor, Unsubscribe},
    ThreadError,
};
use crate::{
    broadcast::{Lagged, Signal},
    capacity::ConnectionSlot,
    domain::{
        cursor::Cursor,
        event::Event,
        frame::{seed_error, ws_close, ws_frame, Frame, SSE_KEEP_ALIVE},
        input,
    },
    metrics::Metrics,
    pipe::{PipeWriter, TrySendError},
};

static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);

/// Where a session's frames go: every transport is a response body fed
/// through a small bounded pipe, with bytes already in its wire format.
pub enum Transport {
    /// A `text/event-stream` body.
    Sse(PipeWriter),
    /// The WebSocket's outgoing frames, and the client's incoming ones
    /// (actix-ws parses those).
    Ws { tx: PipeWriter, incoming: Option<AggregatedMessageStream> },
    /// The seed route: only that message's text chunks, in its wire format,
    /// and the response ends with the message.
    Seed { tx: PipeWriter, message_id: Uuid },
}

impl Transport {
    fn tx(&self) -> &PipeWriter {
        match self {
            Transport::Sse(tx) | Transport::Ws { tx, .. } | Transport::Seed { tx, .. } => tx,
        }
    }
}

/// A frame of the WebSocket client.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientFrame {
    Send {
        content: String,
        model: Option<String>,
        #[serde(default, deserialize_with = "input::whole_u32")]
        max_tokens: Option<u32>,
    },
    Cancel,
}

/// Timing limits of a session.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    /// Heartbeat period while nothing else is written.
    pub heartbeat: Duration,
    /// A transport that accepts nothing for this long while frames wait is
    /// a slow consumer: it gets `error` `slow_consumer` and is closed (it
    /// can resume with its cursor).
    pub slow_consumer: Duration,
    /// A WebSocket peer silent this long (no frame, no pong) is dead.
    pub peer_timeout: Duration,
    /// Largest `content` of a `send` frame.
    pub max_content_bytes: usize,
    /// Largest `max_tokens` of a `send` frame.
    pub max_tokens_cap: u32,
}

pub struct SessionActor {
    id: u64,
    thread_id: Uuid,
    registry: Addr<Registry>,
    thread: Option<Addr<ThreadActor>>,
    transport: Transport,
    metrics: Arc<Metrics>,
    limits: SessionLimits,
    start_from: Option<Cursor>,
    cursor: Option<Cursor>,
    last_seq: u64,
    last_write: Instant,
    /// When the WebSocket peer last sent anything.
    last_heard: Instant,
    /// This connection's slot of its key's allowance, given back on stop.
    _connection: Option<ConnectionSlot>,
}

impl SessionActor {
    pub fn new(
        thread_id: Uuid,
        registry: Addr<Registry>,
        transport: Transport,
        metrics: Arc<Metrics>,
        limits: SessionLimits,
        from: Option<Cursor>,
    ) -> Self {
        SessionActor {
            id: NEXT_SESSION.fetch_add(1, Ordering::Relaxed),
            thread_id,
            registry,
            thread: None,
            transport,
            metrics,
            limits,
            start_from: from,
            cursor: from,
            last_seq: 0,
            last_write: Instant::now(),
            last_heard: Instant::now(),
            _connection: None,
        }
    }

    /// Holds `slot` for as long as the session lives.
    pub fn holding(mut self, slot: Option<ConnectionSlot>) -> Self {
        self._connection = slot;
        self
    }

    fn gauge(&self) -> &prometheus::IntGauge {
        match self.transport {
            Transport::Ws { .. } => &self.metrics.subscribers_ws,
            _ => &self.metrics.subscribers_sse,
        }
    }

    /// What this transport writes for `frame`, or `None` to skip it.
    fn payload(&self, frame: &Frame) -> Option<Bytes> {
        match &self.transport {
            Transport::Sse(_) => Some(frame.sse.clone()),
            Transport::Ws { .. } => Some(frame.ws.clone()),
            Transport::Seed { message_id, .. } => {
                let mine = frame.cursor.is_some_and(|c| c.message_id == *message_id);
                frame.seed.clone().filter(|_| mine)
            }
        }
    }

    /// Writes frames in order. Frames go out at once while the transport
    /// has room; from the first one that does not fit, the rest are sent by
    /// one future the actor waits on, so nothing else is read meanwhile.
    fn write(&mut self, frames: &[&Frame], ctx: &mut Context<Self>) {
        let mut rest: Vec<Bytes> = Vec::new();
        for frame in frames {
            if let Some(c) = frame.cursor {
                self.cursor = Some(c);
            }
            if frame.kind == "message.delta" {
                self.metrics.chunks_out.inc();
            }
            let Some(payload) = self.payload(frame) else { continue };
            if !rest.is_empty() {
                rest.push(payload);
                continue;
            }
            match self.try_write(payload) {
                Ok(None) => {}
                Ok(Some(blocked)) => rest.push(blocked),
                Err(()) => return ctx.stop(),
            }
        }
        self.last_write = Instant::now();
        if rest.is_empty() {
            return;
        }
        let tx = self.transport.tx().clone();
        let fut = async move {
            for bytes in rest {
                tx.send(bytes).await?;
            }
            Ok::<(), ()>(())
        };
        let fut = tokio::time::timeout(self.limits.slow_consumer, fut);
        ctx.wait(fut.into_actor(self).map(|res, act, ctx| {
            act.last_write = Instant::now();
            match res {
                Ok(Ok(())) => {}
                Ok(Err(())) => ctx.stop(),
                Err(_) => {
                    tracing::info!(thread_id = %act.thread_id, session = act.id, "slow consumer closed");
                    act.metrics.slow_consumers.inc();
                    act.close(
                        "slow_consumer",
                        "this subscriber read too slowly; reconnect with your cursor to resume",
                        ctx,
                    );
                }
            }
        }));
    }

    /// `Ok(None)` written; `Ok(Some(bytes))` no room now; `Err` client gone.
    fn try_write(&mut self, bytes: Bytes) -> Result<Option<Bytes>, ()> {
        match self.transport.tx().try_send(bytes) {
            Ok(()) => Ok(None),
            Err(TrySendError::Full(bytes)) => Ok(Some(bytes)),
            Err(TrySendError::Closed(_)) => Err(()),
        }
    }

    /// An event for this subscriber alone, at its own cursor.
    fn write_event(&mut self, event: Event, ctx: &mut Context<Self>) {
        let frame = Frame::encode(&event, 0, false);
        self.write(&[&frame], ctx);
    }

    /// An `error` event for this subscriber (the seed route has no such
    /// event outside its closing line).
    fn write_error(&mut self, code: &str, message: &str, ctx: &mut Context<Self>) {
        if matches!(self.transport, Transport::Seed { .. }) {
            return;
        }
        let event =
            Event::Error { thread_id: self.thread_id, cursor: self.cursor, code: code.into(), message: message.into() };
        self.write_event(event, ctx);
    }

    /// The closing `error`: into the place the pipe keeps for it, never
    /// waiting, so even a subscriber that stopped reading is told why.
    fn write_final_error(&mut self, code: &str, message: &str) {
        let event =
            Event::Error { thread_id: self.thread_id, cursor: self.cursor, code: code.into(), message: message.into() };
        let bytes = match &self.transport {
            Transport::Sse(_) => Frame::encode(&event, 0, false).sse,
            Transport::Ws { .. } => Frame::encode(&event, 0, false).ws,
            Transport::Seed { .. } => seed_error(message),
        };
        self.transport.tx().push_final(bytes);
    }

    /// The closing `error`, then (WebSocket) a close frame; the response
    /// ends when the session stops and drops its end of the pipe.
    fn close(&mut self, code: &str, message: &str, ctx: &mut Context<Self>) {
        self.write_final_error(code, message);
        self.close_ws(CloseCode::Away, code, ctx);
    }

    fn heartbeat(&mut self, ctx: &mut Context<Self>) {
        if matches!(self.transport, Transport::Ws { .. }) && self.last_heard.elapsed() > self.limits.peer_timeout {
            tracing::debug!(thread_id = %self.thread_id, session = self.id, "websocket peer silent; closing");
            return self.close_ws(CloseCode::Away, "no pong", ctx);
        }
        // Ticks come every half period (see the thread actor).
        if self.last_write.elapsed() < self.limits.heartbeat / 2 {
            return;
        }
        let sent = match &mut self.transport {
            Transport::Sse(tx) => {
                !matches!(tx.try_send(Bytes::from_static(SSE_KEEP_ALIVE)), Err(TrySendError::Closed(_)))
            }
            Transport::Ws { tx, .. } => {
                !matches!(tx.try_send(ws_frame(OpCode::Ping, b"")), Err(TrySendError::Closed(_)))
            }
            Transport::Seed { .. } => true,
        };
        self.last_write = Instant::now();
        if !sent {
            ctx.stop();
        }
    }

    fn on_client_frame(&mut self, text: &str, ctx: &mut Context<Self>) {
        let frame: ClientFrame = match serde_json::from_str(text) {
            Ok(f) => f,
            Err(e) => return self.write_error("bad_request", &format!("malformed frame: {e}"), ctx),
        };
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
                    return self.write_error(e.code.as_str(), &e.message, ctx);
                }
                let fut = async move {
                    let start = || StartGeneration {
                        project_id: None,
                        content: content.clone(),
                        model: model.clone(),
                        max_tokens,
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
                        let api: crate::error::ApiError = e.into();
                        act.write_error(api.code.as_str(), &api.message, ctx);
                    }
                }));
            }
            ClientFrame::Cancel => {
                let fut = async move { ask(&registry, thread_id, || Cancel).await? };
                ctx.spawn(fut.into_actor(self).map(|res, act, ctx| {
                    if let Err(e) = res {
                        let api: crate::error::ApiError = e.into();
                        act.write_error(api.code.as_str(), &api.message, ctx);
                    }
                }));
            }
        }
    }

    /// A close frame (WebSocket only; it fits even when the pipe is full),
    /// then stop.
    fn close_ws(&mut self, code: CloseCode, description: &str, ctx: &mut Context<Self>) {
        if let Transport::Ws { tx, .. } = &self.transport {
            tx.push_final(ws_close(code, description));
        }
        ctx.stop();
    }
}

impl Actor for SessionActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.gauge().inc();
        if let Transport::Ws { incoming, .. } = &mut self.transport {
            if let Some(stream) = incoming.take() {
                ctx.add_stream(stream);
            }
        }
        // The client going away drops the response body and with it the
        // pipe's reader; notice it even while nothing is being written.
        let tx = self.transport.tx().clone();
        ctx.spawn(async move { tx.closed().await }.into_actor(self).map(|_, _, ctx| ctx.stop()));
        let registry = self.registry.clone();
        let (thread_id, session_id, from) = (self.thread_id, self.id, self.start_from);
        ctx.wait(
            async move { ask(&registry, thread_id, || Subscribe { session_id, from }).await? }.into_actor(self).map(
                |res, act, ctx| match res {
                    Ok(sub) => {
                        act.thread = Some(sub.thread);
                        let frames: Vec<&Frame> = sub.frames.iter().collect();
                        act.write(&frames, ctx);
                        ctx.add_stream(sub.signals);
                    }
                    Err(e) => {
                        tracing::warn!(thread_id = %act.thread_id, error.message = %e, "subscription refused");
                        act.close("unavailable", &e.to_string(), ctx);
                    }
                },
            ),
        );
    }

    fn stopping(&mut self, _: &mut Context<Self>) -> Running {
        self.gauge().dec();
        if let Some(thread) = &self.thread {
            thread.do_send(Unsubscribe { session_id: self.id });
        }
        Running::Stop
    }
}

impl StreamHandler<Result<Signal, Lagged>> for SessionActor {
    fn handle(&mut self, item: Result<Signal, Lagged>, ctx: &mut Context<Self>) {
        match item {
            Ok(Signal::Frame(frame)) => {
                if frame.seq > self.last_seq {
                    self.last_seq = frame.seq;
                    self.write(&[&frame], ctx);
                    if let Transport::Seed { message_id, .. } = &self.transport {
                        let done = frame.kind == "message.completed"
                            && frame.cursor.is_some_and(|c| c.message_id == *message_id);
                        if done {
                            ctx.stop();
                        }
                    }
                }
            }
            Ok(Signal::Presence(subscribers)) => {
                if !matches!(self.transport, Transport::Seed { .. }) {
                    let event = Event::Presence { thread_id: self.thread_id, cursor: self.cursor, subscribers };
                    self.write_event(event, ctx);
                }
            }
            Ok(Signal::Closed { code, message }) => self.close(code, message, ctx),
            Ok(Signal::Tick) => self.heartbeat(ctx),
            Err(Lagged(missed)) => {
                self.metrics.catch_ups.inc();
                tracing::debug!(thread_id = %self.thread_id, session = self.id, missed, "subscriber lagged; catching up");
                let Some(thread) = self.thread.clone() else { return };
                let from = self.cursor;
                ctx.wait(thread.send(CatchUp { from }).into_actor(self).map(|res, act, ctx| match res {
                    Ok(Ok(reply)) => {
                        act.last_seq = act.last_seq.max(reply.head_seq);
                        let frames: Vec<&Frame> = reply.frames.iter().collect();
                        act.write(&frames, ctx);
                    }
                    _ => act.close("thread_stopped", "the thread is no longer live; reconnect to resume", ctx),
                }));
            }
        }
    }

    /// The thread's fan-out ended: its actor stopped.
    fn finished(&mut self, ctx: &mut Context<Self>) {
        self.close("thread_stopped", "the thread is no longer live; reconnect to resume", ctx);
    }
}

impl StreamHandler<Result<AggregatedMessage, ProtocolError>> for SessionActor {
    fn handle(&mut self, item: Result<AggregatedMessage, ProtocolError>, ctx: &mut Context<Self>) {
        self.last_heard = Instant::now();
        match item {
            Ok(AggregatedMessage::Text(text)) => self.on_client_frame(&text, ctx),
            Ok(AggregatedMessage::Binary(_)) => {
                self.write_error("bad_request", "binary frames are not supported; send JSON text frames", ctx)
            }
            Ok(AggregatedMessage::Ping(bytes)) => {
                let _ = self.transport.tx().try_send(ws_frame(OpCode::Pong, &bytes));
            }
            Ok(AggregatedMessage::Pong(_)) => {}
            Ok(AggregatedMessage::Close(_)) => ctx.stop(),
            Err(ProtocolError::Overflow) => self.close_ws(CloseCode::Size, "frame too large", ctx),
            // actix-ws reports a message too large across continuation
            // frames only as an I/O error with this text.
            Err(ProtocolError::Io(e)) if e.to_string().contains("maximum continuation size") => {
                self.close_ws(CloseCode::Size, "message too large", ctx)
            }
            Err(ProtocolError::Io(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                self.close_ws(CloseCode::Invalid, "invalid UTF-8", ctx)
            }
            Err(e) => {
                tracing::debug!(error.message = %e, "websocket protocol error");
                self.close_ws(CloseCode::Protocol, "protocol error", ctx)
            }
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::ClientFrame;

    proptest! {
        #[test]
        fn any_client_text_is_a_frame_or_an_error(text in "\\PC{0,200}") {
            let _ = serde_json::from_str::<ClientFrame>(&text);
        }

        #[test]
        fn send_frames_keep_their_content(content in "\\PC{1,200}") {
            let frame = serde_json::json!({"type": "send", "content": content}).to_string();
            match serde_json::from_str::<ClientFrame>(&frame) {
                Ok(ClientFrame::Send { content: got, .. }) => prop_assert_eq!(got, content),
                other => prop_assert!(false, "{other:?}"),
            }
        }

        #[test]
        fn unknown_fields_and_types_are_refused(extra in "[a-z_]{1,10}") {
            // A number is only right for `max_tokens`; any other field,
            // known with the wrong type or unknown, is refused.
            let frame = serde_json::json!({"type": "send", "content": "x", extra.clone(): 1}).to_string();
            prop_assert_eq!(serde_json::from_str::<ClientFrame>(&frame).is_err(), extra != "max_tokens");
            let kind = serde_json::json!({"type": extra}).to_string();
            prop_assert_eq!(serde_json::from_str::<ClientFrame>(&kind).is_ok(), extra == "cancel");
        }
    }
}
