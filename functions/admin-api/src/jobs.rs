//! Work the merchant can ask for: a catalog sync (or a dry run of proposed settings) now, its
//! reports, a re-push of an order that failed, and pushing the orders skipped while the
//! connection was inactive or order sync was off.

use crate::connection::{check_settings, require_connection};
use crate::deadline::Deadline;
use crate::error::{ApiError, ApiResult, Msg};
use crate::extract::{JsonBody, OptionalJson, ShopAuth};
use crate::state::{AdminApi, AppState};
use crate::views::{is_live, running_sync};
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use jobs::RepushError;
use mapping::Settings;
use queue::Outgoing;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::LazyLock;
use std::time::Duration;
use store::{
    Connection, LedgerEntry, RequestedBy, RunState, StoreError, SyncJob, SyncKind, SyncRun,
};

const DEFAULT_RUNS: usize = 20;
const MAX_RUNS: usize = 100;

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct SyncRequest {
    kind: SyncKind,
    #[serde(default)]
    dry_run: bool,
    /// Proposed settings (the whole object) to preview instead of the saved ones; dry runs
    /// only. Checked as a save would check them; nothing is saved.
    #[serde(default)]
    settings: Option<Settings>,
}

/// The sync-jobs message: catalog-sync's `JobMessage` (a [`SyncJob`] plus, for a dry run,
/// the proposed settings).
#[derive(Serialize)]
struct JobMessage<'a> {
    #[serde(flatten)]
    job: &'a SyncJob,
    #[serde(skip_serializing_if = "Option::is_none")]
    settings: Option<&'a Settings>,
}

