//! No log level writes a KeyCRM key: a connect, a key replacement and a read of the key
//! through the real Secrets Manager adapter (on the emulator) with the production log set-up
//! (`runtime::telemetry::subscriber`) at the most verbose `RUST_LOG` an operator could set,
//! every line captured.
//!
//! The AWS SDK redacts request bodies in its TRACE lines by default, but that default is an
//! environment switch away (`LOG_SIGNABLE_BODY`, `LOG_SENSITIVE_BODIES`) and has changed between
//! SDK versions; this test turns the SDK's own redaction off, so only the connector's caps
//! stand between a `CreateSecret` body and the log.
//!
//! One test per binary, so this file stays outside the shared `tests/tests/it` binary: it
//! installs the process's global subscriber (the production set-up, on a multi-thread runtime
//! whose workers a thread-scoped capture would not see) and sets process-wide variables that
//! turn the SDK's redaction off before any other thread exists — in a shared binary they would
//! race the other tests' threads and change what those tests log.

use admin_api::{AdminApi, AdminConfig, TokenSigner};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use e2e_tests::emulator;
use e2e_tests::logs::LogBuf;
use keycrm::{ClientConfig, LocalRateGate, RateBudget};
use keycrm_sim::{AccountSpec, SimConfig};
use runtime::telemetry::{self, Format};
use runtime::KeycrmClients;
use serde_json::{json, Value};
use shop::MemoryShop;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use store::{ConnectionStore, SecretStore, SecretsManager};
use tower::ServiceExt;

const KEY_1: &str = "kc-trace-test-1-8e41c0d7b2a94f6e9d3c5b7a1f0e2d4c";
const KEY_2: &str = "kc-trace-test-2-3b5d7f9a1c2e4f6a8b0d2c4e6f8a0b1c";

async fn call(
    router: &axum::Router,
    token: &str,
    method: &str,
    body: Option<Value>,
) -> (StatusCode, String) {
    let mut req = Request::builder()
        .method(method)
        .uri("/v1/shops/shop-trace/connection")
        .header("authorization", format!("Bearer {token}"));
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let req = req
        .body(
            body.map(|b| Body::from(b.to_string()))
                .unwrap_or_else(Body::empty),
        )
        .unwrap();
    let resp = router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&bytes).to_string())
}

#[test]
fn a_connect_at_trace_level_writes_no_key_to_the_log() {
    // The SDK's own redaction off (set before any other thread runs): the caps alone must
    // keep the key out.
    std::env::set_var("LOG_SIGNABLE_BODY", "true");
    std::env::set_var("LOG_SENSITIVE_BODIES", "true");
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(connect_and_replace_at_trace());
}

async fn connect_and_replace_at_trace() {
    let buf = Arc::new(Mutex::new(Vec::new()));
    // Everything at TRACE, and the SDK's and HTTP crates' own targets asked for by name (a
    // more specific directive than the caps' prefixes, and a span filter).
    let spec = "trace,aws_sigv4::http_request=trace,aws_smithy_runtime=trace,\
                aws_sdk_secretsmanager=trace,hyper=trace,reqwest=trace,lambda_runtime=trace,\
                [send_operation]=trace";
    tracing::subscriber::set_global_default(telemetry::subscriber(
        Some(spec),
        Format::Json,
        LogBuf(buf.clone()),
    ))
    .expect("one global subscriber");
    tracing::trace!("log capture check");

    emulator::require();
    let sim = keycrm_sim::start(
        SimConfig {
            accounts: vec![
                AccountSpec {
                    api_key: KEY_1.into(),
                    seed: 31,
                    products: 2,
                    pipelines_enabled: false,
                },
                AccountSpec {
                    api_key: KEY_2.into(),
                    seed: 32,
                    products: 2,
                    pipelines_enabled: false,
                },
            ],
            rate_limit_per_minute: 60,
            time_scale: 60.0,
            public_base_url: None,
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let table = emulator::table().await;
    let secrets = SecretsManager::from_env().await;
    let (sync_q, _) = emulator::queue(None).await;
    let (order_q, _) = emulator::queue(None).await;
    let gate = Arc::new(LocalRateGate::new(RateBudget::keycrm_scaled(60.0)));
    let clients = Arc::new(KeycrmClients::new(
        Arc::new(secrets.clone()),
        gate,
        ClientConfig {
            timeout: Duration::from_secs(5),
            ..ClientConfig::default()
        },
    ));
    let signer = TokenSigner::new("trace-test-signing-key-0123456789abcdef").unwrap();
    let table_arc = Arc::new(table.clone());
    let mut config = AdminConfig::new(
        format!("{}/keycrm/", emulator::unique("trace")),
        sim.base_url(),
    );
    config.public_base_url = Some("https://hooks.example.test".into());
    let router = admin_api::router(AdminApi {
        config,
        signer: signer.clone(),
        connections: table_arc.clone(),
        secrets: Arc::new(secrets.clone()),
        journal: table_arc.clone(),
        cache: table_arc.clone(),
        ledger: table_arc.clone(),
        sync: table_arc.clone(),
        clients,
        shop: Arc::new(MemoryShop::new()),
        order_queue: Arc::new(order_q),
        sync_queue: Arc::new(sync_q),
        token_key: store::TokenKey::generate(),
        links: table_arc.clone(),
    });
    let token = signer.mint("shop-trace", 600);

    // Connect (CreateSecret), replace the key (PutSecretValue), read it back (GetSecretValue).
    let (status, body) = call(&router, &token, "PUT", Some(json!({"api_key": KEY_1}))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // The webhook URL's token is shown to the merchant, never logged.
    let answer: Value = serde_json::from_str(&body).expect("JSON answer");
    let url_token = answer["webhooks"]["orders"]["url"]
        .as_str()
        .and_then(|u| u.rsplit('/').next())
        .expect("the orders URL is shown")
        .to_string();
    let (status, body) = call(&router, &token, "PUT", Some(json!({"api_key": KEY_2}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let conn = ConnectionStore::get_by_shop(&table, "shop-trace")
        .await
        .unwrap()
        .expect("connected");
    let stored = secrets
        .get(&conn.secret_name)
        .await
        .unwrap()
        .expect("the key is stored");
    assert_eq!(
        stored.expose(),
        KEY_2,
        "the real Secrets Manager adapter holds the key"
    );

    let text = String::from_utf8_lossy(&buf.lock().unwrap()).to_string();
    // The capture sees the connector's own lines at TRACE and DEBUG levels and the SDK's INFO.
    assert!(text.contains("admin_api"), "the log capture is not working");
    assert!(
        text.contains("log capture check"),
        "TRACE lines were not captured: the spec was not applied"
    );
    for key in [KEY_1, KEY_2] {
        assert!(!text.contains(key), "a KeyCRM key reached the log");
    }
    assert!(
        !text.contains(&url_token),
        "a webhook URL token reached the log"
    );
    // And the caps held: no SDK or HTTP crate line below INFO.
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or(Value::Null);
        let level = v["level"].as_str().unwrap_or("");
        let target = v["target"].as_str().unwrap_or("");
        if matches!(level, "DEBUG" | "TRACE") {
            for capped in telemetry::CAPPED_TARGETS {
                assert!(!target.starts_with(capped), "{target} logged at {level}");
            }
        }
    }
}
