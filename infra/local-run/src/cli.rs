//! Command-line flags. Every flag has an environment variable and a default that runs the
//! whole demo on embedded parts.

use clap::Parser;
use std::time::Duration;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "local-run",
    about = "Runs the whole shop-keycrm connector locally: admin API + webhook receiver on one port, \
             the order consumer, the status consumer and the sync schedules, on embedded defaults \
             (KeyCRM simulator, demo shop, in-process store and queues).",
    long_about = None
)]
pub struct Args {
    /// Port of the admin API and webhook receiver.
    #[arg(long, env = "LOCAL_PORT", default_value_t = 8080)]
    pub port: u16,

    /// Port of the embedded KeyCRM simulator (0 = any free port).
    #[arg(long, env = "SIM_PORT", default_value_t = 8787)]
    pub sim_port: u16,

    /// Products in the simulated KeyCRM catalog.
    #[arg(long, env = "DEMO_PRODUCTS", default_value_t = 1000)]
    pub products: usize,

    /// Pending shop orders to push on start.
    #[arg(long, env = "DEMO_ORDERS", default_value_t = 12)]
    pub orders: usize,

    /// Demo speed: how many times faster than real time the simulated KeyCRM's rate window
    /// runs (60 = KeyCRM's 60 requests a minute become 60 a second). 1 = real pacing.
    #[arg(long, env = "DEMO_SPEED", default_value_t = 60.0)]
    pub speed: f64,

    /// Seed of the simulated catalog and demo orders.
    #[arg(long, env = "DEMO_SEED", default_value_t = 42)]
    pub seed: u64,

    /// Use a real KeyCRM account instead of the simulator (with --keycrm-api-key).
    #[arg(long, env = "KEYCRM_BASE_URL")]
    pub keycrm_base_url: Option<String>,

    /// API key of the real KeyCRM account. Never printed.
    #[arg(long, env = "KEYCRM_API_KEY", hide_env_values = true)]
    pub keycrm_api_key: Option<String>,

    /// Use the platform's real shop API instead of the demo shop (with --shop-api-token).
    #[arg(long, env = "SHOP_API_BASE_URL")]
    pub shop_api_base_url: Option<String>,

    /// Token for the real shop API. Never printed.
    #[arg(long, env = "SHOP_API_TOKEN", hide_env_values = true)]
    pub shop_api_token: Option<String>,

    /// The shop id to connect.
    #[arg(long, env = "DEMO_SHOP_ID", default_value = "demo-shop")]
    pub shop_id: String,

    /// Use DynamoDB, SQS and Secrets Manager (the emulator when AWS_ENDPOINT_URL is set, or a
    /// real account) instead of the in-process store and queues. On by default when
    /// AWS_ENDPOINT_URL is set.
    #[arg(long, env = "LOCAL_USE_AWS")]
    pub aws: bool,

    /// Name prefix for the table and queues created in AWS mode.
    #[arg(long, env = "LOCAL_AWS_PREFIX", default_value = "shop-keycrm-local")]
    pub aws_prefix: String,

    /// Minutes between scheduled price syncs (the daily full sync runs at start and then daily).
    #[arg(long, env = "PRICE_SYNC_MINUTES", default_value_t = 240)]
    pub price_sync_minutes: u64,

    /// Run the demo, print the summary and exit instead of serving until Ctrl-C.
    #[arg(long, env = "LOCAL_ONCE")]
    pub once: bool,

    /// Append the metrics each step emits (CloudWatch EMF, one JSON document a line, as the
    /// functions write them to their logs on Lambda) to this file. Off when not given.
    #[arg(long, env = "LOCAL_METRICS_FILE")]
    pub metrics: Option<std::path::PathBuf>,
}

impl Args {
    pub fn use_aws(&self) -> bool {
        self.aws || std::env::var("AWS_ENDPOINT_URL").is_ok_and(|v| !v.is_empty())
    }

    pub fn real_keycrm(&self) -> Option<(String, String)> {
        match (&self.keycrm_base_url, &self.keycrm_api_key) {
            (Some(u), Some(k)) => Some((u.clone(), k.clone())),
            _ => None,
        }
    }

    pub fn real_shop(&self) -> Option<(String, String)> {
        match (&self.shop_api_base_url, &self.shop_api_token) {
            (Some(u), Some(t)) => Some((u.clone(), t.clone())),
            _ => None,
        }
    }

    /// Where the steps' metrics go.
    pub fn metrics_sink(&self) -> std::io::Result<runtime::metrics::Sink> {
        match &self.metrics {
            Some(path) => runtime::metrics::Sink::file(path),
            None => Ok(runtime::metrics::Sink::Discard),
        }
    }

    pub fn price_interval(&self) -> Duration {
        Duration::from_secs(self.price_sync_minutes.max(1) * 60)
    }
}
