//! The partial batch response of an SQS consumer, built one way: every message of the batch
//! runs through the consumer's own `settle` step (at most `at_once` at a time), each settles
//! itself as it finishes, and the answer (`batchItemFailures`: what SQS must deliver again)
//! is given before the invocation ends whatever still runs (`crate::sqs_batch`).

use crate::sqs_batch::{self, respond_by, Budget, Settled, Settlements};
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use futures::StreamExt;
use queue::Message;
use std::future::Future;
use std::time::{Duration, Instant};

/// How a consumer spends its invocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchLimits {
    /// Kept back from message work to settle (one AWS call) and answer.
    pub settle_margin: Duration,
    /// Messages run at once; `None`: the whole batch.
    pub at_once: Option<usize>,
}

/// Answers one SQS batch. `settle` runs one message within the batch's [`Budget`] and says
/// whether it is done or must come back; it should isolate the message's own processing
/// (`sqs_batch::isolate`) where a panic or a hang must stay with that message.
pub async fn answer_batch<F, Fut>(
    event: SqsEvent,
    deadline: Option<Instant>,
    limits: BatchLimits,
    settle: F,
) -> SqsBatchResponse
where
    F: Fn(Message, Budget) -> Fut,
    Fut: Future<Output = Settled>,
{
    let budget = Budget::new(deadline, limits.settle_margin);
    let messages = sqs_batch::messages(event);
    let settlements = Settlements::new(&messages);
    let at_once = limits.at_once.unwrap_or(messages.len()).max(1);
    let (settle, settled_into) = (&settle, &settlements);
    respond_by(budget.answer_by(), &settlements, async move {
        futures::stream::iter(messages)
            .map(|m| async move {
                let id = m.id.clone();
                let settled = settle(m, budget).await;
                settled_into.settle(&id, settled);
            })
            .buffer_unordered(at_once)
            .collect::<Vec<()>>()
            .await;
    })
    .await
}

impl From<queue::consume::Settled> for Settled {
    fn from(s: queue::consume::Settled) -> Settled {
        match s {
            queue::consume::Settled::Ack => Settled::Done,
            queue::consume::Settled::Leave => Settled::Redeliver,
        }
    }
}

/// Answers one SQS batch of a consumer whose messages settle through a
/// [`queue::consume::Transport`] (status-apply, stock-apply): `decide` runs one message until
/// the budget's work deadline, and its disposition is carried out (retry after a backoff, dead
/// letter with `label`) before the batch answers. All messages run at once.
pub async fn answer_through<F, Fut>(
    event: SqsEvent,
    deadline: Option<Instant>,
    settle_margin: Duration,
    transport: &queue::consume::Transport,
    label: queue::consume::DeadLetterLabel,
    decide: F,
) -> SqsBatchResponse
where
    F: Fn(Message, Option<Instant>) -> Fut,
    Fut: Future<Output = queue::consume::Disposition>,
{
    let limits = BatchLimits {
        settle_margin,
        at_once: None,
    };
    let decide = &decide;
    answer_batch(event, deadline, limits, |m, budget| async move {
        let (receipt, body) = (m.receipt.clone(), m.body.clone());
        let d = decide(m, budget.work_until()).await;
        transport.carry_out(d, label, &receipt, &body).await.into()
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn event(ids: &[&str]) -> SqsEvent {
        let records: Vec<_> = ids
            .iter()
            .map(|id| serde_json::json!({"messageId": id, "body": id, "receiptHandle": "r"}))
            .collect();
        serde_json::from_value(serde_json::json!({ "Records": records })).unwrap()
    }

    fn failures(r: &SqsBatchResponse) -> Vec<&str> {
        r.batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect()
    }

    #[tokio::test]
    async fn only_the_messages_that_must_come_back_are_reported() {
        let limits = BatchLimits {
            settle_margin: Duration::from_secs(1),
            at_once: None,
        };
        let resp = answer_batch(event(&["a", "bad", "c"]), None, limits, |m, _| async move {
            if m.body == "bad" {
                Settled::Redeliver
            } else {
                Settled::Done
            }
        })
        .await;
        assert_eq!(failures(&resp), vec!["bad"]);
    }

    #[tokio::test]
    async fn at_most_at_once_messages_run_together() {
        let running = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        let limits = BatchLimits {
            settle_margin: Duration::ZERO,
            at_once: Some(2),
        };
        let resp = answer_batch(event(&["a", "b", "c", "d"]), None, limits, |_, _| {
            let (running, most) = (&running, &most);
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                Settled::Done
            }
        })
        .await;
        assert!(failures(&resp).is_empty());
        assert_eq!(most.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_message_still_running_at_the_answer_comes_back() {
        let deadline = Instant::now() + Duration::from_millis(300);
        let limits = BatchLimits {
            settle_margin: Duration::from_millis(200),
            at_once: None,
        };
        let started = Instant::now();
        let resp = answer_batch(
            event(&["quick", "stuck"]),
            Some(deadline),
            limits,
            |m, b| async move {
                assert!(b.work_until().is_some());
                if m.body == "stuck" {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                }
                Settled::Done
            },
        )
        .await;
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(failures(&resp), vec!["stuck"]);
    }
}
