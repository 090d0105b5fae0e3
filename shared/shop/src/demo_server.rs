//! The demo shop: the platform HTTP contract (`docs/shop-api.md`) served from a [`MemoryShop`],
//! for the local run, end-to-end tests and benchmarks. Besides the contract it serves
//! `GET /__demo/shops/{shop}/stats` and `POST /__demo/shops/{shop}/stats/reset` (write counters).

use crate::http::{
    CategoryBatch, CategoryResult, CategoryResults, CategoryStateChanges, ErrorBody, Page,
    PriceChanges, ProductBatch, ProductResults, StateChanges, StatusBody, MAX_PAGE,
};
use crate::*;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::task::JoinHandle;

#[derive(Clone)]
struct Demo {
    shop: Arc<MemoryShop>,
    token: Arc<String>,
}

#[derive(Deserialize)]
struct PageQuery {
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    cursor: Option<String>,
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        Json(ErrorBody {
            message: message.into(),
            index: None,
        }),
    )
        .into_response()
}

fn shop_error(e: ShopError) -> Response {
    let status = match &e {
        ShopError::NotFound(_) => StatusCode::NOT_FOUND,
        ShopError::Unauthorized => StatusCode::UNAUTHORIZED,
        ShopError::Rejected(_) => StatusCode::UNPROCESSABLE_ENTITY,
        ShopError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    error(status, e.to_string())
}

type Res<T> = Result<T, Response>;

async fn auth(State(d): State<Demo>, req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    if presented != Some(d.token.as_str()) {
        return error(StatusCode::UNAUTHORIZED, "missing or invalid API token");
    }
    next.run(req).await
}

async fn products(
    State(d): State<Demo>,
    Path(shop): Path<String>,
    Query(q): Query<PageQuery>,
) -> Res<Json<Page<ShopProduct>>> {
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_PAGE);
    let (items, next_cursor) = d
        .shop
        .products_page(&shop, q.cursor, limit)
        .await
        .map_err(shop_error)?;
    Ok(Json(Page { items, next_cursor }))
}

async fn upsert_products(
    State(d): State<Demo>,
    Path(shop): Path<String>,
    Json(b): Json<ProductBatch>,
) -> Res<Json<ProductResults>> {
    let results = d
        .shop
        .upsert_products(&shop, &b.products)
        .await
        .map_err(shop_error)?;
    Ok(Json(ProductResults { results }))
}

