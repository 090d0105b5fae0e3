//! The webhook token key (`WEBHOOK_TOKEN_KEY_SECRET_ARN`): a Secrets Manager secret of its
//! own whose text (at least 32 bytes) webhook URL tokens are derived from. Read once per
//! cold start by the admin API and the webhook receiver; nobody else can read it.

use store::tokens::{TokenKey, TokenKeyError};

#[derive(Debug, thiserror::Error)]
pub enum TokenKeySecretError {
    #[error("reading the webhook token key secret failed: {0}")]
    Unavailable(String),
    #[error("the webhook token key secret has no string value")]
    NotText,
    #[error(transparent)]
    Invalid(#[from] TokenKeyError),
}

/// Reads the key from Secrets Manager (the secret's text; surrounding whitespace ignored),
/// with the function's AWS configuration (its timeouts: [`crate::aws::sdk_config`]).
pub async fn load_token_key(
    conf: &aws_config::SdkConfig,
    arn: &str,
) -> Result<TokenKey, TokenKeySecretError> {
    let text = crate::platform::secret_text(conf, arn)
        .await
        .map_err(TokenKeySecretError::Unavailable)?
        .ok_or(TokenKeySecretError::NotText)?;
    Ok(TokenKey::from_secret_text(&text)?)
}
