//! Dictionaries cached per connection so they do not spend the KeyCRM budget again:
//! - [`ReferenceCache`]: both sides' options for the settings page (a short TTL: opening the
//!   page twice costs nothing);
//! - [`DictionaryCache`]: the KeyCRM dictionaries order push maps orders with, shared by every
//!   warm order-push instance. Without it each instance loaded them itself (three KeyCRM
//!   requests), and since a connection's orders land on whichever instance is free, nearly
//!   every order of a shop with tens of orders a day paid for them: in the fleet benchmark 88%
//!   of the orders, more than half of all KeyCRM requests.
//!
//! Adapters: `DynamoTable` (`CONN#{connection}` / `CACHE#options` and `CACHE#dictionaries`,
//! `expires_at` TTL plus a freshness check on read, since TTL deletion is lazy) and memory.

use crate::StoreError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mapping::{KeycrmReference, OrderSyncType, SettingsOptions};
use serde::{Deserialize, Serialize};
use std::time::Duration;

mod dynamo;
mod memory;

pub use dynamo::{CACHE_SK, DICTIONARIES_SK};
pub use memory::{MemoryDictionaryCache, MemoryReferenceCache};

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

/// A connection's KeyCRM dictionaries as order push loaded them, with what they were loaded
/// for: an entry of another connection version (settings saved since) or sync type is stale.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CachedDictionaries {
    pub version: u64,
    pub sync: OrderSyncType,
    pub reference: KeycrmReference,
}

#[async_trait]
pub trait DictionaryCache: Send + Sync {
    /// The cached dictionaries if younger than `max_age`, with when they were fetched.
    async fn get(
        &self,
        connection_id: &str,
        max_age: Duration,
    ) -> Result<Option<(CachedDictionaries, DateTime<Utc>)>, StoreError>;
    async fn put(
        &self,
        connection_id: &str,
        dictionaries: &CachedDictionaries,
        ttl: Duration,
    ) -> Result<(), StoreError>;
    async fn invalidate(&self, connection_id: &str) -> Result<(), StoreError>;
}

/// Whether an entry fetched at `fetched_at` may still be served (both adapters ask this).
pub(crate) fn is_fresh(fetched_at: DateTime<Utc>, max_age: Duration, now: DateTime<Utc>) -> bool {
    let age = now.signed_duration_since(fetched_at);
    // A clock step backwards makes the entry look young; never trust one from the future.
    age >= chrono::Duration::zero() && age.to_std().map(|a| a < max_age).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freshness() {
        let now = Utc::now();
        let d = Duration::from_secs(300);
        assert!(is_fresh(now - chrono::Duration::seconds(10), d, now));
        assert!(!is_fresh(now - chrono::Duration::seconds(300), d, now));
        assert!(!is_fresh(now + chrono::Duration::seconds(10), d, now));
    }
}
