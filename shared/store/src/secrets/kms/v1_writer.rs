//! Writing keys in the first format (`v = 1`), which only versions before the keyring wrote:
//! for tests proving such items still open (feature `test-kit`; the product never writes it).

use super::{EnvelopeSecrets, PURPOSE, V1};
use crate::dynamo;
use crate::StoreError;
use aes_gcm::aead::KeyInit;
use aes_gcm::Aes256Gcm;
use aws_sdk_dynamodb::primitives::Blob as DynBlob;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_kms::types::DataKeySpec;
use keycrm::ApiKey;

impl EnvelopeSecrets {
    /// Stores `key` in the first format (`v = 1`: a KMS data key of its own), as versions
    /// before the keyring did. Only for tests proving such items still open; nothing else
    /// writes this format.
    pub async fn put_v1_for_tests(&self, name: &str, key: &ApiKey) -> Result<(), StoreError> {
        let item = self.seal_v1(name, key).await?;
        self.table.put_item(item).await?;
        Ok(())
    }

    /// The first format (`v = 1`): a data key of its own, wrapped with the name as context.
    async fn seal_v1(&self, name: &str, key: &ApiKey) -> Result<dynamo::Item, StoreError> {
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
        let (nonce, sealed) = super::encrypt_key(&cipher, key, name.as_bytes())?;
        let mut item = Self::key_item(name, V1, &nonce, sealed);
        item.insert(
            "dek".into(),
            AttributeValue::B(DynBlob::new(wrapped.into_inner())),
        );
        Ok(item)
    }
}
