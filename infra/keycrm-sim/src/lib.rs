//! # keycrm-sim
//!
//! A local HTTP server that behaves like KeyCRM's Open API (`/v1`): Bearer auth, per-key rate
//! limit with `429` + `Retry-After`, the 12-key Laravel pagination envelope, strict
//! `filter[...]`/`include` whitelists, orders and pipeline cards that can be created, read and
//! updated, and trigger webhooks on status changes. A deterministic seeded catalog (categories,
//! products, offers, stocks) backs the read endpoints.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let sim = keycrm_sim::start(keycrm_sim::SimConfig::default(), ([127, 0, 0, 1], 0).into()).await?;
//! println!("KeyCRM simulator at {}", sim.base_url()); // http://127.0.0.1:PORT/v1, key "demo-key"
//! # Ok(()) }
//! ```
//!
//! Test controls are available both on [`SimHandle`] and over HTTP under `/__sim/`.

#![recursion_limit = "256"]

mod catalog;
mod crm;
mod dicts;
mod error;
mod input;
mod query;
mod rng;
mod server;
mod state;
mod stock;
mod time;
mod util;
mod webhook;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use catalog::{
    ean13_is_valid, CatalogMutation, CatalogSnapshot, CategoryInfo, NewVariant, OfferInfo,
    ProductInfo, PropertyInfo, StockInfo,
};
pub use error::SimError;
pub use stock::{StockWebhook, STOCK_EVENT};
pub use webhook::WEBHOOK_EVENTS;

use crate::crm::{CardInc, OrderInc};
use crate::state::{lock, read, Account, FaultState, Shared};

/// Simulator configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimConfig {
    /// One data set and one rate limiter per API key.
    pub accounts: Vec<AccountSpec>,
    /// Requests per (simulated) minute per API key; `0` disables the limit. Default 60.
    pub rate_limit_per_minute: u32,
    /// `1.0` = real time; `60.0` = one simulated minute lasts one real second. Applies to the
    /// rate-limit window, `Retry-After` and webhook retry delays.
    pub time_scale: f64,
    /// Base used in pagination URLs; default `http://<bound addr>/v1`.
    pub public_base_url: Option<String>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            accounts: vec![AccountSpec::default()],
            rate_limit_per_minute: 60,
            time_scale: 1.0,
            public_base_url: None,
        }
    }
}

/// One KeyCRM account (API key) with its own seeded data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountSpec {
    pub api_key: String,
    pub seed: u64,
    pub products: usize,
    pub pipelines_enabled: bool,
}

impl Default for AccountSpec {
    fn default() -> Self {
        AccountSpec {
            api_key: "demo-key".to_string(),
            seed: 42,
            products: 60,
            pipelines_enabled: true,
        }
    }
}

/// Fault injection for `/v1` requests. All fields default to "off".
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    /// Probability (0..=1) that a request gets an injected 500/502/503 (before any effect).
    pub error_rate_5xx: f64,
    /// Extra latency added to every `/v1` request, in real milliseconds.
    pub latency_ms: u64,
    /// Probability that the connection is dropped without a complete response.
    pub drop_rate: f64,
    /// The next N `POST /order` or `POST /pipelines/cards` store the entity and then hold the
    /// response for `hang_ms` so that the client times out.
    pub commit_then_timeout: u32,
    /// How long a commit-then-timeout response is held, in real milliseconds.
    pub hang_ms: u64,
    /// Seed of the fault dice.
    pub seed: u64,
}

/// One outgoing webhook delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookAttempt {
    pub event: String,
    pub url: String,
    /// Order or card id; for stock webhooks (`event` = `"stock"`), the first offer sent.
    pub entity_id: i64,
    /// 1-based attempt number (at most 3).
    pub attempt: u32,
    /// HTTP status answered by the receiver, `None` on a connection error.
    pub status: Option<u16>,
    pub error: Option<String>,
    pub at: String,
}

