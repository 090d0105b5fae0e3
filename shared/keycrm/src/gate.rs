//! The shared per-key request budget.
//!
//! KeyCRM allows 60 requests a minute per API key, and every function (catalog sync, order
//! push, the admin API) spends the same budget. Each request first takes a slot from a
//! [`RateGate`]. Slots are scheduled with GCRA (a "theoretical arrival time" per key): a
//! request reserves the next free slot and sleeps until it, so the steady rate never exceeds
//! the budget in any window.
//!
//! Background work (catalog sync, realtime stock reads) has its own, slower arrival time as
//! well, so it can use at most `background_share` of the budget in any window
//! ([`RateBudget::background_requests`], 48 of 60) and orders always find free slots while a
//! sync runs.
//!
//! Work that finds the key idle may spend a **burst**: it is granted as many immediate
//! requests as the last window left unused, so neither a merchant opening the settings page
//! nor a sync starting on a quiet key waits a second per KeyCRM read. Interactive work (the
//! settings page, orders) may spend the whole unused budget; background work only up to its
//! share (and only when its own arrival time has passed too), after which it is paced again.
//! A typical shop's price run (~30 reads) thus goes at once instead of keeping a Lambda
//! asleep on the gate for half a minute. No burst lets any rolling window hold more than the
//! budget, nor background work more than its share (see [`decide`] for the argument and the
//! tests for the check).

use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Who is asking. Interactive work (orders, the settings page) may queue for any slot;
/// background work (catalog sync) only takes slots it does not have to queue far ahead for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Priority {
    Interactive,
    Background,
}

/// The budget of one API key.
#[derive(Clone, Debug, PartialEq)]
pub struct RateBudget {
    /// Requests allowed per window (KeyCRM: 60).
    pub requests: u32,
    /// The window (KeyCRM: one minute).
    pub window: Duration,
    /// Share of the budget background work may use (0.8: 48 of 60 a minute).
    pub background_share: f64,
    /// Spacing inflation, so that network jitter between our clock and the server's never
    /// makes the server count one request too many in a window.
    pub safety: f64,
}

impl RateBudget {
    /// KeyCRM's published limit.
    pub fn keycrm() -> Self {
        RateBudget {
            requests: 60,
            window: Duration::from_secs(60),
            background_share: 0.8,
            safety: 1.03,
        }
    }

    /// The same budget on a compressed clock (`time_scale` 60 = a minute lasts a second), to
    /// match a simulator running with the same scale.
    pub fn keycrm_scaled(time_scale: f64) -> Self {
        let mut b = Self::keycrm();
        b.window = Duration::from_secs_f64(60.0 / time_scale.max(1e-3));
        b
    }

    /// Minimum spacing between two requests of any kind, in microseconds.
    pub fn interval_us(&self) -> i64 {
        let base = self.window.as_secs_f64() / f64::from(self.requests.max(1));
        (base * self.safety * 1e6).ceil() as i64
    }

    /// The window the gate enforces, in microseconds: `requests` slots of [`Self::interval_us`],
    /// i.e. KeyCRM's window stretched by the safety margin.
    pub fn window_us(&self) -> i64 {
        self.interval_us()
            .saturating_mul(i64::from(self.requests.max(1)))
    }

    /// The most background requests any window may hold: `floor(requests × share)`, at
    /// least 1 (KeyCRM: 48).
    pub fn background_requests(&self) -> i64 {
        let share = self.background_share.clamp(0.01, 1.0);
        // The epsilon keeps a share like 0.29 of 100 (28.999… in binary) at 29.
        let n = (f64::from(self.requests.max(1)) * share + 1e-9).floor() as i64;
        n.max(1)
    }

    /// Minimum spacing between two background requests, in microseconds: the slot spacing
    /// stretched by the share, and never less than a window over
    /// [`Self::background_requests`], so that evenly paced background work fits the share in
    /// every window even when `requests × share` is not a whole number (equal for KeyCRM's
    /// 48 of 60).
    pub fn background_interval_us(&self) -> i64 {
        let share = self.background_share.clamp(0.01, 1.0);
        let stretched = (self.interval_us() as f64 / share).ceil() as i64;
        let b = self.background_requests();
        let per_window = self.window_us().saturating_add(b - 1) / b;
        stretched.max(per_window)
    }
}

/// GCRA state of one key: the earliest free slot for any request and for a background one,
/// in microseconds since the Unix epoch (wall clock, so it can be shared between machines).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GateState {
    pub tat_us: i64,
    pub bg_tat_us: i64,
    /// Interactive requests whose slot starts before this instant may be sent at once
    /// instead of waiting for the slot (the current burst allowance; 0 = none).
    pub burst_until_us: i64,
    /// Background requests whose slot starts before this instant may be sent at once: set
    /// only by a grant made to background work, and cleared by any later grant (0 = none).
    pub bg_burst_until_us: i64,
}

/// What a caller should do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Slot reserved: store `next` and send at `at_us`.
    Reserve { at_us: i64, next: GateState },
    /// Nothing reserved: look again at `until_us`.
    Wait { until_us: i64 },
}

