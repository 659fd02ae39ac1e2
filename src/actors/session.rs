//! SessionActor: one per subscriber connection. The same actor serves
//! every transport (SSE, WebSocket, the seed route's SSE dialect, the AI
//! SDK's UI message stream over SSE, and one request of a chat WebSocket);
//! only the `Subscriber` it shares with its worker's relay knows the
//! difference (`delivery::relay`).
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
use actix_ws::{AggregatedMessage, ProtocolError};
use uuid::Uuid;

use super::{
    registry::{ask, Registry},
    thread::{AbortGeneration, Cancel, CatchUp, StartGeneration, Subscribe, ThreadActor, Unsubscribe},
    ThreadError,
};
use crate::{
    broadcast::Missed,
    capacity::{ConnectionSlot, SubscriberSlot},
    config::Settings,
    delivery::{
        catch_up::{self, Interrupted},
        pipe::PipeWriter,
        relay,
        subscriber::{ChatRequest, Notice, Stall, Subscriber, UiRequest, Wire},
    },
    domain::{
        client_frame::ClientFrame,
        codes::{Code, ErrorCode, StreamCode},
        cursor::Resume,
        event::Event,
        frame::{Frame, StreamPos},
        input,
        websocket::{ws_frame, WsOp},
    },
    metrics::Metrics,
    telemetry::peer::PeerFault,
    ws_guard::{Incoming, Refused},
};

/// How long a session whose catch-up found its thread's actor gone waits
/// for the relay to deliver the thread's own closing (which says why)
/// before it closes as `thread_stopped` itself.
const THREAD_GONE_PATIENCE: Duration = Duration::from_secs(2);

pub use websocket::{close, log_protocol_close, protocol_close};

static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);

/// Where a session's frames go: every transport is a response body fed
/// through a small bounded pipe, with bytes already in its wire format.
pub enum Transport {
    /// A `text/event-stream` body.
    Sse(PipeWriter),
    /// The WebSocket's outgoing frames, and the client's incoming ones
    /// (actix-ws parses those).
    Ws { tx: PipeWriter, incoming: Option<Incoming> },
    /// The seed route: only that message's text chunks, in its wire format,
    /// and the response ends with the message.
    Seed { tx: PipeWriter, message_id: Uuid },
    /// The AI SDK's UI message stream of that message over SSE; the
    /// response ends with the message.
    Ui { tx: PipeWriter, request: UiRequest },
    /// One request of a chat WebSocket: that message's UI chunks in the
    /// request's frames (the socket's own actor reads the client).
    Chat { tx: PipeWriter, request: ChatRequest },
    /// One thread of a project socket: its WebSocket frames; the socket's
    /// own actor reads the client and hands this session its thread's
    /// frames (`ChannelFrame`).
    Channel(PipeWriter),
}

/// A client frame for this session's thread, read by a project socket.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ChannelFrame(pub ClientFrame);

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

