//! `GET /v1/projects/{pid}/ws`: one WebSocket for any number of the
//! project's threads (API.md, "A socket for many threads"), served by a
//! `ProjectSocket`. A browser's tabs share one such socket for every
//! thread they watch, where one connection per thread would run into the
//! six connections per host HTTP/1.1 allows (and leave none for requests).
//!
//! Each `subscribe` is a `SessionActor` of that thread with a pipe of its
//! own in the socket's body (`delivery::mux`, `Wire::Channel`): it starts
//! from the frame's cursor by exactly the rules of the thread's own
//! `/events` and `/ws`, one thread's slow catch-up never holds up another
//! thread's frames, and where the thread's own socket would close (a slow
//! reader, a deleted or stopped thread, a shutdown) only that thread's
//! subscription ends, with its `error` and then `unsubscribed`. A thread's
//! own client frames (`send`, `cancel`, `tool_results`, `approval`, each
//! with its `thread_id`) go to its session, which answers them as on the
//! thread's socket.
//!
//! Who may follow what: the handshake says who calls, as on every project
//! route (a key or the admin token: every thread of the project; a stream
//! token: its own thread). A `subscribe` may carry a stream token of its
//! thread, which opens that thread too: a tab in secured mode holds tokens,
//! not keys. The socket holds one of its caller's connections; each
//! subscription, one place among its thread's subscribers. Like the chat
//! socket it lives on an HTTP worker beside its body, pings on its own
//! timer and closes a peer silent past `--ws-timeout-ms`.

use std::collections::HashMap;

use actix::prelude::*;
use actix_web::{
    body::{BodyStream, BoxBody},
    web, HttpRequest, HttpResponse,
};
use bytes::BytesMut;
use uuid::Uuid;

use super::{
    auth::{caller_of, credential_of_request, Caller},
    detached::detached,
    events::{start_session, STREAM_BUFFER},
    muxed_socket::{self, ClientItem, Muxed, MuxedSocket},
    ws::{check_origin, handshake, MAX_CLIENT_FRAME},
    AppState,
};
use crate::{
    actors::session::{Admission, ChannelFrame, SessionActor, SessionLimits, Transport},
    capacity::{ConnectionSlot, SubscriberSlot},
    delivery::{
        mux::{mux, Mux},
        pipe::pipe,
    },
    domain::{
        codes::Code,
        cursor::Resume,
        project_socket::{socket_error, unsubscribed, ProjectFrame},
        websocket::{ws_frame, WsOp},
    },
    error::ApiError,
    ws_guard::Incoming,
};

/// Threads one socket may follow at once.
pub const MAX_SUBSCRIPTIONS: usize = 256;

#[utoipa::path(get, path = "/v1/projects/{pid}/ws", tag = "streams", operation_id = "project_socket",
    params(("pid" = Uuid, Path, description = "Project id"),
        ("token" = Option<String>, Query, description = "A stream token of a thread of this project (secured mode, for clients that cannot send headers)")),
    responses((status = 101, description = "Switched to WebSocket: the events of any number of the project's threads, \
        each carrying its `thread_id`; the client sends `subscribe` `{thread_id, cursor?, token?}` and `unsubscribe` \
        `{thread_id}`, and a thread's `send`, `cancel`, `tool_results` and `approval` frames with its `thread_id`; \
        `unsubscribed` `{thread_id, cursor, code}` ends one thread's subscription (resume from `cursor`)")))]
#[tracing::instrument(skip_all, fields(project_id = %path))]
pub async fn socket(
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, actix_web::Error> {
    check_origin(&state, &req)?;
    let project_id = *path;
    let caller = caller_of(&req).unwrap_or(Caller::Open);
    if let Caller::Stream { thread, .. } = caller {
        if state.store.get_thread(project_id, thread).await.map_err(ApiError::from)?.is_none() {
            return Err(ApiError::new(Code::Unauthorized, "the stream token is not of a thread of this project").into());
        }
    } else {
        state
            .store
            .get_project(project_id)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| ApiError::not_found("project"))?;
    }
    let connection = state.deps.capacity.admit_connection(credential_of_request(&req)).map_err(ApiError::from)?;
    let (response, incoming) = handshake(&state, &req, body, MAX_CLIENT_FRAME)?;
    let (mux, outgoing) = mux(STREAM_BUFFER);
    let response = response.set_body(BoxBody::new(BodyStream::new(outgoing)));
    ProjectSocket::new(state.clone(), project_id, caller, mux, incoming, connection).start();
    Ok(response)
}

