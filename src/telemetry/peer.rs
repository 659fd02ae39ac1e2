//! What a peer can make the service log, and how much of it.
//!
//! A client's mistake (a request or frame that breaks the protocol, an
//! answer 4xx) or a refusal under load (503) is the peer's business, not
//! the operator's emergency: it is logged at WARN, through one bound for
//! the whole process, `BURST` lines at once and `PER_SECOND` a second
//! after that; each line that is logged says how many were left out
//! before it (`suppressed`). ERROR is kept for the service's own faults.
//! Unbounded, a flood of bad requests was a flood of log lines, one or
//! two per request, some at ERROR.
//!
//! Some dependencies log a peer's mistake themselves, at a level of their
//! own: actix-http logs every request it cannot parse at ERROR
//! (`stream error: request parse error: …`), and a WebSocket control
//! frame without FIN too; rustls and h2 log a peer's
//! protocol errors at WARN, once per connection. `PeerFaults`, a layer of
//! the log subscriber, drops those events and logs them again through
//! the bound (the WebSocket one is logged by the session that reads the
//! frame, so it is only dropped). Their other events, the ones about the
//! service's own faults, pass unchanged.
//!
//! The bound is a process-wide static because the log is: there is one
//! subscriber per process, whatever number of applications run in it.

use std::{
    fmt::Display,
    num::NonZeroU32,
    sync::{
        atomic::{AtomicU64, Ordering},
        LazyLock,
    },
};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tracing::{field::Field, Event, Level, Subscriber};
use tracing_log::NormalizeEvent as _;
use tracing_subscriber::layer::{Context, Layer};

/// Lines a burst of peer faults may log at once.
pub const BURST: u32 = 20;
/// Lines peer faults may log each second after a burst.
pub const PER_SECOND: u32 = 10;

/// What a peer did that is worth a (bounded) line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerFault {
    /// An answer 4xx: the request was the client's mistake.
    ClientError,
    /// An answer 503: refused for load or an outage, whose cause is
    /// logged where it arises.
    Refused,
    /// A request actix-http could not parse, or a connection the client
    /// broke or let time out while a request was under way.
    MalformedHttp,
    /// A WebSocket frame against the protocol or past a limit.
    WebSocket,
    /// A WebSocket closed (1013) because the unfinished messages of all
    /// sockets reached the node's budget.
    WebSocketBudget,
    /// A TLS or HTTP/2 peer that broke its protocol (rustls, h2).
    Protocol,
}

impl PeerFault {
    pub fn as_str(self) -> &'static str {
        match self {
            PeerFault::ClientError => "client_error",
            PeerFault::Refused => "refused",
            PeerFault::MalformedHttp => "malformed_http",
            PeerFault::WebSocket => "websocket_protocol",
            PeerFault::WebSocketBudget => "websocket_budget",
            PeerFault::Protocol => "tls_or_http2",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            PeerFault::ClientError => "a client's request was refused",
            PeerFault::Refused => "a request was refused: the service is busy or degraded",
            PeerFault::MalformedHttp => "a client's HTTP request was malformed or cut",
            PeerFault::WebSocket => "a WebSocket client broke the protocol; closed",
            PeerFault::WebSocketBudget => "a WebSocket closed: unfinished messages past the node's budget",
            PeerFault::Protocol => "a peer broke the TLS or HTTP/2 protocol",
        }
    }
}

/// A token bucket, and the lines it refused since it last allowed one.
struct Bound {
    bucket: DefaultDirectRateLimiter,
    suppressed: AtomicU64,
}

