//! Translation between the Lambda SQS event and the handler (shared with the other SQS
//! consumers in `runtime::sqs_batch`).

use crate::BatchResult;
use aws_lambda_events::event::sqs::SqsBatchResponse;

pub use runtime::sqs_batch::{deadline_from_epoch_ms as deadline, messages};

/// `batchItemFailures`: the messages SQS must deliver again.
pub fn response(result: &BatchResult) -> SqsBatchResponse {
    runtime::sqs_batch::response(&result.failed_message_ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::event::sqs::SqsEvent;

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
