//! The handler's logic: one decision per message, then one queue action to settle it.
//! This module runs batches and settles messages; the per-event decisions are in `created`
//! (`order.created`, in its named steps), `status` (`order.status_changed`) and `failure`
//! (how a failed create settles).

mod created;
mod failure;
mod status;

use crate::crm::CrmApi;
use crate::policy::{attempt_of, ATTEMPT_ATTRIBUTE};
use crate::recovery::{card_window, find_card, pick_legacy_order, pick_order, CardQuery};
use crate::{BatchResult, MessageOutcome, OrderPush, Outcome};
use chrono::Utc;
use futures::StreamExt;
use keycrm::KeycrmError;
use mapping::events::{EventBody, EventError, OrderEvent, ShopOrder, StatusChange};
use mapping::order_map::{map_card, map_order, MappedCard, MappedOrder, MappingReport};
use mapping::{source_key, OrderSyncType};
use queue::{DeadLetter, Message, Outgoing};
use runtime::metrics::catalog::{
    ORDERS_DEFERRED, ORDERS_FAILED, ORDERS_PUSHED, ORDER_EVENTS_SKIPPED, ORDER_EVENTS_UNSETTLED,
    STATUSES_PUSHED,
};
use runtime::metrics::count;
use runtime::sqs_batch::{isolate, panic_reason, respond_by, Budget, Run, Settled, Settlements};
use runtime::ClientsError;
use std::collections::{BTreeMap, HashMap};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use store::ledger::Created;
use store::{
    Claim, Connection, Counter, LedgerEntry, LedgerState, OrderFailure, PushReservation,
    StoreError, Target,
};

/// What to do with a message.
enum Decision {
    Ack(Outcome),
    Defer {
        delay: Duration,
        reason: String,
        /// Why, as a metric label (`runtime::metrics::catalog::ORDERS_DEFERRED`).
        label: &'static str,
        next_attempt: u32,
    },
    DeadLetter {
        kind: &'static str,
        reason: String,
        shop_id: Option<String>,
        order_id: Option<String>,
    },
}

/// A claim an attempt holds, so that a cancelled attempt (deadline) can give it back.
#[derive(Clone)]
struct HeldClaim {
    connection_id: String,
    shop_order_id: String,
    holder: String,
    /// KeyCRM may hold the order: the earlier attempt said so, or this one sent its create.
    maybe_committed: bool,
}

/// What one message's handling leaves behind: the claim it holds (so a cancelled attempt
/// can give it back) and the counters it bumped (written once per batch and connection).
#[derive(Clone, Default)]
struct Progress {
    claim: Arc<Mutex<Option<HeldClaim>>>,
    counts: Arc<Mutex<Vec<(String, Counter)>>>,
}

impl Progress {
    fn hold(&self, c: HeldClaim) {
        if let Ok(mut p) = self.claim.lock() {
            *p = Some(c);
        }
    }
    fn sent(&self) {
        if let Ok(mut p) = self.claim.lock() {
            if let Some(c) = p.as_mut() {
                c.maybe_committed = true;
            }
        }
    }
    fn has_sent(&self) -> Option<bool> {
        self.claim
            .lock()
            .ok()
            .and_then(|p| p.as_ref().map(|h| h.maybe_committed))
    }
    fn take(&self) -> Option<HeldClaim> {
        self.claim.lock().ok().and_then(|mut p| p.take())
    }
    fn clear(&self) {
        let _ = self.take();
    }
    fn count(&self, connection_id: &str, counter: Counter) {
        if let Ok(mut c) = self.counts.lock() {
            c.push((connection_id.to_string(), counter));
        }
    }
    fn take_counts(&self) -> Vec<(String, Counter)> {
        self.counts
            .lock()
            .map(|mut c| std::mem::take(&mut *c))
            .unwrap_or_default()
    }
}

/// An order this attempt holds the claim of.
struct Claimed<'a> {
    conn: &'a Connection,
    event: &'a OrderEvent,
    order: &'a ShopOrder,
    holder: String,
    target: Target,
    entry: LedgerEntry,
    progress: Progress,
}

enum Mapped {
    Order(Box<MappedOrder>),
    Card(Box<MappedCard>),
}

