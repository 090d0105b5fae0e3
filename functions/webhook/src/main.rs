//! Lambda wiring for the KeyCRM webhook receiver: the environment's adapters
//! (`webhook::wiring`), served through API Gateway (HTTP API).

use std::process::ExitCode;
use webhook::wiring::{App, FUNCTION_TIMEOUT};

fn main() -> ExitCode {
    // lambda_runtime logs every raw invocation event at TRACE, and this function's events
    // carry the webhook token in their path: cap that crate at DEBUG whatever RUST_LOG says.
    // Set before the runtime starts any thread.
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
    std::env::set_var("RUST_LOG", format!("{filter},lambda_runtime=debug"));
    let Ok(rt) = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    else {
        eprintln!("the async runtime could not start");
        return ExitCode::FAILURE;
    };
    rt.block_on(async {
        runtime::telemetry::init();
        let aws = runtime::lambda::aws_config(FUNCTION_TIMEOUT).await;
        runtime::lambda::start(App::from_env(&aws).await, App::serve).await
    })
}
