//! The fleet benchmark (BENCHMARKS.md, "Fleet"): thousands of shops on one deployment for a
//! simulated window of the day (by default the evening peak and the night), with the real handlers (order-push, catalog-sync, the webhook receiver,
//! status-apply) on in-memory adapters that count what the AWS calls would cost, the KeyCRM
//! simulator with one API key per shop (60 requests a minute each, time-scaled), and queues
//! and a Lambda pool with the deployed concurrency limits. It prints the figures of issue 14
//! and the cost per shop per month from `prices.rs`.
//!
//! ```text
//! cargo run --profile fleet -p fleet-bench                      # 2,000 shops, the design as deployed
//! FLEET_DESIGN=before cargo run --profile fleet -p fleet-bench  # the design before issue 14
//! FLEET_DESIGN=sleep cargo run --profile fleet -p fleet-bench   # syncs sleep on the gate, no slices
//! FLEET_KEYS=envelope cargo run --profile fleet -p fleet-bench  # a KMS data key per API key
//! FLEET_SHARED_DICTIONARIES=0 cargo run --profile fleet -p fleet-bench  # dictionaries per instance only
//! FLEET_SMALL_MEMORY=256 cargo run --profile fleet -p fleet-bench # order push, status apply, webhook at 256 MB
//! FLEET_SHOPS=200 FLEET_SCALE=240 FLEET_START_HOUR=12 FLEET_HOURS=24 cargo run --profile fleet -p fleet-bench
//! ```

mod clock;
mod cpu;
mod fleet;
mod meter;
mod pool;
mod ports;
mod prices;
mod queues;
mod report;
mod world;

use std::time::Duration;

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let shops: usize = env("FLEET_SHOPS", 2000);
    let scale: f64 = env("FLEET_SCALE", 64.0);
    let hours: i64 = env("FLEET_HOURS", 12);
    let seed: u64 = env("FLEET_SEED", 14);
    let mut design = match std::env::var("FLEET_DESIGN").as_deref() {
        Ok("before") => world::Design::before(),
        Ok("sleep") => world::Design::sleep(),
        _ => world::Design::after(),
    };
    // Seconds of KeyCRM time between a sync's checkpoints (0: after every unit, as before).
    if let Some(s) = std::env::var("FLEET_CHECKPOINT_EVERY")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        design.sync_cfg.checkpoint_every = Duration::from_secs(s);
    }
    // `envelope`: a KMS data key per API key (one Decrypt per instance and connection, before).
    if std::env::var("FLEET_KEYS").as_deref() == Ok("envelope") {
        design.keys = ports::KeyStore::Envelope;
    }
    // 0: order push keeps its KeyCRM dictionaries per instance only (as before).
    if let Ok(v) = std::env::var("FLEET_SHARED_DICTIONARIES") {
        design.shared_dictionaries = v != "0";
    }
    // Memory of order push, status apply and the webhook receiver (MB), if not the template's.
    if let Some(mb) = std::env::var("FLEET_SMALL_MEMORY")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
    {
        design = design.with_small_memory(mb);
    }
    let threads: usize = env("FLEET_THREADS", 2);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
        .expect("tokio runtime");
    let started = std::time::Instant::now();
    let outcome = rt.block_on(world::run(world::Params {
        shops,
        scale,
        start_hour: env("FLEET_START_HOUR", 15),
        hours,
        seed,
        product_scale: env("FLEET_PRODUCT_SCALE", 0.1),
        onboard_hours: env("FLEET_ONBOARD_HOURS", 1.5),
        design,
    }));
    report::print(&outcome, started.elapsed());
    // Background tasks (the simulator, pollers) end with the process.
    rt.shutdown_timeout(Duration::from_millis(100));
}
