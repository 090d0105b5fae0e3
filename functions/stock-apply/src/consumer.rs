//! Turning a [`Disposition`] into queue operations, for the Lambda SQS event source (partial
//! batch responses) and for a polling loop over any [`Queue`] (the local run, the tests).
//!
//! A failing message is made visible again after the policy's backoff and left in the queue;
//! the queue's redrive moves it to the dead-letter queue after `maxReceiveCount` deliveries.
//! With a dead-letter queue configured here, a message given up goes there at once with its
//! reason (a [`DeadLetter`]) and is deleted.

use crate::handler::{Disposition, StockApplier};
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use queue::{settle, Queue};
use runtime::sqs_batch::{self, respond_by, Budget, Settlements};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Dead letters of this queue say `kind: "stock_flush"`.
pub const DEAD_LETTER_KIND: &str = "stock_flush";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settled {
    Ack,
    Leave,
}

/// The queues a consumer talks to besides receiving.
#[derive(Clone, Default)]
pub struct Transport {
    /// The flush queue itself, for visibility changes (`None`: keep the queue's timeout).
    pub source: Option<Arc<dyn Queue>>,
    /// Dead letters with reasons go here when set; otherwise the redrive policy moves them.
    pub dead_letter: Option<Arc<dyn Queue>>,
}

impl Transport {
    pub async fn settle(&self, d: Disposition, receipt: &str, body: &str) -> Settled {
        match d {
            Disposition::Done => Settled::Ack,
            Disposition::RetryAfter { delay, .. } => {
                settle::release_after(self.source.as_ref(), receipt, delay).await;
                Settled::Leave
            }
            Disposition::GiveUp { reason } => {
                let source = self.source.as_ref();
                let kind = DEAD_LETTER_KIND;
                let dl = self.dead_letter.as_ref();
                if settle::give_up(source, dl, kind, "stock-flushes", reason, receipt, body).await {
                    Settled::Ack
                } else {
                    Settled::Leave
                }
            }
        }
    }
}

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
    let budget = Budget::new(deadline, SETTLE_MARGIN);
    let messages = sqs_batch::messages(event);
    let settlements = Settlements::new(&messages);
    let work = futures::future::join_all(messages.iter().map(|m| {
        let settlements = &settlements;
        async move {
            let d = applier
                .handle_message_until(&m.body, m.receive_count, budget.work_until())
                .await;
            let settled = match transport.settle(d, &m.receipt, &m.body).await {
                Settled::Ack => sqs_batch::Settled::Done,
                Settled::Leave => sqs_batch::Settled::Redeliver,
            };
            settlements.settle(&m.id, settled);
        }
    }));
    respond_by(budget.answer_by(), &settlements, async {
        work.await;
    })
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

impl Default for ConsumerOptions {
    fn default() -> Self {
        ConsumerOptions {
            batch: 10,
            wait: Duration::from_millis(500),
            visibility: Duration::from_secs(300),
        }
    }
}

/// Receives one batch and settles every message; returns how many were received.
pub async fn poll_once(
    applier: &StockApplier,
    queue: &Arc<dyn Queue>,
    dead_letter: Option<Arc<dyn Queue>>,
    opts: ConsumerOptions,
) -> Result<usize, queue::QueueError> {
    let transport = Transport {
        source: Some(queue.clone()),
        dead_letter,
    };
    let msgs = queue
        .receive(opts.batch, opts.wait, opts.visibility)
        .await?;
    let n = msgs.len();
    let transport = &transport;
    futures::future::join_all(msgs.into_iter().map(|m| async move {
        let d = applier.handle_message(&m.body, m.receive_count).await;
        if transport.settle(d, &m.receipt, &m.body).await == Settled::Ack {
            if let Err(e) = queue.delete(&m.receipt).await {
                // Delivered again later and dropped (its window is over).
                tracing::warn!(error = %e, "could not delete a processed stock flush message");
            }
        }
    }))
    .await;
    Ok(n)
}

/// Consumes the flush queue until `shutdown` resolves (local run, tests, benchmarks).
pub async fn run_queue_consumer(
    applier: Arc<StockApplier>,
    queue: Arc<dyn Queue>,
    dead_letter: Option<Arc<dyn Queue>>,
    opts: ConsumerOptions,
    shutdown: impl Future<Output = ()> + Send,
) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            res = poll_once(&applier, &queue, dead_letter.clone(), opts) => {
                if let Err(e) = res {
                    tracing::warn!(queue = %queue.name(), error = %e, "receiving stock flush messages failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }
}
