//! SessionActor: one per subscriber connection. The same actor serves the
//! three transports (SSE, WebSocket, and the seed route's SSE dialect);
//! only the `Subscriber` it shares with its worker's relay knows the
//! difference (`broadcast::relay`).
//!
//! The actor does the control work and nothing per chunk: it subscribes to
//! its thread actor (fresh or from a cursor), joins the relay of its worker
//! (which from then on writes the thread's frames straight into its
//! response pipe), writes what the subscription replayed, and then waits
//! for notices. When the relay could not write a frame (the client reads
//! slowly), the session waits for room in its pipe, closes the subscriber
//! as a slow consumer if none comes in time, and otherwise asks its thread
//! for what it missed after its cursor (one coalesced delta per block),
//! repeating until it is level with the relay. It also reads a WebSocket
//! client's frames. It stops when its client goes away or its thread
//! closes, and then leaves the relay and unsubscribes.

use std::{
    rc::Rc,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use actix::prelude::*;
use actix_http::ws::OpCode;
use actix_ws::{AggregatedMessage, AggregatedMessageStream, CloseCode, ProtocolError};
use serde::Deserialize;
use uuid::Uuid;

use super::{
    registry::{ask, Registry},
    thread::{AbortGeneration, Cancel, CatchUp, StartGeneration, Subscribe, ThreadActor, Unsubscribe},
    ThreadError,
};
use crate::{
    broadcast::relay::{self, Notice, Stall, Subscriber, Wire},
    capacity::{ConnectionSlot, SubscriberSlot},
    domain::{
        cursor::Resume,
        event::Event,
        frame::{ws_frame, Frame},
        input,
    },
    metrics::Metrics,
    pipe::PipeWriter,
    ws_guard::Refused,
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
    /// The relay this session joined (`Fanout::id`).
    fanout_id: Option<u64>,
    transport: Option<Transport>,
    subscriber: Option<Rc<Subscriber>>,
    metrics: Arc<Metrics>,
    limits: SessionLimits,
    start_from: Resume,
    catching_up: bool,
    /// Its places in its key's and its thread's allowances, given back on
    /// stop.
    _admission: Option<Admission>,
}

/// A stream's admission: its slot of its key's connections (none for the
/// admin token and open mode) and its place among its thread's subscribers.
pub struct Admission {
    pub connection: Option<ConnectionSlot>,
    pub subscriber: SubscriberSlot,
}

/// How a catch-up ended when it did not end level with the relay.
enum Interrupted {
    Stall(Stall),
    ThreadGone,
    /// The seed route's answer is complete.
    Done,
}

impl SessionActor {
    pub fn new(
        thread_id: Uuid,
        registry: Addr<Registry>,
        transport: Transport,
        metrics: Arc<Metrics>,
        limits: SessionLimits,
        from: Resume,
    ) -> Self {
        SessionActor {
            id: NEXT_SESSION.fetch_add(1, Ordering::Relaxed),
            thread_id,
            registry,
            thread: None,
            fanout_id: None,
            transport: Some(transport),
            subscriber: None,
            metrics,
            limits,
            start_from: from,
            catching_up: false,
            _admission: None,
        }
    }

    /// Holds `admission` for as long as the session lives.
    pub fn holding(mut self, admission: Admission) -> Self {
        self._admission = Some(admission);
        self
    }

    fn subscriber(&self) -> &Rc<Subscriber> {
        // Set in `started`, before anything else runs.
        self.subscriber.as_ref().expect("session started")
    }

    fn gauge(&self) -> &prometheus::IntGauge {
        match self.subscriber.as_ref().map(|s| s.wire()) {
            Some(Wire::Ws) => &self.metrics.subscribers_ws,
            _ => &self.metrics.subscribers_sse,
        }
    }

    /// Writes `frames` (a replay or a catch-up, up to `head_seq`), then
    /// asks the thread for what the relay skipped meanwhile, until the
    /// subscriber is level with the relay again. One at a time.
    fn catch_up(&mut self, frames: Vec<Frame>, head_seq: u64, ctx: &mut Context<Self>) {
        if self.catching_up {
            return;
        }
        let Some(thread) = self.thread.clone() else { return };
        self.catching_up = true;
        let subscriber = self.subscriber().clone();
        let patience = self.limits.slow_consumer;
        let metrics = self.metrics.clone();
        let fut = async move {
            let (mut frames, mut head_seq) = (frames, head_seq);
            loop {
                for frame in &frames {
                    subscriber.write(frame, patience).await.map_err(Interrupted::Stall)?;
                    if frame.kind == "message.delta" {
                        metrics.chunks_out.inc();
                    }
                    if subscriber.completes(frame) {
                        return Err(Interrupted::Done);
                    }
                }
                if subscriber.resume_live(head_seq) {
                    return Ok(());
                }
                subscriber.room(patience).await.map_err(Interrupted::Stall)?;
                let from = subscriber.cursor();
                match thread.send(CatchUp { from }).await {
                    Ok(Ok(reply)) => (frames, head_seq) = (reply.frames, reply.head_seq),
                    _ => return Err(Interrupted::ThreadGone),
                }
            }
        };
        ctx.spawn(fut.into_actor(self).map(|res, act, ctx| {
            act.catching_up = false;
            match res {
                Ok(()) => {}
                Err(Interrupted::Stall(Stall::Gone) | Interrupted::Done) => ctx.stop(),
                Err(Interrupted::Stall(Stall::Slow)) => {
                    tracing::info!(thread_id = %act.thread_id, session = act.id, "slow consumer closed");
                    act.metrics.slow_consumers.inc();
                    act.close(
                        "slow_consumer",
                        "this subscriber read too slowly; reconnect with your cursor to resume",
                        ctx,
                    );
                }
                Err(Interrupted::ThreadGone) => act.close(relay::THREAD_STOPPED.0, relay::THREAD_STOPPED.1, ctx),
            }
        }));
    }

    /// An `error` event for this subscriber alone (the seed route has no
    /// such event outside its closing line). It waits for room like any
    /// frame, without holding anything else up.
    fn write_error(&mut self, code: &str, message: &str, ctx: &mut Context<Self>) {
        let subscriber = self.subscriber().clone();
        if matches!(subscriber.wire(), Wire::Seed(_)) {
            return;
        }
        let (thread_id, code, message) = (self.thread_id, code.to_owned(), message.to_owned());
        let patience = self.limits.slow_consumer;
        let fut = async move {
            subscriber.room(patience).await?;
            // Encoded once there is room, with the cursor of that moment:
            // a catch-up may have written on meanwhile.
            let event = Event::Error { thread_id, cursor: subscriber.cursor(), code, message };
            subscriber.try_write(&Frame::encode(&event, 0, false));
            Ok::<(), Stall>(())
        };
        ctx.spawn(fut.into_actor(self).map(|res, _, ctx| {
            if res.is_err() {
                ctx.stop();
            }
        }));
    }

    /// The closing `error`, then (WebSocket) a close frame; the response
    /// ends when the session stops and the pipe's writer is dropped.
    fn close(&mut self, code: &str, message: &str, ctx: &mut Context<Self>) {
        self.subscriber().write_closing(code, message);
        ctx.stop();
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
        self.subscriber().write_ws_close(code, description);
        ctx.stop();
    }
}

impl Actor for SessionActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let (wire, tx, incoming, peer_timeout) = match self.transport.take() {
            Some(Transport::Sse(tx)) => (Wire::Sse, tx, None, None),
            Some(Transport::Ws { tx, incoming }) => (Wire::Ws, tx, incoming, Some(self.limits.peer_timeout)),
            Some(Transport::Seed { tx, message_id }) => (Wire::Seed(message_id), tx, None, None),
            None => return ctx.stop(),
        };
        let notices = ctx.address().recipient();
        let subscriber = Rc::new(Subscriber::new(
            self.id,
            self.thread_id,
            wire,
            tx,
            notices,
            peer_timeout,
            self.start_from.cursor(),
        ));
        self.subscriber = Some(subscriber.clone());
        self.gauge().inc();
        if let Some(stream) = incoming {
            ctx.add_stream(stream);
        }
        // The client going away drops the response body; notice it even
        // while nothing is being written.
        ctx.spawn(async move { subscriber.gone().await }.into_actor(self).map(|_, _, ctx| ctx.stop()));
        let registry = self.registry.clone();
        let (thread_id, session_id, from) = (self.thread_id, self.id, self.start_from);
        ctx.wait(
            async move { ask(&registry, thread_id, || Subscribe { session_id, from }).await? }.into_actor(self).map(
                |res, act, ctx| match res {
                    Ok(sub) => {
                        act.thread = Some(sub.thread);
                        act.fanout_id = Some(sub.fanout_id);
                        relay::join(sub.fanout_id, sub.signals, act.subscriber().clone(), sub.head_seq, &act.metrics);
                        act.catch_up(sub.frames, sub.head_seq, ctx);
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
        if let Some(fanout_id) = self.fanout_id.take() {
            relay::leave(fanout_id, self.id);
        }
        if let Some(thread) = &self.thread {
            thread.do_send(Unsubscribe { session_id: self.id });
        }
        Running::Stop
    }
}

impl Handler<Notice> for SessionActor {
    type Result = ();

    fn handle(&mut self, notice: Notice, ctx: &mut Context<Self>) {
        match notice {
            Notice::Behind => {
                self.metrics.catch_ups.inc();
                tracing::debug!(thread_id = %self.thread_id, session = self.id, "subscriber behind; catching up");
                self.catch_up(Vec::new(), 0, ctx);
            }
            Notice::Gone | Notice::Closed | Notice::Done => ctx.stop(),
            Notice::Silent => {
                tracing::debug!(thread_id = %self.thread_id, session = self.id, "websocket peer silent; closing");
                self.close_ws(CloseCode::Away, "no pong", ctx);
            }
        }
    }
}

impl StreamHandler<Result<AggregatedMessage, ProtocolError>> for SessionActor {
    fn handle(&mut self, item: Result<AggregatedMessage, ProtocolError>, ctx: &mut Context<Self>) {
        self.subscriber().heard();
        match item {
            Ok(AggregatedMessage::Text(text)) => self.on_client_frame(&text, ctx),
            Ok(AggregatedMessage::Binary(_)) => {
                self.write_error("bad_request", "binary frames are not supported; send JSON text frames", ctx)
            }
            Ok(AggregatedMessage::Ping(bytes)) => {
                let _ = self.subscriber().try_send(ws_frame(OpCode::Pong, &bytes));
            }
            Ok(AggregatedMessage::Pong(_)) => {}
            Ok(AggregatedMessage::Close(_)) => ctx.stop(),
            Err(ProtocolError::Overflow) => self.close_ws(CloseCode::Size, "frame too large", ctx),
            Err(ProtocolError::Io(e)) if Refused::of(&e) == Some(Refused::TooLarge) => {
                self.close_ws(CloseCode::Size, "message too large", ctx)
            }
            Err(ProtocolError::Io(e)) if Refused::of(&e) == Some(Refused::Busy) => {
                tracing::warn!(thread_id = %self.thread_id, "websocket closed: unfinished messages past the node's budget");
                self.close_ws(CloseCode::Again, "server busy; try again later", ctx)
            }
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
