//! The bridge between hyper's HTTP/2 server and the actix-web app: each
//! request hyper accepts becomes an `actix_http::Request` (its body a
//! streamed payload) handed to the app, and the app's response goes back
//! as a hyper body that polls the actix body as hyper asks for more, so
//! the body is read no faster than HTTP/2 sends it.
//!
//! actix-http speaks the `http` 0.2 crate and hyper `http` 1.x: methods,
//! URIs and headers cross by their bytes.
//!
//! The bridge also counts the requests being answered (`Open`): a
//! connection with none for a while is idle (see `super::h2`).

use std::{
    cell::Cell,
    convert::Infallible,
    io,
    net::SocketAddr,
    pin::Pin,
    rc::Rc,
    task::{ready, Context, Poll},
    time::Duration,
};

use actix_http::{
    body::{BodySize, BoxBody, MessageBody},
    error::PayloadError,
    header::{HeaderName, HeaderValue},
    BoxedPayloadStream, Method, Payload, Request, Response, StatusCode, Uri, Version,
};
use actix_service::Service as _;
use bytes::Bytes;
use futures_util::{future::LocalBoxFuture, Stream};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::{sync::Notify, time::Instant};

use super::App;

/// Serves one HTTP/2 connection's requests with the app.
pub(super) struct Bridge {
    pub app: App,
    /// The client's address (`HttpRequest::peer_addr`).
    pub peer: Option<SocketAddr>,
    pub open: Rc<Open>,
}

impl hyper::service::Service<hyper::Request<Incoming>> for Bridge {
    type Response = hyper::Response<ResponseBody>;
    type Error = Infallible;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Infallible>>;

    fn call(&self, req: hyper::Request<Incoming>) -> Self::Future {
        let answering = Answering::new(&self.open);
        let head_only = req.method() == hyper::Method::HEAD;
        let answer: LocalBoxFuture<'static, Result<Response<BoxBody>, Response<BoxBody>>> =
            match to_actix(req, self.peer) {
                Ok(req) => self.app.call(req),
                Err(e) => {
                    tracing::debug!(error.message = %e, "an HTTP/2 request actix-http cannot carry");
                    Box::pin(std::future::ready(Ok(Response::new(StatusCode::BAD_REQUEST))))
                }
            };
        Box::pin(async move {
            let response = answer.await.unwrap_or_else(|error_response| error_response);
            Ok(to_hyper(response, head_only, answering))
        })
    }
}

/// hyper's request as actix-http's.
fn to_actix(req: hyper::Request<Incoming>, peer: Option<SocketAddr>) -> Result<Request, String> {
    let (parts, body) = req.into_parts();
    // A request that ended with its headers (every GET) has no payload to
    // allocate.
    let payload = if body.is_end_stream() {
        Payload::None
    } else {
        Payload::from(Box::pin(RequestBody(body)) as BoxedPayloadStream)
    };
    let mut req = Request::with_payload(payload);
    let head = req.head_mut();
    head.method = Method::from_bytes(parts.method.as_str().as_bytes()).map_err(|e| e.to_string())?;
    // (HTTP/2 requests carry scheme and authority: the URI is absolute.)
    head.uri = Uri::try_from(parts.uri.to_string()).map_err(|e| e.to_string())?;
    head.version = Version::HTTP_2;
    head.peer_addr = peer;
    head.headers.reserve(parts.headers.len());
    for (name, value) in &parts.headers {
        let name = HeaderName::from_bytes(name.as_str().as_bytes()).map_err(|e| e.to_string())?;
        let value = HeaderValue::from_bytes(value.as_bytes()).map_err(|e| e.to_string())?;
        head.headers.append(name, value);
    }
    Ok(req)
}

