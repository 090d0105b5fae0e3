//! Every error the admin API answers with: `{"error": {"code", "message", "fields"?}}`.
//! Codes are stable identifiers the settings page can switch on; messages are for people.
//! No message ever carries a secret (API keys, webhook tokens, SDK error text).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use keycrm::KeycrmError;
use mapping::FieldError;
use serde::Serialize;
use shop::ShopError;
use std::time::Duration;
use store::StoreError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub fields: Vec<FieldError>,
    /// Seconds for a `Retry-After` header (KeyCRM busy or slow).
    pub retry_after: Option<u64>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    fields: &'a [FieldError],
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            fields: Vec::new(),
            retry_after: None,
        }
    }

    pub fn with_fields(mut self, fields: Vec<FieldError>) -> Self {
        self.fields = fields;
        self
    }

    pub fn unauthorized(message: &str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// The one answer for "this token is not for that shop": the same for every shop, so it
    /// says nothing about whether the other shop has a connection.
    pub fn forbidden() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this token does not grant access to this shop",
        )
    }

    pub fn not_connected() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_connected",
            "this shop has no KeyCRM connection",
        )
    }

    pub fn invalid_field(field: &str, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            "the request has invalid fields",
        )
        .with_fields(vec![FieldError {
            field: field.to_string(),
            message: message.into(),
        }])
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    pub fn key_rejected() -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "keycrm_key_rejected",
            "KeyCRM rejected this API key",
        )
        .with_fields(vec![FieldError {
            field: "api_key".into(),
            message: "KeyCRM rejected this API key".into(),
        }])
    }

    /// KeyCRM could not do the work in time: the key's budget is spent by other work (429s,
    /// a long queue in the rate gate) or KeyCRM answers too slowly. Nothing was changed.
    pub fn keycrm_busy(retry_in: Duration) -> Self {
        // Whole seconds, at least one; a server asking for more than five minutes is not
        // something to make the merchant stare at.
        let secs = retry_in.as_secs_f64().ceil().clamp(1.0, 300.0) as u64;
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "keycrm_busy",
            format!(
                "KeyCRM is busy or did not answer in time; nothing was changed, try again in {secs} s"
            ),
        );
        e.retry_after = Some(secs);
        e
    }

    /// A KeyCRM failure while checking a key the merchant is pasting.
    pub fn from_key_check(e: &KeycrmError) -> Self {
        match e {
            KeycrmError::Unauthorized | KeycrmError::Forbidden { .. } => Self::key_rejected(),
            KeycrmError::RateLimited { retry_after } => Self::keycrm_busy(*retry_after),
            other => Self::keycrm_unreachable(other),
        }
    }

    /// A KeyCRM failure while using the stored key.
    pub fn from_keycrm(e: &KeycrmError) -> Self {
        match e {
            KeycrmError::Unauthorized => Self::new(
                StatusCode::BAD_GATEWAY,
                "keycrm_key_rejected",
                "KeyCRM rejected the stored API key; paste a new key to reconnect",
            ),
            KeycrmError::RateLimited { retry_after } => Self::keycrm_busy(*retry_after),
            other => Self::keycrm_unreachable(other),
        }
    }

    fn keycrm_unreachable(e: &KeycrmError) -> Self {
        Self::new(
            StatusCode::BAD_GATEWAY,
            "keycrm_unreachable",
            format!(
                "KeyCRM could not be reached or answered unexpectedly ({}); nothing was changed, try again shortly",
                e.kind()
            ),
        )
    }

    pub fn from_shop(e: &ShopError) -> Self {
        Self::new(
            StatusCode::BAD_GATEWAY,
            "shop_unavailable",
            format!("the shop platform's API failed: {e}"),
        )
    }

    pub fn internal(what: &str) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("{what}; nothing was changed, try again"),
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(_) => ApiError::conflict(
                "version_conflict",
                "the connection was changed by someone else; reload and try again",
            ),
            StoreError::NotFound(_) => ApiError::not_connected(),
            StoreError::AlreadyExists(_) => ApiError::conflict(
                "already_connected",
                "this shop already has a KeyCRM connection",
            ),
            other => {
                // Storage text stays in the log (it carries no secrets), not in the answer.
                tracing::error!(error = %other, "storage failure");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage_unavailable",
                    "the connector's storage is unavailable; nothing was changed, try again",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: Inner {
                code: self.code,
                message: &self.message,
                fields: &self.fields,
            },
        };
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
