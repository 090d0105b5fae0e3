//! A builder for the stored [`Connection`] record, so a test names only what it cares about
//! and a new field of `Connection` is added here once rather than in every test.

use chrono::Utc;
use keycrm::ApiKey;
use mapping::Settings;
use store::{Connection, WebhookGenerations, WebhookTokens};

/// Builds an active, version-1 connection of one shop; every other field has a neutral
/// default (a KeyCRM URL nothing listens on, default settings, no webhook tokens issued).
#[must_use]
pub struct ConnectionBuilder {
    conn: Connection,
}

impl ConnectionBuilder {
    /// Connection `id` of shop `shop`; its key lives at `shop-keycrm/test/keycrm/{id}`.
    pub fn new(id: impl Into<String>, shop: impl Into<String>) -> Self {
        let id = id.into();
        let now = Utc::now();
        ConnectionBuilder {
            conn: Connection {
                secret_name: format!("shop-keycrm/test/keycrm/{id}"),
                id,
                shop_id: shop.into(),
                active: true,
                keycrm_base_url: "http://127.0.0.1:1/v1".into(),
                key_mask: "••••".into(),
                key_fingerprint: "fp".into(),
                settings: Settings::default(),
                webhook_tokens: WebhookTokens::default(),
                webhook_generations: WebhookGenerations::default(),
                account_epoch: 0,
                account_switched_at: None,
                version: 1,
                created_at: now,
                updated_at: now,
            },
        }
    }

    /// The KeyCRM API base URL (e.g. a simulator's `base_url()`).
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.conn.keycrm_base_url = url.into();
        self
    }

    /// The fingerprint of `key`, as a real connect stores it (the key itself is not stored).
    pub fn key(mut self, key: &str) -> Self {
        self.conn.key_fingerprint = ApiKey::new(key).fingerprint();
        self
    }

    /// A literal fingerprint (tests that never reach KeyCRM with a key).
    pub fn fingerprint(mut self, fingerprint: impl Into<String>) -> Self {
        self.conn.key_fingerprint = fingerprint.into();
        self
    }

    pub fn key_mask(mut self, mask: impl Into<String>) -> Self {
        self.conn.key_mask = mask.into();
        self
    }

    pub fn secret_name(mut self, name: impl Into<String>) -> Self {
        self.conn.secret_name = name.into();
        self
    }

    pub fn settings(mut self, settings: Settings) -> Self {
        self.conn.settings = settings;
        self
    }

    pub fn webhook_generations(mut self, generations: WebhookGenerations) -> Self {
        self.conn.webhook_generations = generations;
        self
    }

    pub fn active(mut self, active: bool) -> Self {
        self.conn.active = active;
        self
    }

    pub fn version(mut self, version: u64) -> Self {
        self.conn.version = version;
        self
    }

    pub fn build(self) -> Connection {
        self.conn
    }
}
