//! Lambda as the fleet meets it: functions with their memory, timeout and concurrency (an SQS
//! event source mapping runs at most `MaximumConcurrency` invocations; reserved functions have
//! their own share; everything else competes for the account's unreserved concurrency), warm
//! instances that keep their caches and go cold when idle, and billed duration.
//!
//! Billed duration is modelled from what the invocation did, not from how long the bench took
//! to run it (the bench's clock runs 64 times faster than KeyCRM's, so any CPU the bench spends,
//! or waits for because both cores are busy, would be billed 64 times over):
//! - the handler's **CPU**: thread CPU time summed over the polls of its future (`cpu.rs`),
//!   stretched by Lambda's share of a vCPU at the function's memory (1,769 MB = one vCPU; at
//!   256 MB a CPU-bound stretch takes 6.9 times longer than on one of this machine's cores);
//! - **waits**, in KeyCRM time: every rate-gate wait the handler was given (the slot's distance
//!   when it was booked), 250 ms for every KeyCRM request (the simulator's answer time), and
//!   the modelled latency of each AWS call (the in-memory adapters answer at once);
//! - the init of a cold start.
//!
//! The invocation's wall time on the bench's clock (the earlier model) is kept beside it
//! (`FnStat::wall_gb_s`), so a run shows both.

use crate::clock::Clock;
use crate::cpu::CpuTimed;
use crate::meter::{collecting, Meter, Shop};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, Semaphore};

/// A function as deployed.
#[derive(Clone, Debug)]
pub struct Function {
    pub name: &'static str,
    pub memory_mb: u32,
    /// Virtual.
    pub timeout: Duration,
    /// SQS event source: batch size and batching window (virtual).
    pub batch: usize,
    pub window: Duration,
    /// Invocations at once: the event source's MaximumConcurrency, or the reservation.
    pub max_concurrency: usize,
    /// Has reserved concurrency (does not compete for the account's pool).
    pub reserved: bool,
    /// Secrets Manager reads of a cold start (the platform secrets it loads in `main`).
    pub init_secret_reads: u32,
    /// X-Ray active tracing (`Tracing: Active` in the template).
    pub traced: bool,
    /// A margin the handler keeps back from its deadline as a constant (not configurable,
    /// so not on the bench's clock): the deadline handed to it is stretched by the
    /// difference, so the margin it keeps is `fixed_margin` of KeyCRM time.
    pub fixed_margin: Duration,
}

/// A warm instance: the handler with its caches, and when it was made and last used.
pub struct Instance<H> {
    pub handler: Option<Arc<H>>,
    created: Option<Instant>,
    last_used: Option<Instant>,
}

impl<H> Default for Instance<H> {
    fn default() -> Self {
        Instance {
            handler: None,
            created: None,
            last_used: None,
        }
    }
}

/// Lambda reclaims an instance idle this long (virtual), and none lives longer than the
/// maximum age.
const IDLE_RECLAIM: Duration = Duration::from_secs(15 * 60);
const MAX_AGE: Duration = Duration::from_secs(2 * 3600);
/// Billed init of a cold start (virtual): runtime start, SDK configuration, secrets.
const INIT: Duration = Duration::from_millis(250);
/// Lambda's memory for one full vCPU: below it a function gets that share of a core.
const MB_PER_VCPU: f64 = 1_769.0;

/// How much longer a CPU-bound stretch takes at `memory_mb` than on one whole core.
pub fn cpu_stretch(memory_mb: u32) -> f64 {
    (MB_PER_VCPU / f64::from(memory_mb.max(1))).max(1.0)
}

pub struct Pool {
    pub clock: Clock,
    pub meter: Arc<Meter>,
    /// The account's unreserved concurrency.
    pub account: Arc<Semaphore>,
    in_flight: dashless::Counts,
}

mod dashless {
    use std::collections::HashMap;
    use std::sync::Mutex;

