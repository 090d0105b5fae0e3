//! What the handlers work with: ports (traits) only, so the same router runs on Lambda with
//! AWS adapters, in the local runner with in-memory ones, and in tests with either.

use crate::auth::TokenSigner;
use queue::Queue;
use runtime::KeycrmClients;
use shop::ShopOrders;
use std::sync::Arc;
use std::time::Duration;
use store::{
    ConnectionStore, LinkStore, OrderLedger, ReferenceCache, SecretStore, StatusJournal, SyncStore,
    TokenKey,
};

#[derive(Clone, Debug)]
pub struct AdminConfig {
    /// Secrets Manager name prefix; a connection's key lives at `{prefix}{connection_id}`.
    pub secret_prefix: String,
    /// The KeyCRM API used when a connect request does not name one.
    pub keycrm_base_url: String,
    /// Other KeyCRM base URLs a connect request may name (e.g. a staging KeyCRM). Anything
    /// else is refused, so the API never sends a merchant's key to an arbitrary host.
    pub allowed_keycrm_base_urls: Vec<String>,
    /// Base of the webhook URLs shown to the merchant (`https://api.example.com`). When unset,
    /// derived from the request (`X-Forwarded-Proto` + `Host`).
    pub public_base_url: Option<String>,
    /// How long the settings page's dictionaries are reused before KeyCRM is asked again.
    pub options_ttl: Duration,
    /// Every request answers within this, whatever KeyCRM does (see [`crate::deadline`]).
    pub request_deadline: Duration,
    /// Origins (`https://admin.example.com`) allowed to embed the settings page in a frame and
    /// to hand it fresh shop tokens (see `docs/settings-page.md`). Empty: the page may not be
    /// framed, and only runs as a window of its own.
    pub page_origins: Vec<String>,
    /// How long after a disconnect its cleanup job becomes visible on the sync-jobs queue
    /// (`store::CLEANUP_GRACE`: work in flight for the connection finishes first).
    pub cleanup_delay: Duration,
}

impl AdminConfig {
    pub fn new(secret_prefix: impl Into<String>, keycrm_base_url: impl Into<String>) -> Self {
        AdminConfig {
            secret_prefix: secret_prefix.into(),
            keycrm_base_url: keycrm_base_url.into(),
            allowed_keycrm_base_urls: Vec::new(),
            public_base_url: None,
            options_ttl: Duration::from_secs(300),
            request_deadline: crate::deadline::DEFAULT_REQUEST_DEADLINE,
            page_origins: Vec::new(),
            cleanup_delay: store::CLEANUP_GRACE,
        }
    }

    /// Normalised form used for comparisons: no trailing slash, no surrounding space.
    pub fn normalise_base(url: &str) -> String {
        url.trim().trim_end_matches('/').to_string()
    }

    /// Parses the page origins setting (comma-separated). Each must be a bare origin:
    /// `http(s)://host[:port]`, no path, no wildcard; a mistake is refused at start-up rather
    /// than turned into a policy nobody meant.
    pub fn parse_page_origins(raw: &str) -> Result<Vec<String>, String> {
        let mut out = Vec::new();
        for item in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let url = url::Url::parse(item).map_err(|_| format!("not an origin: {item}"))?;
            let origin = url.origin().ascii_serialization();
            let bare = item.trim_end_matches('/');
            if !matches!(url.scheme(), "http" | "https") || origin != bare {
                return Err(format!(
                    "not a bare http(s) origin (scheme://host[:port]): {item}"
                ));
            }
            if !out.contains(&origin) {
                out.push(origin);
            }
        }
        Ok(out)
    }

    pub fn is_allowed_base(&self, url: &str) -> bool {
        let u = Self::normalise_base(url);
        Self::normalise_base(&self.keycrm_base_url) == u
            || self
                .allowed_keycrm_base_urls
                .iter()
                .any(|a| Self::normalise_base(a) == u)
    }
}

/// Everything a handler may touch.
pub struct AdminApi {
    pub config: AdminConfig,
    pub signer: TokenSigner,
    /// What webhook URL tokens derive from (`WEBHOOK_TOKEN_KEY_SECRET_ARN`).
    pub token_key: TokenKey,
    pub connections: Arc<dyn ConnectionStore>,
    pub secrets: Arc<dyn SecretStore>,
    pub journal: Arc<dyn StatusJournal>,
    pub cache: Arc<dyn ReferenceCache>,
    pub ledger: Arc<dyn OrderLedger>,
    pub sync: Arc<dyn SyncStore>,
    /// Catalog links (read to tell whether a new key opens the same KeyCRM account).
    pub links: Arc<dyn LinkStore>,
    pub clients: Arc<KeycrmClients>,
    pub shop: Arc<dyn ShopOrders>,
    /// Re-pushed `order.created` events go here (order-push consumes it).
    pub order_queue: Arc<dyn Queue>,
    /// On-demand sync jobs go here (catalog-sync consumes it).
    pub sync_queue: Arc<dyn Queue>,
}

pub type AppState = Arc<AdminApi>;
