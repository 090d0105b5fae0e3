//! The handler's logic: one decision per message, then one queue action to settle it.

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

    // ------------------------------------------------------------------ order.created

    async fn on_created(
        &self,
        msg: &Message,
        attempt: u32,
        event: &OrderEvent,
        order: &ShopOrder,
        conn: &Connection,
        progress: &Progress,
    ) -> Decision {
        let target = match conn.settings.order_sync {
            OrderSyncType::Pipelines => Target::Card,
            _ => Target::Order,
        };
        let holder = uuid::Uuid::new_v4().to_string();
        let claim = self
            .ledger
            .claim(
                &conn.id,
                &order.id,
                target,
                &holder,
                self.config.lease,
                &msg.body,
            )
            .await;
        let entry = match claim {
            Err(e) => {
                return self.defer(
                    attempt,
                    None,
                    "store_unavailable",
                    &format!("order ledger unavailable: {e}"),
                )
            }
            Ok(Claim::AlreadyCreated(e)) => {
                return Decision::Ack(Outcome::AlreadyDone {
                    shop_order_id: order.id.clone(),
                    reason: format!(
                        "already in KeyCRM as {} {}",
                        e.target.as_str(),
                        e.keycrm_id.map(|i| i.to_string()).unwrap_or_default()
                    ),
                })
            }
            Ok(Claim::Settled(e)) if e.state == LedgerState::Failed => {
                return Decision::DeadLetter {
                    kind: "failed_earlier",
                    reason: format!(
                        "order {} failed earlier and waits for a re-push: {}",
                        order.id,
                        e.last_error.unwrap_or_default()
                    ),
                    shop_id: None,
                    order_id: None,
                }
            }
            Ok(Claim::Settled(e)) => {
                return Decision::Ack(Outcome::AlreadyDone {
                    shop_order_id: order.id.clone(),
                    reason: format!(
                        "skipped earlier ({}); only a re-push sends it",
                        e.last_error.unwrap_or_default()
                    ),
                })
            }
            Ok(Claim::Busy(_)) => {
                let policy = &self.config.retry;
                if policy.may_defer(attempt) {
                    return Decision::Defer {
                        delay: policy.busy_delay,
                        reason: "another attempt is creating this order".into(),
                        label: "busy",
                        next_attempt: attempt + 1,
                    };
                }
                return self.defer(
                    attempt,
                    None,
                    "busy",
                    "another attempt kept the order claimed",
                );
            }
            Ok(Claim::Granted(e)) => e,
        };
        progress.hold(HeldClaim {
            connection_id: conn.id.clone(),
            shop_order_id: order.id.clone(),
            holder: holder.clone(),
            maybe_committed: entry.maybe_committed,
        });
        let c = Claimed {
            conn,
            event,
            order,
            holder,
            target,
            entry,
            progress: progress.clone(),
        };

        if !conn.active || !conn.settings.order_sync_on() {
            let reason = if !conn.active {
                "the connection is inactive"
            } else {
                "order sync is off for this connection"
            };
            if let Err(e) = self
                .ledger
                .mark_skipped(&conn.id, &order.id, &c.holder, reason)
                .await
            {
                tracing::warn!(order = %order.id, error = %e, "could not record the skip");
            }
            progress.clear();
            progress.count(&conn.id, Counter::OrdersSkipped);
            return skipped("inactive", reason);
        }

        let crm = match self.crm.crm_for(conn).await {
            Ok(api) => api,
            Err(ClientsError::MissingKey(_)) => {
                let why = "the connection's KeyCRM API key is missing; reconnect and re-push";
                return self
                    .fail_order(&c, "keycrm_rejected", why.into(), &no_fields())
                    .await;
            }
            Err(e) => {
                let maybe = c.entry.maybe_committed;
                return self
                    .give_back(
                        &c,
                        attempt,
                        &format!("no KeyCRM client: {e}"),
                        maybe,
                        None,
                        "keycrm_unavailable",
                    )
                    .await;
            }
        };
        let dict = match self.dictionaries.get(conn, crm.as_ref()).await {
            Ok(d) => d,
            Err(e) => {
                let maybe = c.entry.maybe_committed;
                return self
                    .on_keycrm_error(&c, attempt, e, maybe, "loading the KeyCRM dictionaries")
                    .await;
            }
        };
        let mapped = match target {
            Target::Order => map_order(&event.shop_id, order, &conn.settings, &dict)
                .map(|m| Mapped::Order(Box::new(m))),
            Target::Card => map_card(&event.shop_id, order, &conn.settings, &dict)
                .map(|m| Mapped::Card(Box::new(m))),
        };
        let mapped = match mapped {
            Ok(m) => m,
            Err(e) => {
                return self
                    .fail_order(&c, "mapping", e.to_string(), &no_fields())
                    .await
            }
        };

        if c.entry.maybe_committed {
            match self.recover(crm.as_ref(), &c, &mapped).await {
                Ok(Some((id, status))) => {
                    tracing::info!(connection = %conn.id, order = %order.id, keycrm_id = id, "found the order an earlier attempt created");
                    return self
                        .finish_created(&c, crm.as_ref(), &mapped, id, status, true, attempt)
                        .await;
                }
                Ok(None) => {}
                Err(e) => {
                    return self
                        .on_keycrm_error(
                            &c,
                            attempt,
                            e,
                            true,
                            "searching for an earlier attempt's order",
                        )
                        .await
                }
            }
        }

        // A new entry is stored already marked as attempted (one write less per order).
        let marked = if c.entry.attempts <= 1 {
            Ok(())
        } else {
            self.ledger
                .mark_attempt(&conn.id, &order.id, &c.holder)
                .await
        };
        match marked {
            Ok(()) => progress.sent(),
            Err(StoreError::Conflict(_)) => {
                // Someone else holds the order now; they finish it.
                progress.clear();
                return self.defer(attempt, None, "busy", "lost the claim before sending");
            }
            Err(e) => {
                let maybe = c.entry.maybe_committed;
                return self
                    .give_back(
                        &c,
                        attempt,
                        &format!("order ledger unavailable: {e}"),
                        maybe,
                        None,
                        "store_unavailable",
                    )
                    .await;
            }
        }
        let created = match &mapped {
            Mapped::Order(m) => crm.create_order(&m.body).await.map(|o| (o.id, o.status_id)),
            Mapped::Card(m) => crm.create_card(&m.body).await,
        };
        match created {
            Ok((id, status)) => {
                self.finish_created(&c, crm.as_ref(), &mapped, id, status, false, attempt)
                    .await
            }
            // The search above settled any earlier attempt: only this request can have landed.
            Err(e) => {
                self.on_keycrm_error(&c, attempt, e, false, "creating it")
                    .await
            }
        }
    }

    async fn recover(
        &self,
        crm: &dyn CrmApi,
        c: &Claimed<'_>,
        mapped: &Mapped,
    ) -> Result<Option<(i64, i64)>, KeycrmError> {
        let (shop, order) = (c.event.shop_id.as_str(), c.order.id.as_str());
        match mapped {
            Mapped::Order(m) => {
                // In any source: the merchant may have changed it since the attempt.
                let key = source_key::source_uuid(shop, order);
                let found = crm.find_orders(&key, None).await?;
                if let Some(hit) = pick_order(&found, &key) {
                    return Ok(Some(hit));
                }
                if c.entry.scoped_key {
                    return Ok(None);
                }
                // An older version's attempt named it by the bare id.
                let found = crm.find_orders(order, None).await?;
                Ok(pick_legacy_order(
                    &found,
                    order,
                    m.body.source_id,
                    c.order.created_at,
                ))
            }
            Mapped::Card(m) => {
                let q = CardQuery {
                    shop_id: shop,
                    order_id: order,
                    legacy: (!c.entry.scoped_key).then_some(&m.body),
                    window: card_window(
                        c.entry.attempt_started_at,
                        Utc::now(),
                        self.config.lease,
                        self.config.recovery_margin,
                    ),
                };
                find_card(crm, &q).await
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn finish_created(
        &self,
        c: &Claimed<'_>,
        crm: &dyn CrmApi,
        mapped: &Mapped,
        keycrm_id: i64,
        status_id: i64,
        recovered: bool,
        attempt: u32,
    ) -> Decision {
        let (conn, order) = (c.conn, c.order);
        let mut status_now = status_id;
        let mut status_in_place = true;
        if let Some(wanted) = mapped.status_after_create().filter(|s| *s != status_id) {
            let set = match c.target {
                Target::Order => crm.set_order_status(keycrm_id, wanted).await,
                Target::Card => crm.set_card_status(keycrm_id, wanted).await,
            };
            match set {
                Ok(()) => status_now = wanted,
                Err(e) => {
                    status_in_place = false;
                    tracing::warn!(connection = %conn.id, order = %order.id, error = %e, "initial status not set; queued as a status change");
                    self.queue_initial_status(c).await;
                }
            }
        }
        let report = mapped.report();
        let shop_status = status_in_place.then_some(order.status.as_str());
        let created = Created {
            target: c.target,
            keycrm_id,
            report: report.clone(),
            shop_status: shop_status.map(str::to_string),
            keycrm_status_id: Some(status_now),
        };
        if let Err(e) = self
            .ledger
            .record_created(&conn.id, &order.id, &c.holder, &created)
            .await
        {
            // KeyCRM has it and the ledger does not know yet. `maybe_committed` stays set, so
            // the retry finds it by search instead of creating it again.
            tracing::error!(connection = %conn.id, order = %order.id, keycrm_id, error = %e, "created in KeyCRM but not recorded");
            return self
                .give_back(
                    c,
                    attempt,
                    &format!("created as {keycrm_id} but not recorded: {e}"),
                    true,
                    None,
                    "store_unavailable",
                )
                .await;
        }
        c.progress.clear();
        c.progress.count(&conn.id, Counter::OrdersPushed);
        if c.entry.last_error.is_some() {
            if let Err(e) = self.journal.clear_failure(&conn.id, &order.id).await {
                tracing::warn!(connection = %conn.id, order = %order.id, error = %e, "could not clear the old failure");
            }
        }
        if let Some(m) = &report.total_mismatch {
            tracing::warn!(connection = %conn.id, order = %order.id, shop_total = %m.shop_total, computed = %m.computed, "order total mismatch flagged");
        }
        Decision::Ack(Outcome::Created {
            connection_id: conn.id.clone(),
            shop_order_id: order.id.clone(),
            target: c.target,
            keycrm_id,
            recovered,
        })
    }

    /// A mapped initial status that could not be set goes through the status path later.
    async fn queue_initial_status(&self, c: &Claimed<'_>) {
        let body = serde_json::json!({
            "version": mapping::events::CONTRACT_VERSION,
            "type": mapping::events::ORDER_STATUS_CHANGED,
            "event_id": format!("{}#initial-status", c.event.event_id),
            "shop_id": c.event.shop_id,
            "occurred_at": c.event.occurred_at,
            "order_id": c.order.id,
            "status": c.order.status,
            "changed_by": "connector",
        });
        let delay = self.config.retry.base;
        let out = Outgoing::new(body.to_string()).delayed(delay);
        if let Err(e) = self.retry_queue.send(out).await {
            let text = format!(
                "order {}: its initial status \"{}\" could not be set in KeyCRM ({e})",
                c.order.id, c.order.status
            );
            if let Err(e) = self.journal.record_error(&c.conn.id, &text).await {
                tracing::warn!(connection = %c.conn.id, error = %e, "could not record the error");
            }
        }
    }

    async fn on_keycrm_error(
        &self,
        c: &Claimed<'_>,
        attempt: u32,
        e: KeycrmError,
        maybe_before: bool,
        doing: &str,
    ) -> Decision {
        match e {
            KeycrmError::Validation { ref errors, .. } => {
                // The dictionaries may be what is out of date: reload them next time.
                self.dictionaries.invalidate(&c.conn.id);
                let reason = format!("KeyCRM refused the order: {e}");
                self.fail_order(c, "validation", reason, errors).await
            }
            KeycrmError::RateLimited { retry_after } => {
                self.give_back(
                    c,
                    attempt,
                    &e.to_string(),
                    maybe_before,
                    Some(retry_after),
                    "rate_limited",
                )
                .await
            }
            KeycrmError::Transient {
                maybe_committed, ..
            } => {
                let why = format!("{doing}: {e}");
                self.give_back(
                    c,
                    attempt,
                    &why,
                    maybe_before || maybe_committed,
                    None,
                    "keycrm_unavailable",
                )
                .await
            }
            KeycrmError::Protocol { .. } => {
                // An unreadable answer to a create may hide a created order.
                let maybe = maybe_before || c.progress.has_sent().unwrap_or(true);
                self.give_back(
                    c,
                    attempt,
                    &format!("{doing}: {e}"),
                    maybe,
                    None,
                    "keycrm_unavailable",
                )
                .await
            }
            KeycrmError::Unauthorized
            | KeycrmError::Forbidden { .. }
            | KeycrmError::BadRequest { .. }
            | KeycrmError::NotFound { .. } => {
                let reason = format!("KeyCRM refused {doing}: {e}");
                self.fail_order(c, "keycrm_rejected", reason, &no_fields())
                    .await
            }
        }
    }

    /// Releases the claim and defers; once the attempts are used up, fails the order instead.
    async fn give_back(
        &self,
        c: &Claimed<'_>,
        attempt: u32,
        reason: &str,
        maybe_committed: bool,
        retry_after: Option<Duration>,
        label: &'static str,
    ) -> Decision {
        if !self.config.retry.may_defer(attempt) {
            let why = format!("retries exhausted after {attempt} attempts: {reason}");
            return self
                .fail_order(c, "retries_exhausted", why, &no_fields())
                .await;
        }
        if let Err(e) = self
            .ledger
            .release(&c.conn.id, &c.order.id, &c.holder, reason, maybe_committed)
            .await
        {
            tracing::warn!(order = %c.order.id, error = %e, "could not release the claim; it expires with its lease");
        }
        c.progress.clear();
        self.defer(attempt, retry_after, label, reason)
    }

    /// Records a permanent failure (ledger, journal) and dead-letters the event.
    async fn fail_order(
        &self,
        c: &Claimed<'_>,
        kind: &'static str,
        reason: String,
        field_errors: &BTreeMap<String, Vec<String>>,
    ) -> Decision {
        if let Err(e) = self
            .ledger
            .mark_failed(&c.conn.id, &c.order.id, &c.holder, &reason, field_errors)
            .await
        {
            tracing::warn!(order = %c.order.id, error = %e, "could not record the failure in the ledger");
        }
        c.progress.clear();
        self.journal_failure(&c.conn.id, &c.order.id, &reason, field_errors, &c.progress)
            .await;
        Decision::DeadLetter {
            kind,
            reason,
            shop_id: Some(c.event.shop_id.clone()),
            order_id: Some(c.order.id.clone()),
        }
    }

    async fn journal_failure(
        &self,
        connection_id: &str,
        shop_order_id: &str,
        reason: &str,
        field_errors: &BTreeMap<String, Vec<String>>,
        progress: &Progress,
    ) {
        let failure = OrderFailure {
            shop_order_id: shop_order_id.to_string(),
            at: Utc::now(),
            reason: reason.to_string(),
            field_errors: field_errors.clone(),
        };
        if let Err(e) = self.journal.record_failure(connection_id, &failure).await {
            tracing::warn!(connection = %connection_id, error = %e, "could not record the failure in the journal");
        }
        progress.count(connection_id, Counter::OrdersFailed);
    }

    // ------------------------------------------------------------------ order.status_changed

    async fn on_status(
        &self,
        attempt: u32,
        event: &OrderEvent,
        change: &StatusChange,
        conn: &Connection,
        progress: &Progress,
    ) -> Decision {
        let order_id = &change.order_id;
        if !conn.active || !conn.settings.order_sync_on() {
            return skipped(
                "inactive",
                "the connection is inactive or its order sync is off",
            );
        }
        let entry = match self.ledger.get(&conn.id, order_id).await {
            Ok(e) => e,
            Err(e) => {
                return self.defer(
                    attempt,
                    None,
                    "store_unavailable",
                    &format!("order ledger unavailable: {e}"),
                )
            }
        };
        let Some(entry) = entry else {
            if attempt < self.config.retry.unknown_order_attempts {
                return self.defer(
                    attempt,
                    None,
                    "not_known_yet",
                    "the order is not known yet (its creation may be on the way)",
                );
            }
            return skipped(
                "unknown_order",
                format!(
                    "order {order_id} was never pushed by this connector; status change dropped"
                ),
            );
        };
        match entry.state {
            LedgerState::Pending => {
                return self.defer(
                    attempt,
                    None,
                    "not_created_yet",
                    "the order is not in KeyCRM yet",
                )
            }
            LedgerState::Failed | LedgerState::Skipped => {
                return skipped(
                    "not_in_keycrm",
                    format!(
                        "order {order_id} is not in KeyCRM ({:?}); status change dropped",
                        entry.state
                    ),
                )
            }
            LedgerState::Created => {}
        }
        let Some(keycrm_id) = entry.keycrm_id else {
            return skipped(
                "not_in_keycrm",
                format!("order {order_id} has no KeyCRM id recorded"),
            );
        };
        if !entry.in_current_account(conn.account_switched_at) {
            // Its KeyCRM id names an unrelated order or card in the account used now.
            return skipped(
                "previous_account",
                format!("order {order_id} was pushed to the connection's previous KeyCRM account"),
            );
        }
        if change.changed_by.as_deref() == Some("keycrm") {
            return skipped(
                "echo",
                "the change came from KeyCRM through this connector (not echoed)",
            );
        }
        if entry.applied_from_keycrm.as_deref() == Some(change.status.as_str()) {
            return skipped(
                "echo",
                format!(
                    "\"{}\" is the status the connector applied from KeyCRM (not echoed)",
                    change.status
                ),
            );
        }
        if let Some(t) = entry.shop_status_at.filter(|t| *t >= event.occurred_at) {
            return skipped(
                "stale",
                format!("stale or duplicate: a shop status from {t} is already pushed"),
            );
        }
        if let Some(t) = entry
            .keycrm_status_changed_at
            .filter(|t| *t > event.occurred_at)
        {
            return skipped(
                "stale",
                format!("older than the KeyCRM status change of {t}"),
            );
        }
        let status_id = match entry.target {
            Target::Order => conn.settings.keycrm_status_for(&change.status),
            Target::Card => conn
                .settings
                .pipeline_status_for(&change.status)
                .map(|(_, s)| s),
        };
        let Some(status_id) = status_id else {
            return skipped(
                "unmapped_status",
                format!(
                    "shop status \"{}\" is not mapped; KeyCRM keeps its status",
                    change.status
                ),
            );
        };
        let crm = match self.crm.crm_for(conn).await {
            Ok(api) => api,
            Err(ClientsError::MissingKey(_)) => {
                return Decision::DeadLetter {
                    kind: "keycrm_rejected",
                    reason: "the connection's KeyCRM API key is missing".into(),
                    shop_id: None,
                    order_id: None,
                }
            }
            Err(e) => {
                return self.defer(
                    attempt,
                    None,
                    "keycrm_unavailable",
                    &format!("no KeyCRM client: {e}"),
                )
            }
        };
        // Reserve this change before writing KeyCRM: of two pushes of one order running at
        // once, the newer waits for the older, and an older one arriving later is stale.
        let holder = uuid::Uuid::new_v4().to_string();
        let reserved = self
            .ledger
            .reserve_shop_push(
                &conn.id,
                order_id,
                event.occurred_at,
                &holder,
                self.config.lease,
            )
            .await;
        match reserved {
            Ok(PushReservation::Granted) => {}
            Ok(PushReservation::Stale(e)) => {
                return skipped(
                    "stale",
                    format!(
                        "stale: the order's status is newer (shop {}, KeyCRM {})",
                        e.shop_status_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
                        e.keycrm_status_changed_at
                            .map(|t| t.to_rfc3339())
                            .unwrap_or_default()
                    ),
                )
            }
            Ok(PushReservation::Busy(_)) => {
                let policy = &self.config.retry;
                if policy.may_defer(attempt) {
                    return Decision::Defer {
                        delay: policy.busy_delay,
                        reason: "another status change of this order is being pushed".into(),
                        label: "busy",
                        next_attempt: attempt + 1,
                    };
                }
                return self.defer(
                    attempt,
                    None,
                    "busy",
                    "another status push kept the order busy",
                );
            }
            Err(e) => {
                return self.defer(
                    attempt,
                    None,
                    "store_unavailable",
                    &format!("order ledger unavailable: {e}"),
                )
            }
        }
        let set = match entry.target {
            Target::Order => crm.set_order_status(keycrm_id, status_id).await,
            Target::Card => crm.set_card_status(keycrm_id, status_id).await,
        };
        if set.is_err() {
            if let Err(e) = self
                .ledger
                .release_shop_push(&conn.id, order_id, &holder)
                .await
            {
                tracing::warn!(order = %order_id, error = %e, "could not release the status push; it expires with its lease");
            }
        }
        match set {
            Ok(()) => {
                if let Err(e) = self
                    .ledger
                    .finish_shop_push(
                        &conn.id,
                        order_id,
                        &holder,
                        &change.status,
                        Some(status_id),
                        event.occurred_at,
                    )
                    .await
                {
                    tracing::warn!(order = %order_id, error = %e, "status pushed but not recorded");
                }
                progress.count(&conn.id, Counter::StatusesPushed);
                Decision::Ack(Outcome::StatusPushed {
                    shop_order_id: order_id.clone(),
                    keycrm_status_id: status_id,
                })
            }
            Err(KeycrmError::RateLimited { retry_after }) => self.defer(
                attempt,
                Some(retry_after),
                "rate_limited",
                "KeyCRM rate limit",
            ),
            Err(e @ (KeycrmError::Transient { .. } | KeycrmError::Protocol { .. })) => {
                self.defer(attempt, None, "keycrm_unavailable", &e.to_string())
            }
            Err(KeycrmError::NotFound { .. }) => skipped(
                "keycrm_gone",
                format!(
                    "KeyCRM {} {keycrm_id} no longer exists; status change dropped",
                    entry.target.as_str()
                ),
            ),
            Err(e) => {
                let reason = format!("KeyCRM refused the status \"{}\": {e}", change.status);
                let fields = match &e {
                    KeycrmError::Validation { errors, .. } => errors.clone(),
                    _ => no_fields(),
                };
                let failure = OrderFailure {
                    shop_order_id: order_id.clone(),
                    at: Utc::now(),
                    reason: reason.clone(),
                    field_errors: fields,
                };
                if let Err(e) = self.journal.record_failure(&conn.id, &failure).await {
                    tracing::warn!(connection = %conn.id, error = %e, "could not record the failure");
                }
                Decision::DeadLetter {
                    kind: if matches!(e, KeycrmError::Validation { .. }) {
                        "validation"
                    } else {
                        "keycrm_rejected"
                    },
                    reason,
                    shop_id: None,
                    order_id: None,
                }
            }
        }
    }
}
