//! The Lambda edge from JSON fixtures shaped like API Gateway HTTP API (payload 2.0) events
//! (`tests/fixtures/`), run through `runtime::lambda::invoke_http` on `wiring::App`'s router —
//! what the binary serves — with the in-memory stores of `src/tests.rs`. The URL's token is
//! derived at test time (`${TOKEN}`), never stored in a fixture.
//! (The binary itself, against a fake Runtime API: `tests/lambda_binary.rs`.)

use super::*;
use crate::wiring::App;
use runtime::lambda::{invoke_http, InvocationError};
use runtime::metrics::{Emitter, Function, Sink};

fn event(name: &str, token: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect(&path);
    serde_json::from_str(&text.replace("${TOKEN}", token)).expect(&path)
}

async fn invoke(f: &Fixture, name: &str) -> Result<Value, InvocationError> {
    let receiver = Receiver::new(f.conns.clone(), f.queue.clone(), f.journal.clone(), key());
    let metrics = Emitter::new(Function::Webhook).with_sink(Sink::Discard);
    let app = App::new(Arc::new(receiver), metrics);
    let payload = event(name, &f.orders_token);
    invoke_http(app.router, payload, lambda_http::Context::default()).await
}

fn body(answer: &Value) -> Value {
    serde_json::from_str(answer["body"].as_str().unwrap_or("null")).unwrap_or(Value::Null)
}

#[tokio::test]
async fn fixture_an_order_status_webhook_is_enqueued() {
    let f = fixture(true).await;
    let answer = invoke(&f, "apigw_keycrm_order_status.json").await.unwrap();
    assert_eq!(answer["statusCode"], 200, "{answer}");
    assert_eq!(body(&answer), json!({"status": "accepted"}));
    let jobs = f.jobs();
    assert_eq!(jobs.len(), 1);
    assert_eq!(
        (jobs[0].target, jobs[0].keycrm_id, jobs[0].status_id),
        (Target::Order, 67526, 3)
    );
}

#[tokio::test]
async fn fixture_a_malformed_body_is_refused_and_changes_nothing() {
    let f = fixture(true).await;
    let answer = invoke(&f, "apigw_keycrm_malformed_body.json")
        .await
        .unwrap();
    assert_eq!(answer["statusCode"], 400, "{answer}");
    let text = answer["body"].as_str().unwrap_or_default();
    assert!(text.contains("not valid JSON"), "{text}");
    // The token is not echoed back.
    assert!(!text.contains(&f.orders_token), "{text}");
    assert!(f.jobs().is_empty());
}

#[tokio::test]
async fn fixture_an_event_of_another_shape_is_invalid_input() {
    let f = fixture(true).await;
    let err = invoke(&f, "sqs_batch.json").await.unwrap_err();
    assert_eq!(err.error_type(), "InvalidInput");
    assert!(err.to_string().contains("API Gateway HTTP API"), "{err}");
    assert!(f.jobs().is_empty());
}
