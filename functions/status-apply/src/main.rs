//! Lambda wiring for status-apply: read the environment, build the DynamoDB, SQS and shop
//! adapters, and hand each SQS batch to the library (partial batch responses).

use aws_lambda_events::event::sqs::SqsEvent;
use keycrm::{ClientConfig, RateBudget};
use lambda_runtime::{service_fn, LambdaEvent};
use queue::{Queue, SqsQueue};
use runtime::config::env_parse;
use runtime::metrics::{Emitter, Function, MeteredOrders};
use runtime::{env_opt, env_req, KeycrmClients};
use status_apply::{
    handle_sqs_event, queue_url_from_arn, KeycrmOrigins, RetryPolicy, StatusApplier, Transport,
};
use std::sync::Arc;
use std::time::Duration;
use store::{DynamoRateGate, DynamoTable, SecretsManager};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    runtime::telemetry::init();

    let table_name = env_req("TABLE_NAME")?;
    let shop_base_url = env_req("SHOP_API_BASE_URL")?;
    let policy = RetryPolicy {
        base: Duration::from_secs(env_parse("STATUS_RETRY_BASE_SECS", 30u64)?),
        cap: Duration::from_secs(env_parse("STATUS_RETRY_CAP_SECS", 900u64)?),
        // Must equal the status queue's redrive maxReceiveCount (template.yaml).
        max_receives: env_parse("STATUS_MAX_RECEIVES", 10u32)?,
    };

    // Timeouts that fit the function's 30 s (template.yaml) and the consumer's settle margin.
    let aws = runtime::aws::sdk_config(runtime::aws::AwsTimeouts::for_function(
        Duration::from_secs(30),
    ))
    .await;
    let table = Arc::new(DynamoTable::new(
        aws_sdk_dynamodb::Client::new(&aws),
        table_name,
    ));
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let shop_token = runtime::shop_api_token_from_env(&aws).await?;
    // Metered: shop API failures show in the metrics.
    let shop: Arc<dyn shop::ShopOrders> =
        Arc::new(MeteredOrders(shop_port(&shop_base_url, shop_token)?));

    // KeyCRM is read only to verify an order before adopting it into the ledger; the reads
    // spend the connection's per-key budget through the shared gate.
    let gate = Arc::new(DynamoRateGate::new((*table).clone(), RateBudget::keycrm()));
    let clients = Arc::new(KeycrmClients::new(
        Arc::new(SecretsManager::new(aws_sdk_secretsmanager::Client::new(
            &aws,
        ))),
        gate,
        ClientConfig::default(),
    ));
    let keycrm = Arc::new(KeycrmOrigins {
        clients,
        secret_prefix: env_opt("SECRET_PREFIX"),
    });
    // EMF metrics on stdout once per batch; KeyCRM usage (adoption reads) on the status.
    let metrics = Emitter::new(Function::StatusApply).with_journal(table.clone());
    let applier =
        StatusApplier::new(table.clone(), table.clone(), shop, table, policy).with_keycrm(keycrm);
    let source_url = env_opt("STATUS_QUEUE_URL");
    let dead_letter: Option<Arc<dyn Queue>> = env_opt("STATUS_DLQ_URL")
        .map(|url| Arc::new(SqsQueue::new(sqs.clone(), url)) as Arc<dyn Queue>);

    let applier = &applier;
    let (sqs, source_url, dead_letter, metrics) = (&sqs, &source_url, &dead_letter, &metrics);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let url = source_url.clone().or_else(|| {
            event
                .payload
                .records
                .first()
                .and_then(|r| r.event_source_arn.as_deref())
                .and_then(queue_url_from_arn)
        });
        let transport = Transport {
            source: url.map(|u| Arc::new(SqsQueue::new(sqs.clone(), u)) as Arc<dyn Queue>),
            dead_letter: dead_letter.clone(),
        };
        let deadline = runtime::sqs_batch::deadline_from_epoch_ms(event.context.deadline);
        let flush_by = deadline.map(|d| d.checked_sub(Duration::from_millis(250)).unwrap_or(d));
        let response = metrics
            .run_until(
                flush_by,
                handle_sqs_event(applier, &transport, event.payload, deadline),
            )
            .await;
        Ok::<_, BoxError>(response)
    }))
    .await
}

/// The shop platform's order API. The timeout keeps a batch of concurrent calls well inside
/// the function's 30 s.
fn shop_port(base_url: &str, token: String) -> Result<Arc<dyn shop::ShopOrders>, BoxError> {
    Ok(Arc::new(shop::HttpShop::with_timeout(
        base_url,
        token,
        Duration::from_secs(10),
    )?))
}
