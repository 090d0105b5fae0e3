//! The platform secrets: JSON objects in Secrets Manager, read once at cold start by the
//! functions that need them. There are two, so that each function is granted only what it
//! reads (`template.yaml`):
//!
//! - `ADMIN_TOKEN_SECRET_ARN` holds `admin_token_signing_key`, with which the platform signs the
//!   admin API's shop tokens. Whoever reads it can act for any shop: only admin-api does.
//! - `SHOP_API_TOKEN_SECRET_ARN` holds `shop_api_token`, the connector's token for the shop
//!   platform's API: admin-api, catalog-sync and status-apply read it; order-push and the
//!   webhook read neither.

use crate::config::{env_req, ConfigError};
use std::collections::BTreeMap;

/// The variable naming the secret with `admin_token_signing_key`.
pub const ADMIN_TOKEN_SECRET_ENV: &str = "ADMIN_TOKEN_SECRET_ARN";
/// The variable naming the secret with `shop_api_token`.
pub const SHOP_API_TOKEN_SECRET_ENV: &str = "SHOP_API_TOKEN_SECRET_ARN";

#[derive(Debug, thiserror::Error)]
pub enum PlatformSecretError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("reading the platform secret failed: {0}")]
    Unavailable(String),
    #[error("the platform secret has no string value")]
    NotText,
    // Parse errors would quote the secret; say only what is wrong.
    #[error("the platform secret is not a JSON object of strings")]
    NotJson,
    #[error("the platform secret has no {0}")]
    Missing(String),
}

/// The secret's values. Deliberately without `Debug`, so it cannot be logged.
pub struct PlatformSecret {
    values: BTreeMap<String, String>,
}

/// A secret's text (`None`: it holds binary data), or why it could not be read (the SDK's
/// error context: names the secret and the failure, never a value).
pub(crate) async fn secret_text(
    conf: &aws_config::SdkConfig,
    arn: &str,
) -> Result<Option<String>, String> {
    let client = aws_sdk_secretsmanager::Client::new(conf);
    let out = client.get_secret_value().secret_id(arn).send().await;
    out.map(|o| o.secret_string)
        .map_err(|e| aws_sdk_secretsmanager::error::DisplayErrorContext(&e).to_string())
}

impl PlatformSecret {
    /// Reads the secret with the SDK configuration the function built
    /// ([`crate::aws::sdk_config`]).
    pub async fn load_with(
        conf: &aws_config::SdkConfig,
        arn: &str,
    ) -> Result<Self, PlatformSecretError> {
        let text = secret_text(conf, arn)
            .await
            .map_err(PlatformSecretError::Unavailable)?;
        Self::parse(&text.ok_or(PlatformSecretError::NotText)?)
    }

    /// [`Self::load_with`] a configuration of its own (tools, the local run).
    pub async fn load(arn: &str) -> Result<Self, PlatformSecretError> {
        let conf = crate::aws::sdk_config(crate::aws::AwsTimeouts::local()).await;
        Self::load_with(&conf, arn).await
    }

    pub fn parse(text: &str) -> Result<Self, PlatformSecretError> {
        let doc: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(text).map_err(|_| PlatformSecretError::NotJson)?;
        let values = doc
            .into_iter()
            .filter_map(|(k, v)| v.as_str().map(|s| (k, s.to_string())))
            .collect();
        Ok(PlatformSecret { values })
    }

    pub fn get(&self, key: &str) -> Result<String, PlatformSecretError> {
        self.values
            .get(key)
            .filter(|v| !v.is_empty())
            .cloned()
            .ok_or_else(|| PlatformSecretError::Missing(key.to_string()))
    }

    pub fn shop_api_token(&self) -> Result<String, PlatformSecretError> {
        self.get("shop_api_token")
    }

    pub fn admin_token_signing_key(&self) -> Result<String, PlatformSecretError> {
        self.get("admin_token_signing_key")
    }
}

/// The shop API token, from the secret `SHOP_API_TOKEN_SECRET_ARN` names, read with the
/// function's AWS configuration.
pub async fn shop_api_token_from_env(
    conf: &aws_config::SdkConfig,
) -> Result<String, PlatformSecretError> {
    PlatformSecret::load_with(conf, &env_req(SHOP_API_TOKEN_SECRET_ENV)?)
        .await?
        .shop_api_token()
}

/// The admin-token signing key, from the secret `ADMIN_TOKEN_SECRET_ARN` names (admin-api only).
pub async fn admin_token_signing_key_from_env(
    conf: &aws_config::SdkConfig,
) -> Result<String, PlatformSecretError> {
    PlatformSecret::load_with(conf, &env_req(ADMIN_TOKEN_SECRET_ENV)?)
        .await?
        .admin_token_signing_key()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_values_and_names_what_is_missing() {
        let s = PlatformSecret::parse(r#"{"shop_api_token":"t-1","admin_token_signing_key":""}"#)
            .unwrap();
        assert_eq!(s.shop_api_token().unwrap(), "t-1");
        let err = s.admin_token_signing_key().unwrap_err().to_string();
        assert_eq!(err, "the platform secret has no admin_token_signing_key");
    }

    #[tokio::test]
    async fn each_secret_is_named_by_its_own_variable() {
        let conf = crate::aws::sdk_config(crate::aws::AwsTimeouts::local()).await;
        if std::env::var(SHOP_API_TOKEN_SECRET_ENV).is_err() {
            let err = shop_api_token_from_env(&conf)
                .await
                .err()
                .unwrap()
                .to_string();
            assert!(err.contains("SHOP_API_TOKEN_SECRET_ARN"), "{err}");
        }
        if std::env::var(ADMIN_TOKEN_SECRET_ENV).is_err() {
            let err = admin_token_signing_key_from_env(&conf)
                .await
                .err()
                .unwrap()
                .to_string();
            assert!(err.contains("ADMIN_TOKEN_SECRET_ARN"), "{err}");
        }
    }

    #[test]
    fn a_malformed_secret_is_not_quoted_in_the_error() {
        let err = PlatformSecret::parse("hunter2-not-json")
            .err()
            .unwrap()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
    }
}
