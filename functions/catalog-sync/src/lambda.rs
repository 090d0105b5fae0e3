//! The sync-jobs SQS consumer on Lambda.
//!
//! The jobs of a batch run side by side (up to `Config::jobs_at_once`): each spends its own
//! key's budget, so most of a job's time is waiting for its next slot, and one invocation
//! waiting for ten keys costs what one waiting for one key does.
//!
//! The batch is answered by `runtime::lambda::answer_batch` (the partial batch response every
//! SQS consumer gives). Each job runs isolated from its batch-mates and from the process
//! (`runtime::sqs_batch::isolate`): a job that cannot be read, or whose run panics, goes to
//! the dead-letter queue with a readable reason (when one is configured, `SYNC_DLQ_URL`) and
//! is acknowledged; a transient failure (store, queue) is reported for redelivery, its
//! checkpoint kept. The answer is given before the invocation ends whatever still runs.

use crate::engine::Engine;
use crate::handler::JobMessage;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use queue::{DeadLetter, Message, Queue};
use runtime::lambda::{answer_batch, BatchLimits};
use runtime::metrics::catalog::SYNC_JOBS_FAILED;
use runtime::metrics::count;
use runtime::sqs_batch::{isolate, Budget, Run, Settled};
use std::time::{Duration, Instant};

/// Kept back from the run for settling the message (a dead letter) and answering. The run
/// itself pauses well before (`Config::safety`), so this is the hard stop behind it.
pub const SETTLE_MARGIN: Duration = Duration::from_secs(10);

/// Where unreadable and crashing jobs go, with their reason.
pub struct DeadLetters<'a> {
    pub queue: &'a dyn Queue,
    /// The sync-jobs queue's name, written into each dead letter.
    pub source_queue: &'a str,
}

/// Handles one SQS batch of sync jobs.
pub async fn handle_sqs(
    engine: &Engine,
    event: SqsEvent,
    deadline: Option<Instant>,
    dead_letters: Option<&DeadLetters<'_>>,
) -> SqsBatchResponse {
    let limits = BatchLimits {
        settle_margin: SETTLE_MARGIN,
        at_once: Some(engine.cfg.jobs_at_once.max(1)),
    };
    answer_batch(event, deadline, limits, |m, budget| async move {
        handle_one(engine, &m, budget, dead_letters).await
    })
    .await
}

async fn handle_one(
    engine: &Engine,
    m: &Message,
    budget: Budget,
    dead_letters: Option<&DeadLetters<'_>>,
) -> Settled {
    let msg = match JobMessage::parse(&m.body) {
        Ok(msg) => msg,
        Err(reason) => return dead_letter(m, "malformed", reason, dead_letters).await,
    };
    // The engine pauses its run before this instant; `isolate` stops it hard at the same one.
    let until = budget
        .work_until()
        .unwrap_or_else(|| Instant::now() + Duration::from_secs(14 * 60));
    match isolate(Some(until), engine.on_job(msg, until)).await {
        Run::Finished(Ok(outcome)) => {
            tracing::info!(message = %m.id, ?outcome, "sync job handled");
            Settled::Done
        }
        Run::Finished(Err(e)) => {
            count(&SYNC_JOBS_FAILED, &["transient"], 1);
            // Transient (store, queue): SQS redelivers the job; its checkpoint is kept.
            tracing::error!(message = %m.id, error = %e, "sync job failed; it will be retried");
            Settled::Redeliver
        }
        Run::OutOfTime => {
            count(&SYNC_JOBS_FAILED, &["deadline"], 1);
            tracing::warn!(message = %m.id, "sync job stopped at the invocation deadline; it will be retried");
            Settled::Redeliver
        }
        Run::Panicked(reason) => dead_letter(m, "internal_error", reason, dead_letters).await,
    }
}

async fn dead_letter(
    m: &Message,
    kind: &'static str,
    reason: String,
    dead_letters: Option<&DeadLetters<'_>>,
) -> Settled {
    count(&SYNC_JOBS_FAILED, &[kind], 1);
    let Some(dl) = dead_letters else {
        // No queue for reasons: the redrive policy moves it after its last delivery; the
        // reason is in this log line.
        tracing::error!(message = %m.id, kind, reason = %reason, "sync job cannot be run; left to the redrive");
        return if kind == "malformed" {
            Settled::Done
        } else {
            Settled::Redeliver
        };
    };
    let letter = DeadLetter::new(kind, reason.clone(), dl.source_queue, &m.body);
    match dl.queue.send(letter.to_outgoing()).await {
        Ok(_) => {
            tracing::error!(message = %m.id, kind, reason = %reason, "sync job dead-lettered");
            Settled::Done
        }
        Err(e) => {
            tracing::error!(message = %m.id, error = %e, "could not dead-letter a sync job; leaving it to SQS");
            Settled::Redeliver
        }
    }
}
