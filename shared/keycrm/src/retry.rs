//! When and how long to wait before repeating an idempotent read.

use crate::KeycrmError;
use rand::Rng;
use std::time::Duration;

#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in total, the first one included.
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// The longest `Retry-After` we are willing to sleep through inside one call; longer
    /// ones are handed to the caller (which can defer the work instead of holding a Lambda).
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(65),
        }
    }
}

impl RetryPolicy {
    /// No retries: every failure goes straight to the caller.
    pub fn none() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// Exponential backoff with full jitter: uniform in `[0, min(max, base * 2^attempt))`,
    /// so that many callers failing together do not retry together.
    pub fn backoff(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(attempt.min(20)));
        let ceiling = exp.min(self.max_delay);
        if ceiling.is_zero() {
            return Duration::ZERO;
        }
        Duration::from_micros(rng.gen_range(0..ceiling.as_micros().max(1) as u64))
    }

    /// The delay before attempt `attempt + 1` after `err`, or `None` to give up.
    /// A server-given `Retry-After` is honoured as a floor.
    pub fn delay_after(
        &self,
        attempt: u32,
        err: &KeycrmError,
        rng: &mut impl Rng,
    ) -> Option<Duration> {
        if attempt + 1 >= self.max_attempts || !err.is_retryable() {
            return None;
        }
        let jitter = self.backoff(attempt, rng);
        match err.retry_after() {
            Some(ra) if ra > self.max_retry_after => None,
            Some(ra) => Some(ra + jitter / 4),
            None => Some(jitter),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn transient() -> KeycrmError {
        KeycrmError::Transient {
            status: Some(503),
            detail: "x".into(),
            maybe_committed: false,
        }
    }

    #[test]
    fn full_jitter_stays_under_the_exponential_ceiling() {
        let p = RetryPolicy::default();
        let mut rng = StdRng::seed_from_u64(7);
        for attempt in 0..8 {
            let ceiling = (p.base_delay * 2u32.pow(attempt)).min(p.max_delay);
            for _ in 0..200 {
                assert!(p.backoff(attempt, &mut rng) < ceiling);
            }
        }
    }

    #[test]
    fn jitter_actually_spreads() {
        let p = RetryPolicy::default();
        let mut rng = StdRng::seed_from_u64(1);
        let delays: std::collections::HashSet<u128> = (0..50)
            .map(|_| p.backoff(3, &mut rng).as_millis())
            .collect();
        assert!(delays.len() > 20);
    }

    #[test]
    fn retry_after_is_a_floor() {
        let p = RetryPolicy::default();
        let mut rng = StdRng::seed_from_u64(2);
        let err = KeycrmError::RateLimited {
            retry_after: Duration::from_secs(3),
        };
        let d = p.delay_after(0, &err, &mut rng).unwrap();
        assert!(d >= Duration::from_secs(3));
    }

    #[test]
    fn gives_up_on_permanent_errors_and_after_the_last_attempt() {
        let p = RetryPolicy::default();
        let mut rng = StdRng::seed_from_u64(3);
        assert!(p
            .delay_after(0, &KeycrmError::Unauthorized, &mut rng)
            .is_none());
        assert!(p.delay_after(0, &transient(), &mut rng).is_some());
        assert!(p
            .delay_after(p.max_attempts - 1, &transient(), &mut rng)
            .is_none());
        let long = KeycrmError::RateLimited {
            retry_after: Duration::from_secs(600),
        };
        assert!(p.delay_after(0, &long, &mut rng).is_none());
    }
}
