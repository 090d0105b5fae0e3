//! A whole connector for following the Shop-Express article ("Підключення KeyCRM") step by
//! step: the admin API router (every answer checked against `docs/admin-api.openapi.yaml`),
//! the webhook receiver on a socket the KeyCRM simulator's triggers call, status-apply
//! consuming the status queue, order-push and catalog-sync driven by the test, every store on
//! DynamoDB/SQS/Secrets Manager (moto), and the in-memory shop (the demo shop's state).

use crate::emulator;
use crate::openapi::OpenApi;
use admin_api::{AdminApi, AdminConfig, TokenSigner};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use catalog_sync::{kit, Config, Deps, Engine, JobMessage, JobOutcome};
use keycrm::{ClientConfig, LocalRateGate, RateBudget};
use keycrm_sim::{AccountSpec, SimConfig, SimHandle};
use order_push::{Dictionaries, KeycrmProvider, OrderPush, Outcome, PushConfig, RetryPolicy};
use queue::{Outgoing, Queue, SqsQueue};
use runtime::log_capture::LogBuf;
use runtime::KeycrmClients;
use serde_json::{json, Value};
use shop::{MemoryShop, NamedItem, ShopAddon, ShopReference};
use status_apply::{ConsumerOptions, StatusApplier};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use store::{
    Connection, ConnectionStore, DynamoTable, SecretsManager, SyncRun, SyncStore, TokenKey,
};
use tower::ServiceExt;

/// A minute of KeyCRM's rate limit lasts this many times less.
pub const SCALE: f64 = 60.0;
pub const SHOP: &str = "shop-article";
const CREATED: &str = include_str!("../../contracts/order-events/examples/order.created.json");

// ------------------------------------------------------------------------------ log capture

/// Every log line of this test binary at every level (set up once per binary).
pub fn logs() -> String {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    let buf = LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sub = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("trace"))
            .with_ansi(false)
            .with_writer(LogBuf(buf.clone()))
            .finish();
        // Another test of the binary may have set it first; then that one captures.
        let _ = tracing::subscriber::set_global_default(sub);
        buf
    });
    String::from_utf8_lossy(&buf.lock().unwrap_or_else(|p| p.into_inner())).to_string()
}

// ------------------------------------------------------------------------------ the world

/// The shop's dictionaries: the article's shop, statuses in workflow order (a new order
/// starts as the first).
pub fn shop_reference() -> ShopReference {
    let n = |id: &str, name: &str| NamedItem {
        id: id.into(),
        name: name.into(),
    };
    ShopReference {
        order_statuses: vec![
            n("new", "Нове"),
            n("paid", "Оплачене"),
            n("shipped", "Відправлене"),
            n("done", "Виконане"),
            n("cancelled", "Скасоване"),
        ],
        order_addons: vec![
            ShopAddon {
                id: "gift_wrap".into(),
                name: "Подарункове пакування".into(),
                addon_type: "checkbox".into(),
            },
            ShopAddon {
                id: "call_back".into(),
                name: "Передзвоніть мені".into(),
                addon_type: "checkbox".into(),
            },
        ],
        payment_methods: vec![n("cod", "Накладений платіж")],
        delivery_methods: vec![n("nova_poshta", "Нова Пошта")],
        currency: "UAH".into(),
    }
}

pub struct Resp {
    pub status: StatusCode,
    pub body: Value,
    pub content_language: Option<String>,
}

