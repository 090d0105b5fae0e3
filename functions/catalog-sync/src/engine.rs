//! Running one connection's sync job: the lease, the checkpoint after every unit of work, the
//! pause before the deadline, and how errors end or pause a run.
//!
//! The driver sits on top: it builds a `Run` (`run.rs`) and steps it through the phases
//! (`full/`, `prices`, `drift`), which build on `run`, `config` and `error` and never on this
//! module.

pub use crate::config::{Config, Deps, MAX_GATE_WAIT};
pub use crate::error::SyncError;

use crate::checkpoint::{Checkpoint, Phase, VERSION};
use crate::run::{clear_staged, encode, sync_enabled, Run, Step};
use chrono::Utc;
use keycrm::Priority;
use mapping::Settings;
use runtime::metrics::catalog::{SYNC_INVOCATION_TIME, SYNC_RUNS, SYNC_RUN_DURATION};
use runtime::metrics::{count, observe};
use std::time::{Duration, Instant};
use store::{
    Connection, RequestedBy, RunState, StoreError, SyncJob, SyncKind, SyncLease, SyncRun,
    SyncSummary,
};

/// How long a scheduled full run that finds its connection busy waits before it tries again
/// ([`Engine::retry_busy_full_run`]).
pub const BUSY_RETRY: std::time::Duration = std::time::Duration::from_secs(10 * 60);

/// One lease per connection, whatever the kind: a price run and a full run never overlap.
/// (The store keys leases by kind; catalog-sync always takes the `full` slot.)
pub const LEASE_SLOT: SyncKind = SyncKind::Full;

/// Attempts a run survives in a row (each resume tick is one) before it is failed.
const MAX_FAILURES: u32 = 12;

/// Hand-offs in a row for want of a slot on the key (no unit of work done in between) before
/// the run is failed: with waits of up to 15 minutes each, many hours of a key that some other
/// client keeps at its limit.
const MAX_BUDGET_WAITS: u32 = 48;

/// What a job came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobOutcome {
    /// The run ended: `completed`, `refused` (vanish guard) or `failed`.
    Finished {
        run_id: String,
        state: RunState,
    },
    /// Checkpointed; the resume schedule continues it.
    Paused {
        run_id: String,
    },
    /// Another invocation holds the connection's lease.
    Busy,
    Skipped {
        reason: String,
    },
    /// The lease expired and another invocation took the run over.
    LeaseLost,
}

pub struct Engine {
    pub deps: Deps,
    pub cfg: Config,
}

/// A run someone asked for now (the merchant on the settings page, or an operator with
/// `ops sync`): its report exists before it starts (state `queued`), it runs even when a
/// scheduled run with the same id ran, and when it cannot start its report says why.
fn on_demand(job: &SyncJob) -> bool {
    job.requested_by.on_demand()
}

/// Whether the run in progress already does what `job` asks (so the job adds nothing).
fn covers(cp: &Checkpoint, job: &SyncJob) -> bool {
    if job.requested_by == RequestedBy::Resume {
        return true;
    }
    if let Some(id) = &job.run_id {
        if *id == cp.run_id {
            return true;
        }
        if on_demand(job) {
            return false;
        }
    }
    if cp.dry_run != job.dry_run {
        return false;
    }
    // A full run writes prices too.
    cp.kind == job.kind || (cp.kind == SyncKind::Full && job.kind == SyncKind::Prices)
}

impl Engine {
    pub fn new(deps: Deps, cfg: Config) -> Self {
        Engine { deps, cfg }
    }

    /// Runs (or continues) one connection's sync until it finishes, pauses before
    /// `deadline`, or cannot run. `settings` (dry runs only) previews unsaved settings.
    /// Counted in the metrics by how it ended (`SyncRuns`).
    pub async fn run_job(
        &self,
        job: &SyncJob,
        settings: Option<Settings>,
        deadline: Instant,
    ) -> Result<JobOutcome, SyncError> {
        self.run_job_as(job, settings, deadline, None).await
    }

