//! Lambda wiring for stock-apply: the environment's adapters (`stock_apply::wiring`), then
//! each SQS batch of flush messages to the library (partial batch responses).

use std::process::ExitCode;
use stock_apply::wiring::{App, FUNCTION_TIMEOUT};

#[tokio::main]
async fn main() -> ExitCode {
    runtime::telemetry::init();
    let aws = runtime::lambda::aws_config(FUNCTION_TIMEOUT).await;
    runtime::lambda::start(App::from_env(&aws).await, App::serve).await
}
