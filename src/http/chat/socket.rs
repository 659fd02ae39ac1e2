//! ChatSocket: one per chat WebSocket (`GET …/chat/ws`), the server of the
//! AI SDK's `WebSocketChatTransport`. It reads the client's frames and runs
//! each request as a subscriber of its chat's thread, several at once, each
//! with a pipe of its own in the socket's body (`delivery::mux`):
//!
//! - `send` asks the newest user message on the chat's thread, exactly as
//!   `POST …/chat` does, and streams the answer from its first chunk; a
//!   `send` whose last message is an answer of the chat continues it, as
//!   `POST …/chat` does (`continuation.rs`), numbered from 0 on;
//! - `resume` answers `no-active` when nothing runs or awaits input, else
//!   `start`, then the answer's chunks numbered after `lastSequence` (all
//!   of them without one), then live (an answer awaiting input: up to
//!   where it waits);
//! - `abort` (the user's Stop) drops the request and cancels its answer
//!   upstream, if that answer still runs.
//!
//! Each request's frames are a `SessionActor` with the chat wire (the
//! frame's shared chunk JSON in the request's envelope, `end` after the
//! answer's last chunk); a request is over when its pipe has drained. The
//! socket's own frames (`start`, `no-active`, `error`, pongs) go through the
//! control pipe. It lives on an HTTP handler's worker, next to its body,
//! and is an HTTP piece rather than one of `actors/`: it asks what the chat
//! routes ask (`chat::ask_turn`, the store's chat ids). The socket pings
//! on its own timer (one per socket; it may watch no thread at all) and
//! closes a peer silent past `--ws-timeout-ms`. It stops when its client
//! goes away, and its requests' sessions with it.

use std::{collections::HashMap, rc::Rc};

use actix::prelude::*;
use actix_web::web;
use uuid::Uuid;

use super::{ask_turn, chat_thread, checked_turn, continuation, running_answer, title_of, token_opens};
use crate::{
    actors::{
        registry::ask,
        session::{close, Admission, SessionLimits, Transport},
        thread::CancelAnswer,
        ThreadError,
    },
    capacity::{ConnectionSlot, SubscriberSlot},
    delivery::{continuation::Continuation, mux::Mux, pipe::pipe, subscriber::ChatRequest},
    domain::{
        chat_request::{ChatFrame, Extra, Trigger, UiMessage},
        cursor::{Cursor, Resume},
        event::end_cursor,
        ui_stream::Request,
        websocket::{ws_frame, WsOp},
    },
    error::ApiError,
    http::{
        detached::detached,
        events::{start_session, STREAM_BUFFER},
        muxed_socket::{self, ClientItem, Muxed, MuxedSocket},
        AppState,
    },
    ws_guard::Incoming,
};

/// Requests a socket may run at once.
pub const MAX_REQUESTS: usize = 16;

/// A request of the socket, by the client's `requestId`.
enum Active {
    /// Its answer is being started or looked up; `aborted` once the client
    /// aborted it meanwhile.
    Starting { aborted: bool },
    /// Its frames flow through pipe `key` of the mux.
    Open { key: u64, thread: Uuid, answer: Uuid },
}

/// What a request follows once it opens.
struct Opening {
    thread: Uuid,
    subscriber: SubscriberSlot,
    answer: Uuid,
    /// Where its session starts: right after the answer's question.
    from: Cursor,
    after: Option<u64>,
    /// A resume announces itself with `start` first.
    announce: bool,
    /// A continuation's first chunks (its stream continues after them).
    prefix: Option<Vec<bytes::Bytes>>,
}

pub struct ChatSocket {
    state: web::Data<AppState>,
    project_id: Uuid,
    /// A stream token's thread: the one chat this socket may touch.
    token_thread: Option<Uuid>,
    socket: MuxedSocket,
    requests: HashMap<String, Active>,
    next_key: u64,
    /// Its place among its key's connections, given back on stop.
    _connection: Option<ConnectionSlot>,
}

