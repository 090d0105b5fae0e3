//! The in-memory [`SecretStore`].

use crate::secrets::SecretStore;
use crate::StoreError;
use async_trait::async_trait;
use keycrm::ApiKey;
use std::collections::HashMap;
use std::sync::Mutex;

/// The embedded store for the local run and unit tests.
#[derive(Default)]
pub struct MemorySecrets {
    inner: Mutex<HashMap<String, ApiKey>>,
}

#[async_trait]
impl SecretStore for MemorySecrets {
    async fn put(&self, name: &str, key: &ApiKey) -> Result<(), StoreError> {
        self.inner
            .lock()
            .map_err(|_| StoreError::Unavailable("poisoned".into()))?
            .insert(name.to_string(), key.clone());
        Ok(())
    }

    async fn get(&self, name: &str) -> Result<Option<ApiKey>, StoreError> {
        Ok(self
            .inner
            .lock()
            .map_err(|_| StoreError::Unavailable("poisoned".into()))?
            .get(name)
            .cloned())
    }

    async fn delete(&self, name: &str) -> Result<(), StoreError> {
        self.inner
            .lock()
            .map_err(|_| StoreError::Unavailable("poisoned".into()))?
            .remove(name);
        Ok(())
    }
}
