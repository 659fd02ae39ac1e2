//! Entry point: parse settings, set up logging, build the application and
//! serve until SIGINT/SIGTERM.

use clap::Parser;
use convo::{config::Settings, startup::Application, telemetry};

/// jemalloc, configured in `.cargo/config.toml` to return freed pages to
/// the OS within a second: a burst of connections allocates far more while
/// setting up than each keeps (see README, Performance).
#[cfg(all(feature = "jemalloc", not(target_env = "msvc")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::parse();
    telemetry::init(&settings.telemetry);
    let app = Application::build(settings).await?;
    app.run_until_stopped().await
}
