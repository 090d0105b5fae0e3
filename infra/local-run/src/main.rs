//! `cargo run --release -p local-run`: the whole connector locally. See `docs/local-run.md`.

mod cli;
mod demo;
mod demo_data;
mod ports;
mod workers;

use clap::Parser;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = cli::Args::parse();
    // Quiet by default so the progress bar and summary stay readable; RUST_LOG=info shows
    // every handler's structured logs.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .compact()
        .try_init();
    demo::run(args).await
}
