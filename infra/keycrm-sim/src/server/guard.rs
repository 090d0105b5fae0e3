//! The guard every `/v1` request passes first: request stats, Bearer auth, the per-key rate
//! limit (`429` + `Retry-After`) and injected faults; and the API's 404 and 405 answers.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::Sh;
use crate::error::ApiError;
use crate::state::{lock, Hit};
use crate::time::now;

/// `GET /v1/order/5001` → `GET /order/{id}`.
pub(super) fn endpoint_key(method: &Method, path: &str) -> String {
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

pub(super) fn bearer(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let t = token.trim();
    (!t.is_empty()).then(|| t.to_string())
}

pub(super) fn json_response(status: StatusCode, v: Value) -> Response {
    (status, Json(v)).into_response()
}

pub(super) fn set_header(resp: &mut Response, name: &'static str, value: String) {
    if let Ok(v) = HeaderValue::from_str(&value) {
        resp.headers_mut().insert(name, v);
    }
}

/// A response whose body fails immediately, so the connection is torn down mid-response.
pub(super) fn dropped_response() -> Response {
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

pub(super) async fn guard(State(sh): Sh, mut req: Request, next: Next) -> Response {
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

pub(super) async fn not_found(
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

pub(super) async fn method_not_allowed(
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
