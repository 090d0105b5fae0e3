//! The `/__sim` control routes tests and the local run use: health, stats, faults, webhook
//! subscriptions, orders and cards as stored, status changes, catalog mutations.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::catalog::mutate_catalog;
use super::guard::json_response;
use super::orders::{change_card_status, change_order_status};
use super::Sh;
use crate::catalog::CatalogMutation;
use crate::crm::{CardInc, OrderInc};
use crate::error::SimError;
use crate::state::{lock, read, Account, Shared};
use crate::stock::StockWebhook;
use crate::webhook::WEBHOOK_EVENTS;
use crate::Faults;

pub(super) fn bad_request(msg: impl Into<String>) -> Response {
    json_response(StatusCode::BAD_REQUEST, json!({"message": msg.into()}))
}

/// Errors of the control routes are boxed responses (keeps `Result` small).
pub(super) type Control<T> = Result<T, Box<Response>>;

pub(super) fn parse_json<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Control<T> {
    serde_json::from_slice(body)
        .map_err(|e| Box::new(bad_request(format!("invalid JSON body: {e}"))))
}

#[derive(Deserialize)]
pub(super) struct KeyQuery {
    api_key: Option<String>,
}

pub(super) fn key_from_query(raw: Option<&str>) -> Option<String> {
    url::form_urlencoded::parse(raw.unwrap_or("").as_bytes())
        .find(|(k, _)| k == "api_key")
        .map(|(_, v)| v.into_owned())
}

pub(super) fn account_for(sh: &Shared, key: Option<&str>) -> Control<Arc<Account>> {
    sh.account_or_default(key).ok_or_else(|| {
        Box::new(json_response(
            StatusCode::NOT_FOUND,
            json!({"message": format!("unknown api key `{}`", key.unwrap_or(""))}),
        ))
    })
}

pub(super) async fn sim_health(State(sh): Sh) -> Response {
    let keys: Vec<&str> = sh
        .accounts
        .iter()
        .map(|a| a.spec.api_key.as_str())
        .collect();
    Json(json!({"status": "ok", "base_url": sh.public_base, "accounts": keys})).into_response()
}

pub(super) async fn sim_stats(State(sh): Sh) -> Response {
    Json(lock(&sh.stats).clone()).into_response()
}

pub(super) async fn sim_stats_reset(State(sh): Sh) -> Response {
    *lock(&sh.stats) = crate::SimStats::default();
    Json(json!({"status": true})).into_response()
}

pub(super) async fn sim_set_faults(State(sh): Sh, body: Bytes) -> Response {
    match parse_json::<Faults>(&body) {
        Ok(f) => {
            sh.set_faults(f.clone());
            Json(json!({"status": true, "faults": f})).into_response()
        }
        Err(r) => *r,
    }
}

pub(super) async fn sim_get_faults(State(sh): Sh) -> Response {
    let st = lock(&sh.faults);
    Json(json!({"faults": st.faults, "commit_timeouts_left": st.commit_timeouts_left}))
        .into_response()
}

pub(super) async fn sim_orders(State(sh): Sh, RawQuery(raw): RawQuery) -> Response {
    let key = key_from_query(raw.as_deref());
    let acc = match account_for(&sh, key.as_deref()) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    let cat = read(&acc.catalog);
    let crm = lock(&acc.crm);
    let inc = OrderInc::all();
    let v: Vec<Value> = crm
        .orders
        .iter()
        .map(|o| crm.render_order(o, &inc, &cat))
        .collect();
    Json(Value::Array(v)).into_response()
}

pub(super) async fn sim_cards(State(sh): Sh, RawQuery(raw): RawQuery) -> Response {
    let key = key_from_query(raw.as_deref());
    let acc = match account_for(&sh, key.as_deref()) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    let cat = read(&acc.catalog);
    let crm = lock(&acc.crm);
    let inc = CardInc::all();
    let v: Vec<Value> = crm
        .cards
        .iter()
        .map(|c| crm.render_card(c, &inc, &cat))
        .collect();
    Json(Value::Array(v)).into_response()
}

#[derive(Deserialize)]
pub(super) struct WebhookBody {
    api_key: Option<String>,
    event: String,
    url: Option<String>,
}

