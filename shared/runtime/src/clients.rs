//! One KeyCRM client per connection, built from the key in the secret store and sharing the
//! per-key rate gate. Clients are cached per (connection, key) so a warm Lambda does not read
//! the secret on every message, and a replaced key takes effect at once. Every client reports
//! its requests to `metrics::KeycrmMeter`, so KeyCRM traffic is counted in one place.

use crate::metrics::KeycrmMeter;
use keycrm::{ApiKey, ClientConfig, KeycrmClient, KeycrmError, RateGate};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use store::{Connection, SecretStore, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ClientsError {
    #[error("the KeyCRM API key of connection {0} is missing from the secret store")]
    MissingKey(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Keycrm(#[from] KeycrmError),
}

pub struct KeycrmClients {
    secrets: Arc<dyn SecretStore>,
    gate: Arc<dyn RateGate>,
    template: ClientConfig,
    cache: Mutex<HashMap<String, (String, KeycrmClient)>>,
}

impl KeycrmClients {
    pub fn new(
        secrets: Arc<dyn SecretStore>,
        gate: Arc<dyn RateGate>,
        template: ClientConfig,
    ) -> Self {
        KeycrmClients {
            secrets,
            gate,
            template,
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub fn gate(&self) -> Arc<dyn RateGate> {
        self.gate.clone()
    }

    /// Where the keys live (the deleted connection's cleanup removes its key last).
    pub fn secrets(&self) -> Arc<dyn SecretStore> {
        self.secrets.clone()
    }

    /// A client for an API key that is not stored yet (validating a key on connect).
    pub fn for_key(&self, base_url: &str, key: ApiKey) -> Result<KeycrmClient, KeycrmError> {
        self.build(base_url, key, KeycrmMeter::unattributed())
    }

    fn build(
        &self,
        base_url: &str,
        key: ApiKey,
        meter: KeycrmMeter,
    ) -> Result<KeycrmClient, KeycrmError> {
        let mut cfg = self.template.clone();
        cfg.base_url = base_url.to_string();
        // A template's own observer (tests) wins; otherwise the metrics meter.
        if cfg.observer.is_none() {
            cfg.observer = Some(Arc::new(meter));
        }
        KeycrmClient::new(cfg, key, self.gate.clone())
    }

    pub async fn for_connection(&self, conn: &Connection) -> Result<KeycrmClient, ClientsError> {
        let cache_key = conn.id.clone();
        if let Ok(cache) = self.cache.lock() {
            if let Some((fp, client)) = cache.get(&cache_key) {
                if *fp == conn.key_fingerprint {
                    return Ok(client.clone());
                }
            }
        }
        let key = self
            .secrets
            .get(&conn.secret_name)
            .await?
            .ok_or_else(|| ClientsError::MissingKey(conn.id.clone()))?;
        let client = self.build(
            &conn.keycrm_base_url,
            key,
            KeycrmMeter::for_connection(&conn.id),
        )?;
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(cache_key, (conn.key_fingerprint.clone(), client.clone()));
        }
        Ok(client)
    }

    /// Drops a cached client (after the connection is deleted or its key replaced).
    pub fn forget(&self, connection_id: &str) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.remove(connection_id);
        }
    }
}
