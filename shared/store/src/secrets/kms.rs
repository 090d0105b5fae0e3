//! KeyCRM API keys under envelope encryption: one KMS key for the whole deployment, a fresh
//! data key per stored API key, the ciphertext in the table.
//!
//! One Secrets Manager secret per connection costs $0.40 a month, eight times the whole
//! monthly target of a typical shop (BENCHMARKS.md, "Fleet"). Here each API key is encrypted
//! locally with AES-256-GCM under its own data key; the data key is stored only wrapped by the
//! deployment's KMS key (`GenerateDataKey`), next to the ciphertext, in one item
//! `SECRET#{name}` / `KEY`. Reading it takes one `GetItem` and one KMS `Decrypt` (per cold
//! start and connection: `runtime::KeycrmClients` caches the client).
//!
//! The guarantees of the Secrets Manager store hold:
//! - **Who can read a key** is decided by KMS: only the functions granted `kms:Decrypt` on
//!   this key, for this purpose (encryption context `purpose = keycrm-api-key`), can turn an
//!   item into a key. The internet-facing webhook cannot even read the items (its IAM policy
//!   is limited to `CONN#` partitions).
//! - **A key is bound to its name**: the encryption context and the AES-GCM associated data
//!   both carry the secret name, so an item copied to another connection's name does not
//!   decrypt (it is reported as unreadable, never as another connection's key).
//! - **Nothing leaks**: the plaintext exists only inside [`ApiKey`] (masked in `Debug` and
//!   `Display`, never serialised); errors say which service failed, never a value.
//! - **Keys stored before** (in Secrets Manager, under the same name) are still read; a store
//!   built with [`EnvelopeSecrets::migrating`] moves such a key into the table on first read
//!   and deletes the old secret.

use crate::dynamo::{self, DynamoTable};
use crate::secrets::{SecretStore, SecretsManager};
use crate::StoreError;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use async_trait::async_trait;
use aws_sdk_dynamodb::primitives::Blob as DynBlob;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use keycrm::ApiKey;
use rand::RngCore;

/// The encryption context every wrapped data key carries (`kms:EncryptionContext:purpose` in
/// the template's IAM conditions).
pub const PURPOSE: &str = "keycrm-api-key";

/// Format of the stored item.
const VERSION: i64 = 1;
const NONCE_LEN: usize = 12;

/// The envelope-encrypted key store (see the module documentation).
#[derive(Clone)]
pub struct EnvelopeSecrets {
    table: DynamoTable,
    kms: aws_sdk_kms::Client,
    key_id: String,
    /// Where keys were kept before: read (and, when migrating, moved and deleted).
    legacy: Option<SecretsManager>,
    migrate: bool,
}

impl std::fmt::Debug for EnvelopeSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvelopeSecrets")
            .field("table", &self.table.name)
            .field("legacy", &self.legacy.is_some())
            .field("migrate", &self.migrate)
            .finish()
    }
}

impl EnvelopeSecrets {
    /// A store that reads keys kept in Secrets Manager before (`legacy`) but leaves them
    /// there: for functions that may only read keys.
    pub fn new(
        table: DynamoTable,
        kms: aws_sdk_kms::Client,
        key_id: impl Into<String>,
        legacy: Option<SecretsManager>,
    ) -> Self {
        EnvelopeSecrets {
            table,
            kms,
            key_id: key_id.into(),
            legacy,
            migrate: false,
        }
    }

    /// A store that moves a key found only in Secrets Manager into the table on first read,
    /// then deletes the old secret (the admin API and catalog-sync, which may write keys).
    pub fn migrating(
        table: DynamoTable,
        kms: aws_sdk_kms::Client,
        key_id: impl Into<String>,
        legacy: SecretsManager,
    ) -> Self {
        EnvelopeSecrets {
            migrate: true,
            ..Self::new(table, kms, key_id, Some(legacy))
        }
    }

    fn pk(name: &str) -> String {
        format!("SECRET#{name}")
    }

