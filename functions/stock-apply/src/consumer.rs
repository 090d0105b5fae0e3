//! Turning a [`crate::Disposition`] into queue operations, for the Lambda SQS event source (partial
//! batch responses, `runtime::lambda::answer_batch`) and for a polling loop over any
//! [`Queue`] (the local run, the tests).
//!
//! A failing message is made visible again after the policy's backoff and left in the queue;
//! the queue's redrive moves it to the dead-letter queue after `maxReceiveCount` deliveries.
//! With a dead-letter queue configured here, a message given up goes there at once with its
//! reason (a [`queue::DeadLetter`]) and is deleted.

use crate::handler::StockApplier;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use queue::consume::{self, DeadLetterLabel, Receive};
use queue::Queue;
use runtime::lambda::answer_through;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use queue::consume::{Settled, Transport};

/// Dead letters of this queue say `kind: "stock_flush"`.
pub const DEAD_LETTER_KIND: &str = "stock_flush";

const DEAD_LETTERS: DeadLetterLabel = DeadLetterLabel {
    kind: DEAD_LETTER_KIND,
    default_source: "stock-flushes",
};

/// Kept back from message work for settling (a visibility change or a dead letter) and
/// answering.
pub const SETTLE_MARGIN: Duration = Duration::from_secs(5);

/// Handles a Lambda SQS batch; failed items are reported so only they come back. Messages of
/// different connections run concurrently (two of one connection meet at its window), each
/// isolated from the others and stopped before the invocation's deadline; the answer is given
/// in time whatever still runs.
pub async fn handle_sqs_event(
    applier: &StockApplier,
    transport: &Transport,
    event: SqsEvent,
    deadline: Option<Instant>,
) -> SqsBatchResponse {
    let label = DEAD_LETTERS;
    answer_through(
        event,
        deadline,
        SETTLE_MARGIN,
        transport,
        label,
        |m, until| async move {
            let flush = applier.handle_message_until(&m.body, m.receive_count, until);
            flush.await
        },
    )
    .await
}

/// Polling options for [`run_queue_consumer`].
#[derive(Clone, Copy, Debug)]
pub struct ConsumerOptions {
    pub batch: usize,
    pub wait: Duration,
    /// Visibility while a message is processed (above the flush's lease).
    pub visibility: Duration,
}

impl ConsumerOptions {
    /// Ten flushes a poll, half a second's wait, five minutes' visibility.
    pub const DEFAULT: ConsumerOptions = ConsumerOptions {
        batch: 10,
        wait: Duration::from_millis(500),
        visibility: Duration::from_secs(300),
    };
}

impl Default for ConsumerOptions {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Receives one batch and settles every message; returns how many were received.
pub async fn poll_once(
    applier: &StockApplier,
    queue: &Arc<dyn Queue>,
    dead_letter: Option<Arc<dyn Queue>>,
    opts: ConsumerOptions,
) -> Result<usize, queue::QueueError> {
    let ConsumerOptions {
        batch,
        wait,
        visibility,
    } = opts;
    let receive = Receive {
        batch,
        wait,
        visibility,
    };
    consume::poll_and_settle(queue, dead_letter, receive, DEAD_LETTERS, |m| async move {
        applier.handle_message(&m.body, m.receive_count).await
    })
    .await
}

/// Consumes the flush queue until `shutdown` resolves (local run, tests, benchmarks).
pub async fn run_queue_consumer(
    applier: Arc<StockApplier>,
    queue: Arc<dyn Queue>,
    dead_letter: Option<Arc<dyn Queue>>,
    opts: ConsumerOptions,
    shutdown: impl Future<Output = ()> + Send,
) {
    let name = queue.name().to_string();
    consume::consume_until(&name, shutdown, || {
        poll_once(&applier, &queue, dead_letter.clone(), opts)
    })
    .await
}
