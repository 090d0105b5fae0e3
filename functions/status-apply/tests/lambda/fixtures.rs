//! The Lambda edge from JSON fixtures shaped like real SQS events (`tests/fixtures/`), run
//! through `wiring::App::invoke` — what the binary serves — over the in-memory world of
//! `src/tests.rs`. (The binary itself, against a fake Runtime API: `tests/lambda_binary.rs`.)

use super::*;
use crate::wiring::{App, ACCEPTS};
use runtime::lambda::{Deadline, Invocation, InvocationError, NoSchedule};
use runtime::metrics::{Emitter, Function, Sink};
use serde_json::{json, Value};

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect(&path);
    serde_json::from_str(&text).expect(&path)
}

/// The app over the world; the status queue is found from the batch's ARN, as on Lambda
/// without `STATUS_QUEUE_URL` (the URLs asked for are kept).
fn app(w: &World, dead_letter: Option<Arc<dyn Queue>>) -> (App, Arc<Mutex<Vec<String>>>) {
    let asked = Arc::new(Mutex::new(Vec::new()));
    let (source, asked_into) = (Arc::new(MemoryQueue::new("status")), asked.clone());
    let applier = StatusApplier::new(
        w.conns.clone(),
        w.ledger.clone(),
        w.shop.clone(),
        w.journal.clone(),
        policy(),
    );
    let app = App {
        applier,
        source_url: None,
        queue_at: Box::new(move |url| {
            asked_into.lock().unwrap().push(url);
            source.clone() as Arc<dyn Queue>
        }),
        dead_letter,
        metrics: Emitter::new(Function::StatusApply).with_sink(Sink::Discard),
    };
    (app, asked)
}

async fn invoke(app: &App, name: &str) -> Result<Value, InvocationError> {
    let invocation = Invocation::<NoSchedule>::from_value(fixture(name), ACCEPTS)?;
    app.invoke(invocation, Deadline(None)).await
}

#[tokio::test]
async fn fixture_a_status_update_is_applied() {
    let w = world().await;
    let (app, asked) = app(&w, None);
    let answer = invoke(&app, "sqs_status_update.json").await.unwrap();
    assert_eq!(answer, json!({"batchItemFailures": []}));
    assert_eq!(w.status("A-1").as_deref(), Some("shipped"));
    assert_eq!(
        *asked.lock().unwrap(),
        vec!["https://sqs.eu-central-1.amazonaws.com/123456789012/shop-keycrm-StatusUpdatesQueue"]
    );
}

#[tokio::test]
async fn fixture_one_malformed_record_alone_comes_back_without_a_dead_letter_queue() {
    let w = world().await;
    let (app, _) = app(&w, None);
    let answer = invoke(&app, "sqs_batch_one_malformed.json").await.unwrap();
    // No queue for reasons: the redrive takes it after its last delivery.
    assert_eq!(
        answer,
        json!({"batchItemFailures": [{"itemIdentifier": "StatusUpdatesQueue-msg-2"}]})
    );
    assert_eq!(w.status("A-1").as_deref(), Some("shipped"));
    assert_eq!(w.status("A-3").as_deref(), Some("processing"));
}

#[tokio::test]
async fn fixture_one_malformed_record_is_dead_lettered_with_a_dead_letter_queue() {
    let w = world().await;
    let dlq = Arc::new(MemoryQueue::new("status-dlq"));
    let (app, _) = app(&w, Some(dlq.clone()));
    let answer = invoke(&app, "sqs_batch_one_malformed.json").await.unwrap();
    assert_eq!(answer, json!({"batchItemFailures": []}));
    let letters = dlq.bodies();
    assert_eq!(letters.len(), 1);
    let letter: queue::DeadLetter = serde_json::from_str(&letters[0]).unwrap();
    assert_eq!(letter.kind, "status_update");
    assert_eq!(letter.original, "{\"v\":1,\"connection_id\":");
    assert_eq!(w.status("A-1").as_deref(), Some("shipped"));
}

#[tokio::test]
async fn fixture_events_of_other_shapes_are_invalid_input() {
    let w = world().await;
    let (app, _) = app(&w, None);
    for name in [
        "apigw_http_request.json",
        "eventbridge_scheduled_event.json",
    ] {
        let err = invoke(&app, name).await.unwrap_err();
        assert_eq!(err.error_type(), "InvalidInput", "{name}");
        assert!(err.to_string().contains("SQS batch"), "{name}: {err}");
    }
    assert_eq!(w.status("A-1").as_deref(), Some("new"));
}
