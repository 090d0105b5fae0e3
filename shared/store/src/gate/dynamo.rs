//! The rate gate shared by every Lambda: GCRA state per API key in one DynamoDB item (the
//! slot schedules and the burst allowances of `keycrm::gate::decide`), advanced
//! with optimistic concurrency, so concurrent functions spending one key's budget together
//! stay within KeyCRM's 60 requests a minute.
//!
//! A read and a conditional write per KeyCRM request made the gate one of the fleet's largest
//! DynamoDB costs. Inside a background burst (requests sent at once anyway) the gate
//! therefore books up to [`BOOK_AHEAD`] more slots in the same write and hands them to this
//! instance's next background callers on the key without a round trip, each only until its
//! send-by instant (`keycrm::gate::book_background_ahead`) and for at most [`STASH_TTL`]: a
//! slot not handed out by then is dropped, which leaves the key under-used, never over-used.

use crate::dynamo::{self, DynamoTable, EXPIRES_AT};
use crate::StoreError;
use async_trait::async_trait;
use keycrm::gate::{
    book_background_ahead, decide, now_us, penalized, sanitized, sleep_until_us, too_late,
    waited_since, Decision, GateState, Slot,
};
use keycrm::{GateError, Priority, RateBudget, RateGate};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

/// Background burst slots booked with each one a background caller takes: a sync's requests
/// then cost one gate write per five instead of one each, and at most four slots are wasted
/// when the caller stops.
pub const BOOK_AHEAD: usize = 4;

/// How long slots booked ahead stay with the instance. Short, because another instance's 429
/// pauses the key for everyone from its next read, and a slot handed out from here skips it.
pub const STASH_TTL: Duration = Duration::from_secs(1);

pub struct DynamoRateGate {
    table: DynamoTable,
    budget: RateBudget,
    book_ahead: usize,
    /// Per key: the send-by instants of the slots booked ahead, and when they were booked.
    stash: Mutex<HashMap<String, (i64, VecDeque<i64>)>>,
}

impl DynamoRateGate {
    pub fn new(table: DynamoTable, budget: RateBudget) -> Self {
        DynamoRateGate {
            table,
            budget,
            book_ahead: BOOK_AHEAD,
            stash: Mutex::new(HashMap::new()),
        }
    }

    /// The same gate booking `n` background burst slots ahead per write (0: one per write).
    pub fn with_book_ahead(mut self, n: usize) -> Self {
        self.book_ahead = n;
        self
    }

    /// A slot booked ahead on `key` that may still be sent at `now`, if this instance has one.
    fn take_stashed(&self, key: &str, now: i64) -> bool {
        let ttl = i64::try_from(STASH_TTL.as_micros()).unwrap_or(i64::MAX);
        let Ok(mut stash) = self.stash.lock() else {
            return false;
        };
        let Some((booked, send_by)) = stash.get_mut(key) else {
            return false;
        };
        let fresh = now.saturating_sub(*booked) <= ttl;
        let mut taken = false;
        while let Some(by) = send_by.pop_front() {
            if fresh && by >= now {
                taken = true;
                break;
            }
        }
        if send_by.is_empty() {
            stash.remove(key);
        }
        taken
    }

    /// Keeps slots booked ahead on `key` for this instance's next background callers.
    fn put_stashed(&self, key: &str, now: i64, send_by: Vec<i64>) {
        let ttl = i64::try_from(STASH_TTL.as_micros()).unwrap_or(i64::MAX);
        if let Ok(mut stash) = self.stash.lock() {
            // Keys nobody came back for would otherwise stay for the life of the instance.
            stash.retain(|_, (booked, _)| now.saturating_sub(*booked) <= ttl);
            let entry = stash
                .entry(key.to_string())
                .or_insert_with(|| (now, VecDeque::new()));
            entry.0 = now;
            entry.1.extend(send_by);
        }
    }

    fn drop_stashed(&self, key: &str) {
        if let Ok(mut stash) = self.stash.lock() {
            stash.remove(key);
        }
    }

    fn pk(key: &str) -> String {
        format!("GATE#{key}")
    }

