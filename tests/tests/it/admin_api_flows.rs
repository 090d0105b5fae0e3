//! The admin API's flows through its HTTP router, against the KeyCRM simulator and
//! DynamoDB, SQS and Secrets Manager on the emulator. Every response is validated against
//! `docs/admin-api.openapi.yaml`, and every response and log line is searched for the raw
//! API keys the test uses.

use admin_api::{AdminApi, AdminConfig, TokenSigner};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use e2e_tests::api::assert_api_error;
use e2e_tests::emulator;
use e2e_tests::logs::LogCapture;
use e2e_tests::openapi::OpenApi;
use keycrm::{ClientConfig, LocalRateGate, RateBudget};
use keycrm_sim::{AccountSpec, SimConfig, SimHandle};
use queue::{Queue, SqsQueue};
use runtime::KeycrmClients;
use serde_json::{json, Value};
use shop::{MemoryShop, NamedItem, ShopAddon, ShopReference};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use store::{
    ConnectionStore, DynamoTable, LedgerState, OrderLedger, SecretStore, SecretsManager,
    StatusJournal, SyncKind, SyncStore, Target,
};
use tower::ServiceExt;

// Distinctive keys: if any of them shows up in a response or a log line, the test fails.
const KEY_A: &str = "kc-admin-test-a-5f0c2e9d8b7a41f3a6c2d4e8b1f7a9c3";
const KEY_B: &str = "kc-admin-test-b-0d9e8c7b6a5f4e3d2c1b0a9f8e7d6c5b";
const KEY_NOPIPE: &str = "kc-admin-test-c-7a1b2c3d4e5f60718293a4b5c6d7e8f9";
const BAD_KEY: &str = "kc-admin-test-bad-93e1d2c4b5a6f7089a1b2c3d4e5f6071";
const ALL_KEYS: [&str; 4] = [KEY_A, KEY_B, KEY_NOPIPE, BAD_KEY];

// ------------------------------------------------------------------------------ log capture

// Every log line of the test, at every level and from every crate (SDKs, HTTP client,
// simulator included): `Env` holds a capture scoped to the test's thread (`LogCapture`), so
// the other tests of the binary neither add to it nor get their logging changed.

fn assert_no_key_in_logs(logs: &LogCapture) {
    let text = logs.text();
    // The capture sees our lines and the SDK's request traces (where a secret would show).
    assert!(text.contains("admin_api"), "the log capture is not working");
    assert!(
        text.contains("rpc.service=\"Secrets Manager\""),
        "SDK traces are not captured"
    );
    for k in ALL_KEYS {
        assert!(!text.contains(k), "an API key reached the logs");
    }
}

// ------------------------------------------------------------------------------ harness

struct Env {
    logs: LogCapture,
    router: axum::Router,
    signer: TokenSigner,
    sim: SimHandle,
    table: DynamoTable,
    secrets: SecretsManager,
    prefix: String,
    sync_q: SqsQueue,
    order_q: SqsQueue,
    spec: OpenApi,
    dead_base: String,
    token_key: store::TokenKey,
}

struct Resp {
    status: StatusCode,
    body: Value,
}

