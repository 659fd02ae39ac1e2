//! What the HTTP providers share: sending a request with retries before
//! the answer starts (exponential backoff with jitter, honouring
//! `retry-after`, a time limit on each attempt's response head), reading
//! an upstream's error message (bounded in size and time), turning a
//! response body into SSE events guarded against stalls and over-size
//! events, and `stream_answer`, which drives a whole answer given a
//! provider's `Protocol`.
//!
//! The SSE wire format is cut into lines by `sse::Framer` (linear, with the
//! event size limit) and its fields parsed by the `eventsource-stream` crate.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use eventsource_stream::{Event as SseEvent, EventStreamError, Eventsource};
use futures_util::{Stream, StreamExt};
use reqwest::{header::HeaderMap, RequestBuilder, Response, StatusCode};

use super::{sse, FailureCode, ProviderEvent, ProviderStream};
use crate::domain::continuation::Cut;

/// Retry, time and size limits of an upstream.
#[derive(Debug, Clone)]
pub struct UpstreamPolicy {
    /// How the upstream is reached.
    pub client: std::sync::Arc<super::client::ProviderClient>,
    /// Attempts in all (1 = no retry).
    pub attempts: usize,
    pub min_delay: Duration,
    pub max_delay: Duration,
    /// No whole event (nor comment) for this long ends the answer
    /// `upstream_timeout`.
    pub stall: Duration,
    /// An attempt whose response head takes longer fails like a refused
    /// connection (retried, then `upstream_timeout`).
    pub head_timeout: Duration,
    /// An SSE event over this many bytes ends the answer `upstream_error`.
    pub max_event_bytes: usize,
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

/// The most of an error body that is read: enough for any provider's
/// error message, and a provider that sends an endless one costs no more.
const ERROR_BODY_BYTES: usize = 64 * 1024;

/// What one sending came to: a non-2xx answer becomes a `Refusal`
/// carrying the upstream's own error message (read for at most `within`).
pub async fn accepted(sent: reqwest::Result<Response>, within: Duration) -> Result<Response, Refusal> {
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
    let body = error_body(response, within).await;
    Err(Refusal {
        retryable: is_retryable(status),
        retry_after: after,
        code: FailureCode::UpstreamError,
        message: format!("model provider answered {}: {}", status.as_u16(), error_message(&body)),
    })
}

/// The start of an error body: at most `ERROR_BODY_BYTES`, whatever
/// arrived within `within`.
async fn error_body(response: Response, within: Duration) -> String {
    let mut body = Vec::new();
    let mut chunks = std::pin::pin!(response.bytes_stream());
    let read = async {
        while let Some(Ok(chunk)) = chunks.next().await {
            let room = ERROR_BODY_BYTES - body.len();
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if body.len() == ERROR_BODY_BYTES {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(within, read).await;
    String::from_utf8_lossy(&body).into_owned()
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
    /// An event passed this many bytes.
    TooLarge(usize),
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
            ReadFault::Stalled => format!("the model provider sent no whole event for {} ms", stall.as_millis()),
            ReadFault::Transport(e) => format!("the connection to the model provider broke: {e}"),
            ReadFault::Malformed(e) => format!("the model provider sent a malformed stream: {e}"),
            ReadFault::TooLarge(limit) => format!("the model provider sent an event over {limit} bytes"),
        }
    }

    /// Whether the provider cut the answer (it may be continued), or it
    /// sent what it must not (it would most likely send it again).
    fn cut(&self) -> Option<Cut> {
        match self {
            ReadFault::Stalled => Some(Cut::Stalled),
            ReadFault::Transport(_) => Some(Cut::ConnectionLost),
            ReadFault::Malformed(_) | ReadFault::TooLarge(_) => None,
        }
    }

    /// Asking again could help: not when the provider sent what it must
    /// not (it would most likely send it again).
    fn retryable(&self) -> bool {
        matches!(self, ReadFault::Stalled | ReadFault::Transport(_))
    }
}

/// The complete lines of a response body (`sse::Framer`), each ending in
/// LF. `stall` without a whole event or comment line (a ping is an event;
/// a byte is not) yields `ReadFault::Stalled`; an event over `max_event`
/// bytes `ReadFault::TooLarge`. Ends at the first fault.
fn sse_lines(
    bytes: impl Stream<Item = reqwest::Result<bytes::Bytes>>,
    stall: Duration,
    max_event: usize,
) -> impl Stream<Item = Result<bytes::Bytes, ReadFault>> {
    async_stream::stream! {
        let mut bytes = std::pin::pin!(bytes);
        let mut framer = sse::Framer::new(max_event);
        let mut deadline = tokio::time::Instant::now() + stall;
        loop {
            let chunk = match tokio::time::timeout_at(deadline, bytes.next()).await {
                Ok(Some(Ok(chunk))) => chunk,
                Ok(Some(Err(e))) => {
                    yield Err(ReadFault::Transport(without_url(&e)));
                    return;
                }
                Ok(None) => return,
                Err(_) => {
                    yield Err(ReadFault::Stalled);
                    return;
                }
            };
            let lines = match framer.push(chunk) {
                Ok(lines) => lines,
                Err(sse::Fault::TooLarge(limit)) => {
                    yield Err(ReadFault::TooLarge(limit));
                    return;
                }
                Err(sse::Fault::NotUtf8) => {
                    yield Err(ReadFault::Malformed("a line is not UTF-8".into()));
                    return;
                }
            };
            for line in lines {
                if line.progress {
                    deadline = tokio::time::Instant::now() + stall;
                }
                yield Ok(line.bytes);
            }
        }
    }
}

/// The SSE events of a response body, read by `sse_lines`.
fn sse_events(
    response: Response,
    stall: Duration,
    max_event: usize,
) -> impl Stream<Item = Result<SseEvent, ReadFault>> {
    sse_lines(response.bytes_stream(), stall, max_event).eventsource().map(|item| {
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
        // reqwest waits for a response head without end: a provider that
        // accepts the connection and says nothing must not hold the answer.
        let answer = match tokio::time::timeout(policy.head_timeout, policy.client.send(make)).await {
            Ok(sent) => accepted(sent, policy.head_timeout).await,
            Err(_) => Err(Refusal {
                retryable: true,
                retry_after: None,
                code: FailureCode::UpstreamTimeout,
                message: format!(
                    "the model provider sent no response head within {} ms",
                    policy.head_timeout.as_millis()
                ),
            }),
        };
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
/// malformed stream or an over-size event; waits the next backoff delay
/// first.
pub async fn retry_cut_answer(
    fault: &ReadFault,
    content_began: bool,
    stall: Duration,
    delays: &mut impl Iterator<Item = Duration>,
) -> bool {
    if content_began || !fault.retryable() {
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
    /// The provider said, after its 200, that it failed (overloaded, an
    /// internal error): the answer was cut by the provider, and may be
    /// continued.
    ProviderError(String),
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
/// the answer starts, reads the SSE stream (stall- and size-guarded) through
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
                    yield ProviderEvent::Failed { code: refusal.code, message: refusal.message, cut: None };
                    return;
                }
            };
            for e in protocol.begin() {
                yield e;
            }
            let mut content_began = false;
            let mut events = std::pin::pin!(sse_events(response, policy.stall, policy.max_event_bytes));
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
                            yield ProviderEvent::Failed { code: FailureCode::UpstreamError, message, cut: None };
                            return;
                        }
                        Step::ProviderError(message) => {
                            let cut = Some(Cut::ProviderError);
                            yield ProviderEvent::Failed { code: FailureCode::UpstreamError, message, cut };
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
                yield ProviderEvent::Failed { code: fault.code(), message: fault.message(policy.stall), cut: fault.cut() };
                return;
            }
        }
    })
}
