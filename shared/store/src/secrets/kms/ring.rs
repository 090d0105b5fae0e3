//! The keyring: the deployment's ring keys, each an AES-256 key made by KMS
//! (`GenerateDataKey`) and stored only wrapped, in the table (see the parent module for why).
//!
//! Items, partition `KEYRING`:
//! - `K#{id}`: one per ring key, written once (`attribute_not_exists`) and never changed, so
//!   keys sealed under a ring key open for as long as it exists: `id` (128 random bits, hex),
//!   `dek` (the key wrapped by KMS, encryption context `purpose = keycrm-api-key` and
//!   `ring = {id}`), `created_at`.
//! - `CURRENT`: a copy of the item of the ring key new keys are sealed under. Created by the
//!   first `put` on an empty table (`attribute_not_exists`); replaced by the first `put` after
//!   it is [`MAX_AGE_DAYS`] old (conditional on the id it replaces). A store losing either race
//!   deletes the ring key it made (nothing was sealed under it) and uses the winner's.
//!
//! An instance unwraps a ring key once (one KMS `Decrypt`) and keeps the cipher, never the raw
//! bytes, in [`Keyring`], shared by every clone of the store.

use super::{EnvelopeSecrets, PURPOSE};
use crate::dynamo::{self, Item};
use crate::StoreError;
use aes_gcm::{Aes256Gcm, KeyInit};
use aws_sdk_dynamodb::primitives::Blob as DynBlob;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_kms::types::DataKeySpec;
use chrono::{DateTime, Utc};
use rand::RngCore;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Partition of the ring key items.
pub const PK: &str = "KEYRING";
/// Sort key of the ring key new API keys are sealed under.
pub const CURRENT: &str = "CURRENT";
/// Age after which the next `put` seals under a new ring key.
pub const MAX_AGE_DAYS: i64 = 90;
/// Length of a ring id: 128 bits in lowercase hex.
const ID_LEN: usize = 32;
const KEY_LEN: usize = 32;
/// Attempts at reading or making the current ring key when other stores keep changing it.
const ATTEMPTS: usize = 3;

/// Sort key of ring key `id`'s immutable item.
pub fn sk(id: &str) -> String {
    format!("K#{id}")
}

