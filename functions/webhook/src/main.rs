//! Lambda wiring for the KeyCRM webhook receiver: read the environment, build the DynamoDB
//! and SQS adapters, serve the router through API Gateway (HTTP API).

use runtime::metrics::{Emitter, Function};
use std::sync::Arc;
use store::DynamoTable;
use webhook::Receiver;

fn main() -> Result<(), lambda_http::Error> {
    // lambda_runtime logs every raw invocation event at TRACE, and this function's events
    // carry the webhook token in their path: cap that crate at DEBUG whatever RUST_LOG says.
    // Set before the runtime starts any thread.
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
    std::env::set_var("RUST_LOG", format!("{filter},lambda_runtime=debug"));
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}

async fn run() -> Result<(), lambda_http::Error> {
    runtime::telemetry::init();
    let table_name = runtime::env_req("TABLE_NAME")?;
    let queue_url = runtime::env_req("STATUS_QUEUE_URL")?;
    let stock_queue_url = runtime::env_req("STOCK_QUEUE_URL")?;
    let defaults = jobs::stock::FlushConfig::default();
    let stock_config = jobs::stock::FlushConfig {
        window: std::time::Duration::from_secs(runtime::config::env_parse(
            "STOCK_WINDOW_SECS",
            defaults.window.as_secs(),
        )?),
        ..defaults
    };
    let token_key_arn = runtime::env_req("WEBHOOK_TOKEN_KEY_SECRET_ARN")?;
    // One shared configuration load keeps the cold start short.
    // Timeouts that fit the function's 10 s (template.yaml).
    let conf = runtime::aws::sdk_config(runtime::aws::AwsTimeouts::for_function(
        std::time::Duration::from_secs(10),
    ))
    .await;
    let table = Arc::new(DynamoTable::new(
        aws_sdk_dynamodb::Client::new(&conf),
        table_name,
    ));
    let sqs = aws_sdk_sqs::Client::new(&conf);
    let queue = Arc::new(queue::SqsQueue::new(sqs.clone(), queue_url));
    let flushes = Arc::new(queue::SqsQueue::new(sqs, stock_queue_url));
    // Read once per cold start: every URL token is checked against keys derived from it.
    let token_key = runtime::load_token_key(&conf, &token_key_arn).await?;
    let stock = webhook::StockIntake::new(table.clone(), flushes, table.clone(), stock_config);
    let receiver =
        Arc::new(Receiver::new(table.clone(), queue, table, token_key).with_stock(stock));
    // One EMF flush per request (accepted / ignored / refused, by reason).
    let metrics = Emitter::new(Function::Webhook);
    lambda_http::run(runtime::metrics::http::layer(
        webhook::router(receiver),
        metrics,
        None,
    ))
    .await
}
