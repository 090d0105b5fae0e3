//! Order endpoints (list, read, create, update) and the status changes `SimHandle` makes,
//! which fire webhooks as API changes do.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{Extension, Json};

use super::{apply_sort, hang_if_faulted, ok, page_path, parse_id, Acc, ApiResult, Sh};
use crate::crm::{OrderInc, ORDER_INCLUDES};
use crate::dicts;
use crate::error::{not_found_model, ApiError, SimError};
use crate::input::body_object;
use crate::query::ListQuery;
use crate::state::{lock, read, Shared};
use crate::stock;
use crate::time::now;
use crate::webhook::fire;

const ORDER_FILTERS: &[&str] = &[
    "status_id",
    "source_id",
    "source_uuid",
    "buyer_phone",
    "buyer_email",
    "created_between",
    "updated_between",
    "shipping_between",
    "payment_status",
    "has_tracking_code",
];
const ORDER_SORTS: &[&str] = &[
    "id",
    "created_at",
    "updated_at",
    "ordered_at",
    "status_changed_at",
];

pub(super) async fn list_orders(
    State(sh): Sh,
    Extension(acc): Acc,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let q = ListQuery::parse(raw.as_deref());
    q.allow_filters(ORDER_FILTERS)?;
    q.allow_includes(ORDER_INCLUDES)?;
    let sorts = q.sorts(ORDER_SORTS)?;
    let inc = OrderInc::from_query(&q);
    let cat = read(&acc.catalog);
    let crm = lock(&acc.crm);
    let mut idx = crm.filter_orders(&q).map_err(ApiError::BadRequest)?;
    apply_sort(&mut idx, &sorts, |i, f| {
        let o = &crm.orders[i];
        match f {
            "created_at" => o.created_at,
            "updated_at" => o.updated_at,
            "ordered_at" => o.ordered_at,
            "status_changed_at" => o.status_changed_at,
            _ => o.id,
        }
    });
    ok(q.envelope(&page_path(&sh, "/order"), idx.len(), |r| {
        idx[r]
            .iter()
            .map(|&i| crm.render_order(&crm.orders[i], &inc, &cat))
            .collect()
    }))
}

pub(super) async fn get_order(
    Extension(acc): Acc,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let q = ListQuery::parse(raw.as_deref());
    q.allow_includes(ORDER_INCLUDES)?;
    let oid = parse_id(&id, "Order")?;
    let inc = OrderInc::from_query(&q);
    let cat = read(&acc.catalog);
    let crm = lock(&acc.crm);
    let i = crm
        .order_index(oid)
        .ok_or_else(|| not_found_model("Order", &id))?;
    ok(crm.render_order(&crm.orders[i], &inc, &cat))
}

pub(super) async fn create_order(State(sh): Sh, Extension(acc): Acc, body: Bytes) -> ApiResult {
    let body = body_object(&body);
    let id = {
        let cat = read(&acc.catalog);
        let mut crm = lock(&acc.crm);
        let i = crm
            .create_order(&body, &cat, now())
            .map_err(ApiError::Validation)?;
        crm.orders[i].id
    };
    // Creating an order reserves its lines (and fires the stock webhooks).
    stock::on_order_created(&sh, &acc, id);
    let v = {
        let cat = read(&acc.catalog);
        let crm = lock(&acc.crm);
        let i = crm
            .order_index(id)
            .ok_or_else(|| not_found_model("Order", &id.to_string()))?;
        crm.render_order(&crm.orders[i], &OrderInc::create_response(), &cat)
    };
    hang_if_faulted(&sh).await;
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

pub(super) async fn update_order(
    State(sh): Sh,
    Extension(acc): Acc,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let oid = parse_id(&id, "Order")?;
    let body = body_object(&body);
    let (v, changed, ctx) = {
        let cat = read(&acc.catalog);
        let mut crm = lock(&acc.crm);
        let i = crm
            .order_index(oid)
            .ok_or_else(|| not_found_model("Order", &id))?;
        let changed = crm
            .update_order(i, &body, now())
            .map_err(ApiError::Validation)?;
        let o = &crm.orders[i];
        (
            crm.render_order(o, &OrderInc::create_response(), &cat),
            changed,
            crm.order_context(o),
        )
    };
    if changed.status {
        stock::on_order_status(&sh, &acc, oid);
        fire(&sh, &acc, "order.change_order_status", oid, ctx.clone());
    }
    if changed.payment_status {
        fire(&sh, &acc, "order.change_payment_status", oid, ctx);
    }
    Ok((StatusCode::ACCEPTED, Json(v)).into_response())
}

// ---- programmatic status changes (shared with SimHandle) --------------------------------------

pub(crate) fn change_order_status(
    sh: &Arc<Shared>,
    api_key: &str,
    order_id: i64,
    status_id: i64,
) -> Result<(), SimError> {
    let acc = sh
        .account(api_key)
        .ok_or_else(|| SimError::UnknownAccount(api_key.to_string()))?;
    if dicts::order_status(status_id).is_none() {
        return Err(SimError::UnknownOrderStatus(status_id));
    }
    let ctx = {
        let mut crm = lock(&acc.crm);
        let i = crm
            .order_index(order_id)
            .ok_or(SimError::OrderNotFound(order_id))?;
        if !crm.set_order_status(i, status_id, now()).status {
            return Ok(());
        }
        crm.order_context(&crm.orders[i])
    };
    stock::on_order_status(sh, &acc, order_id);
    fire(sh, &acc, "order.change_order_status", order_id, ctx);
    Ok(())
}

pub(crate) fn change_card_status(
    sh: &Arc<Shared>,
    api_key: &str,
    card_id: i64,
    status_id: i64,
) -> Result<(), SimError> {
    let acc = sh
        .account(api_key)
        .ok_or_else(|| SimError::UnknownAccount(api_key.to_string()))?;
    if !acc.spec.pipelines_enabled {
        return Err(SimError::PipelinesDisabled);
    }
    if dicts::pipeline_status(status_id).is_none() {
        return Err(SimError::UnknownCardStatus(status_id));
    }
    let ctx = {
        let mut crm = lock(&acc.crm);
        let i = crm
            .card_index(card_id)
            .ok_or(SimError::CardNotFound(card_id))?;
        if !crm.set_card_status(i, status_id, now()) {
            return Ok(());
        }
        crm.card_context(&crm.cards[i])
    };
    fire(sh, &acc, "lead.change_lead_status", card_id, ctx);
    Ok(())
}
