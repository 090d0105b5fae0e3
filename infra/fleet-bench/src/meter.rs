//! What the fleet's AWS calls would cost, counted as they happen: per shop (for the cost per
//! shop), per operation (to see what dominates) and per function (Lambda).
//!
//! The counting adapters (`ports.rs`, `queues.rs`) charge units here with the DynamoDB rules
//! for item sizes (reads in 4 KB units, half for eventually consistent ones; writes in 1 KB
//! units, GSI copies again), and add the modelled latency of each call to the invocation it
//! was made in (`pool.rs` adds it to the billed duration: in-memory adapters answer at once).

use std::collections::{BTreeMap, HashSet};
use std::ops::{Add, AddAssign, Mul, Sub};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Units of everything that is billed, for one shop or the whole fleet.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Usage {
    pub invocations: f64,
    pub gb_s: f64,
    pub rru: f64,
    pub wru: f64,
    pub sqs: f64,
    pub http: f64,
    pub kms: f64,
    pub sm_calls: f64,
    pub log_bytes: f64,
    pub traces: f64,
}

impl Add for Usage {
    type Output = Usage;
    fn add(self, o: Usage) -> Usage {
        Usage {
            invocations: self.invocations + o.invocations,
            gb_s: self.gb_s + o.gb_s,
            rru: self.rru + o.rru,
            wru: self.wru + o.wru,
            sqs: self.sqs + o.sqs,
            http: self.http + o.http,
            kms: self.kms + o.kms,
            sm_calls: self.sm_calls + o.sm_calls,
            log_bytes: self.log_bytes + o.log_bytes,
            traces: self.traces + o.traces,
        }
    }
}

impl AddAssign for Usage {
    fn add_assign(&mut self, o: Usage) {
        *self = *self + o;
    }
}

impl Sub for Usage {
    type Output = Usage;
    fn sub(self, o: Usage) -> Usage {
        self + o * -1.0
    }
}

impl Mul<f64> for Usage {
    type Output = Usage;
    fn mul(self, k: f64) -> Usage {
        Usage {
            invocations: self.invocations * k,
            gb_s: self.gb_s * k,
            rru: self.rru * k,
            wru: self.wru * k,
            sqs: self.sqs * k,
            http: self.http * k,
            kms: self.kms * k,
            sm_calls: self.sm_calls * k,
            log_bytes: self.log_bytes * k,
            traces: self.traces * k,
        }
    }
}

/// One operation's totals.
#[derive(Clone, Copy, Debug, Default)]
pub struct OpStat {
    pub calls: u64,
    pub rru: f64,
    pub wru: f64,
}

impl AddAssign for OpStat {
    fn add_assign(&mut self, o: OpStat) {
        self.calls += o.calls;
        self.rru += o.rru;
        self.wru += o.wru;
    }
}

impl Sub for OpStat {
    type Output = OpStat;
    fn sub(self, e: OpStat) -> OpStat {
        OpStat {
            calls: self.calls.saturating_sub(e.calls),
            rru: self.rru - e.rru,
            wru: self.wru - e.wru,
        }
    }
}

/// One function's totals.
#[derive(Clone, Debug, Default)]
pub struct FnStat {
    pub invocations: u64,
    pub cold_starts: u64,
    pub gb_s: f64,
    pub billed_s: f64,
    /// GB-s had every invocation been billed its wall time on the bench's clock (the earlier
    /// model, which bills the bench's own CPU contention 64 times over).
    pub wall_gb_s: f64,
    /// The handlers' own CPU time on this machine (seconds, not stretched).
    pub cpu_s: f64,
    /// The nightly full runs' share of `invocations` and `gb_s` (by the shops served).
    pub once_invocations: f64,
    pub once_gb_s: f64,
    pub throttled: u64,
    pub peak_concurrency: u64,
    /// Runs without X-Ray tracing (the template's `HighVolumeTracing` at PassThrough).
    pub untraced: bool,
    /// Virtual seconds in which the function was invoked (X-Ray's reservoir samples the first
    /// request of every second).
    pub seconds: std::collections::HashSet<i64>,
}

/// Who a call is attributed to.
pub type Shop = Option<usize>;

