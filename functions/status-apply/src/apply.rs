//! Applying one KeyCRM status change to the shop: resolve the shop order, map the status,
//! record it in the ledger, set it in the shop.
//!
//! Ordering and dedupe (see `docs/webhooks.md`): the ledger's conditional
//! `record_keycrm_status` is the single arbiter. It is called *before* the shop is touched:
//!
//! - it arms the echo guard (`applied_from_keycrm`) before the shop can emit its own
//!   `order.status_changed`, so order-push never sends the status back to KeyCRM;
//! - a stale or duplicate event is refused there and never reaches the shop.
//!
//! A recorded event whose shop call then fails comes back from the queue and finds itself
//! already recorded as the newest; it is applied again (setting a status the order already
//! has is a no-op in the shop). After every shop write the ledger is read again: if a newer
//! event was recorded meanwhile (its worker may have written the shop before us), the newest
//! recorded status is written again, so the shop always ends on the newest status.

use crate::keycrm_read::KeycrmOrders;
use chrono::{DateTime, Utc};
use jobs::StatusJob;
use mapping::source_key::SourceRef;
use mapping::Settings;
use runtime::metrics::catalog::{
    STATUS_UPDATES_FAILED, STATUS_UPDATES_RETRIED, WEBHOOKS_APPLIED, WEBHOOKS_IGNORED,
};
use runtime::metrics::count;
use runtime::sqs_batch::{isolate, Run};
use shop::{ShopError, ShopOrders};
use std::sync::Arc;
use std::time::Instant;
use store::{
    Connection, ConnectionStore, Counter, LedgerEntry, LedgerState, OrderLedger, StatusJournal,
    StoreError, Target,
};

/// How often the post-write check may chase newer statuses before handing the message back.
const MAX_CONVERGE_ROUNDS: usize = 4;

/// Why an event changed nothing (answered, logged, counted as `webhooks_ignored`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IgnoreReason {
    /// The connection was deleted after the event was accepted.
    UnknownConnection,
    /// The connection was switched off after the event was accepted.
    Inactive,
    /// Not an order or card this connector knows (other source, old order).
    UnknownOrder,
    /// The KeyCRM status has no shop status in the connection's mapping.
    Unmapped,
    /// The same change was applied before.
    Duplicate,
    /// A newer change for the same order was applied before this one arrived.
    Stale,
    /// The shop no longer has the order.
    ShopOrderMissing,
}

impl IgnoreReason {
    pub fn as_str(self) -> &'static str {
        match self {
            IgnoreReason::UnknownConnection => "unknown_connection",
            IgnoreReason::Inactive => "inactive_connection",
            IgnoreReason::UnknownOrder => "unknown_order",
            IgnoreReason::Unmapped => "unmapped_status",
            IgnoreReason::Duplicate => "duplicate",
            IgnoreReason::Stale => "stale",
            IgnoreReason::ShopOrderMissing => "shop_order_missing",
        }
    }
}

/// What processing one job came to.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Applied {
        shop_order_id: String,
        shop_status: String,
        /// The ledger already held this change (an earlier delivery recorded it); the shop
        /// was set again in case that delivery's shop call never landed.
        repeated: bool,
    },
    Ignored {
        reason: IgnoreReason,
        detail: String,
    },
    /// Worth trying again later (shop or storage unavailable).
    Retry { reason: String },
    /// Will not succeed by repeating it (the shop refused the status, corrupt data).
    Failed { reason: String },
}

/// What the transport should do with the message (shared by the queue consumers).
pub use queue::consume::Disposition;

/// Backoff between deliveries and the redrive threshold (StatusUpdatesQueue's `maxReceiveCount`).
pub use queue::consume::RetryPolicy;

pub struct StatusApplier {
    connections: Arc<dyn ConnectionStore>,
    ledger: Arc<dyn OrderLedger>,
    shop: Arc<dyn ShopOrders>,
    journal: Arc<dyn StatusJournal>,
    policy: RetryPolicy,
    /// Reads KeyCRM orders back before adopting them; without it nothing is adopted.
    keycrm: Option<Arc<dyn KeycrmOrders>>,
}

