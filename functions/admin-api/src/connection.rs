//! Connect, read, toggle, re-key (same account, or an explicit switch to another) and
//! disconnect; save settings; rotate webhook URLs.

use crate::account::{self, Verdict};
use crate::deadline::Deadline;
use crate::error::{ApiError, ApiResult, Msg};
use crate::extract::{JsonBody, OptionalJson, PublicBase, ShopAuth};
use crate::jobs::{start_full_sync_if_idle, SyncStarted};
use crate::options;
use crate::state::{AdminApi, AdminConfig, AppState};
use crate::views::{running_sync, ConnectionView, OptionsView, StatusView};
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use keycrm::{ApiKey, KeycrmClient};
use mapping::Settings;
use queue::Outgoing;
use serde::{Deserialize, Serialize};
use store::{CleanupJob, Connection, StoreError, WebhookGenerations, WebhookKind, WebhookTokens};

/// Longest string accepted as an API key (KeyCRM keys are ~60 characters).
const MAX_KEY_LEN: usize = 512;
/// Attempts at a read-modify-write when someone else writes in between.
const WRITE_ATTEMPTS: usize = 3;

/// No `Debug`: it holds the raw key until it becomes an [`ApiKey`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectRequest {
    api_key: String,
    #[serde(default)]
    keycrm_base_url: Option<String>,
    #[serde(default)]
    active: Option<bool>,
    /// Confirms that the key is for another KeyCRM account and the connection should start
    /// over with it (see [`crate::account`]). Ignored for a key of the same account.
    #[serde(default)]
    switch_account: bool,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct PatchRequest {
    active: bool,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct SaveSettingsRequest {
    /// The `version` the page read; the save is refused if the connection changed since.
    version: u64,
    settings: Settings,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct RotateRequest {
    /// Rotate only this URL; both (those in use) when absent.
    #[serde(default)]
    kind: Option<WebhookKind>,
}

pub(crate) async fn require_connection(api: &AdminApi, shop_id: &str) -> ApiResult<Connection> {
    api.connections
        .get_by_shop(shop_id)
        .await?
        .ok_or_else(ApiError::not_connected)
}

pub(crate) async fn view(
    api: &AdminApi,
    conn: &Connection,
    base: &str,
) -> ApiResult<ConnectionView> {
    let status = api.journal.status(&conn.id).await?;
    let runs = api.sync.list_runs(&conn.id, 10).await?;
    Ok(ConnectionView::build(
        conn,
        status,
        running_sync(&runs),
        base,
        &api.token_key,
    ))
}

/// A connection view with what the request itself did.
#[derive(Serialize, Debug)]
pub struct ConnectionAnswer {
    #[serde(flatten)]
    pub view: ConnectionView,
    /// A full catalog sync this request started (turning product or category sync on, or
    /// activating a connection that has it on).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync_started: Option<SyncStarted>,
    /// True when a key replacement switched the connection to another KeyCRM account.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub account_switched: bool,
    /// What the merchant should know about what happened, in their language.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notice: Option<String>,
}

impl ConnectionAnswer {
    fn plain(view: ConnectionView) -> Self {
        ConnectionAnswer {
            view,
            sync_started: None,
            account_switched: false,
            notice: None,
        }
    }
}

/// Applies `change` to the stored connection and writes it with the version check,
/// re-reading and re-applying when a concurrent writer got there first.
async fn modify(
    api: &AdminApi,
    mut conn: Connection,
    mut change: impl FnMut(&mut Connection),
) -> ApiResult<Connection> {
    for attempt in 1..=WRITE_ATTEMPTS {
        let mut next = conn.clone();
        change(&mut next);
        next.version = conn.version + 1;
        next.updated_at = Utc::now();
        match api.connections.update(&next).await {
            Ok(()) => return Ok(next),
            Err(StoreError::Conflict(_)) if attempt < WRITE_ATTEMPTS => {
                conn = api
                    .connections
                    .get(&conn.id)
                    .await?
                    .ok_or_else(ApiError::not_connected)?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(StoreError::Conflict("gave up".into()).into())
}

fn check_key(raw: String) -> ApiResult<ApiKey> {
    let key = ApiKey::new(raw);
    if key.is_empty() {
        return Err(ApiError::invalid_field(
            "api_key",
            "missing_field",
            Msg::new(
                "paste the API key from KeyCRM («Налаштування → Основні»)",
                "вставте ключ API з KeyCRM («Налаштування → Основні»)",
            ),
        ));
    }
    if key.expose().len() > MAX_KEY_LEN
        || key
            .expose()
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(ApiError::invalid_field(
            "api_key",
            "invalid_value",
            Msg::new(
                "this does not look like a KeyCRM API key",
                "це не схоже на ключ API KeyCRM",
            ),
        ));
    }
    Ok(key)
}

/// `PUT /connection`: connect with a key, or replace the key of the existing connection.
/// The key is checked against KeyCRM first; nothing is stored unless KeyCRM accepts it.
pub async fn put_connection(
    State(api): State<AppState>,
    auth: ShopAuth,
    deadline: Deadline,
    PublicBase(base): PublicBase,
    JsonBody(req): JsonBody<ConnectRequest>,
) -> ApiResult<Response> {
    let key = check_key(req.api_key)?;
    let keycrm_base = AdminConfig::normalise_base(
        req.keycrm_base_url
            .as_deref()
            .unwrap_or(&api.config.keycrm_base_url),
    );
    if !api.config.is_allowed_base(&keycrm_base) {
        return Err(ApiError::invalid_field(
            "keycrm_base_url",
            "invalid_value",
            Msg::new(
                "this KeyCRM address is not one the connector may use",
                "конектор не може використовувати цю адресу KeyCRM",
            ),
        ));
    }
    let existing = api.connections.get_by_shop(&auth.shop_id).await?;

    let client = api
        .clients
        .for_key(&keycrm_base, key.clone())
        .map_err(|e| ApiError::from_key_check(&e))?;
    deadline
        .upstream(async {
            client.verify_key().await.map_err(|e| {
                tracing::info!(shop = %auth.shop_id, kind = e.kind(), "KeyCRM did not accept the pasted key");
                ApiError::from_key_check(&e)
            })
        })
        .await?;

    match existing {
        None => create(&api, &auth.shop_id, key, keycrm_base, req.active, &base).await,
        Some(conn) => {
            let change = KeyChange {
                key,
                keycrm_base,
                active: req.active,
                switch_account: req.switch_account,
            };
            replace_key(&api, conn, change, &client, &deadline, &base).await
        }
    }
}

async fn create(
    api: &AdminApi,
    shop_id: &str,
    key: ApiKey,
    keycrm_base: String,
    active: Option<bool>,
    base: &str,
) -> ApiResult<Response> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let secret_name = format!("{}{}", api.config.secret_prefix, id);
    api.secrets.put(&secret_name, &key).await?;
    let now = Utc::now();
    let mut conn = Connection {
        id: id.clone(),
        shop_id: shop_id.to_string(),
        active: active.unwrap_or(true),
        keycrm_base_url: keycrm_base,
        key_mask: key.masked(),
        key_fingerprint: key.fingerprint(),
        secret_name: secret_name.clone(),
        settings: Settings::default(),
        webhook_tokens: WebhookTokens::default(),
        webhook_generations: WebhookGenerations::default(),
        account_epoch: 0,
        account_switched_at: None,
        version: 1,
        created_at: now,
        updated_at: now,
    };
    conn.issue_missing_webhooks();
    if let Err(e) = api.connections.create(&conn).await {
        // The secret was stored under this new id only; nothing else points at it.
        if let Err(d) = api.secrets.delete(&secret_name).await {
            tracing::error!(connection = %id, error = %d, "could not remove the secret of a connection that was not created");
        }
        return Err(e.into());
    }
    tracing::info!(shop = %shop_id, connection = %id, "KeyCRM connection created");
    let v = view(api, &conn, base).await?;
    Ok((StatusCode::CREATED, Json(ConnectionAnswer::plain(v))).into_response())
}

/// A new key for an existing connection, as the request gave it.
struct KeyChange {
    key: ApiKey,
    keycrm_base: String,
    active: Option<bool>,
    switch_account: bool,
}

fn mismatch(reasons: &[Msg]) -> ApiError {
    let pick = |f: fn(&Msg) -> &str| reasons.iter().take(3).map(f).collect::<Vec<_>>().join("; ");
    ApiError::conflict(
        "account_mismatch",
        Msg::new(
            format!(
                "this API key opens another KeyCRM account than the one this connection works with ({}); nothing was changed. To start over with the new account, send the key again with \"switch_account\": true: the connection's product links, its record of pushed orders and every KeyCRM choice in the settings are cleared, catalog and order sync are turned off until you set them up again, and the webhook URLs change",
                pick(|m| &m.en)
            ),
            format!(
                "цей ключ API відкриває інший обліковий запис KeyCRM, ніж той, з яким працює підключення ({}); нічого не змінено. Щоб почати заново з новим обліковим записом, надішліть ключ ще раз із \"switch_account\": true: зв'язки товарів, відомості про передані замовлення та всі вибори KeyCRM у налаштуваннях буде очищено, синхронізацію каталогу й замовлень вимкнено до нового налаштування, а посилання Webhook зміняться",
                pick(|m| &m.uk)
            ),
        ),
    )
}

async fn replace_key(
    api: &AdminApi,
    conn: Connection,
    change: KeyChange,
    client: &KeycrmClient,
    deadline: &Deadline,
    base: &str,
) -> ApiResult<Response> {
    let (mask, fp) = (change.key.masked(), change.key.fingerprint());
    let verdict = if fp == conn.key_fingerprint && change.keycrm_base == conn.keycrm_base_url {
        // The same key again (say, to switch the connection on): nothing to compare.
        Verdict::Same
    } else {
        // KeyCRM reads: under the request's deadline like the key check.
        deadline
            .upstream(account::compare(api, &conn, client))
            .await?
    };
    let reasons = match verdict {
        Verdict::Same | Verdict::NothingToCompare => Vec::new(),
        Verdict::Different(reasons) => reasons,
    };
    if !reasons.is_empty() && !change.switch_account {
        tracing::info!(connection = %conn.id, reasons = reasons.len(), "a key of another KeyCRM account was refused");
        return Err(mismatch(&reasons));
    }
    let switching = !reasons.is_empty();
    let conn = if switching {
        if let Some(r) = running_sync(&api.sync.list_runs(&conn.id, 10).await?) {
            tracing::info!(connection = %conn.id, run = %r.run_id, "account switch refused while a sync runs");
            return Err(ApiError::conflict(
                "sync_running",
                Msg::new(
                    "a catalog sync of this connection is queued or running; switch the account when it has finished",
                    "синхронізація каталогу цього підключення в черзі або триває; змініть обліковий запис, коли вона завершиться",
                ),
            ));
        }
        // The connection moves to a clean slate first and the key is stored after: a
        // failure in between leaves the old key on an emptied connection (every flow off),
        // never the new key on the old account's links.
        let now = Utc::now();
        let conn = modify(api, conn, |c| {
            c.key_mask = mask.clone();
            c.key_fingerprint = fp.clone();
            c.keycrm_base_url = change.keycrm_base.clone();
            if let Some(a) = change.active {
                c.active = a;
            }
            c.account_epoch = c.account_epoch.saturating_add(1);
            c.account_switched_at = Some(now);
            c.settings = c.settings.without_keycrm_ids();
            // The old account's triggers must stop reaching this connection.
            for k in WebhookKind::ALL {
                if c.webhook_wanted(k) {
                    c.rotate_webhook(k);
                }
            }
        })
        .await?;
        api.secrets.put(&conn.secret_name, &change.key).await?;
        conn
    } else {
        api.secrets.put(&conn.secret_name, &change.key).await?;
        modify(api, conn, |c| {
            c.key_mask = mask.clone();
            c.key_fingerprint = fp.clone();
            c.keycrm_base_url = change.keycrm_base.clone();
            if let Some(a) = change.active {
                c.active = a;
            }
        })
        .await?
    };
    api.clients.forget(&conn.id);
    // Another key may mean other dictionaries: they must be read afresh.
    if let Err(e) = api.cache.invalidate(&conn.id).await {
        tracing::warn!(connection = %conn.id, error = %e, "could not drop cached options");
    }
    let v = view(api, &conn, base).await?;
    let mut answer = ConnectionAnswer::plain(v);
    if switching {
        tracing::info!(shop = %conn.shop_id, connection = %conn.id, epoch = conn.account_epoch, "KeyCRM API key replaced: switched to another KeyCRM account");
        answer.account_switched = true;
        answer.notice = Some(
            Msg::new(
                "Switched to another KeyCRM account: product links, the record of pushed orders and every KeyCRM choice in the settings were cleared, catalog and order sync are off, and the webhook URLs changed. Open the settings, choose the new account's source, statuses and methods, turn the flows on, and paste the new webhook URLs into the new account's triggers.",
                "Підключення переведено на інший обліковий запис KeyCRM: зв'язки товарів, відомості про передані замовлення та всі вибори KeyCRM у налаштуваннях очищено, синхронізацію каталогу й замовлень вимкнено, посилання Webhook змінилися. Відкрийте налаштування, виберіть джерело, статуси та способи нового облікового запису, увімкніть синхронізацію і вставте нові посилання Webhook у тригери нового облікового запису.",
            )
            .get(crate::lang::current())
            .to_string(),
        );
    } else {
        tracing::info!(shop = %conn.shop_id, connection = %conn.id, "KeyCRM API key replaced (same account)");
    }
    Ok((StatusCode::OK, Json(answer)).into_response())
}

/// `GET /connection`
pub async fn get_connection(
    State(api): State<AppState>,
    auth: ShopAuth,
    PublicBase(base): PublicBase,
) -> ApiResult<Json<ConnectionView>> {
    let conn = require_connection(&api, &auth.shop_id).await?;
    Ok(Json(view(&api, &conn, &base).await?))
}

/// `PATCH /connection`: the active/inactive toggle.
pub async fn patch_connection(
    State(api): State<AppState>,
    auth: ShopAuth,
    PublicBase(base): PublicBase,
    JsonBody(req): JsonBody<PatchRequest>,
) -> ApiResult<Json<ConnectionAnswer>> {
    let conn = require_connection(&api, &auth.shop_id).await?;
    let was_active = conn.active;
    let conn = if conn.active == req.active {
        conn
    } else {
        modify(&api, conn, |c| c.active = req.active).await?
    };
    tracing::info!(shop = %conn.shop_id, connection = %conn.id, active = conn.active, "connection toggled");
    // Switching on a connection whose catalog sync is on starts that sync now, not at night.
    let started = if !was_active && conn.active && conn.settings.catalog_sync_on() {
        start_full_sync_if_idle(&api, &conn, &auth.shop_id).await
    } else {
        None
    };
    let mut answer = ConnectionAnswer::plain(view(&api, &conn, &base).await?);
    answer.sync_started = started;
    Ok(Json(answer))
}

/// `DELETE /connection`: answers at once. The connection is marked as deleted and its shop
/// freed in one write, so from that moment nothing runs for it (every consumer and the webhook
/// find no connection) and the shop may connect again; its data, then its key, then the mark
/// are removed in the background by a cleanup job (catalog-sync, see `docs/admin-api.md`).
pub async fn delete_connection(
    State(api): State<AppState>,
    auth: ShopAuth,
) -> ApiResult<StatusCode> {
    let mut conn = require_connection(&api, &auth.shop_id).await?;
    let mut attempt = 1;
    loop {
        match api.connections.mark_deleting(&conn).await {
            Ok(()) => break,
            // Changed meanwhile (a toggle, a settings save): delete what is there now.
            Err(StoreError::Conflict(_)) if attempt < WRITE_ATTEMPTS => {
                attempt += 1;
                conn = require_connection(&api, &auth.shop_id).await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    api.clients.forget(&conn.id);
    // Delayed past the work still in flight for the connection. If the send fails, the
    // catalog-sync resume schedule finds the mark and starts the cleanup within minutes.
    let job = Outgoing::new(CleanupJob::new(&conn.id).to_body()).delayed(api.config.cleanup_delay);
    if let Err(e) = api.sync_queue.send(job).await {
        tracing::warn!(connection = %conn.id, error = %e, "cleanup job not queued; the resume schedule starts it");
    }
    tracing::info!(shop = %conn.shop_id, connection = %conn.id, "KeyCRM connection deleted; its data is removed in the background");
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /connection/status`
pub async fn get_status(
    State(api): State<AppState>,
    auth: ShopAuth,
) -> ApiResult<Json<StatusView>> {
    let conn = require_connection(&api, &auth.shop_id).await?;
    let status = api.journal.status(&conn.id).await?;
    let runs = api.sync.list_runs(&conn.id, 10).await?;
    Ok(Json(StatusView::build(&conn, status, running_sync(&runs))))
}

/// `GET /connection/options[?refresh=true]`
pub async fn get_options(
    State(api): State<AppState>,
    auth: ShopAuth,
    deadline: Deadline,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<OptionsView>> {
    let refresh = match crate::query_param(q.as_deref(), "refresh").as_deref() {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") | Some("") => true,
        Some(_) => {
            return Err(ApiError::invalid_field(
                "refresh",
                "invalid_value",
                Msg::new("use true or false", "вкажіть true або false"),
            ));
        }
    };
    let conn = require_connection(&api, &auth.shop_id).await?;
    let (opts, at, cached) = options::load(&api, &conn, refresh, &deadline).await?;
    Ok(Json(OptionsView::build(opts, at, cached)))
}

/// `PUT /connection/settings`: checked against both sides' dictionaries (a young cache when
/// it holds every reference, live lists otherwise; see [`options::check_settings`]), saved
/// whole or not at all. Turning product or category sync on starts a full sync at once.
pub async fn put_settings(
    State(api): State<AppState>,
    auth: ShopAuth,
    deadline: Deadline,
    PublicBase(base): PublicBase,
    JsonBody(req): JsonBody<SaveSettingsRequest>,
) -> ApiResult<Json<ConnectionAnswer>> {
    let conn = require_connection(&api, &auth.shop_id).await?;
    if conn.version != req.version {
        return Err(ApiError::conflict(
            "version_conflict",
            Msg::new(
                format!(
                    "the connection changed since it was read (it is at version {} now); reload and try again",
                    conn.version
                ),
                format!(
                    "підключення змінилося після завантаження сторінки (зараз версія {}); оновіть сторінку й спробуйте ще раз",
                    conn.version
                ),
            ),
        ));
    }
    check_settings(&api, &conn, &deadline, &req.settings).await?;

    let mut next = conn.clone();
    next.settings = req.settings;
    if next.webhook_wanted(WebhookKind::Cards) && !conn.webhook_wanted(WebhookKind::Cards) {
        // Entering pipelines: a card URL of its own generation (never a withdrawn one).
        next.rotate_webhook(WebhookKind::Cards);
    }
    if !next.webhook_wanted(WebhookKind::Cards) {
        // Leaving pipelines withdraws an old-style card URL for good.
        next.webhook_tokens.cards = None;
    }
    next.issue_missing_webhooks();
    next.version = conn.version + 1;
    next.updated_at = Utc::now();
    // One conditional write: the version the page read, or nothing.
    api.connections.update(&next).await?;
    tracing::info!(connection = %next.id, version = next.version, "settings saved");
    let (b, s) = (&conn.settings, &next.settings);
    let turned_on =
        (s.sync_products && !b.sync_products) || (s.sync_categories && !b.sync_categories);
    let started = if turned_on && next.active {
        start_full_sync_if_idle(&api, &next, &auth.shop_id).await
    } else {
        None
    };
    let mut answer = ConnectionAnswer::plain(view(&api, &next, &base).await?);
    answer.sync_started = started;
    Ok(Json(answer))
}

/// Checks settings as a save would: every reference against both sides' dictionaries (the
/// young cache first, live lists for whatever it lacks: [`options::check_settings`]), and
/// what order push needs.
pub(crate) async fn check_settings(
    api: &AdminApi,
    conn: &Connection,
    deadline: &Deadline,
    settings: &Settings,
) -> ApiResult<()> {
    let (problems, _) = options::check_settings(api, conn, deadline, |opts| {
        settings.problems(&opts.keycrm, &opts.shop)
    })
    .await?;
    if problems.is_empty() {
        return Ok(());
    }
    tracing::info!(
        connection = %conn.id,
        errors = problems.len(),
        "settings refused"
    );
    Err(ApiError::invalid_settings(&problems))
}

/// `POST /connection/webhook-tokens/rotate`: new URLs; the old ones stop working at once.
pub async fn rotate_tokens(
    State(api): State<AppState>,
    auth: ShopAuth,
    PublicBase(base): PublicBase,
    OptionalJson(req): OptionalJson<RotateRequest>,
) -> ApiResult<Json<ConnectionView>> {
    let conn = require_connection(&api, &auth.shop_id).await?;
    let kinds: Vec<WebhookKind> = match req.kind {
        Some(k) if !conn.webhook_wanted(k) => {
            return Err(ApiError::conflict(
                "cards_webhook_unused",
                Msg::new(
                    "the pipeline card webhook exists only while the order sync type is pipelines",
                    "посилання Webhook для карток воронок є лише з типом синхронізації «Створювати в воронках»",
                ),
            ))
        }
        Some(k) => vec![k],
        None => WebhookKind::ALL
            .into_iter()
            .filter(|k| conn.webhook_wanted(*k))
            .collect(),
    };
    let conn = modify(&api, conn, |c| {
        for k in &kinds {
            // A concurrent save may have left pipelines meanwhile: no card URL then.
            if c.webhook_wanted(*k) {
                c.rotate_webhook(*k);
            }
        }
    })
    .await?;
    let names: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
    tracing::info!(connection = %conn.id, kinds = ?names, "webhook URLs rotated");
    Ok(Json(view(&api, &conn, &base).await?))
}
