//! The in-memory order ledger (unit tests, the local run). Same rules as the DynamoDB adapter:
//! every method is one atomic step under a lock, like one conditional write there.

use crate::ledger::{
    future_horizon, lease_end, lost_claim, lost_push, not_adoptable, order_number_in, Claim,
    LedgerEntry, LedgerState, OrderLedger, PushReservation, Target,
};
use crate::StoreError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mapping::order_map::MappingReport;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

type Key = (String, String);

#[derive(Default)]
pub struct MemoryLedger {
    entries: Mutex<HashMap<Key, LedgerEntry>>,
}

fn key(connection_id: &str, shop_order_id: &str) -> Key {
    (connection_id.to_string(), shop_order_id.to_string())
}

fn missing(shop_order_id: &str) -> StoreError {
    StoreError::NotFound(format!("order {shop_order_id}"))
}

impl MemoryLedger {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<MutexGuard<'_, HashMap<Key, LedgerEntry>>, StoreError> {
        self.entries
            .lock()
            .map_err(|_| StoreError::Unavailable("ledger state poisoned".into()))
    }

    /// Every entry, for tests and the local run's summary.
    pub fn entries(&self) -> Vec<LedgerEntry> {
        self.entries
            .lock()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Stores an entry as it is (tests and tools: e.g. one an older version left behind).
    pub fn put(&self, entry: LedgerEntry) {
        if let Ok(mut m) = self.entries.lock() {
            m.insert(key(&entry.connection_id, &entry.shop_order_id), entry);
        }
    }

    /// Runs `f` on the entry if `holder` holds its claim.
    fn as_holder(
        &self,
        connection_id: &str,
        shop_order_id: &str,
        holder: &str,
        f: impl FnOnce(&mut LedgerEntry),
    ) -> Result<(), StoreError> {
        let mut m = self.lock()?;
        let e = m
            .get_mut(&key(connection_id, shop_order_id))
            .filter(|e| e.claim_holder.as_deref() == Some(holder))
            .ok_or_else(|| lost_claim(shop_order_id))?;
        f(e);
        e.updated_at = Utc::now();
        Ok(())
    }
}

#[async_trait]
impl OrderLedger for MemoryLedger {
    async fn claim(
        &self,
        connection_id: &str,
        shop_order_id: &str,
        target: Target,
        holder: &str,
        lease: Duration,
        event_json: &str,
    ) -> Result<Claim, StoreError> {
        let now = Utc::now();
        let mut m = self.lock()?;
        let k = key(connection_id, shop_order_id);
        let Some(e) = m.get_mut(&k) else {
            let granted = LedgerEntry::claimed(
                connection_id,
                shop_order_id,
                target,
                holder,
                lease,
                event_json,
                now,
            );
            let stored = granted.stored_as_attempted(now);
            m.insert(k, stored);
            return Ok(Claim::Granted(granted));
        };
        Ok(match e.state {
            LedgerState::Created => Claim::AlreadyCreated(e.clone()),
            LedgerState::Failed | LedgerState::Skipped => Claim::Settled(e.clone()),
            LedgerState::Pending if e.claim_is_live(now) => Claim::Busy(e.clone()),
            LedgerState::Pending => {
                e.claim_holder = Some(holder.to_string());
                e.claim_until = Some(lease_end(now, lease));
                e.attempts += 1;
                e.target = target;
                if e.event_json.is_none() {
                    e.event_json = Some(event_json.to_string());
                }
                if e.order_number.is_none() {
                    e.order_number = order_number_in(event_json);
                }
                e.updated_at = now;
                Claim::Granted(e.clone())
            }
        })
    }

    async fn mark_attempt(
        &self,
        connection_id: &str,
        shop_order_id: &str,
        holder: &str,
    ) -> Result<(), StoreError> {
        let now = Utc::now();
        let mut m = self.lock()?;
        let e = m
            .get_mut(&key(connection_id, shop_order_id))
            .filter(|e| e.claim_holder.as_deref() == Some(holder) && e.claim_is_live(now))
            .ok_or_else(|| lost_claim(shop_order_id))?;
        e.maybe_committed = true;
        e.scoped_key = true;
        e.attempt_started_at = Some(now);
        e.updated_at = now;
        Ok(())
    }

    async fn mark_created(
        &self,
        connection_id: &str,
        shop_order_id: &str,
        holder: &str,
        keycrm_id: i64,
        report: &MappingReport,
        shop_status: Option<&str>,
        keycrm_status_id: Option<i64>,
    ) -> Result<(), StoreError> {
        self.as_holder(connection_id, shop_order_id, holder, |e| {
            e.state = LedgerState::Created;
            e.keycrm_id = Some(keycrm_id);
            e.claim_holder = None;
            e.claim_until = None;
            e.maybe_committed = false;
            e.last_error = None;
            e.field_errors.clear();
            e.event_json = None;
            e.report = report.clone();
            if let Some(s) = shop_status {
                e.shop_status = Some(s.to_string());
            }
            if keycrm_status_id.is_some() {
                e.keycrm_status_id = keycrm_status_id;
            }
        })
    }

