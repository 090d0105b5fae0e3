//! The two ways the function is invoked: an EventBridge schedule tick fans out jobs onto the
//! sync-jobs queue, and a sync-jobs message runs one connection's job.
//!
//! Schedule inputs: `{"kind":"tick","at":"<scheduled time>"}` every 15 minutes starts the
//! connections whose slot falls in that tick (`mapping::schedule`: the nightly full runs
//! spread over a window, the price runs over each 4-hour period); `{"kind":"resume"}` every
//! 5 minutes re-enqueues paused and crashed runs; `{"kind":"full"}` / `{"kind":"prices"}`
//! start every connection at once (for operators; no schedule sends them).

use crate::engine::{Engine, JobOutcome, SyncError};
use crate::run::sync_enabled;
use chrono::{DateTime, Timelike, Utc};
use futures::stream::{self, StreamExt};
use mapping::schedule::SlotKind;
use mapping::Settings;
use queue::Outgoing;
use runtime::metrics::catalog::{SYNC_JOBS_ENQUEUED, SYNC_JOBS_FAILED};
use runtime::metrics::count;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};
use store::{CleanupJob, SyncJob, SyncKind};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleKind {
    /// Every connection's full sync at once (operators; the schedule uses `Tick`).
    Full,
    /// Every connection's price sync at once (operators; the schedule uses `Tick`).
    Prices,
    /// Re-enqueue paused or crashed runs (every 5 minutes).
    Resume,
    /// The spread schedule's tick: only the connections whose slot falls in it.
    Tick,
}

/// The EventBridge schedule's input.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleInput {
    pub kind: ScheduleKind,
    /// The tick's scheduled time (EventBridge Scheduler's `<aws.scheduler.scheduled-time>`),
    /// so a tick retried minutes late still starts the slots of the tick it stands for.
    /// Absent or unreadable: now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
}

impl ScheduleInput {
    /// The instant the tick stands for.
    pub fn tick_time(&self) -> DateTime<Utc> {
        self.at
            .as_deref()
            .and_then(|a| DateTime::parse_from_rfc3339(a.trim()).ok())
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(Utc::now)
    }
}

/// A sync-jobs message: a [`SyncJob`], optionally with proposed `settings` a dry run should
/// preview instead of the saved ones.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobMessage {
    #[serde(flatten)]
    pub job: SyncJob,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<Settings>,
    /// A continuation: the lease holder the previous time slice handed its lease to. The job
    /// takes the lease over (it is held for it until then), so nothing else starts meanwhile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handoff: Option<String>,
}

impl JobMessage {
    /// Reads a sync-jobs message; the error says what is wrong with it (for the dead letter).
    pub fn parse(body: &str) -> Result<JobMessage, String> {
        serde_json::from_str(body).map_err(|e| format!("unreadable sync job: {e}"))
    }
}

