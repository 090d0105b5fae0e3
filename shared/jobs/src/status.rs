//! The status-update job: what the webhook receiver hands to status-apply through the
//! status queue. Compact on purpose: only what resolving, ordering and mapping need, never
//! the token, never the rest of the KeyCRM row.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use store::Target;

/// The job format version this build writes and reads.
pub const JOB_VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatusJob {
    pub v: u32,
    pub connection_id: String,
    /// `order` for `order.change_order_status`, `card` for `lead.change_lead_status`.
    pub target: Target,
    /// KeyCRM order or card id (`context.id`).
    pub keycrm_id: i64,
    /// The new KeyCRM status (order status, or pipeline status for cards).
    pub status_id: i64,
    /// Cards only: the pipeline the status belongs to, when KeyCRM says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline_id: Option<i64>,
    /// `context.status_changed_at`: orders events for one KeyCRM entity.
    pub changed_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_id: Option<i64>,
    /// The shop order id when the KeyCRM order came from this connector (or a compatible
    /// integration using the same source).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_uuid: Option<String>,
    pub received_at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("the status job is not valid JSON of the expected shape: {0}")]
    Malformed(String),
    #[error("status job version {0} is not supported (this build reads {JOB_VERSION})")]
    Version(u32),
}

impl StatusJob {
    pub fn to_body(&self) -> String {
        // A struct of strings, numbers and timestamps always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn parse(body: &str) -> Result<StatusJob, JobError> {
        let job: StatusJob =
            serde_json::from_str(body).map_err(|e| JobError::Malformed(e.to_string()))?;
        if job.v != JOB_VERSION {
            return Err(JobError::Version(job.v));
        }
        Ok(job)
    }

    /// The time that orders this change against the order's other changes: KeyCRM's
    /// `status_changed_at`, unless it lies further after the moment the webhook reached us
    /// than clocks can disagree ([`store::ledger::MAX_CLOCK_SKEW`]). A change cannot happen
    /// after it was reported, so such a time (a broken clock, a forged `9999-…`) is replaced
    /// by the receive time: it can neither jump ahead of every later real change nor lock
    /// the order against them.
    pub fn ordering_time(&self) -> DateTime<Utc> {
        let latest = store::ledger::lease_end(self.received_at, store::ledger::MAX_CLOCK_SKEW);
        if self.changed_at > latest {
            self.received_at
        } else {
            self.changed_at
        }
    }

    /// A short description for logs and dead letters (no secrets in a job).
    pub fn describe(&self) -> String {
        format!(
            "KeyCRM {} {} -> status {} (changed {})",
            self.target.as_str(),
            self.keycrm_id,
            self.status_id,
            keycrm_model::time::format_live(self.changed_at)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn job() -> StatusJob {
        StatusJob {
            v: JOB_VERSION,
            connection_id: "c1".into(),
            target: Target::Card,
            keycrm_id: 13898,
            status_id: 1002,
            pipeline_id: Some(1),
            changed_at: Utc.with_ymd_and_hms(2026, 3, 19, 10, 0, 0).unwrap(),
            source_id: Some(4),
            source_uuid: None,
            received_at: Utc.with_ymd_and_hms(2026, 3, 19, 10, 0, 1).unwrap(),
        }
    }

    #[test]
    fn round_trips_and_stays_compact() {
        let j = job();
        let body = j.to_body();
        assert!(body.len() < 300, "{body}");
        assert!(
            !body.contains("source_uuid"),
            "absent optionals are not sent"
        );
        assert_eq!(StatusJob::parse(&body).unwrap(), j);
    }

    #[test]
    fn change_times_in_the_future_are_clamped_to_the_receive_time() {
        let mut j = job();
        assert_eq!(j.ordering_time(), j.changed_at, "an ordinary time stands");
        // A little ahead (clock skew) stands too.
        j.changed_at = j.received_at + chrono::Duration::seconds(120);
        assert_eq!(j.ordering_time(), j.changed_at);
        for far in [
            j.received_at + chrono::Duration::hours(2),
            Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap(),
            DateTime::<Utc>::MAX_UTC,
        ] {
            j.changed_at = far;
            assert_eq!(j.ordering_time(), j.received_at, "{far}");
        }
    }

    #[test]
    fn rejects_garbage_and_other_versions() {
        assert!(matches!(StatusJob::parse("{"), Err(JobError::Malformed(_))));
        assert!(matches!(
            StatusJob::parse(r#"{"v":1,"connection_id":"c"}"#),
            Err(JobError::Malformed(_))
        ));
        let mut j = job();
        j.v = 2;
        assert!(matches!(
            StatusJob::parse(&j.to_body()),
            Err(JobError::Version(2))
        ));
    }
}
