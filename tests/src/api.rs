//! Assertions on the admin API's error answers: `{"error": {"code": ..., "message": ...,
//! "fields": [...]}}`.

use axum::http::StatusCode;
use serde_json::Value;

/// The `error.code` of an error body ("" when there is none).
pub fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

/// The answer is the error `code` with `status`, and none of `not_echoed` (keys, tokens, the
/// refused values) appears anywhere in it.
#[track_caller]
pub fn assert_api_error(
    status: StatusCode,
    body: &Value,
    want_status: StatusCode,
    code: &str,
    not_echoed: &[&str],
) {
    assert_eq!(
        (status, error_code(body)),
        (want_status, code),
        "unexpected answer: {body}"
    );
    let text = body.to_string();
    for value in not_echoed {
        assert!(
            !text.contains(value),
            "the {code} answer echoes a value it was given"
        );
    }
}
