//! Every error the admin API answers with: `{"error": {"code", "message", "fields"?}}`.
//! Codes are stable identifiers the settings page can switch on; messages are for people, in
//! the merchant's language (Ukrainian when the request's `Accept-Language` prefers it,
//! English otherwise; see [`crate::lang`]). No message ever carries a secret (API keys,
//! webhook tokens, SDK error text) or a value from the request.

use crate::lang;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use keycrm::KeycrmError;
use mapping::settings_problem::FieldError;
use mapping::{Lang, Problem};
use serde::Serialize;
use shop::ShopError;
use std::time::Duration;
use store::StoreError;

/// A message in both languages the API speaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    pub en: String,
    pub uk: String,
}

impl Msg {
    pub fn new(en: impl Into<String>, uk: impl Into<String>) -> Self {
        Msg {
            en: en.into(),
            uk: uk.into(),
        }
    }

    pub fn get(&self, lang: Lang) -> &str {
        match lang {
            Lang::En => &self.en,
            Lang::Uk => &self.uk,
        }
    }
}

/// A refused field: where, a stable code, and the message in both languages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldProblem {
    pub field: String,
    pub code: String,
    pub message: Msg,
}

impl FieldProblem {
    pub fn new(field: impl Into<String>, code: impl Into<String>, message: Msg) -> Self {
        FieldProblem {
            field: field.into(),
            code: code.into(),
            message,
        }
    }

    pub fn render(&self, lang: Lang) -> FieldError {
        FieldError::new(
            self.field.clone(),
            self.code.clone(),
            self.message.get(lang),
        )
    }
}

impl From<&Problem> for FieldProblem {
    fn from(p: &Problem) -> Self {
        FieldProblem::new(
            p.field.clone(),
            p.code(),
            Msg::new(p.message(Lang::En), p.message(Lang::Uk)),
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: Msg,
    pub fields: Vec<FieldProblem>,
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
    fields: Vec<FieldError>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: Msg) -> Self {
        ApiError {
            status,
            code,
            message,
            fields: Vec::new(),
            retry_after: None,
        }
    }

    pub fn with_fields(mut self, fields: Vec<FieldProblem>) -> Self {
        self.fields = fields;
        self
    }

    /// Settings problems, every one named.
    pub fn invalid_settings(problems: &[Problem]) -> Self {
        let n = problems.len();
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_settings",
            Msg::new(
                format!("{n} setting(s) refer to something that does not exist or are incomplete; nothing was saved"),
                format!("{n} налаштуван(ня/ь) посилаються на те, чого немає, або неповні; нічого не збережено"),
            ),
        )
        .with_fields(problems.iter().map(FieldProblem::from).collect())
    }

    pub fn unauthorized(message: Msg) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// The one answer for "this token is not for that shop": the same for every shop, so it
    /// says nothing about whether the other shop has a connection.
    pub fn forbidden() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            Msg::new(
                "this token does not grant access to this shop",
                "цей токен не дає доступу до цього магазину",
            ),
        )
    }

    pub fn not_connected() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_connected",
            Msg::new(
                "this shop has no KeyCRM connection",
                "цей магазин не підключено до KeyCRM",
            ),
        )
    }

    /// One refused request field (`invalid_request`).
    pub fn invalid_field(field: &str, code: &str, message: Msg) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            Msg::new(
                "the request has invalid fields",
                "у запиті є неправильні поля",
            ),
        )
        .with_fields(vec![FieldProblem::new(field, code, message)])
    }

    pub fn conflict(code: &'static str, message: Msg) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    fn rejected_msg() -> Msg {
        Msg::new(
            "KeyCRM rejected this API key",
            "KeyCRM не прийняв цей ключ API",
        )
    }

    pub fn key_rejected() -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "keycrm_key_rejected",
            Self::rejected_msg(),
        )
        .with_fields(vec![FieldProblem::new(
            "api_key",
            "keycrm_key_rejected",
            Self::rejected_msg(),
        )])
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
            Msg::new(
                format!(
                    "KeyCRM is busy or did not answer in time; nothing was changed, try again in {secs} s"
                ),
                format!(
                    "KeyCRM зайнятий або не відповів вчасно; нічого не змінено, спробуйте ще раз через {secs} с"
                ),
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
                Msg::new(
                    "KeyCRM rejected the stored API key; paste a new key to reconnect",
                    "KeyCRM не прийняв збережений ключ API; вставте новий ключ, щоб підключитися знову",
                ),
            ),
            KeycrmError::RateLimited { retry_after } => Self::keycrm_busy(*retry_after),
            other => Self::keycrm_unreachable(other),
        }
    }

    fn keycrm_unreachable(e: &KeycrmError) -> Self {
        let kind = e.kind();
        Self::new(
            StatusCode::BAD_GATEWAY,
            "keycrm_unreachable",
            Msg::new(
                format!("KeyCRM could not be reached or answered unexpectedly ({kind}); nothing was changed, try again shortly"),
                format!("KeyCRM недоступний або відповів неочікувано ({kind}); нічого не змінено, спробуйте трохи згодом"),
            ),
        )
    }

    pub fn from_shop(e: &ShopError) -> Self {
        let what = match e {
            ShopError::NotFound(_) => "not_found",
            ShopError::Unauthorized => "unauthorized",
            ShopError::Rejected(_) => "rejected",
            ShopError::Unavailable(_) => "unavailable",
        };
        tracing::warn!(error = %e, "shop platform API failure");
        Self::new(
            StatusCode::BAD_GATEWAY,
            "shop_unavailable",
            Msg::new(
                format!("the shop platform's API failed ({what}); nothing was changed, try again"),
                format!("API платформи магазину не відповів як слід ({what}); нічого не змінено, спробуйте ще раз"),
            ),
        )
    }

    pub fn internal(what: Msg) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            Msg::new(
                format!("{}; nothing was changed, try again", what.en),
                format!("{}; нічого не змінено, спробуйте ще раз", what.uk),
            ),
        )
    }

    pub fn queue_unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "queue_unavailable",
            Msg::new(
                "the work queue is unavailable; nothing was started, try again",
                "черга завдань недоступна; нічого не запущено, спробуйте ще раз",
            ),
        )
    }

    pub fn inactive() -> Self {
        Self::conflict(
            "connection_inactive",
            Msg::new(
                "the connection is inactive: activate it first",
                "підключення неактивне: спершу активуйте його",
            ),
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(_) => ApiError::conflict(
                "version_conflict",
                Msg::new(
                    "the connection was changed by someone else; reload and try again",
                    "підключення тим часом змінили; оновіть сторінку й спробуйте ще раз",
                ),
            ),
            StoreError::NotFound(_) => ApiError::not_connected(),
            StoreError::AlreadyExists(_) => ApiError::conflict(
                "already_connected",
                Msg::new(
                    "this shop already has a KeyCRM connection",
                    "цей магазин уже підключено до KeyCRM",
                ),
            ),
            other => {
                // Storage text stays in the log (it carries no secrets), not in the answer.
                tracing::error!(error = %other, "storage failure");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage_unavailable",
                    Msg::new(
                        "the connector's storage is unavailable; nothing was changed, try again",
                        "сховище конектора недоступне; нічого не змінено, спробуйте ще раз",
                    ),
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let lang = lang::current();
        let body = Body {
            error: Inner {
                code: self.code,
                message: self.message.get(lang),
                fields: self.fields.iter().map(|f| f.render(lang)).collect(),
            },
        };
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        resp.headers_mut().insert(
            axum::http::header::CONTENT_LANGUAGE,
            HeaderValue::from_static(lang.code()),
        );
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