impl Mapped {
    fn report(&self) -> &MappingReport {
        match self {
            Mapped::Order(m) => &m.report,
            Mapped::Card(m) => &m.report,
        }
    }
    fn status_after_create(&self) -> Option<i64> {
        match self {
            Mapped::Order(m) => m.status_after_create,
            Mapped::Card(m) => m.status_after_create,
        }
    }
}

fn no_fields() -> BTreeMap<String, Vec<String>> {
    BTreeMap::new()
}

/// Acknowledged without a KeyCRM write; `label` names the reason in metrics.
fn skipped(label: &'static str, reason: impl Into<String>) -> Decision {
    count(&ORDER_EVENTS_SKIPPED, &[label], 1);
    Decision::Ack(Outcome::Skipped {
        reason: reason.into(),
    })
}

/// Best effort: the shop and order of a body the contract refused, for the dead letter.
fn ids_of_malformed(body: &str) -> (Option<String>, Option<String>) {
    if body.len() > mapping::events::MAX_EVENT_BYTES {
        return (None, None);
    }
    let Ok(v) = serde_json::from_str::<serde_json::Value>(body) else {
        return (None, None);
    };
    let text = |v: Option<&serde_json::Value>| v.and_then(|x| x.as_str()).map(str::to_string);
    let shop = text(v.get("shop_id"));
    let order = text(v.pointer("/order/id")).or_else(|| text(v.get("order_id")));
    (shop, order)
}

struct Item {
    position: usize,
    msg: Message,
    parsed: Result<OrderEvent, EventError>,
}

/// Parses one message; even a panic in the parser stays this message's refusal.
fn parse(msg: &Message) -> Result<OrderEvent, EventError> {
    std::panic::catch_unwind(AssertUnwindSafe(|| {
        mapping::parse_event(msg.body.as_bytes())
    }))
    .unwrap_or_else(|p| Err(EventError::Internal(panic_reason(p.as_ref()))))
}

/// What the messages of one batch came to, recorded as each one settles.
#[derive(Clone)]
struct Ledgered {
    settlements: Settlements,
    outcomes: Arc<Mutex<Vec<(usize, MessageOutcome)>>>,
}

impl Ledgered {
    fn record(&self, position: usize, outcome: MessageOutcome, failed: bool) {
        self.settlements.settle(
            &outcome.message_id,
            if failed {
                Settled::Redeliver
            } else {
                Settled::Done
            },
        );
        if let Ok(mut o) = self.outcomes.lock() {
            o.push((position, outcome));
        }
    }
}

impl OrderPush {
    /// Handles one batch with no deadline (tests, the local runner).
    pub async fn handle_batch(&self, messages: Vec<Message>) -> BatchResult {
        self.handle_batch_until(messages, None).await
    }

