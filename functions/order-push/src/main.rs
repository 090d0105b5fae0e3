//! Lambda entry point: the environment's wiring, then each SQS batch of order events to the
//! handler with partial batch failures (`order_push::wiring`, `order_push::lambda`).

use order_push::wiring::{App, FUNCTION_TIMEOUT};
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    runtime::telemetry::init();
    let aws = runtime::lambda::aws_config(FUNCTION_TIMEOUT).await;
    runtime::lambda::start(App::from_env(&aws).await, App::serve).await
}
