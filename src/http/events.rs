//! `GET /v1/.../events` (SSE) and the seed-compatible
//! `POST /projects/{pid}/threads/{tid}/query/stream`. Each response body
//! is fed by a `SessionActor` through a small bounded pipe (`delivery::pipe`).

use std::convert::Infallible;

use actix::Actor;
use actix_web::{http::header, web, HttpRequest, HttpResponse};
use bytes::Bytes;
use futures_util::Stream;
use serde::Deserialize;
use uuid::Uuid;

use super::{
    auth::credential_of_request,
    messages::{start, NewMessage},
    threads::find,
    AppState,
};
use crate::{
    actors::session::{Admission, SessionActor, SessionLimits, Transport},
    delivery::pipe::pipe,
    domain::{cursor::Resume, event::end_cursor},
    error::ApiError,
};

/// Frames buffered per SSE or WebSocket response. Small on purpose: past
/// it the relay skips the subscriber, which later catches up from its
/// cursor.
pub const STREAM_BUFFER: usize = 16;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ResumeQuery {
    /// Resume after this cursor (the `id` of the last event seen).
    pub cursor: Option<String>,
}

/// The resume position of a request: `Last-Event-ID` (what a browser
/// sends on reconnect) wins over `?cursor=`. A cursor that is sent but is
/// not one (not `<id>:<block>:<offset>`, or a header that is not even
/// ASCII) is `Malformed`: the thread answers `cursor_invalid` and starts
/// the subscriber fresh, as the contract says.
pub fn resume_cursor(req: &HttpRequest, query: &ResumeQuery) -> Resume {
    let header = req.headers().get("Last-Event-ID").filter(|v| !v.as_bytes().trim_ascii().is_empty());
    let raw = match header {
        Some(value) => match value.to_str() {
            Ok(text) => text,
            Err(_) => return Resume::Malformed,
        },
        None => match query.cursor.as_deref().filter(|s| !s.is_empty()) {
            Some(text) => text,
            None => return Resume::Fresh,
        },
    };
    raw.parse().map_or(Resume::Malformed, Resume::At)
}

/// Admits one more stream of `thread_id`: a slot of the caller's
/// connections (`--max-connections-per-key`) and a place among the
/// thread's subscribers (`--max-subscribers-per-thread`); 429 with
/// `Retry-After` past either.
pub fn admit(state: &AppState, req: &HttpRequest, thread_id: Uuid) -> Result<Admission, ApiError> {
    let capacity = &state.deps.capacity;
    let connection = capacity.admit_connection(credential_of_request(req))?;
    let subscriber = capacity.admit_subscriber(thread_id)?;
    Ok(Admission { connection, subscriber })
}

/// Starts the session that feeds `transport` with the thread's events
/// from `from`, holding its admission until it stops; its address.
pub fn start_session(
    state: &AppState,
    thread_id: Uuid,
    admission: Admission,
    transport: Transport,
    from: Resume,
) -> actix::Addr<SessionActor> {
    let settings = &state.deps.settings;
    SessionActor::new(
        thread_id,
        state.registry.clone(),
        transport,
        state.deps.metrics.clone(),
        SessionLimits::from_settings(settings),
        from,
    )
    .holding(admission)
    .start()
}

/// An SSE answer. HTTP/1.0 has no chunked encoding: its body is
/// delimited by the connection's close instead.
pub(super) fn sse_response<S>(req: &HttpRequest, body: S) -> HttpResponse
where
    S: Stream<Item = Result<Bytes, Infallible>> + 'static,
{
    let mut response = HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/event-stream"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .insert_header((header::CONTENT_ENCODING, "identity"))
        .streaming(body);
    if req.version() == actix_web::http::Version::HTTP_10 {
        response.head_mut().no_chunking(true);
        response.head_mut().set_connection_type(actix_web::http::ConnectionType::Close);
    }
    response
}

