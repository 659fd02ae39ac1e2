//! `ApiError`, which writes every non-2xx answer as
//! `{"error": {"code", "message"}}` (the codes and their statuses are one
//! table, `domain::codes::Code`).
//!
//! Layers keep their own error enums (`store::StoreError`,
//! `actors::ThreadError`, `capacity::Refusal`, `persistence::WriteError`,
//! `domain::input::InputError`); each converts into an `ApiError` here and
//! nowhere else, so the mapping to the contract lives in one place.
//! Details of unexpected failures go to the log, never into a body.

use actix_web::{
    body::BoxBody,
    http::{header, StatusCode},
    HttpResponse, ResponseError,
};
use serde::Serialize;

pub use crate::domain::codes::Code;

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
        // expect: every status of the code table is a valid HTTP status.
        StatusCode::from_u16(self.code.status()).expect("a valid status")
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

impl From<crate::actors::ThreadError> for ApiError {
    fn from(e: crate::actors::ThreadError) -> Self {
        match e {
            crate::actors::ThreadError::Refused(refusal) => refusal.into(),
            e => ApiError::new(e.code(), e.to_string()),
        }
    }
}

impl From<crate::capacity::Refusal> for ApiError {
    fn from(r: crate::capacity::Refusal) -> Self {
        ApiError::new(r.code(), r.to_string()).retry_after(r.retry_after())
    }
}

impl From<crate::actors::persistence::WriteError> for ApiError {
    fn from(e: crate::actors::persistence::WriteError) -> Self {
        use crate::actors::persistence::WriteError;
        match e {
            WriteError::Unavailable => ApiError::unavailable(),
            WriteError::Rejected(msg) => ApiError::internal(&msg),
            WriteError::Fenced => ApiError::new(Code::ThreadBusy, "another node runs this thread's answer now"),
        }
    }
}

impl From<crate::domain::input::InputError> for ApiError {
    fn from(e: crate::domain::input::InputError) -> Self {
        ApiError::new(e.code, e.message)
    }
}
