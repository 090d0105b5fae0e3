//! KeyCRM API keys under envelope encryption with a keyring: one KMS key for the whole
//! deployment, a few ring keys made by it, each API key encrypted locally under the current
//! ring key, the ciphertext in the table.
//!
//! **Why.** One Secrets Manager secret per connection costs $0.40 a month, eight times the
//! whole monthly target of a typical shop (BENCHMARKS.md, "Fleet"). Encrypting each key under
//! its own KMS data key (this store's first format, `v = 1`) fixed that but cost one KMS
//! `Decrypt` ($0.03 per 10,000) per warm Lambda instance *and connection*: about 55 a shop a
//! day. As the AWS Encryption SDK's hierarchical keyring does, the data key is now shared: a
//! deployment-wide **ring key** (AES-256, made by KMS `GenerateDataKey` under the deployment's
//! key, stored only wrapped, in the table: `ring.rs`) encrypts every API key. A warm instance
//! unwraps a ring key once and keeps the cipher; reading any number of connections' keys then
//! costs one `GetItem` each and **one KMS `Decrypt` per instance** (per ring key in use).
//!
//! **Items.** `SECRET#{name}` / `KEY`: `v = 2`, `ring` (the ring key's id), `nonce` (12 random
//! bytes), `ct` (AES-256-GCM of the key; associated data `"v2\0{ring}\0{name}"`).
//! `KEYRING` / `K#{id}`: one immutable item per ring key (`dek`: the wrapped key, encryption
//! context `purpose = keycrm-api-key`, `ring = {id}`); `KEYRING` / `CURRENT`: a copy of the one
//! new keys are sealed under, replaced after 90 days (older ring keys stay, so everything
//! sealed under them still opens). Only `put` makes ring keys; reading never does (the
//! functions that only read have `kms:Decrypt` alone). Items of the first format (`v = 1`:
//! `dek` = the key's own wrapped data key, encryption context `purpose` and `secret` = the
//! name, the name as associated data) are still read the way they always were, one `Decrypt`
//! each; they move to `v = 2` whenever the key is next stored.
//!
//! The guarantees of the Secrets Manager store hold:
//! - **Who can read a key** is decided by KMS: only the functions granted `kms:Decrypt` on
//!   this key, for this purpose (encryption context `purpose = keycrm-api-key`), can unwrap a
//!   ring key and so turn an item into a key. The internet-facing webhook cannot even read the
//!   items (its IAM policy is limited to `CONN#` partitions).
//! - **A key is bound to its name**: the AES-GCM associated data carries the format, the ring
//!   id and the secret name, so an item copied to another connection's name, or pointed at
//!   another ring key, does not decrypt (it is reported as unreadable, [`StoreError::Corrupt`],
//!   never as another connection's key). A ring key is bound to its id by its encryption
//!   context.
//! - **Nothing leaks**: the plaintext exists only inside [`ApiKey`] (masked in `Debug` and
//!   `Display`, never serialised); a ring key only as the cipher held in memory (never logged,
//!   never in `Debug`, which shows a count); errors say which service failed, never a value.
//!   Sizes are checked (a nonce or key of the wrong length is unreadable, never a panic).
//! - **Keys stored before** (in Secrets Manager, under the same name) are still read; a store
//!   built with [`EnvelopeSecrets::migrating`] moves such a key into the table on first read
//!   and deletes the old secret.

use crate::dynamo::{self, DynamoTable};
use crate::secrets::{SecretStore, SecretsManager};
use crate::StoreError;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use async_trait::async_trait;
use aws_sdk_dynamodb::primitives::Blob as DynBlob;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_kms::primitives::Blob;
use keycrm::ApiKey;
use rand::RngCore;
use std::sync::Arc;

mod ring;
#[cfg(feature = "test-kit")]
mod v1_writer;

pub use ring::MAX_AGE_DAYS as RING_KEY_MAX_AGE_DAYS;

/// The encryption context every wrapped key carries (`kms:EncryptionContext:purpose` in the
/// template's IAM conditions).
pub const PURPOSE: &str = "keycrm-api-key";

/// Formats of the stored item: a data key of its own (read only), or sealed under a ring key.
const V1: i64 = 1;
const V2: i64 = 2;
const NONCE_LEN: usize = 12;

/// `key` encrypted under `cipher` with a fresh random nonce, bound to `aad`: the nonce and
/// the sealed bytes.
fn encrypt_key(
    cipher: &Aes256Gcm,
    key: &ApiKey,
    aad: &[u8],
) -> Result<([u8; NONCE_LEN], Vec<u8>), StoreError> {
    let mut nonce = [0u8; NONCE_LEN];
    rand::thread_rng().fill_bytes(&mut nonce);
    let sealed = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: key.expose().as_bytes(),
                aad,
            },
        )
        .map_err(|_| StoreError::Unavailable("the key could not be encrypted".into()))?;
    Ok((nonce, sealed))
}

/// The AES-GCM associated data of a `v = 2` item: format, ring id (fixed length) and name.
fn aad_v2(ring: &str, name: &str) -> Vec<u8> {
    format!("v2\0{ring}\0{name}").into_bytes()
}

fn unreadable() -> StoreError {
    StoreError::Corrupt("a stored KeyCRM API key could not be decrypted".into())
}