impl Resp {
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    /// `(field, code, message)` of each field error.
    pub fn fields(&self) -> Vec<(String, String, String)> {
        self.body["error"]["fields"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|f| {
                        let s = |k: &str| f[k].as_str().unwrap_or("").to_string();
                        (s("field"), s("code"), s("message"))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or("")
    }
}

pub struct World {
    pub router: axum::Router,
    pub signer: TokenSigner,
    pub sim: SimHandle,
    pub table: DynamoTable,
    pub shop: Arc<MemoryShop>,
    pub sync_q: SqsQueue,
    pub order_q: SqsQueue,
    pub token_key: TokenKey,
    pub push: OrderPush,
    pub engine: Engine,
    pub spec: OpenApi,
    /// Where the webhook receiver listens (`http://127.0.0.1:PORT`).
    pub webhook_base: String,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for World {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// One simulator account per key (each its own KeyCRM account, different data).
pub async fn world(keys: &[(&str, u64)]) -> World {
    logs();
    emulator::require();
    let sim = keycrm_sim::start(
        SimConfig {
            accounts: keys
                .iter()
                .map(|(k, seed)| AccountSpec {
                    api_key: k.to_string(),
                    seed: *seed,
                    products: 12,
                    pipelines_enabled: true,
                })
                .collect(),
            rate_limit_per_minute: 60,
            time_scale: SCALE,
            public_base_url: None,
        },
        "127.0.0.1:0".parse().expect("address"),
    )
    .await
    .expect("simulator starts");
    let table = emulator::table().await;
    let secrets = Arc::new(SecretsManager::from_env().await);
    let prefix = format!("{}/keycrm/", emulator::unique("article"));
    let (sync_q, _) = emulator::queue(None).await;
    let (order_q, _) = emulator::queue(None).await;
    let (status_q, _) = emulator::queue(None).await;
    let (order_dlq, _) = emulator::queue(None).await;
    let shop = Arc::new(MemoryShop::new());
    shop.set_reference(SHOP, shop_reference());
    let token_key = TokenKey::generate();
    let signer = TokenSigner::new("article-e2e-signing-key-0123456789abcdef").expect("signer");
    let gate = Arc::new(LocalRateGate::new(RateBudget::keycrm_scaled(SCALE)));
    let clients = Arc::new(KeycrmClients::new(
        secrets.clone(),
        gate,
        ClientConfig {
            timeout: Duration::from_secs(5),
            ..ClientConfig::with_base_url(sim.base_url())
        },
    ));
    let table_arc = Arc::new(table.clone());

    // The webhook receiver, where KeyCRM's triggers post.
    let receiver = Arc::new(webhook::Receiver::new(
        table_arc.clone(),
        Arc::new(status_q.clone()),
        table_arc.clone(),
        token_key.clone(),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let webhook_base = format!("http://{}", listener.local_addr().expect("address"));
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, webhook::router(receiver)).await;
    });
    // status-apply on the status queue.
    let applier = Arc::new(StatusApplier::new(
        table_arc.clone(),
        table_arc.clone(),
        shop.clone(),
        table_arc.clone(),
        status_apply::RetryPolicy::default(),
    ));
    let consumer = tokio::spawn(status_apply::run_queue_consumer(
        applier,
        Arc::new(status_q.clone()),
        None,
        ConsumerOptions {
            batch: 10,
            wait: Duration::from_secs(1),
            visibility: Duration::from_secs(20),
        },
        std::future::pending(),
    ));

    let mut config = AdminConfig::new(prefix.clone(), sim.base_url());
    // The URLs the merchant copies point at the receiver.
    config.public_base_url = Some(webhook_base.clone());
    let api = AdminApi {
        config,
        signer: signer.clone(),
        token_key: token_key.clone(),
        connections: table_arc.clone(),
        secrets: secrets.clone(),
        journal: table_arc.clone(),
        cache: table_arc.clone(),
        ledger: table_arc.clone(),
        sync: table_arc.clone(),
        links: table_arc.clone(),
        clients: clients.clone(),
        shop: shop.clone(),
        order_queue: Arc::new(order_q.clone()),
        sync_queue: Arc::new(sync_q.clone()),
    };
    let push = OrderPush {
        connections: table_arc.clone(),
        ledger: table_arc.clone(),
        journal: table_arc.clone(),
        crm: Arc::new(KeycrmProvider {
            clients: clients.clone(),
            secret_prefix: Some(prefix.clone()),
        }),
        retry_queue: Arc::new(order_q.clone()),
        dead_letters: Arc::new(order_dlq),
        dictionaries: Arc::new(Dictionaries::default()),
        config: PushConfig {
            lease: Duration::from_secs(5),
            retry: RetryPolicy {
                base: Duration::from_secs(1),
                max_delay: Duration::from_secs(2),
                max_attempts: 10,
                busy_delay: Duration::from_secs(1),
                unknown_order_attempts: 4,
            },
            source_queue: order_q.name().to_string(),
            ..PushConfig::default()
        },
    };
    let engine = Engine::new(
        Deps {
            connections: table_arc.clone(),
            sync: table_arc.clone(),
            links: table_arc.clone(),
            shop: shop.clone(),
            clients,
            journal: table_arc.clone(),
            jobs: Arc::new(sync_q.clone()),
        },
        Config {
            safety: Duration::from_millis(100),
            lease_slack: Duration::from_secs(1),
            ..Config::default()
        },
    );
    let spec = OpenApi::load(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/admin-api.openapi.yaml"),
    )
    .expect("the admin API's OpenAPI file");
    World {
        router: admin_api::router(api),
        signer,
        sim,
        table,
        shop,
        sync_q,
        order_q,
        token_key,
        push,
        engine,
        spec,
        webhook_base,
        tasks: vec![server, consumer],
    }
}

impl World {
    /// Calls the admin API (`suffix` under `/v1/shops/{shop}/connection`, `{order_id}` etc.
    /// already filled in `path`), optionally in Ukrainian, and checks the answer against the
    /// OpenAPI file (`template` names the documented route).
    pub async fn call_as(
        &self,
        method: &str,
        template: &str,
        path: &str,
        body: Option<Value>,
        lang: Option<&str>,
    ) -> Resp {
        let mut req = Request::builder().method(method).uri(path).header(
            "authorization",
            format!("Bearer {}", self.signer.mint(SHOP, 600)),
        );
        if let Some(l) = lang {
            req = req.header("accept-language", l);
        }
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req
            .body(
                body.map(|b| Body::from(b.to_string()))
                    .unwrap_or_else(Body::empty),
            )
            .expect("request");
        let resp = self.router.clone().oneshot(req).await.expect("answer");
        let status = resp.status();
        let content_language = resp
            .headers()
            .get("content-language")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 24)
            .await
            .expect("body");
        let body: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("JSON body")
        };
        if status != StatusCode::NO_CONTENT {
            let report = self
                .spec
                .validate_response(template, method, status.as_u16(), &body, &[])
                .expect("documented route");
            assert!(
                report.is_ok(),
                "{method} {template} {status} does not match the OpenAPI file: {:?}\n{body}",
                report
                    .violations
                    .iter()
                    .map(|v| v.to_string())
                    .collect::<Vec<_>>()
            );
        }
        Resp {
            status,
            body,
            content_language,
        }
    }

    pub async fn call(&self, method: &str, suffix: &str, body: Option<Value>) -> Resp {
        self.call_lang(method, suffix, body, None).await
    }

    pub async fn call_lang(
        &self,
        method: &str,
        suffix: &str,
        body: Option<Value>,
        lang: Option<&str>,
    ) -> Resp {
        let template = format!("/v1/shops/{{shop_id}}/connection{suffix}");
        let path = format!("/v1/shops/{SHOP}/connection{suffix}");
        self.call_as(method, &template, &path, body, lang).await
    }

    /// «Підключитися»: paste the key (201 the first time).
    pub async fn connect(&self, key: &str) -> Value {
        let r = self.call("PUT", "", Some(json!({ "api_key": key }))).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r.body
    }

    pub async fn stored(&self) -> Connection {
        ConnectionStore::get_by_shop(&self.table, SHOP)
            .await
            .expect("store")
            .expect("connection")
    }

    pub async fn version(&self) -> u64 {
        self.stored().await.version
    }

    /// «ЗБЕРЕГТИ» with the version the page holds.
    pub async fn save(&self, settings: Value) -> Resp {
        let v = self.version().await;
        self.call(
            "PUT",
            "/settings",
            Some(json!({"version": v, "settings": settings})),
        )
        .await
    }

    pub async fn options(&self) -> Value {
        let r = self.call("GET", "/options", None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        r.body
    }

    /// The sync jobs queued so far, as catalog-sync receives them (removed from the queue).
    pub async fn take_sync_jobs(&self) -> Vec<JobMessage> {
        let mut out = Vec::new();
        loop {
            let msgs = self
                .sync_q
                .receive(10, Duration::from_millis(300), Duration::from_secs(60))
                .await
                .expect("receive");
            if msgs.is_empty() {
                return out;
            }
            for m in msgs {
                out.push(serde_json::from_str(&m.body).expect("a sync job message"));
                self.sync_q.delete(&m.receipt).await.expect("delete");
            }
        }
    }

    /// Runs a queued job as catalog-sync does (continuing it when it pauses) and returns its
    /// report.
    pub async fn run_sync(&self, msg: &JobMessage) -> SyncRun {
        let (out, _) = kit::run_to_end(
            &self.engine,
            &msg.job,
            msg.settings.clone(),
            Duration::from_secs(60),
            50,
        )
        .await
        .expect("sync runs");
        let run_id = match &out {
            JobOutcome::Finished { run_id, .. } | JobOutcome::Paused { run_id } => run_id.clone(),
            other => panic!("the sync did not run: {other:?}"),
        };
        SyncStore::get_run(&self.table, &self.stored().await.id, &run_id)
            .await
            .expect("store")
            .expect("report")
    }

    /// The shop publishes `order.created` for an order (the connector's order queue).
    pub async fn place_order(&self, order_id: &str) {
        let mut v: Value = serde_json::from_str(CREATED).expect("example event");
        v["shop_id"] = SHOP.into();
        v["event_id"] = format!("evt-{order_id}").into();
        v["order"]["id"] = order_id.into();
        v["order"]["number"] = format!("N-{order_id}").into();
        self.shop.add_order(SHOP, order_id, "new");
        self.order_q
            .send(Outgoing::new(v.to_string()))
            .await
            .expect("send");
    }

    /// order-push works through its queue until it stays empty.
    pub async fn drain_orders(&self) -> Vec<Outcome> {
        let started = Instant::now();
        let mut all = Vec::new();
        let mut idle = 0;
        loop {
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "the order queue did not drain: {all:?}"
            );
            let r = self
                .push
                .poll_once(
                    &self.order_q,
                    10,
                    Duration::from_millis(500),
                    Duration::from_secs(30),
                )
                .await
                .expect("poll");
            if r.outcomes.is_empty() {
                if self.order_q.approximate_len().await.expect("len") == 0 {
                    idle += 1;
                    if idle >= 2 {
                        return all;
                    }
                }
            } else {
                idle = 0;
            }
            all.extend(r.outcomes.into_iter().map(|o| o.outcome));
        }
    }

    /// Waits until `check` holds (status webhooks travel through queues).
    pub async fn eventually<F, Fut>(&self, what: &str, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !check().await {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The token at the end of a webhook URL.
pub fn token_of(url: &str) -> String {
    url.rsplit('/').next().unwrap_or_default().to_string()
}

/// Waits for the next second: KeyCRM stamps status changes to the second.
pub async fn next_second() {
    let now = chrono::Utc::now();
    let ms = 1000 - now.timestamp_subsec_millis() as u64 + 20;
    tokio::time::sleep(Duration::from_millis(ms)).await;
}