/// Request counters since start or the last reset.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SimStats {
    /// All `/v1` requests (including 401/404/429 and injected faults).
    pub total_requests: u64,
    /// Keyed like `"GET /offers"`, `"GET /order/{id}"` (numeric path segments → `{id}`).
    pub requests_by_endpoint: BTreeMap<String, u64>,
    /// Keyed by the presented API key (`"<none>"` when missing).
    pub requests_by_api_key: BTreeMap<String, u64>,
    /// Keyed by status code as a string (`"200"`, `"429"`; `"dropped"` for dropped connections).
    pub responses_by_status: BTreeMap<String, u64>,
    pub rate_limited_429: u64,
    pub unauthorized_401: u64,
    pub injected_5xx: u64,
    pub dropped_connections: u64,
    /// Commit-then-timeout responses served (entity stored, response held).
    pub commit_then_timeout: u64,
    pub webhook_attempts: u64,
    pub webhooks_delivered: u64,
    /// Events given up after all attempts failed.
    pub webhooks_failed: u64,
    /// Most recent attempts (capped at 1000).
    pub webhook_log: Vec<WebhookAttempt>,
}

impl SimStats {
    /// Requests counted for an endpoint key such as `"GET /offers"`.
    pub fn endpoint(&self, key: &str) -> u64 {
        self.requests_by_endpoint.get(key).copied().unwrap_or(0)
    }
}

/// Handle to a running simulator. Cheap to clone.
#[derive(Clone)]
pub struct SimHandle {
    shared: Arc<Shared>,
    addr: SocketAddr,
}

impl std::fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimHandle")
            .field("addr", &self.addr)
            .finish()
    }
}

impl SimHandle {
    /// `http://127.0.0.1:PORT/v1`
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// API keys of the configured accounts, in configuration order.
    pub fn api_keys(&self) -> Vec<String> {
        self.shared
            .accounts
            .iter()
            .map(|a| a.spec.api_key.clone())
            .collect()
    }

    /// Another API key for an existing account, as when its owner generates one more in
    /// KeyCRM («Налаштування → Основні», «Згенерувати API ключ»): both keys then open the same
    /// data (and share its rate limit). False if `existing` is unknown or `new_key` is taken.
    pub fn add_api_key(&self, existing: &str, new_key: &str) -> bool {
        let Some(acc) = self.shared.account(existing) else {
            return false;
        };
        let mut keys = self
            .shared
            .by_key
            .write()
            .unwrap_or_else(|p| p.into_inner());
        if keys.contains_key(new_key) {
            return false;
        }
        keys.insert(new_key.to_string(), acc);
        true
    }

    pub fn stats(&self) -> SimStats {
        lock(&self.shared.stats).clone()
    }

    pub fn reset_stats(&self) {
        *lock(&self.shared.stats) = SimStats::default();
    }

    pub fn set_faults(&self, f: Faults) {
        self.shared.set_faults(f);
    }

    /// Created orders, rendered like `GET /order/{id}` with every include.
    pub fn orders(&self, api_key: &str) -> Vec<serde_json::Value> {
        let Some(acc) = self.shared.account(api_key) else {
            return Vec::new();
        };
        let catalog = read(&acc.catalog);
        let crm = lock(&acc.crm);
        let inc = OrderInc::all();
        crm.orders
            .iter()
            .map(|o| crm.render_order(o, &inc, &catalog))
            .collect()
    }

    /// Created pipeline cards, rendered like `GET /pipelines/cards/{id}` with every include.
    pub fn cards(&self, api_key: &str) -> Vec<serde_json::Value> {
        let Some(acc) = self.shared.account(api_key) else {
            return Vec::new();
        };
        let catalog = read(&acc.catalog);
        let crm = lock(&acc.crm);
        let inc = CardInc::all();
        crm.cards
            .iter()
            .map(|c| crm.render_card(c, &inc, &catalog))
            .collect()
    }

    /// Configures (or with `None` removes) the trigger-webhook URL for an event:
    /// `"order.change_order_status"`, `"lead.change_lead_status"` (also
    /// `"order.change_payment_status"`). Unknown keys are ignored.
    pub fn set_webhook_url(&self, api_key: &str, event: &str, url: Option<String>) {
        let Some(acc) = self.shared.account(api_key) else {
            tracing::warn!(api_key, "set_webhook_url: unknown api key");
            return;
        };
        let mut w = lock(&acc.webhooks);
        match url {
            Some(u) => {
                w.insert(event.to_string(), u);
            }
            None => {
                w.remove(event);
            }
        }
    }

    /// Changes an order's status like a manager in the UI: updates `status_changed_at` /
    /// `status_group_id` and fires `order.change_order_status` (delivered in the background).
    pub async fn change_order_status(
        &self,
        api_key: &str,
        order_id: i64,
        status_id: i64,
    ) -> Result<(), SimError> {
        server::change_order_status(&self.shared, api_key, order_id, status_id)
    }

