//! Turning a [`Disposition`] into queue operations, for the Lambda SQS event source (partial
//! batch responses) and for a polling loop over any [`Queue`] (the local run, the tests).
//!
//! A failing message is made visible again after the policy's backoff and left in the queue;
//! the queue's redrive moves it to the dead-letter queue after `maxReceiveCount` deliveries.
//! With a dead-letter queue configured here, a message given up goes there at once with its
//! reason (a [`DeadLetter`]) and is deleted.

use crate::handler::{Disposition, StockApplier};
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use queue::{DeadLetter, Queue};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

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
                self.set_visibility(receipt, delay).await;
                Settled::Leave
            }
            Disposition::GiveUp { reason } => {
                if let Some(dlq) = &self.dead_letter {
                    let source = self.source.as_ref().map_or("stock-flushes", |q| q.name());
                    let letter = DeadLetter::new(DEAD_LETTER_KIND, reason, source, body);
                    match dlq.send(letter.to_outgoing()).await {
                        Ok(_) => return Settled::Ack,
                        Err(e) => {
                            tracing::error!(error = %e, "could not write the dead letter; leaving the message for the redrive");
                        }
                    }
                }
                self.set_visibility(receipt, Duration::ZERO).await;
                Settled::Leave
            }
        }
    }

    async fn set_visibility(&self, receipt: &str, delay: Duration) {
        if let Some(q) = &self.source {
            if let Err(e) = q.change_visibility(receipt, delay).await {
                tracing::warn!(error = %e, "could not change the message visibility");
            }
        }
    }
}

/// Handles a Lambda SQS batch; failed items are reported so only they come back. Messages of
/// different connections run concurrently; two of one connection meet at its window.
pub async fn handle_sqs_event(
    applier: &StockApplier,
    transport: &Transport,
    event: SqsEvent,
) -> SqsBatchResponse {
    let outcomes = futures::future::join_all(event.records.into_iter().map(|record| async move {
        let id = record.message_id.unwrap_or_default();
        let body = record.body.unwrap_or_default();
        let receipt = record.receipt_handle.unwrap_or_default();
        let receive_count = record
            .attributes
            .get("ApproximateReceiveCount")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1);
        let d = applier.handle_message(&body, receive_count).await;
        (id, transport.settle(d, &receipt, &body).await)
    }))
    .await;
    let mut response = SqsBatchResponse::default();
    for (id, settled) in outcomes {
        if settled == Settled::Leave {
            response.add_failure(id);
        }
    }
    response
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