pub struct Meter {
    shops: Vec<Mutex<Usage>>,
    /// The part of each shop's usage spent on its nightly full run (see [`once_a_day`]).
    once: Vec<Mutex<Usage>>,
    fleet: Mutex<Usage>,
    ops: Mutex<BTreeMap<&'static str, OpStat>>,
    /// The same per shop (to say what one shop's DynamoDB line is made of).
    shop_ops: Mutex<BTreeMap<(usize, &'static str), OpStat>>,
    /// The nightly full runs' part of `ops` and `shop_ops`.
    once_ops: Mutex<BTreeMap<&'static str, OpStat>>,
    once_shop_ops: Mutex<BTreeMap<(usize, &'static str), OpStat>>,
    functions: Mutex<BTreeMap<&'static str, FnStat>>,
    /// Log bytes not yet attributed (the log layer cannot tell the shop).
    pub log_bytes: AtomicU64,
    pub log_events: AtomicU64,
}

/// What one invocation is billed (seconds): the model's figure, the bench's wall time on its
/// clock (for comparison) and the handler's own CPU time.
#[derive(Clone, Copy, Debug, Default)]
pub struct Billed {
    pub billed_s: f64,
    pub wall_s: f64,
    pub cpu_s: f64,
}

/// Latency of AWS calls, in virtual microseconds, per call kind (typical in-region figures).
pub mod latency {
    pub const DYNAMODB_US: u64 = 5_000;
    pub const SQS_US: u64 = 10_000;
    pub const KMS_US: u64 = 8_000;
    pub const SECRETS_US: u64 = 15_000;
    /// KeyCRM's answer (the simulator is set to answer in this, on the bench's clock).
    pub const KEYCRM_US: u64 = 250_000;
}

tokio::task_local! {
    /// The modelled AWS latency of the invocation in progress (virtual µs).
    static CALLS: Arc<AtomicU64>;
    /// The shops whose work in the invocation in progress is their nightly full run.
    static ONCE: Arc<HashSet<usize>>;
}

/// Runs `fut` (a catalog-sync invocation) with everything it charges to `shops` also counted
/// as those shops' nightly full run. The default window holds the whole night but only half
/// the day, so the report turns the window's counts into a day's by doubling everything but
/// this part, which happens once a day (`Snapshot::daily`).
pub async fn once_a_day<F: std::future::Future>(shops: HashSet<usize>, fut: F) -> F::Output {
    ONCE.scope(Arc::new(shops), fut).await
}

fn is_once(shop: Shop) -> bool {
    shop.is_some_and(|s| ONCE.try_with(|set| set.contains(&s)).unwrap_or(false))
}

/// Runs `fut` collecting the modelled latency of the AWS calls it makes.
pub async fn collecting<F: std::future::Future>(acc: Arc<AtomicU64>, fut: F) -> F::Output {
    CALLS.scope(acc, fut).await
}

/// Adds a call's modelled latency to the invocation in progress (if any).
pub fn wait(us: u64) {
    let _ = CALLS.try_with(|a| a.fetch_add(us, Ordering::Relaxed));
}

/// Read units of an item of `bytes` (strongly consistent: 1 per 4 KB).
pub fn read_units(bytes: usize, consistent: bool) -> f64 {
    let units = bytes.max(1).div_ceil(4096) as f64;
    if consistent {
        units
    } else {
        units / 2.0
    }
}

/// Write units of an item of `bytes` (1 per KB).
pub fn write_units(bytes: usize) -> f64 {
    bytes.max(1).div_ceil(1024) as f64
}

impl Meter {
    pub fn new(shops: usize) -> Self {
        Meter {
            shops: (0..shops).map(|_| Mutex::new(Usage::default())).collect(),
            once: (0..shops).map(|_| Mutex::new(Usage::default())).collect(),
            once_ops: Mutex::new(BTreeMap::new()),
            once_shop_ops: Mutex::new(BTreeMap::new()),
            fleet: Mutex::new(Usage::default()),
            ops: Mutex::new(BTreeMap::new()),
            shop_ops: Mutex::new(BTreeMap::new()),
            functions: Mutex::new(BTreeMap::new()),
            log_bytes: AtomicU64::new(0),
            log_events: AtomicU64::new(0),
        }
    }

    fn charge(&self, shop: Shop, u: Usage) {
        let slot = match shop.and_then(|i| self.shops.get(i)) {
            Some(s) => s,
            None => &self.fleet,
        };
        if let Ok(mut g) = slot.lock() {
            *g += u;
        }
        if is_once(shop) {
            if let Some(Ok(mut g)) = shop.and_then(|i| self.once.get(i)).map(|m| m.lock()) {
                *g += u;
            }
        }
    }

    /// A DynamoDB operation.
    pub fn dynamo(&self, shop: Shop, op: &'static str, rru: f64, wru: f64) {
        wait(latency::DYNAMODB_US);
        self.charge(
            shop,
            Usage {
                rru,
                wru,
                ..Usage::default()
            },
        );
        let call = OpStat { calls: 1, rru, wru };
        if let Ok(mut ops) = self.ops.lock() {
            *ops.entry(op).or_default() += call;
        }
        if let (Some(i), Ok(mut ops)) = (shop, self.shop_ops.lock()) {
            *ops.entry((i, op)).or_default() += call;
        }
        if let (Some(i), true) = (shop, is_once(shop)) {
            if let Ok(mut ops) = self.once_ops.lock() {
                *ops.entry(op).or_default() += call;
            }
            if let Ok(mut ops) = self.once_shop_ops.lock() {
                *ops.entry((i, op)).or_default() += call;
            }
        }
    }

    pub fn sqs(&self, shop: Shop, requests: f64) {
        wait(latency::SQS_US);
        self.charge(
            shop,
            Usage {
                sqs: requests,
                ..Usage::default()
            },
        );
    }

    /// SQS requests the event source mapping makes (no handler is waiting on them).
    pub fn sqs_by_poller(&self, shop: Shop, requests: f64) {
        self.charge(
            shop,
            Usage {
                sqs: requests,
                ..Usage::default()
            },
        );
    }

    pub fn http(&self, shop: Shop) {
        self.charge(
            shop,
            Usage {
                http: 1.0,
                ..Usage::default()
            },
        );
    }

    pub fn kms(&self, shop: Shop) {
        wait(latency::KMS_US);
        self.charge(
            shop,
            Usage {
                kms: 1.0,
                ..Usage::default()
            },
        );
    }

    pub fn secrets_manager(&self, shop: Shop) {
        wait(latency::SECRETS_US);
        self.charge(
            shop,
            Usage {
                sm_calls: 1.0,
                ..Usage::default()
            },
        );
    }

    /// One Lambda invocation of `function`, billed `b.billed_s` at `memory_mb`, shared by the
    /// shops whose messages it handled (`None` entries: the fleet's own work).
    pub fn lambda(
        &self,
        function: &'static str,
        shops: &[Shop],
        b: Billed,
        memory_mb: u32,
        cold: bool,
        at_second: i64,
    ) {
        let billed_s = b.billed_s;
        let gb_s = billed_s * f64::from(memory_mb) / 1024.0;
        let n = shops.len().max(1) as f64;
        let share = Usage {
            invocations: 1.0 / n,
            gb_s: gb_s / n,
            ..Usage::default()
        };
        if shops.is_empty() {
            self.charge(None, share);
        }
        for s in shops {
            self.charge(*s, share);
        }
        if let Ok(mut f) = self.functions.lock() {
            let e = f.entry(function).or_default();
            e.invocations += 1;
            e.gb_s += gb_s;
            e.billed_s += billed_s;
            e.wall_gb_s += b.wall_s * f64::from(memory_mb) / 1024.0;
            e.cpu_s += b.cpu_s;
            let once = shops.iter().filter(|s| is_once(**s)).count() as f64 / n;
            e.once_invocations += once;
            e.once_gb_s += gb_s * once;
            if cold {
                e.cold_starts += 1;
            }
            e.seconds.insert(at_second);
        }
    }

    pub fn untraced(&self, function: &'static str) {
        if let Ok(mut f) = self.functions.lock() {
            f.entry(function).or_default().untraced = true;
        }
    }

    pub fn throttled(&self, function: &'static str) {
        if let Ok(mut f) = self.functions.lock() {
            f.entry(function).or_default().throttled += 1;
        }
    }

    pub fn concurrency(&self, function: &'static str, now: u64) {
        if let Ok(mut f) = self.functions.lock() {
            let e = f.entry(function).or_default();
            e.peak_concurrency = e.peak_concurrency.max(now);
        }
    }

    /// A snapshot of every shop's usage and the fleet's own.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            shops: self
                .shops
                .iter()
                .map(|m| m.lock().map(|g| *g).unwrap_or_default())
                .collect(),
            once: self
                .once
                .iter()
                .map(|m| m.lock().map(|g| *g).unwrap_or_default())
                .collect(),
            fleet: self.fleet.lock().map(|g| *g).unwrap_or_default(),
            ops: self.ops.lock().map(|g| g.clone()).unwrap_or_default(),
            shop_ops: self.shop_ops.lock().map(|g| g.clone()).unwrap_or_default(),
            once_ops: self.once_ops.lock().map(|g| g.clone()).unwrap_or_default(),
            once_shop_ops: self
                .once_shop_ops
                .lock()
                .map(|g| g.clone())
                .unwrap_or_default(),
            functions: self.functions.lock().map(|g| g.clone()).unwrap_or_default(),
            log_bytes: self.log_bytes.load(Ordering::Relaxed) as f64,
            log_events: self.log_events.load(Ordering::Relaxed) as f64,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub shops: Vec<Usage>,
    /// The nightly full runs' part of `shops` (also in `shops`).
    pub once: Vec<Usage>,
    pub fleet: Usage,
    pub ops: BTreeMap<&'static str, OpStat>,
    pub shop_ops: BTreeMap<(usize, &'static str), OpStat>,
    pub once_ops: BTreeMap<&'static str, OpStat>,
    pub once_shop_ops: BTreeMap<(usize, &'static str), OpStat>,
    pub functions: BTreeMap<&'static str, FnStat>,
    pub log_bytes: f64,
    pub log_events: f64,
}

impl Snapshot {
    /// What happened between `earlier` and this snapshot.
    pub fn since(&self, earlier: &Snapshot) -> Snapshot {
        let usages = |now: &[Usage], before: &[Usage]| -> Vec<Usage> {
            now.iter()
                .enumerate()
                .map(|(i, u)| *u - before.get(i).copied().unwrap_or_default())
                .collect()
        };
        fn ops<K: Ord + Copy>(
            now: &BTreeMap<K, OpStat>,
            before: &BTreeMap<K, OpStat>,
        ) -> BTreeMap<K, OpStat> {
            now.iter()
                .map(|(k, v)| (*k, *v - before.get(k).copied().unwrap_or_default()))
                .collect()
        }
        let functions = self
            .functions
            .iter()
            .map(|(k, v)| {
                let e = earlier.functions.get(k).cloned().unwrap_or_default();
                (
                    *k,
                    FnStat {
                        invocations: v.invocations - e.invocations,
                        cold_starts: v.cold_starts - e.cold_starts,
                        gb_s: v.gb_s - e.gb_s,
                        billed_s: v.billed_s - e.billed_s,
                        wall_gb_s: v.wall_gb_s - e.wall_gb_s,
                        cpu_s: v.cpu_s - e.cpu_s,
                        once_invocations: v.once_invocations - e.once_invocations,
                        once_gb_s: v.once_gb_s - e.once_gb_s,
                        throttled: v.throttled - e.throttled,
                        peak_concurrency: v.peak_concurrency,
                        untraced: v.untraced,
                        seconds: v.seconds.difference(&e.seconds).copied().collect(),
                    },
                )
            })
            .collect();
        Snapshot {
            shops: usages(&self.shops, &earlier.shops),
            once: usages(&self.once, &earlier.once),
            fleet: self.fleet - earlier.fleet,
            ops: ops(&self.ops, &earlier.ops),
            shop_ops: ops(&self.shop_ops, &earlier.shop_ops),
            once_ops: ops(&self.once_ops, &earlier.once_ops),
            once_shop_ops: ops(&self.once_shop_ops, &earlier.once_shop_ops),
            functions,
            log_bytes: self.log_bytes - earlier.log_bytes,
            log_events: self.log_events - earlier.log_events,
        }
    }

    pub fn total(&self) -> Usage {
        self.shops.iter().fold(self.fleet, |a, u| a + *u)
    }
}
