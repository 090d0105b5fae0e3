//! When each connection's scheduled syncs start: spread over a window instead of all at once.
//!
//! Thousands of shops must not start their nightly full sync (or their 4-hourly price sync)
//! in the same minute: every run is its own Lambda invocation, and a burst of them would take
//! the account's concurrency while they mostly wait on their keys' rate budgets. Instead each
//! connection has a stable **slot**, a fraction of the window derived from a hash of its id,
//! and a frequent scheduler tick starts only the connections whose slot falls in that tick
//! (with an SQS delay placing each start at its exact minute within the tick).
//!
//! Everything here is in UTC, so no daylight-saving change can make a window one tick longer
//! or shorter (which would start some shops twice or not at all that night). The default
//! nightly window, 22:00–03:00 UTC, is 00:00–05:00 in Kyiv in winter and 01:00–06:00 in summer.
//!
//! Pure: no clock, no I/O. The caller passes the tick's scheduled time.

use chrono::{DateTime, Duration, TimeZone, Utc};
use sha2::{Digest, Sha256};

/// Minutes in a day.
const DAY_MIN: i64 = 24 * 60;

/// The spread of scheduled syncs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spread {
    /// Minutes between scheduler ticks (the schedule in the template fires at this rate,
    /// aligned to the hour). Must divide both the window and the price period.
    pub tick_min: i64,
    /// Start of the nightly full-sync window, minutes after 00:00 UTC.
    pub full_start_min: i64,
    /// Length of the nightly window in minutes (at most a day).
    pub full_window_min: i64,
    /// Length of a price period in minutes (every shop's price sync starts once in each;
    /// periods are aligned to 00:00 UTC, so it must divide a day).
    pub price_period_min: i64,
}

impl Default for Spread {
    fn default() -> Self {
        Spread {
            tick_min: 15,
            full_start_min: 22 * 60,
            full_window_min: 5 * 60,
            price_period_min: 4 * 60,
        }
    }
}

/// Which scheduled sync a slot starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SlotKind {
    Full,
    Prices,
}

/// One scheduled start that falls in a tick.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Due {
    pub kind: SlotKind,
    /// From the tick's start to the connection's slot (less than one tick).
    pub delay: std::time::Duration,
    /// Names the run after its window or period, so a retried tick or a redelivered job
    /// never runs the same window twice (`full-20250601`, `prices-20250601T0400`).
    pub run_id: String,
}

/// Why a spread cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SpreadError {
    #[error("the tick must be between 1 and 15 minutes (SQS delays stop at 15), got {0}")]
    Tick(i64),
    #[error("the nightly window must be 1 to 1440 minutes and a whole number of ticks, got {0}")]
    Window(i64),
    #[error("the window start must be within the day (0..1440 minutes), got {0}")]
    Start(i64),
    #[error("the price period must divide a day and be a whole number of ticks, got {0}")]
    Period(i64),
}

impl Spread {
    /// Checks the invariants the slot arithmetic relies on.
    pub fn validate(&self) -> Result<(), SpreadError> {
        if !(1..=15).contains(&self.tick_min) {
            return Err(SpreadError::Tick(self.tick_min));
        }
        if !(1..=DAY_MIN).contains(&self.full_window_min)
            || self.full_window_min % self.tick_min != 0
        {
            return Err(SpreadError::Window(self.full_window_min));
        }
        if !(0..DAY_MIN).contains(&self.full_start_min) {
            return Err(SpreadError::Start(self.full_start_min));
        }
        if self.price_period_min < self.tick_min
            || DAY_MIN % self.price_period_min != 0
            || self.price_period_min % self.tick_min != 0
        {
            return Err(SpreadError::Period(self.price_period_min));
        }
        Ok(())
    }

    /// The start of the tick containing `at` (ticks are aligned to 00:00 UTC).
    pub fn tick_start(&self, at: DateTime<Utc>) -> DateTime<Utc> {
        let tick_s = self.tick_min.max(1) * 60;
        let t = at.timestamp();
        let start = t - t.rem_euclid(tick_s);
        Utc.timestamp_opt(start, 0).single().unwrap_or(at)
    }

