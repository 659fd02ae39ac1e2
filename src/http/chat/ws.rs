//! `GET /v1/projects/{pid}/chat/ws`: upgrades to the AI SDK's
//! `WebSocketChatTransport`, served by a `ChatSocket` (`socket.rs`). The
//! handshake says who calls, as on every project route (a key, the admin
//! token, or a stream token, which then opens its own thread's chat only);
//! the `headers` the transport puts in each frame are not read. The socket
//! holds one of its key's connections; each request, one place among its
//! thread's subscribers.

use actix::Actor;
use actix_web::{
    body::{BodyStream, BoxBody},
    web, HttpRequest, HttpResponse,
};
use uuid::Uuid;

use super::socket::ChatSocket;
use crate::{
    delivery::mux::mux,
    error::ApiError,
    http::{
        auth::credential_of_request,
        events::STREAM_BUFFER,
        ws::{check_origin, handshake},
        AppState,
    },
};

#[utoipa::path(get, path = "/v1/projects/{pid}/chat/ws", tag = "chat", operation_id = "websocket",
    params(("pid" = Uuid, Path, description = "Project id"),
        ("token" = Option<String>, Query, description = "A stream token: the socket then opens that thread's chat only")),
    responses((status = 101, description = "Switched to WebSocket: the AI SDK's WebSocketChatTransport protocol \
        (client frames `send`, `resume`, `abort`; server frames `start`, `chunk`, `end`, `error`, `no-active`)")))]
#[tracing::instrument(skip_all, fields(project_id = %path))]
pub async fn socket(
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, actix_web::Error> {
    check_origin(&state, &req)?;
    let project_id = *path;
    let token_thread = super::token_thread(&req);
    match token_thread {
        Some(thread) => {
            if state.store.get_thread(project_id, thread).await.map_err(ApiError::from)?.is_none() {
                return Err(super::not_its_thread().into());
            }
        }
        None => {
            let project = state.store.get_project(project_id).await.map_err(ApiError::from)?;
            project.ok_or_else(|| ApiError::not_found("project"))?;
        }
    }
    let connection = state.deps.capacity.admit_connection(credential_of_request(&req)).map_err(ApiError::from)?;
    // The transport sends the chat's whole history in each `send`: a
    // frame may be as large as a JSON body.
    let max_message = state.deps.settings.http.max_body_bytes.max(64 * 1024);
    let (response, incoming) = handshake(&state, &req, body, max_message)?;
    let (mux, outgoing) = mux(STREAM_BUFFER);
    let response = response.set_body(BoxBody::new(BodyStream::new(outgoing)));
    ChatSocket::new(state.clone(), project_id, token_thread, mux, incoming, connection).start();
    Ok(response)
}
