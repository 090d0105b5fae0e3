//! A run in progress within one invocation, and the helpers every phase shares.
//!
//! The layering is one way: the phases (`full/`, `prices`, `drift`) and the driver (`engine`)
//! both build on this module, [`crate::config`] and [`crate::error`]; none of those three
//! knows about the phases or the driver.

use crate::checkpoint::Checkpoint;
use crate::config::{Config, Deps};
use crate::error::SyncError;
use crate::report;
use keycrm::KeycrmClient;
use mapping::catalog::CategoryLink;
use mapping::Settings;
use shop::ShopCatalog;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use store::{Connection, LinkStore, StoreError, SyncKind, SyncLease, SyncRun};

/// One unit of work done (the checkpoint is saved after each).
pub(crate) enum Step {
    Continue,
}

/// A run in progress within one invocation.
pub(crate) struct Run<'a> {
    pub deps: &'a Deps,
    pub cfg: &'a Config,
    pub conn: Connection,
    pub client: KeycrmClient,
    pub cp: Checkpoint,
    pub report: SyncRun,
    pub lease: SyncLease,
    pub deadline: Instant,
    /// Units of KeyCRM work done in this invocation.
    pub units: u32,
    /// When this invocation started on the run (time slices count from here).
    pub(crate) started: Instant,
    pub(crate) req_base: u64,
    pub(crate) saves: u32,
    /// When the checkpoint was last saved (or the run taken up in this invocation).
    pub(crate) saved_at: Instant,
    pub cat_links: BTreeMap<i64, CategoryLink>,
    pub resolver: Option<mapping::catalog::Matcher>,
    pub seen: Option<store::SeenSet>,
    /// Links read by the price run in this invocation, so a stock chunk needs no re-read.
    pub price_links: std::collections::HashMap<i64, mapping::catalog::ProductLink>,
    /// Every reverse pointer (shop product → KeyCRM product), read once by the drift repair
    /// in this invocation.
    pub owners: Option<std::sync::Arc<std::collections::HashMap<String, i64>>>,
    /// When the connection was last seen to exist (a deleted one stops the run).
    pub(crate) checked_at: Instant,
    pub(crate) links_scope: String,
}

impl Run<'_> {
    /// The link-store scope of the KeyCRM account the connection uses now (links of an
    /// account the connection switched away from are never read).
    pub fn links_id(&self) -> &str {
        &self.links_scope
    }

    pub fn shop_id(&self) -> &str {
        &self.conn.shop_id
    }

    pub fn links(&self) -> &dyn LinkStore {
        self.deps.links.as_ref()
    }

    pub fn shop(&self) -> &dyn ShopCatalog {
        self.deps.shop.as_ref()
    }

    pub fn settings(&self) -> &Settings {
        &self.cp.settings
    }

    /// Whether another unit of work fits in this invocation (and its time slice).
    pub(crate) fn time_left(&self) -> bool {
        Instant::now() + self.cfg.safety < self.deadline
            && self.cfg.max_units.is_none_or(|m| self.units < m)
            && self.cfg.slice.is_none_or(|s| self.started.elapsed() < s)
    }

    pub(crate) fn count_requests(&mut self) {
        let now = self.client.stats().requests;
        self.report.keycrm_requests += now.saturating_sub(self.req_base);
        self.req_base = now;
    }

    /// Whether the unit just done is saved now (`Config::checkpoint_every`). A run's first
    /// unit is always saved: a lease without a checkpoint is not one the resume tick finds.
    pub(crate) fn checkpoint_due(&self) -> bool {
        self.cfg.checkpoint_every.is_zero()
            || self.lease.checkpoint.is_none()
            || self.saved_at.elapsed() >= self.cfg.checkpoint_every
    }

    pub(crate) fn lease_for(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now()) + self.cfg.lease_slack
    }

    /// Saves the checkpoint and extends the lease; `LeaseLost` if another holder took it.
    pub async fn save(&mut self) -> Result<(), SyncError> {
        self.count_requests();
        self.lease.checkpoint = Some(encode(&self.cp)?);
        self.lease.run = Some(self.report.clone());
        self.lease = self
            .deps
            .sync
            .checkpoint(&self.lease, self.lease_for())
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => SyncError::LeaseLost,
                other => SyncError::Store(other),
            })?;
        self.saves += 1;
        self.saved_at = Instant::now();
        // The report the admin API reads is refreshed every so often during a long run: every
        // 20 saves when each unit is saved, every 4th when saves are spaced in time (about
        // every 2 minutes on Lambda).
        let every = if self.cfg.checkpoint_every.is_zero() {
            20
        } else {
            4
        };
        if self.saves.is_multiple_of(every) {
            self.deps.sync.put_run(&self.report).await?;
        }
        Ok(())
    }
}

pub(crate) fn encode(cp: &Checkpoint) -> Result<String, SyncError> {
    serde_json::to_string(cp).map_err(|e| SyncError::Store(StoreError::Corrupt(e.to_string())))
}

/// Deletes every staged product of the connection (scratch of an earlier run).
pub(crate) async fn clear_staged(links: &dyn LinkStore, conn: &str) -> Result<(), SyncError> {
    loop {
        let (page, _) = links.staged_page(conn, None, 500).await?;
        if page.is_empty() {
            return Ok(());
        }
        let ids: Vec<i64> = page.iter().map(|p| p.id).collect();
        links.delete_staged(conn, &ids).await?;
    }
}

/// Shorthand for report items about a product.
pub(crate) fn product_item(
    id: i64,
    shop: Option<&str>,
    name: &str,
    detail: Option<String>,
) -> store::ReportItem {
    report::item(Some(id), shop, name, detail)
}

/// Whether the settings turn a sync of this kind on: `mapping`'s one rule, for the store's
/// job kind (the fan-out asks it before queueing a job, the engine before running one).
pub(crate) fn sync_enabled(s: &Settings, kind: SyncKind) -> bool {
    s.catalog_sync_enabled(kind.into())
}
