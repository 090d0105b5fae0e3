//! The in-memory caches (unit tests, the local run, the fleet benchmark).

use crate::reference_cache::{is_fresh, CachedDictionaries, DictionaryCache, ReferenceCache};
use crate::StoreError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mapping::SettingsOptions;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// Documents per connection, with when they were stored.
type Docs<T> = HashMap<String, (T, DateTime<Utc>)>;

/// Documents of type `T` per connection, with when they were stored.
pub struct MemoryDocs<T> {
    inner: Mutex<Docs<T>>,
}

impl<T> Default for MemoryDocs<T> {
    fn default() -> Self {
        MemoryDocs {
            inner: Mutex::new(HashMap::new()),
        }
    }
}

pub type MemoryReferenceCache = MemoryDocs<SettingsOptions>;
pub type MemoryDictionaryCache = MemoryDocs<CachedDictionaries>;

impl<T: Clone> MemoryDocs<T> {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Docs<T>>, StoreError> {
        self.inner
            .lock()
            .map_err(|_| StoreError::Unavailable("poisoned".into()))
    }

    fn get_doc(
        &self,
        connection_id: &str,
        max_age: Duration,
    ) -> Result<Option<(T, DateTime<Utc>)>, StoreError> {
        Ok(self
            .lock()?
            .get(connection_id)
            .filter(|(_, at)| is_fresh(*at, max_age, Utc::now()))
            .cloned())
    }

    fn put_doc(&self, connection_id: &str, doc: &T) -> Result<(), StoreError> {
        self.lock()?
            .insert(connection_id.to_string(), (doc.clone(), Utc::now()));
        Ok(())
    }

    fn remove(&self, connection_id: &str) -> Result<(), StoreError> {
        self.lock()?.remove(connection_id);
        Ok(())
    }
}

#[async_trait]
impl ReferenceCache for MemoryDocs<SettingsOptions> {
    async fn get(
        &self,
        connection_id: &str,
        max_age: Duration,
    ) -> Result<Option<(SettingsOptions, DateTime<Utc>)>, StoreError> {
        self.get_doc(connection_id, max_age)
    }

    async fn put(
        &self,
        connection_id: &str,
        options: &SettingsOptions,
        _ttl: Duration,
    ) -> Result<(), StoreError> {
        self.put_doc(connection_id, options)
    }

    async fn invalidate(&self, connection_id: &str) -> Result<(), StoreError> {
        self.remove(connection_id)
    }
}

#[async_trait]
impl DictionaryCache for MemoryDocs<CachedDictionaries> {
    async fn get(
        &self,
        connection_id: &str,
        max_age: Duration,
    ) -> Result<Option<(CachedDictionaries, DateTime<Utc>)>, StoreError> {
        self.get_doc(connection_id, max_age)
    }

    async fn put(
        &self,
        connection_id: &str,
        dictionaries: &CachedDictionaries,
        _ttl: Duration,
    ) -> Result<(), StoreError> {
        self.put_doc(connection_id, dictionaries)
    }

    async fn invalidate(&self, connection_id: &str) -> Result<(), StoreError> {
        self.remove(connection_id)
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
