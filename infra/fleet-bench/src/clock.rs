//! The bench's clock: KeyCRM time runs `scale` times faster than real time (the simulator, the
//! rate gate and every duration handed to the handlers use the same scale).

use chrono::{DateTime, Utc};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug)]
pub struct Clock {
    start: Instant,
    /// KeyCRM (virtual) time at `start`.
    t0: DateTime<Utc>,
    pub scale: f64,
}

impl Clock {
    pub fn new(t0: DateTime<Utc>, scale: f64) -> Self {
        Clock {
            start: Instant::now(),
            t0,
            scale,
        }
    }

    /// The virtual time now.
    pub fn now(&self) -> DateTime<Utc> {
        self.at(Instant::now())
    }

    /// The virtual time of a real instant.
    pub fn at(&self, i: Instant) -> DateTime<Utc> {
        let real = i.saturating_duration_since(self.start);
        let virt = real.as_secs_f64() * self.scale;
        self.t0 + chrono::Duration::microseconds((virt * 1e6) as i64)
    }

    /// A virtual duration in real time.
    pub fn real(&self, virt: Duration) -> Duration {
        Duration::from_secs_f64(virt.as_secs_f64() / self.scale)
    }

    /// A real duration in virtual time.
    pub fn virt(&self, real: Duration) -> Duration {
        Duration::from_secs_f64(real.as_secs_f64() * self.scale)
    }

    /// Sleeps until the virtual instant `t`.
    pub async fn sleep_until(&self, t: DateTime<Utc>) {
        let ahead = (t - self.now()).num_microseconds().unwrap_or(0);
        if ahead > 0 {
            tokio::time::sleep(self.real(Duration::from_micros(ahead as u64))).await;
        }
    }

    pub fn t0(&self) -> DateTime<Utc> {
        self.t0
    }
}
