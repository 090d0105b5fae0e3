//! Structured logs: JSON on Lambda (CloudWatch parses the fields), compact text locally.
//!
//! Two filters decide what is written, and an event must pass both:
//!
//! - the level from `RUST_LOG` (default `info`), any directive syntax `EnvFilter` accepts;
//! - [`caps`]: fixed ceilings for the crates that log request and response internals at DEBUG
//!   and TRACE — the AWS SDK (request bodies such as `CreateSecret`/`PutSecretValue` carry a
//!   KeyCRM key; signing traces), hyper/h2/reqwest/rustls (headers, connection state) and the
//!   Lambda runtime (raw invocation events: an admin request's body, a webhook URL's token).
//!
//! The caps are a separate filter layer rather than directives added to `RUST_LOG`, so no
//! `RUST_LOG` spelling can lift them (`aws_sigv4::http_request=trace`, span filters such as
//! `[send_operation]=trace`): a more specific directive would win inside one `EnvFilter`, but
//! it cannot switch on what another filter switches off. They also do not rely on the SDK's own
//! redaction defaults (`LOG_SIGNABLE_BODY`, `LOG_SENSITIVE_BODIES`), which a variable turns off.

use tracing::Subscriber;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Target prefixes that never log above INFO, whatever `RUST_LOG` says. Prefixes match as
/// `EnvFilter` targets do (`aws_` covers `aws_sdk_*`, `aws_smithy_*`, `aws_sigv4`, `aws_config`;
/// `hyper` covers `hyper_util` and `hyper_rustls`; `lambda_` covers `lambda_runtime`,
/// `lambda_runtime_api_client` and `lambda_http`).
pub const CAPPED_TARGETS: [&str; 8] = [
    "aws_",
    "hyper",
    "h2",
    "reqwest",
    "rustls",
    "tokio_rustls",
    "lambda_",
    "tower_http",
];

/// The most those crates may log.
pub const CAP: LevelFilter = LevelFilter::INFO;

/// The ceilings as a filter: everything else passes (the `RUST_LOG` filter decides).
pub fn caps() -> Targets {
    Targets::new()
        .with_default(LevelFilter::TRACE)
        .with_targets(CAPPED_TARGETS.iter().map(|t| (*t, CAP)))
}

/// The `RUST_LOG`-style filter for `spec`; an unreadable spec falls back to `info`.
pub fn level_filter(spec: Option<&str>) -> EnvFilter {
    spec.and_then(|s| EnvFilter::try_new(s).ok())
        .unwrap_or_else(|| EnvFilter::new("info"))
}

/// How lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line, no timestamp (Lambda stamps every line itself).
    Json,
    /// Compact text with timestamps (local runs, tests).
    Text,
}

/// The subscriber every function installs: the `spec` level filter, the [`caps`], and the
/// format. Tests build it with their own writer to capture exactly what production writes.
pub fn subscriber<W>(
    spec: Option<&str>,
    format: Format,
    writer: W,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(level_filter(spec))
        .with_writer(writer)
        .with_ansi(false);
    match format {
        Format::Json => Box::new(
            builder
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .without_time()
                .finish()
                .with(caps()),
        ),
        Format::Text => Box::new(builder.compact().finish().with(caps())),
    }
}

/// Installs the global subscriber once. Level from `RUST_LOG` (default `info`).
pub fn init() {
    let on_lambda = std::env::var("AWS_LAMBDA_FUNCTION_NAME").is_ok();
    let json = on_lambda || std::env::var("LOG_FORMAT").is_ok_and(|v| v == "json");
    let spec = std::env::var("RUST_LOG").ok();
    let format = if json { Format::Json } else { Format::Text };
    // Already installed (tests, the local runner hosting several handlers): keep the first.
    let _ = subscriber(spec.as_deref(), format, std::io::stdout).try_init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    #[test]
    fn the_sdk_http_and_runtime_crates_never_log_below_info() {
        let caps = caps();
        for target in [
            "aws_sigv4::http_request::sign",
            "aws_smithy_runtime::client::orchestrator",
            "aws_sdk_secretsmanager::operation::create_secret",
            "aws_config::default_provider",
            "hyper::proto::h1::role",
            "hyper_util::client::legacy::pool",
            "h2::codec::framed_write",
            "reqwest::connect",
            "rustls::client::hs",
            "lambda_runtime::layers::api_client",
            "lambda_runtime_api_client",
            "lambda_http::request",
        ] {
            assert!(caps.would_enable(target, &Level::INFO), "{target} INFO");
            assert!(!caps.would_enable(target, &Level::DEBUG), "{target} DEBUG");
            assert!(!caps.would_enable(target, &Level::TRACE), "{target} TRACE");
        }
        // The connector's own crates keep every level RUST_LOG asks for.
        for target in [
            "admin_api",
            "catalog_sync::engine",
            "store::connection",
            "webhook",
        ] {
            assert!(caps.would_enable(target, &Level::TRACE), "{target}");
        }
    }

    #[test]
    fn an_unreadable_spec_means_info() {
        assert_eq!(
            level_filter(Some("=[")).max_level_hint(),
            Some(LevelFilter::INFO)
        );
        assert_eq!(level_filter(None).max_level_hint(), Some(LevelFilter::INFO));
        assert_eq!(
            level_filter(Some("trace")).max_level_hint(),
            Some(LevelFilter::TRACE)
        );
    }
}