/// Whether `req` is a HEAD, which a stream route answers with its GET's
/// headers and nothing else: no session, no place among the thread's
/// subscribers, no slot of the key's streams. (actix-http writes no body
/// for a HEAD, but it would still drain a live body until it ended.)
pub(super) fn is_head(req: &HttpRequest) -> bool {
    req.method() == actix_web::http::Method::HEAD
}

/// A stream's headers with an empty body: the answer to its HEAD.
pub(super) fn sse_head(req: &HttpRequest) -> HttpResponse {
    sse_response(req, futures_util::stream::empty())
}

#[utoipa::path(get, path = "/v1/projects/{pid}/threads/{tid}/events", tag = "streams", operation_id = "events",
    params(("pid" = Uuid, Path, description = "Project id"), ("tid" = Uuid, Path, description = "Thread id"), ResumeQuery, ("Last-Event-ID" = Option<String>, Header, description = "Resume after this cursor (what browsers send on reconnect); wins over `cursor`"), ("token" = Option<String>, Query, description = "A stream token of this thread, for clients that cannot send headers")),
    responses((status = 200, description = "Server-sent events: `ready` first, then the thread's events, each with its cursor as `id`",
        content_type = "text/event-stream", body = String)))]
#[tracing::instrument(skip_all, fields(project_id = %path.0, thread_id = %path.1))]
pub async fn subscribe(
    state: web::Data<AppState>,
    path: web::Path<(Uuid, Uuid)>,
    query: web::Query<ResumeQuery>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let thread = find(&state, path.0, path.1).await?;
    if is_head(&req) {
        return Ok(sse_head(&req));
    }
    let admission = admit(&state, &req, thread.id)?;
    let (tx, rx) = pipe(STREAM_BUFFER);
    // A fresh pipe always has room for its first frame.
    let _ = tx.try_send(crate::domain::frame::sse_retry(state.deps.settings.streaming.sse_retry_ms));
    start_session(&state, thread.id, admission, Transport::Sse(tx), resume_cursor(&req, &query));
    Ok(sse_response(&req, rx))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SeedQuery {
    query: Option<String>,
    content: Option<String>,
    model: Option<String>,
    #[serde(default, deserialize_with = "crate::domain::input::whole_u32")]
    max_tokens: Option<u32>,
}

/// The original service's direct path: starts a generation like POST
/// messages and streams that one answer back in the seed's wire format.
#[utoipa::path(post, path = "/projects/{pid}/threads/{tid}/query/stream", tag = "streams", params(("pid" = Uuid, Path, description = "Project id"), ("tid" = Uuid, Path, description = "Thread id")),
    request_body = SeedQuery,
    responses((status = 200, description = "The answer to this one question, in the original service's wire format",
        content_type = "text/event-stream", body = String)))]
#[tracing::instrument(skip_all, fields(project_id = %path.0, thread_id = %path.1))]
pub async fn seed_stream(
    state: web::Data<AppState>,
    path: web::Path<(Uuid, Uuid)>,
    body: web::Json<SeedQuery>,
    req: HttpRequest,
) -> Result<HttpResponse, actix_web::Error> {
    let SeedQuery { query, content, model, max_tokens } = body.into_inner();
    let content = query.or(content).ok_or_else(|| ApiError::bad_request("`query` is required"))?;
    let message = NewMessage { content, model, max_tokens, tools: Vec::new() };
    message.validate(&state.deps.settings.limits)?;
    // Admitted before the generation starts: a refused stream starts nothing.
    let admission = admit(&state, &req, path.1)?;
    let started = start(&state, path.0, path.1, message).await?;
    let (tx, rx) = pipe(STREAM_BUFFER);
    // Resuming right after the user message replays this answer from its
    // first byte, then follows it live.
    let transport = Transport::Seed { tx, message_id: started.assistant_message.id };
    start_session(&state, path.1, admission, transport, Resume::At(end_cursor(&started.user_message)));
    Ok(sse_response(&req, rx))
}
