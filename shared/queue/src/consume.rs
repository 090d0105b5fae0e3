//! A queue consumer's side of settling, shared by every consumer that decides a message's
//! fate as done, retry after a backoff, or give up (status-apply, stock-apply): the
//! [`Transport`] that carries a [`Disposition`] out, and the polling loop the local run, the tests
//! and the benchmarks use where Lambda's SQS event source is not there.

use crate::settle::{give_up, release_after};
use crate::{Queue, QueueError};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// What processing decided for a received message: what the transport should do with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Disposition {
    /// Finished (applied, flushed or nothing to do): delete it.
    Done,
    /// Leave it in the queue and make it visible again after `delay`.
    RetryAfter { delay: Duration, reason: String },
    /// Give up: dead-letter it with this reason.
    GiveUp { reason: String },
}

/// Backoff between deliveries of a failing message, and the queue's redrive threshold: the
/// one policy of the consumers that settle through [`Disposition`] (status-apply, stock-apply).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Delay after the first failed delivery; doubles with every further one.
    pub base: Duration,
    pub cap: Duration,
    /// The queue's `maxReceiveCount`: the delivery with this count is the last one.
    pub max_receives: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_secs(30),
            cap: Duration::from_secs(900),
            // template.yaml's StatusUpdatesQueue and StockFlushQueue maxReceiveCount.
            max_receives: 10,
        }
    }
}

impl RetryPolicy {
    /// The backoff after the `receive_count`-th delivery failed (saturating, never above `cap`).
    pub fn delay(&self, receive_count: u32) -> Duration {
        let exp = receive_count.saturating_sub(1).min(20);
        self.base.saturating_mul(1u32 << exp).min(self.cap)
    }
}

/// Where the message goes after its fate was carried out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settled {
    /// Processed (or dead-lettered by us): delete it.
    Ack,
    /// Leave it in the queue (its visibility was set for the retry or the redrive).
    Leave,
}

/// How a consumer's dead letters are labelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeadLetterLabel {
    /// The dead letter's `kind` (`status_update`, `stock_flush`).
    pub kind: &'static str,
    /// The source queue named in a dead letter when the consumer was not given its queue.
    pub default_source: &'static str,
}

/// The queues a consumer talks to besides receiving.
#[derive(Clone, Default)]
pub struct Transport {
    /// The queue itself, for visibility changes (`None`: keep the queue's timeout).
    pub source: Option<Arc<dyn Queue>>,
    /// Dead letters with reasons go here when set; otherwise the redrive policy moves them.
    pub dead_letter: Option<Arc<dyn Queue>>,
}

impl Transport {
    /// Carries out a received message's disposition (`receipt` from this delivery).
    pub async fn carry_out(
        &self,
        disposition: Disposition,
        label: DeadLetterLabel,
        receipt: &str,
        body: &str,
    ) -> Settled {
        let source = self.source.as_ref();
        match disposition {
            Disposition::Done => Settled::Ack,
            Disposition::RetryAfter { delay, .. } => {
                release_after(source, receipt, delay).await;
                Settled::Leave
            }
            Disposition::GiveUp { reason } => {
                let dl = self.dead_letter.as_ref();
                let (kind, default_source) = (label.kind, label.default_source);
                if give_up(source, dl, kind, default_source, reason, receipt, body).await {
                    Settled::Ack
                } else {
                    Settled::Leave
                }
            }
        }
    }
}

/// How one poll receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Receive {
    pub batch: usize,
    /// Long-poll wait per receive.
    pub wait: Duration,
    /// Visibility while a message is processed.
    pub visibility: Duration,
}