/// Unwraps a data key KMS wrapped under `key_id` with `purpose` and `context` in its
/// encryption context, as an AES-256-GCM cipher. A key wrapped for another context (another
/// name or ring id, or another KMS key) or not exactly 32 bytes is `unreadable()`; KMS failing
/// is `Unavailable`.
pub(crate) async fn unwrap_key(
    kms: &aws_sdk_kms::Client,
    key_id: &str,
    wrapped: Vec<u8>,
    context: (&str, &str),
    unreadable: fn() -> StoreError,
) -> Result<Aes256Gcm, StoreError> {
    let plain = kms
        .decrypt()
        .key_id(key_id)
        .ciphertext_blob(Blob::new(wrapped))
        .encryption_context("purpose", PURPOSE)
        .encryption_context(context.0, context.1)
        .send()
        .await
        .map_err(|e| match e.as_service_error() {
            Some(se) if se.is_invalid_ciphertext_exception() => unreadable(),
            _ => StoreError::Unavailable(crate::aws_error::logged("KMS", &e)),
        })?
        .plaintext
        .ok_or_else(unreadable)?;
    // Exactly an AES-256 key (`new_from_slice` refuses any other length).
    Aes256Gcm::new_from_slice(plain.as_ref()).map_err(|_| unreadable())
}

/// The envelope-encrypted key store (see the module documentation).
#[derive(Clone)]
pub struct EnvelopeSecrets {
    table: DynamoTable,
    kms: aws_sdk_kms::Client,
    key_id: String,
    /// Where keys were kept before: read (and, when migrating, moved and deleted).
    legacy: Option<SecretsManager>,
    migrate: bool,
    /// Ring keys this instance has unwrapped (shared by all clones).
    ring: Arc<ring::Keyring>,
}

impl std::fmt::Debug for EnvelopeSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvelopeSecrets")
            .field("table", &self.table.name)
            .field("legacy", &self.legacy.is_some())
            .field("migrate", &self.migrate)
            .field("ring_keys_unwrapped", &self.ring.cached())
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
            ring: Arc::default(),
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

    /// A key's item in format `v`: the nonce and ciphertext, and when it was written (the
    /// format's own attributes are added by the caller).
    fn key_item(name: &str, v: i64, nonce: &[u8], sealed: Vec<u8>) -> dynamo::Item {
        let mut item = dynamo::key(Self::pk(name), "KEY");
        item.insert("v".into(), dynamo::n(v));
        item.insert(
            "nonce".into(),
            AttributeValue::B(DynBlob::new(nonce.to_vec())),
        );
        item.insert("ct".into(), AttributeValue::B(DynBlob::new(sealed)));
        item.insert(
            "updated_at".into(),
            dynamo::s(chrono::Utc::now().to_rfc3339()),
        );
        item
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

    /// Seals `key` for `name` under the current ring key (made if there is none).
    async fn seal(&self, name: &str, key: &ApiKey) -> Result<dynamo::Item, StoreError> {
        let (ring_id, cipher) = self.sealing_ring_key().await?;
        let (nonce, sealed) = encrypt_key(&cipher, key, &aad_v2(&ring_id, name))?;
        let mut item = Self::key_item(name, V2, &nonce, sealed);
        item.insert("ring".into(), dynamo::s(ring_id));
        Ok(item)
    }

    async fn open(&self, name: &str, item: &dynamo::Item) -> Result<ApiKey, StoreError> {
        match item.get("v") {
            // Items of the first format (which never went without `v`).
            None => self.open_v1(name, item).await,
            Some(AttributeValue::N(v)) if v.parse::<i64>().ok() == Some(V1) => {
                self.open_v1(name, item).await
            }
            Some(AttributeValue::N(v)) if v.parse::<i64>().ok() == Some(V2) => {
                self.open_v2(name, item).await
            }
            // A format this version does not know.
            _ => Err(unreadable()),
        }
    }

    /// A `v = 2` item: its ring key (cached, else unwrapped once), then AES-GCM.
    async fn open_v2(&self, name: &str, item: &dynamo::Item) -> Result<ApiKey, StoreError> {
        let (Some(ring_id), Some(nonce), Some(sealed)) = (
            dynamo::get_s(item, "ring"),
            ring::bin(item, "nonce"),
            ring::bin(item, "ct"),
        ) else {
            return Err(unreadable());
        };
        if nonce.len() != NONCE_LEN {
            return Err(unreadable());
        }
        let cipher = self.ring_key(&ring_id).await?;
        let bytes = cipher
            .decrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &sealed,
                    aad: &aad_v2(&ring_id, name),
                },
            )
            .map_err(|_| unreadable())?;
        let text = String::from_utf8(bytes).map_err(|_| unreadable())?;
        Ok(ApiKey::new(text))
    }

    /// A `v = 1` item: its own data key, one KMS `Decrypt` per read.
    async fn open_v1(&self, name: &str, item: &dynamo::Item) -> Result<ApiKey, StoreError> {
        let bin = |k: &str| ring::bin(item, k);
        let (Some(wrapped), Some(nonce), Some(sealed)) = (bin("dek"), bin("nonce"), bin("ct"))
        else {
            return Err(unreadable());
        };
        if nonce.len() != NONCE_LEN {
            return Err(unreadable());
        }
        let cipher = unwrap_key(
            &self.kms,
            &self.key_id,
            wrapped,
            ("secret", name),
            unreadable,
        )
        .await?;
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
        self.table.put_item(item).await?;
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
