//! Lambda wiring for catalog-sync: read the environment, build the AWS adapters, and route
//! each invocation — an EventBridge schedule input or a sync-jobs SQS batch — to the engine.

use aws_lambda_events::event::sqs::SqsEvent;
use catalog_sync::lambda::DeadLetters;
use catalog_sync::{Config, Deps, Engine, ScheduleInput};
use keycrm::{ClientConfig, RateBudget};
use lambda_runtime::{service_fn, LambdaEvent};
use queue::{Queue, SqsQueue};
use runtime::metrics::{Emitter, Function, MeteredCatalog};
use runtime::{env_opt, env_req, KeycrmClients};
use serde_json::Value;
use shop::HttpShop;
use std::sync::Arc;
use std::time::Duration;
use store::{DynamoRateGate, DynamoTable, SecretsManager};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn handle(
    engine: &Engine,
    dead_letters: Option<&DeadLetters<'_>>,
    metrics: &Emitter,
    event: LambdaEvent<Value>,
) -> Result<Value, BoxError> {
    let deadline = runtime::sqs_batch::deadline_from_epoch_ms(event.context.deadline);
    // One EMF flush per invocation (a sync job or a schedule tick), bounded so the answer
    // still comes before the deadline.
    let flush_by = deadline.map(|d| d.checked_sub(Duration::from_millis(250)).unwrap_or(d));
    metrics
        .run_until(flush_by, route(engine, dead_letters, event, deadline))
        .await
}

async fn route(
    engine: &Engine,
    dead_letters: Option<&DeadLetters<'_>>,
    event: LambdaEvent<Value>,
    deadline: Option<std::time::Instant>,
) -> Result<Value, BoxError> {
    if event.payload.get("Records").is_some() {
        let batch: SqsEvent = serde_json::from_value(event.payload)?;
        let response =
            catalog_sync::lambda::handle_sqs(engine, batch, deadline, dead_letters).await;
        return Ok(serde_json::to_value(response)?);
    }
    let input: ScheduleInput = serde_json::from_value(event.payload)
        .map_err(|e| format!("unexpected input (want {{\"kind\":\"full\"|\"prices\"|\"resume\"}} or an SQS batch): {e}"))?;
    let out = engine.on_schedule(input.kind).await?;
    Ok(serde_json::to_value(out)?)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    runtime::telemetry::init();
    let table_name = env_req("TABLE_NAME")?;
    let queue_url = env_req("SYNC_QUEUE_URL")?;
    let shop_base = env_req("SHOP_API_BASE_URL")?;
    // Unreadable or crashing jobs go here with their reason.
    let dlq_url = env_opt("SYNC_DLQ_URL");

    // Timeouts that fit the function's 900 s (template.yaml).
    let aws = runtime::aws::sdk_config(runtime::aws::AwsTimeouts::for_function(
        Duration::from_secs(900),
    ))
    .await;
    let table = DynamoTable::new(aws_sdk_dynamodb::Client::new(&aws), table_name);
    let token = runtime::shop_api_token_from_env(&aws).await?;
    let secrets = Arc::new(SecretsManager::new(aws_sdk_secretsmanager::Client::new(
        &aws,
    )));
    // The per-key budget shared with order push: the sync asks with background priority.
    let gate = Arc::new(DynamoRateGate::new(table.clone(), RateBudget::keycrm()));
    let clients = Arc::new(KeycrmClients::new(secrets, gate, ClientConfig::default()));
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let jobs = Arc::new(SqsQueue::new(sqs.clone(), queue_url));
    let sync_queue_name = jobs.name().to_string();
    let table = Arc::new(table);
    let deps = Deps {
        connections: table.clone(),
        sync: table.clone(),
        links: table.clone(),
        // Metered: catalog and stock writes and shop API failures show in the metrics.
        shop: Arc::new(MeteredCatalog(Arc::new(HttpShop::new(&shop_base, token)?))),
        clients,
        journal: table.clone(),
        jobs,
    };
    let engine = Engine::new(deps, Config::default());
    let engine = &engine;
    let dlq = dlq_url.map(|url| SqsQueue::new(sqs.clone(), url));
    let source_queue = sync_queue_name;
    let dead_letters = dlq.as_ref().map(|q| DeadLetters {
        queue: q,
        source_queue: &source_queue,
    });
    let dead_letters = dead_letters.as_ref();
    let metrics = Emitter::new(Function::CatalogSync).with_journal(table);
    let metrics = &metrics;
    lambda_runtime::run(service_fn(move |ev| {
        handle(engine, dead_letters, metrics, ev)
    }))
    .await
}
