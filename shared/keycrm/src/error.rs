//! What can go wrong talking to KeyCRM, in categories a caller can act on.

use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum KeycrmError {
    /// 401: the API key is wrong or revoked. Permanent until the merchant replaces it.
    #[error("KeyCRM rejected the API key")]
    Unauthorized,
    /// 403: e.g. pipelines not activated for this account.
    #[error("KeyCRM refused the request: {message}")]
    Forbidden { message: String },
    /// 404 on an entity or route.
    #[error("not found in KeyCRM: {what}")]
    NotFound { what: String },
    /// 400: a request KeyCRM will never accept as sent (unknown filter, module disabled).
    #[error("KeyCRM rejected the request: {message}")]
    BadRequest { message: String },
    /// 422 with Laravel's field errors. Permanent for this payload.
    #[error("KeyCRM validation failed: {message}{}", fmt_fields(.errors))]
    Validation {
        message: String,
        errors: BTreeMap<String, Vec<String>>,
    },
    /// 429: over the per-key budget. Safe to retry after `retry_after`.
    #[error("KeyCRM rate limit hit; retry after {}s", .retry_after.as_secs_f64())]
    RateLimited { retry_after: Duration },
    /// 5xx, timeouts, dropped connections. A read may be retried; for a write the outcome is
    /// unknown (`maybe_committed`) and the caller must reconcile before trying again.
    #[error("KeyCRM unavailable ({detail})")]
    Transient {
        status: Option<u16>,
        detail: String,
        maybe_committed: bool,
    },
    /// A response we could not make sense of.
    #[error("unexpected response from KeyCRM: {detail}")]
    Protocol { detail: String },
}

fn fmt_fields(errors: &BTreeMap<String, Vec<String>>) -> String {
    if errors.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = errors
        .iter()
        .map(|(field, msgs)| format!("{field}: {}", msgs.join("; ")))
        .collect();
    format!(" ({})", parts.join(", "))
}

impl KeycrmError {
    /// Whether trying the same request again later can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            KeycrmError::RateLimited { .. } | KeycrmError::Transient { .. }
        )
    }

    /// How long the server asked us to wait, when it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            KeycrmError::RateLimited { retry_after } => Some(*retry_after),
            _ => None,
        }
    }

    /// A short, stable label for metrics, logs and stored records.
    pub fn kind(&self) -> &'static str {
        match self {
            KeycrmError::Unauthorized => "unauthorized",
            KeycrmError::Forbidden { .. } => "forbidden",
            KeycrmError::NotFound { .. } => "not_found",
            KeycrmError::BadRequest { .. } => "bad_request",
            KeycrmError::Validation { .. } => "validation",
            KeycrmError::RateLimited { .. } => "rate_limited",
            KeycrmError::Transient { .. } => "transient",
            KeycrmError::Protocol { .. } => "protocol",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_message_names_the_fields() {
        let mut errors = BTreeMap::new();
        errors.insert("buyer.phone".to_string(), vec!["invalid".to_string()]);
        errors.insert("source_id".to_string(), vec!["required".to_string()]);
        let e = KeycrmError::Validation {
            message: "The given data was invalid.".into(),
            errors,
        };
        assert_eq!(
            e.to_string(),
            "KeyCRM validation failed: The given data was invalid. (buyer.phone: invalid, source_id: required)"
        );
        assert!(!e.is_retryable());
        assert_eq!(e.kind(), "validation");
    }

    #[test]
    fn retryable_classes() {
        assert!(KeycrmError::RateLimited {
            retry_after: Duration::from_secs(3)
        }
        .is_retryable());
        assert!(KeycrmError::Transient {
            status: Some(502),
            detail: "bad gateway".into(),
            maybe_committed: false
        }
        .is_retryable());
        assert!(!KeycrmError::Unauthorized.is_retryable());
        assert!(!KeycrmError::NotFound {
            what: "order 1".into()
        }
        .is_retryable());
    }
}
