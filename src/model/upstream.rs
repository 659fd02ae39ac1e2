//! What the HTTP providers share: sending a request with retries before
//! the answer starts (exponential backoff with jitter, honouring
//! `retry-after`), reading an upstream's error message, turning a response
//! body into SSE events guarded against stalls, and `stream_answer`, which
//! drives a whole answer given a provider's `Protocol`.
//!
//! The SSE wire format itself is parsed by the `eventsource-stream` crate.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use eventsource_stream::{Event as SseEvent, EventStreamError, Eventsource};
use futures_util::{Stream, StreamExt};
use reqwest::{header::HeaderMap, RequestBuilder, Response, StatusCode};

use super::{FailureCode, ProviderEvent, ProviderStream};

/// Retry and stall limits of an upstream.
#[derive(Debug, Clone)]
pub struct UpstreamPolicy {
    /// How the upstream is reached.
    pub client: std::sync::Arc<super::client::ProviderClient>,
    /// Attempts in all (1 = no retry).
    pub attempts: usize,
    pub min_delay: Duration,
    pub max_delay: Duration,
    /// No byte for this long ends the answer `upstream_timeout`.
    pub stall: Duration,
    /// Observes each attempt's time to the response's head.
    pub first_byte: prometheus::Histogram,
}

impl UpstreamPolicy {
    /// The waits between attempts.
    pub fn delays(&self) -> impl Iterator<Item = Duration> {
        ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(self.attempts.saturating_sub(1))
            .with_jitter()
            .build()
    }
}

/// Why a request did not produce an answer.
#[derive(Debug)]
pub struct Refusal {
    /// Worth trying again (429, 5xx, 529, connection errors).
    pub retryable: bool,
    /// The upstream's `retry-after`, when it said one.
    pub retry_after: Option<Duration>,
    pub code: FailureCode,
    pub message: String,
}

/// HTTP statuses that mean "try again later".
pub fn is_retryable(status: StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 409 | 429 | 500 | 502 | 503 | 504 | 529)
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| Duration::from_secs_f64(s.min(600.0)))
}

/// What one sending came to: a non-2xx answer becomes a `Refusal`
/// carrying the upstream's own error message.
pub async fn accepted(sent: reqwest::Result<Response>) -> Result<Response, Refusal> {
    let response = sent.map_err(|e| Refusal {
        retryable: true,
        retry_after: None,
        code: FailureCode::UpstreamError,
        message: format!("could not reach the model provider: {}", without_url(&e)),
    })?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let after = retry_after(response.headers());
    let body = response.text().await.unwrap_or_default();
    Err(Refusal {
        retryable: is_retryable(status),
        retry_after: after,
        code: FailureCode::UpstreamError,
        message: format!("model provider answered {}: {}", status.as_u16(), error_message(&body)),
    })
}

/// The `error.message` of a JSON error body (Anthropic and OpenAI both
/// use it), or the start of the body.
pub fn error_message(body: &str) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let message = parsed.as_ref().and_then(|v| {
        v.pointer("/error/message").or_else(|| v.get("message")).and_then(|m| m.as_str()).map(str::to_owned)
    });
    message.unwrap_or_else(|| body.chars().take(300).collect())
}

/// A reqwest error's text without the URL (which may carry a query key).
pub fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), "<upstream>");
    }
    text
}

/// A fault while reading an answer.
#[derive(Debug)]
pub enum ReadFault {
    Stalled,
    Transport(String),
    Malformed(String),
}

impl ReadFault {
    pub fn code(&self) -> FailureCode {
        match self {
            ReadFault::Stalled => FailureCode::UpstreamTimeout,
            _ => FailureCode::UpstreamError,
        }
    }

    pub fn message(&self, stall: Duration) -> String {
        match self {
            ReadFault::Stalled => format!("the model provider sent nothing for {} ms", stall.as_millis()),
            ReadFault::Transport(e) => format!("the connection to the model provider broke: {e}"),
            ReadFault::Malformed(e) => format!("the model provider sent a malformed stream: {e}"),
        }
    }
}

/// The SSE events of a response body. Any gap of `stall` without a byte
/// (pings count) yields `ReadFault::Stalled`.
fn sse_events(response: Response, stall: Duration) -> impl Stream<Item = Result<SseEvent, ReadFault>> {
    let bytes = tokio_stream::StreamExt::timeout(response.bytes_stream(), stall).map(|item| match item {
        Ok(Ok(b)) => Ok(b),
        Ok(Err(e)) => Err(ReadFault::Transport(without_url(&e))),
        Err(_) => Err(ReadFault::Stalled),
    });
    // `timeout` keeps polling after it fires; stop at the first fault.
    let mut failed = false;
    let bytes = bytes.take_while(move |item| {
        let go = !failed;
        failed |= item.is_err();
        std::future::ready(go)
    });
    bytes.eventsource().map(|item| {
        item.map_err(|e| match e {
            EventStreamError::Transport(fault) => fault,
            EventStreamError::Utf8(e) => ReadFault::Malformed(e.to_string()),
            EventStreamError::Parser(e) => ReadFault::Malformed(e.to_string()),
        })
    })
}

