//! The Lambda edge from JSON fixtures shaped like real SQS events (`tests/fixtures/`), run
//! through `wiring::App::invoke` — what the binary serves — over the in-memory world of
//! `src/tests.rs`. A flush names the window it was scheduled for, so the fixtures' `${WINDOW}`
//! is the window the test's signal opened. (The binary itself: `tests/lambda_binary.rs`.)

use super::*;
use crate::wiring::{App, ACCEPTS};
use runtime::lambda::{Deadline, Invocation, InvocationError, NoSchedule};
use runtime::metrics::{Emitter, Function, Sink};
use serde_json::{json, Value};

fn fixture(name: &str, window: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect(&path);
    serde_json::from_str(&text.replace("${WINDOW}", window)).expect(&path)
}

fn app(w: &World, dead_letter: Option<Arc<dyn Queue>>) -> App {
    let flusher = Flusher::new(
        w.conns.clone(),
        w.stock.clone(),
        w.links.clone(),
        w.shop.clone(),
        w.source.clone(),
        w.journal.clone(),
        w.flushes.clone(),
        fast(),
    );
    App {
        applier: StockApplier::new(flusher, RetryPolicy::default()),
        transport: Transport {
            source: Some(w.flushes.clone()),
            dead_letter,
        },
        metrics: Emitter::new(Function::StockApply).with_sink(Sink::Discard),
    }
}

/// Signals offer 1000 as gone: the window its flush is for.
async fn signalled(w: &World) -> String {
    w.set(1000, false);
    let body = w.signal(&[1000]).await.expect("a flush is scheduled");
    let job: FlushJob = serde_json::from_str(&body).unwrap();
    // The flush is handed over by the fixture, not by the queue.
    let msgs = w
        .flushes
        .receive(10, Duration::from_secs(1), Duration::from_secs(30))
        .await
        .unwrap();
    for m in msgs {
        w.flushes.delete(&m.receipt).await.unwrap();
    }
    job.window
}

async fn invoke(app: &App, name: &str, window: &str) -> Result<Value, InvocationError> {
    let invocation = Invocation::<NoSchedule>::from_value(fixture(name, window), ACCEPTS)?;
    app.invoke(invocation, Deadline(None)).await
}

#[tokio::test]
async fn fixture_a_flush_writes_the_changed_availability() {
    let w = world(1, 2, fast(), RetryPolicy::default()).await;
    let window = signalled(&w).await;
    let answer = invoke(&app(&w, None), "sqs_stock_flush.json", &window)
        .await
        .unwrap();
    assert_eq!(answer, json!({"batchItemFailures": []}));
    assert!(!w.variant(1000) && w.variant(1001));
    assert!(w.stock.pending(CONN).await.unwrap().is_empty());
}

#[tokio::test]
async fn fixture_one_malformed_record_alone_comes_back_without_a_dead_letter_queue() {
    let w = world(1, 2, fast(), RetryPolicy::default()).await;
    let window = signalled(&w).await;
    let answer = invoke(&app(&w, None), "sqs_batch_one_malformed.json", &window)
        .await
        .unwrap();
    assert_eq!(
        answer,
        json!({"batchItemFailures": [{"itemIdentifier": "StockFlushQueue-msg-2"}]})
    );
    // The good flush ran; the stale one (an old window) was dropped.
    assert!(!w.variant(1000));
}

#[tokio::test]
async fn fixture_one_malformed_record_is_dead_lettered_with_a_dead_letter_queue() {
    let w = world(1, 2, fast(), RetryPolicy::default()).await;
    let window = signalled(&w).await;
    let dlq = Arc::new(MemoryQueue::new("stock-dlq"));
    let app = app(&w, Some(dlq.clone()));
    let answer = invoke(&app, "sqs_batch_one_malformed.json", &window)
        .await
        .unwrap();
    assert_eq!(answer, json!({"batchItemFailures": []}));
    let letters = dlq.bodies();
    assert_eq!(letters.len(), 1);
    let letter: queue::DeadLetter = serde_json::from_str(&letters[0]).unwrap();
    assert_eq!(letter.kind, crate::consumer::DEAD_LETTER_KIND);
    assert!(letter.original.ends_with("\"wind"), "{}", letter.original);
    assert!(!w.variant(1000));
}

#[tokio::test]
async fn fixture_events_of_other_shapes_are_invalid_input() {
    let w = world(1, 2, fast(), RetryPolicy::default()).await;
    for name in [
        "apigw_http_request.json",
        "eventbridge_scheduled_event.json",
    ] {
        let err = invoke(&app(&w, None), name, "").await.unwrap_err();
        assert_eq!(err.error_type(), "InvalidInput", "{name}");
        assert!(err.to_string().contains("SQS batch"), "{name}: {err}");
    }
}