    async fn mark_failed(
        &self,
        connection_id: &str,
        shop_order_id: &str,
        holder: &str,
        error: &str,
        field_errors: &BTreeMap<String, Vec<String>>,
    ) -> Result<(), StoreError> {
        self.as_holder(connection_id, shop_order_id, holder, |e| {
            e.state = LedgerState::Failed;
            e.claim_holder = None;
            e.claim_until = None;
            e.last_error = Some(error.to_string());
            e.field_errors = field_errors.clone();
        })
    }

    async fn mark_skipped(
        &self,
        connection_id: &str,
        shop_order_id: &str,
        holder: &str,
        reason: &str,
    ) -> Result<(), StoreError> {
        self.as_holder(connection_id, shop_order_id, holder, |e| {
            e.state = LedgerState::Skipped;
            e.claim_holder = None;
            e.claim_until = None;
            e.last_error = Some(reason.to_string());
        })
    }

    async fn release(
        &self,
        connection_id: &str,
        shop_order_id: &str,
        holder: &str,
        error: &str,
        maybe_committed: bool,
    ) -> Result<(), StoreError> {
        self.as_holder(connection_id, shop_order_id, holder, |e| {
            e.claim_holder = None;
            e.claim_until = None;
            e.last_error = Some(error.to_string());
            e.maybe_committed = maybe_committed;
        })
    }

    async fn get(
        &self,
        connection_id: &str,
        shop_order_id: &str,
    ) -> Result<Option<LedgerEntry>, StoreError> {
        Ok(self
            .lock()?
            .get(&key(connection_id, shop_order_id))
            .cloned())
    }

    async fn find_by_keycrm_id(
        &self,
        connection_id: &str,
        target: Target,
        keycrm_id: i64,
    ) -> Result<Option<LedgerEntry>, StoreError> {
        Ok(self
            .lock()?
            .values()
            .filter(|e| {
                e.connection_id == connection_id
                    && e.target == target
                    && e.keycrm_id == Some(keycrm_id)
            })
            .max_by_key(|e| e.pushed_at())
            .cloned())
    }

    async fn adopt(
        &self,
        connection_id: &str,
        shop_order_id: &str,
        target: Target,
        keycrm_id: i64,
    ) -> Result<LedgerEntry, StoreError> {
        let now = Utc::now();
        let mut m = self.lock()?;
        let e = m
            .get_mut(&key(connection_id, shop_order_id))
            .ok_or_else(|| missing(shop_order_id))?;
        if e.keycrm_id == Some(keycrm_id) && e.target == target {
            return Ok(e.clone());
        }
        let adoptable = e.keycrm_id.is_none()
            && match e.state {
                LedgerState::Failed => true,
                LedgerState::Pending => !e.claim_is_live(now),
                _ => false,
            };
        if !adoptable {
            return Err(not_adoptable(e));
        }
        e.state = LedgerState::Created;
        e.keycrm_id = Some(keycrm_id);
        e.target = target;
        e.claim_holder = None;
        e.claim_until = None;
        e.maybe_committed = false;
        e.last_error = None;
        e.field_errors.clear();
        e.event_json = None;
        e.updated_at = now;
        Ok(e.clone())
    }

    async fn record_keycrm_status(
        &self,
        connection_id: &str,
        shop_order_id: &str,
        keycrm_status_id: i64,
        changed_at: DateTime<Utc>,
        shop_status: &str,
    ) -> Result<bool, StoreError> {
        let mut m = self.lock()?;
        let e = m
            .get_mut(&key(connection_id, shop_order_id))
            .ok_or_else(|| missing(shop_order_id))?;
        // A stored time beyond the horizon is no real change time: it never blocks.
        let horizon = future_horizon(Utc::now());
        if e.keycrm_status_changed_at
            .is_some_and(|t| t >= changed_at && t <= horizon)
        {
            return Ok(false);
        }
        e.keycrm_status_id = Some(keycrm_status_id);
        e.keycrm_status_changed_at = Some(changed_at);
        e.applied_from_keycrm = Some(shop_status.to_string());
        e.shop_status = Some(shop_status.to_string());
        e.updated_at = Utc::now();
        Ok(true)
    }

    async fn record_shop_status(
        &self,
        connection_id: &str,
        shop_order_id: &str,
        shop_status: &str,
        keycrm_status_id: Option<i64>,
        occurred_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut m = self.lock()?;
        let e = m
            .get_mut(&key(connection_id, shop_order_id))
            .ok_or_else(|| missing(shop_order_id))?;
        // A newer shop status recorded meanwhile stands.
        if e.shop_status_at.is_some_and(|t| t > occurred_at) {
            return Ok(());
        }
        e.shop_status = Some(shop_status.to_string());
        if keycrm_status_id.is_some() {
            e.keycrm_status_id = keycrm_status_id;
        }
        e.shop_status_at = Some(occurred_at);
        e.applied_from_keycrm = None;
        e.updated_at = Utc::now();
        Ok(())
    }

