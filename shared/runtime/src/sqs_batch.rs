//! What every SQS consumer (order-push, status-apply, catalog-sync) needs around its own
//! logic, written once:
//!
//! - [`messages`]: the Lambda SQS event as the queue port's [`Message`]s;
//! - [`Budget`]: the invocation's deadline, the time messages may work until, and the time the
//!   answer must be given by;
//! - [`isolate`]: runs one message's processing so that nothing it does can touch its
//!   batch-mates — a panic becomes [`Run::Panicked`] with a readable reason (the release
//!   profile unwinds for this), running out of time becomes [`Run::OutOfTime`], and every
//!   KeyCRM call inside sees the message's deadline ([`keycrm::deadline`]);
//! - [`Settlements`] and [`respond_by`]: each message is recorded as settled the moment its
//!   fate is carried out, and the batch answer (`batchItemFailures`) is given before the
//!   invocation ends, whatever is still running. A message settled as done is therefore never
//!   redelivered by a Lambda timeout; one not settled in time is reported and comes back.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use futures::FutureExt;
use queue::Message;
use std::any::Any;
use std::collections::HashSet;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The messages of an SQS event, with the attributes the consumers read. A record without a
/// receive count counts as a first delivery.
pub fn messages(event: SqsEvent) -> Vec<Message> {
    event
        .records
        .into_iter()
        .map(|r| {
            let receive_count = r
                .attributes
                .get("ApproximateReceiveCount")
                .and_then(|v| v.parse().ok())
                .unwrap_or(1);
            let attributes = r
                .message_attributes
                .into_iter()
                .filter_map(|(k, v)| v.string_value.map(|s| (k, s)))
                .collect();
            Message {
                id: r.message_id.unwrap_or_default(),
                body: r.body.unwrap_or_default(),
                receipt: r.receipt_handle.unwrap_or_default(),
                receive_count,
                attributes,
            }
        })
        .collect()
}

/// The invocation deadline (the Lambda context's epoch milliseconds) as an `Instant`; `None`
/// when unknown (0).
pub fn deadline_from_epoch_ms(deadline_ms: u64) -> Option<Instant> {
    if deadline_ms == 0 {
        return None;
    }
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))?;
    Some(Instant::now() + Duration::from_millis(deadline_ms.saturating_sub(now_ms)))
}

/// How one invocation spends its time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// When the invocation is killed; `None` when there is no such limit (local run, tests).
    pub deadline: Option<Instant>,
    /// Kept back from message work to carry out what the work decided (send a deferred copy
    /// or a dead letter, change a visibility): longer than one AWS call may take.
    pub settle_margin: Duration,
    /// Kept back from everything to return the answer.
    pub answer_margin: Duration,
}

impl Budget {
    /// The answer margin is a quarter of the settle margin, at most half a second: the
    /// answer always comes after the work stops and before the invocation ends.
    pub fn new(deadline: Option<Instant>, settle_margin: Duration) -> Self {
        Budget {
            deadline,
            settle_margin,
            answer_margin: (settle_margin / 4).min(Duration::from_millis(500)),
        }
    }

    /// No deadline: work runs to completion.
    pub fn unlimited() -> Self {
        Budget::new(None, Duration::ZERO)
    }

    /// When message work must have stopped.
    pub fn work_until(&self) -> Option<Instant> {
        self.deadline.map(|d| earlier(d, self.settle_margin))
    }

    /// When the batch answer must be given.
    pub fn answer_by(&self) -> Option<Instant> {
        self.deadline.map(|d| earlier(d, self.answer_margin))
    }

    /// Whether a message may still be started now.
    pub fn may_start(&self) -> bool {
        self.work_until().is_none_or(|w| w > Instant::now())
    }
}

fn earlier(t: Instant, by: Duration) -> Instant {
    t.checked_sub(by).unwrap_or(t).min(t)
}

/// What running one message's processing came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Run<T> {
    Finished(T),
    /// The processing panicked; the reason names the panic (for the dead letter and logs).
    Panicked(String),
    /// The deadline passed first; the processing was stopped where it was.
    OutOfTime,
}

