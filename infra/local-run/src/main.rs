//! `cargo run --release -p local-run`: the whole connector locally. See `docs/local-run.md`.

mod cli;
mod demo;
mod demo_data;
mod ports;
mod workers;

use clap::Parser;
use runtime::telemetry::{self, Format};
use tracing_subscriber::util::SubscriberInitExt;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = cli::Args::parse();
    // Quiet by default so the progress bar and summary stay readable; RUST_LOG=info shows
    // every handler's structured logs. The same caps as on Lambda: the local run may hold a
    // real KeyCRM key and talk to real AWS.
    let spec = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into());
    let _ = telemetry::subscriber(Some(&spec), Format::Text, std::io::stdout).try_init();
    demo::run(args).await
}
