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
    let client = aws_sdk_secretsmanager::Client::new(conf);
    let out = client
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|e| {
            TokenKeySecretError::Unavailable(
                aws_sdk_secretsmanager::error::DisplayErrorContext(&e).to_string(),
            )
        })?;
    let text = out.secret_string.ok_or(TokenKeySecretError::NotText)?;
    Ok(TokenKey::from_secret_text(&text)?)
}