/// actix-http's response as hyper's. Connection-specific headers are
/// dropped (HTTP/2 forbids them); the length is the body's own; a HEAD
/// answer keeps the length its body would have had, without the body.
fn to_hyper(response: Response<BoxBody>, head_only: bool, answering: Answering) -> hyper::Response<ResponseBody> {
    use actix_http::header;
    let (response, body) = response.into_parts();
    let head = response.head();
    let mut out = hyper::Response::new(());
    // unwrap: an actix status is a valid status code (100-999).
    *out.status_mut() = hyper::StatusCode::from_u16(head.status.as_u16()).unwrap();
    let no_body = head.status.is_informational()
        || head.status == StatusCode::NO_CONTENT
        || head.status == StatusCode::NOT_MODIFIED;
    let size = if no_body { BodySize::None } else { body.size() };
    let headers = out.headers_mut();
    headers.reserve(head.headers.len());
    let sized = matches!(size, BodySize::Sized(_));
    for (name, value) in head.headers.iter() {
        let connection_specific = [header::CONNECTION, header::TRANSFER_ENCODING, header::UPGRADE].contains(name)
            || name == "keep-alive"
            || name == "proxy-connection";
        if connection_specific || (*name == header::CONTENT_LENGTH && (sized || no_body)) {
            continue;
        }
        let name = hyper::header::HeaderName::from_bytes(name.as_str().as_bytes());
        let value = hyper::header::HeaderValue::from_bytes(value.as_bytes());
        if let (Ok(name), Ok(value)) = (name, value) {
            headers.append(name, value);
        }
    }
    if let BodySize::Sized(len) = size {
        headers.insert(hyper::header::CONTENT_LENGTH, len.into());
    }
    let body = if head_only || no_body { BoxBody::new(()) } else { body };
    out.map(|()| ResponseBody::new(body, answering))
}

/// A request's body, as actix-http's payload stream.
struct RequestBody(Incoming);

impl Stream for RequestBody {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            match ready!(Pin::new(&mut self.0).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) if !data.is_empty() => return Poll::Ready(Some(Ok(data))),
                    // Empty DATA frames, and trailers, which no route reads.
                    _ => continue,
                },
                Some(Err(e)) => return Poll::Ready(Some(Err(PayloadError::Incomplete(Some(io::Error::other(e)))))),
                None => return Poll::Ready(None),
            }
        }
    }
}

/// A response's body, polled by hyper only while its stream may queue
/// more (see `--h2-send-buffer`).
pub(super) struct ResponseBody {
    body: BoxBody,
    /// Bytes still to come, for a body of known length: its last chunk
    /// then carries END_STREAM instead of an empty frame after it.
    left: Option<u64>,
    _answering: Answering,
}

impl ResponseBody {
    fn new(body: BoxBody, answering: Answering) -> ResponseBody {
        let left = match body.size() {
            BodySize::Sized(len) => Some(len),
            BodySize::None => Some(0),
            BodySize::Stream => None,
        };
        ResponseBody { body, left, _answering: answering }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        loop {
            match ready!(Pin::new(&mut this.body).poll_next(cx)) {
                Some(Ok(chunk)) if chunk.is_empty() => continue,
                Some(Ok(chunk)) => {
                    if let Some(left) = &mut this.left {
                        *left = left.saturating_sub(chunk.len() as u64);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(chunk))));
                }
                Some(Err(e)) => {
                    // (actix's body errors are not `Send`: only the message crosses.)
                    tracing::warn!(error.message = %e, "a response body failed; its HTTP/2 stream is reset");
                    return Poll::Ready(Some(Err(e.to_string().into())));
                }
                None => return Poll::Ready(None),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.left == Some(0)
    }

    fn size_hint(&self) -> SizeHint {
        self.left.map(SizeHint::with_exact).unwrap_or_default()
    }
}

/// How many requests of one connection are being answered, and since
/// when none is.
pub(super) struct Open {
    count: Cell<usize>,
    idle_since: Cell<Instant>,
    /// Told when the count leaves or reaches zero.
    changed: Notify,
}

impl Open {
    pub fn new() -> Open {
        Open { count: Cell::new(0), idle_since: Cell::new(Instant::now()), changed: Notify::new() }
    }

    /// Resolves once no request has been answered for `limit`.
    pub async fn idle_for(&self, limit: Duration) {
        loop {
            if self.count.get() == 0 {
                tokio::select! {
                    () = tokio::time::sleep_until(self.idle_since.get() + limit) => return,
                    () = self.changed.notified() => {}
                }
            } else {
                self.changed.notified().await;
            }
        }
    }
}

/// One request being answered: from hyper's call until its response
/// body is done or dropped (the stream ended or was reset).
struct Answering(Rc<Open>);

impl Answering {
    fn new(open: &Rc<Open>) -> Answering {
        let count = open.count.get() + 1;
        open.count.set(count);
        if count == 1 {
            open.changed.notify_one();
        }
        Answering(open.clone())
    }
}

impl Drop for Answering {
    fn drop(&mut self) {
        let count = self.0.count.get() - 1;
        self.0.count.set(count);
        if count == 0 {
            self.0.idle_since.set(Instant::now());
            self.0.changed.notify_one();
        }
    }
}
