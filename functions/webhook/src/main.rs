//! Lambda wiring for the KeyCRM webhook receiver: read the environment, build the DynamoDB
//! and SQS adapters, serve the router through API Gateway (HTTP API).

use std::sync::Arc;
use store::DynamoTable;
use webhook::Receiver;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    runtime::telemetry::init();
    let table_name = runtime::env_req("TABLE_NAME")?;
    let queue_url = runtime::env_req("STATUS_QUEUE_URL")?;
    // One shared configuration load keeps the cold start short.
    let conf = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let table = Arc::new(DynamoTable::new(
        aws_sdk_dynamodb::Client::new(&conf),
        table_name,
    ));
    let queue = Arc::new(queue::SqsQueue::new(
        aws_sdk_sqs::Client::new(&conf),
        queue_url,
    ));
    let receiver = Arc::new(Receiver::new(table.clone(), queue, table));
    lambda_http::run(webhook::router(receiver)).await
}