    /// Handles one batch. Messages of one shop run in order (the rate gate serialises a key's
    /// requests anyway, and `order.created` then precedes a status change of the same
    /// order); shops run concurrently, so one slow or rate-limited shop does not hold up the
    /// others. Each message runs isolated (`runtime::sqs_batch::isolate`): a panic
    /// dead-letters that message alone. Work that cannot finish before `deadline` (less the
    /// margin) is deferred, and the result is ready before the deadline whatever still runs:
    /// a message that was settled is never reported for redelivery.
    pub async fn handle_batch_until(
        &self,
        messages: Vec<Message>,
        deadline: Option<Instant>,
    ) -> BatchResult {
        let budget = Budget::new(deadline, self.config.deadline_margin);
        let book = Ledgered {
            settlements: Settlements::new(&messages),
            outcomes: Arc::new(Mutex::new(Vec::new())),
        };
        let ids: Vec<(usize, String)> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| (i, m.id.clone()))
            .collect();
        respond_by(
            budget.answer_by(),
            &book.settlements,
            self.run_batch(messages, budget, &book),
        )
        .await;
        let mut outcomes = book
            .outcomes
            .lock()
            .map(|mut o| std::mem::take(&mut *o))
            .unwrap_or_default();
        for (position, id) in ids {
            if !outcomes.iter().any(|(p, _)| *p == position) {
                count(&ORDER_EVENTS_UNSETTLED, &[], 1);
                outcomes.push((
                    position,
                    MessageOutcome {
                        message_id: id,
                        outcome: Outcome::Failed {
                            reason: "not settled before the invocation deadline".into(),
                        },
                    },
                ));
            }
        }
        outcomes.sort_by_key(|(p, _)| *p);
        BatchResult {
            failed_message_ids: book.settlements.redeliver(),
            outcomes: outcomes.into_iter().map(|(_, o)| o).collect(),
        }
    }

    async fn run_batch(&self, messages: Vec<Message>, budget: Budget, book: &Ledgered) {
        let mut groups: Vec<Vec<Item>> = Vec::new();
        let mut by_shop: HashMap<String, usize> = HashMap::new();
        for (position, msg) in messages.into_iter().enumerate() {
            let parsed = parse(&msg);
            let item = Item {
                position,
                msg,
                parsed,
            };
            match &item.parsed {
                Ok(ev) => match by_shop.get(&ev.shop_id) {
                    Some(&g) => groups[g].push(item),
                    None => {
                        by_shop.insert(ev.shop_id.clone(), groups.len());
                        groups.push(vec![item]);
                    }
                },
                Err(_) => groups.push(vec![item]),
            }
        }
        futures::stream::iter(groups)
            .map(|g| self.run_group(g, budget, book))
            .buffer_unordered(self.config.concurrency.max(1))
            .collect::<Vec<()>>()
            .await;
    }

    async fn run_group(&self, items: Vec<Item>, budget: Budget, book: &Ledgered) {
        // One connection read per shop and batch.
        let mut conn: Option<Option<Connection>> = None;
        let mut tally: BTreeMap<(String, Counter), u64> = BTreeMap::new();
        for item in items {
            let attempt = attempt_of(&item.msg);
            let progress = Progress::default();
            let decision = match &item.parsed {
                Err(e) => self.malformed(&item.msg, e).await,
                Ok(_) if !budget.may_start() => {
                    // Not started: the same attempt comes back with the next invocation.
                    Decision::Defer {
                        delay: Duration::from_secs(1),
                        reason: "not started before the invocation deadline".into(),
                        label: "deadline",
                        next_attempt: attempt,
                    }
                }
                Ok(event) => {
                    if conn.is_none() {
                        match self.connections.get_by_shop(&event.shop_id).await {
                            Ok(c) => conn = Some(c),
                            Err(e) => {
                                tracing::warn!(shop = %event.shop_id, error = %e, "could not read the connection")
                            }
                        }
                    }
                    let work = self.decide(&item.msg, attempt, event, conn.as_ref(), &progress);
                    match isolate(budget.work_until(), work).await {
                        Run::Finished(d) => d,
                        Run::OutOfTime => self.ran_out_of_time(event, attempt, &progress).await,
                        Run::Panicked(reason) => self.panicked(event, reason, &progress).await,
                    }
                }
            };
            for key in progress.take_counts() {
                *tally.entry(key).or_default() += 1;
            }
            let (outcome, failed) = self.settle(&item.msg, &item.parsed, decision).await;
            book.record(
                item.position,
                MessageOutcome {
                    message_id: item.msg.id.clone(),
                    outcome,
                },
                failed,
            );
        }
        // Counters are what the merchant reads on the status page: one write per batch and
        // connection is enough, and saves a DynamoDB write per order. The KeyCRM requests this
        // group spent for the connection go in the same write (the metrics flush would
        // otherwise write them separately).
        let mut by_connection: BTreeMap<String, Vec<(Counter, u64)>> = BTreeMap::new();
        for ((connection_id, counter), n) in tally {
            by_connection
                .entry(connection_id)
                .or_default()
                .push((counter, n));
        }
        if let Some(conn) = conn.flatten() {
            if let Some(u) = runtime::metrics::take_usage(&conn.id) {
                let counts = by_connection.entry(conn.id.clone()).or_default();
                counts.push((Counter::KeycrmRequests, u.keycrm_requests));
                if u.keycrm_rate_limited > 0 {
                    counts.push((Counter::KeycrmRateLimited, u.keycrm_rate_limited));
                }
            }
        }
        for (connection_id, counts) in by_connection {
            if let Err(e) = self.journal.count_many(&connection_id, &counts).await {
                tracing::warn!(connection = %connection_id, error = %e, "could not count");
            }
        }
    }

    /// A message whose processing panicked (a bug met by this input): the order it claimed is
    /// marked failed (a re-push searches first if it may have reached KeyCRM) and the event is
    /// dead-lettered with the reason. Its batch-mates are not affected.
    async fn panicked(&self, event: &OrderEvent, reason: String, progress: &Progress) -> Decision {
        if let Some(c) = progress.take() {
            if let Err(e) = self
                .ledger
                .mark_failed(
                    &c.connection_id,
                    &c.shop_order_id,
                    &c.holder,
                    &reason,
                    &no_fields(),
                )
                .await
            {
                tracing::warn!(order = %c.shop_order_id, error = %e, "could not record the failure; the claim expires with its lease");
            }
            self.journal_failure(
                &c.connection_id,
                &c.shop_order_id,
                &reason,
                &no_fields(),
                progress,
            )
            .await;
        }
        tracing::error!(shop = %event.shop_id, order = %event.order_id(), reason = %reason, "order event dead-lettered after an internal error");
        Decision::DeadLetter {
            kind: "internal_error",
            reason,
            shop_id: None,
            order_id: None,
        }
    }

    async fn decide(
        &self,
        msg: &Message,
        attempt: u32,
        event: &OrderEvent,
        conn: Option<&Option<Connection>>,
        progress: &Progress,
    ) -> Decision {
        let conn = match conn {
            None => {
                return self.defer(
                    attempt,
                    None,
                    "store_unavailable",
                    "connection store unavailable",
                )
            }
            Some(None) => {
                return skipped(
                    "no_connection",
                    format!(
                        "shop {} has no KeyCRM connection; event dropped",
                        event.shop_id
                    ),
                )
            }
            Some(Some(c)) => c,
        };
        match &event.body {
            EventBody::Created(order) => {
                self.on_created(msg, attempt, event, order, conn, progress)
                    .await
            }
            EventBody::StatusChanged(change) => {
                self.on_status(attempt, event, change, conn, progress).await
            }
        }
    }

    /// Defers, or dead-letters once the attempts are used up.
    fn defer(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        label: &'static str,
        reason: &str,
    ) -> Decision {
        let policy = &self.config.retry;
        if policy.may_defer(attempt) {
            Decision::Defer {
                delay: policy.delay(attempt, retry_after, &mut rand::thread_rng()),
                reason: reason.to_string(),
                label,
                next_attempt: attempt + 1,
            }
        } else {
            Decision::DeadLetter {
                kind: "retries_exhausted",
                reason: format!("retries exhausted after {attempt} attempts: {reason}"),
                shop_id: None,
                order_id: None,
            }
        }
    }

    async fn ran_out_of_time(
        &self,
        event: &OrderEvent,
        attempt: u32,
        progress: &Progress,
    ) -> Decision {
        let reason = "the attempt ran out of time in this invocation";
        if let Some(c) = progress.take() {
            if self.config.retry.may_defer(attempt) {
                if let Err(e) = self
                    .ledger
                    .release(
                        &c.connection_id,
                        &c.shop_order_id,
                        &c.holder,
                        reason,
                        c.maybe_committed,
                    )
                    .await
                {
                    tracing::warn!(order = %c.shop_order_id, error = %e, "could not release the claim; it expires with its lease");
                }
            } else {
                let why = format!("retries exhausted after {attempt} attempts: {reason}");
                if let Err(e) = self
                    .ledger
                    .mark_failed(
                        &c.connection_id,
                        &c.shop_order_id,
                        &c.holder,
                        &why,
                        &no_fields(),
                    )
                    .await
                {
                    tracing::warn!(order = %c.shop_order_id, error = %e, "could not record the failure");
                }
                self.journal_failure(
                    &c.connection_id,
                    &c.shop_order_id,
                    &why,
                    &no_fields(),
                    progress,
                )
                .await;
            }
        }
        tracing::warn!(shop = %event.shop_id, order = %event.order_id(), attempt, "attempt cut off by the invocation deadline");
        self.defer(attempt, None, "deadline", reason)
    }

    async fn malformed(&self, msg: &Message, err: &EventError) -> Decision {
        let (shop_id, order_id) = ids_of_malformed(&msg.body);
        if let Some(shop) = &shop_id {
            if let Ok(Some(conn)) = self.connections.get_by_shop(shop).await {
                let text = format!("an order event was refused and dead-lettered: {err}");
                if let Err(e) = self.journal.record_error(&conn.id, &text).await {
                    tracing::warn!(connection = %conn.id, error = %e, "could not record the error");
                }
            }
        }
        Decision::DeadLetter {
            kind: "malformed",
            reason: err.to_string(),
            shop_id,
            order_id,
        }
    }

    /// Carries the decision out on the queues.
    async fn settle(
        &self,
        msg: &Message,
        parsed: &Result<OrderEvent, EventError>,
        decision: Decision,
    ) -> (Outcome, bool) {
        let (shop, order) = match parsed {
            Ok(e) => (e.shop_id.as_str(), e.order_id()),
            Err(_) => ("?", "?"),
        };
        match decision {
            Decision::Ack(outcome) => {
                match &outcome {
                    Outcome::Created { .. } => count(&ORDERS_PUSHED, &[], 1),
                    Outcome::AlreadyDone { .. } => count(&ORDER_EVENTS_SKIPPED, &["duplicate"], 1),
                    Outcome::StatusPushed { .. } => count(&STATUSES_PUSHED, &[], 1),
                    // Counted where the reason is known (`skipped`).
                    _ => {}
                }
                tracing::info!(message_id = %msg.id, shop = %shop, order = %order, outcome = ?outcome, "order event handled");
                (outcome, false)
            }
            Decision::Defer {
                delay,
                reason,
                label,
                next_attempt,
            } => {
                let mut out = Outgoing::new(msg.body.clone()).delayed(delay);
                out.attributes = msg.attributes.clone();
                out.attributes
                    .insert(ATTEMPT_ATTRIBUTE.to_string(), next_attempt.to_string());
                match self.retry_queue.send(out).await {
                    Ok(_) => {
                        count(&ORDERS_DEFERRED, &[label], 1);
                        tracing::info!(message_id = %msg.id, shop = %shop, order = %order, attempt = next_attempt, delay_s = delay.as_secs_f64(), reason = %reason, "order event deferred");
                        (
                            Outcome::Deferred {
                                attempt: next_attempt,
                                delay,
                                reason,
                            },
                            false,
                        )
                    }
                    Err(e) => {
                        count(&ORDER_EVENTS_UNSETTLED, &[], 1);
                        tracing::error!(message_id = %msg.id, shop = %shop, order = %order, error = %e, "could not queue the deferred copy; leaving the message to SQS");
                        (
                            Outcome::Failed {
                                reason: format!("deferral failed ({reason}): {e}"),
                            },
                            true,
                        )
                    }
                }
            }
            Decision::DeadLetter {
                kind,
                reason,
                shop_id,
                order_id,
            } => {
                let mut dl =
                    DeadLetter::new(kind, reason.clone(), &self.config.source_queue, &msg.body);
                dl.shop_id = shop_id.or_else(|| parsed.as_ref().ok().map(|e| e.shop_id.clone()));
                dl.order_id =
                    order_id.or_else(|| parsed.as_ref().ok().map(|e| e.order_id().to_string()));
                match self.dead_letters.send(dl.to_outgoing()).await {
                    Ok(_) => {
                        count(&ORDERS_FAILED, &[kind], 1);
                        tracing::warn!(message_id = %msg.id, shop = %shop, order = %order, kind, reason = %reason, "order event dead-lettered");
                        (
                            Outcome::DeadLettered {
                                kind: kind.to_string(),
                                reason,
                            },
                            false,
                        )
                    }
                    Err(e) => {
                        count(&ORDER_EVENTS_UNSETTLED, &[], 1);
                        tracing::error!(message_id = %msg.id, shop = %shop, order = %order, error = %e, "could not dead-letter; leaving the message to SQS");
                        (
                            Outcome::Failed {
                                reason: format!("dead-lettering failed ({reason}): {e}"),
                            },
                            true,
                        )
                    }
                }
            }
        }
    }
}
