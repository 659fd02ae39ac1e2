//! Logging set-up: `tracing` with a pretty format on a terminal and JSON
//! lines otherwise (or as `--log-format` says), filtered by `RUST_LOG`.

use std::io::IsTerminal;

use tracing_subscriber::{fmt, EnvFilter};

use crate::config::{LogFormat, TelemetrySettings};

/// Installs the global subscriber. Call once, from `main`.
pub fn init(settings: &TelemetrySettings) {
    let format = settings.log_format.unwrap_or(if std::io::stdout().is_terminal() {
        LogFormat::Pretty
    } else {
        LogFormat::Json
    });
    let filter = EnvFilter::try_new(&settings.log_filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}

/// For test binaries: logs only when `TEST_LOG` is set; safe to call from
/// every test.
pub fn init_for_tests() {
    if std::env::var_os("TEST_LOG").is_some() {
        let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned());
        let _ = fmt().with_env_filter(EnvFilter::new(filter)).with_test_writer().try_init();
    }
}
