//! The platform secret (`PLATFORM_SECRET_ARN`): a JSON object in Secrets Manager holding the
//! admin-token signing key (`admin_token_signing_key`) and the shop API token
//! (`shop_api_token`). Read once at cold start by the functions that need it.

use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error)]
pub enum PlatformSecretError {
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

impl PlatformSecret {
    /// Reads the secret with the SDK configuration the function built
    /// ([`crate::aws::sdk_config`]).
    pub async fn load_with(
        conf: &aws_config::SdkConfig,
        arn: &str,
    ) -> Result<Self, PlatformSecretError> {
        let client = aws_sdk_secretsmanager::Client::new(conf);
        let out = client
            .get_secret_value()
            .secret_id(arn)
            .send()
            .await
            .map_err(|e| {
                PlatformSecretError::Unavailable(
                    aws_sdk_secretsmanager::error::DisplayErrorContext(&e).to_string(),
                )
            })?;
        Self::parse(&out.secret_string.ok_or(PlatformSecretError::NotText)?)
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

    #[test]
    fn a_malformed_secret_is_not_quoted_in_the_error() {
        let err = PlatformSecret::parse("hunter2-not-json")
            .err()
            .unwrap()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
    }
}