    /// Moves a pipeline card to a status (of any pipeline) and fires `lead.change_lead_status`.
    pub async fn change_card_status(
        &self,
        api_key: &str,
        card_id: i64,
        status_id: i64,
    ) -> Result<(), SimError> {
        server::change_card_status(&self.shared, api_key, card_id, status_id)
    }

    /// Mutates the catalog of an account (unknown keys/ids are ignored). `SetStock` fires the
    /// stock webhooks like a manual edit in KeyCRM.
    pub fn catalog_mutate(&self, api_key: &str, m: CatalogMutation) {
        if let Some(acc) = self.shared.account(api_key) {
            let n = server::mutate_catalog(&self.shared, &acc, &m);
            if n == 0 {
                tracing::warn!(?m, "catalog mutation matched nothing");
            }
        }
    }

    /// Replaces the account's stock webhooks (KeyCRM: Settings → Products → Stocks →
    /// "+ Add webhook"). An empty list removes them all.
    pub fn set_stock_webhooks(&self, api_key: &str, hooks: Vec<StockWebhook>) {
        match self.shared.account(api_key) {
            Some(acc) => *lock(&acc.stock_webhooks) = hooks,
            None => tracing::warn!(api_key, "set_stock_webhooks: unknown api key"),
        }
    }

    /// Sets absolute balances in one warehouse like `PUT /offers/stocks` (`(offer id,
    /// quantity)` pairs; unknown offers are skipped) without spending the key's rate budget —
    /// a merchant's other tools, or a receipt document — and fires the stock webhooks.
    pub fn put_stocks(
        &self,
        api_key: &str,
        warehouse_id: i64,
        items: &[(i64, i64)],
    ) -> Result<(), SimError> {
        let acc = self
            .shared
            .account(api_key)
            .ok_or_else(|| SimError::UnknownAccount(api_key.to_string()))?;
        if catalog::warehouse_name(warehouse_id).is_none() {
            return Err(SimError::UnknownWarehouse(warehouse_id));
        }
        let update = stock::StockUpdate {
            warehouse_id,
            items: items.to_vec(),
        };
        let ids: Vec<i64> = items.iter().map(|i| i.0).collect();
        stock::with_stock_events(&self.shared, &acc, &ids, |cat| {
            stock::apply_update(cat, &update, time::now())
        });
        Ok(())
    }

    /// The account's catalog as plain structs (empty for unknown keys).
    pub fn catalog(&self, api_key: &str) -> CatalogSnapshot {
        self.shared
            .account(api_key)
            .map(|acc| read(&acc.catalog).snapshot())
            .unwrap_or_default()
    }
}

/// Generates the seeded data, binds `bind` (use port 0 for a free port) and serves on a
/// spawned tokio task.
pub async fn start(config: SimConfig, bind: SocketAddr) -> std::io::Result<SimHandle> {
    let time_scale = if config.time_scale.is_finite() && config.time_scale > 0.0 {
        config.time_scale
    } else {
        1.0
    };
    let specs = if config.accounts.is_empty() {
        vec![AccountSpec::default()]
    } else {
        config.accounts.clone()
    };
    let mut accounts = Vec::with_capacity(specs.len());
    for spec in specs {
        let (seed, n) = (spec.seed, spec.products);
        let catalog = tokio::task::spawn_blocking(move || catalog::Catalog::generate(seed, n))
            .await
            .map_err(std::io::Error::other)?;
        accounts.push(Arc::new(Account::new(spec, catalog)));
    }
    let mut by_key = HashMap::new();
    for a in &accounts {
        by_key
            .entry(a.spec.api_key.clone())
            .or_insert_with(|| Arc::clone(a));
    }

    let listener = tokio::net::TcpListener::bind(bind).await?;
    let addr = listener.local_addr()?;
    let public_base = config
        .public_base_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}/v1"))
        .trim_end_matches('/')
        .to_string();
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .map_err(std::io::Error::other)?;
    let shared = Arc::new(Shared {
        accounts,
        by_key: std::sync::RwLock::new(by_key),
        rate_limit: config.rate_limit_per_minute,
        time_scale,
        public_base,
        stats: std::sync::Mutex::new(SimStats::default()),
        faults: std::sync::Mutex::new(FaultState {
            faults: Faults::default(),
            rng: rng::SplitMix64::new(0),
            commit_timeouts_left: 0,
        }),
        http,
    });
    let app = server::router(Arc::clone(&shared));
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "keycrm-sim server stopped");
        }
    });
    Ok(SimHandle { shared, addr })
}