impl SessionLimits {
    pub fn from_settings(settings: &Settings) -> SessionLimits {
        SessionLimits {
            max_content_bytes: settings.limits.max_content_bytes,
            max_tokens_cap: settings.limits.max_tokens_cap,
            slow_consumer: Duration::from_millis(settings.streaming.slow_consumer_ms.max(1)),
            peer_timeout: Duration::from_millis(settings.streaming.ws_timeout_ms.max(1)),
        }
    }
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
            Some(Wire::Ws | Wire::Chat(_) | Wire::Channel) => &self.metrics.subscribers_ws,
            _ => &self.metrics.subscribers_sse,
        }
    }

    /// Writes `missed` (a replay or a catch-up), then asks the thread for
    /// what the relay skipped meanwhile, until the subscriber is live
    /// again (`delivery::catch_up`). One at a time.
    fn catch_up(&mut self, missed: Missed, ctx: &mut Context<Self>) {
        if self.catching_up {
            return;
        }
        let Some(thread) = self.thread.clone() else { return };
        self.catching_up = true;
        let subscriber = self.subscriber().clone();
        let patience = self.limits.slow_consumer;
        let metrics = self.metrics.clone();
        let fut = async move {
            let ask = |from| {
                let thread = thread.clone();
                async move { thread.send(CatchUp { from }).await.ok().and_then(Result::ok) }
            };
            catch_up::run(subscriber, missed, patience, &metrics, ask).await
        };
        ctx.spawn(fut.into_actor(self).map(|res, act, ctx| {
            act.catching_up = false;
            match res {
                Ok(()) => {}
                Err(Interrupted::Stall(Stall::Gone) | Interrupted::Done) => ctx.stop(),
                Err(Interrupted::Stall(Stall::Slow)) => {
                    tracing::info!(thread_id = %act.thread_id, session = act.id, "slow consumer closed");
                    act.metrics.slow_consumers.inc();
                    act.close(StreamCode::SlowConsumer, StreamCode::SlowConsumer.message(), ctx);
                }
                // The thread's actor stopped while this subscriber caught
                // up. Its relay is about to say why (`shutting_down` at a
                // shutdown, `thread_deleted`, …: the closing the actor
                // published, or `thread_stopped` when its ring ends), and
                // that closing stops this session; only if none comes is
                // it closed here, as stopped.
                Err(Interrupted::ThreadGone) => {
                    ctx.run_later(THREAD_GONE_PATIENCE, |act, ctx| {
                        tracing::debug!(thread_id = %act.thread_id, session = act.id, "thread gone; no closing came");
                        act.close(StreamCode::ThreadStopped, StreamCode::ThreadStopped.message(), ctx)
                    });
                }
            }
        }));
    }

    /// An `error` event for this subscriber alone (the wires of one
    /// answer have no such event outside their closing line). It waits for
    /// room like any frame, without holding anything else up.
    fn write_error(&mut self, code: impl Into<ErrorCode>, message: &str, ctx: &mut Context<Self>) {
        let (thread_id, code, message) = (self.thread_id, code.into(), message.to_owned());
        self.write_own(move |cursor| Event::error(thread_id, cursor, code, &message), ctx);
    }

    /// Writes `event` to this subscriber alone (an `ack`).
    fn write_event(&mut self, mut event: Event, ctx: &mut Context<Self>) {
        self.write_own(
            move |cursor| {
                if let Event::Ack { cursor: at, .. } = &mut event {
                    *at = cursor;
                }
                event
            },
            ctx,
        );
    }

    /// Writes the event `make` builds, for this subscriber alone (not a
    /// position), once its pipe has room; a subscriber with no room for
    /// it in time is a slow one, and stops.
    fn write_own(
        &mut self,
        make: impl FnOnce(Option<crate::domain::cursor::Cursor>) -> Event + 'static,
        ctx: &mut Context<Self>,
    ) {
        let subscriber = self.subscriber().clone();
        if !matches!(subscriber.wire(), Wire::Sse | Wire::Ws | Wire::Channel) {
            return;
        }
        let patience = self.limits.slow_consumer;
        let fut = async move {
            subscriber.room(patience).await?;
            // Encoded once there is room, with the cursor of that moment:
            // a catch-up may have written on meanwhile.
            let event = make(subscriber.cursor());
            subscriber.try_write(&Frame::encode(&event, StreamPos::NONE, false));
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
    fn close(&mut self, code: impl Into<ErrorCode>, message: &str, ctx: &mut Context<Self>) {
        self.subscriber().write_closing(code, message);
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
            Some(Transport::Ui { tx, request }) => (Wire::Ui(request), tx, None, None),
            Some(Transport::Chat { tx, request }) => (Wire::Chat(request), tx, None, None),
            Some(Transport::Channel(tx)) => (Wire::Channel, tx, None, None),
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
                        relay::join(
                            sub.fanout_id,
                            sub.signals,
                            act.subscriber().clone(),
                            sub.replay.head,
                            &act.metrics,
                        );
                        act.catch_up(sub.replay, ctx);
                    }
                    Err(e) => {
                        tracing::warn!(thread_id = %act.thread_id, error.message = %e, "subscription refused");
                        match e {
                            ThreadError::ShuttingDown => {
                                act.close(StreamCode::ShuttingDown, StreamCode::ShuttingDown.message(), ctx)
                            }
                            e => act.close(Code::Unavailable, &e.to_string(), ctx),
                        }
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
                self.catch_up(Missed { frames: Vec::new(), head: StreamPos::NONE }, ctx);
            }
            Notice::Gone | Notice::Closed | Notice::Done => ctx.stop(),
            Notice::Silent => {
                tracing::debug!(thread_id = %self.thread_id, session = self.id, "websocket peer silent; closing");
                self.close_ws(close::AWAY, "no pong", ctx);
            }
        }
    }
}

mod websocket;