/// What resolving a job's KeyCRM entity to a shop order came to.
enum Resolved {
    Entry(Box<LedgerEntry>),
    /// Not an order of this connection (or not provably one): ignored.
    NotOurs(String),
    /// Cannot be decided now (the order is being created, KeyCRM unavailable): retried.
    Later(String),
}

fn store_outcome(what: &str, e: StoreError) -> Outcome {
    let reason = format!("{what}: {e}");
    if e.is_transient() {
        Outcome::Retry { reason }
    } else {
        Outcome::Failed { reason }
    }
}

fn ignored(reason: IgnoreReason, detail: impl Into<String>) -> Outcome {
    Outcome::Ignored {
        reason,
        detail: detail.into(),
    }
}

/// The shop status a KeyCRM status stands for. When the shop's last known status already
/// maps to this KeyCRM status (several shop statuses may share one), it is kept: that is
/// the echo of our own push and must not flip the shop to the first listed alternative.
pub fn target_status(settings: &Settings, entry: &LedgerEntry, job: &StatusJob) -> Option<String> {
    if let Some(current) = entry.shop_status.as_deref() {
        let consistent = match job.target {
            Target::Order => settings.keycrm_status_for(current) == Some(job.status_id),
            Target::Card => settings
                .pipeline_status_for(current)
                .is_some_and(|(p, s)| s == job.status_id && job.pipeline_id.is_none_or(|j| j == p)),
        };
        if consistent {
            return Some(current.to_string());
        }
    }
    match job.target {
        Target::Order => settings.shop_status_for(job.status_id),
        Target::Card => settings.shop_status_for_card(job.pipeline_id, job.status_id),
    }
    .map(str::to_string)
}

/// The newest change the ledger holds for an order, as `(changed_at, shop status)`.
fn newest(entry: &LedgerEntry) -> Option<(DateTime<Utc>, &str)> {
    Some((
        entry.keycrm_status_changed_at?,
        entry.applied_from_keycrm.as_deref()?,
    ))
}

/// False once the connector pushed a different shop status to KeyCRM after the recorded
/// KeyCRM change: the shop has moved on and must not be set back.
fn shop_not_moved_on(entry: &LedgerEntry) -> bool {
    match (
        entry.shop_status.as_deref(),
        entry.applied_from_keycrm.as_deref(),
    ) {
        (None, _) => true,
        (Some(s), Some(a)) => s == a,
        (Some(_), None) => false,
    }
}

impl StatusApplier {
    pub fn new(
        connections: Arc<dyn ConnectionStore>,
        ledger: Arc<dyn OrderLedger>,
        shop: Arc<dyn ShopOrders>,
        journal: Arc<dyn StatusJournal>,
        policy: RetryPolicy,
    ) -> Self {
        StatusApplier {
            connections,
            ledger,
            shop,
            journal,
            policy,
            keycrm: None,
        }
    }

    /// Lets the applier adopt orders an earlier attempt created in KeyCRM (read back first).
    pub fn with_keycrm(mut self, keycrm: Arc<dyn KeycrmOrders>) -> Self {
        self.keycrm = Some(keycrm);
        self
    }

    pub fn policy(&self) -> RetryPolicy {
        self.policy
    }