impl ChatSocket {
    pub fn new(
        state: web::Data<AppState>,
        project_id: Uuid,
        token_thread: Option<Uuid>,
        mux: Mux,
        incoming: Incoming,
        connection: Option<ConnectionSlot>,
    ) -> ChatSocket {
        let limits = SessionLimits::from_settings(&state.deps.settings);
        ChatSocket {
            state,
            project_id,
            token_thread,
            socket: MuxedSocket::new(mux, incoming, limits),
            requests: HashMap::new(),
            next_key: 1,
            _connection: connection,
        }
    }

    /// A frame of the socket's own; waits for room (a client that reads
    /// nothing for the slow-consumer time is closed).
    fn control(&mut self, bytes: Vec<u8>, ctx: &mut Context<Self>) {
        muxed_socket::control(self, ws_frame(WsOp::Text, &bytes), ctx);
    }

    fn fail(&mut self, request_id: &str, error: &ApiError, ctx: &mut Context<Self>) {
        self.requests.remove(request_id);
        self.control(Request::new(request_id).error(&error.message), ctx);
    }

    /// A close frame (it fits even when the control pipe is full), then stop.
    fn close(&mut self, code: u16, reason: &str, ctx: &mut Context<Self>) {
        muxed_socket::close_with(self, code, reason, ctx);
    }

    /// Forgets requests whose answer ended and whose frames are all out.
    fn prune(&mut self) {
        let mux = &self.socket.mux;
        self.requests.retain(|_, r| match r {
            Active::Starting { .. } => true,
            Active::Open { key, .. } => mux.has(*key),
        });
    }

    /// Whether a new request `request_id` may start; answers `error` if not.
    fn admit(&mut self, request_id: &str, ctx: &mut Context<Self>) -> bool {
        self.prune();
        let refusal = if self.requests.contains_key(request_id) {
            Some("this requestId is in use on this socket")
        } else if self.requests.len() >= MAX_REQUESTS {
            Some("too many requests at once on this socket")
        } else {
            None
        };
        match refusal {
            Some(why) => {
                self.control(Request::new(request_id).error(why), ctx);
                false
            }
            None => {
                self.requests.insert(request_id.to_owned(), Active::Starting { aborted: false });
                true
            }
        }
    }

    fn on_frame(&mut self, text: &str, ctx: &mut Context<Self>) {
        let frame: ChatFrame = match serde_json::from_str(text) {
            Ok(frame) => frame,
            Err(e) => {
                // A frame of a request: that request fails; else the
                // client does not speak the protocol.
                let request_id = serde_json::from_str::<serde_json::Value>(text)
                    .ok()
                    .and_then(|v| v.get("requestId").and_then(|r| r.as_str()).map(str::to_owned));
                return match request_id {
                    Some(id) => self.fail(&id, &ApiError::bad_request(format!("malformed frame: {e}")), ctx),
                    None => self.close(close::POLICY, "not a WebSocketChatTransport frame", ctx),
                };
            }
        };
        match frame {
            ChatFrame::Send { request_id, id, messages, .. } if continuation::answer_of(&messages).is_some() => {
                self.continue_answer(request_id, id, messages, ctx)
            }
            ChatFrame::Send { request_id, id, messages, body, trigger } => {
                self.send(request_id, id, trigger, messages, body.unwrap_or_default(), ctx)
            }
            ChatFrame::Resume { request_id, id, last_sequence } => self.resume(request_id, id, last_sequence, ctx),
            ChatFrame::Abort { request_id } => self.abort(&request_id, ctx),
        }
    }

