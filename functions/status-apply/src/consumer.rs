//! Turning a [`Disposition`] into queue operations, for both ways the function runs:
//! the Lambda SQS event source (partial batch responses) and a polling loop over any
//! [`Queue`] (the local runner and the emulator tests).
//!
//! Retries: a failing message is made visible again after the policy's backoff
//! (`ChangeMessageVisibility`) and left in the queue; the queue's redrive policy moves it to
//! the dead-letter queue after `maxReceiveCount` deliveries. When a dead-letter queue is
//! configured here too, a message that is given up is sent there at once with its reason
//! (a [`DeadLetter`]) and deleted; otherwise the reason is in the logs and the connection's
//! journal and the redrive carries the original body.

use crate::apply::{Disposition, StatusApplier};
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use queue::{settle, Queue};
use runtime::sqs_batch::{self, respond_by, Budget, Settlements};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where the message goes after processing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settled {
    /// Processed (or dead-lettered by us): delete it.
    Ack,
    /// Leave it in the queue (its visibility was set for the retry or the redrive).
    Leave,
}

/// The queues a consumer talks to besides receiving.
#[derive(Clone, Default)]
pub struct Transport {
    /// The status queue itself, for visibility changes (`None`: keep the queue's timeout).
    pub source: Option<Arc<dyn Queue>>,
    /// Dead letters with reasons go here when set; otherwise the redrive policy moves them.
    pub dead_letter: Option<Arc<dyn Queue>>,
}

impl Transport {
    /// Applies a disposition to a received message (`receipt` from this delivery).
    pub async fn settle(&self, d: Disposition, receipt: &str, body: &str) -> Settled {
        match d {
            Disposition::Done => Settled::Ack,
            Disposition::RetryAfter { delay, .. } => {
                settle::release_after(self.source.as_ref(), receipt, delay).await;
                Settled::Leave
            }
            Disposition::GiveUp { reason } => {
                let source = self.source.as_ref();
                let kind = "status_update";
                let dl = self.dead_letter.as_ref();
                if settle::give_up(source, dl, kind, "status-updates", reason, receipt, body).await
                {
                    Settled::Ack
                } else {
                    Settled::Leave
                }
            }
        }
    }
}

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
        let d = applier
            .handle_message_until(&m.body, m.receive_count, None)
            .await;
        if transport.settle(d, &m.receipt, &m.body).await == Settled::Ack {
            if let Err(e) = queue.delete(&m.receipt).await {
                // Delivered again later and then found already applied.
                tracing::warn!(error = %e, "could not delete a processed status message");
            }
        }
    }))
    .await;
    Ok(n)
}

/// Consumes the status queue until `shutdown` resolves (local runner, tests).
pub async fn run_queue_consumer(
    applier: Arc<StatusApplier>,
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
                    tracing::warn!(queue = %queue.name(), error = %e, "receiving status messages failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }
}