    /// [`Self::handle_message`] isolated from its batch-mates and bounded in time: a panic
    /// gives the message up with a readable reason (it goes to the dead-letter queue), and
    /// work still running at `until` is stopped and tried again later (given up on the last
    /// allowed delivery). Every step of `process` leaves the ledger consistent, so stopping
    /// it anywhere is safe: a recorded change is finished by the next delivery.
    pub async fn handle_message_until(
        &self,
        body: &str,
        receive_count: u32,
        until: Option<Instant>,
    ) -> Disposition {
        match isolate(until, self.handle_message(body, receive_count)).await {
            Run::Finished(d) => d,
            Run::Panicked(reason) => {
                count(&STATUS_UPDATES_FAILED, &["internal_error"], 1);
                let reason = format!("status change not applied: {reason}");
                if let Ok(job) = StatusJob::parse(body) {
                    self.give_up(&job.connection_id, &reason).await;
                }
                Disposition::GiveUp { reason }
            }
            Run::OutOfTime => {
                let reason = "the invocation ran out of time before the change was applied";
                if receive_count < self.policy.max_receives {
                    count(&STATUS_UPDATES_RETRIED, &[], 1);
                    let delay = self.policy.delay(receive_count);
                    tracing::warn!(
                        attempt = receive_count,
                        retry_in_secs = delay.as_secs_f64(),
                        "{reason}; will retry"
                    );
                    Disposition::RetryAfter {
                        delay,
                        reason: reason.into(),
                    }
                } else {
                    count(&STATUS_UPDATES_FAILED, &["retries_exhausted"], 1);
                    let reason = format!("not applied after {receive_count} attempts: {reason}");
                    if let Ok(job) = StatusJob::parse(body) {
                        self.give_up(&job.connection_id, &reason).await;
                    }
                    Disposition::GiveUp { reason }
                }
            }
        }
    }

    /// Processes one queue message and decides its fate; logs and journals the outcome.
    pub async fn handle_message(&self, body: &str, receive_count: u32) -> Disposition {
        let job = match StatusJob::parse(body) {
            Ok(j) => j,
            Err(e) => {
                count(&STATUS_UPDATES_FAILED, &["malformed"], 1);
                let reason = e.to_string();
                tracing::error!(error = %reason, "dropping a malformed status job to the dead-letter queue");
                return Disposition::GiveUp { reason };
            }
        };
        let outcome = self.process(&job, receive_count).await;
        let conn = job.connection_id.as_str();
        match outcome {
            Outcome::Applied {
                shop_order_id,
                shop_status,
                repeated,
            } => {
                tracing::info!(
                    connection = %conn, target = job.target.as_str(), keycrm_id = job.keycrm_id,
                    status_id = job.status_id, order = %shop_order_id, shop_status = %shop_status,
                    repeated, "applied KeyCRM status to the shop order"
                );
                // A first delivery that finds its change recorded is a duplicate of one that
                // was counted already; a redelivery finishes the one whose shop call failed.
                let counter = if repeated && receive_count <= 1 {
                    count(&WEBHOOKS_IGNORED, &[IgnoreReason::Duplicate.as_str()], 1);
                    Counter::WebhooksIgnored
                } else {
                    count(&WEBHOOKS_APPLIED, &[], 1);
                    Counter::WebhooksApplied
                };
                self.count(conn, counter).await;
                Disposition::Done
            }
            Outcome::Ignored { reason, detail } => {
                count(&WEBHOOKS_IGNORED, &[reason.as_str()], 1);
                tracing::info!(
                    connection = %conn, target = job.target.as_str(), keycrm_id = job.keycrm_id,
                    status_id = job.status_id, reason = reason.as_str(), detail = %detail,
                    "ignored KeyCRM status change"
                );
                if reason != IgnoreReason::UnknownConnection {
                    self.count(conn, Counter::WebhooksIgnored).await;
                }
                Disposition::Done
            }
            Outcome::Retry { reason } if receive_count < self.policy.max_receives => {
                count(&STATUS_UPDATES_RETRIED, &[], 1);
                let delay = self.policy.delay(receive_count);
                tracing::warn!(
                    connection = %conn, keycrm_id = job.keycrm_id, attempt = receive_count,
                    retry_in_secs = delay.as_secs_f64(), error = %reason,
                    "status change not applied yet; will retry"
                );
                Disposition::RetryAfter { delay, reason }
            }
            Outcome::Retry { reason } => {
                count(&STATUS_UPDATES_FAILED, &["retries_exhausted"], 1);
                let reason = format!(
                    "{} not applied after {receive_count} attempts: {reason}",
                    job.describe()
                );
                self.give_up(conn, &reason).await;
                Disposition::GiveUp { reason }
            }
            Outcome::Failed { reason } => {
                count(&STATUS_UPDATES_FAILED, &["rejected"], 1);
                let reason = format!("{} not applied: {reason}", job.describe());
                self.give_up(conn, &reason).await;
                Disposition::GiveUp { reason }
            }
        }
    }