/// The pure scheduling rule shared by the in-process and the DynamoDB gate.
///
/// Every request takes a *slot* `v` on the GCRA timeline: slots are at least
/// `T = interval_us` apart, and `W = window_us = requests × T` is KeyCRM's window plus the
/// safety margin. A request is sent at `a <= v`: at its slot (`a = v`, after queueing if the
/// slot is ahead), or, inside a burst, at once (`a = now <= v`).
///
/// **Burst.** When a request finds the key idle (`tat <= now`), every earlier request sits on
/// a slot before `tat`, so at most `m` of them (the slots in `(now - W, tat - T]`) can have
/// been sent in the window before `now`. The other `k = requests - m` slots are granted:
/// interactive requests whose slot starts before `burst_until = now + k·T` go at once.
/// Background work gets such a grant too when the key is idle for it (`bg_tat <= now` as
/// well) and its share leaves it at least two requests, `k_b = B - m >= 2` with
/// `B = floor(requests × share)`: background requests whose slot (`max(tat, now)`, so burst
/// requests take consecutive slots) starts before `bg_burst_until = now + k_b·T` go at once,
/// and the same grant sets `burst_until = now + k·T`, so interactive requests arriving during
/// or after the background burst still go at once while the window has room. (With
/// `k_b = 1` the grant would allow nothing the idle key does not already give: the one
/// request at `now`; the threshold is about usefulness, the bounds below hold either way.)
/// Every grant replaces the previous one (an interactive grant clears `bg_burst_until`), a
/// 429 ([`penalized`]) ends both, so every early send is under the latest grant made before
/// it was reserved.
///
/// **No window ever holds more than `requests`.** Take any window `[x, x + W)`. If every
/// request sent in it has its slot in it too, they are at most `requests`, since slots are `T`
/// apart. Otherwise some burst request sent in it has its slot at or after `x + W`; among such
/// requests take the one whose grant is the latest, made at the idle instant `e` with `k` slots
/// (a background burst request's slot is before `bg_burst_until <= burst_until`, so it counts
/// under its grant's `k` like an interactive one): `e + k·T > x + W`, so `e > x` (as
/// `k <= requests`). Requests reserved before `e` were sent before `e` (their slots are before
/// `tat <= e`), so the window holds at most `m` of them, all in `(e - W, e)`. Requests reserved
/// from `e` on and sent in the window have their slots in `[e, e + k·T)`: burst ones by the
/// grant (no later grant reaches past `x + W`), the others at their slot, before
/// `x + W <= e + k·T`. So at most `k`, and `m + k = requests` in all.
///
/// **No window ever holds more than `B` background requests.** Give every background request
/// a background slot `u`: the time it is sent when paced, `max(bg_tat, now)` in a burst; then
/// `bg_tat` becomes `u + Tb` (`Tb` = [`RateBudget::background_interval_us`] `>= W / B`), so
/// background slots are at least `Tb` apart and each request is sent at or before its own
/// (`a <= u`). Take a window `[x, x + W)`. If every background request sent in it has `u` in
/// it too, they are at most `B` (`W <= B·Tb`). Otherwise some background burst request `r`
/// sent in it has `u >= x + W`; among such take the one under the latest grant, made at `e`
/// with `k_b = B - m`. That grant's burst requests are the first background requests reserved
/// from `e` on (slots only grow, so once one is past `bg_burst_until` all later ones are);
/// the `i`-th (from 0, the granting one, `u_0 = e`) has its slot `v_i` in
/// `[e + i·T, e + k_b·T)`, so `i < k_b`, and `u_i = max over j <= i of now_j + (i - j)·Tb`
/// with `now_j <= v_j <= v_i - (i - j)·T`, so `u_i < e + k_b·Tb`: hence `x + W < e + k_b·Tb`.
/// The background requests reserved before `e` were sent before `e` and, as
/// `e <= a_r < x + W`, after `e - W`: at most `m` of them. Those reserved from `e` on and sent
/// in the window have `u` in `[e, e + k_b·Tb)`: under grant `e` as shown, under a later grant
/// or paced before `x + W`. So at most `k_b`, and `m + k_b = B` in all. For KeyCRM: at most 48
/// of any window's 60 are background, however the sync's requests arrive, and interactive
/// work always keeps 12.
pub fn decide(state: GateState, now_us: i64, priority: Priority, budget: &RateBudget) -> Decision {
    let t = budget.interval_us();
    let tb = budget.background_interval_us();
    match priority {
        Priority::Interactive => {
            if state.tat_us <= now_us {
                // Idle: grant the slots the last window left unused.
                let free = i64::from(budget.requests.max(1))
                    .saturating_sub(used_slots(state, now_us, budget))
                    .max(1);
                return Decision::Reserve {
                    at_us: now_us,
                    next: GateState {
                        tat_us: now_us.saturating_add(t),
                        bg_tat_us: state.bg_tat_us,
                        burst_until_us: now_us.saturating_add(free.saturating_mul(t)),
                        // This grant replaces any background one.
                        bg_burst_until_us: 0,
                    },
                };
            }
            // Busy: the next slot is `tat`; inside the burst it is used at once.
            let at = if state.tat_us < state.burst_until_us {
                now_us
            } else {
                state.tat_us
            };
            Decision::Reserve {
                at_us: at,
                next: GateState {
                    tat_us: state.tat_us.saturating_add(t),
                    ..state
                },
            }
        }
        Priority::Background => {
            if state.tat_us <= now_us && state.bg_tat_us <= now_us {
                // Idle for background work too: grant what the window left unused, capped at
                // the background share.
                let used = used_slots(state, now_us, budget);
                let bg_free = budget.background_requests().saturating_sub(used);
                if bg_free >= 2 {
                    let free = i64::from(budget.requests.max(1))
                        .saturating_sub(used)
                        .max(1);
                    return Decision::Reserve {
                        at_us: now_us,
                        next: GateState {
                            tat_us: now_us.saturating_add(t),
                            bg_tat_us: now_us.saturating_add(tb),
                            burst_until_us: now_us.saturating_add(free.saturating_mul(t)),
                            bg_burst_until_us: now_us.saturating_add(bg_free.saturating_mul(t)),
                        },
                    };
                }
            }
            // Inside a background burst: take the next slot and send at once, charging the
            // background schedule as if paced, so pacing resumes at the share afterwards.
            let slot = state.tat_us.max(now_us);
            if slot < state.bg_burst_until_us {
                return Decision::Reserve {
                    at_us: now_us,
                    next: GateState {
                        tat_us: slot.saturating_add(t),
                        bg_tat_us: state.bg_tat_us.max(now_us).saturating_add(tb),
                        ..state
                    },
                };
            }
            let at = state.tat_us.max(state.bg_tat_us).max(now_us);
            // Queueing more than one slot ahead would push interactive work behind us.
            if at > now_us.saturating_add(t) {
                return Decision::Wait {
                    until_us: at.saturating_sub(t),
                };
            }
            Decision::Reserve {
                at_us: at,
                next: GateState {
                    tat_us: at.saturating_add(t),
                    bg_tat_us: at.saturating_add(tb),
                    ..state
                },
            }
        }
    }
}

