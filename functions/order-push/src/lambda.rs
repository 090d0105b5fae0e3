//! The order-events SQS consumer on Lambda: the batch goes to [`OrderPush`] and its failures
//! become the partial batch response (the edge shared with the other consumers is
//! `runtime::lambda`).

use crate::{BatchResult, OrderPush};
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use runtime::lambda::{metered, Deadline, Invocation, InvocationError, NoSchedule};
use runtime::metrics::Emitter;
use std::time::Instant;

pub use runtime::sqs_batch::{deadline_from_epoch_ms as deadline, messages};

/// What the function is invoked with (named in the error for anything else).
pub const ACCEPTS: &str = "an SQS batch of order events";

/// `batchItemFailures`: the messages SQS must deliver again.
pub fn response(result: &BatchResult) -> SqsBatchResponse {
    runtime::sqs_batch::response(&result.failed_message_ids)
}

/// Handles one SQS batch of order events, answering before `deadline`.
pub async fn handle_sqs(
    push: &OrderPush,
    event: SqsEvent,
    deadline: Option<Instant>,
) -> SqsBatchResponse {
    let result = push.handle_batch_until(messages(event), deadline).await;
    response(&result)
}

/// One invocation, as the binary serves it: an SQS batch, metered; any other event is
/// refused as `InvalidInput`.
pub async fn invoke(
    push: &OrderPush,
    metrics: &Emitter,
    invocation: Invocation<NoSchedule>,
    deadline: Deadline,
) -> Result<serde_json::Value, InvocationError> {
    let event = invocation.into_sqs()?;
    metered(metrics, deadline, async {
        Ok(handle_sqs(push, event, deadline.0).await)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_sqs_event_becomes_messages_and_failures_become_the_response() {
        let raw = serde_json::json!({"Records": [{
            "messageId": "m-1", "receiptHandle": "r-1", "body": "{}",
            "attributes": {"ApproximateReceiveCount": "3"},
            "messageAttributes": {"attempt": {"stringValue": "2", "dataType": "String"}},
            "eventSource": "aws:sqs"
        }]});
        let event: SqsEvent = serde_json::from_value(raw).unwrap();
        let m = messages(event);
        assert_eq!(m.len(), 1);
        assert_eq!(
            (m[0].id.as_str(), m[0].receipt.as_str(), m[0].receive_count),
            ("m-1", "r-1", 3)
        );
        assert_eq!(m[0].attribute("attempt"), Some("2"));

        let result = BatchResult {
            failed_message_ids: vec!["m-1".into()],
            outcomes: vec![],
        };
        let v = serde_json::to_value(response(&result)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"batchItemFailures": [{"itemIdentifier": "m-1"}]})
        );
    }
}
