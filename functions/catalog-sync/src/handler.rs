//! The two ways the function is invoked: an EventBridge schedule tick (`{"kind": "full" |
//! "prices" | "resume"}`) fans out one job per connection onto the sync-jobs queue, and a
//! sync-jobs message runs one connection's job.

use crate::engine::{Engine, JobOutcome, SyncError};
use crate::run::sync_enabled;
use chrono::{Timelike, Utc};
use futures::stream::{self, StreamExt};
use mapping::Settings;
use queue::Outgoing;
use runtime::metrics::catalog::{SYNC_JOBS_ENQUEUED, SYNC_JOBS_FAILED};
use runtime::metrics::count;
use serde::{Deserialize, Serialize};
use std::time::Instant;
use store::{CleanupJob, SyncJob, SyncKind};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleKind {
    Full,
    Prices,
    /// Re-enqueue paused or crashed runs (every 5 minutes).
    Resume,
}

/// The EventBridge schedule's input.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleInput {
    pub kind: ScheduleKind,
}

/// A sync-jobs message: a [`SyncJob`], optionally with proposed `settings` a dry run should
/// preview instead of the saved ones.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobMessage {
    #[serde(flatten)]
    pub job: SyncJob,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<Settings>,
}

impl JobMessage {
    /// Reads a sync-jobs message; the error says what is wrong with it (for the dead letter).
    pub fn parse(body: &str) -> Result<JobMessage, String> {
        serde_json::from_str(body).map_err(|e| format!("unreadable sync job: {e}"))
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FanOut {
    pub enqueued: usize,
    /// Inactive connections, or the sync turned off.
    pub skipped: usize,
    pub failed: usize,
}

/// Schedule ticks name their runs by kind and hour, so a retried tick or a redelivered job
/// does not run the same sync twice.
fn scheduled_run_id(kind: SyncKind) -> String {
    let now = Utc::now();
    format!(
        "{}-{}",
        kind.as_str(),
        now.with_minute(0)
            .and_then(|t| t.with_second(0))
            .unwrap_or(now)
            .format("%Y%m%dT%H")
    )
}

impl Engine {
    /// A schedule tick: one job per connection that wants this sync, or per paused run.
    pub async fn on_schedule(&self, kind: ScheduleKind) -> Result<FanOut, SyncError> {
        let mut jobs: Vec<SyncJob> = Vec::new();
        let mut cleanups: Vec<String> = Vec::new();
        let mut out = FanOut::default();
        match kind {
            ScheduleKind::Resume => {
                for (connection_id, kind) in self.deps.sync.unfinished(10_000).await? {
                    jobs.push(SyncJob {
                        connection_id,
                        kind,
                        dry_run: false,
                        requested_by: store::RequestedBy::Resume,
                        run_id: None,
                    });
                }
                // Deleted connections whose cleanup has not finished (never queued, paused,
                // crashed, or dead-lettered): one cleanup job each.
                let mut cursor = None;
                loop {
                    let (ids, next) = self.deps.connections.list_deleting(cursor, 100).await?;
                    cleanups.extend(ids);
                    match next {
                        Some(n) => cursor = Some(n),
                        None => break,
                    }
                }
            }
            ScheduleKind::Full | ScheduleKind::Prices => {
                let sync_kind = if kind == ScheduleKind::Full {
                    SyncKind::Full
                } else {
                    SyncKind::Prices
                };
                let run_id = scheduled_run_id(sync_kind);
                let mut cursor = None;
                loop {
                    let (page, next) = self.deps.connections.list(cursor, 100).await?;
                    for c in page {
                        let s = &c.settings;
                        let wanted = c.active && sync_enabled(s, sync_kind);
                        if !wanted {
                            out.skipped += 1;
                            continue;
                        }
                        jobs.push(SyncJob {
                            connection_id: c.id,
                            kind: sync_kind,
                            dry_run: false,
                            requested_by: store::RequestedBy::Schedule,
                            run_id: Some(run_id.clone()),
                        });
                    }
                    match next {
                        Some(n) => cursor = Some(n),
                        None => break,
                    }
                }
            }
        }
        let bodies = jobs
            .iter()
            .map(|job| {
                serde_json::to_string(job)
                    .map(|b| (job.connection_id.clone(), b))
                    .map_err(|e| e.to_string())
            })
            .chain(
                cleanups
                    .iter()
                    .map(|id| Ok((id.clone(), CleanupJob::new(id).to_body()))),
            )
            .collect::<Vec<_>>();
        let results: Vec<Result<(), String>> = stream::iter(bodies)
            .map(|job| async move {
                let (connection_id, body) = job?;
                self.deps
                    .jobs
                    .send(Outgoing::new(body))
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("connection {connection_id}: {e}"))
            })
            .buffer_unordered(self.cfg.fan_out.max(1))
            .collect()
            .await;
        let kind_label = match kind {
            ScheduleKind::Full => "full",
            ScheduleKind::Prices => "prices",
            ScheduleKind::Resume => "resume",
        };
        for r in results {
            match r {
                Ok(()) => {
                    out.enqueued += 1;
                    count(&SYNC_JOBS_ENQUEUED, &[kind_label], 1);
                }
                Err(e) => {
                    tracing::error!(error = %e, "could not enqueue a sync job");
                    count(&SYNC_JOBS_FAILED, &["enqueue_failed"], 1);
                    out.failed += 1;
                }
            }
        }
        tracing::info!(kind = ?kind, enqueued = out.enqueued, skipped = out.skipped, failed = out.failed, "sync fan-out");
        if out.failed > 0 {
            // The schedule retries the tick; jobs already sent are deduplicated by run id.
            return Err(SyncError::Queue(queue::QueueError::Unavailable(format!(
                "{} of {} sync jobs could not be enqueued",
                out.failed,
                out.failed + out.enqueued
            ))));
        }
        Ok(out)
    }

    /// A sync-jobs message. An unreadable message is dropped (logged): retrying cannot fix it.
    /// (The Lambda consumer, [`crate::lambda`], dead-letters it with the reason instead.)
    pub async fn on_message(&self, body: &str, deadline: Instant) -> Result<JobOutcome, SyncError> {
        if let Some(cleanup) = CleanupJob::parse(body) {
            return self.clean_up(&cleanup.connection_id, deadline).await;
        }
        let msg = match JobMessage::parse(body) {
            Ok(m) => m,
            Err(reason) => {
                tracing::error!(error = %reason, "unreadable sync job dropped");
                return Ok(JobOutcome::Skipped { reason });
            }
        };
        self.on_job(msg, deadline).await
    }

    /// A parsed sync-jobs message.
    pub async fn on_job(
        &self,
        msg: JobMessage,
        deadline: Instant,
    ) -> Result<JobOutcome, SyncError> {
        self.run_job(&msg.job, msg.settings, deadline).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_messages_accept_plain_jobs_and_proposed_settings() {
        let plain = r#"{"connection_id":"c1","kind":"full","dry_run":true,"requested_by":"merchant","run_id":"r1"}"#;
        let m: JobMessage = serde_json::from_str(plain).unwrap();
        assert_eq!(m.job.connection_id, "c1");
        assert!(m.settings.is_none());
        let with = r#"{"connection_id":"c1","kind":"prices","settings":{"sync_products":true,"missing_products":"hide"}}"#;
        let m: JobMessage = serde_json::from_str(with).unwrap();
        assert_eq!(m.job.kind, SyncKind::Prices);
        assert!(m.settings.unwrap().sync_products);
        let s: ScheduleInput = serde_json::from_str(r#"{"kind":"resume"}"#).unwrap();
        assert_eq!(s.kind, ScheduleKind::Resume);
        assert!(scheduled_run_id(SyncKind::Full).starts_with("full-"));
    }
}
