//! Structured logs: JSON on Lambda (CloudWatch parses the fields), compact text locally.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once. Level from `RUST_LOG` (default `info`).
pub fn init() {
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // At TRACE the Lambda runtime logs raw events, and a webhook event's path holds the URL
    // token: never let it log more than DEBUG, whatever RUST_LOG says.
    if filter.max_level_hint() == Some(tracing_subscriber::filter::LevelFilter::TRACE) {
        for directive in [
            "lambda_runtime=debug",
            "lambda_runtime_api_client=debug",
            "lambda_http=debug",
        ] {
            if let Ok(d) = directive.parse() {
                filter = filter.add_directive(d);
            }
        }
    }
    let on_lambda = std::env::var("AWS_LAMBDA_FUNCTION_NAME").is_ok();
    let json = on_lambda || std::env::var("LOG_FORMAT").is_ok_and(|v| v == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    let result = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            // Lambda stamps every line itself.
            .without_time()
            .try_init()
    } else {
        builder.compact().try_init()
    };
    // Already installed (tests, the local runner hosting several handlers): keep the first.
    let _ = result;
}
