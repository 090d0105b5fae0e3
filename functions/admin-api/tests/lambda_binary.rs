//! The admin-api binary against a fake Lambda Runtime API: a start that cannot finish is
//! reported to `/init/error`; an event of no known shape is an `InvalidInput` error.

use runtime::lambda::fake_api::{
    self, ADMIN_TOKEN_SECRET, SHOP_API_TOKEN_SECRET, TOKEN_KEY_SECRET,
};

const BINARY: &str = env!("CARGO_BIN_EXE_admin-api");

const ENV: [(&str, &str); 8] = [
    ("TABLE_NAME", "shop-keycrm-test"),
    ("SECRET_PREFIX", "test/keycrm/"),
    ("ORDER_QUEUE_URL", "http://127.0.0.1:9/000000000000/orders"),
    (
        "SYNC_QUEUE_URL",
        "http://127.0.0.1:9/000000000000/sync-jobs",
    ),
    ("SHOP_API_BASE_URL", "http://127.0.0.1:9/api"),
    // Read at start, from the fake's Secrets Manager.
    ("WEBHOOK_TOKEN_KEY_SECRET_ARN", TOKEN_KEY_SECRET),
    ("ADMIN_TOKEN_SECRET_ARN", ADMIN_TOKEN_SECRET),
    ("SHOP_API_TOKEN_SECRET_ARN", SHOP_API_TOKEN_SECRET),
];

#[tokio::test]
async fn a_missing_variable_is_reported_to_init_error() {
    fake_api::assert_missing_variable_is_an_init_error(BINARY, &ENV, "SECRET_PREFIX").await;
}

#[tokio::test]
async fn an_invalid_setting_is_reported_with_its_variable() {
    let env = fake_api::with_var(&ENV, "PAGE_ALLOWED_ORIGINS", "not a url");
    let expected = "environment variable PAGE_ALLOWED_ORIGINS is invalid: ";
    fake_api::assert_init_error(BINARY, &env, "InvalidConfiguration", expected).await;
}

#[tokio::test]
async fn an_event_of_no_known_shape_is_invalid_input() {
    fake_api::assert_unknown_events_are_invalid_input(
        BINARY,
        &ENV,
        vec![
            serde_json::json!({"Records": []}),
            serde_json::json!({"kind": "tick"}),
        ],
    )
    .await;
}
