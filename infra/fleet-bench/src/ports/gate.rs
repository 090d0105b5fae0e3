//! The shared KeyCRM rate gate on in-process state, counted as its DynamoDB items.

use super::*;
use std::collections::VecDeque;

/// The DynamoDB gate's rules (`store::DynamoRateGate`) on in-process state: every look at the
/// key's state is a consistent `GetItem`, every booking a conditional `PutItem`; inside a
/// background burst each booking takes `store::gate::BOOK_AHEAD` more slots in the same write, handed
/// to the key's next background callers without a round trip while they are fresh
/// (`store::gate::STASH_TTL`, on the bench's clock). The real gate keeps them per Lambda instance;
/// here they are per key, which is the same thing for a sync run (one invocation makes its
/// requests one after the other) and only differs when two instances spend one key's
/// background share at once.
pub struct Gate {
    budget: RateBudget,
    state: Mutex<HashMap<String, keycrm::gate::GateState>>,
    /// Per key: when slots were booked ahead (real µs) and their send-by instants.
    stash: Mutex<HashMap<String, (i64, VecDeque<i64>)>>,
    pub ctx: Ctx,
}

impl Gate {
    pub fn new(budget: RateBudget, ctx: Ctx) -> Self {
        Gate {
            budget,
            state: Mutex::new(HashMap::new()),
            stash: Mutex::new(HashMap::new()),
            ctx,
        }
    }

    fn stash_ttl_us(&self) -> i64 {
        (store::gate::STASH_TTL.as_micros() as f64 / self.ctx.scale) as i64
    }

    fn take_stashed(&self, key: &str, now: i64) -> bool {
        let ttl = self.stash_ttl_us();
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
        if priority == Priority::Background
            && too_late(started, latest_us, started).is_none()
            && self.take_stashed(key, started)
        {
            // A slot booked ahead in an earlier write: no DynamoDB call, sent at once.
            crate::meter::wait(crate::meter::latency::KEYCRM_US);
            return Ok(Slot::Granted(waited_since(started)));
        }
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
                        let (next, ahead) = if priority == Priority::Background && at_us == now {
                            keycrm::gate::book_background_ahead(
                                next,
                                now,
                                store::gate::BOOK_AHEAD,
                                &self.budget,
                            )
                        } else {
                            (next, Vec::new())
                        };
                        *state = next;
                        if !ahead.is_empty() {
                            if let Ok(mut stash) = self.stash.lock() {
                                let e = stash
                                    .entry(key.to_string())
                                    .or_insert_with(|| (now, VecDeque::new()));
                                e.0 = now;
                                e.1.extend(ahead);
                            }
                        }
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
        if let Ok(mut stash) = self.stash.lock() {
            stash.remove(key);
        }
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