    async fn give_up(&self, conn: &str, reason: &str) {
        tracing::error!(connection = %conn, reason = %reason, "status change goes to the dead-letter queue");
        if let Err(e) = self.journal.record_error(conn, reason).await {
            tracing::warn!(connection = %conn, error = %e, "could not journal the failure");
        }
    }

    async fn count(&self, conn: &str, counter: Counter) {
        if let Err(e) = self.journal.count(conn, counter, 1).await {
            tracing::warn!(connection = %conn, counter = counter.as_str(), error = %e, "could not update the journal");
        }
    }

    /// Resolves, maps, records and applies one status change.
    pub async fn process(&self, job: &StatusJob, receive_count: u32) -> Outcome {
        let conn = match self.connections.get(&job.connection_id).await {
            Ok(Some(c)) => c,
            Ok(None) => {
                return ignored(
                    IgnoreReason::UnknownConnection,
                    "connection no longer exists",
                )
            }
            Err(e) => return store_outcome("reading the connection", e),
        };
        if !conn.active {
            return ignored(IgnoreReason::Inactive, "connection is switched off");
        }
        let entry = match self.resolve(&conn, job).await {
            Ok(Resolved::Entry(e)) => *e,
            Ok(Resolved::NotOurs(why)) => return ignored(IgnoreReason::UnknownOrder, why),
            Ok(Resolved::Later(reason)) => return Outcome::Retry { reason },
            Err(e) => return store_outcome("looking up the order", e),
        };
        // Clamped: a time far in the future must not lock the order (see `ordering_time`).
        let changed_at = job.ordering_time();
        if changed_at != job.changed_at {
            tracing::warn!(connection = %conn.id, keycrm_id = job.keycrm_id,
                "status_changed_at lies in the future; ordered by the receive time instead");
        }
        let Some(status) = target_status(&conn.settings, &entry, job) else {
            return ignored(
                IgnoreReason::Unmapped,
                format!(
                    "KeyCRM status {} has no shop status in the mapping",
                    job.status_id
                ),
            );
        };
        let order = entry.shop_order_id.clone();
        let recorded = match self
            .ledger
            .record_keycrm_status(&conn.id, &order, job.status_id, changed_at, &status)
            .await
        {
            Ok(r) => r,
            // The connection was deleted under us (its ledger partition with it).
            Err(StoreError::NotFound(_)) => {
                return ignored(IgnoreReason::UnknownOrder, "ledger entry vanished")
            }
            Err(e) => return store_outcome("recording the status", e),
        };
        if !recorded {
            let current = match self.ledger.get(&conn.id, &order).await {
                Ok(Some(c)) => c,
                Ok(None) => return ignored(IgnoreReason::UnknownOrder, "ledger entry vanished"),
                Err(e) => return store_outcome("re-reading the ledger", e),
            };
            match current.keycrm_status_changed_at {
                Some(at) if at > changed_at => {
                    if receive_count > 1 {
                        // This delivery may have written the shop before: make sure the shop
                        // ends on the newest recorded status.
                        if let Err(o) = self.converge(&conn, &order, None).await {
                            return o;
                        }
                    }
                    return ignored(
                        IgnoreReason::Stale,
                        format!(
                            "a newer change ({}) was applied already",
                            keycrm::time::format_live(at)
                        ),
                    );
                }
                Some(at) if at == changed_at => {
                    let same = current.applied_from_keycrm.as_deref() == Some(status.as_str());
                    let other_recorded = current.applied_from_keycrm.is_some()
                        && current.keycrm_status_id != Some(job.status_id);
                    if !same && other_recorded {
                        return ignored(
                            IgnoreReason::Stale,
                            "another status with the same change time was recorded first",
                        );
                    }
                    if !same || !shop_not_moved_on(&current) {
                        return ignored(
                            IgnoreReason::Duplicate,
                            "applied before; the shop status has changed since",
                        );
                    }
                    // Recorded by an earlier delivery whose shop call may have failed: set it
                    // again (a no-op in the shop if it did get there).
                }
                _ => {
                    return Outcome::Retry {
                        reason: "the ledger refused the status but holds no newer one".into(),
                    }
                }
            }
        }
        if let Err(o) = self.set_status(&conn, &order, &status).await {
            return o;
        }
        if let Err(o) = self.converge(&conn, &order, Some(status.clone())).await {
            return o;
        }
        Outcome::Applied {
            shop_order_id: order,
            shop_status: status,
            repeated: !recorded,
        }
    }

