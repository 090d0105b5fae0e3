//! The status-apply binary against a fake Lambda Runtime API: a start that cannot finish is
//! reported to `/init/error`; an event of no known shape is an `InvalidInput` error.

use runtime::lambda::fake_api::{self, SHOP_API_TOKEN_SECRET};

const BINARY: &str = env!("CARGO_BIN_EXE_status-apply");

const ENV: [(&str, &str); 4] = [
    ("TABLE_NAME", "shop-keycrm-test"),
    ("SHOP_API_BASE_URL", "http://127.0.0.1:9/api"),
    // Read at start, from the fake's Secrets Manager.
    ("SHOP_API_TOKEN_SECRET_ARN", SHOP_API_TOKEN_SECRET),
    ("STATUS_QUEUE_URL", "http://127.0.0.1:9/000000000000/status"),
];

#[tokio::test]
async fn a_missing_variable_is_reported_to_init_error() {
    fake_api::assert_missing_variable_is_an_init_error(BINARY, &ENV, "SHOP_API_BASE_URL").await;
}

#[tokio::test]
async fn an_event_of_no_known_shape_is_invalid_input() {
    fake_api::assert_unknown_events_are_invalid_input(
        BINARY,
        &ENV,
        vec![
            serde_json::json!({"kind": "tick"}),
            serde_json::json!([1, 2]),
        ],
    )
    .await;
}

#[tokio::test]
async fn an_unreadable_secret_is_reported_to_init_error_without_its_value() {
    let env = fake_api::with_var(&ENV, "SHOP_API_TOKEN_SECRET_ARN", "test/no-such-secret");
    let expected = "reading the platform secret failed";
    fake_api::assert_init_error(BINARY, &env, "SecretUnavailable", expected).await;
}