    /// The scheduled starts of `connection_id` that fall in the tick beginning at `tick`
    /// (a tick boundary, see [`Spread::tick_start`]): at most one full and one price run.
    pub fn due(&self, connection_id: &str, tick: DateTime<Utc>) -> Vec<Due> {
        let tick = self.tick_start(tick);
        let slot = slot_fraction(connection_id);
        let mut out = Vec::new();
        if let Some(d) = self.full_due(slot, tick) {
            out.push(d);
        }
        if let Some(d) = self.prices_due(slot, tick) {
            out.push(d);
        }
        out
    }

    /// The connection's offset into the nightly window, in seconds.
    pub fn full_offset_s(&self, connection_id: &str) -> i64 {
        offset_s(slot_fraction(connection_id), self.full_window_min)
    }

    /// The connection's offset into each price period, in seconds.
    pub fn price_offset_s(&self, connection_id: &str) -> i64 {
        offset_s(slot_fraction(connection_id), self.price_period_min)
    }

    fn full_due(&self, slot: f64, tick: DateTime<Utc>) -> Option<Due> {
        let minute_of_day = (tick.timestamp().div_euclid(60)).rem_euclid(DAY_MIN);
        // Minutes since tonight's window opened (it may have opened yesterday, before 00:00).
        let into = (minute_of_day - self.full_start_min).rem_euclid(DAY_MIN);
        if into >= self.full_window_min {
            return None;
        }
        let window_start = tick - Duration::minutes(into);
        let offset = offset_s(slot, self.full_window_min);
        let delay = in_tick(offset - into * 60, self.tick_min)?;
        Some(Due {
            kind: SlotKind::Full,
            delay,
            run_id: format!("full-{}", window_start.format("%Y%m%d")),
        })
    }

    /// When the nightly window a scheduled full run is named after (`full-YYYYMMDD`, see
    /// [`Spread::due`]) closes; `None` for any other run id.
    pub fn full_window_end(&self, run_id: &str) -> Option<DateTime<Utc>> {
        let date = run_id.strip_prefix("full-")?;
        if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let day = chrono::NaiveDate::parse_from_str(date, "%Y%m%d").ok()?;
        let start = day.and_hms_opt(0, 0, 0)?.and_utc() + Duration::minutes(self.full_start_min);
        start.checked_add_signed(Duration::minutes(self.full_window_min))
    }

    fn prices_due(&self, slot: f64, tick: DateTime<Utc>) -> Option<Due> {
        let minutes = tick.timestamp().div_euclid(60);
        let into = minutes.rem_euclid(self.price_period_min);
        let period_start = tick - Duration::minutes(into);
        let offset = offset_s(slot, self.price_period_min);
        let delay = in_tick(offset - into * 60, self.tick_min)?;
        Some(Due {
            kind: SlotKind::Prices,
            delay,
            run_id: format!("prices-{}", period_start.format("%Y%m%dT%H%M")),
        })
    }
}

/// `Some(delay)` when `from_tick_s` (seconds from the tick's start to the slot) is inside
/// this tick.
fn in_tick(from_tick_s: i64, tick_min: i64) -> Option<std::time::Duration> {
    if (0..tick_min * 60).contains(&from_tick_s) {
        u64::try_from(from_tick_s)
            .ok()
            .map(std::time::Duration::from_secs)
    } else {
        None
    }
}

/// Whole seconds into a window of `window_min` minutes.
fn offset_s(slot: f64, window_min: i64) -> i64 {
    let span = window_min.max(1) * 60;
    // `slot` < 1, so the product stays below `span`; the clamp keeps rounding honest.
    ((slot * span as f64) as i64).clamp(0, span - 1)
}

