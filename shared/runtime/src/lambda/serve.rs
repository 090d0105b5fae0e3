//! Serving invocations: the payload read as an [`Invocation`], the function's handler run on
//! it with the invocation's deadline, and its failure reported with its own `errorType`.

use super::{Invocation, InvocationError};
use lambda_runtime::{service_fn, LambdaEvent};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::future::Future;
use std::time::{Duration, Instant};

/// The invocation's deadline (`None` when the runtime gave none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadline(pub Option<Instant>);

impl Deadline {
    pub fn from_context(ctx: &lambda_runtime::Context) -> Self {
        Deadline(crate::sqs_batch::deadline_from_epoch_ms(ctx.deadline))
    }

    /// When the per-invocation metrics flush must be done: a quarter second before the
    /// deadline, so the answer still comes in time.
    pub fn flush_by(self) -> Option<Instant> {
        flush_by(self.0)
    }
}

/// A quarter second before `deadline` (the metrics flush's bound).
pub fn flush_by(deadline: Option<Instant>) -> Option<Instant> {
    deadline.map(|d| d.checked_sub(Duration::from_millis(250)).unwrap_or(d))
}

/// Runs the Lambda runtime: each payload becomes an [`Invocation`] (`expected` names the
/// shapes the function takes, for the error when it is none of them) and goes to `handler`
/// with its deadline. A payload of no known shape fails with `errorType` `InvalidInput`.
pub async fn serve<S, H, Fut>(
    expected: &'static str,
    handler: H,
) -> Result<(), lambda_runtime::Error>
where
    S: DeserializeOwned,
    H: Fn(Invocation<S>, Deadline) -> Fut,
    Fut: Future<Output = Result<Value, InvocationError>>,
{
    let handler = &handler;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let deadline = Deadline::from_context(&event.context);
        let invocation = Invocation::<S>::from_value(event.payload, expected).inspect_err(|e| {
            tracing::error!(error_type = e.error_type(), error = %e, "invocation refused");
        })?;
        handler(invocation, deadline).await.inspect_err(|e| {
            tracing::error!(error_type = e.error_type(), error = %e, "invocation failed");
        })
    }))
    .await
}

/// Runs one invocation's work inside the function's per-invocation metrics (one EMF flush,
/// bounded by [`Deadline::flush_by`]) and writes its answer.
pub async fn metered<F, T>(
    metrics: &crate::metrics::Emitter,
    deadline: Deadline,
    work: F,
) -> Result<Value, InvocationError>
where
    F: Future<Output = Result<T, InvocationError>>,
    T: serde::Serialize,
{
    let answer = metrics.run_until(deadline.flush_by(), work).await?;
    Ok(serde_json::to_value(answer)?)
}
