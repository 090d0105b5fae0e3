//! The background half of deleting a connection (`DELETE /connection` only marks it and
//! frees the shop). A sync-jobs message `{"job":"delete_connection","connection_id":"…"}`, or
//! the resume schedule finding the mark, runs it:
//!
//! 1. wait until [`Config::cleanup_grace`] has passed since the deletion, so invocations that
//!    read the connection just before it was marked have finished;
//! 2. take the connection's sync lease (a sync that was running notices the deletion at its
//!    next check and stops), so no sync writes links while they are removed;
//! 3. delete the connection's items a batch at a time until none is left, pausing before the
//!    invocation's deadline (the resume schedule continues it: every step is idempotent);
//! 4. delete the KeyCRM key — last, once nothing can use it;
//! 5. remove the deletion mark.

use crate::engine::{Engine, JobOutcome, SyncError, LEASE_SLOT};
use chrono::Utc;
use std::time::Instant;
use store::StoreError;

/// The run id cleanup outcomes carry (they are not catalog runs).
pub const CLEANUP_RUN: &str = "cleanup";

impl Engine {
    /// Removes what is left of a deleted connection, or as much as fits before `deadline`.
    pub async fn clean_up(
        &self,
        connection_id: &str,
        deadline: Instant,
    ) -> Result<JobOutcome, SyncError> {
        let Some((conn, since)) = self.deps.connections.get_deleting(connection_id).await? else {
            tracing::info!(connection = %connection_id, "cleanup job for a connection that is not being deleted");
            return Ok(JobOutcome::Skipped {
                reason: "no deleted connection to clean up".into(),
            });
        };
        let grace = chrono::Duration::from_std(self.cfg.cleanup_grace).unwrap_or_default();
        if Utc::now() < since + grace {
            // The resume schedule comes back for it.
            return Ok(JobOutcome::Skipped {
                reason: "work in flight for the deleted connection may still be running".into(),
            });
        }
        let holder = format!("{CLEANUP_RUN}-{}", uuid::Uuid::new_v4().simple());
        let lease_for = deadline.saturating_duration_since(Instant::now()) + self.cfg.lease_slack;
        let Some(lease) = self
            .deps
            .sync
            .acquire(&conn.id, LEASE_SLOT, &holder, lease_for)
            .await?
        else {
            tracing::info!(connection = %conn.id, "a sync of the deleted connection still holds its lease; cleanup later");
            return Ok(JobOutcome::Busy);
        };
        let mut passes = 0u32;
        loop {
            let out_of_time = Instant::now() + self.cfg.safety >= deadline
                || self.cfg.max_units.is_some_and(|m| passes >= m);
            if out_of_time {
                // Free the lease (unless the purge removed it already) and let the resume
                // schedule enqueue the cleanup again.
                match self.deps.sync.finish(&lease).await {
                    Ok(()) | Err(StoreError::Conflict(_)) => {}
                    Err(e) => return Err(e.into()),
                }
                tracing::info!(connection = %conn.id, passes, "cleanup paused before the deadline");
                return Ok(JobOutcome::Paused {
                    run_id: CLEANUP_RUN.into(),
                });
            }
            passes += 1;
            if self
                .deps
                .connections
                .purge(&conn.id, self.cfg.cleanup_batch.max(1))
                .await?
            {
                break;
            }
        }
        self.deps
            .clients
            .secrets()
            .delete(&conn.secret_name)
            .await?;
        self.deps.clients.forget(&conn.id);
        self.deps.connections.remove(&conn.id).await?;
        tracing::info!(connection = %conn.id, shop = %conn.shop_id, passes, "deleted connection cleaned up: data, key and mark removed");
        Ok(JobOutcome::Finished {
            run_id: CLEANUP_RUN.into(),
            state: store::RunState::Deleted,
        })
    }
}
