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
    /// `schedule`, `merchant`, `operator` (`ops sync`) or `resume`.
    #[serde(default)]
    pub requested_by: String,
    /// Set by the admin API so the merchant can poll the run's report.
    #[serde(default)]
    pub run_id: Option<String>,
}

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
    /// `running`, `completed`, `failed`, `refused` (vanish guard), `skipped` (inactive).
    pub state: String,
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
    /// Runs with a saved checkpoint, for the resume schedule.
    async fn unfinished(&self, limit: usize) -> Result<Vec<(String, SyncKind)>, StoreError>;
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
