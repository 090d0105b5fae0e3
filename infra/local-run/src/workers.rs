//! The background parts of the local run: the same handlers the Lambdas run, driven by
//! in-process loops instead of event source mappings and EventBridge.

use catalog_sync::{Engine, ScheduleKind};
use order_push::OrderPush;
use queue::Queue;
use runtime::metrics::Emitter;
use status_apply::{ConsumerOptions, StatusApplier};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Resolves when the shutdown flag flips.
pub async fn stopped(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// The order-push consumer (on Lambda: the SQS event source mapping). Each poll is one
/// metrics invocation, as one batch is on Lambda.
pub async fn order_consumer(
    push: Arc<OrderPush>,
    queue: Arc<dyn Queue>,
    metrics: Emitter,
    stop: watch::Receiver<bool>,
) {
    let shutdown = stopped(stop);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            res = metrics.run(push.poll_once(queue.as_ref(), 10, Duration::from_millis(500), Duration::from_secs(120))) => {
                if let Err(e) = res {
                    tracing::warn!(error = %e, "receiving order events failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }
}

/// The status-apply consumer (on Lambda: the SQS event source mapping), one metrics
/// invocation per poll.
pub async fn status_consumer(
    applier: Arc<StatusApplier>,
    queue: Arc<dyn Queue>,
    dead_letter: Arc<dyn Queue>,
    metrics: Emitter,
    stop: watch::Receiver<bool>,
) {
    let shutdown = stopped(stop);
    tokio::pin!(shutdown);
    loop {
        let poll = status_apply::poll_once(
            &applier,
            &queue,
            Some(dead_letter.clone()),
            ConsumerOptions::default(),
        );
        tokio::select! {
            _ = &mut shutdown => return,
            res = metrics.run(poll) => {
                if let Err(e) = res {
                    tracing::warn!(queue = %queue.name(), error = %e, "receiving status messages failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }
}

/// The stock-apply consumer of flush messages (on Lambda: the SQS event source mapping), one
/// metrics invocation per poll.
pub async fn stock_consumer(
    applier: Arc<stock_apply::StockApplier>,
    queue: Arc<dyn Queue>,
    dead_letter: Arc<dyn Queue>,
    metrics: Emitter,
    stop: watch::Receiver<bool>,
) {
    let shutdown = stopped(stop);
    tokio::pin!(shutdown);
    loop {
        let poll = stock_apply::poll_once(
            &applier,
            &queue,
            Some(dead_letter.clone()),
            stock_apply::ConsumerOptions::default(),
        );
        tokio::select! {
            _ = &mut shutdown => return,
            res = metrics.run(poll) => {
                if let Err(e) = res {
                    tracing::warn!(queue = %queue.name(), error = %e, "receiving stock flush messages failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }
}

/// The catalog-sync consumer of sync jobs (on Lambda: SQS, batch size 1). Each job gets the
/// same 15-minute budget a Lambda invocation would, and is one metrics invocation.
pub async fn sync_consumer(
    engine: Arc<Engine>,
    queue: Arc<dyn Queue>,
    metrics: Emitter,
    stop: watch::Receiver<bool>,
) {
    let shutdown = stopped(stop);
    tokio::pin!(shutdown);
    loop {
        let received = tokio::select! {
            _ = &mut shutdown => return,
            r = queue.receive(1, Duration::from_millis(500), Duration::from_secs(960)) => r,
        };
        let messages = match received {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "receiving sync jobs failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        for m in messages {
            let deadline = Instant::now() + Duration::from_secs(14 * 60);
            match metrics.run(engine.on_message(&m.body, deadline)).await {
                Ok(outcome) => {
                    tracing::info!(?outcome, "sync job handled");
                    if let Err(e) = queue.delete(&m.receipt).await {
                        tracing::warn!(error = %e, "could not delete a handled sync job");
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "sync job failed; it will be retried");
                    let _ = queue
                        .change_visibility(&m.receipt, Duration::from_secs(30))
                        .await;
                }
            }
        }
    }
}

/// The EventBridge schedules: a full sync daily, prices every `price_every`, and the resume
/// sweep every five minutes.
pub async fn schedules(
    engine: Arc<Engine>,
    price_every: Duration,
    metrics: Emitter,
    stop: watch::Receiver<bool>,
) {
    let day = Duration::from_secs(24 * 3600);
    let mut full = tokio::time::interval_at(tokio::time::Instant::now() + day, day);
    let mut prices =
        tokio::time::interval_at(tokio::time::Instant::now() + price_every, price_every);
    let resume_every = Duration::from_secs(300);
    let mut resume =
        tokio::time::interval_at(tokio::time::Instant::now() + resume_every, resume_every);
    let shutdown = stopped(stop);
    tokio::pin!(shutdown);
    loop {
        let kind = tokio::select! {
            _ = &mut shutdown => return,
            _ = full.tick() => ScheduleKind::Full,
            _ = prices.tick() => ScheduleKind::Prices,
            _ = resume.tick() => ScheduleKind::Resume,
        };
        match metrics.run(engine.on_schedule(kind)).await {
            Ok(out) => tracing::info!(
                ?kind,
                enqueued = out.enqueued,
                skipped = out.skipped,
                "schedule tick"
            ),
            Err(e) => tracing::warn!(?kind, error = %e, "schedule tick failed"),
        }
    }
}
