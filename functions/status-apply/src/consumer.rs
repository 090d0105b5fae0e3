//! Turning a [`crate::Disposition`] into queue operations, for both ways the function runs:
//! the Lambda SQS event source (partial batch responses, `runtime::lambda::answer_batch`) and
//! a polling loop over any [`Queue`] (the local runner and the emulator tests).
//!
//! Retries: a failing message is made visible again after the policy's backoff
//! (`ChangeMessageVisibility`) and left in the queue; the queue's redrive policy moves it to
//! the dead-letter queue after `maxReceiveCount` deliveries. When a dead-letter queue is
//! configured here too, a message that is given up is sent there at once with its reason
//! (a [`queue::DeadLetter`]) and deleted; otherwise the reason is in the logs and the
//! connection's journal and the redrive carries the original body.

use crate::apply::StatusApplier;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use queue::consume::{self, DeadLetterLabel, Receive};
use queue::Queue;
use runtime::lambda::answer_through;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use queue::consume::{Settled, Transport};

/// Dead letters of the status queue.
const LABEL: DeadLetterLabel = DeadLetterLabel {
    kind: "status_update",
    default_source: "status-updates",
};

/// Kept back from message work for settling (a visibility change or a dead letter: one SQS
/// call, bounded by the SDK's operation timeout) and answering.
pub const SETTLE_MARGIN: Duration = Duration::from_secs(4);

/// Handles a Lambda SQS batch: failed items are reported so only they come back. The
/// records are processed concurrently, each isolated from the others (a panic dead-letters
/// that record alone) and stopped at the invocation's deadline less [`SETTLE_MARGIN`]; the
/// answer is given before the deadline whatever still runs, so a record that was applied is
/// never delivered again because a batch-mate hung (the ledger keeps concurrent changes of
/// one order in order, see `apply`).
pub async fn handle_sqs_event(
    applier: &StatusApplier,
    transport: &Transport,
    event: SqsEvent,
    deadline: Option<Instant>,
) -> SqsBatchResponse {
    answer_through(
        event,
        deadline,
        SETTLE_MARGIN,
        transport,
        LABEL,
        |m, until| async move {
            applier
                .handle_message_until(&m.body, m.receive_count, until)
                .await
        },
    )
    .await
}

/// The queue URL for an SQS ARN (`arn:aws:sqs:eu-central-1:123456789012:name`), for when
/// the function is not told its queue URL: visibility changes need the URL.
pub fn queue_url_from_arn(arn: &str) -> Option<String> {
    let parts: Vec<&str> = arn.split(':').collect();
    let [_, partition, service, region, account, name] = parts.as_slice() else {
        return None;
    };
    if *service != "sqs" || region.is_empty() || account.is_empty() || name.is_empty() {
        return None;
    }
    let domain = if *partition == "aws-cn" {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    Some(format!("https://sqs.{region}.{domain}/{account}/{name}"))
}

/// Polling options for [`run_queue_consumer`].
#[derive(Clone, Copy, Debug)]
pub struct ConsumerOptions {
    pub batch: usize,
    /// Long-poll wait per receive.
    pub wait: Duration,
    /// Visibility while a message is processed.
    pub visibility: Duration,
}

impl Default for ConsumerOptions {
    fn default() -> Self {
        ConsumerOptions {
            batch: 10,
            wait: Duration::from_secs(1),
            visibility: Duration::from_secs(30),
        }
    }
}

/// Receives one batch and settles every message; returns how many were received.
pub async fn poll_once(
    applier: &StatusApplier,
    queue: &Arc<dyn Queue>,
    dead_letter: Option<Arc<dyn Queue>>,
    opts: ConsumerOptions,
) -> Result<usize, queue::QueueError> {
    let receive = Receive {
        batch: opts.batch,
        wait: opts.wait,
        visibility: opts.visibility,
    };
    let decide = |m: queue::Message| async move {
        let until = None;
        applier
            .handle_message_until(&m.body, m.receive_count, until)
            .await
    };
    consume::poll_and_settle(queue, dead_letter, receive, LABEL, decide).await
}

/// Consumes the status queue until `shutdown` resolves (local runner, tests).
pub async fn run_queue_consumer(
    applier: Arc<StatusApplier>,
    queue: Arc<dyn Queue>,
    dead_letter: Option<Arc<dyn Queue>>,
    opts: ConsumerOptions,
    shutdown: impl Future<Output = ()> + Send,
) {
    consume::consume_until(queue.name(), shutdown, || {
        poll_once(&applier, &queue, dead_letter.clone(), opts)
    })
    .await
}
