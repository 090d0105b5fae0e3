//! Order push: shop order events from SQS become exactly one KeyCRM order or pipeline card
//! each. The design (flow, ledger states, recovery, deferral, dead letters) is in
//! `docs/order-push.md`; the event contract in `contracts/order-events/`.
//!
//! [`OrderPush::handle_batch`] is the whole handler: the Lambda (`src/main.rs`) and the local
//! runner both call it with the messages they received and acknowledge every message not in
//! [`BatchResult::failed_message_ids`]. A merchant's re-send of a failed order is
//! `jobs::repush`, which queues the stored event for this consumer.

pub mod crm;
pub mod dictionaries;
pub mod lambda;
#[cfg(any(test, feature = "test-kit"))]
pub mod memory_crm;
pub mod policy;
mod process;
pub mod recovery;
pub mod wiring;

pub use crm::{CrmApi, CrmProvider, KeycrmProvider};
pub use dictionaries::Dictionaries;
pub use policy::{RetryPolicy, ATTEMPT_ATTRIBUTE};

use queue::Queue;
use std::sync::Arc;
use std::time::Duration;
use store::{ConnectionStore, OrderLedger, StatusJournal, Target};

/// The longest an order waits in the Lambda for its key's next request slot. A key with a
/// backlog (a shop importing thousands of orders, or another function spending the budget)
/// books slots further ahead; an order whose slot is further away than this is deferred with
/// a delayed copy instead (at least as long as the wait), so no invocation sleeps on one
/// shop's budget while other shops' orders queue behind it. Three slots of KeyCRM's 60 a
/// minute: an ordinary burst of a few orders of one shop still goes through at once, and at
/// most three invocations at a time can be waiting on any one key (BENCHMARKS.md, "Fleet").
pub const MAX_GATE_WAIT: Duration = Duration::from_secs(3);

#[derive(Clone, Debug)]
pub struct PushConfig {
    /// How long a claim on an order lasts. Longer than any one attempt can run (the Lambda
    /// timeout is 60 s), so a claim never expires under a live attempt.
    pub lease: Duration,
    pub retry: RetryPolicy,
    /// Shops processed at once within a batch (each shop's messages run in order).
    pub concurrency: usize,
    /// Clock-skew margin of the card recovery search (between our clock and KeyCRM's).
    pub recovery_margin: Duration,
    /// Time kept back before the invocation deadline to send deferred copies and dead letters.
    pub deadline_margin: Duration,
    /// Name of the order queue, written into dead letters.
    pub source_queue: String,
}

impl Default for PushConfig {
    fn default() -> Self {
        PushConfig {
            lease: Duration::from_secs(300),
            retry: RetryPolicy::default(),
            concurrency: 10,
            recovery_margin: Duration::from_secs(300),
            deadline_margin: Duration::from_secs(5),
            source_queue: "order-events".into(),
        }
    }
}

/// The ports the handler works through.
pub struct OrderPush {
    pub connections: Arc<dyn ConnectionStore>,
    pub ledger: Arc<dyn OrderLedger>,
    pub journal: Arc<dyn StatusJournal>,
    pub crm: Arc<dyn CrmProvider>,
    /// Where deferred copies go: the order queue itself.
    pub retry_queue: Arc<dyn Queue>,
    pub dead_letters: Arc<dyn Queue>,
    pub dictionaries: Arc<Dictionaries>,
    pub config: PushConfig,
}

/// What became of one message.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The order or card now exists in KeyCRM; `recovered` when an earlier attempt had
    /// already created it and it was found instead of created again.
    Created {
        connection_id: String,
        shop_order_id: String,
        target: Target,
        keycrm_id: i64,
        recovered: bool,
    },
    /// A duplicate: the order was handled before.
    AlreadyDone {
        shop_order_id: String,
        reason: String,
    },
    StatusPushed {
        shop_order_id: String,
        keycrm_status_id: i64,
    },
    /// Acknowledged without a KeyCRM write, for the logged reason.
    Skipped {
        reason: String,
    },
    /// A delayed copy was queued as delivery `attempt`.
    Deferred {
        attempt: u32,
        delay: Duration,
        reason: String,
    },
    DeadLettered {
        kind: String,
        reason: String,
    },
    /// Neither a deferred copy nor a dead letter could be sent: the message is reported to
    /// SQS as failed and comes back.
    Failed {
        reason: String,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct MessageOutcome {
    pub message_id: String,
    pub outcome: Outcome,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct BatchResult {
    /// Messages to leave on the queue (`batchItemFailures`); every other one is done.
    pub failed_message_ids: Vec<String>,
    pub outcomes: Vec<MessageOutcome>,
}

impl BatchResult {
    pub fn count(&self, pred: impl Fn(&Outcome) -> bool) -> usize {
        self.outcomes.iter().filter(|o| pred(&o.outcome)).count()
    }
}

impl OrderPush {
    /// Receives up to `max` messages from `source`, handles them and deletes every message
    /// that is done. For the local runner and the emulator tests (on Lambda the event source
    /// mapping receives and deletes).
    pub async fn poll_once(
        &self,
        source: &dyn Queue,
        max: usize,
        wait: Duration,
        visibility: Duration,
    ) -> Result<BatchResult, queue::QueueError> {
        let messages = source.receive(max, wait, visibility).await?;
        let receipts: Vec<(String, String)> = messages
            .iter()
            .map(|m| (m.id.clone(), m.receipt.clone()))
            .collect();
        let result = self.handle_batch(messages).await;
        for (id, receipt) in receipts {
            if !result.failed_message_ids.contains(&id) {
                if let Err(e) = source.delete(&receipt).await {
                    tracing::warn!(message_id = %id, error = %e, "could not delete a handled message; it will be handled again");
                }
            }
        }
        Ok(result)
    }
}
