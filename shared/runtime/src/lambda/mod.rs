//! The Lambda edge, written once for every function: what arrives (an [`Invocation`] decided
//! by serde), how a cold start that cannot finish is reported ([`start`], `/init/error`), how
//! an invocation fails ([`InvocationError`], a meaningful `errorType`), and how an SQS batch
//! is answered ([`answer_batch`], the partial batch response with per-message deadlines and
//! isolation from `crate::sqs_batch`).
//!
//! Each function's `main.rs` is then: telemetry, [`aws_config`] (the one AWS configuration
//! load of the process), the function's own `from_env` wiring, [`start`].

mod batch;
mod error;
#[cfg(any(test, feature = "test-kit"))]
pub mod fake_api;
mod http;
mod init;
mod invocation;
mod serve;

pub use aws_config::SdkConfig;
pub use batch::{answer_batch, answer_through, BatchLimits};
pub use error::{InitError, InvocationError};
pub use http::{invoke_http, serve_http, HTTP_ACCEPTS};
pub use init::{aws_config, report_init_error, start, RUNTIME_API_VAR};
pub use invocation::{Invocation, NoSchedule};
pub use serve::{flush_by, metered, serve, Deadline};
