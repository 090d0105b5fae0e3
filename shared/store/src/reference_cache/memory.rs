//! The in-memory reference cache (unit tests, the local run).

use crate::reference_cache::is_fresh;
use crate::reference_cache::ReferenceCache;
use crate::StoreError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mapping::SettingsOptions;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

type Entries = HashMap<String, (SettingsOptions, DateTime<Utc>)>;

#[derive(Default)]
pub struct MemoryReferenceCache {
    inner: Mutex<Entries>,
}

impl MemoryReferenceCache {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Entries>, StoreError> {
        self.inner
            .lock()
            .map_err(|_| StoreError::Unavailable("poisoned".into()))
    }
}

#[async_trait]
impl ReferenceCache for MemoryReferenceCache {
    async fn get(
        &self,
        connection_id: &str,
        max_age: Duration,
    ) -> Result<Option<(SettingsOptions, DateTime<Utc>)>, StoreError> {
        Ok(self
            .lock()?
            .get(connection_id)
            .filter(|(_, at)| is_fresh(*at, max_age, Utc::now()))
            .cloned())
    }

    async fn put(
        &self,
        connection_id: &str,
        options: &SettingsOptions,
        _ttl: Duration,
    ) -> Result<(), StoreError> {
        self.lock()?
            .insert(connection_id.to_string(), (options.clone(), Utc::now()));
        Ok(())
    }

    async fn invalidate(&self, connection_id: &str) -> Result<(), StoreError> {
        self.lock()?.remove(connection_id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn put_get_expire_invalidate() {
        let c = MemoryReferenceCache::new();
        let mut o = SettingsOptions::default();
        o.shop.currency = "UAH".into();
        assert!(c.get("a", Duration::from_secs(60)).await.unwrap().is_none());
        c.put("a", &o, Duration::from_secs(60)).await.unwrap();
        let (got, _) = c.get("a", Duration::from_secs(60)).await.unwrap().unwrap();
        assert_eq!(got, o);
        assert!(c.get("b", Duration::from_secs(60)).await.unwrap().is_none());
        assert!(
            c.get("a", Duration::ZERO).await.unwrap().is_none(),
            "older than max_age"
        );
        c.invalidate("a").await.unwrap();
        assert!(c.get("a", Duration::from_secs(60)).await.unwrap().is_none());
    }
}
