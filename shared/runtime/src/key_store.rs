//! Where a function keeps the merchants' KeyCRM API keys, from its environment.
//!
//! With `KEYCRM_KEYS_KMS_KEY_ARN` set (every deployed function that calls KeyCRM): envelope
//! encryption under that KMS key, in the table (`store::EnvelopeSecrets`), with the keys an
//! older version kept in Secrets Manager still read. Without it (a local run pointed at AWS
//! the old way): Secrets Manager alone.

use std::sync::Arc;
use store::{DynamoTable, EnvelopeSecrets, SecretStore, SecretsManager};

/// The variable naming the KMS key.
pub const KMS_KEY_VAR: &str = "KEYCRM_KEYS_KMS_KEY_ARN";

/// Whether the store may move keys out of Secrets Manager (and create data keys), or only
/// read them. Matches the function's IAM policy in `template.yaml`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyAccess {
    /// order-push, status-apply: `kms:Decrypt`, `secretsmanager:GetSecretValue`.
    Read,
    /// admin-api, catalog-sync: also `kms:GenerateDataKey` and `secretsmanager:DeleteSecret`.
    Manage,
}

/// The key store for this function.
pub fn key_store(
    aws: &aws_config::SdkConfig,
    table: &DynamoTable,
    access: KeyAccess,
) -> Arc<dyn SecretStore> {
    let legacy = SecretsManager::new(aws_sdk_secretsmanager::Client::new(aws));
    match crate::env_opt(KMS_KEY_VAR) {
        Some(key_id) => {
            let kms = aws_sdk_kms::Client::new(aws);
            Arc::new(match access {
                KeyAccess::Read => EnvelopeSecrets::new(table.clone(), kms, key_id, Some(legacy)),
                KeyAccess::Manage => EnvelopeSecrets::migrating(table.clone(), kms, key_id, legacy),
            })
        }
        None => Arc::new(legacy),
    }
}