/// One thread the socket follows.
enum Channel {
    /// Being checked and admitted; `ticket` tells this subscription's
    /// answer from an earlier one's (subscribed again meanwhile).
    Opening { ticket: u64 },
    /// Its frames flow through pipe `key` of the mux, fed by `session`.
    Open { key: u64, session: Addr<SessionActor> },
}

pub struct ProjectSocket {
    state: web::Data<AppState>,
    project_id: Uuid,
    caller: Caller,
    socket: MuxedSocket,
    channels: HashMap<Uuid, Channel>,
    /// Keys of the mux's pipes, and tickets of subscriptions.
    next: u64,
    /// Its place among its caller's connections, given back on stop.
    _connection: Option<ConnectionSlot>,
}

impl ProjectSocket {
    fn new(
        state: web::Data<AppState>,
        project_id: Uuid,
        caller: Caller,
        mux: Mux,
        incoming: Incoming,
        connection: Option<ConnectionSlot>,
    ) -> ProjectSocket {
        let limits = SessionLimits::from_settings(&state.deps.settings);
        ProjectSocket {
            state,
            project_id,
            caller,
            socket: MuxedSocket::new(mux, incoming, limits),
            channels: HashMap::new(),
            next: 1,
            _connection: connection,
        }
    }

    fn next(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    /// Frames of the socket's own (each a JSON text); waits for room (a
    /// client that reads nothing for the slow-consumer time is closed).
    fn control(&mut self, frames: &[Vec<u8>], ctx: &mut Context<Self>) {
        let mut bytes = BytesMut::new();
        for frame in frames {
            bytes.extend_from_slice(&ws_frame(WsOp::Text, frame));
        }
        muxed_socket::control(self, bytes.freeze(), ctx);
    }

    /// A subscription of `thread_id` refused or failed: its `error`, then
    /// `unsubscribed`, so the client knows nothing follows.
    fn refuse(&mut self, thread_id: Uuid, code: &str, message: &str, ctx: &mut Context<Self>) {
        self.channels.remove(&thread_id);
        let frames = [socket_error(Some(thread_id), code, message), unsubscribed(thread_id, None, code)];
        self.control(&frames, ctx);
    }

    /// Forgets threads whose subscription ended and whose frames are out.
    fn prune(&mut self) {
        let mux = &self.socket.mux;
        self.channels.retain(|_, c| match c {
            Channel::Opening { .. } => true,
            Channel::Open { key, .. } => mux.has(*key),
        });
    }

    /// Whether this socket's caller, or the frame's `token`, opens
    /// `thread_id` (of this project: checked when it opens).
    fn may_follow(&self, thread_id: Uuid, token: Option<&str>) -> bool {
        match self.caller {
            Caller::Open | Caller::Admin | Caller::Project { .. } => true,
            Caller::Stream { thread, .. } => {
                thread == thread_id || token.is_some_and(|t| self.state.auth.token_opens(t, thread_id))
            }
        }
    }

    fn on_frame(&mut self, text: &str, ctx: &mut Context<Self>) {
        let frame = match ProjectFrame::parse(text) {
            Ok(frame) => frame,
            Err(e) => return self.control(&[socket_error(e.thread_id, Code::BadRequest.as_str(), &e.message)], ctx),
        };
        match frame {
            ProjectFrame::Subscribe { thread_id, cursor, token } => self.subscribe(thread_id, cursor, token, ctx),
            ProjectFrame::Unsubscribe { thread_id } => self.unsubscribe(thread_id),
            ProjectFrame::Thread { thread_id, frame } => {
                self.prune();
                match self.channels.get(&thread_id) {
                    Some(Channel::Open { session, .. }) => session.do_send(ChannelFrame(frame)),
                    _ => {
                        let why = "subscribe to this thread first (and wait for its `ready`)";
                        self.control(&[socket_error(Some(thread_id), Code::BadRequest.as_str(), why)], ctx);
                    }
                }
            }
        }
    }

    fn subscribe(&mut self, thread_id: Uuid, cursor: Option<String>, token: Option<String>, ctx: &mut Context<Self>) {
        // Subscribing again restarts from the new cursor.
        self.unsubscribe(thread_id);
        self.prune();
        if self.channels.len() >= MAX_SUBSCRIPTIONS {
            let why = format!("a socket follows at most {MAX_SUBSCRIPTIONS} threads at once; unsubscribe some");
            return self.refuse(thread_id, Code::RateLimited.as_str(), &why, ctx);
        }
        if !self.state.auth.is_open() && !self.may_follow(thread_id, token.as_deref()) {
            let why = "send a valid stream token of this thread (`token`)";
            return self.refuse(thread_id, Code::Unauthorized.as_str(), why, ctx);
        }
        let ticket = self.next();
        self.channels.insert(thread_id, Channel::Opening { ticket });
        let (state, project_id) = (self.state.clone(), self.project_id);
        let admit = async move {
            state.store.get_thread(project_id, thread_id).await?.ok_or_else(|| ApiError::not_found("thread"))?;
            Ok::<SubscriberSlot, ApiError>(state.deps.capacity.admit_subscriber(thread_id)?)
        };
        let from = match cursor.as_deref().filter(|c| !c.is_empty()) {
            None => Resume::Fresh,
            Some(text) => text.parse().map_or(Resume::Malformed, Resume::At),
        };
        ctx.spawn(
            detached(admit)
                .into_actor(self)
                .map(move |admitted, act, ctx| act.opened(thread_id, ticket, admitted, from, ctx)),
        );
    }

    /// A subscription was checked and admitted (or not).
    fn opened(
        &mut self,
        thread_id: Uuid,
        ticket: u64,
        admitted: Result<SubscriberSlot, ApiError>,
        from: Resume,
        ctx: &mut Context<Self>,
    ) {
        if !matches!(self.channels.get(&thread_id), Some(Channel::Opening { ticket: t }) if *t == ticket) {
            // Unsubscribed, or subscribed again, meanwhile.
            return;
        }
        let subscriber = match admitted {
            Ok(slot) => slot,
            Err(e) => return self.refuse(thread_id, e.code.as_str(), &e.message, ctx),
        };
        let key = self.next();
        let (tx, body) = pipe(STREAM_BUFFER);
        self.socket.mux.add(key, body);
        let admission = Admission { connection: None, subscriber };
        let session = start_session(&self.state, thread_id, admission, Transport::Channel(tx), from);
        self.channels.insert(thread_id, Channel::Open { key, session });
    }

    /// Stops following `thread_id`: its pipe goes, unread frames and all,
    /// and its session with it.
    fn unsubscribe(&mut self, thread_id: Uuid) {
        if let Some(Channel::Open { key, .. }) = self.channels.remove(&thread_id) {
            self.socket.mux.remove(key);
        }
    }
}

impl Actor for ProjectSocket {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let every = self.state.deps.settings.streaming.heartbeat() / 2;
        muxed_socket::start(self, every, ctx);
    }

    fn stopping(&mut self, _: &mut Context<Self>) -> Running {
        muxed_socket::stopping(self);
        Running::Stop
    }
}

impl Muxed for ProjectSocket {
    fn socket(&self) -> &MuxedSocket {
        &self.socket
    }

    fn socket_mut(&mut self) -> &mut MuxedSocket {
        &mut self.socket
    }

    fn whose(&self) -> String {
        format!("project socket of {}", self.project_id)
    }

    fn on_text(&mut self, text: &str, ctx: &mut Context<Self>) {
        self.on_frame(text, ctx);
    }

    fn on_binary(&mut self, ctx: &mut Context<Self>) {
        let why = "binary frames are not supported; send JSON text frames";
        self.control(&[socket_error(None, Code::BadRequest.as_str(), why)], ctx)
    }
}

impl StreamHandler<ClientItem> for ProjectSocket {
    fn handle(&mut self, item: ClientItem, ctx: &mut Context<Self>) {
        muxed_socket::handle(self, item, ctx);
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