    fn send(
        &mut self,
        request_id: String,
        id: String,
        trigger: Trigger,
        messages: Vec<UiMessage>,
        extra: Extra,
        ctx: &mut Context<Self>,
    ) {
        let checked = checked_turn(&self.state.deps.settings.limits, &id, &messages, extra.model, extra.max_tokens);
        let message = match checked {
            Ok(message) => message,
            Err(e) => return self.control(Request::new(&request_id).error(&e.message), ctx),
        };
        if !self.admit(&request_id, ctx) {
            return;
        }
        let (state, project_id, token_thread) = (self.state.clone(), self.project_id, self.token_thread);
        let turn = async move {
            state.store.get_project(project_id).await?.ok_or_else(|| ApiError::not_found("project"))?;
            let title = title_of(&message.content);
            let thread = match token_thread {
                // A stream token's socket touches its own thread's chat only.
                Some(_) => chat_thread(&state, project_id, &id).await?.ok_or_else(|| ApiError::not_found("chat"))?,
                None => state.store.chat_thread_or_create(project_id, &id, Some(title)).await?,
            };
            token_opens(token_thread, thread.id)?;
            let subscriber = state.deps.capacity.admit_subscriber(thread.id)?;
            let started = ask_turn(&state, project_id, thread.id, trigger, message).await?;
            Ok::<_, ApiError>(Opening {
                thread: thread.id,
                subscriber,
                answer: started.assistant_message.id,
                from: end_cursor(&started.user_message),
                after: None,
                announce: false,
                prefix: None,
            })
        };
        ctx.spawn(
            detached(turn).into_actor(self).map(move |opened, act, ctx| act.opened(request_id, opened.map(Some), ctx)),
        );
    }

    /// A `send` whose last message is an answer of the chat: it continues
    /// that answer (see `continuation.rs`).
    fn continue_answer(&mut self, request_id: String, id: String, messages: Vec<UiMessage>, ctx: &mut Context<Self>) {
        if !self.admit(&request_id, ctx) {
            return;
        }
        let (state, project_id, token_thread) = (self.state.clone(), self.project_id, self.token_thread);
        let turn = async move {
            // (`on_frame` found it.)
            let answer = continuation::answer_of(&messages).ok_or_else(|| ApiError::bad_request("no answer"))?;
            let thread = continuation::chat_of(&state, project_id, &id, token_thread).await?;
            let subscriber = state.deps.capacity.admit_subscriber(thread.id)?;
            let continued = continuation::resolve(&state, project_id, &thread, answer).await?;
            Ok::<_, ApiError>(Opening {
                thread: thread.id,
                subscriber,
                answer: continued.answer,
                from: continued.from,
                after: None,
                announce: false,
                prefix: Some(continued.prefix),
            })
        };
        ctx.spawn(
            detached(turn).into_actor(self).map(move |opened, act, ctx| act.opened(request_id, opened.map(Some), ctx)),
        );
    }

    fn resume(&mut self, request_id: String, id: String, after: Option<u64>, ctx: &mut Context<Self>) {
        if !self.admit(&request_id, ctx) {
            return;
        }
        let (state, project_id, token_thread) = (self.state.clone(), self.project_id, self.token_thread);
        let find = async move {
            let Some((thread, running)) = running_answer(&state, project_id, &id, token_thread).await? else {
                return Ok(None);
            };
            let subscriber = state.deps.capacity.admit_subscriber(thread)?;
            Ok::<_, ApiError>(Some(Opening {
                thread,
                subscriber,
                answer: running.answer,
                from: running.question,
                after,
                announce: true,
                prefix: None,
            }))
        };
        ctx.spawn(detached(find).into_actor(self).map(move |found, act, ctx| act.opened(request_id, found, ctx)));
    }

