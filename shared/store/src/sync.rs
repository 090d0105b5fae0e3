//! Catalog sync state: jobs, the per-connection lease that keeps runs from overlapping, the
//! checkpoint that lets a run continue in the next invocation, and run reports.
//!
//! Adapters: `DynamoTable` (`CONN#{connection}` / `SYNC#{kind}` for lease + checkpoint,
//! `CONN#{connection}` / `RUN#{started_at}#{run_id}` for reports, with a TTL) and memory.

use crate::StoreError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

mod dynamo;
mod memory;

pub use memory::MemorySync;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncKind {
    /// Categories and products.
    Full,
    /// Prices and availability of linked products.
    Prices,
}

impl SyncKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncKind::Full => "full",
            SyncKind::Prices => "prices",
        }
    }
}

/// The kind as `mapping`'s "is this sync on" rule names it
/// ([`mapping::Settings::catalog_sync_enabled`]).
impl From<SyncKind> for mapping::CatalogSyncKind {
    fn from(kind: SyncKind) -> Self {
        match kind {
            SyncKind::Full => mapping::CatalogSyncKind::Full,
            SyncKind::Prices => mapping::CatalogSyncKind::Prices,
        }
    }
}

/// A request to sync one connection: the message on the sync-jobs queue, and the on-demand
/// request from the admin API. JSON: `{"connection_id","kind","dry_run","requested_by","run_id"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncJob {
    pub connection_id: String,
    pub kind: SyncKind,
    #[serde(default)]
    pub dry_run: bool,
    /// Who asked for the run. Absent in a job means the schedule (as before the enum).
    #[serde(default)]
    pub requested_by: RequestedBy,
    /// Set by the admin API so the merchant can poll the run's report.
    #[serde(default)]
    pub run_id: Option<String>,
}

/// Who asked for a sync job. Stored and sent as the snake_case names (`"merchant"`…), the
/// strings the field held before it was an enum.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestedBy {
    /// The hourly schedule's fan-out.
    #[default]
    Schedule,
    /// The merchant on the settings page.
    Merchant,
    /// An operator with `ops sync`.
    Operator,
    /// The resume schedule continuing a paused run.
    Resume,
}

impl RequestedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestedBy::Schedule => "schedule",
            RequestedBy::Merchant => "merchant",
            RequestedBy::Operator => "operator",
            RequestedBy::Resume => "resume",
        }
    }

    /// A run someone asked for now (merchant or operator), as opposed to a scheduled one.
    pub fn on_demand(self) -> bool {
        matches!(self, RequestedBy::Merchant | RequestedBy::Operator)
    }
}

/// Where a run is. Stored as the snake_case names (`"completed"`…), the strings the field
/// held before it was an enum.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Asked for (by the merchant or an operator) and not started yet.
    #[default]
    Queued,
    Running,
    Completed,
    Failed,
    /// The vanish guard refused to hide most of the shop's products.
    Refused,
    /// Not run (the connection is inactive or the sync is off).
    Skipped,
    /// Ended by the connection's deletion.
    Deleted,
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Queued => "queued",
            RunState::Running => "running",
            RunState::Completed => "completed",
            RunState::Failed => "failed",
            RunState::Refused => "refused",
            RunState::Skipped => "skipped",
            RunState::Deleted => "deleted",
        }
    }

    /// Whether the run has ended (it will not change again).
    pub fn finished(self) -> bool {
        !matches!(self, RunState::Queued | RunState::Running)
    }
}

macro_rules! wire_name {
    ($t:ty) => {
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.pad(self.as_str())
            }
        }
        /// Compares with the wire name (`state == "completed"`), as reports and jobs are read.
        impl PartialEq<&str> for $t {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }
        impl PartialEq<str> for $t {
            fn eq(&self, other: &str) -> bool {
                self.as_str() == other
            }
        }
    };
}
wire_name!(RequestedBy);
wire_name!(RunState);

/// A sample entry of a run report (what was or would be created, updated, hidden…).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportItem {
    pub keycrm_id: Option<i64>,
    pub shop_id: Option<String>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// One run's report, kept for the admin API.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SyncRun {
    pub run_id: String,
    pub connection_id: String,
    pub kind: Option<SyncKind>,
    pub dry_run: bool,
    pub state: RunState,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// create, update, hide, make_unavailable, unchanged, ambiguous, price_changed, errors…
    pub counts: BTreeMap<String, u64>,
    /// Up to a few items per count, for previews.
    pub samples: BTreeMap<String, Vec<ReportItem>>,
    /// Per-item errors (bounded).
    pub errors: Vec<ReportItem>,
    pub keycrm_requests: u64,
    pub invocations: u32,
    #[serde(default)]
    pub message: Option<String>,
}

/// A held lease plus the run's saved position.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SyncLease {
    pub connection_id: String,
    pub kind: SyncKind,
    pub holder: String,
    pub until: DateTime<Utc>,
    /// The run in progress, if any (a run spans invocations until complete).
    pub run: Option<SyncRun>,
    /// Opaque checkpoint of the run in progress (JSON owned by catalog-sync).
    pub checkpoint: Option<String>,
}

