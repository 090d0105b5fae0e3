//! The cold start: one AWS configuration per process, and a start that cannot finish told to
//! Lambda through the Runtime API's `/init/error` (so the console and the logs show "environment
//! variable TABLE_NAME is required", not a panic or a debug line), then a non-zero exit.

use super::InitError;
use crate::aws::{sdk_config, AwsTimeouts};
use aws_config::SdkConfig;
use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

/// Where Lambda tells a custom runtime its Runtime API (`host:port`).
pub const RUNTIME_API_VAR: &str = "AWS_LAMBDA_RUNTIME_API";

/// The process's AWS configuration, loaded once, with timeouts that fit the function's own
/// timeout (`template.yaml`): every client the wiring builds shares it.
pub async fn aws_config(function_timeout: Duration) -> SdkConfig {
    sdk_config(AwsTimeouts::for_function(function_timeout)).await
}

/// Runs a function: when its wiring was built, serves it until the runtime stops; when not,
/// reports why to `/init/error`. The exit code is non-zero on either failure.
pub async fn start<A, F, Fut, E>(built: Result<A, InitError>, serve: F) -> ExitCode
where
    F: FnOnce(A) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let app = match built {
        Ok(app) => app,
        Err(e) => {
            report_init_error(&e).await;
            return ExitCode::FAILURE;
        }
    };
    match serve(app).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The runtime's own failure (the Runtime API went away): nothing to report to.
            tracing::error!(error = %e, "the Lambda runtime stopped");
            ExitCode::FAILURE
        }
    }
}

/// Logs the error and posts it to the Runtime API's `/init/error` (when running under one):
/// header `Lambda-Runtime-Function-Error-Type`, body `{"errorMessage", "errorType"}`.
pub async fn report_init_error(e: &InitError) {
    tracing::error!(error_type = e.error_type(), error = %e, "the function cannot start");
    let Some(api) = crate::config::env_opt(RUNTIME_API_VAR) else {
        return;
    };
    let body = serde_json::json!({"errorMessage": e.message(), "errorType": e.error_type()});
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
    {
        Ok(c) => c,
        Err(err) => {
            tracing::error!(error = %err, "could not build the Runtime API client");
            return;
        }
    };
    let sent = client
        .post(format!("http://{api}/2018-06-01/runtime/init/error"))
        .header("Lambda-Runtime-Function-Error-Type", e.error_type())
        .json(&body)
        .send()
        .await;
    match sent {
        Ok(r) if r.status().is_success() => {}
        Ok(r) => tracing::error!(status = %r.status(), "the Runtime API refused the init error"),
        Err(err) => tracing::error!(error = %err, "could not report the init error"),
    }
}
