//! `keycrm-sim` binary: runs the KeyCRM Open API simulator until Ctrl-C.

use std::net::{IpAddr, SocketAddr};

use clap::Parser;
use keycrm_sim::{AccountSpec, SimConfig};

/// Local simulator of the KeyCRM Open API (v1).
#[derive(Debug, Parser)]
#[command(name = "keycrm-sim", version, about)]
struct Args {
    /// Port to listen on (0 = any free port).
    #[arg(long, default_value_t = 8787, env = "KEYCRM_SIM_PORT")]
    port: u16,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1", env = "KEYCRM_SIM_HOST")]
    host: IpAddr,
    /// Seeded products per account.
    #[arg(long, default_value_t = 60)]
    products: usize,
    /// Seed of the generated data (account i uses seed + i).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// API key; repeat for several accounts (each key gets its own data and limiter).
    #[arg(long = "api-key", default_value = "demo-key")]
    api_keys: Vec<String>,
    /// Requests per (simulated) minute per key; 0 disables the limit.
    #[arg(long, default_value_t = 60)]
    rate_limit: u32,
    /// Simulated seconds per real second (60 = a rate-limit minute lasts 1 s).
    #[arg(long, default_value_t = 1.0)]
    time_scale: f64,
    /// Answer 400 "Leads are not enabled" on every /pipelines* route.
    #[arg(long)]
    no_pipelines: bool,
    /// Base URL written into pagination links (default http://HOST:PORT/v1).
    #[arg(long)]
    public_base_url: Option<String>,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let accounts = args
        .api_keys
        .iter()
        .enumerate()
        .map(|(i, k)| AccountSpec {
            api_key: k.clone(),
            seed: args.seed.wrapping_add(i as u64),
            products: args.products,
            pipelines_enabled: !args.no_pipelines,
        })
        .collect();
    let config = SimConfig {
        accounts,
        rate_limit_per_minute: args.rate_limit,
        time_scale: args.time_scale,
        public_base_url: args.public_base_url.clone(),
    };
    let sim = keycrm_sim::start(config, SocketAddr::new(args.host, args.port)).await?;
    println!("keycrm-sim listening: {}", sim.base_url());
    println!("  api keys: {}", args.api_keys.join(", "));
    println!(
        "  controls: http://{}/__sim/health (stats, faults, orders, cards, webhooks, catalog)",
        sim.addr()
    );
    tokio::signal::ctrl_c().await?;
    println!("keycrm-sim: stopping");
    Ok(())
}