/// Sends what `make` builds until the upstream accepts it, retrying what is worth
/// retrying after the next backoff delay (never shorter than the
/// upstream's `retry-after`); the last refusal when the delays run out.
async fn send_with_retries(
    make: &impl Fn(&reqwest::Client) -> RequestBuilder,
    delays: &mut impl Iterator<Item = Duration>,
    policy: &UpstreamPolicy,
) -> Result<Response, Refusal> {
    loop {
        let sent = std::time::Instant::now();
        let answer = accepted(policy.client.send(make).await).await;
        policy.first_byte.observe(sent.elapsed().as_secs_f64());
        let refusal = match answer {
            Ok(response) => return Ok(response),
            Err(refusal) if refusal.retryable => refusal,
            Err(refusal) => return Err(refusal),
        };
        let Some(delay) = delays.next() else { return Err(refusal) };
        let wait = refusal.retry_after.map_or(delay, |after| after.max(delay));
        tracing::warn!(error.message = %refusal.message, wait_ms = wait.as_millis() as u64, "retrying the model provider");
        tokio::time::sleep(wait).await;
    }
}

/// After an answer broke: whether to ask again. Only before any content
/// (after it, a retry would be a different answer) and never for a
/// malformed stream; waits the next backoff delay first.
pub async fn retry_cut_answer(
    fault: &ReadFault,
    content_began: bool,
    stall: Duration,
    delays: &mut impl Iterator<Item = Duration>,
) -> bool {
    if content_began || matches!(fault, ReadFault::Malformed(_)) {
        return false;
    }
    let Some(delay) = delays.next() else { return false };
    tracing::warn!(error.message = %fault.message(stall), "answer cut before content; retrying");
    tokio::time::sleep(delay).await;
    true
}

/// What a provider makes of one event of its upstream's stream.
pub enum Step {
    Emit(Vec<ProviderEvent>),
    /// An event type the provider does not know: ignored (and counted by
    /// the provider).
    Unknown,
    /// The protocol's end marker: the answer is complete.
    Done,
    Fail(String),
}

/// One provider's reading of its streaming protocol. `stream_answer`
/// does everything else, the same way for every provider.
pub trait Protocol: Send + 'static {
    /// Starts an attempt (forgets what an earlier one read); events to
    /// emit before the answer's own.
    fn begin(&mut self) -> Vec<ProviderEvent>;
    /// Interprets one SSE event.
    fn read(&mut self, event: &SseEvent) -> Step;
    /// The stream closed without the end marker: whether the answer is
    /// whole anyway, or else the name of the missing marker.
    fn closed(&self) -> Result<(), &'static str>;
}

/// One answer from an HTTP upstream: sends what `make` builds (on the
/// client `policy.client` picks) with retries before
/// the answer starts, reads the SSE stream (stall-guarded) through
/// `protocol`, retries an answer cut before any content, and ends with
/// `Stop` or `Failed`: never a cut answer presented as whole.
pub fn stream_answer<P: Protocol>(
    policy: UpstreamPolicy,
    make: impl Fn(&reqwest::Client) -> RequestBuilder + Send + Sync + 'static,
    mut protocol: P,
) -> ProviderStream {
    Box::pin(async_stream::stream! {
        let mut delays = policy.delays();
        'attempt: loop {
            let response = match send_with_retries(&make, &mut delays, &policy).await {
                Ok(r) => r,
                Err(refusal) => {
                    yield ProviderEvent::Failed { code: refusal.code, message: refusal.message };
                    return;
                }
            };
            for e in protocol.begin() {
                yield e;
            }
            let mut content_began = false;
            let mut events = std::pin::pin!(sse_events(response, policy.stall));
            loop {
                let fault = match events.next().await {
                    Some(Ok(ev)) => match protocol.read(&ev) {
                        Step::Emit(out) => {
                            for e in out {
                                content_began |= matches!(e, ProviderEvent::BlockStart { .. } | ProviderEvent::Delta { .. });
                                yield e;
                            }
                            continue;
                        }
                        Step::Unknown => continue,
                        Step::Done => {
                            yield ProviderEvent::Stop { stop_reason: None };
                            return;
                        }
                        Step::Fail(message) => {
                            yield ProviderEvent::Failed { code: FailureCode::UpstreamError, message };
                            return;
                        }
                    },
                    Some(Err(fault)) => fault,
                    None => match protocol.closed() {
                        Ok(()) => {
                            yield ProviderEvent::Stop { stop_reason: None };
                            return;
                        }
                        Err(marker) => ReadFault::Transport(format!("the stream ended before `{marker}`")),
                    },
                };
                if retry_cut_answer(&fault, content_began, policy.stall, &mut delays).await {
                    continue 'attempt;
                }
                yield ProviderEvent::Failed { code: fault.code(), message: fault.message(policy.stall) };
                return;
            }
        }
    })
}