impl Bound {
    /// `Some(lines left out since the last one)` when a line may be
    /// logged now.
    fn admit(&self) -> Option<u64> {
        match self.bucket.check() {
            Ok(()) => Some(self.suppressed.swap(0, Ordering::Relaxed)),
            Err(_) => {
                self.suppressed.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }
}

static BOUND: LazyLock<Bound> = LazyLock::new(|| {
    // unwrap: both constants are above zero.
    let quota = Quota::per_second(NonZeroU32::new(PER_SECOND).unwrap()).allow_burst(NonZeroU32::new(BURST).unwrap());
    Bound { bucket: RateLimiter::direct(quota), suppressed: AtomicU64::new(0) }
});

/// Logs a peer's fault at WARN, within the process's bound. `detail`
/// is formatted only when the line is logged.
pub fn log(fault: PeerFault, detail: &dyn Display) {
    if let Some(suppressed) = BOUND.admit() {
        tracing::warn!(peer_fault = fault.as_str(), detail = %detail, suppressed, "{}", fault.describe());
    }
}

/// The layer that takes dependencies' logs of peer faults out of the log
/// and through the bound (see the module's doc).
pub struct PeerFaults;

/// What `PeerFaults` does with an event of a dependency.
#[derive(Debug, PartialEq, Eq)]
enum Handling {
    /// Not a peer's fault: logged as it is.
    Keep,
    /// A peer's fault that another line of the service tells: left out.
    Drop,
    /// A peer's fault nothing else tells: logged again, bounded.
    Relog(PeerFault),
}

/// actix-http's h1 dispatcher logs `stream error: <DispatchError>` at
/// ERROR; these are the errors a client causes (a request it cannot
/// parse, a connection the client broke or let time out, a body the
/// service refused to read). Its others (service, body, upgrade,
/// internal) are the service's.
const PEER_DISPATCH_ERRORS: &[&str] = &[
    "request parse error",
    "I/O error",
    "request did not complete within the specified timeout",
    "connection shutdown timeout",
    "handler dropped payload before reading EOF",
];

/// Whether events of `target` may be peer faults at all: the rest are
/// never looked into.
fn watched(target: &str) -> bool {
    target.starts_with("actix_http::") || in_crate(target, "rustls") || in_crate(target, "h2")
}

fn in_crate(target: &str, name: &str) -> bool {
    target.strip_prefix(name).is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
}

fn handling(target: &str, level: Level, message: &str) -> Handling {
    match target {
        "actix_http::h1::dispatcher" if level == Level::ERROR => match message.strip_prefix("stream error: ") {
            Some(cause) if PEER_DISPATCH_ERRORS.iter().any(|p| cause.starts_with(p)) => {
                Handling::Relog(PeerFault::MalformedHttp)
            }
            _ => Handling::Keep,
        },
        // A control frame without FIN ("Unfinished fragment Ping"): the
        // decoder's caller gets the protocol error too, and the session
        // closes the socket and logs why.
        "actix_http::ws::codec" if level == Level::ERROR && message.starts_with("Unfinished fragment") => {
            Handling::Drop
        }
        _ if level == Level::WARN && (in_crate(target, "rustls") || in_crate(target, "h2")) => {
            Handling::Relog(PeerFault::Protocol)
        }
        _ => Handling::Keep,
    }
}

/// The text of an event's `message` field.
fn message_of(event: &Event<'_>) -> String {
    struct Message(String);
    impl tracing::field::Visit for Message {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            if field.name() == "message" {
                self.0 = format!("{value:?}");
            }
        }
        fn record_str(&mut self, field: &Field, value: &str) {
            if field.name() == "message" {
                value.clone_into(&mut self.0);
            }
        }
    }
    let mut message = Message(String::new());
    event.record(&mut message);
    message.0
}

impl<S: Subscriber> Layer<S> for PeerFaults {
    fn event_enabled(&self, event: &Event<'_>, _: Context<'_, S>) -> bool {
        // Events of the `log` crate (rustls) name their target in their
        // fields; tracing's own, in their metadata.
        let normalized = event.normalized_metadata();
        let metadata = normalized.as_ref().unwrap_or_else(|| event.metadata());
        if *metadata.level() > Level::WARN {
            return true;
        }
        let target = metadata.target();
        if !watched(target) {
            return true;
        }
        let message = message_of(event);
        match handling(target, *metadata.level(), &message) {
            Handling::Keep => true,
            Handling::Drop => false,
            Handling::Relog(fault) => {
                // Logged from inside the dispatch of the event it
                // replaces: the global dispatcher takes nested events
                // (nothing here holds a span or a lock).
                log(fault, &format_args!("{target}: {message}"));
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_faults_of_dependencies_are_told_from_the_services_own() {
        let h = |target: &str, level: Level, message: &str| {
            assert!(watched(target) || handling(target, level, message) == Handling::Keep);
            handling(target, level, message)
        };
        let dispatcher = "actix_http::h1::dispatcher";
        assert_eq!(
            h(dispatcher, Level::ERROR, "stream error: request parse error: invalid Header provided"),
            Handling::Relog(PeerFault::MalformedHttp)
        );
        assert_eq!(
            h(dispatcher, Level::ERROR, "stream error: I/O error: connection reset"),
            Handling::Relog(PeerFault::MalformedHttp)
        );
        // The service's own: a response body that failed, an internal error.
        assert_eq!(h(dispatcher, Level::ERROR, "stream error: body error: x"), Handling::Keep);
        assert_eq!(h(dispatcher, Level::ERROR, "Response payload stream error: x"), Handling::Keep);
        assert_eq!(h(dispatcher, Level::ERROR, "Internal server error: unexpected eof"), Handling::Keep);
        assert_eq!(h("actix_http::ws::codec", Level::ERROR, "Unfinished fragment Text"), Handling::Drop);
        assert_eq!(h("rustls::common_state", Level::WARN, "Sending fatal alert"), Handling::Relog(PeerFault::Protocol));
        assert_eq!(h("h2::proto::streams", Level::WARN, "x"), Handling::Relog(PeerFault::Protocol));
        assert_eq!(h("h2o", Level::WARN, "x"), Handling::Keep);
        assert_eq!(h("rustls::common_state", Level::ERROR, "traffic keys exhausted"), Handling::Keep);
        assert_eq!(h("convo::http", Level::ERROR, "stream error: request parse error"), Handling::Keep);
    }

    #[test]
    fn a_burst_is_bounded_and_the_next_line_counts_what_was_left_out() {
        let quota = Quota::per_hour(NonZeroU32::new(1).unwrap()).allow_burst(NonZeroU32::new(3).unwrap());
        let bound = Bound { bucket: RateLimiter::direct(quota), suppressed: AtomicU64::new(0) };
        let admitted: Vec<Option<u64>> = (0..10).map(|_| bound.admit()).collect();
        assert_eq!(admitted.iter().filter(|a| a.is_some()).count(), 3);
        assert_eq!(bound.suppressed.load(Ordering::Relaxed), 7, "counted for the next line");
    }
}
