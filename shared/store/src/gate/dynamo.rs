//! The rate gate shared by every Lambda: GCRA state per API key in one DynamoDB item (the
//! slot schedules and the burst allowances of `keycrm::gate::decide`), advanced
//! with optimistic concurrency, so concurrent functions spending one key's budget together
//! stay within KeyCRM's 60 requests a minute.

use crate::dynamo::{self, DynamoTable, EXPIRES_AT};
use crate::StoreError;
use async_trait::async_trait;
use keycrm::gate::{
    decide, now_us, penalized, sanitized, sleep_until_us, too_late, waited_since, Decision,
    GateState, Slot,
};
use keycrm::{GateError, Priority, RateBudget, RateGate};
use std::time::Duration;

pub struct DynamoRateGate {
    table: DynamoTable,
    budget: RateBudget,
}

impl DynamoRateGate {
    pub fn new(table: DynamoTable, budget: RateBudget) -> Self {
        DynamoRateGate { table, budget }
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
                    if self.store(key, next, ver).await.map_err(gate_err)? {
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
