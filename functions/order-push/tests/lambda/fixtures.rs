//! The Lambda edge from JSON fixtures shaped like real SQS events (`tests/fixtures/`), run
//! through `order_push::lambda::invoke` — what the binary serves — with the in-memory
//! adapters of `handler.rs`; and the real binary against a fake Runtime API for what happens
//! before any handler runs (a start that cannot finish, an event of no known shape).

use super::*;
use order_push::lambda::{invoke, ACCEPTS};
use runtime::lambda::fake_api;
use runtime::lambda::{Deadline, Invocation, InvocationError, NoSchedule};
use runtime::metrics::{Emitter, Function, Sink};
use serde_json::{json, Value};

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect(&path);
    serde_json::from_str(&text).expect(&path)
}

async fn invoke_with(w: &World, name: &str) -> Result<Value, InvocationError> {
    let invocation = Invocation::<NoSchedule>::from_value(fixture(name), ACCEPTS)?;
    let metrics = Emitter::new(Function::OrderPush).with_sink(Sink::Discard);
    invoke(&w.push, &metrics, invocation, Deadline(None)).await
}

const BINARY: &str = env!("CARGO_BIN_EXE_order-push");

fn binary_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("TABLE_NAME", "shop-keycrm-test"),
        (
            "ORDER_QUEUE_URL",
            "http://127.0.0.1:9/000000000000/shop-keycrm-orders",
        ),
        (
            "ORDER_DLQ_URL",
            "http://127.0.0.1:9/000000000000/shop-keycrm-orders-dlq",
        ),
    ]
}

#[tokio::test]
async fn fixture_an_order_created_batch_creates_the_order() {
    let w = world(OrderSyncType::Orders).await;
    let answer = invoke_with(&w, "sqs_order_created.json").await.unwrap();
    assert_eq!(answer, json!({"batchItemFailures": []}));
    let orders = w.crm.orders();
    assert_eq!(orders.len(), 1);
    assert_eq!(orders[0].1.source_uuid.as_deref(), Some("shop-1:F1"));
    assert_eq!(w.entry("F1").await.state, LedgerState::Created);
}

#[tokio::test]
async fn fixture_one_malformed_record_is_dead_lettered_alone() {
    let w = world(OrderSyncType::Orders).await;
    let answer = invoke_with(&w, "sqs_batch_one_malformed.json")
        .await
        .unwrap();
    // Dead-lettered with its reason and acknowledged: nothing comes back, nothing is lost.
    assert_eq!(answer, json!({"batchItemFailures": []}));
    let created: Vec<_> = w
        .crm
        .orders()
        .iter()
        .map(|(_, o)| o.source_uuid.clone().unwrap_or_default())
        .collect();
    assert_eq!(created.len(), 2, "{created:?}");
    assert!(
        created.contains(&"shop-1:F2".to_string()) && created.contains(&"shop-1:F3".to_string())
    );
    let letters = w.dead_letters().await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["kind"], "malformed");
    let batch = fixture("sqs_batch_one_malformed.json");
    assert_eq!(letters[0]["original"], batch["Records"][1]["body"]);
}

#[tokio::test]
async fn fixture_an_event_of_another_shape_is_invalid_input() {
    let w = world(OrderSyncType::Orders).await;
    let err = invoke_with(&w, "eventbridge_scheduled_event.json")
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "InvalidInput");
    assert!(err.to_string().contains(ACCEPTS), "{err}");
    assert!(w.crm.orders().is_empty());
}

#[tokio::test]
async fn the_binary_reports_a_missing_variable_to_init_error() {
    fake_api::assert_missing_variable_is_an_init_error(BINARY, &binary_env(), "ORDER_QUEUE_URL")
        .await;
}

#[tokio::test]
async fn the_binary_answers_an_unknown_event_with_invalid_input() {
    let errors = fake_api::assert_unknown_events_are_invalid_input(
        BINARY,
        &binary_env(),
        vec![
            fixture("eventbridge_scheduled_event.json"),
            json!({"kind": "tick"}),
        ],
    )
    .await;
    assert_eq!(errors[0].request_id.as_deref(), Some("req-1"));
}
