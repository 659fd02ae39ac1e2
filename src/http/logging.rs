//! The request span of every HTTP request, and the line that tells an
//! answer that failed. The span logs the path, never the query string: a
//! stream token travels as `?token=` and must not reach the logs (nor
//! does the `Authorization` header, which is never recorded).
//!
//! Who is at fault sets the line's level (see `telemetry`): a 4xx is the
//! client's mistake and a 503 a refusal, both WARN through the bound on
//! what peers can make the service log; any other 5xx is the service's
//! fault, at ERROR.

use actix_web::{
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    http::StatusCode,
    Error,
};
use tracing::Span;
use tracing_actix_web::{DefaultRootSpanBuilder, RootSpanBuilder};

use crate::telemetry::peer::{self, PeerFault};

pub struct RedactedRootSpan;

impl RootSpanBuilder for RedactedRootSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        tracing::info_span!(
            "http_request",
            http.method = %request.method(),
            http.route = request.match_pattern().as_deref().unwrap_or("unmatched"),
            http.path = %request.path(),
            otel.kind = "server",
            request_id = %uuid::Uuid::now_v7(),
            http.status_code = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
            exception.message = tracing::field::Empty,
            exception.details = tracing::field::Empty,
        )
    }

    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, Error>) {
        DefaultRootSpanBuilder::on_request_end(span.clone(), outcome);
        let (status, error) = match outcome {
            Ok(response) => (response.status(), response.response().error().map(ToString::to_string)),
            Err(error) => (error.as_response_error().status_code(), Some(error.to_string())),
        };
        if !status.is_client_error() && !status.is_server_error() {
            return;
        }
        let error = error.unwrap_or_else(|| status.canonical_reason().unwrap_or_default().to_owned());
        let detail = format_args!("{} {error}", status.as_u16());
        let _in_request = span.enter();
        match status {
            s if s.is_client_error() => peer::log(PeerFault::ClientError, &detail),
            StatusCode::SERVICE_UNAVAILABLE => peer::log(PeerFault::Refused, &detail),
            _ => tracing::error!(http.status_code = status.as_u16(), error.message = %error, "request failed"),
        }
    }
}
