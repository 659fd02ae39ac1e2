//! The request span of every HTTP request. It logs the path, never the
//! query string: a stream token travels as `?token=` and must not reach
//! the logs (nor does the `Authorization` header, which is never recorded).

use actix_web::{
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    Error,
};
use tracing::Span;
use tracing_actix_web::{DefaultRootSpanBuilder, RootSpanBuilder};

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
        DefaultRootSpanBuilder::on_request_end(span, outcome);
    }
}
