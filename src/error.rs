//! One table of API error codes (name ↔ HTTP status) and `ApiError`, which
//! writes every non-2xx answer as `{"error": {"code", "message"}}`.
//!
//! Layers keep their own error enums (`store::StoreError`,
//! `actors::ThreadError`); each converts into an `ApiError` here, so the
//! mapping to the contract lives in one place. Details of unexpected
//! failures go to the log, never into a body.

use actix_web::{
    body::BoxBody,
    http::{header, StatusCode},
    HttpResponse, ResponseError,
};
use serde::Serialize;

/// Defines `Code` from one table (variant, its name in the contract, its
/// HTTP status), with `Code::ALL` built from the same table, so no code
/// can be missing from the API description.
macro_rules! codes {
    ($($variant:ident = $name:literal, $status:ident;)+) => {
        /// The contract's error codes and their HTTP statuses.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Code {
            $($variant,)+
        }

        impl Code {
            /// Every code, for the API description.
            pub const ALL: &'static [Code] = &[$(Code::$variant,)+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Code::$variant => $name,)+
                }
            }

            pub fn status(self) -> StatusCode {
                match self {
                    $(Code::$variant => StatusCode::$status,)+
                }
            }
        }
    };
}

codes! {
    BadRequest = "bad_request", BAD_REQUEST;
    Unauthorized = "unauthorized", UNAUTHORIZED;
    Forbidden = "forbidden", FORBIDDEN;
    NotFound = "not_found", NOT_FOUND;
    MethodNotAllowed = "method_not_allowed", METHOD_NOT_ALLOWED;
    ThreadBusy = "thread_busy", CONFLICT;
    NotGenerating = "not_generating", CONFLICT;
    RequestTimeout = "request_timeout", REQUEST_TIMEOUT;
    PayloadTooLarge = "payload_too_large", PAYLOAD_TOO_LARGE;
    UnsupportedMediaType = "unsupported_media_type", UNSUPPORTED_MEDIA_TYPE;
    RateLimited = "rate_limited", TOO_MANY_REQUESTS;
    UpstreamError = "upstream_error", BAD_GATEWAY;
    Unavailable = "unavailable", SERVICE_UNAVAILABLE;
    Internal = "internal", INTERNAL_SERVER_ERROR;
}

impl Code {
    /// The code an HTTP status stands for, for answers that actix wrote
    /// itself (see `http::errors`).
    pub fn for_status(status: StatusCode) -> Code {
        match status.as_u16() {
            400 | 411 | 414 | 431 => Code::BadRequest,
            408 => Code::RequestTimeout,
            401 => Code::Unauthorized,
            403 => Code::Forbidden,
            404 => Code::NotFound,
            405 => Code::MethodNotAllowed,
            413 => Code::PayloadTooLarge,
            415 => Code::UnsupportedMediaType,
            429 => Code::RateLimited,
            502 | 504 => Code::UpstreamError,
            503 => Code::Unavailable,
            _ => Code::Internal,
        }
    }
}

/// An error answer of the HTTP contract.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: {message}", code.as_str())]
pub struct ApiError {
    pub code: Code,
    pub message: String,
    /// Seconds after which a retry may succeed (`Retry-After`).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        ApiError { code, message: message.into(), retry_after: None }
    }
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(Code::BadRequest, message)
    }
    pub fn not_found(what: &str) -> Self {
        Self::new(Code::NotFound, format!("{what} not found"))
    }
    pub fn unavailable() -> Self {
        Self::new(Code::Unavailable, "the service is temporarily unavailable; retry shortly")
    }
    /// Logs the cause and answers an opaque 500.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error.message = %cause, "internal error");
        Self::new(Code::Internal, "internal error")
    }

    /// The JSON body of the contract, already encoded.
    pub fn body(&self) -> String {
        #[derive(Serialize)]
        struct Inner<'a> {
            code: &'a str,
            message: &'a str,
        }
        #[derive(Serialize)]
        struct Outer<'a> {
            error: Inner<'a>,
        }
        let outer = Outer { error: Inner { code: self.code.as_str(), message: &self.message } };
        // unwrap: serializing two &str fields cannot fail.
        serde_json::to_string(&outer).unwrap()
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.code.status()
    }

    fn error_response(&self) -> HttpResponse<BoxBody> {
        let mut response = HttpResponse::build(self.status_code());
        response.insert_header((header::CONTENT_TYPE, "application/json"));
        if let Some(secs) = self.retry_after {
            response.insert_header((header::RETRY_AFTER, secs));
        }
        response.body(self.body())
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        if e.is_unavailable() {
            tracing::warn!(error.message = %e, "database unavailable");
            ApiError::unavailable()
        } else {
            ApiError::internal(&e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Code;

    #[test]
    fn every_code_has_its_own_snake_case_name_and_an_error_status() {
        let mut names: Vec<&str> = Code::ALL.iter().map(|c| c.as_str()).collect();
        for (code, name) in Code::ALL.iter().zip(&names) {
            assert!(name.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{name}");
            assert!(code.status().is_client_error() || code.status().is_server_error(), "{name}");
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Code::ALL.len(), "names repeat");
    }
}
