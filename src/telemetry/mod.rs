//! Logging set-up: `tracing` with a pretty format on a terminal and JSON
//! lines otherwise (or as `--log-format` says), filtered by `RUST_LOG`.
//!
//! The log level says whose fault a line is: ERROR is the service's own
//! faults only; what a peer does wrong (a malformed request, an answer
//! 4xx, a WebSocket frame against the protocol) is WARN at most, and
//! bounded for the whole process (`peer`), dependencies' lines about it
//! included.

pub mod peer;

use std::io::IsTerminal;

use tracing_subscriber::{fmt, layer::SubscriberExt as _, util::SubscriberInitExt as _, EnvFilter, Layer as _};

use crate::config::{LogFormat, TelemetrySettings};

/// Installs the global subscriber. Call once, from `main`.
pub fn init(settings: &TelemetrySettings) {
    let format = settings.log_format.unwrap_or(if std::io::stdout().is_terminal() {
        LogFormat::Pretty
    } else {
        LogFormat::Json
    });
    let filter = EnvFilter::try_new(&settings.log_filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let output = match format {
        LogFormat::Json => fmt::layer().json().flatten_event(true).with_writer(std::io::stderr).boxed(),
        LogFormat::Pretty => fmt::layer().with_writer(std::io::stderr).boxed(),
    };
    let _ = tracing_subscriber::registry().with(output).with(peer::PeerFaults).with(filter).try_init();
}

/// For test binaries: logs only when `TEST_LOG` is set; safe to call from
/// every test.
pub fn init_for_tests() {
    if std::env::var_os("TEST_LOG").is_some() {
        let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned());
        let _ = tracing_subscriber::registry()
            .with(fmt::layer().with_test_writer())
            .with(peer::PeerFaults)
            .with(EnvFilter::new(filter))
            .try_init();
    }
}