    async fn reserve_shop_push(
        &self,
        connection_id: &str,
        shop_order_id: &str,
        occurred_at: DateTime<Utc>,
        holder: &str,
        lease: Duration,
    ) -> Result<PushReservation, StoreError> {
        let now = Utc::now();
        let horizon = future_horizon(now);
        let mut m = self.lock()?;
        let e = m
            .get_mut(&key(connection_id, shop_order_id))
            .ok_or_else(|| missing(shop_order_id))?;
        let stale = e.state != LedgerState::Created
            || e.shop_status_at.is_some_and(|t| t >= occurred_at)
            || e.keycrm_status_changed_at
                .is_some_and(|t| t > occurred_at && t <= horizon);
        if stale {
            return Ok(PushReservation::Stale(e.clone()));
        }
        let busy = e.push_holder.as_deref().is_some_and(|h| h != holder)
            && e.push_until.is_some_and(|u| u >= now);
        if busy {
            return Ok(PushReservation::Busy(e.clone()));
        }
        e.push_holder = Some(holder.to_string());
        e.push_until = Some(lease_end(now, lease));
        e.updated_at = now;
        Ok(PushReservation::Granted)
    }

    async fn finish_shop_push(
        &self,
        connection_id: &str,
        shop_order_id: &str,
        holder: &str,
        shop_status: &str,
        keycrm_status_id: Option<i64>,
        occurred_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut m = self.lock()?;
        let e = m
            .get_mut(&key(connection_id, shop_order_id))
            .filter(|e| e.push_holder.as_deref() == Some(holder))
            .ok_or_else(|| lost_push(shop_order_id))?;
        e.shop_status = Some(shop_status.to_string());
        e.shop_status_at = Some(occurred_at);
        if keycrm_status_id.is_some() {
            e.keycrm_status_id = keycrm_status_id;
        }
        e.applied_from_keycrm = None;
        e.push_holder = None;
        e.push_until = None;
        e.updated_at = Utc::now();
        Ok(())
    }

    async fn release_shop_push(
        &self,
        connection_id: &str,
        shop_order_id: &str,
        holder: &str,
    ) -> Result<(), StoreError> {
        let mut m = self.lock()?;
        let e = m
            .get_mut(&key(connection_id, shop_order_id))
            .filter(|e| e.push_holder.as_deref() == Some(holder))
            .ok_or_else(|| lost_push(shop_order_id))?;
        e.push_holder = None;
        e.push_until = None;
        e.updated_at = Utc::now();
        Ok(())
    }

    async fn reset_for_repush(
        &self,
        connection_id: &str,
        shop_order_id: &str,
    ) -> Result<LedgerEntry, StoreError> {
        let now = Utc::now();
        let mut m = self.lock()?;
        let e = m
            .get_mut(&key(connection_id, shop_order_id))
            .ok_or_else(|| missing(shop_order_id))?;
        match e.state {
            LedgerState::Created => {
                return Err(StoreError::Conflict(format!(
                    "order {shop_order_id} is already in KeyCRM"
                )))
            }
            LedgerState::Pending if e.claim_is_live(now) => {
                return Err(StoreError::Conflict(format!(
                    "order {shop_order_id} is being pushed right now"
                )))
            }
            _ => {}
        }
        e.state = LedgerState::Pending;
        e.claim_holder = None;
        e.claim_until = None;
        e.updated_at = now;
        Ok(e.clone())
    }

    async fn unskip(
        &self,
        connection_id: &str,
        shop_order_id: &str,
    ) -> Result<LedgerEntry, StoreError> {
        let mut m = self.lock()?;
        let e = m
            .get_mut(&key(connection_id, shop_order_id))
            .ok_or_else(|| missing(shop_order_id))?;
        if e.state != LedgerState::Skipped {
            return Err(StoreError::Conflict(format!(
                "order {shop_order_id} is not skipped"
            )));
        }
        e.state = LedgerState::Pending;
        e.claim_holder = None;
        e.claim_until = None;
        e.updated_at = Utc::now();
        Ok(e.clone())
    }

    async fn skipped(
        &self,
        connection_id: &str,
        since: Option<DateTime<Utc>>,
        limit: usize,
    ) -> Result<Vec<LedgerEntry>, StoreError> {
        let mut out: Vec<LedgerEntry> = self
            .lock()?
            .values()
            .filter(|e| {
                e.connection_id == connection_id
                    && e.state == LedgerState::Skipped
                    && since.is_none_or(|t| e.created_at >= t)
            })
            .cloned()
            .collect();
        out.sort_by(|a, b| (a.created_at, &a.shop_order_id).cmp(&(b.created_at, &b.shop_order_id)));
        out.truncate(limit);
        Ok(out)
    }

    async fn sample_created(
        &self,
        connection_id: &str,
        limit: usize,
    ) -> Result<Vec<LedgerEntry>, StoreError> {
        let mut out: Vec<LedgerEntry> = self
            .lock()?
            .values()
            .filter(|e| e.connection_id == connection_id && e.state == LedgerState::Created)
            .cloned()
            .collect();
        out.sort_by_key(|e| std::cmp::Reverse(e.pushed_at()));
        out.truncate(limit);
        Ok(out)
    }
}