/// Runs one message's processing in isolation: a panic anywhere inside is caught and
/// returned as [`Run::Panicked`] (the batch-mates and the process carry on), the work is
/// stopped at `until` ([`Run::OutOfTime`]), and KeyCRM calls inside see `until` as their
/// deadline. Work that may be stopped must leave things consistent at every await point
/// (the ledger's claims and conditional writes do).
pub async fn isolate<T, F>(until: Option<Instant>, work: F) -> Run<T>
where
    F: Future<Output = T>,
{
    // Boxed: a message's processing can be a large future (a catalog run), and the wrappers
    // below must not multiply it on the stack.
    let guarded = AssertUnwindSafe(Box::pin(keycrm::deadline::scope(until, work))).catch_unwind();
    let outcome = match until {
        None => guarded.await,
        Some(u) => match tokio::time::timeout_at(u.into(), guarded).await {
            Ok(r) => r,
            Err(_) => return Run::OutOfTime,
        },
    };
    match outcome {
        Ok(v) => Run::Finished(v),
        Err(panic) => {
            let reason = panic_reason(panic.as_ref());
            tracing::error!(reason = %reason, "message processing panicked; isolated to its message");
            Run::Panicked(reason)
        }
    }
}

/// A readable reason for a caught panic (bounded in length).
pub fn panic_reason(panic: &(dyn Any + Send)) -> String {
    let text = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_string());
    let short: String = text.chars().take(200).collect();
    format!("processing the message failed unexpectedly (panic: {short})")
}

/// Whether a settled message is finished or must come back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settled {
    /// Applied, skipped, deferred by a copy, or dead-lettered: never deliver it again.
    Done,
    /// Report it in `batchItemFailures`: SQS delivers it again.
    Redeliver,
}

/// The fate of each message of one batch, recorded as it is decided (shared by the tasks
/// processing the batch).
#[derive(Clone, Debug)]
pub struct Settlements {
    order: Arc<Vec<String>>,
    done: Arc<Mutex<HashSet<String>>>,
}

impl Settlements {
    pub fn new(messages: &[Message]) -> Self {
        Settlements {
            order: Arc::new(messages.iter().map(|m| m.id.clone()).collect()),
            done: Arc::new(Mutex::new(HashSet::new())),
        }
    }

    /// Records a message's fate. `Redeliver` after `Done` keeps it done: what was carried out
    /// stands.
    pub fn settle(&self, message_id: &str, settled: Settled) {
        if settled == Settled::Done {
            if let Ok(mut done) = self.done.lock() {
                done.insert(message_id.to_string());
            }
        }
    }

    /// Messages not settled as done, in batch order: the ones SQS must deliver again.
    pub fn redeliver(&self) -> Vec<String> {
        let done = self
            .done
            .lock()
            .map(|d| d.clone())
            .unwrap_or_else(|p| p.into_inner().clone());
        self.order
            .iter()
            .filter(|id| !done.contains(*id))
            .cloned()
            .collect()
    }

    /// The partial batch response.
    pub fn response(&self) -> SqsBatchResponse {
        response(&self.redeliver())
    }
}

/// `batchItemFailures` for these message ids.
pub fn response(redeliver: &[String]) -> SqsBatchResponse {
    let mut resp = SqsBatchResponse::default();
    resp.batch_item_failures = redeliver
        .iter()
        .map(|id| {
            let mut f = BatchItemFailure::default();
            f.item_identifier = id.clone();
            f
        })
        .collect();
    resp
}

