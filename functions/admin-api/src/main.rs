//! Lambda wiring for the admin API: the environment's adapters (`admin_api::wiring`), the
//! router served through `lambda_http`. Everything else lives in the library.

use admin_api::wiring::{App, FUNCTION_TIMEOUT};
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    runtime::telemetry::init();
    let aws = runtime::lambda::aws_config(FUNCTION_TIMEOUT).await;
    runtime::lambda::start(App::from_env(&aws).await, App::serve).await
}