/// How many slots of the window before `now` earlier requests may have been sent in: the
/// slots in `(now - W, tat - T]` (an over-count when some were never used).
fn used_slots(state: GateState, now_us: i64, budget: &RateBudget) -> i64 {
    let t = budget.interval_us();
    let last_slot = state.tat_us.saturating_sub(t);
    let window_start = now_us.saturating_sub(budget.window_us());
    if last_slot > window_start {
        (last_slot - window_start).saturating_add(t - 1) / t
    } else {
        0
    }
}

/// The longest pause one 429 may put on a key. The gate is shared by every function spending
/// the key, and its item outlives any one invocation: an unbounded `Retry-After` (a proxy's
/// `86400`, a hostile `1e20`) would freeze orders, syncs and the settings page alike. KeyCRM's
/// window is a minute; a pause of two covers it, and a key still limited afterwards simply
/// answers 429 again and is paused again.
pub const MAX_PENALTY: Duration = Duration::from_secs(120);

/// How far ahead a slot can legitimately be booked. Reservations are bounded by the callers'
/// deadlines (minutes at most); a state further ahead than this was not written by this
/// scheduler's rules (an unclamped pause recorded by an older version) and is not honoured.
pub const MAX_AHEAD: Duration = Duration::from_secs(3600);

/// After a 429: nobody sends on this key before `retry_after` (at most [`MAX_PENALTY`]) has
/// passed.
pub fn penalized(state: GateState, now_us: i64, retry_after: Duration) -> GateState {
    let pause = retry_after.min(MAX_PENALTY);
    let until = now_us.saturating_add(i64::try_from(pause.as_micros()).unwrap_or(i64::MAX));
    GateState {
        tat_us: state.tat_us.max(until),
        bg_tat_us: state.bg_tat_us.max(until),
        // Nothing may be sent early into the pause.
        burst_until_us: 0,
        bg_burst_until_us: 0,
    }
}

/// The state with any booking beyond [`MAX_AHEAD`] dropped: applied to every state read
/// before scheduling, so a key frozen by an old, unclamped pause thaws at once.
pub fn sanitized(state: GateState, now_us: i64) -> GateState {
    let horizon = now_us.saturating_add(i64::try_from(MAX_AHEAD.as_micros()).unwrap_or(i64::MAX));
    let sane = |t: i64| if t > horizon { now_us } else { t };
    GateState {
        tat_us: sane(state.tat_us),
        bg_tat_us: sane(state.bg_tat_us),
        // A grant reaches at most a window ahead; one beyond the horizon is dropped.
        burst_until_us: if state.burst_until_us > horizon {
            0
        } else {
            state.burst_until_us
        },
        bg_burst_until_us: if state.bg_burst_until_us > horizon {
            0
        } else {
            state.bg_burst_until_us
        },
    }
}

pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or_default()
}

/// Sleeps until a wall-clock instant given in microseconds.
pub async fn sleep_until_us(at_us: i64) {
    let now = now_us();
    if at_us > now {
        tokio::time::sleep(Duration::from_micros((at_us - now) as u64)).await;
    }
}

#[derive(Debug, thiserror::Error)]
#[error("rate gate unavailable: {0}")]
pub struct GateError(pub String);

/// What asking for a slot came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// Reserved, and its time has come: send now. Holds how long the caller waited.
    Granted(Duration),
    /// The next free slot is after the caller's latest start: nothing was reserved (the slot
    /// stays free for someone with time to use it). Holds how long until that slot.
    TooLate(Duration),
}

/// A per-key request budget shared by everything that calls KeyCRM with that key.
/// `key` is the key's fingerprint, never the key itself.
#[async_trait]
pub trait RateGate: Send + Sync {
    /// Waits for a slot that starts no later than `latest_us` (wall-clock microseconds; `None`:
    /// however long it takes). A caller's wait is thus bounded by its invocation's time, and
    /// a slot it could not use is never booked.
    async fn acquire_until(
        &self,
        key: &str,
        priority: Priority,
        latest_us: Option<i64>,
    ) -> Result<Slot, GateError>;

    /// Waits for a slot, however long it takes; returns how long it waited.
    async fn acquire(&self, key: &str, priority: Priority) -> Result<Duration, GateError> {
        match self.acquire_until(key, priority, None).await? {
            Slot::Granted(waited) => Ok(waited),
            Slot::TooLate(_) => Err(GateError("no slot without a deadline".into())),
        }
    }