/// A sync a request started, for its answer.
#[derive(Serialize, Debug, Clone)]
pub struct SyncStarted {
    pub run_id: String,
    pub kind: SyncKind,
    /// The run's report (state `queued` until catalog-sync starts it).
    pub report: String,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct PushSkippedRequest {
    /// Only orders the connector received at or after this moment (RFC 3339).
    #[serde(default)]
    since: Option<DateTime<Utc>>,
}

#[derive(Serialize, Debug)]
pub struct PushSkippedAccepted {
    /// Orders sent to the order queue by this request.
    pub queued: usize,
    /// More skipped orders wait: call again to queue the next ones.
    pub more: bool,
    pub since: Option<DateTime<Utc>>,
    pub message: String,
}

#[derive(Serialize, Debug)]
pub struct SyncAccepted {
    pub run_id: String,
    pub connection_id: String,
    pub kind: SyncKind,
    pub dry_run: bool,
    /// `queued`, or `running` for a run that was already under way (`already_queued`).
    pub state: &'static str,
    /// The run's report (state `queued` until catalog-sync starts it).
    pub report: String,
    /// No new run was queued: a run that covers the request (the same kind, or a full one)
    /// was queued or running already, and this is that run.
    pub already_queued: bool,
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

fn no_stored_event() -> ApiError {
    ApiError::conflict(
        "no_stored_event",
        Msg::new(
            "the original order event was not kept; publish the order again from the shop",
            "початкову подію замовлення не збережено; опублікуйте замовлення з магазину ще раз",
        ),
    )
}

fn queue_unavailable(e: queue::QueueError) -> ApiError {
    tracing::error!(error = %e, "could not enqueue");
    ApiError::queue_unavailable()
}

/// Records a queued run and sends its job; the run's id comes back. If the queue refuses,
/// the report says the run failed and nothing ran.
async fn enqueue_sync(
    api: &AdminApi,
    conn: &Connection,
    kind: SyncKind,
    dry_run: bool,
    settings: Option<&Settings>,
) -> ApiResult<String> {
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let job = SyncJob {
        connection_id: conn.id.clone(),
        kind,
        dry_run,
        requested_by: RequestedBy::Merchant,
        run_id: Some(run_id.clone()),
    };
    let body = serde_json::to_string(&JobMessage {
        job: &job,
        settings,
    })
    .map_err(|_| {
        ApiError::internal(Msg::new(
            "could not encode the sync job",
            "не вдалося сформувати завдання синхронізації",
        ))
    })?;
    // The report exists from the start, so the page can poll the run id at once; catalog-sync
    // replaces it (same run id) when the run begins.
    let mut run = SyncRun {
        run_id: run_id.clone(),
        connection_id: conn.id.clone(),
        kind: Some(kind),
        dry_run,
        state: RunState::Queued,
        started_at: Some(Utc::now()),
        ..SyncRun::default()
    };
    api.sync.put_run(&run).await?;
    if let Err(e) = api.sync_queue.send(Outgoing::new(body)).await {
        run.state = RunState::Failed;
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
        kind = kind.as_str(),
        dry_run,
        proposed_settings = settings.is_some(),
        "sync requested"
    );
    Ok(run_id)
}

/// Runs per connection read to find a live one. Newest first; dry runs (which are never
/// joined) come in between, so more than a screenful is read.
const LIVE_SCAN: usize = 50;

/// Locks that make "is a run live? if not, queue one" a single step per connection within
/// this process: ten clicks at once see each other's runs instead of queuing ten. Striped by
/// connection (a fixed set, nothing to clean up); two connections sharing a stripe only wait
/// for each other's few milliseconds. Instances of the function do not share them (see
/// `docs/admin-api.md`, "Sync now").
static START_LOCKS: LazyLock<Vec<tokio::sync::Mutex<()>>> =
    LazyLock::new(|| (0..64).map(|_| tokio::sync::Mutex::new(())).collect());

fn start_lock(connection_id: &str) -> &'static tokio::sync::Mutex<()> {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    connection_id.hash(&mut h);
    &START_LOCKS[(h.finish() as usize) % START_LOCKS.len()]
}

/// A live run that makes a new real run of `kind` pointless: one of the same kind, or a full
/// run, which updates prices and availability too. (A run recorded without a kind is not
/// known to cover anything.)
fn covering(runs: &[SyncRun], kind: SyncKind) -> Option<&SyncRun> {
    runs.iter()
        .find(|r| is_live(r) && r.kind.is_some_and(|k| k == kind || k == SyncKind::Full))
}

/// Turning a flow on starts it: a full sync now, unless one is queued or running already
/// (the lease would only make a second one wait or skip). Failures are logged, not
/// returned: the change that triggered it has been saved, and the nightly run still comes.
pub(crate) async fn start_full_sync_if_idle(
    api: &AdminApi,
    conn: &Connection,
    shop_id: &str,
) -> Option<SyncStarted> {
    let _one_at_a_time = start_lock(&conn.id).lock().await;
    match api.sync.list_runs(&conn.id, 10).await {
        Ok(runs) => {
            if let Some(r) = running_sync(&runs) {
                tracing::info!(connection = %conn.id, run = %r.run_id, "a sync is queued or running already; no second one started");
                return None;
            }
        }
        Err(e) => {
            tracing::warn!(connection = %conn.id, error = %e, "could not read runs; full sync not started");
            return None;
        }
    }
    match enqueue_sync(api, conn, SyncKind::Full, false, None).await {
        Ok(run_id) => Some(SyncStarted {
            report: format!("/v1/shops/{shop_id}/connection/runs/{run_id}"),
            run_id,
            kind: SyncKind::Full,
        }),
        Err(e) => {
            tracing::warn!(connection = %conn.id, code = e.code, "the full sync could not be started; the nightly run will do it");
            None
        }
    }
}

/// `POST /connection/sync`: queues a sync job and answers with the run id to poll.
pub async fn start_sync(
    State(api): State<AppState>,
    auth: ShopAuth,
    deadline: Deadline,
    JsonBody(req): JsonBody<SyncRequest>,
) -> ApiResult<(StatusCode, Json<SyncAccepted>)> {
    let conn = require_connection(&api, &auth.shop_id).await?;
    if !conn.active {
        return Err(ApiError::inactive());
    }
    if req.settings.is_some() && !req.dry_run {
        return Err(ApiError::invalid_field(
            "settings",
            "dry_run_only",
            Msg::new(
                "proposed settings are previewed with \"dry_run\": true; save them to run with them",
                "запропоновані налаштування можна переглянути лише з \"dry_run\": true; щоб запустити з ними, збережіть їх",
            ),
        ));
    }
    let enabled = conn.settings.catalog_sync_enabled(req.kind.into());
    // A dry run only reports, so it may preview a sync before the merchant turns it on.
    if !enabled && !req.dry_run {
        let kind = req.kind.as_str();
        return Err(ApiError::conflict(
            "sync_disabled",
            Msg::new(
                format!("{kind} sync is turned off in the settings; turn it on or ask for a dry run"),
                format!("синхронізацію ({kind}) вимкнено в налаштуваннях; увімкніть її або запустіть пробний прогін"),
            ),
        ));
    }
    if let Some(proposed) = &req.settings {
        // Previewed only if it could be saved: the same checks as a save.
        check_settings(&api, &conn, &deadline, proposed).await?;
    }
    let accepted = |run_id: String, kind: SyncKind, state: RunState, already_queued: bool| {
        (
            StatusCode::ACCEPTED,
            Json(SyncAccepted {
                report: format!("/v1/shops/{}/connection/runs/{run_id}", auth.shop_id),
                run_id,
                connection_id: conn.id.clone(),
                kind,
                dry_run: req.dry_run,
                state: state.as_str(),
                already_queued,
            }),
        )
    };
    // A dry run only reports and each previews its own settings: every one is queued.
    if req.dry_run {
        let run_id = enqueue_sync(&api, &conn, req.kind, true, req.settings.as_ref()).await?;
        return Ok(accepted(run_id, req.kind, RunState::Queued, false));
    }
    // A real run while one that covers it is queued or running would do the same work again
    // on the key's rate budget (and wait for the connection's lease to do it): the merchant
    // gets the run that will do it.
    let _one_at_a_time = start_lock(&conn.id).lock().await;
    let runs = api.sync.list_runs(&conn.id, LIVE_SCAN).await?;
    if let Some(live) = covering(&runs, req.kind) {
        tracing::info!(
            connection = %conn.id,
            run = %live.run_id,
            kind = req.kind.as_str(),
            "a sync covering this one is queued or running already; answered with it"
        );
        let kind = live.kind.unwrap_or(req.kind);
        return Ok(accepted(live.run_id.clone(), kind, live.state, true));
    }
    let run_id = enqueue_sync(&api, &conn, req.kind, false, None).await?;
    Ok(accepted(run_id, req.kind, RunState::Queued, false))
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
                    "invalid_value",
                    Msg::new(
                        format!("a number from 1 to {MAX_RUNS}"),
                        format!("число від 1 до {MAX_RUNS}"),
                    ),
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
                Msg::new(
                    "this connection has no run with this id",
                    "у цього підключення немає запуску з таким ідентифікатором",
                ),
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
        return Err(ApiError::inactive());
    }
    // The previous error is shown back to the merchant with the acceptance.
    let previous_error = api
        .ledger
        .get(&conn.id, &order_id)
        .await?
        .and_then(|e| e.last_error);
    // The same re-push order-push offers: reset the ledger entry, queue the stored event.
    jobs::repush(
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
            Msg::new(
                "the connector has no record of this order",
                "конектор не має відомостей про це замовлення",
            ),
        ),
        RepushError::AlreadyInKeycrm { .. } => ApiError::conflict(
            "already_in_keycrm",
            Msg::new(
                "this order is already in KeyCRM",
                "це замовлення вже є в KeyCRM",
            ),
        ),
        RepushError::InProgress(_) => ApiError::conflict(
            "push_in_progress",
            Msg::new(
                "this order is in KeyCRM already or being pushed right now",
                "це замовлення вже в KeyCRM або передається саме зараз",
            ),
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
            state: RunState::Queued.as_str(),
            previous_error,
        }),
    ))
}

