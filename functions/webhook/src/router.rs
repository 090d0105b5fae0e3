//! The HTTP router: one route, served by `lambda_http` behind API Gateway and by the local
//! runner on a socket. Checks run cheapest-first and authentication comes before anything
//! that looks at the body, so an unauthenticated caller only ever sees 404, 405 or 413.

use crate::payload::{self, PayloadError};
use crate::receiver::{Receiver, Reply, ROUTE};
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use runtime::metrics::catalog::WEBHOOKS_REFUSED;
use runtime::metrics::count;
use std::sync::Arc;
use store::WebhookKind;

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

fn refused(e: &PayloadError) -> StatusCode {
    match e {
        PayloadError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        PayloadError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        PayloadError::NotJson(_) => StatusCode::BAD_REQUEST,
        PayloadError::Shape(_) | PayloadError::Missing(_) | PayloadError::Invalid { .. } => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
    }
}

/// The metric reason of a refused body.
fn refusal(e: &PayloadError) -> &'static str {
    match e {
        PayloadError::UnsupportedMediaType => "unsupported_media_type",
        PayloadError::TooLarge(_) => "too_large",
        PayloadError::NotJson(_) => "not_json",
        PayloadError::Shape(_) | PayloadError::Missing(_) | PayloadError::Invalid { .. } => {
            "invalid_body"
        }
    }
}

fn bad_body(connection: &str, e: PayloadError) -> Response {
    count(&WEBHOOKS_REFUSED, &[refusal(&e)], 1);
    let status = refused(&e);
    tracing::warn!(route = ROUTE, status = status.as_u16(), connection = %connection, error = %e, "webhook refused: bad body");
    Reply::error(status, e).into_response()
}

/// The webhook router (`POST /v1/webhooks/keycrm/{connection_id}/{token}`).
pub fn router(receiver: Arc<Receiver>) -> Router {
    Router::new()
        .route(ROUTE, post(handle).fallback(method_not_allowed))
        .fallback(not_found)
        .with_state(receiver)
}

async fn not_found() -> Response {
    count(&WEBHOOKS_REFUSED, &["unknown_route"], 1);
    Reply::not_found().into_response()
}

async fn method_not_allowed() -> Response {
    count(&WEBHOOKS_REFUSED, &["method_not_allowed"], 1);
    let mut r = Reply::error(
        StatusCode::METHOD_NOT_ALLOWED,
        "use POST (set the KeyCRM webhook action's method to POST)",
    )
    .into_response();
    r.headers_mut()
        .insert(header::ALLOW, header::HeaderValue::from_static("POST"));
    r
}

async fn handle(
    State(rx): State<Arc<Receiver>>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Ok(Path((connection_id, token))) = path else {
        count(&WEBHOOKS_REFUSED, &["malformed_url"], 1);
        return Reply::not_found().into_response();
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > rx.max_body_any() as u64) {
        count(&WEBHOOKS_REFUSED, &["too_large"], 1);
        tracing::warn!(
            route = ROUTE,
            status = 413,
            "webhook refused: body too large"
        );
        return Reply::error(
            StatusCode::PAYLOAD_TOO_LARGE,
            PayloadError::TooLarge(rx.max_body_any()),
        )
        .into_response();
    }
    let (conn, kind) = match rx.authenticate(&connection_id, &token).await {
        Ok(found) => found,
        Err(reply) => return reply.into_response(),
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("(not text)"));
    if kind == WebhookKind::Stock {
        return crate::stock::handle(rx.stock(), &conn, content_type, body)
            .await
            .into_response();
    }
    if declared.is_some_and(|n| n > rx.max_body() as u64) {
        return bad_body(&conn.id, PayloadError::TooLarge(rx.max_body()));
    }
    if let Err(e) = payload::check_content_type(content_type) {
        return bad_body(&conn.id, e);
    }
    // A buffered body (Lambda, or under the limit) cannot fail otherwise.
    let bytes = match axum::body::to_bytes(body, rx.max_body()).await {
        Ok(b) => b,
        Err(_) => return bad_body(&conn.id, PayloadError::TooLarge(rx.max_body())),
    };
    let delivery = match payload::parse(&bytes) {
        Ok(d) => d,
        Err(e) => return bad_body(&conn.id, e),
    };
    rx.accept(&conn, kind, delivery).await.into_response()
}
