//! The order ledger: one entry per (connection, shop order), taken with a conditional write
//! before any KeyCRM call. It is what makes "exactly one KeyCRM order per shop order" hold
//! under SQS redelivery, duplicate publishing and crashes, and it links KeyCRM ids back to
//! shop orders for status webhooks.
//!
//! Adapters: `DynamoTable` (item `CONN#{connection}` / `ORDER#{shop order id}`, with
//! `gsi1pk = KC#{connection}#{target}#{keycrm id}` once the KeyCRM id is known) and
//! [`MemoryLedger`]. See `DATA_MODEL.md`.

use crate::StoreError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mapping::order_map::MappingReport;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

mod dynamo;
mod memory;

pub use dynamo::{stored_size, StoredSize};
pub use memory::MemoryLedger;

/// What the order became in KeyCRM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    Order,
    Card,
}

impl Target {
    pub fn as_str(self) -> &'static str {
        match self {
            Target::Order => "order",
            Target::Card => "card",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LedgerState {
    /// Someone holds (or held) a claim to create it; see `claim_until`.
    Pending,
    /// Exists in KeyCRM as `keycrm_id`.
    Created,
    /// Permanently refused (validation, mapping); waits for a re-push.
    Failed,
    /// Not pushed on purpose (sync type none, inactive connection).
    Skipped,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LedgerEntry {
    pub connection_id: String,
    pub shop_order_id: String,
    pub state: LedgerState,
    pub target: Target,
    pub keycrm_id: Option<i64>,
    /// Holder of the current claim (a random id per attempt).
    pub claim_holder: Option<String>,
    pub claim_until: Option<DateTime<Utc>>,
    pub attempts: u32,
    /// Set before a create request is sent and cleared when its outcome is known: if set when
    /// a later attempt claims the entry, KeyCRM may already hold the order and must be
    /// searched (by `source_uuid`, or for cards by the recovery rule) before creating again.
    pub maybe_committed: bool,
    /// When the last create attempt was sent (card recovery searches from here).
    pub attempt_started_at: Option<DateTime<Utc>>,
    /// Every create attempt for this entry named the order with its shop-scoped key
    /// (`mapping::source_key`). False for entries an older version attempted with the bare
    /// shop order id: recovery then also looks for that legacy form.
    #[serde(default)]
    pub scoped_key: bool,
    pub last_error: Option<String>,
    #[serde(default)]
    pub field_errors: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub report: MappingReport,
    /// The `order.created` event as received, so a re-push (of a failed or skipped order) can
    /// send it again. Dropped once the order is in KeyCRM (`record_created`, `mark_created`,
    /// `adopt`): nothing sends it again then, and without it an entry fits one write unit.
    pub event_json: Option<String>,
    /// The number the buyer sees (`order.number` of the event), kept after the event is
    /// dropped: a card's title names it, and the key check compares titles (admin-api).
    #[serde(default)]
    pub order_number: Option<String>,
    /// Last shop status known to be in KeyCRM (pushed by us or applied from KeyCRM).
    pub shop_status: Option<String>,
    /// `occurred_at` of the newest shop status event pushed to KeyCRM (older ones are stale).
    #[serde(default)]
    pub shop_status_at: Option<DateTime<Utc>>,
    pub keycrm_status_id: Option<i64>,
    /// `status_changed_at` of the newest KeyCRM status applied to the shop from a webhook.
    pub keycrm_status_changed_at: Option<DateTime<Utc>>,
    /// The shop status the connector itself last applied from KeyCRM (echo guard).
    pub applied_from_keycrm: Option<String>,
    /// Holder of the reservation to push a shop status to KeyCRM right now (one at a time per
    /// order, so pushes land in order), and until when it holds.
    #[serde(default)]
    pub push_holder: Option<String>,
    #[serde(default)]
    pub push_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The result of trying to take an order for creation.
#[derive(Clone, Debug, PartialEq)]
pub enum Claim {
    /// Ours to create now (new, or an earlier attempt's claim expired or was released).
    Granted(LedgerEntry),
    /// Already in KeyCRM: nothing to do.
    AlreadyCreated(LedgerEntry),
    /// Another attempt holds a live claim: try again later.
    Busy(LedgerEntry),
    /// Failed earlier or skipped: only an explicit re-push sends it again.
    Settled(LedgerEntry),
}

impl LedgerEntry {
    /// A fresh entry, claimed by `holder` until `now + lease`, as `claim` returns it
    /// (`maybe_committed` false: no earlier attempt exists). Adapters store it already marked
    /// as attempted, see [`OrderLedger::claim`].
    pub fn claimed(
        connection_id: &str,
        shop_order_id: &str,
        target: Target,
        holder: &str,
        lease: Duration,
        event_json: &str,
        now: DateTime<Utc>,
    ) -> Self {
        LedgerEntry {
            connection_id: connection_id.to_string(),
            shop_order_id: shop_order_id.to_string(),
            state: LedgerState::Pending,
            target,
            keycrm_id: None,
            claim_holder: Some(holder.to_string()),
            claim_until: Some(lease_end(now, lease)),
            attempts: 1,
            maybe_committed: false,
            attempt_started_at: None,
            scoped_key: true,
            last_error: None,
            field_errors: BTreeMap::new(),
            report: MappingReport::default(),
            event_json: Some(event_json.to_string()),
            order_number: order_number_in(event_json),
            shop_status: None,
            shop_status_at: None,
            keycrm_status_id: None,
            keycrm_status_changed_at: None,
            applied_from_keycrm: None,
            push_holder: None,
            push_until: None,
            created_at: now,
            updated_at: now,
        }
    }

    /// How a new claim is stored: already marked as attempted at `now`, so the first attempt
    /// needs no `mark_attempt` write (the `Granted` answer still says nothing earlier exists).
    pub(crate) fn stored_as_attempted(&self, now: DateTime<Utc>) -> LedgerEntry {
        let mut stored = self.clone();
        stored.maybe_committed = true;
        stored.attempt_started_at = Some(now);
        stored
    }

    /// The shop order's number: the one kept with the entry, or for entries written before it
    /// was kept, the one in the stored event.
    pub fn shop_order_number(&self) -> Option<String> {
        self.order_number
            .clone()
            .or_else(|| self.event_json.as_deref().and_then(order_number_in))
    }

    /// Whether someone holds an unexpired claim at `now`.
    pub fn claim_is_live(&self, now: DateTime<Utc>) -> bool {
        self.claim_holder.is_some() && self.claim_until.is_some_and(|u| u > now)
    }

    /// When the order went (or was sent) to KeyCRM: its last create attempt, or when the
    /// ledger first recorded it.
    pub fn pushed_at(&self) -> DateTime<Utc> {
        self.attempt_started_at.unwrap_or(self.created_at)
    }

    /// Whether the order's KeyCRM entity belongs to the KeyCRM account the connection uses
    /// now. `switched_at` is the connection's last account switch (`None`: never switched);
    /// what was pushed before it lives in the previous account, and its KeyCRM id names
    /// something unrelated in the new one.
    pub fn in_current_account(&self, switched_at: Option<DateTime<Utc>>) -> bool {
        switched_at.is_none_or(|t| self.pushed_at() >= t)
    }
}

/// `order.number` of an `order.created` event, without validating the rest of it (order-push
/// did that before claiming); `None` for anything else, or for a number longer than the
/// contract's 64 characters.
pub fn order_number_in(event_json: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Event {
        order: Option<Order>,
    }
    #[derive(Deserialize)]
    struct Order {
        number: Option<String>,
    }
    let number = serde_json::from_str::<Event>(event_json)
        .ok()?
        .order?
        .number?;
    (!number.is_empty() && number.chars().count() <= 64).then_some(number)
}

/// `now + lease`, saturating instead of overflowing on absurd leases.
pub fn lease_end(now: DateTime<Utc>, lease: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(lease)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// How far ahead of the clock a status-change time may be and still count. KeyCRM's clock and
/// ours may differ by a little; a time further ahead is not a real change time (a bogus or
/// hostile `status_changed_at` in 9999) and must never make every later change look stale.
/// Such a time already stored is disregarded by the ordering rules.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(300);

/// `now + MAX_CLOCK_SKEW`: change times after this are not honoured.
pub fn future_horizon(now: DateTime<Utc>) -> DateTime<Utc> {
    lease_end(now, MAX_CLOCK_SKEW)
}

/// The answer to [`OrderLedger::reserve_shop_push`].
#[derive(Clone, Debug, PartialEq)]
pub enum PushReservation {
    /// Reserved: push now, then `finish_shop_push` (or `release_shop_push` on failure).
    Granted,
    /// A shop status as new or newer was pushed already, or KeyCRM's own newer change was
    /// applied to the shop, or the order is not in KeyCRM: do not push.
    Stale(LedgerEntry),
    /// Another push of this order is in flight: try again shortly.
    Busy(LedgerEntry),
}

/// What both adapters answer when a claim was lost (the lease ran out and someone else holds
/// the order now): the caller must not act as the holder any more.
fn lost_claim(shop_order_id: &str) -> StoreError {
    StoreError::Conflict(format!(
        "the claim on order {shop_order_id} is no longer held"
    ))
}

/// Likewise for the reservation of a shop → KeyCRM status push.
fn lost_push(shop_order_id: &str) -> StoreError {
    StoreError::Conflict(format!(
        "the status push reservation on order {shop_order_id} is no longer held"
    ))
}

/// Why an entry cannot be adopted.
pub fn not_adoptable(e: &LedgerEntry) -> StoreError {
    let why = match (e.state, e.keycrm_id) {
        (_, Some(id)) => format!("it is linked to KeyCRM {} {id}", e.target.as_str()),
        (LedgerState::Skipped, _) => "it was skipped on purpose".into(),
        (LedgerState::Pending, _) => "another attempt is creating it right now".into(),
        _ => "it is not waiting to be created".into(),
    };
    StoreError::Conflict(format!(
        "order {} cannot be adopted: {why}",
        e.shop_order_id
    ))
}

/// What became of an order in KeyCRM, for [`OrderLedger::record_created`].
#[derive(Clone, Debug, PartialEq)]
pub struct Created {
    pub target: Target,
    pub keycrm_id: i64,
    pub report: MappingReport,
    pub shop_status: Option<String>,
    pub keycrm_status_id: Option<i64>,
}

/// Semantics every adapter follows (the order-push design in `docs/order-push.md`):
///
/// - `claim` creates the entry (`Granted`), or re-takes a `Pending` entry whose claim expired
///   or was released (`Granted`, `attempts + 1`, the stored event and `maybe_committed` kept).
///   A *new* entry is stored already marked as attempted (`maybe_committed`,
///   `attempt_started_at = now`), so the first attempt needs no separate `mark_attempt`
///   write; the `Granted` entry still says `maybe_committed: false` (nothing earlier exists).
///   `release` then records what the attempt really did. Re-taken claims call
///   `mark_attempt` before sending.
///   `Created` answers `AlreadyCreated`, `Failed`/`Skipped` answer `Settled`, a live claim of
///   someone else answers `Busy`.
/// - `mark_*` and `release` act only for the current holder (`Conflict` otherwise: the claim
///   was lost, e.g. the lease ran out). `mark_attempt` also needs the lease to be unexpired, so
///   a create request is only ever sent under a live claim.
/// - `mark_created` clears `maybe_committed`, the claim, the last error and the field errors,
///   and drops the stored event (`order_number` stays); `adopt` likewise;
///   `mark_failed` keeps `maybe_committed` (a re-push then searches before creating).
/// - `reset_for_repush` turns `Failed`/`Skipped` (or a `Pending` entry without a live claim)
///   back into a claimable `Pending`; `Conflict` for `Created` or a live claim.
/// - `skipped` lists `Skipped` entries (oldest first by `created_at`); an entry leaves that
///   list when it is reset for a re-push, so repeating the listing after resetting what it
///   returned pages through all of them, each exactly once.
/// - `find_by_keycrm_id` returns the most recently pushed entry when several carry the id
///   (orders of two KeyCRM accounts after an account switch).
#[async_trait]
pub trait OrderLedger: Send + Sync {
    /// Claims `(connection, shop order)` for creation with a conditional write.
    async fn claim(
        &self,
        connection_id: &str,
        shop_order_id: &str,
        target: Target,
        holder: &str,
        lease: Duration,
        event_json: &str,
    ) -> Result<Claim, StoreError>;

    /// Records, before sending the create request, that KeyCRM may be about to hold it.
    async fn mark_attempt(
        &self,
        connection_id: &str,
        shop_order_id: &str,
        holder: &str,
    ) -> Result<(), StoreError>;

    #[allow(clippy::too_many_arguments)]
    async fn mark_created(
        &self,
        connection_id: &str,
        shop_order_id: &str,
        holder: &str,
        keycrm_id: i64,
        report: &MappingReport,
        shop_status: Option<&str>,
        keycrm_status_id: Option<i64>,
    ) -> Result<(), StoreError>;

    /// `mark_created` for a caller that knows the target: adapters can then write the
    /// KeyCRM-id index in the same single conditional write.
    async fn record_created(
        &self,
        connection_id: &str,
        shop_order_id: &str,
        holder: &str,
        created: &Created,
    ) -> Result<(), StoreError> {
        self.mark_created(
            connection_id,
            shop_order_id,
            holder,
            created.keycrm_id,
            &created.report,
            created.shop_status.as_deref(),
            created.keycrm_status_id,
        )
        .await
    }

    async fn mark_failed(
        &self,
        connection_id: &str,
        shop_order_id: &str,
        holder: &str,
        error: &str,
        field_errors: &BTreeMap<String, Vec<String>>,
    ) -> Result<(), StoreError>;

    async fn mark_skipped(
        &self,
        connection_id: &str,
        shop_order_id: &str,
        holder: &str,
        reason: &str,
    ) -> Result<(), StoreError>;

    /// Gives the claim up after a transient failure so a retry can take it.
    /// `maybe_committed` says whether the failed attempt may have reached KeyCRM.
    async fn release(
        &self,
        connection_id: &str,
        shop_order_id: &str,
        holder: &str,
        error: &str,
        maybe_committed: bool,
    ) -> Result<(), StoreError>;

    async fn get(
        &self,
        connection_id: &str,
        shop_order_id: &str,
    ) -> Result<Option<LedgerEntry>, StoreError>;

    /// The entry of the shop order that became KeyCRM order/card `keycrm_id`.
    async fn find_by_keycrm_id(
        &self,
        connection_id: &str,
        target: Target,
        keycrm_id: i64,
    ) -> Result<Option<LedgerEntry>, StoreError>;

    /// Links a shop order the connector was creating to the KeyCRM entity an earlier attempt
    /// turned out to have created (seen in a status webhook and verified by reading it back).
    /// Only an order the ledger knows as `Pending` without a live claim, or `Failed`, with no
    /// KeyCRM id yet, is adopted: a webhook can never create an entry (the real
    /// `order.created` would then never be pushed), take over an order another attempt is
    /// creating right now, or re-point a linked order. Adopting the same id again returns the
    /// entry. `NotFound` when the ledger does not know the order, `Conflict` otherwise.
    async fn adopt(
        &self,
        connection_id: &str,
        shop_order_id: &str,
        target: Target,
        keycrm_id: i64,
    ) -> Result<LedgerEntry, StoreError>;

    /// Applies a KeyCRM status change seen in a webhook if it is newer than the last one
    /// applied (`status_changed_at`); returns `false` for duplicates and stale events. A
    /// stored time beyond [`future_horizon`] does not count as newer (callers clamp what they
    /// record, see status-apply).
    async fn record_keycrm_status(
        &self,
        connection_id: &str,
        shop_order_id: &str,
        keycrm_status_id: i64,
        changed_at: DateTime<Utc>,
        shop_status: &str,
    ) -> Result<bool, StoreError>;

    /// Records a status the connector pushed to KeyCRM from a shop event that happened at
    /// `occurred_at`. Clears the echo guard (`applied_from_keycrm`): the shop has moved on
    /// from the status the connector applied, so that status coming back later is a real
    /// change. `NotFound` if there is no such order.
    async fn record_shop_status(
        &self,
        connection_id: &str,
        shop_order_id: &str,
        shop_status: &str,
        keycrm_status_id: Option<i64>,
        occurred_at: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Reserves pushing the shop status of `occurred_at` to KeyCRM, in one conditional write,
    /// *before* KeyCRM is written: granted only if the order is created, no shop status at or
    /// after `occurred_at` was pushed, no newer KeyCRM change was applied (times beyond
    /// [`future_horizon`] disregarded), and no other push of the order holds a live
    /// reservation. Two concurrent pushes therefore never cross: the newer one waits for the
    /// older one to finish, and the older one, arriving second, is stale.
    async fn reserve_shop_push(
        &self,
        connection_id: &str,
        shop_order_id: &str,
        occurred_at: DateTime<Utc>,
        holder: &str,
        lease: Duration,
    ) -> Result<PushReservation, StoreError>;

    /// Records the status `holder` pushed (as [`Self::record_shop_status`]) and ends its
    /// reservation; `Conflict` if the reservation was lost.
    async fn finish_shop_push(
        &self,
        connection_id: &str,
        shop_order_id: &str,
        holder: &str,
        shop_status: &str,
        keycrm_status_id: Option<i64>,
        occurred_at: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Ends `holder`'s reservation without recording anything (the push failed).
    async fn release_shop_push(
        &self,
        connection_id: &str,
        shop_order_id: &str,
        holder: &str,
    ) -> Result<(), StoreError>;

    /// Makes a failed (or skipped) entry claimable again for a merchant's re-push and
    /// returns it (with the stored event). `NotFound` if there is no such order.
    async fn reset_for_repush(
        &self,
        connection_id: &str,
        shop_order_id: &str,
    ) -> Result<LedgerEntry, StoreError>;

    /// Takes a `Skipped` entry out of the skipped orders for a push: `Skipped` -> claimable
    /// `Pending`, conditionally, so that of two requests only one gets it. `Conflict` for
    /// any other state, `NotFound` if there is no such order.
    async fn unskip(
        &self,
        connection_id: &str,
        shop_order_id: &str,
    ) -> Result<LedgerEntry, StoreError>;

    /// Up to `limit` orders skipped on purpose (inactive connection, order sync off) that
    /// the connector first recorded at or after `since`, oldest first.
    async fn skipped(
        &self,
        connection_id: &str,
        since: Option<DateTime<Utc>>,
        limit: usize,
    ) -> Result<Vec<LedgerEntry>, StoreError>;

    /// Up to `limit` orders that are in KeyCRM (`Created`), any order: samples for telling
    /// whether a new API key opens the same KeyCRM account.
    async fn sample_created(
        &self,
        connection_id: &str,
        limit: usize,
    ) -> Result<Vec<LedgerEntry>, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_order_number_is_read_from_an_order_created_event_only() {
        let event = r#"{"type":"order.created","order":{"id":"7","number":"A-77","items":[]}}"#;
        assert_eq!(order_number_in(event).as_deref(), Some("A-77"));
        for other in [
            "",
            "{}",
            "not json",
            r#"{"order":{"number":77}}"#,
            r#"{"order":{"number":""}}"#,
            r#"{"order":null}"#,
        ] {
            assert_eq!(order_number_in(other), None, "{other}");
        }
        let long = format!(r#"{{"order":{{"number":"{}"}}}}"#, "9".repeat(65));
        assert_eq!(
            order_number_in(&long),
            None,
            "longer than the contract allows"
        );
    }

    #[test]
    fn entries_written_before_the_number_was_kept_read_it_from_their_event() {
        let now = Utc::now();
        let event = r#"{"type":"order.created","order":{"number":"B-2"}}"#;
        let mut e = LedgerEntry::claimed(
            "c",
            "o",
            Target::Card,
            "h",
            Duration::from_secs(60),
            event,
            now,
        );
        assert_eq!(e.order_number.as_deref(), Some("B-2"));
        e.order_number = None;
        assert_eq!(e.shop_order_number().as_deref(), Some("B-2"));
        e.event_json = None;
        assert_eq!(e.shop_order_number(), None);
    }
}