    /// Re-reads the ledger after a shop write and writes the newest recorded status again
    /// while it differs from the last one written, so a slower worker carrying an older event
    /// cannot leave the shop behind.
    async fn converge(
        &self,
        conn: &Connection,
        order: &str,
        mut written: Option<String>,
    ) -> Result<(), Outcome> {
        for _ in 0..MAX_CONVERGE_ROUNDS {
            let current = match self.ledger.get(&conn.id, order).await {
                Ok(Some(c)) => c,
                Ok(None) => return Ok(()),
                Err(e) => return Err(store_outcome("checking the ledger after the write", e)),
            };
            let Some((_, newest_status)) = newest(&current) else {
                return Ok(());
            };
            if written.as_deref() == Some(newest_status) || !shop_not_moved_on(&current) {
                return Ok(());
            }
            let newest_status = newest_status.to_string();
            tracing::info!(connection = %conn.id, order = %order, shop_status = %newest_status,
                "a newer KeyCRM status was recorded meanwhile; writing it again");
            self.set_status(conn, order, &newest_status).await?;
            written = Some(newest_status);
        }
        Err(Outcome::Retry {
            reason: "the order's status kept changing while it was applied".into(),
        })
    }

    async fn set_status(
        &self,
        conn: &Connection,
        order: &str,
        status: &str,
    ) -> Result<(), Outcome> {
        match self
            .shop
            .set_order_status(&conn.shop_id, order, status)
            .await
        {
            Ok(()) => Ok(()),
            Err(ShopError::NotFound(_)) => Err(ignored(
                IgnoreReason::ShopOrderMissing,
                format!("the shop has no order {order}"),
            )),
            Err(e @ ShopError::Rejected(_)) => Err(Outcome::Failed {
                reason: format!("shop order {order}: {e}"),
            }),
            // Unavailable, and Unauthorized (an operator fixes the platform token): retry.
            Err(e) => Err(Outcome::Retry {
                reason: format!("shop order {order}: {e}"),
            }),
        }
    }

