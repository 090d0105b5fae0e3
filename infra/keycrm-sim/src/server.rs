//! HTTP routing: the `/v1` KeyCRM API and the `/__sim` control routes.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::middleware::{self};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, Json, Router};
use serde_json::Value;

use crate::error::{not_found_model, ApiError};
use crate::query::ListQuery;
use crate::state::{Account, Shared};
use catalog::{categories, get_product, list_offers, list_products, put_stocks, stocks};
use control::{
    sim_card_status, sim_cards, sim_catalog, sim_catalog_mutate, sim_get_faults,
    sim_get_stock_webhooks, sim_health, sim_order_status, sim_orders, sim_set_faults, sim_stats,
    sim_stats_reset, sim_stock_webhooks, sim_webhooks,
};
use dictionaries::{
    custom_fields, delivery_services, order_sources, order_statuses, payment_methods,
};
use guard::{guard, method_not_allowed, not_found};
use orders::{create_order, get_order, list_orders, update_order};
use pipelines::{create_card, get_card, list_cards, pipeline_statuses, pipelines, update_card};

mod catalog;
mod control;
mod dictionaries;
mod guard;
mod orders;
mod pipelines;

pub(crate) use catalog::mutate_catalog;
pub(crate) use orders::{change_card_status, change_order_status};

type ApiResult = Result<Response, ApiError>;
type Sh = State<Arc<Shared>>;
type Acc = Extension<Arc<Account>>;

pub(crate) fn router(sh: Arc<Shared>) -> Router {
    let v1 = Router::new()
        .route("/v1/order", get(list_orders).post(create_order))
        .route("/v1/order/source", get(order_sources))
        .route("/v1/order/status", get(order_statuses))
        .route("/v1/order/payment-method", get(payment_methods))
        .route("/v1/order/delivery-service", get(delivery_services))
        .route("/v1/order/{id}", get(get_order).put(update_order))
        .route("/v1/custom-fields", get(custom_fields))
        .route("/v1/pipelines", get(pipelines))
        .route("/v1/pipelines/{id}/statuses", get(pipeline_statuses))
        .route("/v1/pipelines/cards", get(list_cards).post(create_card))
        .route("/v1/pipelines/cards/{id}", get(get_card).put(update_card))
        .route("/v1/products", get(list_products))
        .route("/v1/products/categories", get(categories))
        .route("/v1/products/{id}", get(get_product))
        .route("/v1/offers", get(list_offers))
        .route("/v1/offers/stocks", get(stocks).put(put_stocks))
        .route_layer(middleware::from_fn_with_state(Arc::clone(&sh), guard));
    let admin = Router::new()
        .route("/__sim/health", get(sim_health))
        .route("/__sim/stats", get(sim_stats))
        .route("/__sim/stats/reset", post(sim_stats_reset))
        .route("/__sim/faults", put(sim_set_faults).get(sim_get_faults))
        .route("/__sim/orders", get(sim_orders))
        .route("/__sim/cards", get(sim_cards))
        .route("/__sim/webhooks", put(sim_webhooks))
        .route(
            "/__sim/stock-webhooks",
            put(sim_stock_webhooks).get(sim_get_stock_webhooks),
        )
        .route("/__sim/orders/{id}/status", post(sim_order_status))
        .route("/__sim/cards/{id}/status", post(sim_card_status))
        .route("/__sim/catalog", post(sim_catalog_mutate).get(sim_catalog));
    v1.merge(admin)
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(32 * 1024 * 1024))
        .with_state(sh)
}

// ---- helpers ---------------------------------------------------------------------------------

fn ok(v: Value) -> ApiResult {
    Ok(Json(v).into_response())
}

fn leads(acc: &Account) -> Result<(), ApiError> {
    if acc.spec.pipelines_enabled {
        Ok(())
    } else {
        Err(ApiError::LeadsDisabled)
    }
}

fn parse_id(raw: &str, model: &str) -> Result<i64, ApiError> {
    raw.trim()
        .parse::<i64>()
        .map_err(|_| not_found_model(model, raw))
}

fn page_path(sh: &Shared, rel: &str) -> String {
    format!("{}{}", sh.public_base, rel)
}

/// A paginated dictionary with `sort=id|-id`.
fn dictionary(
    sh: &Shared,
    raw: Option<&str>,
    rel: &str,
    mut items: Vec<(i64, Value)>,
) -> ApiResult {
    let q = ListQuery::parse(raw);
    let sorts = q.sorts(&["id"])?;
    if sorts.first().is_some_and(|(_, desc)| *desc) {
        items.sort_by_key(|b| std::cmp::Reverse(b.0));
    } else {
        items.sort_by_key(|a| a.0);
    }
    let v = q.envelope(&page_path(sh, rel), items.len(), |r| {
        items[r].iter().map(|(_, v)| v.clone()).collect()
    });
    ok(v)
}

fn apply_sort<T: Copy + Ord>(
    idx: &mut [usize],
    sorts: &[(String, bool)],
    key: impl Fn(usize, &str) -> T,
) {
    if let Some((field, desc)) = sorts.first() {
        idx.sort_by(|a, b| {
            let o = key(*a, field).cmp(&key(*b, field)).then(a.cmp(b));
            if *desc {
                o.reverse()
            } else {
                o
            }
        });
    }
}

/// The "commit, then time out" fault: the write has happened, the answer comes too late, as
/// when a client gives up on a request KeyCRM did apply.
async fn hang_if_faulted(sh: &Shared) {
    if let Some(d) = sh.take_commit_timeout() {
        sh.with_stats(|s| s.commit_then_timeout += 1);
        tokio::time::sleep(d).await;
    }
}