async fn states(
    State(d): State<Demo>,
    Path(shop): Path<String>,
    Json(b): Json<StateChanges>,
) -> Res<StatusCode> {
    d.shop
        .set_product_states(&shop, &b.changes)
        .await
        .map_err(shop_error)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn prices(
    State(d): State<Demo>,
    Path(shop): Path<String>,
    Json(b): Json<PriceChanges>,
) -> Res<StatusCode> {
    d.shop
        .set_variant_prices(&shop, &b.changes)
        .await
        .map_err(shop_error)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn categories(
    State(d): State<Demo>,
    Path(shop): Path<String>,
) -> Res<Json<Page<ShopCategory>>> {
    let items = d.shop.categories(&shop).await.map_err(shop_error)?;
    Ok(Json(Page {
        items,
        next_cursor: None,
    }))
}

async fn category_states(
    State(d): State<Demo>,
    Path(shop): Path<String>,
    Json(b): Json<CategoryStateChanges>,
) -> Res<StatusCode> {
    d.shop
        .set_category_states(&shop, &b.changes)
        .await
        .map_err(shop_error)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn upsert_categories(
    State(d): State<Demo>,
    Path(shop): Path<String>,
    Json(b): Json<CategoryBatch>,
) -> Res<Json<CategoryResults>> {
    let res = d
        .shop
        .upsert_categories(&shop, &b.categories)
        .await
        .map_err(shop_error)?;
    Ok(Json(CategoryResults {
        results: res
            .into_iter()
            .map(|(external_ref, id)| CategoryResult { external_ref, id })
            .collect(),
    }))
}

async fn reference(State(d): State<Demo>, Path(shop): Path<String>) -> Res<Json<ShopReference>> {
    Ok(Json(d.shop.reference(&shop).await.map_err(shop_error)?))
}

async fn order_status(
    State(d): State<Demo>,
    Path((shop, order)): Path<(String, String)>,
    Json(b): Json<StatusBody>,
) -> Res<StatusCode> {
    d.shop
        .set_order_status(&shop, &order, &b.status)
        .await
        .map_err(shop_error)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn stats(State(d): State<Demo>, Path(shop): Path<String>) -> Json<ShopStats> {
    Json(d.shop.stats(&shop))
}

async fn reset_stats(State(d): State<Demo>, Path(shop): Path<String>) -> StatusCode {
    d.shop.reset_stats(&shop);
    StatusCode::NO_CONTENT
}

/// The contract's routes under `/v1` (plus the demo's `/__demo` counters), token-checked.
pub fn router(shop: Arc<MemoryShop>, token: String) -> Router {
    let state = Demo {
        shop,
        token: Arc::new(token),
    };
    Router::new()
        .route("/v1/shops/{shop}/catalog/products", get(products))
        .route(
            "/v1/shops/{shop}/catalog/products/batch",
            post(upsert_products),
        )
        .route("/v1/shops/{shop}/catalog/products/state", post(states))
        .route("/v1/shops/{shop}/catalog/variants/prices", post(prices))
        .route("/v1/shops/{shop}/catalog/categories", get(categories))
        .route(
            "/v1/shops/{shop}/catalog/categories/batch",
            post(upsert_categories),
        )
        .route(
            "/v1/shops/{shop}/catalog/categories/state",
            post(category_states),
        )
        .route("/v1/shops/{shop}/reference", get(reference))
        .route("/v1/shops/{shop}/orders/{order}/status", put(order_status))
        .route("/__demo/shops/{shop}/stats", get(stats))
        .route("/__demo/shops/{shop}/stats/reset", post(reset_stats))
        .layer(axum::extract::DefaultBodyLimit::max(16 * 1024 * 1024))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth))
        .with_state(state)
}

/// Serves the demo shop on `bind` (port 0 = any free port). The contract's base URL is
/// `http://{addr}/v1`.
pub async fn serve(
    shop: Arc<MemoryShop>,
    token: String,
    bind: SocketAddr,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(bind).await?;
    let addr = listener.local_addr()?;
    let app = router(shop, token);
    let handle = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "demo shop server stopped");
        }
    });
    Ok((addr, handle))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::HttpShop;
    use rust_decimal::Decimal;

    #[tokio::test]
    async fn http_adapter_and_demo_server_speak_the_same_contract() {
        let mem = Arc::new(MemoryShop::new());
        mem.add_order("s1", "o1", "new");
        let (addr, _h) = serve(mem.clone(), "tok".into(), "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let shop = HttpShop::new(&format!("http://{addr}/v1"), "tok").unwrap();

        let cats = shop
            .upsert_categories(
                "s1",
                &[CategoryUpsert {
                    id: None,
                    external_ref: "10".into(),
                    name: "Сукні".into(),
                    parent_id: None,
                }],
            )
            .await
            .unwrap();
        assert_eq!(cats[0].0, "10");
        assert_eq!(shop.categories("s1").await.unwrap().len(), 1);

        let created = shop
            .upsert_products(
                "s1",
                &[ProductUpsert {
                    external_ref: "7".into(),
                    name: Some("Сукня".into()),
                    category_id: Some(cats[0].1.clone()),
                    visible: Some(false),
                    variants: vec![VariantUpsert {
                        external_ref: "70".into(),
                        sku: Some("A-1".into()),
                        price: Some(Decimal::from(100)),
                        available: Some(true),
                        ..VariantUpsert::default()
                    }],
                    ..ProductUpsert::default()
                }],
            )
            .await
            .unwrap();
        let pid = created[0].id.clone();
        let vid = created[0].variants[0].1.clone();
        let (page, next) = shop.products_page("s1", None, 10).await.unwrap();
        assert_eq!((page.len(), next), (1, None));
        assert_eq!(
            page[0].external_id.as_deref(),
            Some("7"),
            "external_ref becomes the external id"
        );
        assert!(!page[0].visible);

        shop.set_variant_prices(
            "s1",
            &[VariantPriceChange {
                product_id: pid.clone(),
                variant_id: vid,
                price: Some(Decimal::from(90)),
                available: None,
            }],
        )
        .await
        .unwrap();
        shop.set_product_states(
            "s1",
            &[ProductStateChange {
                id: pid.clone(),
                visible: Some(true),
                available: None,
            }],
        )
        .await
        .unwrap();
        let p = mem.product("s1", &pid).unwrap();
        assert!(p.visible);
        assert_eq!(p.variants[0].price, Some(Decimal::from(90)));

        let cats = shop
            .upsert_categories(
                "s1",
                &[CategoryUpsert {
                    id: None,
                    external_ref: "12".into(),
                    name: "Сукні".into(),
                    parent_id: None,
                }],
            )
            .await
            .unwrap();
        let cid = cats[0].1.clone();
        let hide = |visible| CategoryStateChange {
            id: cid.clone(),
            visible: Some(visible),
        };
        shop.set_category_states("s1", &[hide(false)])
            .await
            .unwrap();
        assert!(mem.category_hidden("s1", &cid));
        shop.set_category_states("s1", &[hide(true)]).await.unwrap();
        assert!(!mem.category_hidden("s1", &cid));

        shop.set_order_status("s1", "o1", "paid").await.unwrap();
        assert_eq!(mem.order_status("s1", "o1").as_deref(), Some("paid"));
        assert!(matches!(
            shop.set_order_status("s1", "zz", "paid").await,
            Err(ShopError::NotFound(_))
        ));
        assert_eq!(
            shop.reference("s1").await.unwrap(),
            ShopReference::default()
        );

        let missing = shop
            .upsert_products(
                "s1",
                &[ProductUpsert {
                    id: Some("nope".into()),
                    external_ref: "1".into(),
                    ..ProductUpsert::default()
                }],
            )
            .await;
        assert!(matches!(missing, Err(ShopError::NotFound(_))));

        let wrong = HttpShop::new(&format!("http://{addr}/v1"), "bad").unwrap();
        assert_eq!(
            wrong.reference("s1").await.unwrap_err(),
            ShopError::Unauthorized
        );
        mem.set_down(true);
        assert!(shop.categories("s1").await.unwrap_err().is_retryable());
    }
}
