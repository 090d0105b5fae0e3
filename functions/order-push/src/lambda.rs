//! Translation between the Lambda SQS event and the handler's queue messages.

use crate::BatchResult;
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The messages of an SQS event, with the attributes the handler reads.
pub fn messages(event: SqsEvent) -> Vec<queue::Message> {
    event
        .records
        .into_iter()
        .map(|r| {
            let receive_count = r
                .attributes
                .get("ApproximateReceiveCount")
                .and_then(|v| v.parse().ok())
                .unwrap_or(1);
            let attributes = r
                .message_attributes
                .into_iter()
                .filter_map(|(k, v)| v.string_value.map(|s| (k, s)))
                .collect();
            queue::Message {
                id: r.message_id.unwrap_or_default(),
                body: r.body.unwrap_or_default(),
                receipt: r.receipt_handle.unwrap_or_default(),
                receive_count,
                attributes,
            }
        })
        .collect()
}

/// `batchItemFailures`: the messages SQS must deliver again.
pub fn response(result: &BatchResult) -> SqsBatchResponse {
    let mut resp = SqsBatchResponse::default();
    resp.batch_item_failures = result
        .failed_message_ids
        .iter()
        .map(|id| {
            let mut f = BatchItemFailure::default();
            f.item_identifier = id.clone();
            f
        })
        .collect();
    resp
}

/// The invocation deadline (epoch milliseconds) as an `Instant`; `None` if unknown.
pub fn deadline(deadline_ms: u64) -> Option<Instant> {
    if deadline_ms == 0 {
        return None;
    }
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .ok()?;
    Some(Instant::now() + Duration::from_millis(deadline_ms.saturating_sub(now_ms)))
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
