//! The admin API the platform's "Integrations -> KeyCRM" page talks to: connect a shop with a
//! KeyCRM API key, read both sides' dictionaries, save validated settings, show the webhook
//! URLs and the connection's status, start syncs (or preview proposed settings), re-push
//! failed orders, push the orders skipped while it was off, disconnect.
//!
//! One axum [`Router`] serves it on Lambda (`main.rs`, through `lambda_http`), in the local
//! runner and in tests. Handlers see only ports ([`AdminApi`]); authentication is described
//! in [`auth`] and `docs/admin-api.md`, the routes in `docs/admin-api.openapi.yaml`. The same
//! router serves the settings page itself ([`page`], `docs/settings-page.md`).

mod account;
pub mod auth;
mod connection;
pub mod deadline;
pub mod error;
mod extract;
mod jobs;
pub mod lang;
pub mod options;
pub mod page;
pub mod state;
pub mod views;
pub mod wiring;

pub use auth::{ShopClaims, TokenSigner};
pub use error::ApiError;
pub use state::{AdminApi, AdminConfig, AppState};

use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::header::{CACHE_CONTROL, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, on, MethodFilter, MethodRouter};
use axum::Router;
use std::sync::Arc;
use std::time::Instant;

/// The prefix every admin route lives under (the HTTP API sends `/v1/shops/{shop_id}/connection`
/// and `/v1/shops/{shop_id}/connection/{proxy+}` to this function).
pub const PREFIX: &str = "/v1/shops/{shop_id}/connection";

fn table() -> Vec<(Method, String, MethodRouter<AppState>)> {
    let r = |m: Method, suffix: &str, handler: MethodRouter<AppState>| {
        (m, format!("{PREFIX}{suffix}"), handler)
    };
    vec![
        r(
            Method::PUT,
            "",
            on(MethodFilter::PUT, connection::put_connection),
        ),
        r(
            Method::GET,
            "",
            on(MethodFilter::GET, connection::get_connection),
        ),
        r(
            Method::PATCH,
            "",
            on(MethodFilter::PATCH, connection::patch_connection),
        ),
        r(
            Method::DELETE,
            "",
            on(MethodFilter::DELETE, connection::delete_connection),
        ),
        r(
            Method::GET,
            "/status",
            on(MethodFilter::GET, connection::get_status),
        ),
        r(
            Method::GET,
            "/options",
            on(MethodFilter::GET, connection::get_options),
        ),
        r(
            Method::PUT,
            "/settings",
            on(MethodFilter::PUT, connection::put_settings),
        ),
        r(
            Method::POST,
            "/webhook-tokens/rotate",
            on(MethodFilter::POST, connection::rotate_tokens),
        ),
        r(
            Method::POST,
            "/sync",
            on(MethodFilter::POST, jobs::start_sync),
        ),
        r(Method::GET, "/runs", on(MethodFilter::GET, jobs::list_runs)),
        r(
            Method::GET,
            "/runs/{run_id}",
            on(MethodFilter::GET, jobs::get_run),
        ),
        r(
            Method::POST,
            "/orders/{order_id}/repush",
            on(MethodFilter::POST, jobs::repush_order),
        ),
        r(
            Method::POST,
            "/orders/push-skipped",
            on(MethodFilter::POST, jobs::push_skipped),
        ),
    ]
}

/// Every `(METHOD, path template)` the router serves. The router is built from the same
/// table, so this list is exactly what it answers; a test keeps the OpenAPI file in step.
pub fn routes() -> Vec<(String, String)> {
    table()
        .into_iter()
        .map(|(m, p, _)| (m.as_str().to_string(), p))
        .collect()
}

/// The settings page's routes (no shop token: the page is the same for every shop and
/// carries nothing of one; it brings its token in the URL fragment).
pub const PAGE_ROUTES: [&str; 2] = [
    "/v1/shops/{shop_id}/connection/page",
    "/v1/shops/{shop_id}/connection/page/{version}/{file}",
];

/// The admin API over the given ports, and the settings page.
pub fn router(api: AdminApi) -> Router {
    let page_assets = Arc::new(page::PageAssets::new(&api.config.page_origins));
    let state: AppState = Arc::new(api);
    let mut r: Router<AppState> = Router::new();
    for (_, path, handler) in table() {
        // Same path, other method: axum merges the method routers.
        r = r.route(&path, handler);
    }
    let api_routes = r
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Stated, not left to axum's default, so the 413's message names the real limit.
        .layer(DefaultBodyLimit::max(extract::BODY_LIMIT))
        .layer(middleware::from_fn(api_headers))
        .layer(middleware::from_fn(lang::scope))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            deadline::stamp,
        ))
        .with_state(state);
    // The page's routes take GET (and HEAD) only; any other method gets the API's JSON 405
    // (with `Allow`), not axum's empty one.
    let page_routes = Router::new()
        .route(PAGE_ROUTES[0], get(page::get_page))
        .route(PAGE_ROUTES[1], get(page::get_asset))
        .method_not_allowed_fallback(page_method_not_allowed)
        .layer(middleware::from_fn(lang::scope))
        .with_state(page_assets);
    api_routes
        .merge(page_routes)
        .layer(middleware::from_fn(log_request))
}

/// JSON answers may carry webhook URLs: never cached by a browser or a proxy, never sniffed
/// into something else, never sent on as a Referer.
async fn api_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    json_answer_headers(resp.headers_mut());
    resp
}

fn json_answer_headers(h: &mut axum::http::HeaderMap) {
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "route_not_found",
        error::Msg::new(
            "no such admin API route",
            "такого маршруту в admin API немає",
        ),
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        error::Msg::new(
            "this route does not take that method",
            "цей маршрут не приймає такий метод",
        ),
    )
}

/// The page router's 405: the API's JSON error with the API's headers (the page's own
/// caching headers are for the page, not for a refusal).
async fn page_method_not_allowed() -> Response {
    let mut resp = method_not_allowed().await.into_response();
    json_answer_headers(resp.headers_mut());
    resp
}

/// One line per request: method, route template (never the raw path or any body), status,
/// duration.
async fn log_request(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "<unmatched>".to_string());
    let resp = next.run(req).await;
    let status = resp.status().as_u16();
    let ms = started.elapsed().as_millis() as u64;
    if resp.status().is_server_error() {
        tracing::warn!(method = %method, route = %route, status, ms, "admin request");
    } else {
        tracing::info!(method = %method, route = %route, status, ms, "admin request");
    }
    resp.into_response()
}

/// The first value of a query parameter (`?refresh=true`).
pub(crate) fn query_param(raw: Option<&str>, name: &str) -> Option<String> {
    url::form_urlencoded::parse(raw?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests;
