//! What one invocation carries, decided by serde from the payload's own shape: an SQS batch
//! (`Records`), an API Gateway HTTP API (v2) request (`requestContext.http`), or a function's
//! EventBridge Scheduler input (`S`, e.g. catalog-sync's `{"kind": "tick"}`).

use super::InvocationError;
use aws_lambda_events::event::apigw::ApiGatewayV2httpRequest;
use aws_lambda_events::event::sqs::SqsEvent;
use serde::de::DeserializeOwned;
use serde::Deserialize;

/// One invocation's payload. The variants are tried in this order, each needing its own
/// required fields, so a payload matches at most the first shape it fully has.
#[derive(Debug, Deserialize)]
#[serde(untagged, bound(deserialize = "S: DeserializeOwned"))]
pub enum Invocation<S> {
    /// An SQS event source batch.
    Sqs(SqsEvent),
    /// An API Gateway HTTP API (payload format 2.0) request.
    Http(Box<ApiGatewayV2httpRequest>),
    /// The function's schedule input.
    Schedule(S),
}

/// The schedule input of a function that has no schedule: no payload deserializes into it.
#[derive(Debug, Deserialize)]
pub enum NoSchedule {}

impl<S: DeserializeOwned> Invocation<S> {
    /// Reads a payload. A payload of no known shape is an [`InvocationError::invalid_input`]
    /// naming the shapes the function accepts (`expected`), never quoting the payload (it may
    /// carry a token).
    pub fn from_value(payload: serde_json::Value, expected: &str) -> Result<Self, InvocationError> {
        serde_json::from_value(payload).map_err(|_| {
            InvocationError::invalid_input(format!(
                "the event is not one this function handles (this function handles {expected})"
            ))
        })
    }

    /// The shape's name, for errors and logs.
    pub fn shape(&self) -> &'static str {
        match self {
            Invocation::Sqs(_) => "an SQS batch",
            Invocation::Http(_) => "an API Gateway HTTP API request",
            Invocation::Schedule(_) => "a schedule input",
        }
    }

    /// The SQS batch, or an [`InvocationError::invalid_input`] for any other shape (the
    /// consumers that only ever read a queue).
    pub fn into_sqs(self) -> Result<SqsEvent, InvocationError> {
        match self {
            Invocation::Sqs(event) => Ok(event),
            other => Err(InvocationError::invalid_input(format!(
                "the event is {}; this function handles SQS batches only",
                other.shape()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "lowercase")]
    enum Kind {
        Tick,
        Full,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Tick {
        kind: Kind,
    }

    const EXPECTED: &str = "an SQS batch or {\"kind\": ...}";

    #[test]
    fn an_sqs_batch_is_read_as_one() {
        let v = json!({"Records": [{"messageId": "m-1", "body": "{}", "eventSource": "aws:sqs"}]});
        match Invocation::<Tick>::from_value(v, EXPECTED).unwrap() {
            Invocation::Sqs(e) => assert_eq!(e.records[0].message_id.as_deref(), Some("m-1")),
            other => panic!("{other:?}"),
        }
        // An empty batch is still a batch, not a schedule input.
        let empty = Invocation::<Tick>::from_value(json!({"Records": []}), EXPECTED).unwrap();
        assert!(matches!(empty, Invocation::Sqs(e) if e.records.is_empty()));
    }

    #[test]
    fn a_schedule_input_is_read_as_one() {
        let v = json!({"kind": "full", "at": "2026-01-01T00:00:00Z"});
        match Invocation::<Tick>::from_value(v, EXPECTED).unwrap() {
            Invocation::Schedule(t) => assert_eq!(t.kind, Kind::Full),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_http_api_request_is_read_as_one() {
        let v = json!({
            "version": "2.0", "routeKey": "$default", "rawPath": "/health",
            "rawQueryString": "", "headers": {},
            "requestContext": {"http": {"method": "GET", "path": "/health",
                "protocol": "HTTP/1.1", "sourceIp": "203.0.113.1", "userAgent": "t"}},
            "isBase64Encoded": false
        });
        let inv = Invocation::<NoSchedule>::from_value(v, EXPECTED).unwrap();
        assert_eq!(inv.shape(), "an API Gateway HTTP API request");
        let err = inv.into_sqs().unwrap_err();
        assert_eq!(err.error_type(), "InvalidInput");
        assert!(err.to_string().contains("SQS batches only"), "{err}");
    }

    #[test]
    fn an_unknown_shape_is_a_clear_error_that_does_not_quote_the_payload() {
        for v in [
            json!({"kind": "weekly"}),
            json!({"token": "s3cr3t-value"}),
            json!([1, 2]),
            json!("tick"),
            json!({"Records": "not a list"}),
        ] {
            let err = Invocation::<Tick>::from_value(v, EXPECTED).unwrap_err();
            assert_eq!(err.error_type(), "InvalidInput");
            let text = err.to_string();
            assert!(
                text.contains("this function handles an SQS batch"),
                "{text}"
            );
            assert!(!text.contains("s3cr3t"), "{text}");
        }
        // A function without a schedule takes no schedule-looking input either.
        let err = Invocation::<NoSchedule>::from_value(json!({"kind": "tick"}), "an SQS batch")
            .unwrap_err();
        assert_eq!(err.error_type(), "InvalidInput");
    }
}