/// Receives one batch, settles every message with `settle` (all at once) and deletes the
/// ones it acknowledges; returns how many were received.
pub async fn poll_once<F, Fut>(
    queue: &Arc<dyn Queue>,
    receive: Receive,
    settle: F,
) -> Result<usize, QueueError>
where
    F: Fn(crate::Message) -> Fut,
    Fut: Future<Output = Settled>,
{
    let msgs = queue
        .receive(receive.batch, receive.wait, receive.visibility)
        .await?;
    let n = msgs.len();
    let settle = &settle;
    futures::future::join_all(msgs.into_iter().map(|m| async move {
        let receipt = m.receipt.clone();
        if settle(m).await == Settled::Ack {
            if let Err(e) = queue.delete(&receipt).await {
                // Delivered again later and then found already handled.
                tracing::warn!(queue = %queue.name(), error = %e, "could not delete a processed message");
            }
        }
    }))
    .await;
    Ok(n)
}

/// Receives one batch, decides each message's disposition with `decide` (all at once),
/// carries it out through a [`Transport`] over `queue` and `dead_letter`, and deletes the
/// messages that are finished; returns how many were received.
pub async fn poll_and_settle<F, Fut>(
    queue: &Arc<dyn Queue>,
    dead_letter: Option<Arc<dyn Queue>>,
    receive: Receive,
    label: DeadLetterLabel,
    decide: F,
) -> Result<usize, QueueError>
where
    F: Fn(crate::Message) -> Fut,
    Fut: Future<Output = Disposition>,
{
    let transport = &Transport {
        source: Some(queue.clone()),
        dead_letter,
    };
    let decide = &decide;
    poll_once(queue, receive, |m| async move {
        let (receipt, body) = (m.receipt.clone(), m.body.clone());
        let d = decide(m).await;
        transport.carry_out(d, label, &receipt, &body).await
    })
    .await
}

/// Polls with `poll` until `shutdown` resolves; a failed receive is logged and retried after
/// half a second.
pub async fn consume_until<P, Fut>(
    queue_name: &str,
    shutdown: impl Future<Output = ()> + Send,
    mut poll: P,
) where
    P: FnMut() -> Fut,
    Fut: Future<Output = Result<usize, QueueError>>,
{
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            res = poll() => {
                if let Err(e) = res {
                    tracing::warn!(queue = %queue_name, error = %e, "receiving messages failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MemoryQueue, Outgoing};

    const LABEL: DeadLetterLabel = DeadLetterLabel {
        kind: "test_kind",
        default_source: "test-queue",
    };

    #[tokio::test]
    async fn fates_are_carried_out_and_acknowledged_ones_deleted() {
        let q = Arc::new(MemoryQueue::new("work"));
        let dlq = Arc::new(MemoryQueue::new("dead"));
        for body in ["done", "retry", "give-up"] {
            q.send(Outgoing::new(body)).await.unwrap();
        }
        let queue: Arc<dyn Queue> = q.clone();
        let transport = Transport {
            source: Some(queue.clone()),
            dead_letter: Some(dlq.clone()),
        };
        let receive = Receive {
            batch: 10,
            wait: Duration::ZERO,
            visibility: Duration::from_secs(30),
        };
        let n = poll_once(&queue, receive, |m| {
            let transport = &transport;
            async move {
                let d = match m.body.as_str() {
                    "done" => Disposition::Done,
                    "retry" => Disposition::RetryAfter {
                        delay: Duration::ZERO,
                        reason: "busy".into(),
                    },
                    _ => Disposition::GiveUp {
                        reason: "unreadable".into(),
                    },
                };
                transport.carry_out(d, LABEL, &m.receipt, &m.body).await
            }
        })
        .await
        .unwrap();
        assert_eq!(n, 3);
        // The retry is visible again at once; the others are gone.
        let left = queue
            .receive(10, Duration::ZERO, Duration::from_secs(30))
            .await
            .unwrap();
        let bodies: Vec<_> = left.iter().map(|m| m.body.as_str()).collect();
        assert_eq!(bodies, vec!["retry"]);
        let dead = dlq
            .receive(10, Duration::ZERO, Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(dead.len(), 1);
        let letter: serde_json::Value = serde_json::from_str(&dead[0].body).unwrap();
        assert_eq!(letter["kind"], "test_kind");
        assert_eq!(letter["reason"], "unreadable");
    }
}
