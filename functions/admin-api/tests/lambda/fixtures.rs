//! The Lambda edge from JSON fixtures shaped like API Gateway HTTP API (payload 2.0) events
//! (`tests/fixtures/apigw_*.json`, `sqs_batch.json`), run through
//! `runtime::lambda::invoke_http` on `wiring::App`'s router — what the binary serves — with the
//! harness of `src/tests.rs` (in-memory stores, the KeyCRM simulator). The shop token and the
//! API key are put in at test time (`${TOKEN}`, `${API_KEY}`), never stored in a fixture.
//! (The binary itself, against a fake Runtime API: `tests/lambda_binary.rs`.)

use super::*;
use crate::wiring::App;
use runtime::lambda::{invoke_http, InvocationError};
use runtime::metrics::{Emitter, Function, Sink};

fn event(h: &H, name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect(&path);
    let text = text
        .replace("${TOKEN}", &h.token("s1"))
        .replace("${API_KEY}", KEY);
    serde_json::from_str(&text).expect(&path)
}

async fn invoke(h: &H, name: &str) -> Result<Value, InvocationError> {
    let metrics = Emitter::new(Function::AdminApi).with_sink(Sink::Discard);
    let app = App::with_router(h.router.clone(), metrics);
    let answer = invoke_http(app.router, event(h, name), lambda_http::Context::default()).await;
    if let Ok(a) = &answer {
        assert!(!a.to_string().contains(KEY), "the API key leaked: {a}");
    }
    answer
}

fn body(answer: &Value) -> Value {
    serde_json::from_str(answer["body"].as_str().unwrap_or("null")).unwrap_or(Value::Null)
}

#[tokio::test]
async fn fixture_connecting_a_shop_creates_the_connection() {
    let h = harness().await;
    let answer = invoke(&h, "apigw_put_connection.json").await.unwrap();
    assert_eq!(answer["statusCode"], 201, "{answer}");
    let b = body(&answer);
    assert_eq!(b["key_mask"], "••••cdef");
    let conn_id = b["id"].as_str().expect("the connection's id");
    let stored = h.secrets.get(&format!("test/keycrm/{conn_id}")).await;
    assert_eq!(stored.unwrap().expect("the key is stored").expose(), KEY);
}

#[tokio::test]
async fn fixture_a_malformed_body_is_refused_and_changes_nothing() {
    let h = harness().await;
    let answer = invoke(&h, "apigw_put_connection_malformed.json")
        .await
        .unwrap();
    assert_eq!(answer["statusCode"], 400, "{answer}");
    assert_eq!(body(&answer)["error"]["code"], "invalid_json");
    // Nothing was connected.
    let t = h.token("s1");
    let (st, _) = h
        .call("GET", "/v1/shops/s1/connection", Some(&t), None)
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn fixture_an_event_of_another_shape_is_invalid_input() {
    let h = harness().await;
    let err = invoke(&h, "sqs_batch.json").await.unwrap_err();
    assert_eq!(err.error_type(), "InvalidInput");
    assert!(err.to_string().contains("API Gateway HTTP API"), "{err}");
}
