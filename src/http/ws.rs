//! `GET /v1/.../ws`: upgrades to a WebSocket served by a `SessionActor`.
//! actix-ws does the handshake and parses the client's frames; outgoing
//! frames are already encoded (`domain::frame`) and go through the same
//! small bounded pipe as SSE (`delivery::pipe`), so the broadcast frame is
//! shared, not re-encoded per subscriber, and memory per subscriber stays
//! bounded (the deprecated actix-web-actors context queued without bound).

use actix_web::{
    body::{BodyStream, BoxBody},
    web, HttpRequest, HttpResponse,
};
use uuid::Uuid;

use super::{
    events::{admit, resume_cursor, start_session, ResumeQuery},
    threads::find,
    AppState,
};
use crate::{
    actors::session::Transport,
    delivery::pipe::pipe,
    error::ApiError,
    ws_guard::{Incoming, Reader},
};

/// Largest client frame, and largest message after joining continuations.
pub(super) const MAX_CLIENT_FRAME: usize = 256 * 1024;

#[utoipa::path(get, path = "/v1/projects/{pid}/threads/{tid}/ws", tag = "streams", operation_id = "websocket",
    params(("pid" = Uuid, Path, description = "Project id"), ("tid" = Uuid, Path, description = "Thread id"), ResumeQuery, ("token" = Option<String>, Query, description = "A stream token of this thread")),
    responses((status = 101, description = "Switched to WebSocket: the events of /events as JSON text frames; \
        the client sends `send` and `cancel` frames")))]
#[tracing::instrument(skip_all, fields(project_id = %path.0, thread_id = %path.1))]
pub async fn subscribe(
    state: web::Data<AppState>,
    path: web::Path<(Uuid, Uuid)>,
    query: web::Query<ResumeQuery>,
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, actix_web::Error> {
    check_origin(&state, &req)?;
    let thread = find(&state, path.0, path.1).await?;
    let admission = admit(&state, &req, thread.id)?;
    let from = resume_cursor(&req, &query);
    let (response, incoming) = handshake(&state, &req, body, MAX_CLIENT_FRAME)?;
    let (tx, outgoing) = pipe(super::events::STREAM_BUFFER);
    let response = response.set_body(BoxBody::new(BodyStream::new(outgoing)));
    start_session(&state, thread.id, admission, Transport::Ws { tx, incoming: Some(incoming) }, from);
    Ok(response)
}

/// Refuses (403) a WebSocket upgrade from a page of an origin that is not
/// allowed (`--allowed-origins`) and not this service's own.
pub(super) fn check_origin(state: &AppState, req: &HttpRequest) -> Result<(), ApiError> {
    if let Some(origin) = req.headers().get(actix_web::http::header::ORIGIN) {
        let allowed = &state.deps.settings.http.allowed_origins;
        let origin = origin.to_str().unwrap_or_default();
        if !allowed.iter().any(|a| a == "*" || a == origin) && !is_own_origin(state, req, origin) {
            return Err(ApiError::new(crate::error::Code::Forbidden, "this origin may not open WebSockets here"));
        }
    }
    Ok(())
}

/// The upgrade: actix-http answers the handshake, and the client's frames
/// are read by a `ws_guard::Reader` (messages of at most `max_message`
/// bytes, unfinished ones paid from the node's budget). The answer's body
/// is the caller's to set: its pipe.
pub(super) fn handshake(
    state: &AppState,
    req: &HttpRequest,
    body: web::Payload,
    max_message: usize,
) -> Result<(HttpResponse, Incoming), actix_web::Error> {
    let mut response = actix_http::ws::handshake(req.head())
        .map_err(|e| ApiError::bad_request(format!("not a WebSocket upgrade: {e}")))?;
    let response: HttpResponse = response.message_body(BoxBody::new(()))?.into();
    Ok((response, Reader::new(body, max_message, state.deps.capacity.ws_budget())))
}

/// Whether `origin` is this service's own (its scheme and the request's
/// `Host`): the page it serves may open its WebSockets without being
/// listed in `--allowed-origins`. A page of another site cannot pass: its
/// `Origin` names that site, and a site that rebinds its name to this
/// address is refused in open mode before this (`auth::open_mode_host`),
/// and has no key or stream token otherwise.
fn is_own_origin(state: &AppState, req: &HttpRequest, origin: &str) -> bool {
    // The listener speaks HTTPS exactly when TLS is configured (the
    // HTTPS listener, `crate::serve`, gives the app no secure `AppConfig`).
    let scheme = if state.deps.settings.http.tls.tls_cert.is_some() { "https" } else { "http" };
    let host = req.headers().get(actix_web::http::header::HOST).and_then(|h| h.to_str().ok());
    host.is_some_and(|host| origin.eq_ignore_ascii_case(&format!("{scheme}://{host}")))
}
