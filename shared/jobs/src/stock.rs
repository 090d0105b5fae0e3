//! The stock flush job: what the webhook receiver schedules (delayed by the coalescing window)
//! and stock-apply consumes. It names the connection and the window only: which offers to read
//! is in the pending set, never in the message, so a window carries any number of offers.
//! [`schedule_flush`] is the one way to queue it, used by both sides (the receiver on a
//! signal, stock-apply when a window ends with offers still pending).

use queue::{Outgoing, Queue};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use store::{StockStore, StoreError};

/// The flush job format version this build writes and reads.
pub const FLUSH_JOB_VERSION: u32 = 1;

/// Timing of windows and flushes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlushConfig {
    /// How long signals are collected before a flush reads them (the message delay).
    pub window: Duration,
    /// How long past its due time a scheduled window counts as live (queue and start-up
    /// latency); after that a receiver may schedule a new one.
    pub grace: Duration,
    /// How long a flush holds its window without renewing; must stay below the queue's
    /// visibility timeout, so a crashed flush's message comes back to an expired hold.
    pub lease: Duration,
    /// Work time per invocation; the rest continues in a window scheduled at once.
    pub budget: Duration,
}

impl Default for FlushConfig {
    fn default() -> Self {
        FlushConfig {
            window: Duration::from_secs(10),
            grace: Duration::from_secs(60),
            lease: Duration::from_secs(150),
            budget: Duration::from_secs(90),
        }
    }
}

/// Why a flush could not be scheduled; either way nothing is lost (the pending set is
/// durable) and the caller answers so that the signal is retried.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("the flush queue: {0}")]
    Queue(String),
}

/// Schedules a window for the connection unless one is live: the message first (delayed by
/// `delay`), then the window record. A message whose record loses the race finds another
/// live window on arrival and is dropped; a record never exists without its message, so a
/// crash between the two cannot strand the pending offers.
pub async fn schedule_flush(
    stock: &dyn StockStore,
    flushes: &dyn Queue,
    conn: &str,
    delay: Duration,
    grace: Duration,
) -> Result<(), ScheduleError> {
    let now = chrono::Utc::now().timestamp_millis();
    if stock.window(conn).await?.is_some_and(|w| w.is_live(now)) {
        return Ok(());
    }
    let job = FlushJob::new(conn);
    flushes
        .send(Outgoing::new(job.to_body()).delayed(delay))
        .await
        .map_err(|e| ScheduleError::Queue(e.to_string()))?;
    let until = now
        .saturating_add(millis(delay))
        .saturating_add(millis(grace));
    if !stock.schedule_window(conn, &job.window, until, now).await? {
        tracing::debug!(connection = %conn, "another window was scheduled meanwhile");
    }
    Ok(())
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlushJob {
    pub v: u32,
    pub connection_id: String,
    /// The window this message was scheduled for (`StockStore::schedule_window`).
    pub window: String,
}

#[derive(Debug, thiserror::Error)]
pub enum FlushJobError {
    #[error("the stock flush job is not valid JSON of the expected shape: {0}")]
    Malformed(String),
    #[error("stock flush job version {0} is not supported (this build reads {FLUSH_JOB_VERSION})")]
    Version(u32),
}

impl FlushJob {
    pub fn new(connection_id: &str) -> Self {
        FlushJob {
            v: FLUSH_JOB_VERSION,
            connection_id: connection_id.to_string(),
            window: uuid::Uuid::new_v4().simple().to_string(),
        }
    }

    pub fn to_body(&self) -> String {
        // Three plain fields always serialize.
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn parse(body: &str) -> Result<FlushJob, FlushJobError> {
        let job: FlushJob =
            serde_json::from_str(body).map_err(|e| FlushJobError::Malformed(e.to_string()))?;
        if job.v != FLUSH_JOB_VERSION {
            return Err(FlushJobError::Version(job.v));
        }
        Ok(job)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_a_fresh_window() {
        let a = FlushJob::new("c1");
        let b = FlushJob::new("c1");
        assert_ne!(a.window, b.window);
        assert_eq!(FlushJob::parse(&a.to_body()).unwrap(), a);
        assert!(a.to_body().len() < 120);
    }

    #[test]
    fn refuses_garbage_and_other_versions() {
        assert!(matches!(
            FlushJob::parse("[]"),
            Err(FlushJobError::Malformed(_))
        ));
        assert!(matches!(
            FlushJob::parse(r#"{"v":2,"connection_id":"c","window":"w"}"#),
            Err(FlushJobError::Version(2))
        ));
    }
}
