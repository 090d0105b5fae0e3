//! [`SecretStore`] on AWS Secrets Manager: one secret per connection. Still read for keys
//! stored before the envelope store (`kms.rs`) and by the migration.

use crate::secrets::SecretStore;
use crate::StoreError;
use async_trait::async_trait;
use aws_sdk_secretsmanager::error::DisplayErrorContext;
use aws_sdk_secretsmanager::Client;
use keycrm::ApiKey;

#[derive(Clone, Debug)]
pub struct SecretsManager {
    client: Client,
}

impl SecretsManager {
    pub fn new(client: Client) -> Self {
        SecretsManager { client }
    }

    pub async fn from_env() -> Self {
        let conf = crate::sdk_config::from_env().await;
        SecretsManager::new(Client::new(&conf))
    }
}

/// A plain reason; the SDK's text (ARNs, account ids) is logged, not carried. SDK errors never
/// carry the secret value.
fn err<E, R>(e: &aws_sdk_secretsmanager::error::SdkError<E, R>) -> StoreError
where
    E: aws_sdk_secretsmanager::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    StoreError::Unavailable(crate::aws_error::logged("Secrets Manager", e))
}

#[async_trait]
impl SecretStore for SecretsManager {
    async fn put(&self, name: &str, key: &ApiKey) -> Result<(), StoreError> {
        let updated = self
            .client
            .put_secret_value()
            .secret_id(name)
            .secret_string(key.expose())
            .send()
            .await;
        match updated {
            Ok(_) => Ok(()),
            Err(e)
                if DisplayErrorContext(&e)
                    .to_string()
                    .contains("ResourceNotFound") =>
            {
                self.client
                    .create_secret()
                    .name(name)
                    .description("KeyCRM API key of one shop-keycrm connection")
                    .secret_string(key.expose())
                    .send()
                    .await
                    .map_err(|e| err(&e))?;
                Ok(())
            }
            Err(e) => Err(err(&e)),
        }
    }

    async fn get(&self, name: &str) -> Result<Option<ApiKey>, StoreError> {
        match self.client.get_secret_value().secret_id(name).send().await {
            Ok(out) => Ok(out.secret_string.map(ApiKey::new)),
            Err(e)
                if DisplayErrorContext(&e)
                    .to_string()
                    .contains("ResourceNotFound") =>
            {
                Ok(None)
            }
            Err(e) => Err(err(&e)),
        }
    }

    async fn delete(&self, name: &str) -> Result<(), StoreError> {
        match self
            .client
            .delete_secret()
            .secret_id(name)
            .force_delete_without_recovery(true)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if DisplayErrorContext(&e)
                    .to_string()
                    .contains("ResourceNotFound") =>
            {
                Ok(())
            }
            Err(e) => Err(err(&e)),
        }
    }
}
