//! The stock-apply binary against a fake Lambda Runtime API: a start that cannot finish is
//! reported to `/init/error`; an event of no known shape is an `InvalidInput` error.

use runtime::lambda::fake_api::{self, SHOP_API_TOKEN_SECRET};

const BINARY: &str = env!("CARGO_BIN_EXE_stock-apply");

const ENV: [(&str, &str); 4] = [
    ("TABLE_NAME", "shop-keycrm-test"),
    ("STOCK_QUEUE_URL", "http://127.0.0.1:9/000000000000/stock"),
    ("SHOP_API_BASE_URL", "http://127.0.0.1:9/api"),
    ("SHOP_API_TOKEN_SECRET_ARN", SHOP_API_TOKEN_SECRET),
];

#[tokio::test]
async fn a_missing_variable_is_reported_to_init_error() {
    fake_api::assert_missing_variable_is_an_init_error(BINARY, &ENV, "STOCK_QUEUE_URL").await;
}

#[tokio::test]
async fn an_invalid_variable_is_reported_with_its_reason() {
    let api = fake_api::FakeRuntimeApi::start(vec![]).await.unwrap();
    let mut env = ENV.to_vec();
    env.push(("STOCK_WINDOW_SECS", "soon"));
    let mut f = fake_api::RunningFunction::spawn(BINARY, &api, &env).unwrap();
    let (status, output) = f
        .exit_within(std::time::Duration::from_secs(60))
        .await
        .expect("exits");
    assert!(!status.success(), "{output}");
    let report = &api.recorded().init_errors[0];
    assert_eq!(report.body["errorType"], "InvalidConfiguration");
    assert_eq!(
        report.body["errorMessage"],
        "environment variable STOCK_WINDOW_SECS is invalid: invalid digit found in string"
    );
}

#[tokio::test]
async fn an_event_of_no_known_shape_is_invalid_input() {
    fake_api::assert_unknown_events_are_invalid_input(
        BINARY,
        &ENV,
        vec![serde_json::json!({"kind": "tick"})],
    )
    .await;
}
