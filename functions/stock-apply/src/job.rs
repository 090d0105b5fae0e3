//! The flush job: what the webhook receiver schedules (delayed by the coalescing window) and
//! stock-apply consumes. It names the connection and the window only: which offers to read
//! is in the pending set, never in the message, so a window carries any number of offers.

use serde::{Deserialize, Serialize};

/// The job format version this build writes and reads.
pub const JOB_VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlushJob {
    pub v: u32,
    pub connection_id: String,
    /// The window this message was scheduled for (`StockStore::schedule_window`).
    pub window: String,
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("the stock flush job is not valid JSON of the expected shape: {0}")]
    Malformed(String),
    #[error("stock flush job version {0} is not supported (this build reads {JOB_VERSION})")]
    Version(u32),
}

impl FlushJob {
    pub fn new(connection_id: &str) -> Self {
        FlushJob {
            v: JOB_VERSION,
            connection_id: connection_id.to_string(),
            window: uuid::Uuid::new_v4().simple().to_string(),
        }
    }

    pub fn to_body(&self) -> String {
        // Three plain fields always serialize.
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn parse(body: &str) -> Result<FlushJob, JobError> {
        let job: FlushJob =
            serde_json::from_str(body).map_err(|e| JobError::Malformed(e.to_string()))?;
        if job.v != JOB_VERSION {
            return Err(JobError::Version(job.v));
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
        assert!(matches!(FlushJob::parse("[]"), Err(JobError::Malformed(_))));
        assert!(matches!(
            FlushJob::parse(r#"{"v":2,"connection_id":"c","window":"w"}"#),
            Err(JobError::Version(2))
        ));
    }
}