/// Whether `id` has the shape of a ring id (anything else in an item is not looked up).
pub fn valid_id(id: &str) -> bool {
    id.len() == ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Whether a ring key made at `created_at` may still seal new keys at `now`.
fn fresh(created_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    now.signed_duration_since(created_at) < chrono::Duration::days(MAX_AGE_DAYS)
}

fn unreadable() -> StoreError {
    StoreError::Corrupt("a ring key of the stored KeyCRM API keys could not be decrypted".into())
}

/// What a warm instance knows of the keyring (shared by the clones of one store).
#[derive(Default)]
pub struct Keyring {
    /// Unwrapped ring keys by id.
    ciphers: Mutex<HashMap<String, Arc<Aes256Gcm>>>,
    /// The ring key this instance seals under, and when it was made.
    current: Mutex<Option<(String, DateTime<Utc>)>>,
    /// One KMS call at a time: requests needing a ring key another is unwrapping (or making)
    /// wait for it instead of calling KMS themselves.
    loading: tokio::sync::Mutex<()>,
}

impl Keyring {
    /// How many ring keys this instance holds unwrapped (for `Debug`: a count, nothing else).
    pub fn cached(&self) -> usize {
        self.ciphers.lock().map(|c| c.len()).unwrap_or(0)
    }

    fn cipher(&self, id: &str) -> Option<Arc<Aes256Gcm>> {
        self.ciphers.lock().ok()?.get(id).cloned()
    }

    fn remember(&self, id: &str, cipher: Arc<Aes256Gcm>) {
        if let Ok(mut c) = self.ciphers.lock() {
            c.insert(id.to_string(), cipher);
        }
    }

    fn set_current(&self, id: &str, created_at: DateTime<Utc>) {
        if let Ok(mut c) = self.current.lock() {
            *c = Some((id.to_string(), created_at));
        }
    }

    /// The current ring key, if this instance knows one still young enough to seal under.
    fn fresh_current(&self, now: DateTime<Utc>) -> Option<(String, Arc<Aes256Gcm>)> {
        let (id, created_at) = self.current.lock().ok()?.clone()?;
        if !fresh(created_at, now) {
            return None;
        }
        let cipher = self.cipher(&id)?;
        Some((id, cipher))
    }
}

impl EnvelopeSecrets {
    /// The ring key `id` (an id read from a sealed item): from the cache, else its `K#{id}`
    /// item, unwrapped once. Never creates anything.
    pub(super) async fn ring_key(&self, id: &str) -> Result<Arc<Aes256Gcm>, StoreError> {
        if !valid_id(id) {
            return Err(unreadable());
        }
        if let Some(c) = self.ring.cipher(id) {
            return Ok(c);
        }
        let _one_at_a_time = self.ring.loading.lock().await;
        if let Some(c) = self.ring.cipher(id) {
            return Ok(c);
        }
        let item = self.ring_item(&sk(id)).await?.ok_or_else(|| {
            StoreError::Corrupt(
                "a stored KeyCRM API key names a ring key that does not exist".into(),
            )
        })?;
        let wrapped = bin(&item, "dek").ok_or_else(unreadable)?;
        let cipher = self.unwrap_ring_key(id, wrapped).await?;
        self.ring.remember(id, cipher.clone());
        Ok(cipher)
    }

    /// The ring key to seal under: the current one (cached, else read from `CURRENT`), made
    /// when there is none and replaced when it is [`MAX_AGE_DAYS`] old.
    pub(super) async fn sealing_ring_key(&self) -> Result<(String, Arc<Aes256Gcm>), StoreError> {
        if let Some(k) = self.ring.fresh_current(Utc::now()) {
            return Ok(k);
        }
        let _one_at_a_time = self.ring.loading.lock().await;
        if let Some(k) = self.ring.fresh_current(Utc::now()) {
            return Ok(k);
        }
        for _ in 0..ATTEMPTS {
            let made = match self.ring_item(CURRENT).await? {
                None => self.make_ring_key(None).await,
                Some(item) => {
                    let id = dynamo::get_s(&item, "id")
                        .filter(|id| valid_id(id))
                        .ok_or_else(unreadable)?;
                    // A creation time that cannot be read counts as too old: replaced.
                    let created_at = dynamo::get_s(&item, "created_at")
                        .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
                        .map(|t| t.with_timezone(&Utc));
                    match created_at {
                        Some(created_at) if fresh(created_at, Utc::now()) => {
                            let cipher = match self.ring.cipher(&id) {
                                Some(c) => c,
                                None => {
                                    let wrapped = bin(&item, "dek").ok_or_else(unreadable)?;
                                    let c = self.unwrap_ring_key(&id, wrapped).await?;
                                    self.ring.remember(&id, c.clone());
                                    c
                                }
                            };
                            self.ring.set_current(&id, created_at);
                            return Ok((id, cipher));
                        }
                        _ => self.make_ring_key(Some(&id)).await,
                    }
                }
            };
            match made {
                Ok(k) => return Ok(k),
                // Another store made or replaced it first: read theirs.
                Err(e) if dynamo::is_condition_failure(&e) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Conflict(
            "the current ring key kept changing while it was read".into(),
        ))
    }

    /// Makes a ring key and makes it `CURRENT`: in place of none (`replacing = None`) or of
    /// ring key `replacing`. `Conflict` if another store got there first.
    async fn make_ring_key(
        &self,
        replacing: Option<&str>,
    ) -> Result<(String, Arc<Aes256Gcm>), StoreError> {
        let mut raw = [0u8; ID_LEN / 2];
        rand::thread_rng().fill_bytes(&mut raw);
        let id = hex::encode(raw);
        let data_key = self
            .kms
            .generate_data_key()
            .key_id(&self.key_id)
            .key_spec(DataKeySpec::Aes256)
            .encryption_context("purpose", PURPOSE)
            .encryption_context("ring", &id)
            .send()
            .await
            .map_err(|e| StoreError::Unavailable(crate::aws_error::logged("KMS", &e)))?;
        let (Some(plain), Some(wrapped)) = (data_key.plaintext, data_key.ciphertext_blob) else {
            return Err(StoreError::Unavailable(
                "KMS returned no data key".to_string(),
            ));
        };
        if plain.as_ref().len() != KEY_LEN {
            return Err(StoreError::Unavailable(
                "KMS returned a data key of the wrong size".into(),
            ));
        }
        let cipher = Arc::new(Aes256Gcm::new_from_slice(plain.as_ref()).map_err(|_| {
            StoreError::Unavailable("KMS returned a data key of the wrong size".into())
        })?);
        drop(plain);
        let created_at = Utc::now();
        let item = |sort_key: String| {
            let mut item = dynamo::key(PK, sort_key);
            item.insert("id".into(), dynamo::s(&id));
            item.insert(
                "dek".into(),
                AttributeValue::B(DynBlob::new(wrapped.as_ref().to_vec())),
            );
            item.insert("created_at".into(), dynamo::s(created_at.to_rfc3339()));
            item
        };
        // The immutable copy first: a sealed item must never name a ring key that is missing.
        self.table
            .client
            .put_item()
            .table_name(&self.table.name)
            .set_item(Some(item(sk(&id))))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map_err(dynamo::sdk)?;
        let put_current = self
            .table
            .client
            .put_item()
            .table_name(&self.table.name)
            .set_item(Some(item(CURRENT.to_string())));
        let put_current = match replacing {
            None => put_current.condition_expression("attribute_not_exists(pk)"),
            Some(old) => put_current
                .condition_expression("#id = :old")
                .expression_attribute_names("#id", "id")
                .expression_attribute_values(":old", dynamo::s(old)),
        };
        if let Err(e) = put_current.send().await.map_err(dynamo::sdk) {
            if dynamo::is_condition_failure(&e) {
                // Lost the race: nothing was sealed under this ring key, it can go.
                if let Err(del) = self.delete_ring_item(&sk(&id)).await {
                    tracing::warn!(error = %del, ring = %id, "could not delete an unused ring key");
                }
            }
            return Err(e);
        }
        tracing::info!(
            ring = %id,
            replaced = replacing.unwrap_or("none"),
            "a new ring key for the KeyCRM API keys"
        );
        self.ring.remember(&id, cipher.clone());
        self.ring.set_current(&id, created_at);
        Ok((id, cipher))
    }

    /// Unwraps ring key `id` (one KMS `Decrypt`).
    async fn unwrap_ring_key(
        &self,
        id: &str,
        wrapped: Vec<u8>,
    ) -> Result<Arc<Aes256Gcm>, StoreError> {
        let cipher =
            super::unwrap_key(&self.kms, &self.key_id, wrapped, ("ring", id), unreadable).await?;
        Ok(Arc::new(cipher))
    }

    async fn ring_item(&self, sort_key: &str) -> Result<Option<Item>, StoreError> {
        let out = self
            .table
            .client
            .get_item()
            .table_name(&self.table.name)
            .set_key(Some(dynamo::key(PK, sort_key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(dynamo::sdk)?;
        Ok(out.item)
    }

    async fn delete_ring_item(&self, sort_key: &str) -> Result<(), StoreError> {
        self.table
            .client
            .delete_item()
            .table_name(&self.table.name)
            .set_key(Some(dynamo::key(PK, sort_key)))
            .send()
            .await
            .map_err(dynamo::sdk)?;
        Ok(())
    }
}

/// A binary attribute's bytes.
pub fn bin(item: &Item, name: &str) -> Option<Vec<u8>> {
    match item.get(name) {
        Some(AttributeValue::B(b)) => Some(b.as_ref().to_vec()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_ids_are_128_bit_lowercase_hex() {
        assert!(valid_id("0123456789abcdef0123456789abcdef"));
        assert!(!valid_id("0123456789ABCDEF0123456789ABCDEF"));
        assert!(!valid_id("0123456789abcdef"));
        assert!(!valid_id("0123456789abcdef0123456789abcdef0"));
        assert!(!valid_id("../456789abcdef0123456789abcdef"));
        assert!(!valid_id(""));
    }

    #[test]
    fn a_ring_key_seals_for_90_days() {
        let made = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert!(fresh(made, made));
        assert!(fresh(made, made + chrono::Duration::days(89)));
        assert!(!fresh(made, made + chrono::Duration::days(90)));
        // A clock behind the writer's: still fresh.
        assert!(fresh(made, made - chrono::Duration::minutes(5)));
    }
}
