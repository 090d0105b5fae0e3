//! The webhook binary against a fake Lambda Runtime API: a start that cannot finish is
//! reported to `/init/error`; an event of no known shape is an `InvalidInput` error.

use runtime::lambda::fake_api::{self, TOKEN_KEY_SECRET};

const BINARY: &str = env!("CARGO_BIN_EXE_webhook");

const ENV: [(&str, &str); 4] = [
    ("TABLE_NAME", "shop-keycrm-test"),
    ("STATUS_QUEUE_URL", "http://127.0.0.1:9/000000000000/status"),
    ("STOCK_QUEUE_URL", "http://127.0.0.1:9/000000000000/stock"),
    // Read at start, from the fake's Secrets Manager.
    ("WEBHOOK_TOKEN_KEY_SECRET_ARN", TOKEN_KEY_SECRET),
];

#[tokio::test]
async fn a_missing_variable_is_reported_to_init_error() {
    fake_api::assert_missing_variable_is_an_init_error(
        BINARY,
        &ENV,
        "WEBHOOK_TOKEN_KEY_SECRET_ARN",
    )
    .await;
}

#[tokio::test]
async fn an_event_of_no_known_shape_is_invalid_input() {
    fake_api::assert_unknown_events_are_invalid_input(
        BINARY,
        &ENV,
        vec![
            serde_json::json!({"Records": []}),
            serde_json::json!({"path": "/"}),
        ],
    )
    .await;
}
