//! The shared KeyCRM rate gate on in-process state, counted as its DynamoDB items.

use super::*;

/// The DynamoDB gate's rules (`store::DynamoRateGate`) on in-process state: every look at the
/// key's state is a consistent `GetItem`, every booking a conditional `PutItem`.
pub struct Gate {
    budget: RateBudget,
    state: Mutex<HashMap<String, keycrm::gate::GateState>>,
    pub ctx: Ctx,
}

impl Gate {
    pub fn new(budget: RateBudget, ctx: Ctx) -> Self {
        Gate {
            budget,
            state: Mutex::new(HashMap::new()),
            ctx,
        }
    }
}

#[async_trait]
impl RateGate for Gate {
    async fn acquire_until(
        &self,
        key: &str,
        priority: Priority,
        latest_us: Option<i64>,
    ) -> Result<Slot, GateError> {
        let shop = self.ctx.index.by_fingerprint.get(key).copied();
        let started = now_us();
        // The waits this call is given, as booked (real µs): billed in KeyCRM time. The
        // sleep itself may overrun when the bench's cores are busy; Lambda would not.
        let bill = |real_us: i64| {
            let virt = u64::try_from(real_us).unwrap_or(0) as f64 * self.ctx.scale;
            crate::meter::wait(virt as u64);
        };
        loop {
            let now = now_us();
            self.ctx.meter.dynamo(shop, "gate.read", 1.0, 0.0);
            let decision = {
                let mut m = self
                    .state
                    .lock()
                    .map_err(|_| GateError("gate poisoned".into()))?;
                let state = m.entry(key.to_string()).or_default();
                let d = decide(sanitized(*state, now), now, priority, &self.budget);
                match d {
                    keycrm::gate::Decision::Reserve { at_us, next } => {
                        if let Some(w) = too_late(at_us, latest_us, now) {
                            return Ok(Slot::TooLate(w));
                        }
                        *state = next;
                    }
                    keycrm::gate::Decision::Wait { until_us } => {
                        if let Some(w) = too_late(until_us, latest_us, now) {
                            return Ok(Slot::TooLate(w));
                        }
                    }
                }
                d
            };
            match decision {
                keycrm::gate::Decision::Reserve { at_us, .. } => {
                    self.ctx.meter.dynamo(shop, "gate.book", 0.0, 1.0);
                    bill(at_us - now);
                    // The request the slot is for: KeyCRM's answer time.
                    crate::meter::wait(crate::meter::latency::KEYCRM_US);
                    sleep_until_us(at_us).await;
                    return Ok(Slot::Granted(waited_since(started)));
                }
                keycrm::gate::Decision::Wait { until_us } => {
                    bill(until_us - now);
                    sleep_until_us(until_us).await
                }
            }
        }
    }

    async fn penalize(&self, key: &str, retry_after: Duration) -> Result<(), GateError> {
        let shop = self.ctx.index.by_fingerprint.get(key).copied();
        self.ctx.meter.dynamo(shop, "gate.penalize", 1.0, 1.0);
        let mut m = self
            .state
            .lock()
            .map_err(|_| GateError("gate poisoned".into()))?;
        let s = m.entry(key.to_string()).or_default();
        let now = now_us();
        *s = penalized(sanitized(*s, now), now, retry_after);
        Ok(())
    }
}
