//! Connect, read, toggle, re-key and disconnect; save settings; rotate webhook tokens.

use crate::deadline::Deadline;
use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, OptionalJson, PublicBase, ShopAuth};
use crate::options;
use crate::state::{AdminApi, AdminConfig, AppState};
use crate::views::{ConnectionView, IssuedTokens, OptionsView, StatusView};
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use keycrm::ApiKey;
use mapping::settings::OrderSyncType;
use mapping::Settings;
use serde::Deserialize;
use store::{tokens, Connection, StoreError, WebhookKind, WebhookTokens};

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

async fn view(
    api: &AdminApi,
    conn: &Connection,
    base: &str,
    issued: &IssuedTokens,
) -> ApiResult<ConnectionView> {
    let status = api.journal.status(&conn.id).await?;
    Ok(ConnectionView::build(conn, status, base, issued))
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
            "paste the API key from KeyCRM (Settings -> API)",
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
            "this does not look like a KeyCRM API key",
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
            "this KeyCRM address is not one the connector may use",
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
        Some(conn) => replace_key(&api, conn, key, keycrm_base, req.active, &base).await,
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
    let (orders_token, orders_hash) = tokens::generate();
    let now = Utc::now();
    let conn = Connection {
        id: id.clone(),
        shop_id: shop_id.to_string(),
        active: active.unwrap_or(true),
        keycrm_base_url: keycrm_base,
        key_mask: key.masked(),
        key_fingerprint: key.fingerprint(),
        secret_name: secret_name.clone(),
        settings: Settings::default(),
        webhook_tokens: WebhookTokens {
            orders: Some(orders_hash),
            cards: None,
        },
        version: 1,
        created_at: now,
        updated_at: now,
    };
    if let Err(e) = api.connections.create(&conn).await {
        // The secret was stored under this new id only; nothing else points at it.
        if let Err(d) = api.secrets.delete(&secret_name).await {
            tracing::error!(connection = %id, error = %d, "could not remove the secret of a connection that was not created");
        }
        return Err(e.into());
    }
    tracing::info!(shop = %shop_id, connection = %id, "KeyCRM connection created");
    let mut issued = IssuedTokens::default();
    issued.insert(WebhookKind::Orders, orders_token);
    let v = view(api, &conn, base, &issued).await?;
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

async fn replace_key(
    api: &AdminApi,
    conn: Connection,
    key: ApiKey,
    keycrm_base: String,
    active: Option<bool>,
    base: &str,
) -> ApiResult<Response> {
    api.secrets.put(&conn.secret_name, &key).await?;
    let (mask, fp) = (key.masked(), key.fingerprint());
    let conn = modify(api, conn, |c| {
        c.key_mask = mask.clone();
        c.key_fingerprint = fp.clone();
        c.keycrm_base_url = keycrm_base.clone();
        if let Some(a) = active {
            c.active = a;
        }
    })
    .await?;
    api.clients.forget(&conn.id);
    // Another key may mean another KeyCRM account: its dictionaries must be read afresh.
    if let Err(e) = api.cache.invalidate(&conn.id).await {
        tracing::warn!(connection = %conn.id, error = %e, "could not drop cached options");
    }
    tracing::info!(shop = %conn.shop_id, connection = %conn.id, "KeyCRM API key replaced");
    let v = view(api, &conn, base, &IssuedTokens::default()).await?;
    Ok((StatusCode::OK, Json(v)).into_response())
}

/// `GET /connection`
pub async fn get_connection(
    State(api): State<AppState>,
    auth: ShopAuth,
    PublicBase(base): PublicBase,
) -> ApiResult<Json<ConnectionView>> {
    let conn = require_connection(&api, &auth.shop_id).await?;
    Ok(Json(
        view(&api, &conn, &base, &IssuedTokens::default()).await?,
    ))
}

/// `PATCH /connection`: the active/inactive toggle.
pub async fn patch_connection(
    State(api): State<AppState>,
    auth: ShopAuth,
    PublicBase(base): PublicBase,
    JsonBody(req): JsonBody<PatchRequest>,
) -> ApiResult<Json<ConnectionView>> {
    let conn = require_connection(&api, &auth.shop_id).await?;
    let conn = if conn.active == req.active {
        conn
    } else {
        modify(&api, conn, |c| c.active = req.active).await?
    };
    tracing::info!(shop = %conn.shop_id, connection = %conn.id, active = conn.active, "connection toggled");
    Ok(Json(
        view(&api, &conn, &base, &IssuedTokens::default()).await?,
    ))
}

/// `DELETE /connection`: the key, the settings and everything the connection owns go.
/// Events that arrive later find no connection and are dropped by their consumers.
pub async fn delete_connection(
    State(api): State<AppState>,
    auth: ShopAuth,
) -> ApiResult<StatusCode> {
    let conn = require_connection(&api, &auth.shop_id).await?;
    // The secret first: if the rest fails, the connection is still there to delete again,
    // and no key is left behind that nothing points to.
    api.secrets.delete(&conn.secret_name).await?;
    match api.connections.delete(&conn.id).await {
        Ok(()) | Err(StoreError::NotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    if let Err(e) = api.cache.invalidate(&conn.id).await {
        tracing::warn!(connection = %conn.id, error = %e, "could not drop cached options");
    }
    api.clients.forget(&conn.id);
    tracing::info!(shop = %conn.shop_id, connection = %conn.id, "KeyCRM connection deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /connection/status`
pub async fn get_status(
    State(api): State<AppState>,
    auth: ShopAuth,
) -> ApiResult<Json<StatusView>> {
    let conn = require_connection(&api, &auth.shop_id).await?;
    let status = api.journal.status(&conn.id).await?;
    Ok(Json(StatusView::build(&conn, status)))
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
            return Err(ApiError::invalid_field("refresh", "use true or false"));
        }
    };
    let conn = require_connection(&api, &auth.shop_id).await?;
    let (opts, at, cached) = options::load(&api, &conn, refresh, &deadline).await?;
    Ok(Json(OptionsView::build(opts, at, cached)))
}

/// `PUT /connection/settings`: checked against both sides' dictionaries (a young cache when
/// it holds every reference, live lists otherwise; see [`options::check_settings`]), saved
/// whole or not at all.
pub async fn put_settings(
    State(api): State<AppState>,
    auth: ShopAuth,
    deadline: Deadline,
    PublicBase(base): PublicBase,
    JsonBody(req): JsonBody<SaveSettingsRequest>,
) -> ApiResult<Json<ConnectionView>> {
    let conn = require_connection(&api, &auth.shop_id).await?;
    if conn.version != req.version {
        return Err(ApiError::conflict(
            "version_conflict",
            format!(
                "the connection changed since it was read (version {} now, {} sent); reload and try again",
                conn.version, req.version
            ),
        ));
    }
    let (errors, _) = options::check_settings(&api, &conn, &deadline, |opts| {
        req.settings.validate(&opts.keycrm, &opts.shop)
    })
    .await?;
    if !errors.is_empty() {
        tracing::info!(
            connection = %conn.id,
            errors = errors.len(),
            "settings refused"
        );
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_settings",
            format!(
                "{} setting(s) refer to something that does not exist or are incomplete; nothing was saved",
                errors.len()
            ),
        )
        .with_fields(errors));
    }

    let wants_cards = req.settings.order_sync == OrderSyncType::Pipelines;
    let mut issued = IssuedTokens::default();
    let mut cards = conn.webhook_tokens.cards.clone();
    if wants_cards && cards.is_none() {
        let (token, hash) = tokens::generate();
        issued.insert(WebhookKind::Cards, token);
        cards = Some(hash);
    } else if !wants_cards {
        cards = None;
    }
    let mut next = conn.clone();
    next.settings = req.settings;
    next.webhook_tokens.cards = cards;
    next.version = conn.version + 1;
    next.updated_at = Utc::now();
    // One conditional write: the version the page read, or nothing.
    api.connections.update(&next).await?;
    tracing::info!(connection = %next.id, version = next.version, "settings saved");
    Ok(Json(view(&api, &next, &base, &issued).await?))
}

/// `POST /connection/webhook-tokens/rotate`: new tokens; the old ones stop working at once.
pub async fn rotate_tokens(
    State(api): State<AppState>,
    auth: ShopAuth,
    PublicBase(base): PublicBase,
    OptionalJson(req): OptionalJson<RotateRequest>,
) -> ApiResult<Json<ConnectionView>> {
    let conn = require_connection(&api, &auth.shop_id).await?;
    let pipelines = conn.settings.order_sync == OrderSyncType::Pipelines;
    let kinds: Vec<WebhookKind> = match req.kind {
        Some(WebhookKind::Cards) if !pipelines => {
            return Err(ApiError::conflict(
                "cards_webhook_unused",
                "the pipeline card webhook exists only while the order sync type is pipelines",
            ))
        }
        Some(k) => vec![k],
        None if pipelines => vec![WebhookKind::Orders, WebhookKind::Cards],
        None => vec![WebhookKind::Orders],
    };
    let mut issued = IssuedTokens::default();
    let mut hashes = Vec::new();
    for k in &kinds {
        let (token, hash) = tokens::generate();
        issued.insert(*k, token);
        hashes.push((*k, hash));
    }
    let conn = modify(&api, conn, |c| {
        for (k, h) in &hashes {
            match k {
                WebhookKind::Orders => c.webhook_tokens.orders = Some(h.clone()),
                // A concurrent save may have left pipelines meanwhile: no card URL then.
                WebhookKind::Cards if c.settings.order_sync == OrderSyncType::Pipelines => {
                    c.webhook_tokens.cards = Some(h.clone())
                }
                WebhookKind::Cards => {}
            }
        }
    })
    .await?;
    let names: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
    tracing::info!(connection = %conn.id, kinds = ?names, "webhook tokens rotated");
    Ok(Json(view(&api, &conn, &base, &issued).await?))
}
