//! How long to defer a message that cannot be processed right now, and when to give up.
//!
//! Deferral sends a delayed copy of the message (attribute `attempt` = n + 1) and
//! acknowledges the original, so SQS's receive count never pushes a rate-limited order into
//! the dead-letter queue. The delay doubles from `base` up to `max_delay` (SQS caps a delay
//! at 15 minutes), is never shorter than a `Retry-After` KeyCRM asked for, and carries up to
//! 20% jitter so deferred orders of many shops do not come back together. After
//! `max_attempts` deliveries the message is dead-lettered with "retries exhausted"; with the
//! defaults that is 30 attempts spanning about six and a half hours.

use rand::Rng;
use std::time::Duration;

/// The message attribute carrying the delivery attempt (1 when absent).
pub const ATTEMPT_ATTRIBUTE: &str = "attempt";

#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    pub base: Duration,
    pub max_delay: Duration,
    /// Deliveries in total before a deferred message is dead-lettered.
    pub max_attempts: u32,
    /// Wait before looking again at an order another attempt is creating right now.
    pub busy_delay: Duration,
    /// Deliveries of a status change for an order the ledger does not know (its
    /// `order.created` may still be on the way) before it is dropped as not ours.
    pub unknown_order_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_secs(30),
            max_delay: queue::MAX_DELAY,
            max_attempts: 30,
            busy_delay: Duration::from_secs(30),
            unknown_order_attempts: 6,
        }
    }
}

impl RetryPolicy {
    /// The delay before delivery `attempt + 1`, given what KeyCRM asked for.
    pub fn delay(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        rng: &mut impl Rng,
    ) -> Duration {
        let exp = self
            .base
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1).min(16)));
        let mut d = exp.min(self.max_delay);
        if let Some(ra) = retry_after {
            d = d.max(ra);
        }
        let jitter_ms = (d.as_millis() as u64) / 5;
        if jitter_ms > 0 {
            d += Duration::from_millis(rng.gen_range(0..=jitter_ms));
        }
        d.min(self.max_delay.max(retry_after.unwrap_or_default()))
    }

    /// Whether a message on delivery `attempt` may still be deferred.
    pub fn may_defer(&self, attempt: u32) -> bool {
        attempt < self.max_attempts
    }

    /// The total time the schedule spans before giving up (without jitter).
    pub fn span(&self) -> Duration {
        (1..self.max_attempts).fold(Duration::ZERO, |acc, a| {
            let exp = self
                .base
                .saturating_mul(2u32.saturating_pow((a - 1).min(16)));
            acc + exp.min(self.max_delay)
        })
    }
}

/// The attempt number a message carries.
pub fn attempt_of(msg: &queue::Message) -> u32 {
    msg.attribute(ATTEMPT_ATTRIBUTE)
        .and_then(|v| v.parse().ok())
        .filter(|n| *n >= 1)
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn doubles_up_to_the_sqs_cap_and_spans_hours() {
        let p = RetryPolicy::default();
        let mut rng = StdRng::seed_from_u64(1);
        let d1 = p.delay(1, None, &mut rng);
        assert!(
            d1 >= Duration::from_secs(30) && d1 <= Duration::from_secs(36),
            "{d1:?}"
        );
        let d3 = p.delay(3, None, &mut rng);
        assert!(
            d3 >= Duration::from_secs(120) && d3 <= Duration::from_secs(144),
            "{d3:?}"
        );
        assert_eq!(p.delay(20, None, &mut rng), queue::MAX_DELAY);
        assert!(p.span() >= Duration::from_secs(6 * 3600), "{:?}", p.span());
        assert!(p.may_defer(29) && !p.may_defer(30));
    }

    #[test]
    fn retry_after_is_a_floor() {
        let p = RetryPolicy::default();
        let mut rng = StdRng::seed_from_u64(2);
        assert!(p.delay(1, Some(Duration::from_secs(90)), &mut rng) >= Duration::from_secs(90));
    }

    #[test]
    fn attempt_defaults_to_one() {
        let mut m = queue::Message {
            id: "m".into(),
            body: String::new(),
            receipt: "r".into(),
            receive_count: 3,
            attributes: Default::default(),
        };
        assert_eq!(attempt_of(&m), 1);
        m.attributes.insert(ATTEMPT_ATTRIBUTE.into(), "4".into());
        assert_eq!(attempt_of(&m), 4);
        m.attributes.insert(ATTEMPT_ATTRIBUTE.into(), "junk".into());
        assert_eq!(attempt_of(&m), 1);
    }
}
