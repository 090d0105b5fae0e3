//! HTTP routing: the `/v1` KeyCRM API and the `/__sim` control routes.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, RawQuery, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::catalog::{Catalog, CatalogMutation};
use crate::crm::{CardInc, OrderInc, CARD_INCLUDES, ORDER_INCLUDES};
use crate::dicts;
use crate::error::{not_found_model, ApiError, SimError};
use crate::input::body_object;
use crate::query::ListQuery;
use crate::state::{lock, read, write, Account, Hit, Shared};
use crate::stock::{self, StockWebhook};
use crate::time::now;
use crate::webhook::{fire, WEBHOOK_EVENTS};
use crate::Faults;

type ApiResult = Result<Response, ApiError>;
type Sh = State<Arc<Shared>>;
type Acc = Extension<Arc<Account>>;

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
const CARD_FILTERS: &[&str] = &[
    "pipeline_id",
    "status_id",
    "source_id",
    "created_between",
    "updated_between",
];

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

// ---- guard: stats, auth, rate limit, faults ---------------------------------------------------

/// `GET /v1/order/5001` → `GET /order/{id}`.
fn endpoint_key(method: &Method, path: &str) -> String {
    let rel = path.strip_prefix("/v1").unwrap_or(path);
    let norm: Vec<&str> = rel
        .split('/')
        .map(|seg| {
            if !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()) {
                "{id}"
            } else {
                seg
            }
        })
        .collect();
    format!("{method} {}", norm.join("/"))
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let t = token.trim();
    (!t.is_empty()).then(|| t.to_string())
}

fn json_response(status: StatusCode, v: Value) -> Response {
    (status, Json(v)).into_response()
}

fn set_header(resp: &mut Response, name: &'static str, value: String) {
    if let Ok(v) = HeaderValue::from_str(&value) {
        resp.headers_mut().insert(name, v);
    }
}

/// A response whose body fails immediately, so the connection is torn down mid-response.
fn dropped_response() -> Response {
    let stream = futures::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "connection dropped by keycrm-sim fault injection",
        ))
    });
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

async fn guard(State(sh): Sh, mut req: Request, next: Next) -> Response {
    let endpoint = endpoint_key(req.method(), req.uri().path());
    let key = bearer(req.headers());
    let label = key.clone().unwrap_or_else(|| "<none>".to_string());
    sh.record_request(&endpoint, &label);
    let Some(acc) = key.as_deref().and_then(|k| sh.account(k)) else {
        sh.record_status("401");
        return ApiError::Unauthenticated.into_response();
    };
    let limit = sh.rate_limit;
    let hit = lock(&acc.limiter).hit(limit, sh.window());
    let remaining = match hit {
        Hit::Limited { retry_after } => {
            sh.record_status("429");
            let mut r = json_response(
                StatusCode::TOO_MANY_REQUESTS,
                json!({"message": "Too Many Attempts."}),
            );
            set_header(&mut r, "retry-after", retry_after.to_string());
            set_header(&mut r, "x-ratelimit-limit", limit.to_string());
            set_header(&mut r, "x-ratelimit-remaining", "0".to_string());
            set_header(
                &mut r,
                "x-ratelimit-reset",
                (now() + retry_after as i64).to_string(),
            );
            return r;
        }
        Hit::Allowed { remaining } => remaining,
    };
    let decision = sh.decide_faults();
    if decision.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(decision.latency_ms)).await;
    }
    if decision.drop {
        sh.with_stats(|s| s.dropped_connections += 1);
        sh.record_status("dropped");
        return dropped_response();
    }
    let mut resp = if let Some(code) = decision.error_5xx {
        sh.with_stats(|s| s.injected_5xx += 1);
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let msg = match code {
            502 => "Bad Gateway",
            503 => "Service Unavailable",
            _ => "Server Error",
        };
        json_response(status, json!({"message": msg}))
    } else {
        req.extensions_mut().insert(acc);
        next.run(req).await
    };
    if limit > 0 {
        set_header(&mut resp, "x-ratelimit-limit", limit.to_string());
        set_header(&mut resp, "x-ratelimit-remaining", remaining.to_string());
    }
    sh.record_status(resp.status().as_str());
    resp
}