    /// [`Engine::run_job`], taking over the lease a previous time slice handed to `handoff`
    /// (a continuation), if given. Counted in the metrics by how it ended (`SyncRuns`).
    pub async fn run_job_as(
        &self,
        job: &SyncJob,
        settings: Option<Settings>,
        deadline: Instant,
        handoff: Option<String>,
    ) -> Result<JobOutcome, SyncError> {
        let started = Instant::now();
        let out = self.run_job_once(job, settings, deadline, handoff).await;
        if let Ok(o) = &out {
            let label = outcome_label(o);
            count(&SYNC_RUNS, &[label, job.kind.as_str()], 1);
            observe(&SYNC_INVOCATION_TIME, &[label], started.elapsed());
        }
        out
    }

    async fn run_job_once(
        &self,
        job: &SyncJob,
        settings: Option<Settings>,
        deadline: Instant,
        handoff: Option<String>,
    ) -> Result<JobOutcome, SyncError> {
        let Some(conn) = self.deps.connections.get(&job.connection_id).await? else {
            tracing::info!(connection = %job.connection_id, "sync job for a deleted connection");
            return Ok(JobOutcome::Skipped {
                reason: "the connection no longer exists".into(),
            });
        };
        let holder = handoff
            .filter(|h| !h.is_empty() && h.len() <= 64)
            .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
        let lease_for = deadline.saturating_duration_since(Instant::now()) + self.cfg.lease_slack;
        let Some(lease) = self
            .deps
            .sync
            .acquire(&conn.id, LEASE_SLOT, &holder, lease_for)
            .await?
        else {
            tracing::info!(
                connection = %conn.id,
                kind = job.kind.as_str(),
                requested_by = %job.requested_by,
                "another sync of this connection is running; job not started"
            );
            self.not_started(
                job,
                "another sync of this connection is in progress; try again when it has finished",
            )
            .await?;
            self.retry_busy_full_run(job).await;
            return Ok(JobOutcome::Busy);
        };

        let resumed = match lease
            .checkpoint
            .as_deref()
            .map(serde_json::from_str::<Checkpoint>)
        {
            None => None,
            Some(Ok(cp)) if cp.v == VERSION => Some(cp),
            Some(_) => {
                tracing::error!(connection = %conn.id, "unreadable sync checkpoint; the run is abandoned");
                let mut run = lease.run.clone().unwrap_or_default();
                if !run.run_id.is_empty() {
                    run.state = RunState::Failed;
                    run.finished_at = Some(Utc::now());
                    run.message =
                        Some("the run's saved position could not be read; it was abandoned".into());
                    self.deps.sync.put_run(&run).await?;
                }
                let mut l = lease.clone();
                l.checkpoint = None;
                l.run = None;
                self.deps.sync.finish(&l).await?;
                return Box::pin(self.run_job_once(job, settings, deadline, None)).await;
            }
        };

        let Some(cp) = resumed else {
            if job.requested_by == RequestedBy::Resume {
                // The run finished meanwhile (or the job was delivered twice): nothing to do.
                self.deps.sync.finish(&lease).await?;
                return Ok(JobOutcome::Skipped {
                    reason: "no paused run to resume".into(),
                });
            }
            return self.start(job, conn, settings, lease, deadline).await;
        };
        let covered = covers(&cp, job);
        let report = lease.run.clone().unwrap_or_else(|| SyncRun {
            run_id: cp.run_id.clone(),
            connection_id: conn.id.clone(),
            kind: Some(cp.kind),
            dry_run: cp.dry_run,
            state: RunState::Running,
            started_at: Some(Utc::now()),
            ..SyncRun::default()
        });
        tracing::info!(connection = %conn.id, run = %cp.run_id, phase = ?cp.phase, "resuming sync run");
        let outcome = self
            .drive(conn.clone(), cp, report, lease, deadline)
            .await?;
        if covered {
            return Ok(outcome);
        }
        match outcome {
            JobOutcome::Finished { .. } if Instant::now() + self.cfg.safety * 2 < deadline => {
                // The paused run is done and time remains: now the job's own run.
                let Some(lease) = self
                    .deps
                    .sync
                    .acquire(&conn.id, LEASE_SLOT, &holder, lease_for)
                    .await?
                else {
                    self.not_started(job, "another sync of this connection started meanwhile")
                        .await?;
                    self.retry_busy_full_run(job).await;
                    return Ok(JobOutcome::Busy);
                };
                self.start(job, conn, settings, lease, deadline).await
            }
            other => {
                self.not_started(job, "an earlier sync of this connection is still in progress; try again when it has finished")
                    .await?;
                self.retry_busy_full_run(job).await;
                Ok(other)
            }
        }
    }

