//! Lambda wiring for the admin API: read the environment, build the AWS adapters, serve the
//! router through `lambda_http`. Everything else lives in the library.

use admin_api::{AdminApi, AdminConfig, TokenSigner};
use keycrm::{ClientConfig, RateBudget, DEFAULT_BASE_URL};
use queue::SqsQueue;
use runtime::{config, env_opt, env_req, KeycrmClients};
use std::sync::Arc;
use std::time::Duration;
use store::{DynamoRateGate, DynamoTable, SecretsManager};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The platform secret (`PLATFORM_SECRET_ARN`) is a JSON object; this function needs its
/// `admin_token_signing_key`.
async fn signing_key(client: &aws_sdk_secretsmanager::Client, arn: &str) -> Result<TokenSigner, BoxError> {
    let out = client
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|e| format!("reading the platform secret failed: {}", aws_sdk_secretsmanager::error::DisplayErrorContext(&e)))?;
    let text = out
        .secret_string
        .ok_or("the platform secret has no string value")?;
    let doc: serde_json::Value =
        serde_json::from_str(&text).map_err(|_| "the platform secret is not a JSON object")?;
    let key = doc
        .get("admin_token_signing_key")
        .and_then(|v| v.as_str())
        .ok_or("the platform secret has no admin_token_signing_key")?;
    Ok(TokenSigner::new(key)?)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    runtime::telemetry::init();

    let table_name = env_req("TABLE_NAME")?;
    let secret_prefix = env_req("SECRET_PREFIX")?;
    let platform_secret = env_req("PLATFORM_SECRET_ARN")?;
    let order_queue_url = env_req("ORDER_QUEUE_URL")?;
    let sync_queue_url = env_req("SYNC_QUEUE_URL")?;

    let mut cfg = AdminConfig::new(
        secret_prefix,
        env_opt("KEYCRM_BASE_URL").unwrap_or_else(|| DEFAULT_BASE_URL.to_string()),
    );
    cfg.allowed_keycrm_base_urls = env_opt("KEYCRM_ALLOWED_BASE_URLS")
        .map(|v| v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
        .unwrap_or_default();
    cfg.public_base_url = env_opt("PUBLIC_BASE_URL");
    cfg.options_ttl = Duration::from_secs(config::env_parse("OPTIONS_TTL_SECS", 300u64)?);

    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let table = DynamoTable::new(aws_sdk_dynamodb_client(&aws), table_name);
    let sm = aws_sdk_secretsmanager::Client::new(&aws);
    let signer = signing_key(&sm, &platform_secret).await?;
    let secrets = Arc::new(SecretsManager::new(sm));
    let sqs = SqsQueue::client_from_env().await;

    // The shared per-key budget: every function spending one KeyCRM key goes through it.
    let gate = Arc::new(DynamoRateGate::new(table.clone(), RateBudget::keycrm()));
    let mut template = ClientConfig::default();
    // API Gateway gives up after 30 s; a slow KeyCRM must fail before that, not hang.
    template.timeout = Duration::from_secs(10);
    let clients = Arc::new(KeycrmClients::new(secrets.clone(), gate, template));

    let table = Arc::new(table);
    let api = AdminApi {
        config: cfg,
        signer,
        connections: table.clone(),
        secrets,
        journal: table.clone(),
        cache: table.clone(),
        ledger: table.clone(),
        sync: Arc::new(SyncNotWired),
        clients,
        shop: shop_port()?,
        order_queue: Arc::new(SqsQueue::new(sqs.clone(), order_queue_url)),
        sync_queue: Arc::new(SqsQueue::new(sqs, sync_queue_url)),
    };
    lambda_http::run(admin_api::router(api)).await
}

fn aws_sdk_dynamodb_client(conf: &aws_config::SdkConfig) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(conf)
}

/// The shop platform's API for the settings page's shop-side dictionaries.
fn shop_port() -> Result<Arc<dyn shop::ShopOrders>, BoxError> {
    let _base = env_req("SHOP_API_BASE_URL")?;
    Ok(Arc::new(ShopNotWired))
}

/// Until the shop platform's HTTP adapter lands: every shop call fails as "unavailable", so
/// connect / status / delete work and the options and settings calls answer 502.
struct ShopNotWired;

#[async_trait::async_trait]
impl shop::ShopOrders for ShopNotWired {
    async fn reference(&self, _shop_id: &str) -> Result<shop::ShopReference, shop::ShopError> {
        Err(shop::ShopError::Unavailable("the shop API adapter is not wired yet".into()))
    }
    async fn set_order_status(&self, _: &str, _: &str, _: &str) -> Result<(), shop::ShopError> {
        Err(shop::ShopError::Unavailable("the shop API adapter is not wired yet".into()))
    }
}

/// Until catalog-sync's `SyncStore` adapter for the table lands: run reports read as
/// "storage unavailable" (503); everything else works.
struct SyncNotWired;

#[async_trait::async_trait]
impl store::SyncStore for SyncNotWired {
    async fn acquire(&self, _: &str, _: store::SyncKind, _: &str, _: Duration) -> Result<Option<store::SyncLease>, store::StoreError> {
        Err(not_wired())
    }
    async fn checkpoint(&self, _: &store::SyncLease, _: Duration) -> Result<store::SyncLease, store::StoreError> {
        Err(not_wired())
    }
    async fn finish(&self, _: &store::SyncLease) -> Result<(), store::StoreError> {
        Err(not_wired())
    }
    async fn pause(&self, _: &store::SyncLease) -> Result<(), store::StoreError> {
        Err(not_wired())
    }
    async fn unfinished(&self, _: usize) -> Result<Vec<(String, store::SyncKind)>, store::StoreError> {
        Err(not_wired())
    }
    async fn put_run(&self, _: &store::SyncRun) -> Result<(), store::StoreError> {
        Err(not_wired())
    }
    async fn get_run(&self, _: &str, _: &str) -> Result<Option<store::SyncRun>, store::StoreError> {
        Err(not_wired())
    }
    async fn list_runs(&self, _: &str, _: usize) -> Result<Vec<store::SyncRun>, store::StoreError> {
        Err(not_wired())
    }
}

fn not_wired() -> store::StoreError {
    store::StoreError::Unavailable("the sync run store is not wired yet".into())
}
