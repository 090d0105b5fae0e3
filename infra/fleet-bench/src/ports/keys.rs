//! Where the KeyCRM keys are kept: a Secrets Manager secret each, envelope encryption with a
//! data key per API key, or under the deployment's keyring.

use super::*;
use std::sync::atomic::{AtomicBool, Ordering};

/// Where the KeyCRM keys are kept, for the bill.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyStore {
    /// One Secrets Manager secret per connection (before issue 14).
    SecretsManager,
    /// Envelope encryption in the table, a KMS data key per API key: one `Decrypt` per
    /// (instance, connection).
    Envelope,
    /// The table's keys sealed under the deployment's ring key (`store::secrets::kms`): one
    /// `Decrypt` per instance, when it opens its first key.
    Keyring,
}

impl KeyStore {
    /// Whether the keys are in the table under the deployment's KMS key (its $1 a month).
    pub fn uses_kms_key(self) -> bool {
        matches!(self, KeyStore::Envelope | KeyStore::Keyring)
    }
}

/// The store as one Lambda instance sees it (the keyring is unwrapped once per instance).
pub struct Keys {
    pub inner: Arc<store::MemorySecrets>,
    pub ctx: Ctx,
    pub model: KeyStore,
    ring_open: AtomicBool,
}

impl Keys {
    pub fn new(inner: Arc<store::MemorySecrets>, ctx: Ctx, model: KeyStore) -> Self {
        Keys {
            inner,
            ctx,
            model,
            ring_open: AtomicBool::new(false),
        }
    }

    /// The same keys seen by a new instance (cold: its keyring not unwrapped yet).
    pub fn for_instance(&self) -> Self {
        Keys::new(self.inner.clone(), self.ctx.clone(), self.model)
    }
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
            KeyStore::Keyring => {
                if !self.ring_open.swap(true, Ordering::Relaxed) {
                    // The ring key's item, then one Decrypt (or GenerateDataKey) per instance.
                    self.ctx.meter.dynamo(None, "keys.ring", 1.0, 0.0);
                    self.ctx.meter.kms(None);
                }
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
            KeyStore::Keyring => {
                self.ctx.meter.dynamo(shop, "keys.get", 1.0, 0.0);
                if !self.ring_open.swap(true, Ordering::Relaxed) {
                    // The instance's first key: the ring key's item and one Decrypt, the
                    // fleet's own cost (it serves every connection after).
                    self.ctx.meter.dynamo(None, "keys.ring", 1.0, 0.0);
                    self.ctx.meter.kms(None);
                }
            }
        }
        self.inner.get(name).await
    }
    async fn delete(&self, name: &str) -> Result<(), StoreError> {
        self.inner.delete(name).await
    }
}