/// Runs a batch's `work` (which records each message in `settlements` as it settles it) and
/// answers by `answer_by`: if the work is still running then, it is stopped and every message
/// not yet settled as done is reported for redelivery. A panic that escapes the work (outside
/// any [`isolate`]) reports the unsettled messages the same way.
pub async fn respond_by<F: Future<Output = ()>>(
    answer_by: Option<Instant>,
    settlements: &Settlements,
    work: F,
) -> SqsBatchResponse {
    match isolate(answer_by, work).await {
        Run::Finished(()) => {}
        Run::OutOfTime => {
            let left = settlements.redeliver();
            tracing::warn!(
                unsettled = left.len(),
                "the invocation deadline came first; unsettled messages are handed back to SQS"
            );
        }
        Run::Panicked(reason) => {
            tracing::error!(reason = %reason, "the batch handler panicked; unsettled messages are handed back to SQS");
        }
    }
    settlements.response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(id: &str) -> Message {
        Message {
            id: id.into(),
            body: String::new(),
            receipt: format!("r-{id}"),
            receive_count: 1,
            attributes: Default::default(),
        }
    }

    fn failures(r: &SqsBatchResponse) -> Vec<String> {
        r.batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect()
    }

    #[test]
    fn an_sqs_event_becomes_messages() {
        let raw = serde_json::json!({"Records": [{
            "messageId": "m-1", "receiptHandle": "r-1", "body": "{}",
            "attributes": {"ApproximateReceiveCount": "3"},
            "messageAttributes": {"attempt": {"stringValue": "2", "dataType": "String"}},
            "eventSource": "aws:sqs"
        }, {"messageId": "m-2", "body": "x"}]});
        let event: SqsEvent = serde_json::from_value(raw).unwrap();
        let m = messages(event);
        assert_eq!(m.len(), 2);
        assert_eq!(
            (m[0].id.as_str(), m[0].receipt.as_str(), m[0].receive_count),
            ("m-1", "r-1", 3)
        );
        assert_eq!(m[0].attribute("attempt"), Some("2"));
        assert_eq!(m[1].receive_count, 1);
    }

    #[test]
    fn the_response_names_what_must_come_back() {
        let v = serde_json::to_value(response(&["m-1".to_string()])).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"batchItemFailures": [{"itemIdentifier": "m-1"}]})
        );
    }

    #[tokio::test]
    async fn a_panic_is_the_messages_own_failure() {
        let r: Run<u32> = isolate(None, async {
            // An unforeseen bug on one message's input.
            let v: &[u32] = &[1];
            v[std::hint::black_box(5usize)]
        })
        .await;
        match r {
            Run::Panicked(reason) => assert!(reason.contains("panic"), "{reason}"),
            other => panic!("{other:?}"),
        }
        // The runtime carries on.
        assert_eq!(isolate(None, async { 7 }).await, Run::Finished(7));
    }

    #[tokio::test]
    async fn work_is_stopped_at_its_deadline_and_keycrm_calls_see_it() {
        let until = Instant::now() + Duration::from_millis(50);
        let r = isolate(Some(until), async {
            assert_eq!(keycrm::deadline::current(), Some(until));
            tokio::time::sleep(Duration::from_secs(30)).await;
        })
        .await;
        assert_eq!(r, Run::OutOfTime);
    }

    #[tokio::test]
    async fn the_answer_is_given_in_time_and_never_redelivers_settled_work() {
        let batch = [msg("a"), msg("b"), msg("c")];
        let s = Settlements::new(&batch);
        let answer_by = Instant::now() + Duration::from_millis(100);
        let work = {
            let s = s.clone();
            async move {
                s.settle("a", Settled::Done);
                s.settle("b", Settled::Redeliver);
                // "c" hangs past the deadline (a stalled call).
                tokio::time::sleep(Duration::from_secs(60)).await;
                s.settle("c", Settled::Done);
            }
        };
        let started = Instant::now();
        let resp = respond_by(Some(answer_by), &s, work).await;
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(failures(&resp), vec!["b".to_string(), "c".to_string()]);
    }

    #[tokio::test]
    async fn a_panic_outside_any_message_reports_only_the_unsettled() {
        let batch = [msg("a"), msg("b")];
        let s = Settlements::new(&batch);
        let work = {
            let s = s.clone();
            async move {
                s.settle("a", Settled::Done);
                panic!("boom");
            }
        };
        let resp = respond_by(None, &s, work).await;
        assert_eq!(failures(&resp), vec!["b".to_string()]);
    }

    #[test]
    fn release_builds_unwind_so_a_panic_stays_with_its_message() {
        // `isolate` can only catch what unwinds: the deployed binaries must not abort.
        let manifest = include_str!("../../../Cargo.toml");
        let release = manifest
            .split("[profile.release]")
            .nth(1)
            .and_then(|r| r.split("\n[").next())
            .unwrap_or_default();
        let panic_line = release
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with("panic"))
            .unwrap_or("panic = \"unwind\"");
        assert!(!panic_line.contains("abort"), "{panic_line}");
    }

    #[test]
    fn budgets_keep_their_margins() {
        let d = Instant::now() + Duration::from_secs(60);
        let b = Budget::new(Some(d), Duration::from_secs(5));
        assert_eq!(b.work_until(), Some(d - Duration::from_secs(5)));
        assert_eq!(b.answer_by(), Some(d - Duration::from_millis(500)));
        assert!(b.may_start());
        let late = Budget::new(Some(Instant::now()), Duration::from_secs(5));
        assert!(!late.may_start());
        assert_eq!(Budget::unlimited().work_until(), None);
        assert!(deadline_from_epoch_ms(0).is_none());
    }
}