/// Orders queued per push-skipped request at most: a shop with thousands of skipped orders
/// is paged through in several requests (`more`), each well inside the API's time limit.
const PUSH_SKIPPED_PER_REQUEST: usize = 500;
/// Ledger entries read per listing.
const PUSH_SKIPPED_PAGE: usize = 100;
/// Orders reset and sent at once.
const PUSH_SKIPPED_PARALLEL: usize = 10;

/// What became of one skipped order.
enum Pushed {
    Queued,
    /// Another request or a re-push took it first: not sent again.
    Taken,
    /// The queue refused it; it was put back among the skipped orders.
    QueueDown(queue::QueueError),
}

/// Makes one skipped order claimable and sends its stored event. The ledger's conditional
/// transition (skipped -> pending, nothing else) lets exactly one request do it, so an order
/// is queued once however often the button is pressed.
async fn push_one(api: &AdminApi, conn: &Connection, e: &LedgerEntry) -> ApiResult<Pushed> {
    let Some(body) = e.event_json.clone() else {
        return Ok(Pushed::Taken);
    };
    match api.ledger.unskip(&conn.id, &e.shop_order_id).await {
        Ok(_) => {}
        Err(StoreError::Conflict(_) | StoreError::NotFound(_)) => return Ok(Pushed::Taken),
        Err(other) => return Err(other.into()),
    }
    // Marked like order-push's own re-push (`repush`); informational, the ledger decides.
    let msg = Outgoing::new(body).with_attribute("repush", "1");
    match api.order_queue.send(msg).await {
        Ok(_) => Ok(Pushed::Queued),
        Err(qe) => {
            // Back among the skipped, so the next click finds it: take it as a (short) claim
            // and settle it as skipped again, which lists it once more.
            let holder = uuid::Uuid::new_v4().simple().to_string();
            let back = async {
                api.ledger
                    .claim(
                        &conn.id,
                        &e.shop_order_id,
                        e.target,
                        &holder,
                        Duration::from_secs(60),
                        "",
                    )
                    .await?;
                api.ledger
                    .mark_skipped(
                        &conn.id,
                        &e.shop_order_id,
                        &holder,
                        "skipped; pushing it failed because the order queue was unavailable",
                    )
                    .await
            };
            if let Err(se) = back.await {
                tracing::error!(connection = %conn.id, order = %e.shop_order_id, error = %se, "a skipped order could not be put back after the queue failed; re-push it by hand");
            }
            Ok(Pushed::QueueDown(qe))
        }
    }
}

