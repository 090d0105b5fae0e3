//! Lambda wiring for catalog-sync: the environment's adapters (`catalog_sync::wiring`), then
//! each invocation — an EventBridge schedule input or a sync-jobs SQS batch — to the engine.

use catalog_sync::wiring::{App, FUNCTION_TIMEOUT};
use std::process::ExitCode;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    runtime::telemetry::init();
    let aws = runtime::lambda::aws_config(FUNCTION_TIMEOUT).await;
    runtime::lambda::start(App::from_env(&aws).await, App::serve).await
}