    /// Sends a scheduled full run that found its connection busy (its price run still going)
    /// again after [`Config::busy_retry`] ([`BUSY_RETRY`]), instead of dropping it for the
    /// night. Slots are stable per connection, so a price run long enough to overlap the full
    /// run's slot tonight overlaps it every night: a large catalog would never get its full
    /// run. Tried again until its window has been closed for as long as it was open (by
    /// [`Config::now`]); other jobs are dropped as before (a price run's next period comes in
    /// 4 hours, and a full run covers prices).
    async fn retry_busy_full_run(&self, job: &SyncJob) {
        if job.kind != SyncKind::Full || job.requested_by != RequestedBy::Schedule {
            return;
        }
        let spread = &self.cfg.spread;
        let Some(end) = job
            .run_id
            .as_deref()
            .and_then(|id| spread.full_window_end(id))
        else {
            return;
        };
        let give_up = end + chrono::Duration::minutes(spread.full_window_min);
        if self.cfg.now.get() >= give_up {
            tracing::info!(connection = %job.connection_id, run_id = ?job.run_id, "scheduled full run dropped: its connection was busy until its window had long closed");
            return;
        }
        let again = crate::handler::JobMessage {
            job: job.clone(),
            settings: None,
            handoff: None,
        };
        let sent = match serde_json::to_string(&again) {
            Ok(body) => {
                self.deps
                    .jobs
                    .send(queue::Outgoing::new(body).delayed(self.cfg.busy_retry))
                    .await
            }
            Err(e) => {
                tracing::warn!(connection = %job.connection_id, error = %e, "could not encode a busy full run to try again");
                return;
            }
        };
        match sent {
            Ok(_) => tracing::info!(
                connection = %job.connection_id,
                run_id = ?job.run_id,
                retry_in_secs = self.cfg.busy_retry.as_secs(),
                "connection busy: the scheduled full run tries again later tonight"
            ),
            Err(e) => {
                tracing::warn!(connection = %job.connection_id, error = %e, "could not queue a busy full run again; the next night's slot starts it")
            }
        }
    }

    /// Records a merchant's run that could not start (scheduled ones are only logged).
    async fn not_started(&self, job: &SyncJob, why: &str) -> Result<(), SyncError> {
        let Some(run_id) = job.run_id.clone().filter(|_| on_demand(job)) else {
            return Ok(());
        };
        let now = Utc::now();
        self.deps
            .sync
            .put_run(&SyncRun {
                run_id,
                connection_id: job.connection_id.clone(),
                kind: Some(job.kind),
                dry_run: job.dry_run,
                state: RunState::Skipped,
                started_at: Some(now),
                finished_at: Some(now),
                message: Some(why.to_string()),
                ..SyncRun::default()
            })
            .await?;
        Ok(())
    }

