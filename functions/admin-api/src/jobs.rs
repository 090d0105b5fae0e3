//! Work the merchant can ask for: a catalog sync (or its dry run) now, its reports, and a
//! re-push of an order that failed.

use crate::connection::require_connection;
use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, ShopAuth};
use crate::state::AppState;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use order_push::RepushError;
use queue::Outgoing;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use store::{SyncJob, SyncKind, SyncRun};

const DEFAULT_RUNS: usize = 20;
const MAX_RUNS: usize = 100;

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct SyncRequest {
    kind: SyncKind,
    #[serde(default)]
    dry_run: bool,
}

#[derive(Serialize, Debug)]
pub struct SyncAccepted {
    pub run_id: String,
    pub connection_id: String,
    pub kind: SyncKind,
    pub dry_run: bool,
    pub state: &'static str,
    /// The run's report (state `queued` until catalog-sync starts it).
    pub report: String,
}

#[derive(Serialize, Debug)]
pub struct RunsView {
    pub runs: Vec<SyncRun>,
}

#[derive(Serialize, Debug)]
pub struct RepushAccepted {
    pub shop_order_id: String,
    pub state: &'static str,
    /// The previous attempt's error, for the page to show what is being retried.
    pub previous_error: Option<String>,
}

fn inactive() -> ApiError {
    ApiError::conflict(
        "connection_inactive",
        "the connection is inactive: activate it first",
    )
}

fn no_stored_event() -> ApiError {
    ApiError::conflict(
        "no_stored_event",
        "the original order event was not kept; publish the order again from the shop",
    )
}

fn queue_unavailable(e: queue::QueueError) -> ApiError {
    tracing::error!(error = %e, "could not enqueue");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "queue_unavailable",
        "the work queue is unavailable; nothing was started, try again",
    )
}

/// `POST /connection/sync`: queues a sync job and answers with the run id to poll.
pub async fn start_sync(
    State(api): State<AppState>,
    auth: ShopAuth,
    JsonBody(req): JsonBody<SyncRequest>,
) -> ApiResult<(StatusCode, Json<SyncAccepted>)> {
    let conn = require_connection(&api, &auth.shop_id).await?;
    if !conn.active {
        return Err(inactive());
    }
    let s = &conn.settings;
    let enabled = match req.kind {
        SyncKind::Full => s.sync_products || s.sync_categories,
        SyncKind::Prices => s.sync_products,
    };
    // A dry run only reports, so it may preview a sync before the merchant turns it on.
    if !enabled && !req.dry_run {
        return Err(ApiError::conflict(
            "sync_disabled",
            format!(
                "{} sync is turned off in the settings; turn it on or ask for a dry run",
                req.kind.as_str()
            ),
        ));
    }
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let job = SyncJob {
        connection_id: conn.id.clone(),
        kind: req.kind,
        dry_run: req.dry_run,
        requested_by: "merchant".into(),
        run_id: Some(run_id.clone()),
    };
    let body = serde_json::to_string(&job)
        .map_err(|_| ApiError::internal("could not encode the sync job"))?;
    // The report exists from the start, so the page can poll the run id at once; catalog-sync
    // replaces it (same run id) when the run begins.
    let mut run = SyncRun {
        run_id: run_id.clone(),
        connection_id: conn.id.clone(),
        kind: Some(req.kind),
        dry_run: req.dry_run,
        state: "queued".into(),
        started_at: Some(Utc::now()),
        ..SyncRun::default()
    };
    api.sync.put_run(&run).await?;
    if let Err(e) = api.sync_queue.send(Outgoing::new(body)).await {
        run.state = "failed".into();
        run.finished_at = Some(Utc::now());
        run.message = Some("the job could not be queued; nothing ran".into());
        if let Err(e) = api.sync.put_run(&run).await {
            tracing::warn!(connection = %conn.id, run = %run_id, error = %e, "could not mark an unqueued run as failed");
        }
        return Err(queue_unavailable(e));
    }
    tracing::info!(
        connection = %conn.id,
        run = %run_id,
        kind = req.kind.as_str(),
        dry_run = req.dry_run,
        "sync requested"
    );
    Ok((
        StatusCode::ACCEPTED,
        Json(SyncAccepted {
            report: format!("/v1/shops/{}/connection/runs/{run_id}", auth.shop_id),
            run_id,
            connection_id: conn.id,
            kind: req.kind,
            dry_run: req.dry_run,
            state: "queued",
        }),
    ))
}

/// `GET /connection/runs[?limit=N]`, newest first.
pub async fn list_runs(
    State(api): State<AppState>,
    auth: ShopAuth,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<RunsView>> {
    let limit = match crate::query_param(q.as_deref(), "limit") {
        None => DEFAULT_RUNS,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=MAX_RUNS).contains(&n) => n,
            _ => {
                return Err(ApiError::invalid_field(
                    "limit",
                    format!("a number from 1 to {MAX_RUNS}"),
                ))
            }
        },
    };
    let conn = require_connection(&api, &auth.shop_id).await?;
    let runs = api.sync.list_runs(&conn.id, limit).await?;
    Ok(Json(RunsView { runs }))
}

/// `GET /connection/runs/{run_id}`
pub async fn get_run(
    State(api): State<AppState>,
    auth: ShopAuth,
    Path(params): Path<HashMap<String, String>>,
) -> ApiResult<Json<SyncRun>> {
    let run_id = params.get("run_id").cloned().unwrap_or_default();
    let conn = require_connection(&api, &auth.shop_id).await?;
    api.sync
        .get_run(&conn.id, &run_id)
        .await?
        .map(Json)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "run_not_found",
                "this connection has no run with this id",
            )
        })
}

/// `POST /connection/orders/{order_id}/repush`: makes a failed or skipped order claimable
/// again and sends its stored `order.created` event back to the order queue.
pub async fn repush_order(
    State(api): State<AppState>,
    auth: ShopAuth,
    Path(params): Path<HashMap<String, String>>,
) -> ApiResult<(StatusCode, Json<RepushAccepted>)> {
    let order_id = params.get("order_id").cloned().unwrap_or_default();
    let conn = require_connection(&api, &auth.shop_id).await?;
    if !conn.active {
        return Err(inactive());
    }
    // The previous error is shown back to the merchant with the acceptance.
    let previous_error = api
        .ledger
        .get(&conn.id, &order_id)
        .await?
        .and_then(|e| e.last_error);
    // The same re-push order-push offers: reset the ledger entry, queue the stored event.
    order_push::repush(
        api.ledger.as_ref(),
        api.order_queue.as_ref(),
        &conn.id,
        &order_id,
    )
    .await
    .map_err(|e| match e {
        RepushError::NotFound(_) => ApiError::new(
            StatusCode::NOT_FOUND,
            "order_not_found",
            "the connector has no record of this order",
        ),
        RepushError::AlreadyInKeycrm { .. } => {
            ApiError::conflict("already_in_keycrm", "this order is already in KeyCRM")
        }
        RepushError::InProgress(_) => ApiError::conflict(
            "push_in_progress",
            "this order is in KeyCRM already or being pushed right now",
        ),
        RepushError::NoStoredEvent(_) => no_stored_event(),
        RepushError::Store(e) => e.into(),
        RepushError::Queue(e) => queue_unavailable(e),
    })?;
    tracing::info!(connection = %conn.id, order = %order_id, "order re-push queued");
    Ok((
        StatusCode::ACCEPTED,
        Json(RepushAccepted {
            shop_order_id: order_id,
            state: "queued",
            previous_error,
        }),
    ))
}
