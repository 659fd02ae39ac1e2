//! Per-project rate of new messages: a keyed GCRA limiter (the `governor`
//! crate) answering 429 with `Retry-After` when a project posts faster
//! than `--posts-per-minute`.

use std::num::NonZeroU32;

use actix_web::{http::header, HttpResponse, ResponseError};
use governor::{clock::Clock, DefaultKeyedRateLimiter, Quota, RateLimiter};
use uuid::Uuid;

use crate::error::{ApiError, Code};

pub struct PostLimiter {
    limiter: Option<DefaultKeyedRateLimiter<Uuid>>,
}

/// 429 with the seconds to wait.
#[derive(Debug)]
pub struct RateLimited {
    retry_after_secs: u64,
}

impl std::fmt::Display for RateLimited {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "too many new messages for this project; retry in {} s", self.retry_after_secs)
    }
}

impl ResponseError for RateLimited {
    fn status_code(&self) -> actix_web::http::StatusCode {
        Code::RateLimited.status()
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = ApiError::new(Code::RateLimited, self.to_string()).error_response();
        response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from(self.retry_after_secs));
        response
    }
}

impl PostLimiter {
    pub fn new(per_minute: u32) -> PostLimiter {
        let limiter = NonZeroU32::new(per_minute).map(|n| RateLimiter::keyed(Quota::per_minute(n)));
        PostLimiter { limiter }
    }

    /// Takes one message from the project's allowance.
    pub fn check(&self, project_id: Uuid) -> Result<(), RateLimited> {
        let Some(limiter) = &self.limiter else { return Ok(()) };
        limiter.check_key(&project_id).map_err(|not_until| {
            let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
            RateLimited { retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64 }
        })
    }
}
