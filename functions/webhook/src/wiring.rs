//! The Lambda's wiring from its environment: DynamoDB (connections, pending stock sets), SQS
//! (the status queue, the stock flush queue) and the webhook token key; served through API
//! Gateway (HTTP API).

use crate::{Receiver, StockIntake};
use runtime::config::env_parse;
use runtime::env_req;
use runtime::lambda::{InitError, SdkConfig};
use runtime::metrics::{Emitter, Function};
use std::sync::Arc;
use std::time::Duration;
use store::DynamoTable;

/// The function's timeout (template.yaml); its AWS calls' timeouts follow from it.
pub const FUNCTION_TIMEOUT: Duration = Duration::from_secs(10);

/// The router as the function serves it (one EMF flush per request: accepted / ignored /
/// refused, by reason).
pub struct App {
    pub router: axum::Router,
}

impl App {
    pub async fn from_env(aws: &SdkConfig) -> Result<App, InitError> {
        let table_name = env_req("TABLE_NAME")?;
        let queue_url = env_req("STATUS_QUEUE_URL")?;
        let stock_queue_url = env_req("STOCK_QUEUE_URL")?;
        let defaults = jobs::stock::FlushConfig::default();
        let stock_config = jobs::stock::FlushConfig {
            window: Duration::from_secs(env_parse("STOCK_WINDOW_SECS", defaults.window.as_secs())?),
            ..defaults
        };
        let token_key_arn = env_req("WEBHOOK_TOKEN_KEY_SECRET_ARN")?;
        let table = Arc::new(DynamoTable::new(
            aws_sdk_dynamodb::Client::new(aws),
            table_name,
        ));
        let sqs = aws_sdk_sqs::Client::new(aws);
        let queue = Arc::new(queue::SqsQueue::new(sqs.clone(), queue_url));
        let flushes = Arc::new(queue::SqsQueue::new(sqs, stock_queue_url));
        // Read once per cold start: every URL token is checked against keys derived from it.
        let token_key = runtime::load_token_key(aws, &token_key_arn).await?;
        let stock = StockIntake::new(table.clone(), flushes, table.clone(), stock_config);
        let receiver =
            Arc::new(Receiver::new(table.clone(), queue, table, token_key).with_stock(stock));
        Ok(App::new(receiver, Emitter::new(Function::Webhook)))
    }

    /// The receiver's router with the per-request metrics, as deployed.
    pub fn new(receiver: Arc<Receiver>, metrics: Emitter) -> App {
        App {
            router: runtime::metrics::http::layer(crate::router(receiver), metrics, None),
        }
    }

    /// Serves API Gateway requests until the runtime stops.
    pub async fn serve(self) -> Result<(), lambda_http::Error> {
        runtime::lambda::serve_http(self.router).await
    }
}