    async fn start(
        &self,
        job: &SyncJob,
        conn: Connection,
        settings: Option<Settings>,
        lease: SyncLease,
        deadline: Instant,
    ) -> Result<JobOutcome, SyncError> {
        if let Some(id) = &job.run_id {
            if !on_demand(job) && self.deps.sync.get_run(&conn.id, id).await?.is_some() {
                // A redelivered or retried schedule tick: that run already happened.
                self.deps.sync.finish(&lease).await?;
                return Ok(JobOutcome::Skipped {
                    reason: format!("run {id} already ran"),
                });
            }
        }
        let mut s = match settings {
            Some(s) if job.dry_run => s,
            _ => conn.settings.clone(),
        };
        let enabled = sync_enabled(&s, job.kind);
        let skip = if !conn.active {
            Some("the connection is inactive")
        } else if !enabled && !job.dry_run {
            Some("this sync is turned off in the settings")
        } else {
            None
        };
        let now = Utc::now();
        let run_id = job
            .run_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
        let mut report = SyncRun {
            run_id: run_id.clone(),
            connection_id: conn.id.clone(),
            kind: Some(job.kind),
            dry_run: job.dry_run,
            state: RunState::Running,
            started_at: Some(now),
            ..SyncRun::default()
        };
        if let Some(why) = skip {
            self.deps.sync.finish(&lease).await?;
            report.state = RunState::Skipped;
            report.finished_at = Some(now);
            report.message = Some(why.into());
            self.deps.sync.put_run(&report).await?;
            tracing::info!(connection = %conn.id, run = %run_id, reason = why, "sync skipped");
            return Ok(JobOutcome::Skipped { reason: why.into() });
        }
        if job.dry_run {
            // A preview shows everything the sync would do once turned on.
            s.sync_products = true;
            s.sync_categories = true;
        }
        if job.kind == SyncKind::Full {
            clear_staged(self.deps.links.as_ref(), &conn.links_scope()).await?;
        }
        let mut cp = Checkpoint::new(
            run_id.clone(),
            job.kind,
            job.dry_run,
            now.timestamp_millis(),
            s,
        );
        // The shop is compared with KeyCRM by every full run that syncs products, by a
        // merchant's price run, and by a scheduled price run once a day (`drift.rs`).
        cp.drift = match job.kind {
            SyncKind::Full => cp.settings.sync_products,
            // Unreadable journal: compare once more rather than not at all.
            SyncKind::Prices => {
                job.requested_by == RequestedBy::Merchant
                    || self
                        .deps
                        .journal
                        .status(&conn.id)
                        .await
                        .map_or(true, |st| crate::drift::drift_due(&st, now))
            }
        };
        self.deps.sync.put_run(&report).await?;
        tracing::info!(
            connection = %conn.id,
            run = %run_id,
            kind = job.kind.as_str(),
            dry_run = job.dry_run,
            requested_by = %job.requested_by,
            "sync run started"
        );
        self.drive(conn, cp, report, lease, deadline).await
    }

