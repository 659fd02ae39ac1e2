//! Entry point: parse settings, set up logging, build the application and
//! serve until SIGINT/SIGTERM.

use clap::Parser;
use convo::{config::Settings, startup::Application, telemetry};

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::parse();
    telemetry::init(&settings.telemetry);
    let app = Application::build(settings).await?;
    app.run_until_stopped().await
}