/// A stable fraction in [0, 1) for a connection id: the first 8 bytes of its SHA-256. Random
/// ids (the connector's are 128-bit) spread evenly; the same id always gets the same slot.
pub fn slot_fraction(connection_id: &str) -> f64 {
    let digest = Sha256::digest(connection_id.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    // 53 bits: exactly representable, so the fraction is strictly below 1.
    (u64::from_be_bytes(first) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("{:032x}", i * 7919 + 13)).collect()
    }

    /// Every tick of one UTC day, and what each connection gets in it.
    fn day(spread: &Spread, id: &str, date: &str) -> Vec<(DateTime<Utc>, Due)> {
        let start = at(&format!("{date}T00:00:00Z"));
        let ticks = DAY_MIN / spread.tick_min;
        (0..ticks)
            .flat_map(|i| {
                let t = start + Duration::minutes(i * spread.tick_min);
                spread.due(id, t).into_iter().map(move |d| (t, d))
            })
            .collect()
    }

    #[test]
    fn the_default_spread_is_valid() {
        Spread::default().validate().unwrap();
    }

    #[test]
    fn bad_spreads_are_refused_with_the_reason() {
        let ok = Spread::default();
        let e = Spread { tick_min: 20, ..ok }.validate().unwrap_err();
        assert_eq!(e, SpreadError::Tick(20));
        assert!(e.to_string().contains("15"));
        assert_eq!(
            Spread {
                full_window_min: 310,
                ..ok
            }
            .validate(),
            Err(SpreadError::Window(310))
        );
        assert_eq!(
            Spread {
                full_window_min: 0,
                ..ok
            }
            .validate(),
            Err(SpreadError::Window(0))
        );
        assert_eq!(
            Spread {
                price_period_min: 7 * 60,
                ..ok
            }
            .validate(),
            Err(SpreadError::Period(420))
        );
        assert_eq!(
            Spread {
                full_start_min: 1440,
                ..ok
            }
            .validate(),
            Err(SpreadError::Start(1440))
        );
    }

    #[test]
    fn slots_are_stable_and_below_one() {
        for id in ids(500) {
            let f = slot_fraction(&id);
            assert!((0.0..1.0).contains(&f), "{f}");
            assert_eq!(f, slot_fraction(&id));
        }
        assert_ne!(slot_fraction("a"), slot_fraction("b"));
    }

    #[test]
    fn every_connection_gets_exactly_one_full_run_a_night_and_one_price_run_a_period() {
        let s = Spread::default();
        for id in ids(300) {
            let got = day(&s, &id, "2025-06-01");
            let fulls: Vec<_> = got
                .iter()
                .filter(|(_, d)| d.kind == SlotKind::Full)
                .collect();
            // The window that opened at 22:00 the day before and the one opening at 22:00.
            let nights: std::collections::BTreeSet<_> =
                fulls.iter().map(|(_, d)| d.run_id.clone()).collect();
            assert_eq!(fulls.len(), nights.len(), "one run per night: {fulls:?}");
            assert!(fulls.len() <= 2);
            let prices: Vec<_> = got
                .iter()
                .filter(|(_, d)| d.kind == SlotKind::Prices)
                .collect();
            assert_eq!(prices.len(), 6, "{id}: {prices:?}");
            let periods: std::collections::BTreeSet<_> =
                prices.iter().map(|(_, d)| d.run_id.clone()).collect();
            assert_eq!(periods.len(), 6);
            for (t, d) in &got {
                assert!(d.delay < std::time::Duration::from_secs(15 * 60));
                // The start is exactly the connection's offset into its window.
                let start = *t + Duration::seconds(d.delay.as_secs() as i64);
                match d.kind {
                    SlotKind::Prices => {
                        let into = start.timestamp().rem_euclid(240 * 60);
                        assert_eq!(into, s.price_offset_s(&id));
                    }
                    SlotKind::Full => {
                        let into = (start.timestamp() - 22 * 3600).rem_euclid(86_400);
                        assert_eq!(into, s.full_offset_s(&id));
                        assert!(into < 5 * 3600);
                    }
                }
            }
        }
    }

    #[test]
    fn a_night_spanning_midnight_is_one_window_with_one_run_id() {
        let s = Spread::default();
        // Collect the full runs of the night 2025-06-01 22:00 → 2025-06-02 03:00.
        let mut runs = Vec::new();
        for id in ids(400) {
            for i in 0..(5 * 4) {
                let t = at("2025-06-01T22:00:00Z") + Duration::minutes(i * 15);
                for d in s.due(&id, t) {
                    if d.kind == SlotKind::Full {
                        runs.push((id.clone(), d.run_id));
                    }
                }
            }
        }
        assert_eq!(runs.len(), 400, "every connection once in the window");
        assert!(runs.iter().all(|(_, r)| r == "full-20250601"));
        // Outside the window nobody starts a full run.
        for id in ids(50) {
            let t = at("2025-06-02T12:00:00Z");
            assert!(s.due(&id, t).iter().all(|d| d.kind != SlotKind::Full));
        }
    }

    #[test]
    fn starts_are_spread_evenly_over_the_window() {
        let s = Spread::default();
        let n = 4000;
        let mut per_tick = [0usize; 20];
        for id in ids(n) {
            let tick = (s.full_offset_s(&id) / (15 * 60)) as usize;
            per_tick[tick] += 1;
        }
        let mean = n / 20;
        for (i, c) in per_tick.iter().enumerate() {
            // Within ±25% of the mean in every tick (binomial, 200 expected: σ ≈ 14).
            assert!(
                *c > mean * 3 / 4 && *c < mean * 5 / 4,
                "tick {i}: {c} of {n}"
            );
        }
    }

    #[test]
    fn a_tick_is_found_from_any_instant_inside_it() {
        let s = Spread::default();
        assert_eq!(
            s.tick_start(at("2025-06-01T22:29:59Z")),
            at("2025-06-01T22:15:00Z")
        );
        assert_eq!(
            s.tick_start(at("2025-06-01T22:30:00Z")),
            at("2025-06-01T22:30:00Z")
        );
        // A retried tick (seconds late) asks the same question and gets the same answer.
        let id = "0123456789abcdef0123456789abcdef";
        assert_eq!(
            s.due(id, at("2025-06-01T23:00:00Z")),
            s.due(id, at("2025-06-01T23:00:41Z"))
        );
    }

    #[test]
    fn a_full_run_id_names_the_end_of_its_window() {
        let s = Spread::default();
        let tick = Utc.with_ymd_and_hms(2025, 6, 2, 1, 30, 0).unwrap();
        let ids: Vec<String> = (0..200)
            .flat_map(|i| s.due(&format!("conn-{i}"), tick))
            .filter(|d| d.kind == SlotKind::Full)
            .map(|d| d.run_id)
            .collect();
        assert!(!ids.is_empty());
        for id in ids {
            // The window opened at 22:00 on the 1st and closes at 03:00 on the 2nd.
            assert_eq!(
                s.full_window_end(&id),
                Some(Utc.with_ymd_and_hms(2025, 6, 2, 3, 0, 0).unwrap())
            );
        }
        for bad in [
            "prices-20250601T0400",
            "full-2025061",
            "full-2025o601",
            "full-20251301",
            "full-+2025060",
            "",
            "full-",
        ] {
            assert_eq!(s.full_window_end(bad), None, "{bad}");
        }
    }

    #[test]
    fn price_run_ids_name_their_period() {
        let s = Spread::default();
        let id = ids(1).remove(0);
        let got = day(&s, &id, "2025-06-01");
        let ids: Vec<_> = got
            .iter()
            .filter(|(_, d)| d.kind == SlotKind::Prices)
            .map(|(_, d)| d.run_id.clone())
            .collect();
        assert_eq!(
            ids,
            [
                "prices-20250601T0000",
                "prices-20250601T0400",
                "prices-20250601T0800",
                "prices-20250601T1200",
                "prices-20250601T1600",
                "prices-20250601T2000"
            ]
        );
    }

    #[test]
    fn other_spreads_keep_the_once_per_window_rule() {
        for spread in [
            Spread {
                tick_min: 5,
                full_start_min: 0,
                full_window_min: 60,
                price_period_min: 60,
            },
            Spread {
                tick_min: 10,
                full_start_min: 23 * 60 + 30,
                full_window_min: 120,
                price_period_min: 120,
            },
        ] {
            spread.validate().unwrap();
            for id in ids(100) {
                let got = day(&spread, &id, "2025-01-10");
                let prices = got
                    .iter()
                    .filter(|(_, d)| d.kind == SlotKind::Prices)
                    .count();
                assert_eq!(prices as i64, DAY_MIN / spread.price_period_min);
                let fulls: std::collections::BTreeSet<_> = got
                    .iter()
                    .filter(|(_, d)| d.kind == SlotKind::Full)
                    .map(|(_, d)| d.run_id.clone())
                    .collect();
                let count = got.iter().filter(|(_, d)| d.kind == SlotKind::Full).count();
                assert_eq!(count, fulls.len());
                assert!((1..=2).contains(&count));
            }
        }
    }
}