/// Moves a connection's key out of Secrets Manager if it is still there (logged; a failure
/// leaves it readable where it is, and the next night tries again).
async fn migrate_key(engine: &Engine, conn: &store::Connection) {
    match engine
        .deps
        .clients
        .secrets()
        .migrate(&conn.secret_name)
        .await
    {
        Ok(true) => {
            tracing::info!(connection = %conn.id, "KeyCRM API key moved to envelope encryption")
        }
        Ok(false) => {}
        Err(e) => {
            tracing::warn!(connection = %conn.id, error = %e, "could not move the KeyCRM API key out of Secrets Manager")
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FanOut {
    pub enqueued: usize,
    /// Inactive connections, or the sync turned off.
    pub skipped: usize,
    /// Runs the resume tick found but did not queue: a continuation was marked queued
    /// between its listing and its claim (another tick's, or a hand-off's).
    #[serde(default)]
    pub already_queued: usize,
    pub failed: usize,
}

/// Schedule ticks name their runs by kind and the hour they stand for, so a retried tick or a
/// redelivered job does not run the same sync twice.
fn scheduled_run_id(kind: SyncKind, at: DateTime<Utc>) -> String {
    format!(
        "{}-{}",
        kind.as_str(),
        at.with_minute(0)
            .and_then(|t| t.with_second(0))
            .unwrap_or(at)
            .format("%Y%m%dT%H")
    )
}

impl Engine {
    /// A schedule input: [`Engine::on_schedule`] at the tick's scheduled time.
    pub async fn on_schedule_input(&self, input: &ScheduleInput) -> Result<FanOut, SyncError> {
        self.on_schedule_at(input.kind, input.tick_time()).await
    }

    /// A schedule tick now: one job per connection that wants this sync, or per paused run.
    pub async fn on_schedule(&self, kind: ScheduleKind) -> Result<FanOut, SyncError> {
        self.on_schedule_at(kind, Utc::now()).await
    }

    /// A schedule tick standing for `at`.
    pub async fn on_schedule_at(
        &self,
        kind: ScheduleKind,
        at: DateTime<Utc>,
    ) -> Result<FanOut, SyncError> {
        // Each job with the delay that places its start (spread ticks only).
        let mut jobs: Vec<(SyncJob, Duration)> = Vec::new();
        // The resume tick's queued-continuation marks, by job: cleared if the job is not sent.
        let mut marks: std::collections::HashMap<(String, SyncKind), DateTime<Utc>> =
            std::collections::HashMap::new();
        let mut cleanups: Vec<String> = Vec::new();
        let mut out = FanOut::default();
        match kind {
            ScheduleKind::Resume => {
                let mark_until = Utc::now()
                    + chrono::Duration::from_std(self.cfg.continuation_mark)
                        .unwrap_or(chrono::Duration::zero());
                for (connection_id, kind) in self.deps.sync.unfinished(10_000).await? {
                    // Claimed conditionally: a run whose continuation waits in the queue (a
                    // backlog longer than the lease's grace) is not queued once more on every
                    // tick, and two ticks never both queue it.
                    if !self
                        .deps
                        .sync
                        .mark_queued(&connection_id, kind, None, mark_until)
                        .await?
                    {
                        out.already_queued += 1;
                        continue;
                    }
                    marks.insert((connection_id.clone(), kind), mark_until);
                    jobs.push((
                        SyncJob {
                            connection_id,
                            kind,
                            dry_run: false,
                            requested_by: store::RequestedBy::Resume,
                            run_id: None,
                        },
                        Duration::ZERO,
                    ));
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
                let run_id = scheduled_run_id(sync_kind, at);
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
                        jobs.push((
                            SyncJob {
                                connection_id: c.id,
                                kind: sync_kind,
                                dry_run: false,
                                requested_by: store::RequestedBy::Schedule,
                                run_id: Some(run_id.clone()),
                            },
                            Duration::ZERO,
                        ));
                    }
                    match next {
                        Some(n) => cursor = Some(n),
                        None => break,
                    }
                }
            }
            ScheduleKind::Tick => {
                let tick = self.cfg.spread.tick_start(at);
                let mut cursor = None;
                loop {
                    let (page, next) = self.deps.connections.list(cursor, 100).await?;
                    for c in page {
                        let dues = self.cfg.spread.due(&c.id, tick);
                        if dues.iter().any(|d| d.kind == SlotKind::Full) {
                            // Once a night per connection: a KeyCRM key an older version kept
                            // in Secrets Manager moves to envelope encryption.
                            migrate_key(self, &c).await;
                        }
                        for due in dues {
                            let sync_kind = match due.kind {
                                SlotKind::Full => SyncKind::Full,
                                SlotKind::Prices => SyncKind::Prices,
                            };
                            if !(c.active && sync_enabled(&c.settings, sync_kind)) {
                                out.skipped += 1;
                                continue;
                            }
                            jobs.push((
                                SyncJob {
                                    connection_id: c.id.clone(),
                                    kind: sync_kind,
                                    dry_run: false,
                                    requested_by: store::RequestedBy::Schedule,
                                    run_id: Some(due.run_id),
                                },
                                due.delay,
                            ));
                        }
                    }
                    match next {
                        Some(n) => cursor = Some(n),
                        None => break,
                    }
                }
            }
        }
        // Counted by the kind of job queued (a tick queues full and price syncs); `None`:
        // the resume tick's jobs.
        let counted_as = |job: &SyncJob| match kind {
            ScheduleKind::Resume => None,
            _ => Some(job.kind),
        };
        let bodies = jobs
            .iter()
            .map(|(job, delay)| {
                let mark = marks
                    .get(&(job.connection_id.clone(), job.kind))
                    .map(|until| (job.kind, *until));
                serde_json::to_string(job)
                    .map(|b| (job.connection_id.clone(), b, *delay, counted_as(job), mark))
                    .map_err(|e| e.to_string())
            })
            .chain(cleanups.iter().map(|id| {
                Ok((
                    id.clone(),
                    CleanupJob::new(id).to_body(),
                    Duration::ZERO,
                    None,
                    None,
                ))
            }))
            .collect::<Vec<_>>();
        let results: Vec<Result<Option<SyncKind>, String>> = stream::iter(bodies)
            .map(|job| async move {
                let (connection_id, body, delay, counted, mark) = job?;
                let sent = self.deps.jobs.send(Outgoing::new(body).delayed(delay)).await;
                if let (Err(_), Some((kind, until))) = (&sent, mark) {
                    // Not queued after all: the retried tick (or the next) must queue it.
                    if let Err(e) = self.deps.sync.clear_queued(&connection_id, kind, until).await {
                        tracing::warn!(connection = %connection_id, error = %e, "could not clear a queued-continuation mark; the run waits for the mark to pass");
                    }
                }
                sent.map(|_| counted)
                    .map_err(|e| format!("connection {connection_id}: {e}"))
            })
            .buffer_unordered(self.cfg.fan_out.max(1))
            .collect()
            .await;
        for r in results {
            match r {
                Ok(counted) => {
                    let kind_label = counted.map_or("resume", SyncKind::as_str);
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
        tracing::info!(kind = ?kind, enqueued = out.enqueued, skipped = out.skipped, already_queued = out.already_queued, failed = out.failed, "sync fan-out");
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
        self.run_job_as(&msg.job, msg.settings, deadline, msg.handoff)
            .await
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
        let t: ScheduleInput =
            serde_json::from_str(r#"{"kind":"tick","at":"2025-06-01T22:15:00Z"}"#).unwrap();
        assert_eq!(t.kind, ScheduleKind::Tick);
        assert_eq!(t.tick_time().to_rfc3339(), "2025-06-01T22:15:00+00:00");
        // An unreadable time (a template typo) still ticks, at the time it runs.
        let bad: ScheduleInput =
            serde_json::from_str(r#"{"kind":"tick","at":"<aws.scheduler.oops>"}"#).unwrap();
        assert!((Utc::now() - bad.tick_time()).num_seconds().abs() < 5);
        assert!(scheduled_run_id(SyncKind::Full, Utc::now()).starts_with("full-"));
    }
}