    /// Whether a key of this name is stored in the table (not only in Secrets Manager).
    pub async fn is_stored(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self.read_item(name, false).await?.is_some())
    }

    /// Moves a key kept in Secrets Manager into the table and deletes the old secret; `true`
    /// if there was one to move. Idempotent. (Only a [`EnvelopeSecrets::migrating`] store.)
    async fn move_legacy(&self, name: &str) -> Result<bool, StoreError> {
        if !self.migrate {
            return Ok(false);
        }
        if self.is_stored(name).await? {
            // Stored already; an old secret left by an interrupted move goes now.
            if let Some(legacy) = &self.legacy {
                legacy.delete(name).await?;
            }
            return Ok(false);
        }
        let Some(legacy) = &self.legacy else {
            return Ok(false);
        };
        match legacy.get(name).await? {
            Some(key) => {
                self.put(name, &key).await?;
                legacy.delete(name).await?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn read_item(
        &self,
        name: &str,
        consistent: bool,
    ) -> Result<Option<dynamo::Item>, StoreError> {
        let out = self
            .table
            .client
            .get_item()
            .table_name(&self.table.name)
            .set_key(Some(dynamo::key(Self::pk(name), "KEY")))
            .consistent_read(consistent)
            .send()
            .await
            .map_err(dynamo::sdk)?;
        Ok(out.item)
    }

    async fn seal(&self, name: &str, key: &ApiKey) -> Result<dynamo::Item, StoreError> {
        let data_key = self
            .kms
            .generate_data_key()
            .key_id(&self.key_id)
            .key_spec(DataKeySpec::Aes256)
            .encryption_context("purpose", PURPOSE)
            .encryption_context("secret", name)
            .send()
            .await
            .map_err(|e| StoreError::Unavailable(crate::aws_error::logged("KMS", &e)))?;
        let (Some(plain), Some(wrapped)) = (data_key.plaintext, data_key.ciphertext_blob) else {
            return Err(StoreError::Unavailable(
                "KMS returned no data key".to_string(),
            ));
        };
        let cipher = Aes256Gcm::new_from_slice(plain.as_ref()).map_err(|_| {
            StoreError::Unavailable("KMS returned a data key of the wrong size".into())
        })?;
        let mut nonce = [0u8; NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut nonce);
        let sealed = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: key.expose().as_bytes(),
                    aad: name.as_bytes(),
                },
            )
            .map_err(|_| StoreError::Unavailable("the key could not be encrypted".into()))?;
        let mut item = dynamo::key(Self::pk(name), "KEY");
        item.insert("v".into(), dynamo::n(VERSION));
        item.insert(
            "dek".into(),
            AttributeValue::B(DynBlob::new(wrapped.into_inner())),
        );
        item.insert(
            "nonce".into(),
            AttributeValue::B(DynBlob::new(nonce.to_vec())),
        );
        item.insert("ct".into(), AttributeValue::B(DynBlob::new(sealed)));
        item.insert(
            "updated_at".into(),
            dynamo::s(chrono::Utc::now().to_rfc3339()),
        );
        Ok(item)
    }

    async fn open(&self, name: &str, item: &dynamo::Item) -> Result<ApiKey, StoreError> {
        let unreadable =
            || StoreError::Corrupt("a stored KeyCRM API key could not be decrypted".into());
        let bin = |k: &str| match item.get(k) {
            Some(AttributeValue::B(b)) => Some(b.as_ref().to_vec()),
            _ => None,
        };
        let (Some(wrapped), Some(nonce), Some(sealed)) = (bin("dek"), bin("nonce"), bin("ct"))
        else {
            return Err(unreadable());
        };
        if nonce.len() != NONCE_LEN {
            return Err(unreadable());
        }
        let plain = self
            .kms
            .decrypt()
            .key_id(&self.key_id)
            .ciphertext_blob(Blob::new(wrapped))
            .encryption_context("purpose", PURPOSE)
            .encryption_context("secret", name)
            .send()
            .await
            .map_err(|e| match e.as_service_error() {
                // The wrapped key belongs to another name (or another KMS key): unreadable.
                Some(se) if se.is_invalid_ciphertext_exception() => unreadable(),
                _ => StoreError::Unavailable(crate::aws_error::logged("KMS", &e)),
            })?
            .plaintext
            .ok_or_else(unreadable)?;
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(
            plain.as_ref().get(..32).ok_or_else(unreadable)?,
        ));
        let bytes = cipher
            .decrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &sealed,
                    aad: name.as_bytes(),
                },
            )
            .map_err(|_| unreadable())?;
        let text = String::from_utf8(bytes).map_err(|_| unreadable())?;
        Ok(ApiKey::new(text))
    }
}

#[async_trait]
impl SecretStore for EnvelopeSecrets {
    async fn put(&self, name: &str, key: &ApiKey) -> Result<(), StoreError> {
        let item = self.seal(name, key).await?;
        self.table
            .client
            .put_item()
            .table_name(&self.table.name)
            .set_item(Some(item))
            .send()
            .await
            .map_err(dynamo::sdk)?;
        // A key the same name had in Secrets Manager is superseded: it must not linger (or be
        // read back by an older version of a function).
        if self.migrate {
            if let Some(legacy) = &self.legacy {
                legacy.delete(name).await?;
            }
        }
        Ok(())
    }

    async fn get(&self, name: &str) -> Result<Option<ApiKey>, StoreError> {
        // Consistent: a key replaced a moment ago must not be read as the old one.
        if let Some(item) = self.read_item(name, true).await? {
            return self.open(name, &item).await.map(Some);
        }
        let Some(legacy) = &self.legacy else {
            return Ok(None);
        };
        let Some(key) = legacy.get(name).await? else {
            return Ok(None);
        };
        if self.migrate {
            match self.put(name, &key).await {
                Ok(()) => tracing::info!(
                    "a KeyCRM API key was moved from Secrets Manager to envelope encryption"
                ),
                // The key was read; moving it can wait for the next read.
                Err(e) => {
                    tracing::warn!(error = %e, "could not move a KeyCRM API key out of Secrets Manager")
                }
            }
        }
        Ok(Some(key))
    }

    async fn delete(&self, name: &str) -> Result<(), StoreError> {
        self.table
            .client
            .delete_item()
            .table_name(&self.table.name)
            .set_key(Some(dynamo::key(Self::pk(name), "KEY")))
            .send()
            .await
            .map_err(dynamo::sdk)?;
        if let Some(legacy) = &self.legacy {
            legacy.delete(name).await?;
        }
        Ok(())
    }

    async fn migrate(&self, name: &str) -> Result<bool, StoreError> {
        self.move_legacy(name).await
    }
}