    /// Records a 429 so every caller on this key pauses.
    async fn penalize(&self, key: &str, retry_after: Duration) -> Result<(), GateError>;
}

/// Whether a slot (or a look-again time) at `at_us` is beyond the caller's latest start:
/// `Some(how long until it)` if so.
pub fn too_late(at_us: i64, latest_us: Option<i64>, now_us: i64) -> Option<Duration> {
    let latest = latest_us?;
    (at_us > latest).then(|| Duration::from_micros(u64::try_from(at_us - now_us).unwrap_or(0)))
}

/// Microseconds since `started`, as a wait.
pub fn waited_since(started_us: i64) -> Duration {
    Duration::from_micros(u64::try_from(now_us() - started_us).unwrap_or(0))
}

/// The in-process gate: right for one process (the local runner, tests, a single Lambda).
#[derive(Debug)]
pub struct LocalRateGate {
    budget: RateBudget,
    keys: Mutex<HashMap<String, GateState>>,
}

impl LocalRateGate {
    pub fn new(budget: RateBudget) -> Self {
        LocalRateGate {
            budget,
            keys: Mutex::new(HashMap::new()),
        }
    }
}

#[async_trait]
impl RateGate for LocalRateGate {
    async fn acquire_until(
        &self,
        key: &str,
        priority: Priority,
        latest_us: Option<i64>,
    ) -> Result<Slot, GateError> {
        let started = now_us();
        loop {
            let now = now_us();
            let decision = {
                let mut keys = self
                    .keys
                    .lock()
                    .map_err(|_| GateError("gate state poisoned".into()))?;
                let state = keys.entry(key.to_string()).or_default();
                let d = decide(sanitized(*state, now), now, priority, &self.budget);
                match d {
                    Decision::Reserve { at_us, .. } => {
                        if let Some(wait) = too_late(at_us, latest_us, now) {
                            return Ok(Slot::TooLate(wait));
                        }
                    }
                    Decision::Wait { until_us } => {
                        if let Some(wait) = too_late(until_us, latest_us, now) {
                            return Ok(Slot::TooLate(wait));
                        }
                    }
                }
                if let Decision::Reserve { next, .. } = d {
                    *state = next;
                }
                d
            };
            match decision {
                Decision::Reserve { at_us, .. } => {
                    sleep_until_us(at_us).await;
                    return Ok(Slot::Granted(waited_since(started)));
                }
                Decision::Wait { until_us } => sleep_until_us(until_us).await,
            }
        }
    }

    async fn penalize(&self, key: &str, retry_after: Duration) -> Result<(), GateError> {
        let mut keys = self
            .keys
            .lock()
            .map_err(|_| GateError("gate state poisoned".into()))?;
        let state = keys.entry(key.to_string()).or_default();
        let now = now_us();
        *state = penalized(sanitized(*state, now), now, retry_after);
        Ok(())
    }
}

/// No pacing at all: for unit tests that count requests, never for real KeyCRM traffic.
#[derive(Debug, Default)]
pub struct UnlimitedGate;

#[async_trait]
impl RateGate for UnlimitedGate {
    async fn acquire_until(
        &self,
        _key: &str,
        _priority: Priority,
        _latest_us: Option<i64>,
    ) -> Result<Slot, GateError> {
        Ok(Slot::Granted(Duration::ZERO))
    }
    async fn penalize(&self, _key: &str, _retry_after: Duration) -> Result<(), GateError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget() -> RateBudget {
        RateBudget {
            requests: 60,
            window: Duration::from_secs(60),
            background_share: 0.8,
            safety: 1.0,
        }
    }

    /// Drives `decide` with callers that always send at their reserved slot and counts the
    /// most requests seen in any window.
    fn simulate(priorities: &[Priority], n: usize) -> (Vec<(i64, Priority)>, i64) {
        let b = budget();
        let mut state = GateState::default();
        let mut now = 1_000_000_000;
        let mut sent = Vec::new();
        let mut i = 0;
        while sent.len() < n {
            let p = priorities[i % priorities.len()];
            match decide(state, now, p, &b) {
                Decision::Reserve { at_us, next } => {
                    state = next;
                    sent.push((at_us, p));
                    i += 1;
                }
                Decision::Wait { until_us } => now = until_us,
            }
            now = now.max(sent.last().map(|s| s.0).unwrap_or(now));
        }
        (sent, b.window.as_micros() as i64)
    }

    /// The most send times in any half-open window `[x, x + window)`.
    fn max_in_window(times: &[i64], window: i64) -> usize {
        // Burst requests go before slots reserved earlier, so sends are not in reservation order.
        let mut times = times.to_vec();
        times.sort_unstable();
        let mut best = 0;
        for (i, t) in times.iter().enumerate() {
            let count = times[i..].iter().take_while(|u| **u < t + window).count();
            best = best.max(count);
        }
        best
    }

    #[test]
    fn interactive_never_exceeds_the_budget_in_any_window() {
        let (sent, window) = simulate(&[Priority::Interactive], 500);
        let times: Vec<i64> = sent.iter().map(|s| s.0).collect();
        assert_eq!(max_in_window(&times, window), 60);
    }

    #[test]
    fn background_alone_uses_at_most_its_share() {
        let (sent, window) = simulate(&[Priority::Background], 300);
        let times: Vec<i64> = sent.iter().map(|s| s.0).collect();
        assert_eq!(max_in_window(&times, window), 48);
    }

    #[test]
    fn mixed_traffic_stays_within_the_budget() {
        let (sent, window) = simulate(
            &[
                Priority::Background,
                Priority::Interactive,
                Priority::Background,
            ],
            600,
        );
        let times: Vec<i64> = sent.iter().map(|s| s.0).collect();
        assert!(max_in_window(&times, window) <= 60);
    }