    /// The ledger entry of the event's order or card: linked by its KeyCRM id, or adopted.
    ///
    /// Adoption links a KeyCRM order an earlier attempt of this connector created but could
    /// not record (its answer was lost) to the shop order it names. It is refused unless
    /// every check holds: the `source_uuid` names a shop order of this shop (the shop-scoped
    /// form; the legacy bare id only from the connection's own source and for an order an
    /// older version attempted), the ledger knows that order as waiting to be created
    /// (`Pending` without a live claim, or `Failed`), and KeyCRM itself, read back, has this
    /// order with this `source_uuid`. A forged or foreign webhook can therefore neither mark
    /// an order created before it exists nor take over another shop's order.
    async fn resolve(&self, conn: &Connection, job: &StatusJob) -> Result<Resolved, StoreError> {
        if let Some(e) = self
            .ledger
            .find_by_keycrm_id(&conn.id, job.target, job.keycrm_id)
            .await?
        {
            // After an account switch, the same id in the new account is another entity.
            if !e.in_current_account(conn.account_switched_at) {
                return Ok(Resolved::NotOurs(format!(
                    "KeyCRM {} {} was shop order {} in the connection's previous KeyCRM account",
                    job.target.as_str(),
                    job.keycrm_id,
                    e.shop_order_id
                )));
            }
            return Ok(Resolved::Entry(Box::new(e)));
        }
        let not_ours = |why: String| Ok(Resolved::NotOurs(why));
        if job.target == Target::Card {
            return not_ours("no shop order is linked to this pipeline card".into());
        }
        let Some(uuid) = job.source_uuid.as_deref() else {
            return not_ours("not linked, and the order has no source_uuid".into());
        };
        let named = SourceRef::parse(&conn.shop_id, uuid);
        if let SourceRef::Legacy(_) = named {
            // A bare id says nothing about the shop: only trust our own source.
            let Some(source) = conn.settings.source_id else {
                return not_ours(
                    "not linked, and the connection has no KeyCRM source to match".into(),
                );
            };
            if job.source_id != Some(source) {
                return not_ours(format!(
                    "not linked, and from KeyCRM source {} instead of {source}",
                    job.source_id
                        .map_or_else(|| "none".to_string(), |s| s.to_string())
                ));
            }
        }
        let order = named.order_id();
        let Some(entry) = self.ledger.get(&conn.id, order).await? else {
            return not_ours(format!(
                "shop order {order} was never pushed by this connection; not adopted"
            ));
        };
        match entry.state {
            LedgerState::Created | LedgerState::Skipped => {
                return not_ours(format!(
                    "shop order {order} is {}; not adopted",
                    match entry.keycrm_id {
                        Some(id) => format!("linked to KeyCRM {} {id}", entry.target.as_str()),
                        None => "not to be pushed".into(),
                    }
                ))
            }
            LedgerState::Pending if entry.claim_is_live(Utc::now()) => {
                // The attempt creating it records it itself; this change applies after.
                return Ok(Resolved::Later(format!(
                    "shop order {order} is being created right now"
                )));
            }
            LedgerState::Pending | LedgerState::Failed => {}
        }
        if matches!(named, SourceRef::Legacy(_)) && entry.scoped_key {
            return not_ours(format!(
                "shop order {order} was only ever sent under its shop-scoped name; not adopted"
            ));
        }
        let Some(keycrm) = &self.keycrm else {
            return not_ours("not linked, and KeyCRM cannot be read to verify it".into());
        };
        match keycrm.order_origin(conn, job.keycrm_id).await {
            Ok(Some(o)) => {
                let same_name = o.source_uuid.as_deref() == Some(uuid);
                let source_ok = matches!(named, SourceRef::Scoped(_))
                    || (o.source_id.is_some() && o.source_id == conn.settings.source_id);
                if !(same_name && source_ok) {
                    return not_ours(format!(
                        "KeyCRM order {} is not shop order {order} of this shop; not adopted",
                        job.keycrm_id
                    ));
                }
            }
            Ok(None) => {
                return not_ours(format!(
                    "KeyCRM has no order {}; not adopted",
                    job.keycrm_id
                ))
            }
            Err(e) if e.is_retryable() => {
                return Ok(Resolved::Later(format!(
                    "reading KeyCRM order {} back: {e}",
                    job.keycrm_id
                )))
            }
            Err(e) => {
                return not_ours(format!(
                    "KeyCRM order {} could not be read back ({}); not adopted",
                    job.keycrm_id,
                    e.kind()
                ))
            }
        }
        match self
            .ledger
            .adopt(&conn.id, order, Target::Order, job.keycrm_id)
            .await
        {
            Ok(e) => {
                tracing::info!(connection = %conn.id, order = %order, keycrm_id = job.keycrm_id,
                    "adopted the KeyCRM order an earlier attempt created");
                if entry.state == LedgerState::Failed {
                    if let Err(err) = self.journal.clear_failure(&conn.id, order).await {
                        tracing::warn!(connection = %conn.id, order = %order, error = %err, "could not clear the old failure");
                    }
                }
                Ok(Resolved::Entry(Box::new(e)))
            }
            Err(StoreError::Conflict(why)) => not_ours(why),
            Err(StoreError::NotFound(_)) => not_ours(format!("shop order {order} vanished")),
            Err(e) => Err(e),
        }
    }
}
