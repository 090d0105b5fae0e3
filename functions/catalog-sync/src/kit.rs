//! Helpers for hosting the sync outside Lambda: the end-to-end tests and the benchmark drive
//! runs with these instead of a queue and a schedule. Behind the `test-kit` feature: no
//! function build carries them.

use crate::engine::{Engine, JobOutcome, SyncError};
use chrono::Utc;
use keycrm::ApiKey;
use mapping::Settings;
use std::time::{Duration, Instant};
use store::{Connection, RequestedBy, SyncJob, SyncKind, WebhookTokens};

/// A connection record for a KeyCRM account whose key is stored under `secret_name`.
pub fn connection(
    id: &str,
    shop_id: &str,
    keycrm_base_url: &str,
    secret_name: &str,
    key: &ApiKey,
    settings: Settings,
) -> Connection {
    let now = Utc::now();
    Connection {
        id: id.to_string(),
        shop_id: shop_id.to_string(),
        active: true,
        keycrm_base_url: keycrm_base_url.to_string(),
        key_mask: key.masked(),
        key_fingerprint: key.fingerprint(),
        secret_name: secret_name.to_string(),
        settings,
        webhook_tokens: WebhookTokens::default(),
        webhook_generations: Default::default(),
        account_epoch: 0,
        account_switched_at: None,
        version: 1,
        created_at: now,
        updated_at: now,
    }
}

/// A job as the schedule would send it (without the hourly run id).
pub fn job(connection_id: &str, kind: SyncKind, dry_run: bool) -> SyncJob {
    SyncJob {
        connection_id: connection_id.to_string(),
        kind,
        dry_run,
        requested_by: if dry_run {
            RequestedBy::Merchant
        } else {
            RequestedBy::Schedule
        },
        run_id: None,
    }
}

/// Runs a job to its end, one "invocation" of `budget` after another (each paused run is
/// continued as the resume schedule would). Returns the outcome and the invocations used.
pub async fn run_to_end(
    engine: &Engine,
    job: &SyncJob,
    settings: Option<Settings>,
    budget: Duration,
    max_invocations: u32,
) -> Result<(JobOutcome, u32), SyncError> {
    let mut current = job.clone();
    for n in 1..=max_invocations {
        let outcome = engine
            .run_job(&current, settings.clone(), Instant::now() + budget)
            .await?;
        match outcome {
            JobOutcome::Paused { .. } => {
                current = SyncJob {
                    requested_by: RequestedBy::Resume,
                    run_id: None,
                    ..job.clone()
                };
            }
            other => return Ok((other, n)),
        }
    }
    Ok((
        JobOutcome::Skipped {
            reason: format!("still unfinished after {max_invocations} invocations"),
        },
        max_invocations,
    ))
}