    #[test]
    fn background_does_not_queue_ahead_of_interactive() {
        let b = budget();
        let now = 5_000_000;
        // Interactive traffic has booked slots a few seconds ahead.
        let state = GateState {
            tat_us: now + 5 * b.interval_us(),
            bg_tat_us: 0,
            burst_until_us: 0,
            bg_burst_until_us: 0,
        };
        assert_eq!(
            decide(state, now, Priority::Background, &b),
            Decision::Wait {
                until_us: now + 4 * b.interval_us()
            }
        );
        assert!(
            matches!(decide(state, now, Priority::Interactive, &b), Decision::Reserve { at_us, .. } if at_us == now + 5 * b.interval_us())
        );
    }

    #[test]
    fn a_429_pauses_every_priority() {
        let b = budget();
        let s = penalized(GateState::default(), 1_000, Duration::from_secs(2));
        match decide(s, 2_000, Priority::Interactive, &b) {
            Decision::Reserve { at_us, .. } => assert_eq!(at_us, 2_001_000),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_huge_retry_after_pauses_the_key_for_at_most_max_penalty() {
        let now = 1_000_000;
        for ra in [
            Duration::from_secs(86_400),
            Duration::from_secs(u64::MAX),
            Duration::MAX,
        ] {
            let s = penalized(GateState::default(), now, ra);
            let max = now + MAX_PENALTY.as_micros() as i64;
            assert_eq!((s.tat_us, s.bg_tat_us), (max, max), "{ra:?}");
        }
        // Near the end of time nothing overflows either.
        let s = penalized(GateState::default(), i64::MAX - 5, Duration::MAX);
        assert_eq!(s.tat_us, i64::MAX);
    }

    #[test]
    fn a_key_frozen_far_ahead_by_an_old_pause_thaws() {
        let b = budget();
        let now = 5_000_000_000;
        let frozen = GateState {
            tat_us: now + 86_400_000_000 * 365,
            bg_tat_us: now + 86_400_000_000 * 365,
            burst_until_us: now + 86_400_000_000 * 365,
            bg_burst_until_us: now + 86_400_000_000 * 365,
        };
        assert_eq!(
            sanitized(frozen, now),
            GateState {
                tat_us: now,
                bg_tat_us: now,
                burst_until_us: 0,
                bg_burst_until_us: 0,
            }
        );
        assert!(matches!(
            decide(sanitized(frozen, now), now, Priority::Interactive, &b),
            Decision::Reserve { at_us, .. } if at_us == now
        ));
        // Ordinary bookings are kept.
        let busy = GateState {
            tat_us: now + 30_000_000,
            bg_tat_us: now + 2_000_000,
            burst_until_us: now + 40_000_000,
            bg_burst_until_us: now + 30_000_000,
        };
        assert_eq!(sanitized(busy, now), busy);
    }

    #[test]
    fn scaled_budget_compresses_the_window() {
        let b = RateBudget::keycrm_scaled(60.0);
        assert_eq!(b.window, Duration::from_secs(1));
        assert_eq!(b.interval_us(), (1e6 / 60.0 * 1.03f64).ceil() as i64);
    }

    // ---------------------------------------------------------------- the interactive burst

    fn reserve(state: &mut GateState, now: i64, p: Priority, b: &RateBudget) -> i64 {
        match decide(*state, now, p, b) {
            Decision::Reserve { at_us, next } => {
                *state = next;
                at_us
            }
            Decision::Wait { until_us } => panic!("asked to wait until {until_us}"),
        }
    }

    #[test]
    fn an_idle_key_gives_interactive_work_the_whole_window_at_once() {
        let b = budget();
        let t = b.interval_us();
        let mut s = GateState::default();
        let now = 1_000_000_000;
        // 60 requests of one page load arriving together: none waits.
        for _ in 0..60 {
            assert_eq!(reserve(&mut s, now, Priority::Interactive, &b), now);
        }
        // The 61st waits for the window to pass: its slot is the 61st.
        assert_eq!(
            reserve(&mut s, now, Priority::Interactive, &b),
            now + 60 * t
        );
    }

    #[test]
    fn a_key_busy_for_the_last_window_has_no_burst() {
        let b = budget();
        let t = b.interval_us();
        let mut s = GateState::default();
        let start = 1_000_000_000;
        // A minute of steady traffic at the full rate: every request at its slot.
        let mut now = start;
        for _ in 0..200 {
            let at = reserve(&mut s, now, Priority::Interactive, &b);
            now = at;
        }
        // Right after: one request at the next free slot, the rest queue one slot apart.
        now += t;
        let first = reserve(&mut s, now, Priority::Interactive, &b);
        assert_eq!(first, now);
        assert_eq!(reserve(&mut s, now, Priority::Interactive, &b), now + t);
        assert_eq!(reserve(&mut s, now, Priority::Interactive, &b), now + 2 * t);
    }

    #[test]
    fn the_burst_is_what_the_last_window_left_unused() {
        let b = budget();
        let t = b.interval_us();
        let mut s = GateState::default();
        let mut now = 1_000_000_000;
        // 60 steady requests, then half a window of silence: about half the window is free.
        for _ in 0..60 {
            now = reserve(&mut s, now, Priority::Interactive, &b);
        }
        let idle_from = s.tat_us;
        now = idle_from + 30 * t;
        let mut immediate = 0;
        loop {
            let at = reserve(&mut s, now, Priority::Interactive, &b);
            if at > now {
                break;
            }
            immediate += 1;
        }
        assert_eq!(immediate, 31, "30 idle slots plus the one at `now`");
    }

    /// Sends background requests at `now` while they go at once; how many did.
    fn immediate(s: &mut GateState, now: i64, p: Priority, b: &RateBudget) -> usize {
        let mut n = 0;
        while let Decision::Reserve { at_us, next } = decide(*s, now, p, b) {
            if at_us != now {
                break;
            }
            *s = next;
            n += 1;
        }
        n
    }

    #[test]
    fn background_work_on_an_idle_key_bursts_up_to_its_share() {
        let b = budget();
        let t = b.interval_us();
        let tb = b.background_interval_us();
        let mut s = GateState::default();
        let now = 1_000_000_000;
        // A price run starting on a quiet key: its share of the window goes at once...
        assert_eq!(immediate(&mut s, now, Priority::Background, &b), 48);
        assert_eq!(s.bg_burst_until_us, now + 48 * t);
        // ...not more: the next one is told to wait, then paced at the share, its first slot
        // a whole window after the burst (48 background slots charged).
        assert_eq!(
            decide(s, now, Priority::Background, &b),
            Decision::Wait {
                until_us: now + 48 * tb - t
            }
        );
        assert_eq!(
            reserve(&mut s, now + 48 * tb - t, Priority::Background, &b),
            now + 48 * tb
        );
        assert_eq!(
            reserve(&mut s, now + 49 * tb - t, Priority::Background, &b),
            now + 49 * tb
        );
    }

    #[test]
    fn the_background_burst_is_its_share_less_what_the_window_used() {
        let b = budget();
        let t = b.interval_us();
        // A minute of orders at the full rate, then silence: each idle slot is one more the
        // last window left unused (as for interactive work, 59 - idle slots count as used).
        let busy = |idle_slots: i64| {
            let mut s = GateState::default();
            let mut now = 1_000_000_000;
            for _ in 0..60 {
                now = reserve(&mut s, now, Priority::Interactive, &b);
            }
            let now = s.tat_us + idle_slots * t;
            (s, now)
        };
        // 30 idle slots: 29 used, 48 - 29 = 19 background requests at once.
        let (mut s, now) = busy(30);
        assert_eq!(immediate(&mut s, now, Priority::Background, &b), 19);
        // 12 idle slots: 47 used, the share leaves one request: no burst, just that one.
        let (mut s, now) = busy(12);
        assert_eq!(immediate(&mut s, now, Priority::Background, &b), 1);
        assert_eq!(s.bg_burst_until_us, 0, "a one-request grant is no grant");
        assert!(matches!(
            decide(s, now, Priority::Background, &b),
            Decision::Wait { until_us } if until_us > now
        ));
        // Interactive work on the same key would have had 60 - 47 = 13.
        let (mut s, now) = busy(12);
        assert_eq!(immediate(&mut s, now, Priority::Interactive, &b), 13);
    }

    #[test]
    fn after_a_background_burst_interactive_work_still_goes_at_once_within_the_window() {
        let b = budget();
        let t = b.interval_us();
        let mut s = GateState::default();
        let now = 1_000_000_000;
        assert_eq!(immediate(&mut s, now, Priority::Background, &b), 48);
        // Orders arriving right after: the window's other 12 slots at once...
        let later = now + 5_000;
        assert_eq!(immediate(&mut s, later, Priority::Interactive, &b), 12);
        // ...and the 13th at its slot, once the burst's window has passed.
        assert_eq!(
            reserve(&mut s, later, Priority::Interactive, &b),
            now + 60 * t
        );
        // Orders arriving in the middle of a background burst go at once too.
        let mut s = GateState::default();
        assert_eq!(reserve(&mut s, now, Priority::Background, &b), now);
        assert_eq!(reserve(&mut s, now, Priority::Interactive, &b), now);
        assert_eq!(immediate(&mut s, now, Priority::Background, &b), 46);
        assert_eq!(immediate(&mut s, now, Priority::Interactive, &b), 12);
    }

    #[test]
    fn every_grant_replaces_the_background_one() {
        let b = budget();
        let t = b.interval_us();
        let now = 1_000_000_000;
        // A sync sends ten requests at once, then pauses for a page's work; an order finding
        // the key idle meanwhile takes a fresh grant, which ends the sync's burst.
        let mut s = GateState::default();
        for _ in 0..10 {
            assert_eq!(reserve(&mut s, now, Priority::Background, &b), now);
        }
        let idle = now + 10 * t;
        assert_eq!(reserve(&mut s, idle, Priority::Interactive, &b), idle);
        assert_eq!(s.bg_burst_until_us, 0);
        assert!(!matches!(
            decide(s, idle, Priority::Background, &b),
            Decision::Reserve { at_us, .. } if at_us == idle
        ));
        // A 429 ends it too.
        let mut s = GateState::default();
        reserve(&mut s, now, Priority::Background, &b);
        s = penalized(s, now, Duration::from_secs(1));
        assert_eq!((s.burst_until_us, s.bg_burst_until_us), (0, 0));
        assert!(reserve(&mut s, now + 1_000_000, Priority::Background, &b) >= now + 1_000_000);
        assert!(!matches!(
            decide(s, now + 1_000_000, Priority::Background, &b),
            Decision::Reserve { at_us, .. } if at_us == now + 1_000_000
        ));
    }

    #[test]
    fn a_background_caller_slower_than_the_slots_stays_in_its_burst() {
        // A sync whose requests come 1.1 s apart (its pages take that long) on an idle key:
        // the key is idle again at each request, but background work is behind its own
        // schedule, so no new grant is made: the first one goes on until its slots run out.
        let b = budget();
        let t = b.interval_us();
        let tb = b.background_interval_us();
        let mut s = GateState::default();
        let start = 1_000_000_000;
        let gap = 1_100_000;
        // Slots are taken at the arrivals (1.1 s apart): 44 of them start before the 48th slot.
        for i in 0..44 {
            let now = start + i * gap;
            assert_eq!(
                reserve(&mut s, now, Priority::Background, &b),
                now,
                "request {i}"
            );
        }
        // The 45th is paced behind the 44 background slots charged, a window's share apart.
        let now = start + 44 * gap;
        assert_eq!(
            decide(s, now, Priority::Background, &b),
            Decision::Wait {
                until_us: start + 44 * tb - t
            }
        );
    }

    #[test]
    fn the_background_share_is_a_whole_number_of_requests_per_window() {
        let b = RateBudget::keycrm();
        assert_eq!(b.background_requests(), 48);
        // KeyCRM's pacing is what it was: the slot stretched by the share.
        assert_eq!(
            b.background_interval_us(),
            (b.interval_us() as f64 / 0.8).ceil() as i64
        );
        // Half of 5 is 2 a window, paced a window over 2 apart (not 2 slots: that would let
        // 3 into some window); a share below one request still allows one.
        let odd = RateBudget {
            requests: 5,
            window: Duration::from_secs(5),
            background_share: 0.5,
            safety: 1.0,
        };
        assert_eq!(odd.background_requests(), 2);
        assert_eq!(odd.background_interval_us(), 2_500_000);
        let tiny = RateBudget {
            requests: 1,
            ..odd.clone()
        };
        assert_eq!(tiny.background_requests(), 1);
        assert_eq!(
            RateBudget {
                requests: 100,
                background_share: 0.29,
                ..odd
            }
            .background_requests(),
            29
        );
    }

    #[test]
    fn a_429_ends_the_burst() {
        let b = budget();
        let mut s = GateState::default();
        let now = 1_000_000_000;
        reserve(&mut s, now, Priority::Interactive, &b);
        s = penalized(s, now, Duration::from_secs(5));
        // Inside the pause nothing goes, burst or not.
        let at = reserve(&mut s, now + 1, Priority::Interactive, &b);
        assert!(at >= now + 5_000_000, "{at}");
    }

    /// A small deterministic generator, so a failing case can be replayed from its seed.
    struct SplitMix(u64);
    impl SplitMix {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n.max(1)
        }
    }

    /// Random traffic against the pure rule: callers arriving in bursts, trickles and after
    /// idle stretches, mixed priorities, 429 pauses. Each caller sends at the instant it is
    /// given. No window of the budget's length ever holds more than the budget, nor more
    /// background requests than the background share. Seeds from 300 on also weigh the mix
    /// towards background work (bursting on idle keys) and add callers that come back only
    /// after their previous send, as a sync does.
    #[test]
    fn no_rolling_window_ever_exceeds_the_budget() {
        for seed in 0..600u64 {
            let mut rng = SplitMix(seed);
            let mut mix = SplitMix(seed ^ 0x5EED);
            let interactive_in_10 = if seed < 300 {
                7
            } else {
                [0, 3, 5][mix.below(3) as usize]
            };
            let requests = [1u32, 2, 5, 10, 60][rng.below(5) as usize];
            let b = RateBudget {
                requests,
                window: Duration::from_secs(60),
                background_share: [0.5, 0.8, 1.0][rng.below(3) as usize],
                safety: [1.0, 1.03][rng.below(2) as usize],
            };
            let t = b.interval_us();
            let window = b.window_us();
            let mut s = GateState::default();
            let mut now: i64 = 1_700_000_000_000_000;
            let mut sent = Vec::new();
            let mut sent_bg = Vec::new();
            for _ in 0..400 {
                // A sequential caller arrives only after the last send.
                if seed >= 300 && mix.below(3) == 0 {
                    now = now.max(sent.last().copied().unwrap_or(now));
                }
                // Gaps: none (a burst of callers), a fraction of a slot, a few slots, or idle.
                now += match rng.below(4) {
                    0 => 0,
                    1 => rng.below(t as u64) as i64,
                    2 => rng.below(5 * t as u64) as i64,
                    _ => rng.below(2 * window as u64) as i64,
                };
                if rng.below(40) == 0 {
                    s = penalized(s, now, Duration::from_millis(rng.below(90_000)));
                }
                let p = if rng.below(10) < interactive_in_10 {
                    Priority::Interactive
                } else {
                    Priority::Background
                };
                loop {
                    match decide(s, now, p, &b) {
                        Decision::Reserve { at_us, next } => {
                            assert!(at_us >= now, "seed {seed}: a slot in the past");
                            s = next;
                            sent.push(at_us);
                            if p == Priority::Background {
                                sent_bg.push(at_us);
                            }
                            break;
                        }
                        // The caller comes back when told; time moves on for everyone.
                        Decision::Wait { until_us } => now = now.max(until_us),
                    }
                }
            }
            let worst = max_in_window(&sent, window);
            assert!(
                worst <= requests as usize,
                "seed {seed}: {worst} requests in one window of {requests}"
            );
            let worst_bg = max_in_window(&sent_bg, window);
            assert!(
                worst_bg as i64 <= b.background_requests(),
                "seed {seed}: {worst_bg} background requests in one window of {requests} \
                 (share {})",
                b.background_share
            );
            // With safety 1.0 the window is KeyCRM's own: the bound is exact there too.
            if b.safety == 1.0 {
                assert_eq!(window, b.window.as_micros() as i64);
            }
        }
    }

    /// Background work alone, arriving at random (many callers at once, a sync coming back
    /// after each page, quiet spells long enough for fresh grants, 429 pauses): no rolling
    /// window ever holds more than `floor(requests × share)` background requests, and the
    /// bursts do happen (most requests on an idle key go at once).
    #[test]
    fn no_rolling_window_gives_background_work_more_than_its_share() {
        let mut at_once = 0usize;
        for seed in 0..400u64 {
            let mut rng = SplitMix(seed.wrapping_mul(31).wrapping_add(17));
            let requests = [1u32, 2, 3, 5, 10, 60][rng.below(6) as usize];
            let b = RateBudget {
                requests,
                window: Duration::from_secs(60),
                background_share: [0.3, 0.5, 0.8, 0.9, 1.0][rng.below(5) as usize],
                safety: [1.0, 1.03][rng.below(2) as usize],
            };
            let t = b.interval_us();
            let window = b.window_us();
            let mut s = GateState::default();
            let mut now: i64 = 1_700_000_000_000_000;
            let mut sent = Vec::new();
            let mut last = now;
            for _ in 0..300 {
                if rng.below(2) == 0 {
                    now = now.max(last);
                }
                now += match rng.below(5) {
                    0 => 0,
                    1 => rng.below(t as u64) as i64,
                    2 => rng.below(3 * t as u64) as i64,
                    3 => rng.below(window as u64) as i64,
                    _ => rng.below(3 * window as u64) as i64,
                };
                if rng.below(60) == 0 {
                    s = penalized(s, now, Duration::from_millis(rng.below(30_000)));
                }
                loop {
                    match decide(s, now, Priority::Background, &b) {
                        Decision::Reserve { at_us, next } => {
                            assert!(at_us >= now, "seed {seed}: a slot in the past");
                            if at_us == now && s.bg_tat_us > now {
                                at_once += 1;
                            }
                            s = next;
                            sent.push(at_us);
                            last = at_us;
                            break;
                        }
                        Decision::Wait { until_us } => now = now.max(until_us),
                    }
                }
            }
            let worst = max_in_window(&sent, window);
            assert!(
                worst as i64 <= b.background_requests(),
                "seed {seed}: {worst} background requests in one window; the share of \
                 {requests} at {} is {}",
                b.background_share,
                b.background_requests()
            );
        }
        // Requests sent at once although background work was ahead of its own schedule:
        // only a burst does that.
        assert!(at_once > 1_000, "{at_once} burst requests");
    }

    #[test]
    fn saturated_bursty_traffic_uses_the_whole_budget_and_no_more() {
        // Callers always waiting: every window is full, never over-full.
        let b = budget();
        let mut s = GateState::default();
        let mut now = 1_000_000_000;
        let mut sent = Vec::new();
        let mut rng = SplitMix(7);
        for _ in 0..2_000 {
            let at = reserve(&mut s, now, Priority::Interactive, &b);
            sent.push(at);
            // Sometimes the caller comes back only after its slot (a short idle spell).
            now = at + rng.below(3 * b.interval_us() as u64) as i64 * i64::from(rng.below(8) == 0);
        }
        assert_eq!(max_in_window(&sent, b.window_us()), 60);
    }

    #[tokio::test]
    async fn a_wait_past_the_callers_deadline_is_refused_and_books_nothing() {
        let gate = LocalRateGate::new(RateBudget {
            requests: 60,
            window: Duration::from_secs(60),
            background_share: 1.0,
            safety: 1.0,
        });
        gate.penalize("k", Duration::from_secs(60)).await.unwrap();
        let started = std::time::Instant::now();
        let latest = now_us() + 200_000;
        let slot = gate
            .acquire_until("k", Priority::Interactive, Some(latest))
            .await
            .unwrap();
        assert!(
            matches!(slot, Slot::TooLate(w) if w > Duration::from_secs(50)),
            "{slot:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(1), "did not wait");
        // Nothing was booked: the paused slot is still the next one, for anyone.
        let s = gate.keys.lock().unwrap()["k"];
        assert!(s.tat_us <= now_us() + 60_000_000);
        let again = gate
            .acquire_until("k", Priority::Background, Some(latest))
            .await
            .unwrap();
        assert!(matches!(again, Slot::TooLate(_)), "{again:?}");
        // A slot within the deadline is granted as before.
        let free = gate
            .acquire_until("other", Priority::Interactive, Some(now_us() + 1_000_000))
            .await
            .unwrap();
        assert!(matches!(free, Slot::Granted(_)), "{free:?}");
    }

    #[tokio::test]
    async fn local_gate_spaces_requests() {
        let gate = LocalRateGate::new(RateBudget {
            requests: 10,
            window: Duration::from_millis(100),
            background_share: 1.0,
            safety: 1.0,
        });
        let start = std::time::Instant::now();
        // An idle key: the whole window's 10 requests go at once (the burst)...
        for _ in 0..10 {
            let waited = gate.acquire("k", Priority::Interactive).await.unwrap();
            assert!(waited < Duration::from_millis(5), "{waited:?}");
        }
        // ...and the next 11 at their slots, 10 ms apart from the end of the burst's window.
        for _ in 0..11 {
            gate.acquire("k", Priority::Interactive).await.unwrap();
        }
        assert!(
            start.elapsed() >= Duration::from_millis(199),
            "{:?}",
            start.elapsed()
        );
        // Another key has its own budget.
        let waited = gate.acquire("other", Priority::Interactive).await.unwrap();
        assert!(waited < Duration::from_millis(5));
    }
}
