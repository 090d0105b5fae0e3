//! Both sides' dictionaries for a connection, cached with a short TTL so opening the settings
//! page twice (and every order push) does not spend the KeyCRM budget again.
//!
//! Adapters: `DynamoTable` (`CONN#{connection}` / `CACHE#options`, `expires_at` TTL plus a
//! freshness check on read, since TTL deletion is lazy) and memory.

use crate::StoreError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mapping::SettingsOptions;
use std::time::Duration;

#[async_trait]
pub trait ReferenceCache: Send + Sync {
    /// The cached options if younger than `max_age`, with when they were fetched.
    async fn get(
        &self,
        connection_id: &str,
        max_age: Duration,
    ) -> Result<Option<(SettingsOptions, DateTime<Utc>)>, StoreError>;
    async fn put(
        &self,
        connection_id: &str,
        options: &SettingsOptions,
        ttl: Duration,
    ) -> Result<(), StoreError>;
    async fn invalidate(&self, connection_id: &str) -> Result<(), StoreError>;
}