/// `POST /connection/orders/push-skipped` (`{}` or `{"since": "…"}`): sends the orders
/// skipped while the connection was inactive or order sync was off to the order queue, each
/// exactly once; order-push places them as new orders (still at most once in KeyCRM).
pub async fn push_skipped(
    State(api): State<AppState>,
    auth: ShopAuth,
    OptionalJson(req): OptionalJson<PushSkippedRequest>,
) -> ApiResult<(StatusCode, Json<PushSkippedAccepted>)> {
    let conn = require_connection(&api, &auth.shop_id).await?;
    if !conn.active {
        return Err(ApiError::inactive());
    }
    if !conn.settings.order_sync_on() {
        return Err(ApiError::conflict(
            "order_sync_off",
            Msg::new(
                "order sync is off («Не синхронізувати»): choose how orders are created in KeyCRM first",
                "синхронізацію замовлень вимкнено («Не синхронізувати»): спершу виберіть, як створювати замовлення в KeyCRM",
            ),
        ));
    }
    let mut queued = 0usize;
    let mut more = false;
    let mut queue_error = None;
    // Bounded even if the listing keeps showing orders others are taking.
    let max_pages = PUSH_SKIPPED_PER_REQUEST / PUSH_SKIPPED_PAGE + 2;
    for _ in 0..max_pages {
        let room = PUSH_SKIPPED_PER_REQUEST - queued;
        if room == 0 {
            more = !api.ledger.skipped(&conn.id, req.since, 1).await?.is_empty();
            break;
        }
        let page = api
            .ledger
            .skipped(&conn.id, req.since, PUSH_SKIPPED_PAGE.min(room))
            .await?;
        if page.is_empty() {
            break;
        }
        let (api_ref, conn_ref) = (&*api, &conn);
        let results: Vec<ApiResult<Pushed>> = futures::stream::iter(page)
            .map(|e| async move { push_one(api_ref, conn_ref, &e).await })
            .buffer_unordered(PUSH_SKIPPED_PARALLEL)
            .collect()
            .await;
        let mut progress = false;
        for r in results {
            match r? {
                Pushed::Queued => {
                    queued += 1;
                    progress = true;
                }
                Pushed::Taken => {}
                Pushed::QueueDown(e) => queue_error = Some(e),
            }
        }
        if queue_error.is_some() {
            break;
        }
        if !progress {
            // Listed, but taken by someone else meanwhile: let them finish.
            more = true;
            break;
        }
    }
    if let Some(e) = queue_error {
        tracing::warn!(connection = %conn.id, queued, "pushing skipped orders stopped: the order queue failed");
        if queued == 0 {
            return Err(queue_unavailable(e));
        }
        more = true;
    }
    tracing::info!(connection = %conn.id, queued, more, "skipped orders queued for push");
    let lang = crate::lang::current();
    let message = match (queued, more) {
        (0, _) => Msg::new(
            "there are no skipped orders to push",
            "немає пропущених замовлень для передачі",
        ),
        (n, false) => Msg::new(
            format!("{n} skipped order(s) queued; they appear in KeyCRM within minutes"),
            format!("{n} пропущен(е/их) замовлен(ня/ь) поставлено в чергу; вони з'являться в KeyCRM за кілька хвилин"),
        ),
        (n, true) => Msg::new(
            format!("{n} skipped order(s) queued; more remain, push again to queue the next ones"),
            format!("{n} пропущен(е/их) замовлен(ня/ь) поставлено в чергу; є ще, натисніть ще раз, щоб передати наступні"),
        ),
    };
    Ok((
        StatusCode::ACCEPTED,
        Json(PushSkippedAccepted {
            queued,
            more,
            since: req.since,
            message: message.get(lang).to_string(),
        }),
    ))
}
