//! Error types: [`SimError`] for the library API, `ApiError` for HTTP responses.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

/// Errors of the programmatic control API ([`crate::SimHandle`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    #[error("unknown api key `{0}`")]
    UnknownAccount(String),
    #[error("order {0} not found")]
    OrderNotFound(i64),
    #[error("pipeline card {0} not found")]
    CardNotFound(i64),
    #[error("unknown order status id {0}")]
    UnknownOrderStatus(i64),
    #[error("unknown pipeline status id {0}")]
    UnknownCardStatus(i64),
    #[error("Leads are not enabled")]
    PipelinesDisabled,
    #[error("unknown warehouse id {0}")]
    UnknownWarehouse(i64),
}

impl SimError {
    pub(crate) fn http_status(&self) -> StatusCode {
        match self {
            SimError::UnknownAccount(_)
            | SimError::OrderNotFound(_)
            | SimError::CardNotFound(_) => StatusCode::NOT_FOUND,
            SimError::UnknownOrderStatus(_)
            | SimError::UnknownCardStatus(_)
            | SimError::UnknownWarehouse(_) => StatusCode::UNPROCESSABLE_ENTITY,
            SimError::PipelinesDisabled => StatusCode::BAD_REQUEST,
        }
    }
}

impl IntoResponse for SimError {
    fn into_response(self) -> Response {
        (
            self.http_status(),
            Json(json!({"message": self.to_string()})),
        )
            .into_response()
    }
}

/// Laravel-style validation errors: `field.path` → messages.
#[derive(Debug, Default, Clone)]
pub(crate) struct Invalid {
    pub errors: Vec<(String, String)>,
}

impl Invalid {
    pub(crate) fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push((field.into(), message.into()));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }
}

/// Attribute name as Laravel prints it in messages (`source_id` → `source id`).
pub(crate) fn attr(path: &str) -> String {
    path.replace('_', " ")
}

/// Errors answered by the `/v1` API, with KeyCRM/Laravel-shaped JSON bodies.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    #[error("Unauthenticated.")]
    Unauthenticated,
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("Leads are not enabled")]
    LeadsDisabled,
    #[error("The given data was invalid.")]
    Validation(Invalid),
    #[error("{0}")]
    MethodNotAllowed(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::Unauthenticated => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) | ApiError::LeadsDisabled => StatusCode::BAD_REQUEST,
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
        };
        let body = match &self {
            ApiError::Validation(inv) => {
                let mut errors = Map::new();
                for (field, msg) in &inv.errors {
                    let entry = errors
                        .entry(field.clone())
                        .or_insert_with(|| Value::Array(Vec::new()));
                    if let Value::Array(a) = entry {
                        a.push(Value::String(msg.clone()));
                    }
                }
                json!({"message": self.to_string(), "errors": errors})
            }
            _ => json!({"message": self.to_string()}),
        };
        (status, Json(body)).into_response()
    }
}

pub(crate) fn not_found_model(model: &str, id: &str) -> ApiError {
    ApiError::NotFound(format!(
        "No query results for model [App\\Models\\{model}] {id}"
    ))
}
