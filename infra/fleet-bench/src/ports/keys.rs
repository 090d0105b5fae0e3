//! Where the KeyCRM keys are kept: a Secrets Manager secret each, or envelope encryption.

use super::*;

/// Where the KeyCRM keys are kept, for the bill.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyStore {
    /// One Secrets Manager secret per connection (before).
    SecretsManager,
    /// Envelope encryption in the table under one KMS key (after).
    Envelope,
}

pub struct Keys {
    pub inner: Arc<store::MemorySecrets>,
    pub ctx: Ctx,
    pub model: KeyStore,
}

#[async_trait]
impl SecretStore for Keys {
    async fn put(&self, name: &str, key: &ApiKey) -> Result<(), StoreError> {
        let shop = self.ctx.index.by_secret.get(name).copied();
        match self.model {
            KeyStore::SecretsManager => self.ctx.meter.secrets_manager(shop),
            KeyStore::Envelope => {
                self.ctx.meter.kms(shop);
                self.ctx.meter.dynamo(shop, "keys.put", 0.0, 1.0);
            }
        }
        self.inner.put(name, key).await
    }
    async fn get(&self, name: &str) -> Result<Option<ApiKey>, StoreError> {
        let shop = self.ctx.index.by_secret.get(name).copied();
        match self.model {
            KeyStore::SecretsManager => self.ctx.meter.secrets_manager(shop),
            KeyStore::Envelope => {
                self.ctx.meter.dynamo(shop, "keys.get", 1.0, 0.0);
                self.ctx.meter.kms(shop);
            }
        }
        self.inner.get(name).await
    }
    async fn delete(&self, name: &str) -> Result<(), StoreError> {
        self.inner.delete(name).await
    }
}