    /// A request's answer was started or found (`None`: nothing runs).
    fn opened(&mut self, request_id: String, opened: Result<Option<Opening>, ApiError>, ctx: &mut Context<Self>) {
        let aborted = match self.requests.get(&request_id) {
            Some(Active::Starting { aborted }) => *aborted,
            _ => true,
        };
        let opening = match opened {
            Err(e) => return self.fail(&request_id, &e, ctx),
            Ok(None) => {
                self.requests.remove(&request_id);
                return self.control(Request::new(&request_id).no_active(), ctx);
            }
            Ok(Some(opening)) => opening,
        };
        if aborted {
            // Stopped before its first chunk: its answer stops too.
            self.requests.remove(&request_id);
            return self.cancel(opening.thread, opening.answer, ctx);
        }
        let key = self.next_key;
        self.next_key += 1;
        let request = Rc::new(Request::new(&request_id));
        let (tx, body) = pipe(STREAM_BUFFER);
        // A fresh pipe always has room for its first frame.
        if opening.announce {
            let _ = tx.try_send(ws_frame(WsOp::Text, &request.start()));
        }
        let continuation = opening.prefix.map(|prefix| {
            let mut first = bytes::BytesMut::new();
            for (seq, chunk) in prefix.iter().enumerate() {
                request.put_numbered(seq as u64, chunk, &mut first);
            }
            let _ = tx.try_send(first.freeze());
            Continuation::new(prefix.len() as u64)
        });
        self.socket.mux.add(key, body);
        let wire = ChatRequest { message_id: opening.answer, request, after: opening.after, continuation };
        let admission = Admission { connection: None, subscriber: opening.subscriber };
        start_session(
            &self.state,
            opening.thread,
            admission,
            Transport::Chat { tx, request: wire },
            Resume::At(opening.from),
        );
        self.requests.insert(request_id, Active::Open { key, thread: opening.thread, answer: opening.answer });
    }

    fn abort(&mut self, request_id: &str, ctx: &mut Context<Self>) {
        match self.requests.get_mut(request_id) {
            Some(Active::Starting { aborted }) => *aborted = true,
            Some(&mut Active::Open { key, thread, answer }) => {
                // Still streaming (its pipe is there): its answer may run.
                let live = self.socket.mux.has(key);
                self.socket.mux.remove(key);
                self.requests.remove(request_id);
                if live {
                    self.cancel(thread, answer, ctx);
                }
            }
            None => {}
        }
    }

    /// Cancels `answer` upstream if it is still the one running.
    fn cancel(&mut self, thread: Uuid, answer: Uuid, ctx: &mut Context<Self>) {
        let registry = self.state.registry.clone();
        let cancel = async move { ask(&registry, thread, || CancelAnswer { message_id: answer }).await };
        ctx.spawn(cancel.into_actor(self).map(move |res, _, _| match res {
            Ok(Ok(_)) => {
                tracing::info!(thread_id = %thread, message_id = %answer, "chat request aborted; answer cancelled")
            }
            Ok(Err(ThreadError::NotGenerating)) => {}
            Ok(Err(e)) | Err(e) => tracing::warn!(thread_id = %thread, error.message = %e, "abort could not cancel"),
        }));
    }
}

impl Actor for ChatSocket {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // (Its requests count as WebSocket subscribers, the socket not.)
        let every = self.state.deps.settings.streaming.heartbeat() / 2;
        muxed_socket::start(self, every, ctx);
    }

    fn stopping(&mut self, _: &mut Context<Self>) -> Running {
        muxed_socket::stopping(self);
        Running::Stop
    }
}

impl Muxed for ChatSocket {
    fn socket(&self) -> &MuxedSocket {
        &self.socket
    }

    fn socket_mut(&mut self) -> &mut MuxedSocket {
        &mut self.socket
    }

    fn whose(&self) -> String {
        format!("chat of project {}", self.project_id)
    }

    fn on_text(&mut self, text: &str, ctx: &mut Context<Self>) {
        self.on_frame(text, ctx);
    }

    fn on_binary(&mut self, ctx: &mut Context<Self>) {
        self.close(close::UNSUPPORTED, "send JSON text frames", ctx);
    }
}

impl StreamHandler<ClientItem> for ChatSocket {
    fn handle(&mut self, item: ClientItem, ctx: &mut Context<Self>) {
        muxed_socket::handle(self, item, ctx);
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
