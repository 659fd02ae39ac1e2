//! Request bodies, guarded before any handler sees them: a body larger
//! than its route allows is refused with 413 from its `Content-Length`
//! alone (nothing is read), or as soon as a chunked body passes the limit;
//! a body that does not arrive within `--body-timeout-ms` gets 408, so a
//! client dripping bytes holds nothing for long. The buffered body is then
//! handed on to the extractors.
//!
//! Each route says which limit it takes (see `http::routes`) and has a
//! guard of its own, also where its path has routes of other kinds: JSON
//! routes take `--max-body-bytes`, the others a small fixed allowance
//! (clients may send `{}`), and WebSocket upgrades are not touched (their
//! body is the socket).

use std::time::Duration;

use actix_web::{
    body::MessageBody,
    dev::{Payload, ServiceRequest, ServiceResponse},
    http::header,
    middleware::Next,
    HttpMessage,
};
use bytes::BytesMut;
use futures_util::StreamExt;

use crate::error::{ApiError, Code};

/// Largest body a route without a JSON body accepts.
pub const SMALL_BODY: usize = 1024;

/// What a route accepts as its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// Nothing of use; at most `SMALL_BODY` bytes are read and ignored.
    Empty,
    /// A JSON document of at most `--max-body-bytes`.
    Json,
    /// A WebSocket upgrade: the body is the socket, not read here.
    Upgrade,
}

fn too_large(limit: usize) -> actix_web::Error {
    ApiError::new(Code::PayloadTooLarge, format!("the body is larger than {limit} bytes")).into()
}

/// Reads the whole body within `timeout`, refusing it past `limit` bytes.
async fn buffer(req: &mut ServiceRequest, limit: usize, timeout: Duration) -> Result<(), actix_web::Error> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .map(|v| v.to_str().ok().and_then(|v| v.parse::<usize>().ok()))
        .map(|n| n.ok_or_else(|| ApiError::bad_request("invalid Content-Length")))
        .transpose()?;
    let chunked = req.headers().contains_key(header::TRANSFER_ENCODING);
    match declared {
        Some(n) if n > limit => return Err(too_large(limit)),
        None if !chunked => return Ok(()),
        Some(0) => return Ok(()),
        _ => {}
    }
    let mut payload = req.take_payload();
    let mut body = BytesMut::with_capacity(declared.unwrap_or(0));
    let read = async {
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|e| ApiError::bad_request(format!("unreadable body: {e}")))?;
            if body.len() + chunk.len() > limit {
                return Err(too_large(limit));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(())
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(result) => result?,
        Err(_) => {
            tracing::debug!(path = req.path(), "request body too slow");
            return Err(ApiError::new(Code::RequestTimeout, "the request body did not arrive in time").into());
        }
    }
    req.set_payload(Payload::from(body.freeze()));
    Ok(())
}

async fn guard(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
    kind: BodyKind,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    // Without the state the guard cannot check: refuse (fail closed).
    let state = super::auth::state_of(&req)?;
    let settings = &state.deps.settings;
    let timeout = Duration::from_millis(settings.limits.body_timeout_ms);
    match kind {
        BodyKind::Json => buffer(&mut req, settings.http.max_body_bytes, timeout).await?,
        BodyKind::Empty => buffer(&mut req, SMALL_BODY, timeout).await?,
        BodyKind::Upgrade => {}
    }
    next.call(req).await
}

/// The guard of routes that take a JSON body.
pub async fn json(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    guard(req, next, BodyKind::Json).await
}

/// The guard of routes that take no body.
pub async fn empty(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    guard(req, next, BodyKind::Empty).await
}