async fn not_found(
    State(sh): Sh,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    let path = uri.path();
    if path.starts_with("/v1") {
        let label = bearer(&headers).unwrap_or_else(|| "<none>".to_string());
        sh.record_request(&endpoint_key(&method, path), &label);
        sh.record_status("404");
    }
    let rel = path
        .strip_prefix("/v1/")
        .unwrap_or(path.trim_start_matches('/'));
    json_response(
        StatusCode::NOT_FOUND,
        json!({"message": format!("The route {rel} could not be found.")}),
    )
}

async fn method_not_allowed(
    State(sh): Sh,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    if uri.path().starts_with("/v1") {
        let label = bearer(&headers).unwrap_or_else(|| "<none>".to_string());
        sh.record_request(&endpoint_key(&method, uri.path()), &label);
        sh.record_status("405");
    }
    let rel = uri.path().strip_prefix("/v1/").unwrap_or(uri.path());
    ApiError::MethodNotAllowed(format!(
        "The {method} method is not supported for route {rel}."
    ))
    .into_response()
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

// ---- dictionaries ----------------------------------------------------------------------------

async fn order_sources(State(sh): Sh, RawQuery(raw): RawQuery) -> ApiResult {
    let items = dicts::SOURCES
        .iter()
        .map(|s| (s.id, dicts::render_source(s)))
        .collect();
    dictionary(&sh, raw.as_deref(), "/order/source", items)
}

async fn order_statuses(State(sh): Sh, RawQuery(raw): RawQuery) -> ApiResult {
    let items = dicts::ORDER_STATUSES
        .iter()
        .map(|s| (s.id, dicts::render_order_status(s)))
        .collect();
    dictionary(&sh, raw.as_deref(), "/order/status", items)
}

async fn payment_methods(State(sh): Sh, RawQuery(raw): RawQuery) -> ApiResult {
    let items = dicts::PAYMENT_METHODS
        .iter()
        .map(|m| (m.id, dicts::render_payment_method(m)))
        .collect();
    dictionary(&sh, raw.as_deref(), "/order/payment-method", items)
}

async fn delivery_services(State(sh): Sh, RawQuery(raw): RawQuery) -> ApiResult {
    let items = dicts::DELIVERY_SERVICES
        .iter()
        .map(|d| (d.id, dicts::render_delivery_service(d)))
        .collect();
    dictionary(&sh, raw.as_deref(), "/order/delivery-service", items)
}

async fn custom_fields(RawQuery(raw): RawQuery) -> ApiResult {
    let q = ListQuery::parse(raw.as_deref());
    q.allow_filters(&["model"])?;
    q.allow_includes(&["options"])?;
    let sorts = q.sorts(&["position", "id"])?;
    let models = q.filter_list("model");
    let mut fields: Vec<&dicts::CustomField> = dicts::CUSTOM_FIELDS
        .iter()
        .filter(|f| {
            models
                .as_ref()
                .is_none_or(|m| m.iter().any(|x| x == f.model.as_str()))
        })
        .collect();
    if let Some((field, desc)) = sorts.first() {
        if field == "position" {
            fields.sort_by_key(|f| (f.position, f.id));
        } else {
            fields.sort_by_key(|f| f.id);
        }
        if *desc {
            fields.reverse();
        }
    }
    let with_options = q.has_include("options");
    ok(Value::Array(
        fields
            .into_iter()
            .map(|f| dicts::render_custom_field(f, with_options))
            .collect(),
    ))
}

// ---- pipelines -------------------------------------------------------------------------------

async fn pipelines(State(sh): Sh, Extension(acc): Acc, RawQuery(raw): RawQuery) -> ApiResult {
    leads(&acc)?;
    let q = ListQuery::parse(raw.as_deref());
    let items: Vec<Value> = dicts::PIPELINES
        .iter()
        .map(dicts::render_pipeline)
        .collect();
    ok(q.envelope(&page_path(&sh, "/pipelines"), items.len(), |r| {
        items[r].to_vec()
    }))
}

async fn pipeline_statuses(
    State(sh): Sh,
    Extension(acc): Acc,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    leads(&acc)?;
    let pid = parse_id(&id, "Pipeline")?;
    if dicts::pipeline(pid).is_none() {
        return Err(not_found_model("Pipeline", &id));
    }
    let q = ListQuery::parse(raw.as_deref());
    let items: Vec<Value> = {
        let crm = lock(&acc.crm);
        dicts::PIPELINE_STATUSES
            .iter()
            .filter(|s| s.pipeline_id == pid)
            .map(|s| dicts::render_pipeline_status(s, crm.cards_in_status(s.id)))
            .collect()
    };
    ok(q.envelope(
        &page_path(&sh, &format!("/pipelines/{id}/statuses")),
        items.len(),
        |r| items[r].to_vec(),
    ))
}

async fn list_cards(State(sh): Sh, Extension(acc): Acc, RawQuery(raw): RawQuery) -> ApiResult {
    leads(&acc)?;
    let q = ListQuery::parse(raw.as_deref());
    q.allow_filters(CARD_FILTERS)?;
    q.allow_includes(CARD_INCLUDES)?;
    let sorts = q.sorts(&["id", "created_at", "updated_at"])?;
    let inc = CardInc::from_query(&q);
    let cat = read(&acc.catalog);
    let crm = lock(&acc.crm);
    let mut idx = crm.filter_cards(&q).map_err(ApiError::BadRequest)?;
    apply_sort(&mut idx, &sorts, |i, f| match f {
        "created_at" => crm.cards[i].created_at,
        "updated_at" => crm.cards[i].updated_at,
        _ => crm.cards[i].id,
    });
    ok(
        q.envelope(&page_path(&sh, "/pipelines/cards"), idx.len(), |r| {
            idx[r]
                .iter()
                .map(|&i| crm.render_card(&crm.cards[i], &inc, &cat))
                .collect()
        }),
    )
}

async fn get_card(
    Extension(acc): Acc,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    leads(&acc)?;
    let q = ListQuery::parse(raw.as_deref());
    q.allow_includes(CARD_INCLUDES)?;
    let cid = parse_id(&id, "Lead")?;
    let inc = CardInc::from_query(&q);
    let cat = read(&acc.catalog);
    let crm = lock(&acc.crm);
    let i = crm
        .card_index(cid)
        .ok_or_else(|| not_found_model("Lead", &id))?;
    ok(crm.render_card(&crm.cards[i], &inc, &cat))
}

async fn create_card(State(sh): Sh, Extension(acc): Acc, body: Bytes) -> ApiResult {
    leads(&acc)?;
    let body = body_object(&body);
    let v = {
        let cat = read(&acc.catalog);
        let mut crm = lock(&acc.crm);
        let i = crm
            .create_card(&body, &cat, now())
            .map_err(ApiError::Validation)?;
        crm.render_card_created(&crm.cards[i])
    };
    hang_if_faulted(&sh).await;
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

async fn update_card(
    State(sh): Sh,
    Extension(acc): Acc,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    leads(&acc)?;
    let cid = parse_id(&id, "Lead")?;
    let body = body_object(&body);
    let ctx = {
        let cat = read(&acc.catalog);
        let mut crm = lock(&acc.crm);
        let i = crm
            .card_index(cid)
            .ok_or_else(|| not_found_model("Lead", &id))?;
        let changed = crm
            .update_card(i, &body, &cat, now())
            .map_err(ApiError::Validation)?;
        changed.then(|| crm.card_context(&crm.cards[i]))
    };
    if let Some(ctx) = ctx {
        fire(&sh, &acc, "lead.change_lead_status", cid, ctx);
    }
    Ok((StatusCode::ACCEPTED, Json(json!({"status": true}))).into_response())
}

async fn hang_if_faulted(sh: &Shared) {
    if let Some(d) = sh.take_commit_timeout() {
        sh.with_stats(|s| s.commit_then_timeout += 1);
        tokio::time::sleep(d).await;
    }
}

// ---- catalog ---------------------------------------------------------------------------------

async fn categories(State(sh): Sh, Extension(acc): Acc, RawQuery(raw): RawQuery) -> ApiResult {
    let q = ListQuery::parse(raw.as_deref());
    q.allow_filters(&["category_id", "parent_id"])?;
    let ids = q.filter_ids("category_id");
    let parents = q.filter_ids("parent_id");
    let cat = read(&acc.catalog);
    let items: Vec<&crate::catalog::Category> = cat
        .categories
        .iter()
        .filter(|c| ids.as_ref().is_none_or(|l| l.contains(&c.id)))
        .filter(|c| {
            parents
                .as_ref()
                .is_none_or(|l| c.parent_id.is_some_and(|p| l.contains(&p)))
        })
        .collect();
    ok(
        q.envelope(&page_path(&sh, "/products/categories"), items.len(), |r| {
            items[r]
                .iter()
                .map(|c| Catalog::render_category(c))
                .collect()
        }),
    )
}

async fn list_products(State(sh): Sh, Extension(acc): Acc, RawQuery(raw): RawQuery) -> ApiResult {
    let q = ListQuery::parse(raw.as_deref());
    q.allow_filters(&["product_id", "category_id", "is_archived"])?;
    q.allow_includes(&["custom_fields", "customFields"])?;
    let with_cf = q.has_include("custom_fields") || q.has_include("customFields");
    let ids = q.filter_ids("product_id");
    let cats = q.filter_ids("category_id");
    let archived = q.filter_bool("is_archived");
    let cat = read(&acc.catalog);
    let idx: Vec<usize> = cat
        .products
        .iter()
        .enumerate()
        .filter(|(_, p)| ids.as_ref().is_none_or(|l| l.contains(&p.id)))
        .filter(|(_, p)| cats.as_ref().is_none_or(|l| l.contains(&p.category_id)))
        .filter(|(_, p)| archived.is_none_or(|a| p.is_archived == a))
        .map(|(i, _)| i)
        .collect();
    ok(q.envelope(&page_path(&sh, "/products"), idx.len(), |r| {
        idx[r]
            .iter()
            .map(|&i| cat.render_product(&cat.products[i], with_cf))
            .collect()
    }))
}

async fn get_product(
    Extension(acc): Acc,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let q = ListQuery::parse(raw.as_deref());
    q.allow_includes(&["custom_fields", "customFields"])?;
    let with_cf = q.has_include("custom_fields") || q.has_include("customFields");
    let pid = parse_id(&id, "Product")?;
    let cat = read(&acc.catalog);
    let p = cat
        .product(pid)
        .ok_or_else(|| not_found_model("Product", &id))?;
    ok(cat.render_product(p, with_cf))
}

async fn list_offers(State(sh): Sh, Extension(acc): Acc, RawQuery(raw): RawQuery) -> ApiResult {
    let q = ListQuery::parse(raw.as_deref());
    q.allow_filters(&["id", "product_id", "sku", "is_archived"])?;
    q.allow_includes(&["product"])?;
    let sorts = q.sorts(&["id", "product_id"])?;
    let with_product = q.has_include("product");
    let ids = q.filter_ids("id");
    let pids = q.filter_ids("product_id");
    let skus = q.filter_list("sku");
    let archived = q.filter_bool("is_archived");
    let cat = read(&acc.catalog);
    let keep = |o: &crate::catalog::Offer| {
        ids.as_ref().is_none_or(|l| l.contains(&o.id))
            && pids.as_ref().is_none_or(|l| l.contains(&o.product_id))
            && archived.is_none_or(|a| o.is_archived == a)
    };
    let mut idx: Vec<usize> = match &skus {
        Some(list) => {
            let mut v: Vec<usize> = list
                .iter()
                .filter_map(|s| cat.sku_index.get(s))
                .flatten()
                .filter_map(|id| cat.offers.binary_search_by_key(id, |o| o.id).ok())
                .filter(|&i| keep(&cat.offers[i]))
                .collect();
            v.sort_unstable();
            v.dedup();
            v
        }
        None => cat
            .offers
            .iter()
            .enumerate()
            .filter(|(_, o)| keep(o))
            .map(|(i, _)| i)
            .collect(),
    };
    apply_sort(&mut idx, &sorts, |i, f| match f {
        "product_id" => cat.offers[i].product_id,
        _ => cat.offers[i].id,
    });
    ok(q.envelope(&page_path(&sh, "/offers"), idx.len(), |r| {
        idx[r]
            .iter()
            .map(|&i| cat.render_offer(&cat.offers[i], with_product))
            .collect()
    }))
}

async fn stocks(State(sh): Sh, Extension(acc): Acc, RawQuery(raw): RawQuery) -> ApiResult {
    // Unknown filters are ignored here (live behaviour).
    let q = ListQuery::parse(raw.as_deref());
    let ids = q.filter_ids("offers_id");
    let skus = q.filter_list("offers_sku");
    let details = q.filter_bool("details").unwrap_or(false);
    let cat = read(&acc.catalog);
    let idx: Vec<usize> = cat
        .offers
        .iter()
        .enumerate()
        .filter(|(_, o)| ids.as_ref().is_none_or(|l| l.contains(&o.id)))
        .filter(|(_, o)| skus.as_ref().is_none_or(|l| l.contains(&o.sku)))
        .map(|(i, _)| i)
        .collect();
    ok(
        q.envelope(&page_path(&sh, "/offers/stocks"), idx.len(), |r| {
            idx[r]
                .iter()
                .map(|&i| cat.render_stock(&cat.offers[i], details))
                .collect()
        }),
    )
}

/// `PUT /offers/stocks`: absolute balances in one warehouse (a stock movement each), 202.
async fn put_stocks(State(sh): Sh, Extension(acc): Acc, body: Bytes) -> ApiResult {
    let body = body_object(&body);
    let update = stock::parse_update(&body, &read(&acc.catalog)).map_err(ApiError::Validation)?;
    let ids: Vec<i64> = update.items.iter().map(|i| i.0).collect();
    stock::with_stock_events(&sh, &acc, &ids, |cat| {
        stock::apply_update(cat, &update, now())
    });
    Ok((StatusCode::ACCEPTED, Json(json!({"status": true}))).into_response())
}

/// A catalog mutation from the control API; a manual stock edit fires the stock webhooks.
pub(crate) fn mutate_catalog(sh: &Arc<Shared>, acc: &Account, m: &CatalogMutation) -> usize {
    match m {
        CatalogMutation::SetStock { offer_id, .. } => {
            stock::with_stock_events(sh, acc, &[*offer_id], |cat| cat.apply(m, now()))
        }
        _ => write(&acc.catalog).apply(m, now()),
    }
}

// ---- orders ----------------------------------------------------------------------------------

async fn list_orders(State(sh): Sh, Extension(acc): Acc, RawQuery(raw): RawQuery) -> ApiResult {
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

async fn get_order(
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

async fn create_order(State(sh): Sh, Extension(acc): Acc, body: Bytes) -> ApiResult {
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

async fn update_order(
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

// ---- /__sim control routes --------------------------------------------------------------------

fn bad_request(msg: impl Into<String>) -> Response {
    json_response(StatusCode::BAD_REQUEST, json!({"message": msg.into()}))
}

/// Errors of the control routes are boxed responses (keeps `Result` small).
type Control<T> = Result<T, Box<Response>>;

fn parse_json<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Control<T> {
    serde_json::from_slice(body)
        .map_err(|e| Box::new(bad_request(format!("invalid JSON body: {e}"))))
}

#[derive(Deserialize)]
struct KeyQuery {
    api_key: Option<String>,
}

fn key_from_query(raw: Option<&str>) -> Option<String> {
    url::form_urlencoded::parse(raw.unwrap_or("").as_bytes())
        .find(|(k, _)| k == "api_key")
        .map(|(_, v)| v.into_owned())
}

fn account_for(sh: &Shared, key: Option<&str>) -> Control<Arc<Account>> {
    sh.account_or_default(key).ok_or_else(|| {
        Box::new(json_response(
            StatusCode::NOT_FOUND,
            json!({"message": format!("unknown api key `{}`", key.unwrap_or(""))}),
        ))
    })
}

async fn sim_health(State(sh): Sh) -> Response {
    let keys: Vec<&str> = sh
        .accounts
        .iter()
        .map(|a| a.spec.api_key.as_str())
        .collect();
    Json(json!({"status": "ok", "base_url": sh.public_base, "accounts": keys})).into_response()
}

async fn sim_stats(State(sh): Sh) -> Response {
    Json(lock(&sh.stats).clone()).into_response()
}

async fn sim_stats_reset(State(sh): Sh) -> Response {
    *lock(&sh.stats) = crate::SimStats::default();
    Json(json!({"status": true})).into_response()
}

async fn sim_set_faults(State(sh): Sh, body: Bytes) -> Response {
    match parse_json::<Faults>(&body) {
        Ok(f) => {
            sh.set_faults(f.clone());
            Json(json!({"status": true, "faults": f})).into_response()
        }
        Err(r) => *r,
    }
}

async fn sim_get_faults(State(sh): Sh) -> Response {
    let st = lock(&sh.faults);
    Json(json!({"faults": st.faults, "commit_timeouts_left": st.commit_timeouts_left}))
        .into_response()
}

async fn sim_orders(State(sh): Sh, RawQuery(raw): RawQuery) -> Response {
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

async fn sim_cards(State(sh): Sh, RawQuery(raw): RawQuery) -> Response {
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
struct WebhookBody {
    api_key: Option<String>,
    event: String,
    url: Option<String>,
}

async fn sim_webhooks(State(sh): Sh, body: Bytes) -> Response {
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
struct StockWebhooksBody {
    api_key: Option<String>,
    webhooks: Vec<StockWebhook>,
}

/// `PUT /__sim/stock-webhooks`: `{"api_key": .., "webhooks": [{"name", "url", "warehouses"}]}`
/// replaces the account's stock webhooks (`[]` removes them).
async fn sim_stock_webhooks(State(sh): Sh, body: Bytes) -> Response {
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

async fn sim_get_stock_webhooks(State(sh): Sh, RawQuery(raw): RawQuery) -> Response {
    let key = key_from_query(raw.as_deref());
    let acc = match account_for(&sh, key.as_deref()) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    let hooks = lock(&acc.stock_webhooks).clone();
    Json(json!({"api_key": acc.spec.api_key, "webhooks": hooks})).into_response()
}

#[derive(Deserialize)]
struct StatusBody {
    api_key: Option<String>,
    status_id: i64,
}

async fn sim_order_status(State(sh): Sh, Path(id): Path<String>, body: Bytes) -> Response {
    let b: StatusBody = match parse_json(&body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let Ok(oid) = id.parse::<i64>() else {
        return SimError::OrderNotFound(0).into_response();
    };
    let acc = match account_for(&sh, b.api_key.as_deref()) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    match change_order_status(&sh, &acc.spec.api_key, oid, b.status_id) {
        Ok(()) => Json(json!({"status": true})).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn sim_card_status(State(sh): Sh, Path(id): Path<String>, body: Bytes) -> Response {
    let b: StatusBody = match parse_json(&body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let Ok(cid) = id.parse::<i64>() else {
        return SimError::CardNotFound(0).into_response();
    };
    let acc = match account_for(&sh, b.api_key.as_deref()) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    match change_card_status(&sh, &acc.spec.api_key, cid, b.status_id) {
        Ok(()) => Json(json!({"status": true})).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn sim_catalog_mutate(State(sh): Sh, RawQuery(raw): RawQuery, body: Bytes) -> Response {
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

async fn sim_catalog(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_keys() {
        assert_eq!(endpoint_key(&Method::GET, "/v1/offers"), "GET /offers");
        assert_eq!(
            endpoint_key(&Method::PUT, "/v1/order/5001"),
            "PUT /order/{id}"
        );
        assert_eq!(
            endpoint_key(&Method::GET, "/v1/pipelines/1/statuses"),
            "GET /pipelines/{id}/statuses"
        );
    }

    #[test]
    fn bearer_parsing() {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc"),
        );
        assert_eq!(bearer(&h).as_deref(), Some("abc"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&h), None);
    }
}