    /// Works through the run's phases until done, paused or failed.
    async fn drive(
        &self,
        conn: Connection,
        cp: Checkpoint,
        mut report: SyncRun,
        lease: SyncLease,
        deadline: Instant,
    ) -> Result<JobOutcome, SyncError> {
        report.invocations += 1;
        let client = match self.deps.clients.for_connection(&conn).await {
            Ok(c) => c.with_priority(Priority::Background),
            Err(e) => {
                let err = SyncError::from(e);
                return self.end_failed(&conn, cp, report, lease, &err).await;
            }
        };
        let req_base = client.stats().requests;
        let links_scope = conn.links_scope();
        let cat_links = self
            .deps
            .links
            .categories(&links_scope)
            .await?
            .into_iter()
            .map(|l| (l.keycrm_id, l))
            .collect();
        let mut run = Run {
            deps: &self.deps,
            cfg: &self.cfg,
            conn,
            client,
            cp,
            report,
            lease,
            deadline,
            units: 0,
            started: Instant::now(),
            req_base,
            saves: 0,
            saved_at: Instant::now(),
            cat_links,
            resolver: None,
            seen: None,
            price_links: std::collections::HashMap::new(),
            owners: None,
            checked_at: Instant::now(),
            links_scope,
        };
        loop {
            if run.cp.phase == Phase::Done {
                return self.end(run).await;
            }
            if !run.time_left() {
                return self.pause_or_hand_off(run, None, Duration::ZERO).await;
            }
            if run.checked_at.elapsed() >= self.cfg.deletion_check {
                run.checked_at = Instant::now();
                if let Ok(None) = self.deps.connections.get(&run.conn.id).await {
                    return self.abandon_deleted(run).await;
                }
            }
            let step = match run.cp.phase {
                Phase::Categories => run.categories().await,
                Phase::Products => run.products().await,
                Phase::Resolve => run.resolve().await,
                Phase::Sweep => run.sweep().await,
                Phase::CategorySweep => run.sweep_categories().await,
                Phase::Prices => run.prices().await,
                Phase::Drift => run.drift().await,
                Phase::Done => continue,
            };
            match step {
                Ok(Step::Continue) => {
                    run.cp.failures = 0;
                    run.cp.waits = 0;
                    if run.checkpoint_due() {
                        match run.save().await {
                            Ok(()) => {}
                            Err(e) if e.lost() => return Ok(lost(&run)),
                            Err(e) => return Err(e),
                        }
                    }
                }
                Err(e) if e.lost() => return Ok(lost(&run)),
                Err(e) if e.budget_wait().is_some() => {
                    let wait = e.budget_wait().unwrap_or_default();
                    run.cp.waits += 1;
                    if run.cp.waits > MAX_BUDGET_WAITS {
                        let Run {
                            conn,
                            cp,
                            report,
                            lease,
                            ..
                        } = run;
                        return self.end_failed(&conn, cp, report, lease, &e).await;
                    }
                    // No sleeping on a far slot: the rest goes to a delayed continuation.
                    tracing::info!(
                        connection = %run.conn.id,
                        run = %run.cp.run_id,
                        wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                        "the key's budget has no slot soon; the run continues later"
                    );
                    let msg = "waiting for the KeyCRM key's request budget".to_string();
                    return self.pause_or_hand_off(run, Some(msg), wait).await;
                }
                Err(e) if e.is_fatal() => {
                    let Run {
                        conn,
                        cp,
                        report,
                        lease,
                        ..
                    } = run;
                    return self.end_failed(&conn, cp, report, lease, &e).await;
                }
                Err(e) => {
                    run.cp.failures += 1;
                    if run.cp.failures >= MAX_FAILURES {
                        let Run {
                            conn,
                            cp,
                            report,
                            lease,
                            ..
                        } = run;
                        return self.end_failed(&conn, cp, report, lease, &e).await;
                    }
                    tracing::warn!(
                        connection = %run.conn.id,
                        run = %run.cp.run_id,
                        error = %e,
                        attempt = run.cp.failures,
                        "sync paused after an error; it resumes from its checkpoint"
                    );
                    let msg = format!("paused after an error, resuming later: {e}");
                    return self.pause(run, Some(msg)).await;
                }
            }
        }
    }

