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

mod dynamo;
mod memory;

pub use dynamo::CACHE_SK;
pub use memory::MemoryReferenceCache;

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
