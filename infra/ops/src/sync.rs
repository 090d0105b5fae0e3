//! `ops sync SHOP [--dry-run] [--kind full|prices]`: starts a catalog sync now, as the
//! merchant's "sync now" does: a run report exists at once (state `queued`, `ops runs SHOP`
//! follows it) and catalog-sync picks the job up from the sync-jobs queue.

use crate::cli::{QueueArg, SyncKindArg};
use crate::error::OpsError;
use crate::inspect::require_connection;
use crate::{Ops, Output};
use chrono::Utc;
use queue::{Outgoing, Queue};
use serde_json::json;
use store::{SyncJob, SyncKind, SyncRun, SyncStore};

pub async fn start(
    ops: &Ops,
    shop: &str,
    kind: SyncKindArg,
    dry_run: bool,
) -> Result<Output, OpsError> {
    let conn = require_connection(ops, shop).await?;
    let kind = match kind {
        SyncKindArg::Full => SyncKind::Full,
        SyncKindArg::Prices => SyncKind::Prices,
    };
    if !conn.active {
        return Err(OpsError::Failed(format!(
            "the connection of shop {} is inactive: the merchant switches it on first (a dry run \
             of an inactive connection is not started either)",
            conn.shop_id
        )));
    }
    let enabled = conn.settings.catalog_sync_enabled(kind.into());
    if !enabled && !dry_run {
        return Err(OpsError::Failed(format!(
            "{} sync is turned off in shop {}'s settings; ask for --dry-run to preview it",
            kind.as_str(),
            conn.shop_id
        )));
    }
    let queue = ops.target.queue(QueueArg::Sync, false).await?;
    let table = ops.table().await?;
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let job = SyncJob {
        connection_id: conn.id.clone(),
        kind,
        dry_run,
        requested_by: store::RequestedBy::Operator,
        run_id: Some(run_id.clone()),
    };
    let body = serde_json::to_string(&job)
        .map_err(|e| OpsError::Failed(format!("could not encode the sync job: {e}")))?;
    // The report exists from the start; catalog-sync replaces it when the run begins.
    table
        .put_run(&SyncRun {
            run_id: run_id.clone(),
            connection_id: conn.id.clone(),
            kind: Some(kind),
            dry_run,
            state: store::RunState::Queued,
            started_at: Some(Utc::now()),
            message: Some("started by an operator".into()),
            ..SyncRun::default()
        })
        .await?;
    queue.send(Outgoing::new(body)).await?;
    let text = format!(
        "{} {}sync of shop {} queued as run {run_id}\nfollow it with: ops runs {}\n",
        kind.as_str(),
        if dry_run { "dry-run " } else { "" },
        conn.shop_id,
        conn.shop_id
    );
    Ok(Output {
        text,
        json: json!({"run_id": run_id, "shop_id": conn.shop_id, "connection_id": conn.id,
                     "kind": kind, "dry_run": dry_run, "state": "queued"}),
    })
}