    /// The connection was deleted while its sync ran: stop writing and free the lease for
    /// the cleanup (which removes the run's report and scratch data with the rest).
    async fn abandon_deleted(&self, run: Run<'_>) -> Result<JobOutcome, SyncError> {
        tracing::info!(connection = %run.conn.id, run = %run.cp.run_id, "the connection was deleted; sync stopped");
        match self.deps.sync.finish(&run.lease).await {
            Ok(()) | Err(StoreError::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(JobOutcome::Skipped {
            reason: "the connection was deleted".into(),
        })
    }

    /// Stops the run here to continue it after `after`: with hand-off on, the lease is kept
    /// for a continuation message sent to the sync-jobs queue (delayed by `after`); otherwise,
    /// or if that message cannot be sent, the run is paused for the resume tick.
    async fn pause_or_hand_off(
        &self,
        mut run: Run<'_>,
        message: Option<String>,
        after: Duration,
    ) -> Result<JobOutcome, SyncError> {
        if !self.cfg.hand_off {
            return self.pause(run, message).await;
        }
        let after = after.min(queue::MAX_DELAY);
        run.count_requests();
        run.report.message = message.clone();
        run.lease.checkpoint = Some(encode(&run.cp)?);
        run.lease.run = Some(run.report.clone());
        // The lease stays with this holder until the continuation takes it over.
        match self
            .deps
            .sync
            .checkpoint(&run.lease, after + self.cfg.hand_off_grace)
            .await
        {
            Ok(l) => run.lease = l,
            Err(StoreError::Conflict(_)) => return Ok(lost(&run)),
            Err(e) => return Err(e.into()),
        }
        // Marked before it is sent: a continuation consumed at once clears the mark (acquire)
        // after this write, never before it.
        let mark_until = Utc::now()
            + chrono::Duration::from_std(after + self.cfg.continuation_mark)
                .unwrap_or(chrono::Duration::zero());
        match self
            .deps
            .sync
            .mark_queued(
                &run.conn.id,
                run.cp.kind,
                Some(&run.lease.holder),
                mark_until,
            )
            .await
        {
            Ok(true) => {}
            Ok(false) => return Ok(lost(&run)),
            // Without the mark the resume tick may queue the run once more after the lease's
            // grace: a duplicate that finds the lease taken, not a loss.
            Err(e) => {
                tracing::warn!(connection = %run.conn.id, run = %run.cp.run_id, error = %e, "could not mark the run's continuation as queued")
            }
        }
        let continuation = crate::handler::JobMessage {
            job: SyncJob {
                connection_id: run.conn.id.clone(),
                kind: run.cp.kind,
                dry_run: run.cp.dry_run,
                requested_by: RequestedBy::Resume,
                run_id: None,
            },
            settings: None,
            handoff: Some(run.lease.holder.clone()),
        };
        let body = serde_json::to_string(&continuation)
            .map_err(|e| SyncError::Store(StoreError::Corrupt(e.to_string())))?;
        if let Err(e) = self
            .deps
            .jobs
            .send(queue::Outgoing::new(body).delayed(after))
            .await
        {
            tracing::warn!(connection = %run.conn.id, run = %run.cp.run_id, error = %e, "could not send the run's continuation; the resume tick continues it");
            return self.pause(run, message).await;
        }
        self.deps.sync.put_run(&run.report).await?;
        tracing::info!(
            connection = %run.conn.id,
            run = %run.cp.run_id,
            phase = ?run.cp.phase,
            after_ms = u64::try_from(after.as_millis()).unwrap_or(u64::MAX),
            keycrm_requests = run.report.keycrm_requests,
            "sync handed off to its continuation"
        );
        Ok(JobOutcome::Paused {
            run_id: run.cp.run_id.clone(),
        })
    }

    async fn pause(
        &self,
        mut run: Run<'_>,
        message: Option<String>,
    ) -> Result<JobOutcome, SyncError> {
        run.count_requests();
        run.report.message = message;
        run.lease.checkpoint = Some(encode(&run.cp)?);
        run.lease.run = Some(run.report.clone());
        match self.deps.sync.pause(&run.lease).await {
            Ok(()) => {}
            Err(StoreError::Conflict(_)) => return Ok(lost(&run)),
            Err(e) => return Err(e.into()),
        }
        self.deps.sync.put_run(&run.report).await?;
        tracing::info!(
            connection = %run.conn.id,
            run = %run.cp.run_id,
            phase = ?run.cp.phase,
            keycrm_requests = run.report.keycrm_requests,
            "sync paused at its checkpoint"
        );
        Ok(JobOutcome::Paused {
            run_id: run.cp.run_id.clone(),
        })
    }

    async fn end(&self, mut run: Run<'_>) -> Result<JobOutcome, SyncError> {
        run.count_requests();
        let refused = match (
            run.cp.sweep.refused.clone(),
            run.cp.categories_refused.clone(),
        ) {
            (Some(p), Some(c)) => Some(format!("{p} {c}")),
            (p, c) => p.or(c),
        };
        run.report.state = if refused.is_some() {
            RunState::Refused
        } else {
            RunState::Completed
        };
        run.report.message = refused;
        run.report.finished_at = Some(Utc::now());
        observe_duration(&run.report);
        self.finish(&run.conn, &run.cp, &run.report, &run.lease)
            .await?;
        tracing::info!(
            connection = %run.conn.id,
            run = %run.cp.run_id,
            state = %run.report.state,
            keycrm_requests = run.report.keycrm_requests,
            counts = ?run.report.counts,
            "sync run finished"
        );
        Ok(JobOutcome::Finished {
            run_id: run.cp.run_id.clone(),
            state: run.report.state,
        })
    }

    async fn end_failed(
        &self,
        conn: &Connection,
        cp: Checkpoint,
        mut report: SyncRun,
        lease: SyncLease,
        err: &SyncError,
    ) -> Result<JobOutcome, SyncError> {
        tracing::error!(connection = %conn.id, run = %cp.run_id, error = %err, "sync run failed");
        report.state = RunState::Failed;
        report.message = Some(err.to_string());
        report.finished_at = Some(Utc::now());
        observe_duration(&report);
        if cp.kind == SyncKind::Full {
            // The run will not finish: its scratch data goes (nothing is swept).
            let scope = conn.links_scope();
            clear_staged(self.deps.links.as_ref(), &scope).await?;
            self.deps.links.clear_seen(&scope, cp.mark).await?;
        }
        self.finish(conn, &cp, &report, &lease).await?;
        Ok(JobOutcome::Finished {
            run_id: cp.run_id,
            state: RunState::Failed,
        })
    }

    async fn finish(
        &self,
        conn: &Connection,
        cp: &Checkpoint,
        report: &SyncRun,
        lease: &SyncLease,
    ) -> Result<(), SyncError> {
        self.deps.sync.put_run(report).await?;
        match self.deps.sync.finish(lease).await {
            Ok(()) | Err(StoreError::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
        if !cp.dry_run {
            let summary = SyncSummary {
                run_id: report.run_id.clone(),
                finished_at: report.finished_at,
                complete: report.state == RunState::Completed,
                counts: report.counts.clone(),
                keycrm_requests: report.keycrm_requests,
                message: report.message.clone(),
            };
            if let Err(e) = self
                .deps
                .journal
                .record_sync(&conn.id, cp.kind.as_str(), &summary)
                .await
            {
                // The run's report is stored; the status page's summary is secondary.
                tracing::warn!(connection = %conn.id, error = %e, "could not record the sync summary");
            }
        }
        Ok(())
    }
}

/// The `outcome` label of a job's end in `SyncRuns`.
pub fn outcome_label(o: &JobOutcome) -> &'static str {
    match o {
        JobOutcome::Finished { state, .. } => ended_label(*state),
        JobOutcome::Paused { .. } => "paused",
        JobOutcome::Busy => "busy",
        JobOutcome::Skipped { .. } => "skipped",
        JobOutcome::LeaseLost => "lease_lost",
    }
}

/// How an ended run is labelled in the metrics (anything but a completion or a refusal is a
/// failure).
fn ended_label(state: RunState) -> &'static str {
    match state {
        RunState::Completed => "completed",
        RunState::Refused => "refused",
        _ => "failed",
    }
}

/// A finished run's wall time, from its start to its end across invocations.
fn observe_duration(report: &SyncRun) {
    let (Some(start), Some(end)) = (report.started_at, report.finished_at) else {
        return;
    };
    let Ok(took) = (end - start).to_std() else {
        return;
    };
    let label = ended_label(report.state);
    observe(&SYNC_RUN_DURATION, &[label], took);
}

fn lost(run: &Run<'_>) -> JobOutcome {
    tracing::warn!(
        connection = %run.conn.id,
        run = %run.cp.run_id,
        "the sync lease was taken over by another invocation; stopping"
    );
    JobOutcome::LeaseLost
}