#[async_trait]
pub trait SyncStore: Send + Sync {
    /// Takes the (connection, kind) lease if free or expired; `None` if another holder has it.
    async fn acquire(
        &self,
        connection_id: &str,
        kind: SyncKind,
        holder: &str,
        lease: Duration,
    ) -> Result<Option<SyncLease>, StoreError>;
    /// Saves progress and extends the lease; `Conflict` if the lease was lost.
    async fn checkpoint(
        &self,
        lease: &SyncLease,
        extend_by: Duration,
    ) -> Result<SyncLease, StoreError>;
    /// Ends the run: clears the checkpoint and frees the lease.
    async fn finish(&self, lease: &SyncLease) -> Result<(), StoreError>;
    /// Frees the lease but keeps the checkpoint (the run continues in a later invocation).
    async fn pause(&self, lease: &SyncLease) -> Result<(), StoreError>;
    /// Runs with a saved checkpoint whose lease has expired and whose continuation is not
    /// marked as queued (no mark, or its time has passed), for the resume schedule.
    async fn unfinished(&self, limit: usize) -> Result<Vec<(String, SyncKind)>, StoreError>;
    /// Marks the run's continuation as queued until `until`, so the resume schedule does not
    /// queue the run again while it waits in the queue (however long that takes beyond the
    /// lease). With `holder` (a hand-off): only while that holder has the lease. Without (the
    /// resume schedule's claim): only for a run with a checkpoint whose lease has expired and
    /// that carries no live mark. Returns whether the mark was written. Acquiring the lease
    /// (the queued job consumed) and pausing the run clear it.
    async fn mark_queued(
        &self,
        connection_id: &str,
        kind: SyncKind,
        holder: Option<&str>,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Removes the mark written with `until` (its job could not be sent after all); a newer
    /// mark is left alone.
    async fn clear_queued(
        &self,
        connection_id: &str,
        kind: SyncKind,
        until: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    async fn put_run(&self, run: &SyncRun) -> Result<(), StoreError>;
    async fn get_run(
        &self,
        connection_id: &str,
        run_id: &str,
    ) -> Result<Option<SyncRun>, StoreError>;
    /// Newest first.
    async fn list_runs(
        &self,
        connection_id: &str,
        limit: usize,
    ) -> Result<Vec<SyncRun>, StoreError>;
}

#[cfg(test)]
mod wire_tests {
    use super::*;

    #[test]
    fn states_and_requesters_keep_their_stored_strings() {
        for (state, wire) in [
            (RunState::Queued, "queued"),
            (RunState::Running, "running"),
            (RunState::Completed, "completed"),
            (RunState::Failed, "failed"),
            (RunState::Refused, "refused"),
            (RunState::Skipped, "skipped"),
            (RunState::Deleted, "deleted"),
        ] {
            let json = serde_json::to_string(&state).unwrap();
            assert_eq!(json, format!("\"{wire}\""));
            assert_eq!(serde_json::from_str::<RunState>(&json).unwrap(), state);
            assert_eq!(state.to_string(), wire);
        }
        for (by, wire) in [
            (RequestedBy::Schedule, "schedule"),
            (RequestedBy::Merchant, "merchant"),
            (RequestedBy::Operator, "operator"),
            (RequestedBy::Resume, "resume"),
        ] {
            let json = serde_json::to_string(&by).unwrap();
            assert_eq!(json, format!("\"{wire}\""));
            assert_eq!(serde_json::from_str::<RequestedBy>(&json).unwrap(), by);
        }
    }

    #[test]
    fn a_job_written_before_the_enums_reads_the_same() {
        let plain = r#"{"connection_id":"c1","kind":"full","dry_run":true,"requested_by":"merchant","run_id":"r1"}"#;
        let job: SyncJob = serde_json::from_str(plain).unwrap();
        assert_eq!(job.requested_by, RequestedBy::Merchant);
        assert!(job.requested_by.on_demand());
        assert_eq!(serde_json::to_string(&job).unwrap(), plain);
        // A job without the field (the schedule's) is the schedule's.
        let bare: SyncJob =
            serde_json::from_str(r#"{"connection_id":"c1","kind":"prices"}"#).unwrap();
        assert_eq!(bare.requested_by, RequestedBy::Schedule);
        assert!(!bare.requested_by.on_demand());
        // A stored report keeps its state string.
        let run = SyncRun {
            run_id: "r1".into(),
            state: RunState::Refused,
            ..SyncRun::default()
        };
        let v = serde_json::to_value(&run).unwrap();
        assert_eq!(v["state"], "refused");
        assert_eq!(serde_json::from_value::<SyncRun>(v).unwrap(), run);
    }
}

#[cfg(test)]
mod kind_tests {
    use super::SyncKind;
    use mapping::{CatalogSyncKind, Settings};

    #[test]
    fn a_job_kind_asks_the_rule_about_the_same_kind() {
        assert_eq!(CatalogSyncKind::from(SyncKind::Full), CatalogSyncKind::Full);
        assert_eq!(
            CatalogSyncKind::from(SyncKind::Prices),
            CatalogSyncKind::Prices
        );
        // Categories on, products off: a full run has work, a price run has none.
        let s = Settings {
            sync_products: false,
            sync_categories: true,
            ..Settings::default()
        };
        assert!(s.catalog_sync_enabled(SyncKind::Full.into()));
        assert!(!s.catalog_sync_enabled(SyncKind::Prices.into()));
    }
}
