//! Lambda wiring for stock-apply: read the environment, build the DynamoDB, SQS, Secrets
//! Manager, rate gate and shop adapters, and hand each SQS batch of flush messages to the
//! library (partial batch responses).

use aws_lambda_events::event::sqs::SqsEvent;
use keycrm::{ClientConfig, RateBudget};
use lambda_runtime::{service_fn, LambdaEvent};
use queue::{Queue, SqsQueue};
use runtime::config::env_parse;
use runtime::metrics::{Emitter, Function, MeteredCatalog};
use runtime::{env_opt, env_req, KeycrmClients};
use shop::HttpShop;
use std::sync::Arc;
use std::time::Duration;
use stock_apply::{
    handle_sqs_event, FlushConfig, Flusher, KeycrmStock, RetryPolicy, StockApplier, Transport,
};
use store::{DynamoRateGate, DynamoTable, SecretsManager};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    runtime::telemetry::init();
    let table_name = env_req("TABLE_NAME")?;
    let queue_url = env_req("STOCK_QUEUE_URL")?;
    let shop_base = env_req("SHOP_API_BASE_URL")?;
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

    // Timeouts that fit the function's 120 s (template.yaml) and the consumer's settle margin.
    let aws = runtime::aws::sdk_config(runtime::aws::AwsTimeouts::for_function(
        Duration::from_secs(120),
    ))
    .await;
    let table = DynamoTable::new(aws_sdk_dynamodb::Client::new(&aws), table_name);
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let token = runtime::shop_api_token_from_env(&aws).await?;
    let secrets = Arc::new(SecretsManager::new(aws_sdk_secretsmanager::Client::new(
        &aws,
    )));
    // The per-key budget shared with order push; stock reads ask with background priority.
    let gate = Arc::new(DynamoRateGate::new(table.clone(), RateBudget::keycrm()));
    let clients = Arc::new(KeycrmClients::new(secrets, gate, ClientConfig::default()));
    let flushes: Arc<dyn Queue> = Arc::new(SqsQueue::new(sqs.clone(), queue_url));
    let table = Arc::new(table);
    let flusher = Flusher::new(
        table.clone(),
        table.clone(),
        table.clone(),
        // Metered: availability writes count as StockWrites, failures as ShopApiErrors.
        Arc::new(MeteredCatalog(Arc::new(HttpShop::with_timeout(
            &shop_base,
            token,
            Duration::from_secs(10),
        )?))),
        Arc::new(KeycrmStock { clients }),
        table.clone(),
        flushes.clone(),
        config,
    );
    // EMF metrics on stdout once per batch; KeyCRM usage (stock reads) on the status.
    let metrics = Emitter::new(Function::StockApply).with_journal(table);
    let applier = StockApplier::new(flusher, retry);
    let transport = Transport {
        source: Some(flushes),
        dead_letter: env_opt("STOCK_DLQ_URL")
            .map(|url| Arc::new(SqsQueue::new(sqs.clone(), url)) as Arc<dyn Queue>),
    };
    let (applier, transport, metrics) = (&applier, &transport, &metrics);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let deadline = runtime::sqs_batch::deadline_from_epoch_ms(event.context.deadline);
        let flush_by = deadline.map(|d| d.checked_sub(Duration::from_millis(250)).unwrap_or(d));
        let response = metrics
            .run_until(
                flush_by,
                handle_sqs_event(applier, transport, event.payload, deadline),
            )
            .await;
        Ok::<_, BoxError>(response)
    }))
    .await
}
