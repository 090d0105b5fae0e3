//! Shared server state: accounts, rate limiter, faults and statistics.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use crate::catalog::Catalog;
use crate::crm::Crm;
use crate::rng::SplitMix64;
use crate::stock::StockWebhook;
use crate::{AccountSpec, Faults, SimStats, WebhookAttempt};

/// Keeps only the most recent webhook attempts in [`SimStats::webhook_log`].
const WEBHOOK_LOG_CAP: usize = 1000;

/// Locks a mutex, recovering the data if a previous holder panicked (the simulator
/// must keep serving even if one request task died).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn read<T>(m: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn write<T>(m: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|e| e.into_inner())
}

/// Fixed-window limiter (Laravel `throttle` semantics: the window starts at the first hit).
#[derive(Debug)]
pub(crate) struct Window {
    start: Instant,
    count: u32,
}

pub(crate) enum Hit {
    /// Allowed; `remaining` requests left in the window.
    Allowed { remaining: u32 },
    /// Limited; retry after this many real seconds (≥ 1).
    Limited { retry_after: u64 },
}

impl Window {
    fn new() -> Self {
        Window {
            start: Instant::now(),
            count: 0,
        }
    }

    pub(crate) fn hit(&mut self, limit: u32, window: Duration) -> Hit {
        if limit == 0 {
            return Hit::Allowed { remaining: 0 };
        }
        let now = Instant::now();
        if now.duration_since(self.start) >= window {
            self.start = now;
            self.count = 0;
        }
        if self.count >= limit {
            let left = window.saturating_sub(now.duration_since(self.start));
            let secs = left.as_secs_f64().ceil().max(1.0) as u64;
            return Hit::Limited { retry_after: secs };
        }
        self.count += 1;
        Hit::Allowed {
            remaining: limit - self.count,
        }
    }
}

pub(crate) struct Account {
    pub spec: AccountSpec,
    pub catalog: RwLock<Catalog>,
    pub crm: Mutex<Crm>,
    pub limiter: Mutex<Window>,
    /// event → URL
    pub webhooks: Mutex<HashMap<String, String>>,
    /// Stock webhooks (Settings → Products → Stocks).
    pub stock_webhooks: Mutex<Vec<StockWebhook>>,
}

impl Account {
    pub(crate) fn new(spec: AccountSpec, catalog: Catalog) -> Self {
        Account {
            spec,
            catalog: RwLock::new(catalog),
            crm: Mutex::new(Crm::default()),
            limiter: Mutex::new(Window::new()),
            webhooks: Mutex::new(HashMap::new()),
            stock_webhooks: Mutex::new(Vec::new()),
        }
    }
}

pub(crate) struct FaultState {
    pub faults: Faults,
    pub rng: SplitMix64,
    pub commit_timeouts_left: u32,
}

/// What the fault injector decided for one request.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct FaultDecision {
    pub latency_ms: u64,
    pub drop: bool,
    pub error_5xx: Option<u16>,
}

pub(crate) struct Shared {
    pub accounts: Vec<Arc<Account>>,
    /// API key -> account. More than one key may open an account (see
    /// `SimHandle::add_api_key`).
    pub by_key: std::sync::RwLock<HashMap<String, Arc<Account>>>,
    pub rate_limit: u32,
    pub time_scale: f64,
    pub public_base: String,
    pub stats: Mutex<SimStats>,
    pub faults: Mutex<FaultState>,
    pub http: reqwest::Client,
}

impl Shared {
    pub(crate) fn account(&self, key: &str) -> Option<Arc<Account>> {
        self.by_key
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
    }

    /// The account named by `key`, or the first account when `key` is `None`.
    pub(crate) fn account_or_default(&self, key: Option<&str>) -> Option<Arc<Account>> {
        match key {
            Some(k) => self.account(k),
            None => self.accounts.first().cloned(),
        }
    }

    /// Rate-limit window in real time.
    pub(crate) fn window(&self) -> Duration {
        Duration::from_secs_f64(60.0 / self.time_scale)
    }

    /// A simulated duration converted to real time.
    pub(crate) fn scaled(&self, simulated: Duration) -> Duration {
        Duration::from_secs_f64(simulated.as_secs_f64() / self.time_scale)
    }

    pub(crate) fn set_faults(&self, f: Faults) {
        let mut st = lock(&self.faults);
        st.rng = SplitMix64::new(f.seed);
        st.commit_timeouts_left = f.commit_then_timeout;
        st.faults = f;
    }

    pub(crate) fn decide_faults(&self) -> FaultDecision {
        let mut st = lock(&self.faults);
        let f = st.faults.clone();
        let mut d = FaultDecision {
            latency_ms: f.latency_ms,
            ..Default::default()
        };
        if f.drop_rate > 0.0 && st.rng.chance(f.drop_rate) {
            d.drop = true;
            return d;
        }
        if f.error_rate_5xx > 0.0 && st.rng.chance(f.error_rate_5xx) {
            d.error_5xx = Some(*st.rng.pick(&[500u16, 502, 503]));
        }
        d
    }

    /// Consumes one commit-then-timeout token; returns the hang duration if one was left.
    pub(crate) fn take_commit_timeout(&self) -> Option<Duration> {
        let mut st = lock(&self.faults);
        if st.commit_timeouts_left == 0 {
            return None;
        }
        st.commit_timeouts_left -= 1;
        Some(Duration::from_millis(st.faults.hang_ms))
    }

    /// Counts a `/v1` request (call once per request, before its status is known).
    pub(crate) fn record_request(&self, endpoint: &str, key_label: &str) {
        let mut s = lock(&self.stats);
        s.total_requests += 1;
        *s.requests_by_endpoint
            .entry(endpoint.to_string())
            .or_default() += 1;
        *s.requests_by_api_key
            .entry(key_label.to_string())
            .or_default() += 1;
    }

    /// Counts the status a `/v1` request was answered with (`"dropped"` for drops).
    pub(crate) fn record_status(&self, status: &str) {
        let mut s = lock(&self.stats);
        *s.responses_by_status.entry(status.to_string()).or_default() += 1;
        match status {
            "401" => s.unauthorized_401 += 1,
            "429" => s.rate_limited_429 += 1,
            _ => {}
        }
    }

    pub(crate) fn with_stats(&self, f: impl FnOnce(&mut SimStats)) {
        f(&mut lock(&self.stats));
    }

    pub(crate) fn record_webhook(&self, a: WebhookAttempt, delivered: bool, gave_up: bool) {
        let mut s = lock(&self.stats);
        s.webhook_attempts += 1;
        if delivered {
            s.webhooks_delivered += 1;
        }
        if gave_up {
            s.webhooks_failed += 1;
        }
        if s.webhook_log.len() >= WEBHOOK_LOG_CAP {
            s.webhook_log.remove(0);
        }
        s.webhook_log.push(a);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_limits_and_resets() {
        let mut w = Window::new();
        let win = Duration::from_millis(200);
        for i in 0..3 {
            match w.hit(3, win) {
                Hit::Allowed { remaining } => assert_eq!(remaining, 2 - i),
                Hit::Limited { .. } => panic!("limited too early"),
            }
        }
        assert!(matches!(w.hit(3, win), Hit::Limited { retry_after: 1 }));
        std::thread::sleep(Duration::from_millis(220));
        assert!(matches!(w.hit(3, win), Hit::Allowed { remaining: 2 }));
    }
}
