//! The Lambda's wiring from its environment: DynamoDB (pending sets, links, rate gate), SQS
//! (the flush queue, the dead-letter queue), the KeyCRM key store (KMS envelope) and the shop.

use crate::Transport;
use crate::{handle_sqs_event, FlushConfig, Flusher, KeycrmStock, RetryPolicy, StockApplier};
use keycrm::{ClientConfig, RateBudget};
use queue::{Queue, SqsQueue};
use runtime::config::env_parse;
use runtime::lambda::SdkConfig;
use runtime::lambda::{metered, Deadline, InitError, Invocation, InvocationError, NoSchedule};
use runtime::metrics::{Emitter, Function, MeteredCatalog};
use runtime::{env_opt, env_req, KeycrmClients};
use shop::HttpShop;
use std::sync::Arc;
use std::time::Duration;
use store::{DynamoRateGate, DynamoTable};

/// The function's timeout (template.yaml); its AWS calls' timeouts follow from it, with the
/// consumer's settle margin.
pub const FUNCTION_TIMEOUT: Duration = Duration::from_secs(120);

/// What the function is invoked with (named in the error for anything else).
pub const ACCEPTS: &str = "an SQS batch of stock flushes";

/// The handler, its queues and its metrics, ready to serve.
pub struct App {
    pub applier: StockApplier,
    pub transport: Transport,
    pub metrics: Emitter,
}

/// The flush window and budget, and the retry policy, from the environment.
fn settings() -> Result<(FlushConfig, RetryPolicy), InitError> {
    let defaults = FlushConfig::default();
    let config = FlushConfig {
        window: Duration::from_secs(env_parse("STOCK_WINDOW_SECS", defaults.window.as_secs())?),
        budget: Duration::from_secs(env_parse(
            "STOCK_FLUSH_BUDGET_SECS",
            defaults.budget.as_secs(),
        )?),
        ..defaults
    };
    let retry = RetryPolicy {
        base: Duration::from_secs(env_parse("STOCK_RETRY_BASE_SECS", 30u64)?),
        cap: Duration::from_secs(env_parse("STOCK_RETRY_CAP_SECS", 900u64)?),
        // Must equal the flush queue's redrive maxReceiveCount (template.yaml).
        max_receives: env_parse("STOCK_MAX_RECEIVES", 10u32)?,
    };
    Ok((config, retry))
}

impl App {
    pub async fn from_env(aws: &SdkConfig) -> Result<App, InitError> {
        let table_name = env_req("TABLE_NAME")?;
        let queue_url = env_req("STOCK_QUEUE_URL")?;
        let shop_base = env_req("SHOP_API_BASE_URL")?;
        let (config, retry) = settings()?;
        let table = DynamoTable::new(aws_sdk_dynamodb::Client::new(aws), table_name);
        let sqs = aws_sdk_sqs::Client::new(aws);
        let token = runtime::shop_api_token_from_env(aws).await?;
        // The connection's KeyCRM key: envelope-decrypted under the KMS key (read only), or
        // read where an older version kept it in Secrets Manager.
        let secrets = runtime::key_store(aws, &table, runtime::KeyAccess::Read);
        // The per-key budget shared with order push; stock reads ask with background priority.
        let gate = Arc::new(DynamoRateGate::new(table.clone(), RateBudget::keycrm()));
        let clients = Arc::new(KeycrmClients::new(secrets, gate, ClientConfig::default()));
        let flushes: Arc<dyn Queue> = Arc::new(SqsQueue::new(sqs.clone(), queue_url));
        let table = Arc::new(table);
        let shop = HttpShop::with_timeout(&shop_base, token, Duration::from_secs(10))
            .map_err(|e| InitError::invalid("SHOP_API_BASE_URL", e))?;
        let flusher = Flusher::new(
            table.clone(),
            table.clone(),
            table.clone(),
            // Metered: availability writes count as StockWrites, failures as ShopApiErrors.
            Arc::new(MeteredCatalog(Arc::new(shop))),
            Arc::new(KeycrmStock { clients }),
            table.clone(),
            flushes.clone(),
            config,
        );
        // EMF metrics on stdout once per batch; KeyCRM usage (stock reads) on the status.
        let metrics = Emitter::new(Function::StockApply).with_journal(table);
        let transport = Transport {
            source: Some(flushes),
            dead_letter: env_opt("STOCK_DLQ_URL")
                .map(|url| Arc::new(SqsQueue::new(sqs.clone(), url)) as Arc<dyn Queue>),
        };
        Ok(App {
            applier: StockApplier::new(flusher, retry),
            transport,
            metrics,
        })
    }

    /// One invocation, as the binary serves it: an SQS batch of flushes, metered; any other
    /// event is refused as `InvalidInput`.
    pub async fn invoke(
        &self,
        invocation: Invocation<NoSchedule>,
        deadline: Deadline,
    ) -> Result<serde_json::Value, InvocationError> {
        let flushes = invocation.into_sqs()?;
        metered(&self.metrics, deadline, async {
            let answer = handle_sqs_event(&self.applier, &self.transport, flushes, deadline.0);
            Ok(answer.await)
        })
        .await
    }

    /// Serves invocations until the runtime stops.
    pub async fn serve(self) -> Result<(), lambda_runtime::Error> {
        let app = &self;
        runtime::lambda::serve(ACCEPTS, |invocation, deadline| {
            app.invoke(invocation, deadline)
        })
        .await
    }
}