pub(super) async fn sim_webhooks(State(sh): Sh, body: Bytes) -> Response {
    let b: WebhookBody = match parse_json(&body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    if !WEBHOOK_EVENTS.contains(&b.event.as_str()) {
        return json_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"message": format!("unknown event `{}`; expected one of {:?}", b.event, WEBHOOK_EVENTS)}),
        );
    }
    let acc = match account_for(&sh, b.api_key.as_deref()) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    let mut w = lock(&acc.webhooks);
    match &b.url {
        Some(u) => {
            w.insert(b.event.clone(), u.clone());
        }
        None => {
            w.remove(&b.event);
        }
    }
    Json(json!({"status": true, "api_key": acc.spec.api_key, "event": b.event, "url": b.url}))
        .into_response()
}

#[derive(Deserialize)]
pub(super) struct StockWebhooksBody {
    api_key: Option<String>,
    webhooks: Vec<StockWebhook>,
}

/// `PUT /__sim/stock-webhooks`: `{"api_key": .., "webhooks": [{"name", "url", "warehouses"}]}`
/// replaces the account's stock webhooks (`[]` removes them).
pub(super) async fn sim_stock_webhooks(State(sh): Sh, body: Bytes) -> Response {
    let b: StockWebhooksBody = match parse_json(&body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    if let Some(w) = b
        .webhooks
        .iter()
        .flat_map(|h| h.warehouses.iter())
        .find(|w| crate::catalog::warehouse_name(**w).is_none())
    {
        return SimError::UnknownWarehouse(*w).into_response();
    }
    let acc = match account_for(&sh, b.api_key.as_deref()) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    *lock(&acc.stock_webhooks) = b.webhooks.clone();
    Json(json!({"status": true, "api_key": acc.spec.api_key, "webhooks": b.webhooks}))
        .into_response()
}

pub(super) async fn sim_get_stock_webhooks(State(sh): Sh, RawQuery(raw): RawQuery) -> Response {
    let key = key_from_query(raw.as_deref());
    let acc = match account_for(&sh, key.as_deref()) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    let hooks = lock(&acc.stock_webhooks).clone();
    Json(json!({"api_key": acc.spec.api_key, "webhooks": hooks})).into_response()
}

#[derive(Deserialize)]
pub(super) struct StatusBody {
    api_key: Option<String>,
    status_id: i64,
}

pub(super) async fn sim_order_status(
    State(sh): Sh,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    set_status(
        &sh,
        &id,
        &body,
        SimError::OrderNotFound(0),
        change_order_status,
    )
}

pub(super) async fn sim_card_status(
    State(sh): Sh,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    set_status(
        &sh,
        &id,
        &body,
        SimError::CardNotFound(0),
        change_card_status,
    )
}

/// `POST /__sim/{orders|cards}/{id}/status`: `change` is the programmatic status change of
/// that entity; an id that is not a number is `unknown` (what KeyCRM answers for it).
fn set_status(
    sh: &Arc<Shared>,
    id: &str,
    body: &[u8],
    unknown: SimError,
    change: fn(&Arc<Shared>, &str, i64, i64) -> Result<(), SimError>,
) -> Response {
    let b: StatusBody = match parse_json(body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let Ok(id) = id.parse::<i64>() else {
        return unknown.into_response();
    };
    let acc = match account_for(sh, b.api_key.as_deref()) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    match change(sh, &acc.spec.api_key, id, b.status_id) {
        Ok(()) => Json(json!({"status": true})).into_response(),
        Err(e) => e.into_response(),
    }
}

pub(super) async fn sim_catalog_mutate(
    State(sh): Sh,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Response {
    let mut v: Value = match parse_json(&body) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    // api_key may come in the query string or as a body field next to "kind"
    let body_key = v
        .as_object_mut()
        .and_then(|m| m.remove("api_key"))
        .and_then(|k| k.as_str().map(str::to_string));
    let key = key_from_query(raw.as_deref()).or(body_key);
    let m: CatalogMutation = match serde_json::from_value(v) {
        Ok(m) => m,
        Err(e) => return bad_request(format!("invalid catalog mutation: {e}")),
    };
    let acc = match account_for(&sh, key.as_deref()) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    let changed = mutate_catalog(&sh, &acc, &m);
    Json(json!({"status": changed > 0, "changed": changed})).into_response()
}

pub(super) async fn sim_catalog(
    State(sh): Sh,
    axum::extract::Query(q): axum::extract::Query<KeyQuery>,
) -> Response {
    let acc = match account_for(&sh, q.api_key.as_deref()) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    let snap = read(&acc.catalog).snapshot();
    Json(snap).into_response()
}
