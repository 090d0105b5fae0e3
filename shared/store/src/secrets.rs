//! Where KeyCRM API keys live. Adapters: [`EnvelopeSecrets`] (`kms.rs`: envelope-encrypted
//! in the table under the deployment's KMS key, what the cloud uses), [`SecretsManager`]
//! (`secrets_manager.rs`: one secret per connection, where keys stored before the envelope
//! store still are) and [`MemorySecrets`] (`memory.rs`: the local run and unit tests).

use crate::StoreError;
use async_trait::async_trait;
use keycrm::ApiKey;

pub mod kms;
mod memory;
mod secrets_manager;

pub use kms::EnvelopeSecrets;
pub use memory::MemorySecrets;
pub use secrets_manager::SecretsManager;

#[async_trait]
pub trait SecretStore: Send + Sync {
    /// Creates or replaces the secret.
    async fn put(&self, name: &str, key: &ApiKey) -> Result<(), StoreError>;
    async fn get(&self, name: &str) -> Result<Option<ApiKey>, StoreError>;
    /// Removes the secret at once (no recovery window: a disconnected merchant's key must go).
    async fn delete(&self, name: &str) -> Result<(), StoreError>;
    /// Moves a key kept where an older version stored it into this store, if it is there and
    /// this store may move keys; `true` if one was moved. Idempotent.
    async fn migrate(&self, _name: &str) -> Result<bool, StoreError> {
        Ok(false)
    }
}
