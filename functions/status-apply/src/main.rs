//! Lambda wiring for status-apply: the environment's adapters (`status_apply::wiring`), then
//! each SQS batch of status updates to the library (partial batch responses).

use status_apply::wiring::{App, FUNCTION_TIMEOUT};
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    runtime::telemetry::init();
    let aws = runtime::lambda::aws_config(FUNCTION_TIMEOUT).await;
    runtime::lambda::start(App::from_env(&aws).await, App::serve).await
}