    /// Invocations in flight per function.
    #[derive(Default)]
    pub struct Counts(Mutex<HashMap<&'static str, u64>>);

    impl Counts {
        pub fn enter(&self, f: &'static str) -> u64 {
            let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
            let e = m.entry(f).or_default();
            *e += 1;
            *e
        }
        pub fn get(&self, f: &str) -> u64 {
            let m = self.0.lock().unwrap_or_else(|p| p.into_inner());
            m.get(f).copied().unwrap_or(0)
        }
        pub fn leave(&self, f: &'static str) {
            let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(e) = m.get_mut(f) {
                *e = e.saturating_sub(1);
            }
        }
    }
}

impl Pool {
    pub fn new(clock: Clock, meter: Arc<Meter>, account_unreserved: usize) -> Self {
        Pool {
            clock,
            meter,
            account: Arc::new(Semaphore::new(account_unreserved)),
            in_flight: Default::default(),
        }
    }

    /// Invocations of the function named `f` running now.
    pub fn in_flight(&self, f: &str) -> u64 {
        self.in_flight.get(f)
    }

    /// Runs one invocation of `f` on `instance` (made warm with `make` if cold), for the
    /// messages of `shops`; `work` gets the handler and the invocation's deadline (real).
    pub async fn invoke<H, T, Fut>(
        &self,
        f: &Function,
        instance: &Mutex<Instance<H>>,
        make: impl FnOnce() -> H,
        shops: Vec<Shop>,
        work: impl FnOnce(Arc<H>, Instant) -> Fut,
    ) -> T
    where
        Fut: std::future::Future<Output = T>,
    {
        let _permit = if f.reserved {
            None
        } else {
            match self.account.clone().try_acquire_owned() {
                Ok(p) => Some(p),
                Err(_) => {
                    // Throttled: Lambda makes the event source back off and try again.
                    self.meter.throttled(f.name);
                    Some(
                        self.account
                            .clone()
                            .acquire_owned()
                            .await
                            .expect("the account pool is never closed"),
                    )
                }
            }
        };
        let (handler, cold) = {
            let mut inst = instance.lock().await;
            let now = Instant::now();
            let expired = match (inst.created, inst.last_used) {
                (Some(c), Some(l)) => {
                    self.clock.virt(now - l) > IDLE_RECLAIM || self.clock.virt(now - c) > MAX_AGE
                }
                _ => true,
            };
            if expired || inst.handler.is_none() {
                inst.handler = Some(Arc::new(make()));
                inst.created = Some(now);
            }
            inst.last_used = Some(now);
            (inst.handler.clone().expect("made above"), expired)
        };
        if cold {
            for _ in 0..f.init_secret_reads {
                self.meter.secrets_manager(None);
            }
        }
        let concurrent = self.in_flight.enter(f.name);
        self.meter.concurrency(f.name, concurrent);
        let started = Instant::now();
        let deadline =
            started + self.clock.real(f.timeout.saturating_sub(f.fixed_margin)) + f.fixed_margin;
        let calls = Arc::new(AtomicU64::new(0));
        let cpu_ns = Arc::new(AtomicU64::new(0));
        let out = CpuTimed::new(
            collecting(calls.clone(), work(handler, deadline)),
            cpu_ns.clone(),
        )
        .await;
        self.in_flight.leave(f.name);
        if let Ok(mut inst) = instance.try_lock() {
            inst.last_used = Some(Instant::now());
        }
        let waits = Duration::from_micros(calls.load(Ordering::Relaxed));
        let cpu = Duration::from_nanos(cpu_ns.load(Ordering::Relaxed));
        let init = if cold { INIT } else { Duration::ZERO };
        let cap = f.timeout + INIT;
        let billed = (cpu.mul_f64(cpu_stretch(f.memory_mb)) + waits + init).min(cap);
        let wall = (self.clock.virt(started.elapsed()) + waits + init).min(cap);
        // Lambda bills in whole milliseconds.
        let ms = |d: Duration| (d.as_secs_f64() * 1000.0).ceil() / 1000.0;
        let second = self.clock.at(started).timestamp();
        self.meter.lambda(
            f.name,
            &shops,
            crate::meter::Billed {
                billed_s: ms(billed),
                wall_s: ms(wall),
                cpu_s: cpu.as_secs_f64(),
            },
            f.memory_mb,
            cold,
            second,
        );
        if !f.traced {
            self.meter.untraced(f.name);
        }
        out
    }
}