impl Resp {
    fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
    fn fields(&self) -> Vec<String> {
        self.body["error"]["fields"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|f| f["field"].as_str().unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn shop_reference() -> ShopReference {
    let n = |id: &str| NamedItem {
        id: id.into(),
        name: id.to_uppercase(),
    };
    ShopReference {
        order_statuses: vec![n("new"), n("paid"), n("shipped"), n("done"), n("cancelled")],
        order_addons: vec![
            ShopAddon {
                id: "gift".into(),
                name: "Gift wrap".into(),
                addon_type: "checkbox".into(),
            },
            ShopAddon {
                id: "note".into(),
                name: "Note".into(),
                addon_type: "text".into(),
            },
        ],
        payment_methods: vec![n("cod"), n("card")],
        delivery_methods: vec![n("np"), n("pickup")],
        currency: "UAH".into(),
    }
}

async fn env() -> Env {
    let logs = LogCapture::trace();
    emulator::require();
    let sim = keycrm_sim::start(
        SimConfig {
            accounts: vec![
                AccountSpec {
                    api_key: KEY_A.into(),
                    seed: 11,
                    products: 4,
                    pipelines_enabled: true,
                },
                AccountSpec {
                    api_key: KEY_B.into(),
                    seed: 12,
                    products: 4,
                    pipelines_enabled: true,
                },
                AccountSpec {
                    api_key: KEY_NOPIPE.into(),
                    seed: 13,
                    products: 4,
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
    let prefix = format!("{}/keycrm/", emulator::unique("admin"));
    let (sync_q, _) = emulator::queue(None).await;
    let (order_q, _) = emulator::queue(None).await;
    let shop = Arc::new(MemoryShop::new());
    for s in ["shop-a", "shop-b", "shop-c"] {
        shop.set_reference(s, shop_reference());
    }
    // A port nothing listens on: KeyCRM "unreachable".
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_base = format!("http://{}/v1", dead.local_addr().unwrap());
    drop(dead);

    let signer = TokenSigner::new("admin-e2e-signing-key-0123456789abcdef").unwrap();
    let token_key = store::TokenKey::generate();
    let gate = Arc::new(LocalRateGate::new(RateBudget::keycrm_scaled(60.0)));
    let template = ClientConfig {
        timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(1),
        ..ClientConfig::default()
    };
    let clients = Arc::new(KeycrmClients::new(
        Arc::new(secrets.clone()),
        gate,
        template,
    ));
    let mut config = AdminConfig::new(prefix.clone(), sim.base_url());
    config.allowed_keycrm_base_urls = vec![dead_base.clone()];
    config.public_base_url = Some("https://hooks.example.test".into());
    // A disconnect's cleanup job is visible at once (the tests run it themselves).
    config.cleanup_delay = Duration::ZERO;
    let table_arc = Arc::new(table.clone());
    let api = AdminApi {
        config,
        signer: signer.clone(),
        token_key: token_key.clone(),
        connections: table_arc.clone(),
        secrets: Arc::new(secrets.clone()),
        journal: table_arc.clone(),
        cache: table_arc.clone(),
        ledger: table_arc.clone(),
        sync: table_arc.clone(),
        links: table_arc.clone(),
        clients,
        shop,
        order_queue: Arc::new(order_q.clone()),
        sync_queue: Arc::new(sync_q.clone()),
    };
    let spec = OpenApi::load(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/admin-api.openapi.yaml"),
    )
    .expect("the admin API's OpenAPI file");
    Env {
        logs,
        router: admin_api::router(api),
        signer,
        sim,
        table,
        secrets,
        prefix,
        sync_q,
        order_q,
        spec,
        dead_base,
        token_key,
    }
}

impl Env {
    fn token(&self, shop: &str) -> String {
        self.signer.mint(shop, 600)
    }

    /// Calls `method template` (with `{shop_id}` etc. filled from `vars`) through the router,
    /// then checks the answer: no key in it, and it matches the OpenAPI file for that route
    /// and status.
    async fn call_with(
        &self,
        method: &str,
        template: &str,
        vars: &[(&str, &str)],
        query: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Resp {
        let mut path = template.to_string();
        for (k, v) in vars {
            path = path.replace(&format!("{{{k}}}"), v);
        }
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{path}{query}"));
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req
            .body(
                body.map(|b| Body::from(b.to_string()))
                    .unwrap_or_else(Body::empty),
            )
            .unwrap();
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = format!("{:?}", resp.headers());
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 24)
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&bytes).to_string();
        for k in ALL_KEYS {
            assert!(
                !text.contains(k) && !headers.contains(k),
                "an API key reached a response of {method} {template}"
            );
        }
        let op = &self.spec.doc()["paths"][template][method.to_ascii_lowercase()];
        assert!(
            op.is_object(),
            "{method} {template} is not in the OpenAPI file"
        );
        assert!(
            op["responses"][status.as_str()].is_object(),
            "{method} {template} answered {status}, which the OpenAPI file does not document: {text}"
        );
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("JSON body")
        };
        if status != StatusCode::NO_CONTENT {
            let report = self
                .spec
                .validate_response(template, method, status.as_u16(), &body, &[])
                .unwrap();
            assert!(
                report.is_ok(),
                "{method} {template} {status} does not match the OpenAPI file: {:?}\n{text}",
                report
                    .violations
                    .iter()
                    .map(|v| v.to_string())
                    .collect::<Vec<_>>()
            );
        }
        Resp { status, body }
    }

    async fn call(&self, method: &str, suffix: &str, shop: &str, body: Option<Value>) -> Resp {
        let template = format!("/v1/shops/{{shop_id}}/connection{suffix}");
        self.call_with(
            method,
            &template,
            &[("shop_id", shop)],
            "",
            Some(&self.token(shop)),
            body,
        )
        .await
    }

    async fn connect(&self, shop: &str, key: &str) -> Resp {
        let r = self
            .call("PUT", "", shop, Some(json!({ "api_key": key })))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r
    }

    async fn stored(&self, shop: &str) -> Option<store::Connection> {
        ConnectionStore::get_by_shop(&self.table, shop)
            .await
            .unwrap()
    }

    /// Secret names under this test's prefix (Secrets Manager on the emulator).
    async fn secret_names(&self) -> Vec<String> {
        let conf = aws_config_like().await;
        let client = aws_sdk_secretsmanager::Client::from_conf(conf);
        // Every page: the emulator holds the secrets of earlier runs too.
        let mut names = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let out = client
                .list_secrets()
                .max_results(100)
                .set_next_token(next.take())
                .send()
                .await
                .unwrap();
            names.extend(
                out.secret_list()
                    .iter()
                    .filter_map(|s| s.name())
                    .filter(|n| n.starts_with(&self.prefix))
                    .map(str::to_string),
            );
            match out.next_token() {
                Some(t) if !t.is_empty() => next = Some(t.to_string()),
                _ => return names,
            }
        }
    }

    /// What the real webhook receiver makes of a token: the URL kind it opens, or `None`
    /// (the receiver answers 404).
    async fn webhook_accepts(&self, conn_id: &str, token: &str) -> Option<store::WebhookKind> {
        let receiver = webhook::Receiver::new(
            Arc::new(self.table.clone()),
            Arc::new(self.order_q.clone()),
            Arc::new(self.table.clone()),
            self.token_key.clone(),
        );
        match receiver.authenticate(conn_id, token).await {
            Ok((_, kind)) => Some(kind),
            Err(reply) => {
                assert_eq!(reply.status, StatusCode::NOT_FOUND);
                None
            }
        }
    }

    async fn partition(&self, pk: &str) -> Vec<String> {
        let out = self
            .table
            .client
            .query()
            .table_name(&self.table.name)
            .key_condition_expression("pk = :p")
            .expression_attribute_values(
                ":p",
                aws_sdk_dynamodb::types::AttributeValue::S(pk.into()),
            )
            .send()
            .await
            .unwrap();
        out.items()
            .iter()
            .filter_map(|i| i.get("sk").and_then(|v| v.as_s().ok()).cloned())
            .collect()
    }
}

async fn aws_config_like() -> aws_sdk_secretsmanager::Config {
    let endpoint = emulator::require();
    aws_sdk_secretsmanager::Config::builder()
        .behavior_version(aws_sdk_secretsmanager::config::BehaviorVersion::latest())
        .region(aws_sdk_secretsmanager::config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_secretsmanager::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .build()
}

fn valid_settings(category: i64) -> Value {
    json!({
        "sync_products": true,
        "sync_categories": true,
        "category_filter": [category],
        "match_key": "sku",
        "new_products": "hide",
        "existing_products": "update",
        "missing_products": "make_unavailable",
        "vanish_guard": 0.25,
        "order_sync": "orders",
        "source_id": 1,
        "order_statuses": {
            "from_keycrm": [
                {"keycrm_status_id": 1, "shop_status": "new"},
                {"keycrm_status_id": 7, "shop_status": "shipped"},
                {"keycrm_status_id": 12, "shop_status": "done"},
                {"keycrm_status_id": 19, "shop_status": "cancelled"}
            ],
            "to_keycrm": [
                {"shop_status": "new", "keycrm_status_id": 1},
                {"shop_status": "shipped", "keycrm_status_id": 7},
                {"shop_status": "done", "keycrm_status_id": 12},
                {"shop_status": "cancelled", "keycrm_status_id": 19}
            ]
        },
        "addon_fields": [{"addon_id": "note", "field_uuid": "OR_1001"}],
        "payment_map": [
            {"shop_method": "cod", "keycrm_method_id": 1},
            {"shop_method": "card", "keycrm_method_id": 2}
        ],
        "delivery_map": [{"shop_method": "np", "keycrm_service_id": 1}]
    })
}

fn token_of(url: &str) -> String {
    url.rsplit('/').next().unwrap().to_string()
}

// -------------------------------------------------------------------------------- tests

#[tokio::test]
async fn a_bad_key_or_an_unreachable_keycrm_stores_nothing() {
    let e = env().await;

    let r = e
        .call("PUT", "", "shop-a", Some(json!({ "api_key": BAD_KEY })))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.code(), "keycrm_key_rejected");
    assert_eq!(r.body["error"]["message"], "KeyCRM rejected this API key");
    assert_eq!(r.fields(), vec!["api_key"]);

    let r = e
        .call(
            "PUT",
            "",
            "shop-a",
            Some(json!({ "api_key": KEY_A, "keycrm_base_url": e.dead_base })),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    assert_eq!(r.code(), "keycrm_unreachable");
    assert_ne!(r.body["error"]["message"], "KeyCRM rejected this API key");

    // The key would be sent nowhere but to allowed KeyCRM addresses.
    let r = e
        .call(
            "PUT",
            "",
            "shop-a",
            Some(json!({ "api_key": KEY_A, "keycrm_base_url": "http://169.254.169.254/v1" })),
        )
        .await;
    assert_eq!(
        (r.status, r.fields()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            vec!["keycrm_base_url".to_string()]
        )
    );

    let r = e
        .call("PUT", "", "shop-a", Some(json!({ "api_key": "  " })))
        .await;
    assert_eq!(
        (r.status, r.fields()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            vec!["api_key".to_string()]
        )
    );

    // A key pasted into the wrong field is refused without being echoed.
    let r = e
        .call(
            "PUT",
            "",
            "shop-a",
            Some(json!({ "api_key": KEY_A, "active": BAD_KEY })),
        )
        .await;
    assert_eq!(
        (r.status, r.fields()),
        (StatusCode::UNPROCESSABLE_ENTITY, vec!["active".to_string()])
    );

    assert!(e.stored("shop-a").await.is_none());
    assert!(e.secret_names().await.is_empty(), "no secret was stored");
    let r = e.call("GET", "", "shop-a", None).await;
    assert_api_error(
        r.status,
        &r.body,
        StatusCode::NOT_FOUND,
        "not_connected",
        &ALL_KEYS,
    );
    assert_no_key_in_logs(&e.logs);
}

#[tokio::test]
async fn connect_show_and_replace_the_key() {
    let e = env().await;
    let r = e.connect("shop-a", KEY_A).await;
    let id = r.body["id"].as_str().unwrap().to_string();
    assert_eq!(r.body["shop_id"], "shop-a");
    assert_eq!(r.body["active"], true);
    assert_eq!(
        r.body["key_mask"],
        format!("••••{}", &KEY_A[KEY_A.len() - 4..])
    );
    assert_eq!(r.body["version"], 1);
    assert_eq!(r.body["status"]["state"], "active");
    let url = r.body["webhooks"]["orders"]["url"].as_str().unwrap();
    assert!(url.starts_with(&format!(
        "https://hooks.example.test/v1/webhooks/keycrm/{id}/"
    )));
    assert!(token_of(url).len() >= 22, "at least 128 bits of token");
    assert_eq!(
        r.body["webhooks"]["orders"]["event"],
        "order.change_order_status"
    );
    assert!(r.body["webhooks"]["cards"].is_null());

    // Stored: the key in Secrets Manager only; the table holds the mask, fingerprint and
    // the token's hash, never the key or the token.
    let conn = e.stored("shop-a").await.unwrap();
    assert_eq!(conn.secret_name, format!("{}{id}", e.prefix));
    assert_eq!(
        e.secrets
            .get(&conn.secret_name)
            .await
            .unwrap()
            .unwrap()
            .expose(),
        KEY_A
    );
    let raw_items = format!(
        "{:?}",
        e.table
            .client
            .query()
            .table_name(&e.table.name)
            .key_condition_expression("pk = :p")
            .expression_attribute_values(
                ":p",
                aws_sdk_dynamodb::types::AttributeValue::S(format!("CONN#{id}"))
            )
            .send()
            .await
            .unwrap()
            .items()
    );
    assert!(!raw_items.contains(KEY_A) && !raw_items.contains(&token_of(url)));
    // Only a generation is stored; the token derives from the key in Secrets Manager.
    assert_eq!(conn.webhook_generations.orders, 1);
    assert!(conn.webhook_tokens.orders.is_none());
    assert_eq!(
        token_of(url),
        store::tokens::derive(&e.token_key, &id, store::WebhookKind::Orders, 1)
    );

    // Reading it back: the mask, and the same URL (it stays visible, «Скопіювати»).
    let r = e.call("GET", "", "shop-a", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["webhooks"]["orders"]["url"], url);
    assert_eq!(r.body["webhooks"]["orders"]["rotate_to_show"], false);
    assert_eq!(
        r.body["webhooks"]["orders"]["url_masked"],
        format!("https://hooks.example.test/v1/webhooks/keycrm/{id}/••••")
    );

    // A second connect replaces the key (validated first); a bad one changes nothing.
    let r = e
        .call("PUT", "", "shop-a", Some(json!({ "api_key": BAD_KEY })))
        .await;
    assert_eq!(r.code(), "keycrm_key_rejected");
    assert_eq!(
        e.secrets
            .get(&conn.secret_name)
            .await
            .unwrap()
            .unwrap()
            .expose(),
        KEY_A
    );
    let r = e
        .call("PUT", "", "shop-a", Some(json!({ "api_key": KEY_B })))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["id"], id.as_str(), "same connection");
    assert_eq!(
        r.body["key_mask"],
        format!("••••{}", &KEY_B[KEY_B.len() - 4..])
    );
    assert_eq!(
        r.body["webhooks"]["orders"]["url"], url,
        "replacing the key keeps the webhook URL"
    );
    assert_eq!(
        e.secrets
            .get(&conn.secret_name)
            .await
            .unwrap()
            .unwrap()
            .expose(),
        KEY_B
    );
    assert_eq!(e.secret_names().await, vec![conn.secret_name.clone()]);
    let after = e.stored("shop-a").await.unwrap();
    assert_eq!(
        after.key_fingerprint,
        keycrm::ApiKey::new(KEY_B).fingerprint()
    );
    assert_eq!(after.webhook_generations, conn.webhook_generations);
    assert_no_key_in_logs(&e.logs);
}

#[tokio::test]
async fn two_concurrent_connects_leave_one_connection_and_one_secret() {
    let e = env().await;
    let body = || Some(json!({ "api_key": KEY_A }));
    let (a, b) = tokio::join!(
        e.call("PUT", "", "shop-a", body()),
        e.call("PUT", "", "shop-a", body())
    );
    let mut statuses = vec![a.status.as_u16(), b.status.as_u16()];
    statuses.sort();
    // Either the second saw the first (a key replacement) or lost the race (409).
    assert!(
        statuses == vec![200, 201] || statuses == vec![201, 409],
        "{statuses:?}"
    );
    let conn = e.stored("shop-a").await.unwrap();
    assert_eq!(
        e.secret_names().await,
        vec![conn.secret_name],
        "no orphaned secret"
    );
    assert_no_key_in_logs(&e.logs);
}

#[tokio::test]
async fn options_come_from_both_sides_and_are_cached() {
    let e = env().await;
    e.connect("shop-a", KEY_A).await;
    e.sim.reset_stats();
    let r = e.call("GET", "/options", "shop-a", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let first = e.sim.stats().total_requests;
    assert!(first >= 9, "sources, statuses, methods, services, 2 field lists, categories, pipelines + statuses: {first}");
    let k = &r.body["keycrm"];
    assert_eq!(r.body["cached"], false);
    assert!(k["sources"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["id"] == 1));
    assert!(k["order_statuses"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["id"] == 12 && s["group_id"] == 5));
    assert_eq!(k["order_status_groups"].as_array().unwrap().len(), 6);
    assert_eq!(k["pipelines_enabled"], true);
    let p1 = k["pipelines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pipeline"]["id"] == 1)
        .unwrap();
    assert!(p1["statuses"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["id"] == 1001));
    assert!(!k["payment_methods"].as_array().unwrap().is_empty());
    assert!(!k["delivery_services"].as_array().unwrap().is_empty());
    assert!(k["order_fields"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["uuid"].as_str().unwrap().starts_with("OR_")));
    assert!(k["lead_fields"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["uuid"].as_str().unwrap().starts_with("LD_")));
    assert!(k["order_fields"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["type"] == "select" && !f["options"].as_array().unwrap().is_empty()));
    let cats = k["categories"].as_array().unwrap();
    assert!(!cats.is_empty());
    let tree_ids = {
        fn walk(n: &Value, out: &mut Vec<i64>) {
            out.push(n["id"].as_i64().unwrap());
            for c in n["children"].as_array().unwrap() {
                walk(c, out);
            }
        }
        let mut out = Vec::new();
        for n in k["category_tree"].as_array().unwrap() {
            walk(n, &mut out);
        }
        out.sort();
        out
    };
    let mut flat: Vec<i64> = cats.iter().map(|c| c["id"].as_i64().unwrap()).collect();
    flat.sort();
    assert_eq!(tree_ids, flat, "the tree holds every category once");
    assert_eq!(r.body["shop"]["currency"], "UAH");
    assert_eq!(r.body["shop"]["order_addons"][0]["type"], "checkbox");

    // Opening the page again spends nothing; refresh reads afresh.
    let r = e.call("GET", "/options", "shop-a", None).await;
    assert_eq!(r.body["cached"], true);
    assert_eq!(e.sim.stats().total_requests, first);
    let r = e
        .call_with(
            "GET",
            "/v1/shops/{shop_id}/connection/options",
            &[("shop_id", "shop-a")],
            "?refresh=true",
            Some(&e.token("shop-a")),
            None,
        )
        .await;
    assert_eq!(r.body["cached"], false);
    assert_eq!(e.sim.stats().total_requests, 2 * first);
    let r = e
        .call_with(
            "GET",
            "/v1/shops/{shop_id}/connection/options",
            &[("shop_id", "shop-a")],
            "?refresh=maybe",
            Some(&e.token("shop-a")),
            None,
        )
        .await;
    assert_eq!(
        (r.status, r.fields()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            vec!["refresh".to_string()]
        )
    );

    // The cache is per connection: another shop's first read goes to KeyCRM.
    e.connect("shop-c", KEY_NOPIPE).await;
    let r = e.call("GET", "/options", "shop-c", None).await;
    assert_eq!(r.body["cached"], false);
    assert_eq!(r.body["keycrm"]["pipelines_enabled"], false);
    assert_eq!(r.body["keycrm"]["pipelines"], json!([]));
    assert_no_key_in_logs(&e.logs);
}

#[tokio::test]
async fn settings_are_checked_against_live_lists_and_never_half_saved() {
    let e = env().await;
    e.connect("shop-a", KEY_A).await;
    let opts = e.call("GET", "/options", "shop-a", None).await;
    let category = opts.body["keycrm"]["categories"][0]["id"].as_i64().unwrap();

    // Dangling references and an incomplete mapping: refused, every problem named.
    let mut bad = valid_settings(category);
    bad["source_id"] = json!(999);
    bad["order_statuses"]["to_keycrm"][1]["keycrm_status_id"] = json!(777);
    bad["addon_fields"][0]["field_uuid"] = json!("OR_9999");
    bad["payment_map"] = json!([{"shop_method": "cod", "keycrm_method_id": 1}]);
    bad["delivery_map"][0]["keycrm_service_id"] = json!(404);
    bad["category_filter"] = json!([category, 987654]);
    let r = e
        .call(
            "PUT",
            "/settings",
            "shop-a",
            Some(json!({"version": 1, "settings": bad})),
        )
        .await;
    assert_api_error(
        r.status,
        &r.body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_settings",
        &ALL_KEYS,
    );
    let fields = r.fields();
    for f in [
        "source_id",
        "order_statuses.to_keycrm[1].keycrm_status_id",
        "addon_fields[0].field_uuid",
        "payment_map",
        "delivery_map[0].keycrm_service_id",
        "category_filter[1]",
    ] {
        assert!(
            fields.contains(&f.to_string()),
            "{f} not named in {fields:?}"
        );
    }
    let msg = r.body["error"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["field"] == "source_id")
        .unwrap();
    assert!(msg["message"].as_str().unwrap().contains("999"));
    let stored = e.stored("shop-a").await.unwrap();
    assert_eq!(
        (stored.version, stored.settings.clone()),
        (1, mapping::Settings::default()),
        "nothing changed"
    );

    // An unknown setting and a wrong enum value: field-level, nothing saved.
    let mut typo = valid_settings(category);
    typo["sync_prodcts"] = json!(true);
    let r = e
        .call(
            "PUT",
            "/settings",
            "shop-a",
            Some(json!({"version": 1, "settings": typo})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.fields(), vec!["settings.sync_prodcts"]);
    assert!(r.body["error"]["fields"][0]["message"]
        .as_str()
        .unwrap()
        .contains("sync_prodcts"));
    let mut wrong = valid_settings(category);
    wrong["match_key"] = json!("colour");
    let r = e
        .call(
            "PUT",
            "/settings",
            "shop-a",
            Some(json!({"version": 1, "settings": wrong})),
        )
        .await;
    assert_eq!(r.fields(), vec!["settings.match_key"]);
    assert_eq!(e.stored("shop-a").await.unwrap().version, 1);

    // A complete mapping is saved whole.
    let r = e
        .call(
            "PUT",
            "/settings",
            "shop-a",
            Some(json!({"version": 1, "settings": valid_settings(category)})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["version"], 2);
    assert_eq!(
        r.body["settings"]["order_statuses"]["to_keycrm"][3]["keycrm_status_id"],
        19
    );
    let stored = e.stored("shop-a").await.unwrap();
    assert_eq!(stored.settings.keycrm_status_for("done"), Some(12));
    assert_eq!(stored.settings.category_filter, vec![category]);

    // A save based on an old read is refused (optimistic concurrency).
    let r = e
        .call(
            "PUT",
            "/settings",
            "shop-a",
            Some(json!({"version": 1, "settings": valid_settings(category)})),
        )
        .await;
    assert_api_error(
        r.status,
        &r.body,
        StatusCode::CONFLICT,
        "version_conflict",
        &ALL_KEYS,
    );

    // Switching to pipelines: lead fields and pipeline statuses are what count, and the
    // card webhook URL is issued (shown in this answer only).
    let mut pipes = valid_settings(category);
    pipes["order_sync"] = json!("pipelines");
    pipes["card_statuses"] = json!({"from_keycrm": [], "to_keycrm": [
        {"shop_status": "new", "pipeline_id": 1, "status_id": 1001},
        {"shop_status": "done", "pipeline_id": 1, "status_id": 9999}
    ]});
    let r = e
        .call(
            "PUT",
            "/settings",
            "shop-a",
            Some(json!({"version": 2, "settings": pipes.clone()})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let fields = r.fields();
    assert!(
        fields.contains(&"card_statuses.to_keycrm[1].status_id".to_string()),
        "{fields:?}"
    );
    assert!(
        fields.contains(&"addon_fields[0].field_uuid".to_string()),
        "an order field is not a card field: {fields:?}"
    );
    pipes["card_statuses"]["to_keycrm"][1]["status_id"] = json!(1005);
    pipes["addon_fields"] = json!([{"addon_id": "note", "field_uuid": "LD_1001"}]);
    let r = e
        .call(
            "PUT",
            "/settings",
            "shop-a",
            Some(json!({"version": 2, "settings": pipes})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let cards_url = r.body["webhooks"]["cards"]["url"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        r.body["webhooks"]["cards"]["event"],
        "lead.change_lead_status"
    );
    assert!(r.body["webhooks"]["orders"]["url"].is_string());
    let stored = e.stored("shop-a").await.unwrap();
    assert_eq!(
        e.webhook_accepts(&stored.id, &token_of(&cards_url)).await,
        Some(store::WebhookKind::Cards)
    );

    // An account without pipelines refuses the pipelines sync type.
    e.connect("shop-c", KEY_NOPIPE).await;
    let mut p = valid_settings(category);
    p["order_sync"] = json!("pipelines");
    p["category_filter"] = json!([]);
    p["default_pipeline_id"] = json!(1);
    p["addon_fields"] = json!([]);
    let r = e
        .call(
            "PUT",
            "/settings",
            "shop-c",
            Some(json!({"version": 1, "settings": p})),
        )
        .await;
    assert!(r.fields().contains(&"order_sync".to_string()), "{}", r.body);

    // Back to orders: the card URL is withdrawn.
    let r = e
        .call(
            "PUT",
            "/settings",
            "shop-a",
            Some(json!({"version": 3, "settings": valid_settings(category)})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body["webhooks"]["cards"].is_null());
    assert!(e
        .stored("shop-a")
        .await
        .unwrap()
        .webhook_credential(store::WebhookKind::Cards)
        .is_none());
    assert_eq!(
        e.webhook_accepts(&stored.id, &token_of(&cards_url)).await,
        None,
        "the withdrawn card URL opens nothing"
    );
    assert_no_key_in_logs(&e.logs);
}

#[tokio::test]
async fn an_inactive_connection_says_so_and_starts_nothing() {
    let e = env().await;
    e.connect("shop-a", KEY_A).await;
    let cat = e.call("GET", "/options", "shop-a", None).await.body["keycrm"]["categories"][0]["id"]
        .as_i64()
        .unwrap();
    let r = e
        .call(
            "PUT",
            "/settings",
            "shop-a",
            Some(json!({"version": 1, "settings": valid_settings(cat)})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    // (Turning catalog sync on started a full sync: take its job off the queue.)
    assert!(r.body["sync_started"]["run_id"].is_string());
    for m in e
        .sync_q
        .receive(10, Duration::from_secs(1), Duration::from_secs(30))
        .await
        .unwrap()
    {
        e.sync_q.delete(&m.receipt).await.unwrap();
    }

    let r = e
        .call("PATCH", "", "shop-a", Some(json!({"active": false})))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        (r.body["active"].clone(), r.body["status"]["state"].clone()),
        (json!(false), json!("inactive"))
    );
    assert!(
        !e.stored("shop-a").await.unwrap().active,
        "consumers read the flag from the connection"
    );
    let r = e.call("GET", "/status", "shop-a", None).await;
    assert_eq!(r.body["state"], "inactive");
    let msg = r.body["message"].as_str().unwrap();
    assert!(
        msg.contains("no catalog sync")
            && msg.contains("no orders are pushed")
            && msg.contains("webhooks"),
        "{msg}"
    );

    let r = e
        .call("POST", "/sync", "shop-a", Some(json!({"kind": "full"})))
        .await;
    assert_api_error(
        r.status,
        &r.body,
        StatusCode::CONFLICT,
        "connection_inactive",
        &ALL_KEYS,
    );
    let r = e
        .call_with(
            "POST",
            "/v1/shops/{shop_id}/connection/orders/{order_id}/repush",
            &[("shop_id", "shop-a"), ("order_id", "o-1")],
            "",
            Some(&e.token("shop-a")),
            None,
        )
        .await;
    assert_api_error(
        r.status,
        &r.body,
        StatusCode::CONFLICT,
        "connection_inactive",
        &ALL_KEYS,
    );
    assert_eq!(e.sync_q.approximate_len().await.unwrap(), 0);
    assert_eq!(e.order_q.approximate_len().await.unwrap(), 0);

    let r = e
        .call("PATCH", "", "shop-a", Some(json!({"active": true})))
        .await;
    assert_eq!(r.body["status"]["state"], "active");
    assert!(r.body["status"]["message"]
        .as_str()
        .unwrap()
        .contains("pushed as KeyCRM orders"));
    let r = e
        .call("PATCH", "", "shop-a", Some(json!({"enabled": true})))
        .await;
    assert_eq!(
        (r.status, r.fields()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            vec!["enabled".to_string()]
        )
    );
    assert_no_key_in_logs(&e.logs);
}

#[tokio::test]
async fn rotating_tokens_stops_the_old_url_at_once() {
    use store::WebhookKind::{Cards, Orders};
    let e = env().await;
    let r = e.connect("shop-a", KEY_A).await;
    let id = r.body["id"].as_str().unwrap().to_string();
    let old = token_of(r.body["webhooks"]["orders"]["url"].as_str().unwrap());
    assert_eq!(e.webhook_accepts(&id, &old).await, Some(Orders));

    let r = e
        .call("POST", "/webhook-tokens/rotate", "shop-a", None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let new = token_of(r.body["webhooks"]["orders"]["url"].as_str().unwrap());
    assert_ne!(new, old);
    assert_eq!(
        e.webhook_accepts(&id, &old).await,
        None,
        "the old URL stops working at once"
    );
    assert_eq!(e.webhook_accepts(&id, &new).await, Some(Orders));
    assert!(
        r.body["webhooks"]["cards"].is_null(),
        "no card URL outside pipelines"
    );

    let r = e
        .call(
            "POST",
            "/webhook-tokens/rotate",
            "shop-a",
            Some(json!({"kind": "cards"})),
        )
        .await;
    assert_api_error(
        r.status,
        &r.body,
        StatusCode::CONFLICT,
        "cards_webhook_unused",
        &ALL_KEYS,
    );
    let r = e
        .call(
            "POST",
            "/webhook-tokens/rotate",
            "shop-a",
            Some(json!({"kind": "everything"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        e.webhook_accepts(&id, &new).await,
        Some(Orders),
        "refused rotations change nothing"
    );

    // With pipelines: two URLs, each opening its own kind; rotating one leaves the other.
    let cat = e.call("GET", "/options", "shop-a", None).await.body["keycrm"]["categories"][0]["id"]
        .as_i64()
        .unwrap();
    let mut pipes = valid_settings(cat);
    pipes["order_sync"] = json!("pipelines");
    pipes["default_pipeline_id"] = json!(2);
    pipes["addon_fields"] = json!([]);
    let r = e
        .call(
            "PUT",
            "/settings",
            "shop-a",
            Some(json!({"version": 2, "settings": pipes})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let card = token_of(r.body["webhooks"]["cards"]["url"].as_str().unwrap());
    assert_eq!(e.webhook_accepts(&id, &card).await, Some(Cards));
    assert_eq!(e.webhook_accepts(&id, &new).await, Some(Orders));
    let r = e
        .call(
            "POST",
            "/webhook-tokens/rotate",
            "shop-a",
            Some(json!({"kind": "cards"})),
        )
        .await;
    assert_eq!(
        token_of(r.body["webhooks"]["orders"]["url"].as_str().unwrap()),
        new,
        "rotating the card URL leaves the order URL as it was"
    );
    let card2 = token_of(r.body["webhooks"]["cards"]["url"].as_str().unwrap());
    assert_eq!(e.webhook_accepts(&id, &card).await, None);
    assert_eq!(e.webhook_accepts(&id, &card2).await, Some(Cards));
    assert_eq!(e.webhook_accepts(&id, &new).await, Some(Orders));
    let r = e
        .call("POST", "/webhook-tokens/rotate", "shop-a", Some(json!({})))
        .await;
    let (o3, c3) = (
        token_of(r.body["webhooks"]["orders"]["url"].as_str().unwrap()),
        token_of(r.body["webhooks"]["cards"]["url"].as_str().unwrap()),
    );
    assert_eq!(e.webhook_accepts(&id, &new).await, None);
    assert_eq!(e.webhook_accepts(&id, &card2).await, None);
    assert_eq!(e.webhook_accepts(&id, &o3).await, Some(Orders));
    assert_eq!(e.webhook_accepts(&id, &c3).await, Some(Cards));

    // After a disconnect no URL of the connection opens anything.
    assert_eq!(
        e.call("DELETE", "", "shop-a", None).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(e.webhook_accepts(&id, &o3).await, None);
    assert_eq!(e.webhook_accepts(&id, &c3).await, None);
    assert_no_key_in_logs(&e.logs);
}

#[tokio::test]
async fn every_connection_has_a_stock_url_shown_with_the_others_and_rotatable() {
    use store::WebhookKind::{Orders, Stock};
    let e = env().await;
    let r = e.connect("shop-a", KEY_A).await;
    let id = r.body["id"].as_str().unwrap().to_string();
    let orders = token_of(r.body["webhooks"]["orders"]["url"].as_str().unwrap());
    // KeyCRM's stock webhook URL: derived like the others, shown from the start (the
    // merchant may set it up in KeyCRM before switching realtime stock on).
    assert_eq!(r.body["webhooks"]["stock"]["event"], "stock");
    assert_eq!(r.body["webhooks"]["stock"]["rotate_to_show"], false);
    let stock = token_of(r.body["webhooks"]["stock"]["url"].as_str().unwrap());
    assert_ne!(stock, orders);
    assert_eq!(r.body["settings"]["realtime_stock"], false);
    assert_eq!(e.webhook_accepts(&id, &stock).await, Some(Stock));
    assert_eq!(e.webhook_accepts(&id, &orders).await, Some(Orders));

    // realtime stock on and off: the same URL, shown every time
    let cat = e.call("GET", "/options", "shop-a", None).await.body["keycrm"]["categories"][0]["id"]
        .as_i64()
        .unwrap();
    let mut s = valid_settings(cat);
    for (version, on) in [(1, true), (2, false)] {
        s["realtime_stock"] = json!(on);
        let r = e
            .call(
                "PUT",
                "/settings",
                "shop-a",
                Some(json!({"version": version, "settings": s})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.body["settings"]["realtime_stock"], on);
        assert_eq!(
            token_of(r.body["webhooks"]["stock"]["url"].as_str().unwrap()),
            stock
        );
    }
    let view = e.call("GET", "", "shop-a", None).await;
    assert_eq!(
        token_of(view.body["webhooks"]["stock"]["url"].as_str().unwrap()),
        stock
    );

    // rotating the stock URL alone, then everything in use
    let r = e
        .call(
            "POST",
            "/webhook-tokens/rotate",
            "shop-a",
            Some(json!({"kind": "stock"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let stock2 = token_of(r.body["webhooks"]["stock"]["url"].as_str().unwrap());
    assert_eq!(
        token_of(r.body["webhooks"]["orders"]["url"].as_str().unwrap()),
        orders,
        "the orders URL is untouched"
    );
    assert_eq!(e.webhook_accepts(&id, &stock).await, None);
    assert_eq!(e.webhook_accepts(&id, &stock2).await, Some(Stock));
    let r = e
        .call("POST", "/webhook-tokens/rotate", "shop-a", None)
        .await;
    let stock3 = token_of(r.body["webhooks"]["stock"]["url"].as_str().unwrap());
    let orders3 = token_of(r.body["webhooks"]["orders"]["url"].as_str().unwrap());
    assert_eq!(e.webhook_accepts(&id, &stock2).await, None);
    assert_eq!(e.webhook_accepts(&id, &stock3).await, Some(Stock));
    assert_eq!(e.webhook_accepts(&id, &orders3).await, Some(Orders));
    assert_no_key_in_logs(&e.logs);
}

#[tokio::test]
async fn delete_removes_the_key_settings_and_state() {
    let e = env().await;
    let r = e.connect("shop-a", KEY_A).await;
    let id = r.body["id"].as_str().unwrap().to_string();
    e.call("GET", "/options", "shop-a", None).await;
    StatusJournal::count(&e.table, &id, store::Counter::OrdersPushed, 3)
        .await
        .unwrap();
    OrderLedger::claim(
        &e.table,
        &id,
        "o-1",
        Target::Order,
        "h",
        Duration::from_secs(60),
        "{}",
    )
    .await
    .unwrap();
    let conn = e.stored("shop-a").await.unwrap();
    assert!(
        e.partition(&format!("CONN#{id}")).await.len() >= 3,
        "META, STATUS, CACHE#options, ORDER#…"
    );

    let r = e.call("DELETE", "", "shop-a", None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    // The answer comes at once: the connection is marked and its shop freed; the data, then
    // the key, go in the background (the cleanup job on the sync-jobs queue, run here as
    // catalog-sync runs it). See tests/tests/it/connection_delete.rs for the whole lifecycle.
    assert!(
        e.secrets.get(&conn.secret_name).await.unwrap().is_some(),
        "the key is deleted last, by the cleanup"
    );
    assert_eq!(e.partition("SHOP#shop-a").await, Vec::<String>::new());
    let cleanup = e
        .sync_q
        .receive(10, Duration::from_secs(30), Duration::from_millis(200))
        .await
        .unwrap();
    assert_eq!(cleanup.len(), 1, "one cleanup job queued");
    let engine = catalog_sync::Engine::new(
        catalog_sync::Deps {
            connections: Arc::new(e.table.clone()),
            sync: Arc::new(e.table.clone()),
            links: Arc::new(e.table.clone()),
            shop: Arc::new(MemoryShop::new()),
            clients: Arc::new(KeycrmClients::new(
                Arc::new(e.secrets.clone()),
                Arc::new(LocalRateGate::new(RateBudget::keycrm_scaled(60.0))),
                ClientConfig::default(),
            )),
            journal: Arc::new(e.table.clone()),
            jobs: Arc::new(e.sync_q.clone()),
        },
        catalog_sync::Config {
            cleanup_grace: Duration::ZERO,
            ..catalog_sync::Config::default()
        },
    );
    let out = engine
        .on_message(
            &cleanup[0].body,
            std::time::Instant::now() + Duration::from_secs(600),
        )
        .await
        .unwrap();
    assert!(
        matches!(out, catalog_sync::JobOutcome::Finished { ref state, .. } if state == "deleted"),
        "{out:?}"
    );
    assert!(
        e.secrets.get(&conn.secret_name).await.unwrap().is_none(),
        "the key is gone"
    );
    assert!(e.secret_names().await.is_empty());
    assert_eq!(
        e.partition(&format!("CONN#{id}")).await,
        Vec::<String>::new(),
        "settings, journal, ledger, cache gone"
    );
    assert_eq!(e.partition("SHOP#shop-a").await, Vec::<String>::new());
    // What a later webhook or order event finds: no connection, so it is dropped.
    assert!(ConnectionStore::get(&e.table, &id).await.unwrap().is_none());
    let r = e.call("GET", "", "shop-a", None).await;
    assert_eq!(r.code(), "not_connected");
    let r = e.call("GET", "/status", "shop-a", None).await;
    assert_eq!(r.code(), "not_connected");
    let r = e.call("DELETE", "", "shop-a", None).await;
    assert_api_error(
        r.status,
        &r.body,
        StatusCode::NOT_FOUND,
        "not_connected",
        &ALL_KEYS,
    );

    // The shop can connect again: a new connection, new id, fresh state.
    let r = e.connect("shop-a", KEY_A).await;
    assert_ne!(r.body["id"], id.as_str());
    assert_eq!(r.body["status"]["orders_pushed"], 0);
    assert_no_key_in_logs(&e.logs);
}

#[tokio::test]
async fn one_shop_can_never_touch_another_shops_connection() {
    let e = env().await;
    e.connect("shop-a", KEY_A).await;
    e.connect("shop-b", KEY_B).await;
    let before = e.stored("shop-b").await.unwrap();
    let token_a = e.token("shop-a");
    let routes = admin_api::routes();
    assert_eq!(routes.len(), 13);
    for (method, template) in &routes {
        let vars =
            |shop: &'static str| vec![("shop_id", shop), ("run_id", "r-1"), ("order_id", "o-1")];
        let body = match (method.as_str(), template.as_str()) {
            ("PUT", t) if t.ends_with("/connection") => Some(json!({"api_key": KEY_A})),
            ("PUT", _) => Some(json!({"version": 1, "settings": {}})),
            ("PATCH", _) => Some(json!({"active": false})),
            ("POST", t) if t.ends_with("/sync") => Some(json!({"kind": "full", "dry_run": true})),
            _ => None,
        };
        // Shop B has a connection, shop Z has none: the same refusal, byte for byte.
        let to_b = e
            .call_with(
                method,
                template,
                &vars("shop-b"),
                "",
                Some(&token_a),
                body.clone(),
            )
            .await;
        let to_z = e
            .call_with(
                method,
                template,
                &vars("shop-z"),
                "",
                Some(&token_a),
                body.clone(),
            )
            .await;
        assert_eq!(to_b.status, StatusCode::FORBIDDEN, "{method} {template}");
        assert_eq!(to_b.code(), "forbidden");
        assert_eq!(
            to_b.body, to_z.body,
            "{method} {template} tells connected and unconnected shops apart"
        );

        let no_token = e
            .call_with(method, template, &vars("shop-b"), "", None, body.clone())
            .await;
        assert_eq!(no_token.status, StatusCode::UNAUTHORIZED);
        let expired = e
            .signer
            .mint_at("shop-b", chrono::Utc::now().timestamp() - 700, 600);
        let r = e
            .call_with(
                method,
                template,
                &vars("shop-b"),
                "",
                Some(&expired),
                body.clone(),
            )
            .await;
        assert_api_error(
            r.status,
            &r.body,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            &ALL_KEYS,
        );
        let forged = TokenSigner::new("another-platform-key-0123456789abcdef")
            .unwrap()
            .mint("shop-b", 600);
        let r = e
            .call_with(method, template, &vars("shop-b"), "", Some(&forged), body)
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let after = e.stored("shop-b").await.unwrap();
    assert_eq!(after, before, "shop B's connection is untouched");
    assert_eq!(
        e.secrets
            .get(&after.secret_name)
            .await
            .unwrap()
            .unwrap()
            .expose(),
        KEY_B
    );
    assert_eq!(e.sync_q.approximate_len().await.unwrap(), 0);
    assert_no_key_in_logs(&e.logs);
}

#[tokio::test]
async fn sync_now_queues_a_job_and_its_report_can_be_read() {
    let e = env().await;
    let conn_id = e.connect("shop-a", KEY_A).await.body["id"]
        .as_str()
        .unwrap()
        .to_string();
    let get_run = |id: String| {
        let e = &e;
        async move {
            e.call_with(
                "GET",
                "/v1/shops/{shop_id}/connection/runs/{run_id}",
                &[("shop_id", "shop-a"), ("run_id", &id)],
                "",
                Some(&e.token("shop-a")),
                None,
            )
            .await
        }
    };

    // Off in the settings: only a dry run (a preview) is accepted.
    let r = e
        .call("POST", "/sync", "shop-a", Some(json!({"kind": "full"})))
        .await;
    assert_api_error(
        r.status,
        &r.body,
        StatusCode::CONFLICT,
        "sync_disabled",
        &ALL_KEYS,
    );
    let r = e
        .call(
            "POST",
            "/sync",
            "shop-a",
            Some(json!({"kind": "full", "dry_run": true})),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let run_id = r.body["run_id"].as_str().unwrap().to_string();
    assert_eq!(
        r.body["report"],
        format!("/v1/shops/shop-a/connection/runs/{run_id}")
    );
    let msgs = e
        .sync_q
        .receive(10, Duration::from_secs(1), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(msgs.len(), 1);
    let job: store::SyncJob = serde_json::from_str(&msgs[0].body).unwrap();
    assert_eq!(
        job,
        store::SyncJob {
            connection_id: conn_id.clone(),
            kind: SyncKind::Full,
            dry_run: true,
            requested_by: store::RequestedBy::Merchant,
            run_id: Some(run_id.clone()),
        }
    );
    let r = e
        .call("POST", "/sync", "shop-a", Some(json!({"kind": "stock"})))
        .await;
    assert_eq!(
        (r.status, r.fields()),
        (StatusCode::UNPROCESSABLE_ENTITY, vec!["kind".to_string()])
    );

    // The run can be polled at once: queued until catalog-sync starts it.
    let r = get_run(run_id.clone()).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        (r.body["state"].as_str(), r.body["dry_run"].as_bool()),
        (Some("queued"), Some(true))
    );

    // catalog-sync takes the run over (same id, its own start time): one report, its state.
    let mut run = SyncStore::get_run(&e.table, &conn_id, &run_id)
        .await
        .unwrap()
        .unwrap();
    run.state = store::RunState::Completed;
    run.started_at = Some(chrono::Utc::now() + chrono::Duration::seconds(60));
    run.finished_at = Some(chrono::Utc::now() + chrono::Duration::seconds(61));
    run.keycrm_requests = 7;
    run.invocations = 1;
    run.counts.insert("create".into(), 4);
    run.samples.insert(
        "create".into(),
        vec![store::ReportItem {
            keycrm_id: Some(5),
            shop_id: None,
            name: "Mug".into(),
            detail: None,
        }],
    );
    SyncStore::put_run(&e.table, &run).await.unwrap();
    let r = get_run(run_id.clone()).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["state"], "completed");
    assert_eq!(r.body["counts"]["create"], 4);
    assert_eq!(r.body["samples"]["create"][0]["name"], "Mug");

    // Newest first; the earlier run is listed once. (Turning product sync on starts a full
    // run of its own, queued before the price run.)
    let saved = e
        .call(
            "PUT",
            "/settings",
            "shop-a",
            Some(json!({"version": 1, "settings": {"sync_products": true}})),
        )
        .await;
    let auto = saved.body["sync_started"]["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    // While that full run is queued, asking for prices answers with it (it covers prices).
    let r = e
        .call("POST", "/sync", "shop-a", Some(json!({"kind": "prices"})))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    assert_eq!(r.body["run_id"], auto.as_str(), "{}", r.body);
    assert_eq!(r.body["already_queued"], true, "{}", r.body);
    // Once it is over, a price run of its own is queued.
    let mut done = SyncStore::get_run(&e.table, &conn_id, &auto)
        .await
        .unwrap()
        .unwrap();
    done.state = store::RunState::Completed;
    done.finished_at = Some(chrono::Utc::now());
    SyncStore::put_run(&e.table, &done).await.unwrap();
    let r = e
        .call("POST", "/sync", "shop-a", Some(json!({"kind": "prices"})))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    assert_eq!(r.body["already_queued"], false, "{}", r.body);
    let second = r.body["run_id"].as_str().unwrap().to_string();
    let r = e.call("GET", "/runs", "shop-a", None).await;
    let ids: Vec<&str> = r.body["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["run_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec![run_id.as_str(), second.as_str(), auto.as_str()],
        "newest start first (the first run started later, as catalog-sync recorded it)"
    );
    let r = e
        .call_with(
            "GET",
            "/v1/shops/{shop_id}/connection/runs",
            &[("shop_id", "shop-a")],
            "?limit=1",
            Some(&e.token("shop-a")),
            None,
        )
        .await;
    assert_eq!(r.body["runs"].as_array().unwrap().len(), 1);
    let r = e
        .call_with(
            "GET",
            "/v1/shops/{shop_id}/connection/runs",
            &[("shop_id", "shop-a")],
            "?limit=0",
            Some(&e.token("shop-a")),
            None,
        )
        .await;
    assert_eq!(r.fields(), vec!["limit"]);

    // An id the connection never had.
    let r = get_run("not-a-run".into()).await;
    assert_api_error(
        r.status,
        &r.body,
        StatusCode::NOT_FOUND,
        "run_not_found",
        &ALL_KEYS,
    );
    assert_no_key_in_logs(&e.logs);
}

#[tokio::test]
async fn a_failed_order_can_be_pushed_again() {
    let e = env().await;
    let conn_id = e.connect("shop-a", KEY_A).await.body["id"]
        .as_str()
        .unwrap()
        .to_string();
    let event = r#"{"version":1,"type":"order.created","event_id":"ev-1","shop_id":"shop-a"}"#;
    OrderLedger::claim(
        &e.table,
        &conn_id,
        "o-1",
        Target::Order,
        "h1",
        Duration::from_secs(60),
        event,
    )
    .await
    .unwrap();
    OrderLedger::mark_failed(
        &e.table,
        &conn_id,
        "o-1",
        "h1",
        "KeyCRM has no payment method 9",
        &BTreeMap::new(),
    )
    .await
    .unwrap();
    OrderLedger::claim(
        &e.table,
        &conn_id,
        "o-2",
        Target::Order,
        "h2",
        Duration::from_secs(60),
        event,
    )
    .await
    .unwrap();
    OrderLedger::mark_created(
        &e.table,
        &conn_id,
        "o-2",
        "h2",
        42,
        &Default::default(),
        Some("new"),
        Some(1),
    )
    .await
    .unwrap();

    let repush = |order: &'static str| {
        let e = &e;
        async move {
            e.call_with(
                "POST",
                "/v1/shops/{shop_id}/connection/orders/{order_id}/repush",
                &[("shop_id", "shop-a"), ("order_id", order)],
                "",
                Some(&e.token("shop-a")),
                None,
            )
            .await
        }
    };
    let r = repush("o-1").await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    assert_eq!(r.body["previous_error"], "KeyCRM has no payment method 9");
    let msgs = e
        .order_q
        .receive(10, Duration::from_secs(1), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        msgs.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
        vec![event]
    );
    let entry = OrderLedger::get(&e.table, &conn_id, "o-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(entry.state, LedgerState::Pending, "claimable again");

    let r = repush("o-2").await;
    assert_api_error(
        r.status,
        &r.body,
        StatusCode::CONFLICT,
        "already_in_keycrm",
        &ALL_KEYS,
    );
    let r = repush("o-404").await;
    assert_api_error(
        r.status,
        &r.body,
        StatusCode::NOT_FOUND,
        "order_not_found",
        &ALL_KEYS,
    );
    assert_no_key_in_logs(&e.logs);
}
