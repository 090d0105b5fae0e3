//! Lambda entry point: reads the environment, builds the adapters, runs the handler on each
//! SQS batch and reports partial batch failures.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use keycrm::{ClientConfig, RateBudget};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use order_push::{Dictionaries, KeycrmProvider, OrderPush, PushConfig};
use queue::{Queue, SqsQueue};
use runtime::metrics::{Emitter, Function};
use runtime::{env_opt, env_req, KeycrmClients};
use std::sync::Arc;
use std::time::Duration;
use store::{DynamoRateGate, DynamoTable, SecretsManager};

#[tokio::main]
async fn main() -> Result<(), Error> {
    runtime::telemetry::init();
    let table_name = env_req("TABLE_NAME")?;
    let queue_url = env_req("ORDER_QUEUE_URL")?;
    let dlq_url = env_req("ORDER_DLQ_URL")?;
    let secret_prefix = env_opt("SECRET_PREFIX");

    // Timeouts that fit the function's 60 s (template.yaml) and the 5 s kept to settle.
    let aws = runtime::aws::sdk_config(runtime::aws::AwsTimeouts::for_function(
        Duration::from_secs(60),
    ))
    .await;
    let table = DynamoTable::new(aws_sdk_dynamodb::Client::new(&aws), table_name);
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let order_queue = SqsQueue::new(sqs.clone(), queue_url);
    let source_queue = order_queue.name().to_string();
    let gate = Arc::new(DynamoRateGate::new(table.clone(), RateBudget::keycrm()));
    let clients = Arc::new(KeycrmClients::new(
        Arc::new(SecretsManager::new(aws_sdk_secretsmanager::Client::new(
            &aws,
        ))),
        gate,
        ClientConfig::default(),
    ));
    let journal = Arc::new(table.clone());
    // EMF metrics on stdout once per batch; KeyCRM usage per connection on its status.
    let metrics = Emitter::new(Function::OrderPush).with_journal(journal.clone());
    let handler = Arc::new(OrderPush {
        connections: Arc::new(table.clone()),
        ledger: Arc::new(table),
        journal,
        crm: Arc::new(KeycrmProvider {
            clients,
            secret_prefix,
        }),
        retry_queue: Arc::new(order_queue),
        dead_letters: Arc::new(SqsQueue::new(sqs, dlq_url)),
        dictionaries: Arc::new(Dictionaries::default()),
        config: PushConfig {
            source_queue,
            ..PushConfig::default()
        },
    });

    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let handler = handler.clone();
        let metrics = metrics.clone();
        async move {
            let deadline = order_push::lambda::deadline(event.context.deadline);
            let messages = order_push::lambda::messages(event.payload);
            // The batch answers half a second before the deadline; the metrics flush (its
            // per-connection journal writes) must not eat the rest.
            let flush_by = deadline.map(|d| d.checked_sub(Duration::from_millis(250)).unwrap_or(d));
            let result = metrics
                .run_until(flush_by, handler.handle_batch_until(messages, deadline))
                .await;
            Ok::<SqsBatchResponse, Error>(order_push::lambda::response(&result))
        }
    }))
    .await
}
