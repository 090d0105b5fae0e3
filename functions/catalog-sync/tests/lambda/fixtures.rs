//! The Lambda edge from JSON fixtures (`tests/fixtures/`): EventBridge Scheduler inputs as
//! `template.yaml` sends them and sync-jobs SQS batches, run through `wiring::App::invoke` —
//! what the binary serves — with the harness of `src/tests.rs` (in-memory stores, the KeyCRM
//! simulator). (The binary itself, against a fake Runtime API: `tests/lambda_binary.rs`.)

use super::*;
use crate::wiring::{App, ACCEPTS};
use queue::Queue;
use runtime::lambda::{Deadline, Invocation, InvocationError};
use runtime::metrics::{Emitter, Function, Sink};
use serde_json::{json, Value};

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect(&path);
    serde_json::from_str(&text).expect(&path)
}

fn app(h: &H, dead_letter: Option<Arc<dyn Queue>>) -> App {
    let cfg = Config {
        safety: Duration::from_millis(50),
        ..Config::default()
    };
    App {
        engine: Engine::new(h.deps.clone(), cfg),
        dead_letter,
        source_queue: "sync-jobs".into(),
        metrics: Emitter::new(Function::CatalogSync).with_sink(Sink::Discard),
    }
}

async fn invoke(app: &App, name: &str) -> Result<Value, InvocationError> {
    let invocation = Invocation::from_value(fixture(name), ACCEPTS)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    app.invoke(invocation, Deadline(Some(deadline))).await
}

#[tokio::test]
async fn fixture_scheduler_inputs_fan_out() {
    let h = harness(5, on()).await;
    let app = app(&h, None);
    for (name, enqueued) in [("scheduler_full.json", 1), ("scheduler_prices.json", 1)] {
        let out = invoke(&app, name).await.unwrap();
        assert_eq!(out["enqueued"], enqueued, "{name}: {out}");
        assert_eq!(out["failed"], 0, "{name}: {out}");
    }
    let queued = h.deps.jobs.approximate_len().await.unwrap();
    assert_eq!(queued, 2);
    // Nothing paused: the resume tick finds nothing to queue.
    let out = invoke(&app, "scheduler_resume.json").await.unwrap();
    assert_eq!(out["enqueued"], 0, "{out}");
    // The spread tick for its scheduled time: c1 is either in that slot or not.
    let out = invoke(&app, "scheduler_tick.json").await.unwrap();
    let (enqueued, skipped) = (out["enqueued"].as_u64(), out["skipped"].as_u64());
    assert!(enqueued.is_some() && skipped.is_some(), "{out}");
    assert_eq!(out["failed"], 0, "{out}");
}

#[tokio::test]
async fn fixture_a_sync_job_batch_runs_the_job() {
    let h = harness(5, on()).await;
    let out = invoke(&app(&h, None), "sqs_sync_job.json").await.unwrap();
    assert_eq!(out, json!({"batchItemFailures": []}));
    assert!(!h.sync.list_runs("c1", 5).await.unwrap().is_empty());
}

#[tokio::test]
async fn fixture_one_malformed_job_is_dead_lettered_alone() {
    let h = harness(5, on()).await;
    let dlq = Arc::new(MemoryQueue::new("sync-dlq"));
    let out = invoke(&app(&h, Some(dlq.clone())), "sqs_batch_one_malformed.json")
        .await
        .unwrap();
    assert_eq!(out, json!({"batchItemFailures": []}));
    let letters: Vec<queue::DeadLetter> = dlq
        .bodies()
        .iter()
        .map(|b| serde_json::from_str(b).unwrap())
        .collect();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].kind, "malformed");
    assert_eq!(letters[0].source_queue, "sync-jobs");
    assert_eq!(letters[0].original, "{\"connection_id\":\"c1\",\"kind\":");
    // The good batch-mate ran.
    assert!(!h.sync.list_runs("c1", 5).await.unwrap().is_empty());
}

#[tokio::test]
async fn fixture_events_of_other_shapes_are_invalid_input() {
    let h = harness(1, on()).await;
    let app = app(&h, None);
    for name in [
        "apigw_http_request.json",
        "eventbridge_scheduled_event.json",
        "scheduler_unknown_kind.json",
    ] {
        let err = invoke(&app, name).await.unwrap_err();
        assert_eq!(err.error_type(), "InvalidInput", "{name}");
        assert!(err.to_string().contains(ACCEPTS), "{name}: {err}");
    }
    assert_eq!(h.deps.jobs.approximate_len().await.unwrap(), 0);
}
