//! Lambda wiring for catalog-sync: read the environment, build the AWS adapters, and route
//! each invocation — an EventBridge schedule input or a sync-jobs SQS batch — to the engine.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use catalog_sync::{Config, Deps, Engine, ScheduleInput};
use keycrm::{ClientConfig, RateBudget};
use lambda_runtime::{service_fn, LambdaEvent};
use queue::SqsQueue;
use runtime::{env_req, KeycrmClients};
use serde_json::Value;
use shop::HttpShop;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use store::{DynamoRateGate, DynamoTable, SecretsManager};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn handle(engine: &Engine, event: LambdaEvent<Value>) -> Result<Value, BoxError> {
    let left = SystemTime::UNIX_EPOCH + Duration::from_millis(event.context.deadline);
    let deadline = Instant::now()
        + left
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::from_secs(60));
    if event.payload.get("Records").is_some() {
        let batch: SqsEvent = serde_json::from_value(event.payload)?;
        let mut response = SqsBatchResponse::default();
        for record in batch.records {
            let id = record.message_id.clone().unwrap_or_default();
            let body = record.body.unwrap_or_default();
            if let Err(e) = engine.on_message(&body, deadline).await {
                // Transient (store, queue): SQS redelivers the job; its checkpoint is kept.
                tracing::error!(message = %id, error = %e, "sync job failed; it will be retried");
                response.add_failure(id);
            }
        }
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

    let table = DynamoTable::new(DynamoTable::client_from_env().await, table_name);
    let token = runtime::shop_api_token_from_env().await?;
    let secrets = Arc::new(SecretsManager::from_env().await);
    // The per-key budget shared with order push: the sync asks with background priority.
    let gate = Arc::new(DynamoRateGate::new(table.clone(), RateBudget::keycrm()));
    let clients = Arc::new(KeycrmClients::new(secrets, gate, ClientConfig::default()));
    let jobs = Arc::new(SqsQueue::new(SqsQueue::client_from_env().await, queue_url));
    let table = Arc::new(table);
    let deps = Deps {
        connections: table.clone(),
        sync: table.clone(),
        links: table.clone(),
        shop: Arc::new(HttpShop::new(&shop_base, token)?),
        clients,
        journal: table,
        jobs,
    };
    let engine = Engine::new(deps, Config::default());
    let engine = &engine;
    lambda_runtime::run(service_fn(move |ev| handle(engine, ev))).await
}
