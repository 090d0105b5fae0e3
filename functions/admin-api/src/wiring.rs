//! The Lambda's wiring from its environment: the settings, the AWS adapters (DynamoDB, SQS,
//! Secrets Manager, KMS), the shop's API and KeyCRM; the router served through API Gateway.

use crate::{AdminApi, AdminConfig, TokenSigner};
use keycrm::{ClientConfig, RateBudget, DEFAULT_BASE_URL};
use queue::SqsQueue;
use runtime::lambda::{InitError, SdkConfig};
use runtime::metrics::catalog::ADMIN_REQUESTS;
use runtime::metrics::{Emitter, Function, MeteredOrders};
use runtime::{config, env_opt, env_req, KeycrmClients};
use shop::HttpShop;
use std::sync::Arc;
use std::time::Duration;
use store::{DynamoRateGate, DynamoTable};

/// The function's timeout (template.yaml); its AWS calls' timeouts follow from it.
pub const FUNCTION_TIMEOUT: Duration = Duration::from_secs(29);

/// The router as the function serves it, with its per-request metrics.
pub struct App {
    pub router: axum::Router,
}

/// The admin API's settings from the environment.
fn admin_config(secret_prefix: String) -> Result<AdminConfig, InitError> {
    let mut cfg = AdminConfig::new(
        secret_prefix,
        env_opt("KEYCRM_BASE_URL").unwrap_or_else(|| DEFAULT_BASE_URL.to_string()),
    );
    cfg.allowed_keycrm_base_urls = env_opt("KEYCRM_ALLOWED_BASE_URLS")
        .map(|v| {
            v.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    cfg.public_base_url = env_opt("PUBLIC_BASE_URL");
    cfg.options_ttl = Duration::from_secs(config::env_parse("OPTIONS_TTL_SECS", 300u64)?);
    cfg.request_deadline =
        Duration::from_secs(config::env_parse("REQUEST_DEADLINE_SECS", 25u64)?.clamp(10, 28));
    cfg.page_origins =
        AdminConfig::parse_page_origins(&env_opt("PAGE_ALLOWED_ORIGINS").unwrap_or_default())
            .map_err(|e| InitError::invalid("PAGE_ALLOWED_ORIGINS", e))?;
    Ok(cfg)
}

impl App {
    pub async fn from_env(aws: &SdkConfig) -> Result<App, InitError> {
        let table_name = env_req("TABLE_NAME")?;
        let secret_prefix = env_req("SECRET_PREFIX")?;
        let order_queue_url = env_req("ORDER_QUEUE_URL")?;
        let sync_queue_url = env_req("SYNC_QUEUE_URL")?;
        let shop_api_base = env_req("SHOP_API_BASE_URL")?;
        let token_key_arn = env_req("WEBHOOK_TOKEN_KEY_SECRET_ARN")?;
        let cfg = admin_config(secret_prefix)?;

        let table = DynamoTable::new(aws_sdk_dynamodb::Client::new(aws), table_name);
        // Separate secrets: the signing key (admin-api only), the shop API token, the token key.
        let signing_key = runtime::admin_token_signing_key_from_env(aws).await?;
        let signer = TokenSigner::new(signing_key)
            .map_err(|e| InitError::new(InitError::SECRET_UNAVAILABLE, e.to_string()))?;
        let shop_api_token = runtime::shop_api_token_from_env(aws).await?;
        let token_key = runtime::load_token_key(aws, &token_key_arn).await?;
        // KeyCRM keys, envelope-encrypted in the table; keys kept in Secrets Manager by an
        // older version are moved on first read.
        let secrets = runtime::key_store(aws, &table, runtime::KeyAccess::Manage);
        let sqs = aws_sdk_sqs::Client::new(aws);

        // The shared per-key budget: every function spending one KeyCRM key goes through it.
        let gate = Arc::new(DynamoRateGate::new(table.clone(), RateBudget::keycrm()));
        // API Gateway gives up after 30 s; a slow KeyCRM must fail before that, not hang.
        let template = ClientConfig {
            timeout: Duration::from_secs(10),
            ..ClientConfig::default()
        };
        let clients = Arc::new(KeycrmClients::new(secrets.clone(), gate, template));
        let shop = HttpShop::with_timeout(&shop_api_base, shop_api_token, Duration::from_secs(10))
            .map_err(|e| InitError::invalid("SHOP_API_BASE_URL", e))?;

        let table = Arc::new(table);
        let table_for_metrics: Arc<dyn store::StatusJournal> = table.clone();
        let api = AdminApi {
            config: cfg,
            signer,
            token_key,
            connections: table.clone(),
            secrets,
            journal: table.clone(),
            cache: table.clone(),
            ledger: table.clone(),
            sync: table.clone(),
            links: table.clone(),
            clients,
            // Metered: shop API failures show in the metrics.
            shop: Arc::new(MeteredOrders(Arc::new(shop))),
            order_queue: Arc::new(SqsQueue::new(sqs.clone(), order_queue_url)),
            sync_queue: Arc::new(SqsQueue::new(sqs, sync_queue_url)),
        };
        // One EMF flush per request: answers by class, KeyCRM traffic of key checks and
        // settings-page dictionaries (per connection also on its status).
        let metrics = Emitter::new(Function::AdminApi).with_journal(table_for_metrics);
        Ok(App::new(api, metrics))
    }

    /// The API's router with the per-request metrics, as deployed.
    pub fn new(api: AdminApi, metrics: Emitter) -> App {
        App::with_router(crate::router(api), metrics)
    }

    /// An API router ([`crate::router`]) with the per-request metrics: answers by class,
    /// KeyCRM traffic of key checks and settings-page dictionaries.
    pub fn with_router(router: axum::Router, metrics: Emitter) -> App {
        App {
            router: runtime::metrics::http::layer(router, metrics, Some(&ADMIN_REQUESTS)),
        }
    }

    /// Serves API Gateway requests until the runtime stops.
    pub async fn serve(self) -> Result<(), lambda_http::Error> {
        runtime::lambda::serve_http(self.router).await
    }
}