    async fn load(&self, key: &str) -> Result<(GateState, Option<u64>), StoreError> {
        let out = self
            .table
            .client
            .get_item()
            .table_name(&self.table.name)
            .set_key(Some(dynamo::key(Self::pk(key), "GATE")))
            .consistent_read(true)
            .send()
            .await
            .map_err(dynamo::sdk)?;
        Ok(match out.item {
            None => (GateState::default(), None),
            Some(i) => (
                GateState {
                    tat_us: dynamo::get_n(&i, "tat_us").unwrap_or_default(),
                    bg_tat_us: dynamo::get_n(&i, "bg_tat_us").unwrap_or_default(),
                    // Items written before the burst existed have none: no burst granted.
                    burst_until_us: dynamo::get_n(&i, "burst_until_us").unwrap_or_default(),
                    // Nor before the background burst: no background burst granted.
                    bg_burst_until_us: dynamo::get_n(&i, "bg_burst_until_us").unwrap_or_default(),
                },
                dynamo::get_n(&i, "ver"),
            ),
        })
    }

    /// Writes `next` only if nobody else wrote since `ver` was read.
    async fn store(
        &self,
        key: &str,
        next: GateState,
        ver: Option<u64>,
    ) -> Result<bool, StoreError> {
        let mut item = dynamo::key(Self::pk(key), "GATE");
        item.insert("tat_us".into(), dynamo::n(next.tat_us));
        item.insert("bg_tat_us".into(), dynamo::n(next.bg_tat_us));
        item.insert("burst_until_us".into(), dynamo::n(next.burst_until_us));
        item.insert(
            "bg_burst_until_us".into(),
            dynamo::n(next.bg_burst_until_us),
        );
        item.insert("ver".into(), dynamo::n(ver.map_or(1, |v| v + 1)));
        // Idle keys disappear by themselves.
        item.insert(
            EXPIRES_AT.into(),
            dynamo::n(next.tat_us / 1_000_000 + 86_400),
        );
        let mut put = self
            .table
            .client
            .put_item()
            .table_name(&self.table.name)
            .set_item(Some(item));
        put = match ver {
            None => put.condition_expression("attribute_not_exists(pk)"),
            Some(v) => put
                .condition_expression("ver = :v")
                .expression_attribute_values(":v", dynamo::n(v)),
        };
        match put.send().await.map_err(dynamo::sdk) {
            Ok(_) => Ok(true),
            Err(e) if dynamo::is_condition_failure(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

fn gate_err(e: StoreError) -> GateError {
    GateError(e.to_string())
}

#[async_trait]
impl RateGate for DynamoRateGate {
    async fn acquire_until(
        &self,
        key: &str,
        priority: Priority,
        latest_us: Option<i64>,
    ) -> Result<Slot, GateError> {
        let started = now_us();
        if priority == Priority::Background
            && too_late(started, latest_us, started).is_none()
            && self.take_stashed(key, started)
        {
            return Ok(Slot::Granted(waited_since(started)));
        }
        let mut conflicts = 0u32;
        loop {
            let (state, ver) = self.load(key).await.map_err(gate_err)?;
            let now = now_us();
            match decide(sanitized(state, now), now, priority, &self.budget) {
                Decision::Reserve { at_us, next } => {
                    // A slot the caller could not use is not booked: it stays free.
                    if let Some(wait) = too_late(at_us, latest_us, now) {
                        return Ok(Slot::TooLate(wait));
                    }
                    // Sent at once inside a background burst: book the next few with it.
                    let (next, ahead) = if priority == Priority::Background && at_us == now {
                        book_background_ahead(next, now, self.book_ahead, &self.budget)
                    } else {
                        (next, Vec::new())
                    };
                    if self.store(key, next, ver).await.map_err(gate_err)? {
                        if !ahead.is_empty() {
                            self.put_stashed(key, now, ahead);
                        }
                        sleep_until_us(at_us).await;
                        return Ok(Slot::Granted(waited_since(started)));
                    }
                    // Lost the race for this slot: a short random pause, then re-read.
                    conflicts += 1;
                    let pause = rand::random::<u64>() % (2_000 * u64::from(conflicts.min(10)));
                    tokio::time::sleep(Duration::from_micros(pause)).await;
                }
                Decision::Wait { until_us } => {
                    if let Some(wait) = too_late(until_us, latest_us, now) {
                        return Ok(Slot::TooLate(wait));
                    }
                    sleep_until_us(until_us).await
                }
            }
        }
    }

    async fn penalize(&self, key: &str, retry_after: Duration) -> Result<(), GateError> {
        // Nothing booked ahead goes into the pause from here.
        self.drop_stashed(key);
        for _ in 0..10 {
            let (state, ver) = self.load(key).await.map_err(gate_err)?;
            let now = now_us();
            let next = penalized(sanitized(state, now), now, retry_after);
            if next == state || self.store(key, next, ver).await.map_err(gate_err)? {
                return Ok(());
            }
        }
        Err(GateError(
            "could not record the pause: too much contention".into(),
        ))
    }
}
