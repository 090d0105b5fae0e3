//! The merchant's "Integrations → KeyCRM" page in a real browser: headless Chromium driven
//! through ChromeDriver, against the real admin API router and webhook receiver (served on
//! loopback), DynamoDB, SQS and Secrets Manager on the emulator, the KeyCRM simulator and the
//! in-memory shop, with the order-push, status-apply and catalog-sync consumers running.
//!
//! Every test also checks that the page logged no console error and that no shop token ever
//! reached the server in a URL, a Referer or a log line. Screenshots of the main states go to
//! `target/screenshots/`; with `UPDATE_SCREENSHOTS=1` the Ukrainian ones are also copied to
//! `docs/screenshots/` (see docs/settings-page.md).
//!
//! The tests at the end ("the article flow of issue 10") drive what issue 10 added to the admin
//! API: the status mapping in both directions, webhook URLs readable at any time, dry runs of
//! proposed settings and pushing skipped orders.

use admin_api::{AdminApi, AdminConfig, TokenSigner};
use axum::extract::Request;
use axum::response::IntoResponse;
use axum::routing::get;
use e2e_tests::emulator;
use e2e_tests::logs::LogBuf;
use e2e_tests::webdriver::{keys, Browser, BrowserOptions, Driver};
use keycrm::{ClientConfig, RateBudget, RetryPolicy};
use keycrm_sim::{AccountSpec, Faults, SimConfig, SimHandle};
use mapping::settings::{
    OrderStatusFrom, OrderStatusMap, OrderStatusTo, OrderSyncType, PaymentLink,
};
use order_push::{Dictionaries, KeycrmProvider, OrderPush, PushConfig};
use queue::{Queue, SqsQueue};
use runtime::KeycrmClients;
use serde_json::{json, Value};
use shop::{MemoryShop, NamedItem, ShopAddon, ShopReference};
use status_apply::{ConsumerOptions, StatusApplier};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use store::{
    ConnectionStore, DynamoRateGate, DynamoTable, OrderLedger, SecretsManager, StatusJournal,
    Target,
};
use tokio::task::JoinHandle;

const KEY: &str = "kc-page-test-key-7b1f0c9e2d4a48b6a1c3e5f7091b2d4f";
const WRONG_KEY: &str = "kc-page-test-wrong-3c5e7a9b1d2f4a6c8e0b2d4f6a8c0e2b";
const SHOP: &str = "shop-page";
const WAIT: Duration = Duration::from_secs(20);

/// One browser at a time: the machine running the suite has few cores.
static BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

// ------------------------------------------------------------------------------ log capture

/// Every log line of this test binary, at every level, from every crate.
fn logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sub = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("trace"))
            .with_ansi(false)
            .with_writer(LogBuf(buf.clone()))
            .finish();
        tracing::subscriber::set_global_default(sub).expect("one global subscriber");
        buf
    })
    .clone()
}

// ------------------------------------------------------------------------------ harness

fn shop_reference() -> ShopReference {
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
                id: "gift".into(),
                name: "Подарункова упаковка".into(),
                addon_type: "checkbox".into(),
            },
            ShopAddon {
                id: "call".into(),
                name: "Передзвонити".into(),
                addon_type: "checkbox".into(),
            },
        ],
        payment_methods: vec![n("cod", "Накладений платіж"), n("card", "Картка онлайн")],
        delivery_methods: vec![n("np", "Нова Пошта"), n("pickup", "Самовивіз")],
        currency: "UAH".into(),
    }
}

struct Harness {
    /// The API's own origin (`http://127.0.0.1:PORT`).
    base: String,
    /// The platform allowed to embed the page.
    platform: String,
    /// A site that is not.
    stranger: String,
    signer: TokenSigner,
    sim: SimHandle,
    shop: Arc<MemoryShop>,
    table: Arc<DynamoTable>,
    /// `METHOD URI referer=…` of every request the API server received.
    requests: Arc<Mutex<Vec<String>>>,
    /// Every token handed to a browser in this test.
    tokens: Arc<Mutex<Vec<String>>>,
    /// Fresh tokens the platform handed out through the postMessage handshake.
    renewals: Arc<AtomicUsize>,
    /// The order events queue (the shop platform publishes here).
    order_q: Arc<SqsQueue>,
    http: reqwest::Client,
    driver: Driver,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn listener() -> (tokio::net::TcpListener, String) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    (l, base)
}

async fn harness() -> Harness {
    logs();
    emulator::require();
    let sim = keycrm_sim::start(
        SimConfig {
            accounts: vec![AccountSpec {
                api_key: KEY.into(),
                seed: 21,
                products: 30,
                pipelines_enabled: true,
            }],
            rate_limit_per_minute: 60,
            time_scale: 60.0,
            public_base_url: None,
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .expect("simulator");
    let table = Arc::new(emulator::table().await);
    let secrets = Arc::new(SecretsManager::from_env().await);
    let prefix = format!("{}/keycrm/", emulator::unique("page"));
    let (order_q, order_dlq) = emulator::queue(Some(5)).await;
    let (status_q, status_dlq) = emulator::queue(Some(10)).await;
    let (sync_q, _) = emulator::queue(None).await;
    let order_q: Arc<SqsQueue> = Arc::new(order_q);
    let status_q: Arc<SqsQueue> = Arc::new(status_q);
    let sync_q: Arc<SqsQueue> = Arc::new(sync_q);
    let shop = Arc::new(MemoryShop::new());
    shop.set_reference(SHOP, shop_reference());

    let (api_l, base) = listener().await;
    let (platform_l, platform) = listener().await;
    let (stranger_l, stranger) = listener().await;

    let signer = TokenSigner::new("page-browser-signing-key-0123456789abcdef").unwrap();
    let gate = Arc::new(DynamoRateGate::new(
        table.as_ref().clone(),
        RateBudget::keycrm_scaled(60.0),
    ));
    let clients = Arc::new(KeycrmClients::new(
        secrets.clone(),
        gate,
        ClientConfig {
            timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(1),
            retry: RetryPolicy {
                max_attempts: 2,
                base_delay: Duration::from_millis(50),
                max_delay: Duration::from_millis(200),
                max_retry_after: Duration::from_secs(2),
            },
            ..ClientConfig::default()
        },
    ));
    let mut config = AdminConfig::new(prefix.clone(), sim.base_url());
    config.page_origins = vec![platform.clone()];
    // Behind API Gateway the webhook URLs take the request's host and https; on loopback
    // the base is set, as the local run does.
    config.public_base_url = Some(base.clone());
    // The key webhook URL tokens derive from: one for the admin API (which shows the URLs) and
    // the receiver (which checks them), as in Secrets Manager.
    let token_key = store::TokenKey::generate();
    let admin = admin_api::router(AdminApi {
        config,
        signer: signer.clone(),
        token_key: token_key.clone(),
        links: table.clone(),
        connections: table.clone(),
        secrets: secrets.clone(),
        journal: table.clone(),
        cache: table.clone(),
        ledger: table.clone(),
        sync: table.clone(),
        clients: clients.clone(),
        shop: shop.clone(),
        order_queue: order_q.clone(),
        sync_queue: sync_q.clone(),
    });
    let receiver = Arc::new(webhook::Receiver::new(
        table.clone(),
        status_q.clone(),
        table.clone(),
        token_key,
    ));
    let hooks = webhook::router(receiver);
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = requests.clone();
    // As the HTTP API does: the webhook route to the receiver, the rest to the admin function.
    let app = axum::Router::new().fallback(move |req: Request| {
        let referer = req
            .headers()
            .get("referer")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_string();
        seen.lock()
            .unwrap()
            .push(format!("{} {} referer={referer}", req.method(), req.uri()));
        let target = if req.uri().path().starts_with("/v1/webhooks/") {
            hooks.clone()
        } else {
            admin.clone()
        };
        async move {
            match tower::ServiceExt::oneshot(target, req).await {
                Ok(resp) => resp,
                Err(never) => match never {},
            }
        }
    });
    let mut tasks = vec![tokio::spawn(async move {
        let _ = axum::serve(api_l, app).await;
    })];

    // The platform that embeds the page, and a site that is not allowed to.
    let tokens = Arc::new(Mutex::new(Vec::new()));
    let renewals = Arc::new(AtomicUsize::new(0));
    tasks.push(tokio::spawn(platform_server(
        platform_l,
        base.clone(),
        signer.clone(),
        tokens.clone(),
        renewals.clone(),
    )));
    tasks.push(tokio::spawn(platform_server(
        stranger_l,
        base.clone(),
        signer.clone(),
        tokens.clone(),
        Arc::new(AtomicUsize::new(0)),
    )));

    // The consumers, as their Lambdas run them.
    let push = Arc::new(OrderPush {
        connections: table.clone(),
        ledger: table.clone(),
        journal: table.clone(),
        crm: Arc::new(KeycrmProvider {
            clients: clients.clone(),
            secret_prefix: Some(prefix.clone()),
        }),
        retry_queue: order_q.clone(),
        dead_letters: Arc::new(order_dlq.expect("order dlq")),
        dictionaries: Arc::new(Dictionaries::default()),
        config: PushConfig::default(),
    });
    let q = order_q.clone();
    tasks.push(tokio::spawn(async move {
        loop {
            if push
                .poll_once(
                    q.as_ref(),
                    10,
                    Duration::from_millis(500),
                    Duration::from_secs(60),
                )
                .await
                .is_err()
            {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    }));
    let applier = Arc::new(StatusApplier::new(
        table.clone(),
        table.clone(),
        shop.clone(),
        table.clone(),
        status_apply::RetryPolicy::default(),
    ));
    tasks.push(tokio::spawn(status_apply::run_queue_consumer(
        applier,
        status_q.clone(),
        Some(Arc::new(status_dlq.expect("status dlq"))),
        ConsumerOptions {
            batch: 10,
            wait: Duration::from_millis(500),
            visibility: Duration::from_secs(30),
        },
        std::future::pending(),
    )));
    let engine = Arc::new(catalog_sync::Engine::new(
        catalog_sync::Deps {
            connections: table.clone(),
            sync: table.clone(),
            links: table.clone(),
            shop: shop.clone(),
            clients: clients.clone(),
            journal: table.clone(),
            jobs: sync_q.clone(),
        },
        catalog_sync::Config::default(),
    ));
    let q = sync_q.clone();
    tasks.push(tokio::spawn(async move {
        loop {
            let Ok(msgs) = q
                .receive(1, Duration::from_millis(500), Duration::from_secs(300))
                .await
            else {
                tokio::time::sleep(Duration::from_millis(300)).await;
                continue;
            };
            for m in msgs {
                let deadline = std::time::Instant::now() + Duration::from_secs(240);
                if engine.on_message(&m.body, deadline).await.is_ok() {
                    let _ = q.delete(&m.receipt).await;
                }
            }
        }
    }));

    Harness {
        base,
        platform,
        stranger,
        signer,
        sim,
        shop,
        table,
        requests,
        tokens,
        renewals,
        order_q,
        http: reqwest::Client::new(),
        driver: Driver::start().await.expect("chromedriver starts"),
        tasks,
    }
}

/// A stand-in for the shop platform's admin: it embeds the page (`/embed`), opens it in a
/// window of its own (`/opener`), and answers the page's token requests with fresh tokens it
/// mints (`/token`), as the platform's backend would.
async fn platform_server(
    l: tokio::net::TcpListener,
    api: String,
    signer: TokenSigner,
    tokens: Arc<Mutex<Vec<String>>>,
    renewals: Arc<AtomicUsize>,
) {
    let mint = {
        let signer = signer.clone();
        let tokens = tokens.clone();
        move |shop: &str, ttl: i64| {
            let t = signer.mint(shop, ttl);
            tokens.lock().unwrap().push(t.clone());
            t
        }
    };
    let m1 = mint.clone();
    let api1 = api.clone();
    let m2 = mint.clone();
    let api2 = api.clone();
    let app = axum::Router::new()
        .route(
            "/embed",
            get(
                move |q: axum::extract::Query<HashMap<String, String>>| async move {
                    let shop = q.get("shop").cloned().unwrap_or_default();
                    let ttl = q.get("ttl").and_then(|v| v.parse().ok()).unwrap_or(600);
                    let token = m1(&shop, ttl);
                    axum::response::Html(format!(
                        r#"<!doctype html><html><head><link rel="icon" href="data:,"></head><body><h1>Shop admin</h1>
<iframe id="page" allow="clipboard-write" style="width:1200px;height:900px"
  src="{api1}/v1/shops/{shop}/connection/page#token={token}"></iframe>
<script>
window.received = [];
window.addEventListener('message', async (e) => {{
  if (e.origin !== '{api1}') return;
  window.received.push(e.data.type);
  if (e.data.type === 'keycrm-settings:token-request') {{
    const tok = await (await fetch('/token?shop={shop}')).text();
    document.getElementById('page').contentWindow.postMessage(
      {{type: 'keycrm-settings:token', version: 1, token: tok}}, '{api1}');
  }}
}});
</script></body></html>"#
                    ))
                },
            ),
        )
        .route(
            "/opener",
            get(
                move |q: axum::extract::Query<HashMap<String, String>>| async move {
                    let shop = q.get("shop").cloned().unwrap_or_default();
                    let token = m2(&shop, 600);
                    // Opens the page with no token and pushes one at it from this origin.
                    axum::response::Html(format!(
                        r#"<!doctype html><html><head><link rel="icon" href="data:,"></head><body><button id="open">open</button>
<script>
document.getElementById('open').onclick = () => {{
  const w = window.open('{api2}/v1/shops/{shop}/connection/page', 'kc');
  setInterval(() => w.postMessage({{type: 'keycrm-settings:token', version: 1, token: '{token}'}}, '*'), 100);
}};
</script></body></html>"#
                    ))
                },
            ),
        )
        .route(
            "/token",
            get(
                move |q: axum::extract::Query<HashMap<String, String>>| async move {
                    renewals.fetch_add(1, Ordering::SeqCst);
                    mint(q.get("shop").map(String::as_str).unwrap_or_default(), 600)
                        .into_response()
                },
            ),
        );
    let _ = axum::serve(l, app).await;
}

impl Harness {
    fn token(&self, shop: &str, ttl: i64) -> String {
        let t = self.signer.mint(shop, ttl);
        self.tokens.lock().unwrap().push(t.clone());
        t
    }

    fn page_url(&self, shop: &str) -> String {
        format!("{}/v1/shops/{shop}/connection/page", self.base)
    }

    async fn browser(&self, accept_language: &str) -> Browser {
        self.driver
            .browser(BrowserOptions {
                accept_language: accept_language.into(),
                ..BrowserOptions::default()
            })
            .await
            .expect("a browser session")
    }

    /// Opens the page as the platform would: the token in the fragment.
    async fn open(&self, b: &Browser, shop: &str) {
        let url = format!("{}#token={}", self.page_url(shop), self.token(shop, 600));
        // From the page itself a new fragment would not load the page again.
        b.goto("about:blank").await.unwrap();
        b.goto(&url).await.unwrap();
        b.wait_until(
            "the page to start",
            "return !document.querySelector('#app > .loading')",
            WAIT,
        )
        .await
        .unwrap();
    }

    /// The admin API, called as the platform's backend would.
    async fn api(&self, method: &str, shop: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}/v1/shops/{shop}/connection{path}", self.base);
        let mut req = self
            .http
            .request(method.parse().unwrap(), url)
            .bearer_auth(self.signer.mint(shop, 600));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn connect_by_api(&self, shop: &str) -> Value {
        let (s, body) = self
            .api("PUT", shop, "", Some(json!({ "api_key": KEY })))
            .await;
        assert_eq!(s, 201, "{body}");
        body
    }

    /// Changes stored settings directly (test set-up, whatever the settings API's shape).
    async fn set_settings(&self, shop: &str, change: impl Fn(&mut mapping::Settings)) {
        let mut c = self
            .table
            .get_by_shop(shop)
            .await
            .unwrap()
            .expect("connected");
        change(&mut c.settings);
        c.version += 1;
        ConnectionStore::update(self.table.as_ref(), &c)
            .await
            .unwrap();
    }

    async fn connection(&self, shop: &str) -> store::Connection {
        self.table
            .get_by_shop(shop)
            .await
            .unwrap()
            .expect("connected")
    }

    /// Console errors and warnings of the page. The browser also logs every 4xx/5xx answer of
    /// the JSON API as a network error; those are answers the page handles (404 before the
    /// shop connects, 422 for a wrong key…), so only the page's own resources count there.
    async fn console_problems(&self, b: &Browser) -> Vec<String> {
        let api = format!("{}/v1/shops/", self.base);
        b.logs()
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.level == "SEVERE" || e.level == "WARNING")
            .filter(|e| {
                !(e.source == "network"
                    && e.message.starts_with(&api)
                    && !e.message.contains("/connection/page"))
            })
            .map(|e| format!("{} {}: {}", e.level, e.source, e.message))
            .collect()
    }

    async fn assert_clean_console(&self, b: &Browser) {
        let problems = self.console_problems(b).await;
        assert!(problems.is_empty(), "console: {problems:#?}");
    }

    /// No token in any URL or Referer the server saw, nor in any log line.
    fn assert_tokens_stayed_secret(&self) {
        let tokens = self.tokens.lock().unwrap().clone();
        assert!(!tokens.is_empty());
        let requests = self.requests.lock().unwrap().clone();
        assert!(!requests.is_empty(), "the server saw no request");
        let logs = String::from_utf8_lossy(&logs().lock().unwrap()).to_string();
        for t in &tokens {
            // The signature part alone is enough to use a token: look for it.
            let sig = t.split('.').nth(1).unwrap_or(t);
            for r in &requests {
                assert!(!r.contains(sig), "a token reached the server in a URL: {r}");
            }
            assert!(!logs.contains(sig), "a token reached the logs");
        }
        // The page's own requests (its assets, the API) carry no Referer at all; only the
        // document itself may, when the platform's page loads it in a frame.
        let own: Vec<&String> = requests
            .iter()
            .filter(|r| !r.contains("/connection/page referer="))
            .filter(|r| !r.ends_with("referer=-"))
            .collect();
        assert!(own.is_empty(), "the page sent a Referer: {own:#?}");
    }

    async fn finish(&self, b: Browser) {
        self.assert_clean_console(&b).await;
        b.quit().await;
        self.assert_tokens_stayed_secret();
    }
}

/// Orders pushed as KeyCRM orders from source 1: "new" both ways, both payment methods.
fn push_orders(s: &mut mapping::Settings) {
    s.order_sync = OrderSyncType::Orders;
    s.source_id = Some(1);
    s.order_statuses = OrderStatusMap {
        from_keycrm: vec![OrderStatusFrom {
            keycrm_status_id: 1,
            shop_status: "new".into(),
        }],
        to_keycrm: vec![OrderStatusTo {
            shop_status: "new".into(),
            keycrm_status_id: 1,
        }],
    };
    s.payment_map = ["cod", "card"]
        .into_iter()
        .map(|m| PaymentLink {
            shop_method: m.into(),
            keycrm_method_id: 1,
        })
        .collect();
}

async fn wait_text(b: &Browser, css: &str, needle: &str) -> String {
    let script = format!(
        "const el = document.querySelector({css:?}); \
         return el && !el.hidden && el.textContent.includes({needle:?}) ? el.textContent : '';"
    );
    b.wait_until(&format!("{css} to say {needle:?}"), &script, WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .as_str()
        .unwrap_or_default()
        .to_string()
}

async fn value_of(b: &Browser, css: &str) -> Value {
    b.execute(
        "const el = document.querySelector(arguments[0]); \
         return el ? (el.type === 'checkbox' ? el.checked : el.value) : null;",
        vec![json!(css)],
    )
    .await
    .unwrap()
}

/// Saves a screenshot under target/screenshots, and the Ukrainian ones into docs/ when asked.
async fn screenshot(b: &Browser, name: &str) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let file = format!("settings-page-{name}.png");
    let target = root.join("target/screenshots").join(&file);
    b.screenshot(&target).await.unwrap();
    if name.ends_with(".uk") && std::env::var("UPDATE_SCREENSHOTS").is_ok_and(|v| v == "1") {
        let docs = root.join("docs/screenshots");
        std::fs::create_dir_all(&docs).unwrap();
        std::fs::copy(&target, docs.join(&file)).unwrap();
    }
}

fn order_event(shop: &str, order: &str, sku: &str) -> String {
    json!({
        "version": 1,
        "event_id": format!("evt-{order}"),
        "type": "order.created",
        "shop_id": shop,
        "occurred_at": "2026-11-28T10:15:00Z",
        "order": {
            "id": order,
            "number": order,
            "created_at": "2026-11-28T10:14:52Z",
            "status": "new",
            "currency": "UAH",
            "customer": {"name": "Олена Коваленко", "phone": "050 111 22 33"},
            "items": [{"sku": sku, "name": "Сукня", "price": 1290, "quantity": 1}],
            "payment": {"method": "cod", "paid": false, "amount": 1290},
            "total": 1290
        }
    })
    .to_string()
}

// ------------------------------------------------------------------------------ the tests

/// Connect: a wrong key and an unreachable KeyCRM get different messages beside the key;
/// a good key shows the settings blocks (the connection is active from the start).
#[tokio::test]
async fn connecting_tells_a_wrong_key_from_an_unreachable_keycrm_and_then_shows_the_blocks() {
    let _one = BROWSER.lock().await;
    let h = harness().await;
    let b = h.browser("uk-UA,uk").await;
    h.open(&b, SHOP).await;
    b.wait_for("#api-key", WAIT).await.unwrap();
    assert_eq!(
        b.execute("return document.documentElement.lang", vec![])
            .await
            .unwrap(),
        "uk"
    );
    screenshot(&b, "01-connect.uk").await;

    // Nothing pasted: the page says so without asking anyone.
    b.click("#connect").await.unwrap();
    wait_text(&b, "#key-msg", "Вставте ключ API").await;

    // A key KeyCRM does not know.
    b.type_into("#api-key", WRONG_KEY).await.unwrap();
    b.click("#connect").await.unwrap();
    wait_text(&b, "#key-msg", "KeyCRM не прийняв цей ключ API").await;
    assert_eq!(
        value_of(&b, "#api-key[aria-invalid='true']").await,
        WRONG_KEY
    );
    screenshot(&b, "02-wrong-key.uk").await;

    // KeyCRM dropping every connection: another message, and still nothing stored.
    h.sim.set_faults(Faults {
        drop_rate: 1.0,
        ..Faults::default()
    });
    b.clear("#api-key").await.unwrap();
    b.type_into("#api-key", KEY).await.unwrap();
    b.click("#connect").await.unwrap();
    wait_text(&b, "#key-msg", "Не вдалося з’єднатися з KeyCRM").await;
    assert!(h.table.get_by_shop(SHOP).await.unwrap().is_none());
    h.sim.set_faults(Faults::default());

    // The good key: the blocks of the article appear, the order webhook URL with them.
    b.click("#connect").await.unwrap();
    b.wait_for("#block-sync", WAIT).await.unwrap();
    for block in [
        "#block-active",
        "#block-categories",
        "#block-extra",
        "#block-orders",
        "#block-payment",
        "#block-delivery",
        "#block-webhook",
        "#save",
    ] {
        b.wait_for(block, WAIT).await.unwrap();
    }
    assert_eq!(value_of(&b, "#active").await, true);
    let url = value_of(&b, "#hook-orders").await;
    assert!(
        url.as_str()
            .unwrap_or_default()
            .starts_with(&format!("{}/v1/webhooks/keycrm/", h.base)),
        "{url}"
    );
    let conn = h.connection(SHOP).await;
    assert!(conn.active);
    assert_eq!(conn.key_mask, keycrm::ApiKey::new(KEY).masked());
    screenshot(&b, "03-blocks.uk").await;
    h.finish(b).await;
}

/// Sync now shows its report; a failed order is listed with its reason and pushed again from
/// the page; the toggle switches the connection off and on; delete asks first.
#[tokio::test]
async fn sync_now_failed_orders_repush_the_toggle_and_delete() {
    let _one = BROWSER.lock().await;
    let h = harness().await;
    let conn = h.connect_by_api(SHOP).await;
    let conn_id = conn["id"].as_str().unwrap().to_string();
    h.set_settings(SHOP, |s| {
        s.sync_products = true;
        s.sync_categories = true;
        push_orders(s);
    })
    .await;
    // An order that could not be placed while KeyCRM was down (its event kept for a re-push).
    let sku = h.sim.catalog(KEY).offers[0].sku.clone();
    let event = order_event(SHOP, "10001", &sku);
    OrderLedger::claim(
        h.table.as_ref(),
        &conn_id,
        "10001",
        Target::Order,
        "test",
        Duration::from_secs(60),
        &event,
    )
    .await
    .unwrap();
    let reason = "retries exhausted after 5 attempts: KeyCRM unavailable (HTTP 503)";
    OrderLedger::mark_failed(
        h.table.as_ref(),
        &conn_id,
        "10001",
        "test",
        reason,
        &BTreeMap::new(),
    )
    .await
    .unwrap();
    StatusJournal::record_failure(
        h.table.as_ref(),
        &conn_id,
        &store::OrderFailure {
            shop_order_id: "10001".into(),
            at: chrono::Utc::now(),
            reason: reason.into(),
            field_errors: BTreeMap::new(),
        },
    )
    .await
    .unwrap();
    StatusJournal::count(h.table.as_ref(), &conn_id, store::Counter::OrdersFailed, 1)
        .await
        .unwrap();
    h.shop.add_order(SHOP, "10001", "new");

    let b = h.browser("uk-UA,uk").await;
    h.open(&b, SHOP).await;
    // The "Connected" card, and the status with the failed order and its reason.
    b.wait_for("#block-connected", WAIT).await.unwrap();
    wait_text(&b, "#failures", reason).await;
    screenshot(&b, "04-connected.uk").await;

    // Sync now, from the edit view: the run's report appears when it ends.
    b.click("#edit").await.unwrap();
    b.wait_for("#sync-full", WAIT).await.unwrap();
    b.click("#sync-full").await.unwrap();
    b.wait_for(
        "#run-result .run[data-state='completed']",
        Duration::from_secs(90),
    )
    .await
    .unwrap();
    let report = b.text("#run-result").await.unwrap();
    assert!(report.contains("категорій створено"), "{report}");
    assert!(h.shop.category_list(SHOP).len() > 3);
    screenshot(&b, "05-sync-now.uk").await;

    // Re-push: the order goes to KeyCRM once, and leaves the list.
    let repush = b.find(".repush[data-order='10001']").await.unwrap();
    b.click_el(&repush).await.unwrap();
    wait_text(&b, "#status-msg", "10001").await;
    let mut placed = None;
    for _ in 0..100 {
        placed = OrderLedger::get(h.table.as_ref(), &conn_id, "10001")
            .await
            .unwrap()
            .and_then(|e| e.keycrm_id);
        if placed.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(placed.is_some(), "the re-pushed order never reached KeyCRM");
    assert_eq!(h.sim.orders(KEY).len(), 1, "placed exactly once");
    let mut gone = false;
    for _ in 0..40 {
        b.click("#status-refresh").await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        if b.find("#failures [data-order='10001']").await.is_err() {
            gone = true;
            break;
        }
    }
    assert!(gone, "the failure stayed in the list");

    // The toggle: off (PATCH), the page says so; on again.
    b.click("#active").await.unwrap();
    wait_text(&b, "#block-active", "Підключення неактивне").await;
    assert!(!h.connection(SHOP).await.active);
    b.wait_for("#activate-first", WAIT).await.unwrap();
    b.click("#active").await.unwrap();
    wait_text(&b, "#block-active", "Підключення активне").await;
    assert!(h.connection(SHOP).await.active);

    // Delete: cancelled first (nothing happens), then confirmed.
    h.open(&b, SHOP).await;
    b.click("#delete").await.unwrap();
    b.wait_for("dialog#confirm[open]", WAIT).await.unwrap();
    screenshot(&b, "06-delete.uk").await;
    b.click("#confirm-cancel").await.unwrap();
    b.wait_until(
        "the dialog to close",
        "return !document.querySelector('dialog#confirm')",
        WAIT,
    )
    .await
    .unwrap();
    assert!(h.table.get_by_shop(SHOP).await.unwrap().is_some());
    b.click("#delete").await.unwrap();
    b.click("#confirm-ok").await.unwrap();
    wait_text(&b, "#banner", "Підключення KeyCRM видалено").await;
    b.wait_for("#api-key", WAIT).await.unwrap();
    assert!(h.table.get_by_shop(SHOP).await.unwrap().is_none());
    let (status, _) = h.api("GET", SHOP, "", None).await;
    assert_eq!(status, 404);
    h.finish(b).await;
}

/// The article's labels in Ukrainian, the same page in English (by Accept-Language and by the
/// switch), no string missing in either; every control reachable with the keyboard alone.
#[tokio::test]
async fn both_languages_are_complete_and_the_keyboard_reaches_every_control() {
    let _one = BROWSER.lock().await;
    let h = harness().await;
    h.connect_by_api(SHOP).await;
    h.set_settings(SHOP, |s| {
        s.sync_products = true;
        push_orders(s);
    })
    .await;

    let b = h.browser("uk-UA,uk;q=0.9,en;q=0.5").await;
    h.open(&b, SHOP).await;
    b.wait_for("#block-connected", WAIT).await.unwrap();
    let text = b.text("main").await.unwrap();
    for label in ["Підключені", "Редагувати", "Видалити"] {
        assert!(text.contains(label), "{label} missing in:\n{text}");
    }
    b.click("#edit").await.unwrap();
    b.wait_for("#save", WAIT).await.unwrap();
    let text = b.text("main").await.unwrap();
    for label in [
        "Ключ API",
        "Підключитися",
        "Синхронізувати товари",
        "Синхронізувати категорії",
        "Виберіть категорії",
        "Оновлення товарів",
        "Нові товари",
        "Існуючі товари",
        "Відсутні товари",
        "Тип синхронізації",
        "Джерело",
        "Зіставлення статусів замовлення",
        "Зіставлення доповнень до замовлень",
        "Зіставлення способів оплати",
        "Зіставлення способів доставки",
        "Webhook",
        "Скопіювати",
        "ЗБЕРЕГТИ",
    ] {
        assert!(text.contains(label), "{label} missing in:\n{text}");
    }
    // The article's block order.
    let order: Vec<String> = b
        .execute(
            "return [...document.querySelectorAll('main > section, main > .savebar')].map(s => s.id || 'save')",
            vec![],
        )
        .await
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        order[..10],
        [
            "block-key",
            "block-active",
            "block-sync",
            "block-categories",
            "block-extra",
            "block-orders",
            "block-payment",
            "block-delivery",
            "block-webhook",
            "save",
        ]
    );
    assert!(!text.contains('⟦'), "a missing string:\n{text}");
    screenshot(&b, "07-edit.uk").await;

    // Keyboard only: Tab visits every enabled control of the edit view, in order.
    let count = b
        .execute(
            "const els = [...document.querySelectorAll('a[href],button,input,select,textarea,summary,[tabindex]')]
               .filter(el => !el.disabled && el.tabIndex >= 0 && el.getClientRects().length > 0);
             els.forEach((el, i) => el.setAttribute('data-kb', String(i)));
             document.activeElement.blur();
             window.scrollTo(0, 0);
             return els.length;",
            vec![],
        )
        .await
        .unwrap()
        .as_u64()
        .unwrap() as usize;
    assert!(count > 40, "only {count} controls");
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..count + 10 {
        b.press(&[keys::TAB]).await.unwrap();
        // [data-kb of the focused control, what hides it (the sticky save bar) or null].
        let focus = b
            .execute(
                "const el = document.activeElement;
                 const kb = el && el.getAttribute('data-kb');
                 const bar = document.querySelector('.savebar');
                 if (!el || !bar || bar.contains(el)) return [kb, null];
                 const r = el.getBoundingClientRect(), s = bar.getBoundingClientRect();
                 const hidden = r.bottom > s.top && r.top < s.bottom;
                 return [kb, hidden ? (el.id || el.outerHTML.slice(0, 80)) : null];",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(
            focus[1],
            Value::Null,
            "the focused control is behind the save bar"
        );
        if let Some(i) = focus[0].as_str().and_then(|s| s.parse::<usize>().ok()) {
            seen.insert(i);
        }
        if seen.len() == count {
            break;
        }
    }
    let missed: Vec<usize> = (0..count).filter(|i| !seen.contains(i)).collect();
    assert!(missed.is_empty(), "Tab never reached controls {missed:?}");
    // And the keyboard acts: a switch toggles with Space.
    b.execute("document.getElementById('sync-categories').focus()", vec![])
        .await
        .unwrap();
    b.press(&[keys::SPACE]).await.unwrap();
    assert_eq!(value_of(&b, "#sync-categories").await, true);
    h.assert_clean_console(&b).await;

    // The switch: English, whole page, nothing missing.
    b.select_value("#lang", "en").await.unwrap();
    wait_text(&b, "#save", "SAVE").await;
    let text = b.text("main").await.unwrap();
    for label in [
        "API key",
        "Connect",
        "Sync products",
        "Order status mapping",
        "Copy",
    ] {
        assert!(text.contains(label), "{label} missing in:\n{text}");
    }
    assert!(!text.contains('⟦'), "a missing string:\n{text}");
    h.finish(b).await;

    // English by Accept-Language.
    let b = h.browser("en-US,en").await;
    h.open(&b, SHOP).await;
    b.wait_for("#block-connected", WAIT).await.unwrap();
    let text = b.text("main").await.unwrap();
    assert!(
        text.contains("Connected") && text.contains("Edit"),
        "{text}"
    );
    b.click("#edit").await.unwrap();
    b.wait_for("#save", WAIT).await.unwrap();
    let text = b.text("main").await.unwrap();
    assert!(!text.contains('⟦'), "a missing string:\n{text}");
    screenshot(&b, "07-edit.en").await;
    h.finish(b).await;
}

/// The headers of the page and its assets, and the token: out of the address bar at once,
/// never in a URL the server sees, never in a log line.
#[tokio::test]
async fn the_page_is_served_securely_and_the_token_never_leaves_the_browser_memory() {
    let _one = BROWSER.lock().await;
    let h = harness().await;
    let r = h
        .http
        .get(h.page_url(SHOP))
        .header("accept-language", "en-GB,en;q=0.9")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let headers = r.headers().clone();
    let html = r.text().await.unwrap();
    let csp = headers["content-security-policy"].to_str().unwrap();
    for part in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "require-trusted-types-for 'script'",
        &format!("frame-ancestors {}", h.platform),
    ] {
        assert!(csp.contains(part), "{part} missing from {csp}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert_eq!(headers["cache-control"], "no-cache");
    assert!(html.contains("<html lang=\"en\">"));
    // No inline script: every <script> has a src.
    for tag in html.split("<script").skip(1) {
        assert!(
            tag.trim_start().starts_with("type=\"module\" src="),
            "{tag}"
        );
    }
    let etag = headers["etag"].to_str().unwrap().to_string();
    let again = h
        .http
        .get(h.page_url(SHOP))
        .header("accept-language", "en-GB,en;q=0.9")
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    let asset = html
        .split("href=\"")
        .find_map(|p| p.split('"').next().filter(|s| s.ends_with("style.css")))
        .unwrap()
        .to_string();
    let r = h
        .http
        .get(format!("{}/v1/shops/{SHOP}/connection/{asset}", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["cache-control"]
        .to_str()
        .unwrap()
        .contains("immutable"));
    assert!(r.headers().contains_key("etag"));
    assert!(r.headers().contains_key("content-security-policy"));
    // The JSON API answers are never cached either.
    let (_, _) = h.api("GET", SHOP, "", None).await;
    let r = h
        .http
        .get(format!("{}/v1/shops/{SHOP}/connection", h.base))
        .bearer_auth(h.signer.mint(SHOP, 60))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["cache-control"], "no-store");

    let b = h.browser("uk").await;
    h.open(&b, SHOP).await;
    b.wait_for("#api-key", WAIT).await.unwrap();
    let url = b.current_url().await.unwrap();
    assert_eq!(url, h.page_url(SHOP), "the token stayed in the address bar");
    b.type_into("#api-key", KEY).await.unwrap();
    b.press(&[keys::ENTER]).await.unwrap();
    b.wait_for("#block-sync", WAIT).await.unwrap();
    h.assert_clean_console(&b).await;
    // A page framed by a site that is not the platform is refused by the browser.
    b.goto(&format!("{}/embed?shop={SHOP}", h.stranger))
        .await
        .unwrap();
    let frame = b.wait_for("#page", WAIT).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    b.switch_to_frame(&frame).await.unwrap();
    let framed = b
        .execute("return !!document.getElementById('app')", vec![])
        .await
        .unwrap_or(Value::Bool(false));
    assert_eq!(framed, false, "the page rendered inside a foreign frame");
    b.switch_to_top().await.unwrap();
    let refused = h.console_problems(&b).await;
    assert!(
        refused.iter().any(|l| l.contains("frame-ancestors")),
        "{refused:#?}"
    );
    b.quit().await;
    h.assert_tokens_stayed_secret();
}

/// Embedded by the platform with a token about to expire, the page asks the platform for a
/// fresh one over postMessage and carries on; a token pushed at it from another origin is
/// ignored.
#[tokio::test]
async fn an_expiring_token_is_renewed_through_the_platform_and_strangers_are_ignored() {
    let _one = BROWSER.lock().await;
    let h = harness().await;
    let b = h.browser("uk").await;
    b.goto(&format!("{}/embed?shop={SHOP}&ttl=5", h.platform))
        .await
        .unwrap();
    let frame = b.wait_for("#page", WAIT).await.unwrap();
    b.switch_to_frame(&frame).await.unwrap();
    b.wait_for("#api-key", WAIT).await.unwrap();
    assert!(h.renewals.load(Ordering::SeqCst) >= 1, "no renewal asked");
    // Past the first token's expiry: still working.
    tokio::time::sleep(Duration::from_secs(6)).await;
    b.type_into("#api-key", KEY).await.unwrap();
    b.click("#connect").await.unwrap();
    b.wait_for("#block-sync", WAIT).await.unwrap();
    b.switch_to_top().await.unwrap();
    let told = b.execute("return window.received", vec![]).await.unwrap();
    let told: Vec<&str> = told
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(told.contains(&"keycrm-settings:ready"), "{told:?}");
    assert!(told.contains(&"keycrm-settings:token-request"), "{told:?}");
    h.assert_clean_console(&b).await;

    // A window of a foreign origin opens the page and pushes a valid token at it: refused.
    b.goto(&format!("{}/opener?shop={SHOP}", h.stranger))
        .await
        .unwrap();
    b.click("#open").await.unwrap();
    let mut handles = Vec::new();
    for _ in 0..50 {
        handles = b.window_handles().await.unwrap();
        if handles.len() > 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    b.switch_to_window(handles.last().unwrap()).await.unwrap();
    b.wait_for("#session-msg", Duration::from_secs(30))
        .await
        .unwrap();
    assert!(b.find("#api-key").await.is_err());
    b.quit().await;
    h.assert_tokens_stayed_secret();
}

// ------------------------------------------------------------------ the article flow of issue 10
//
// Settings with the status mapping in both directions, webhook URLs readable at any time, dry
// runs of proposed settings, pushing skipped orders.

/// Sets an input's value as typing would end (an `input` and a `change` event).
async fn set_input(b: &Browser, css: &str, value: &str) {
    b.wait_for(css, WAIT).await.unwrap();
    b.execute(
        "const el = document.querySelector(arguments[0]);
         el.focus(); el.value = arguments[1];
         el.dispatchEvent(new Event('input', {bubbles: true}));
         el.dispatchEvent(new Event('change', {bubbles: true}));",
        vec![json!(css), json!(value)],
    )
    .await
    .unwrap();
}

/// The KeyCRM dictionaries the page was offered.
async fn keycrm_options(h: &Harness) -> Value {
    let (s, opts) = h.api("GET", SHOP, "/options", None).await;
    assert_eq!(s, 200, "{opts}");
    opts["keycrm"].clone()
}

/// Every block filled in the page, saved, and the same values read back after a reload.
#[tokio::test]
async fn every_block_is_saved_and_read_back() {
    let _one = BROWSER.lock().await;
    let h = harness().await;
    let b = h.browser("uk-UA,uk").await;
    h.open(&b, SHOP).await;
    b.type_into("#api-key", KEY).await.unwrap();
    b.click("#connect").await.unwrap();
    b.wait_for("#block-sync", WAIT).await.unwrap();
    let k = keycrm_options(&h).await;

    // Sync settings, with realtime stock (issue 13) in the same block.
    b.click("#sync-products").await.unwrap();
    b.click("#sync-categories").await.unwrap();
    assert_eq!(value_of(&b, "#realtime-stock").await, false);
    b.click("#realtime-stock").await.unwrap();
    wait_text(&b, "#block-sync", "протягом хвилини").await;
    // Categories: a root found by searching; its children come with it.
    let cats = h.sim.catalog(KEY).categories;
    let root = cats
        .iter()
        .find(|c| c.parent_id.is_none() && cats.iter().any(|x| x.parent_id == Some(c.id)))
        .unwrap()
        .clone();
    let child = cats
        .iter()
        .find(|c| c.parent_id == Some(root.id))
        .unwrap()
        .clone();
    b.type_into("#cats-search", &root.name).await.unwrap();
    b.click(&format!("#cat-{}", root.id)).await.unwrap();
    assert_eq!(value_of(&b, &format!("#cat-{}", child.id)).await, true);
    assert_eq!(
        b.execute(
            "return document.querySelector(arguments[0]).disabled",
            vec![json!(format!("#cat-{}", child.id))]
        )
        .await
        .unwrap(),
        true,
        "a child of a chosen category is included, not chosen again"
    );
    // Additional settings: each policy off its default.
    b.select_value("#match-key", "barcode").await.unwrap();
    b.select_value("#new-products", "publish").await.unwrap();
    b.select_value("#existing-products", "dont_update")
        .await
        .unwrap();
    b.select_value("#missing-products", "make_unavailable")
        .await
        .unwrap();
    set_input(&b, "#vanish-guard", "25").await;
    // Orders: type, source, statuses both ways (two KeyCRM statuses to one shop status).
    b.select_value("#order-sync", "orders").await.unwrap();
    let source = k["sources"][0]["id"].as_i64().unwrap();
    b.select_value("#source", &source.to_string())
        .await
        .unwrap();
    let statuses: Vec<i64> = k["order_statuses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_i64().unwrap())
        .collect();
    let from = [
        (statuses[0], "new"),
        (statuses[1], "new"),
        (statuses[2], "paid"),
        (statuses[3], "shipped"),
        (statuses[4], "done"),
    ];
    for (id, shop) in from {
        b.select_value(&format!("#of-{id}"), shop).await.unwrap();
    }
    let to = [
        ("new", statuses[0]),
        ("paid", statuses[2]),
        ("done", statuses[4]),
    ];
    for (shop, id) in to {
        b.select_value(&format!("#ot-{shop}"), &id.to_string())
            .await
            .unwrap();
    }
    let field = k["order_fields"][0]["uuid"].as_str().unwrap().to_string();
    b.select_value("#ad-gift", &field).await.unwrap();
    // Payment and delivery.
    let pay: Vec<i64> = k["payment_methods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_i64().unwrap())
        .collect();
    let ship: Vec<i64> = k["delivery_services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_i64().unwrap())
        .collect();
    b.select_value("#payment-cod", &pay[0].to_string())
        .await
        .unwrap();
    b.select_value("#payment-card", &pay[1].to_string())
        .await
        .unwrap();
    b.select_value("#delivery-np", &ship[0].to_string())
        .await
        .unwrap();
    b.select_value("#delivery-pickup", &ship[1].to_string())
        .await
        .unwrap();
    screenshot(&b, "08-filled.uk").await;

    // Save: the "Connected" card.
    b.click("#save").await.unwrap();
    b.wait_for("#block-connected", WAIT).await.unwrap();
    wait_text(&b, "#banner", "Налаштування збережено").await;
    let (_, conn) = h.api("GET", SHOP, "", None).await;
    let s = &conn["settings"];
    assert_eq!(s["sync_products"], true);
    assert_eq!(s["sync_categories"], true);
    assert_eq!(s["realtime_stock"], true);
    assert_eq!(s["category_filter"], json!([root.id]));
    assert_eq!(
        (
            s["match_key"].as_str(),
            s["new_products"].as_str(),
            s["existing_products"].as_str(),
            s["missing_products"].as_str()
        ),
        (
            Some("barcode"),
            Some("publish"),
            Some("dont_update"),
            Some("make_unavailable")
        )
    );
    assert_eq!(s["vanish_guard"], 0.25);
    assert_eq!(
        (s["order_sync"].as_str(), s["source_id"].as_i64()),
        (Some("orders"), Some(source))
    );
    let mut got_from: Vec<(i64, String)> = s["order_statuses"]["from_keycrm"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["keycrm_status_id"].as_i64().unwrap(),
                e["shop_status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    got_from.sort();
    let mut want_from: Vec<(i64, String)> = from.iter().map(|(i, s)| (*i, s.to_string())).collect();
    want_from.sort();
    assert_eq!(got_from, want_from);
    assert_eq!(
        s["order_statuses"]["to_keycrm"].as_array().unwrap().len(),
        3
    );
    assert_eq!(
        s["addon_fields"],
        json!([{"addon_id": "gift", "field_uuid": field}])
    );
    assert_eq!(s["payment_map"].as_array().unwrap().len(), 2);
    assert_eq!(s["delivery_map"].as_array().unwrap().len(), 2);
    screenshot(&b, "09-saved.uk").await;

    // A reload shows the same values in every block.
    h.open(&b, SHOP).await;
    b.click("#edit").await.unwrap();
    b.wait_for("#save", WAIT).await.unwrap();
    assert_eq!(value_of(&b, "#sync-products").await, true);
    assert_eq!(value_of(&b, "#sync-categories").await, true);
    assert_eq!(value_of(&b, "#realtime-stock").await, true);
    assert_eq!(value_of(&b, &format!("#cat-{}", root.id)).await, true);
    assert_eq!(value_of(&b, "#match-key").await, "barcode");
    assert_eq!(value_of(&b, "#new-products").await, "publish");
    assert_eq!(value_of(&b, "#existing-products").await, "dont_update");
    assert_eq!(value_of(&b, "#missing-products").await, "make_unavailable");
    assert_eq!(value_of(&b, "#vanish-guard").await, "25");
    assert_eq!(value_of(&b, "#order-sync").await, "orders");
    assert_eq!(value_of(&b, "#source").await, source.to_string());
    for (id, shop) in from {
        assert_eq!(value_of(&b, &format!("#of-{id}")).await, shop);
    }
    for (shop, id) in to {
        assert_eq!(value_of(&b, &format!("#ot-{shop}")).await, id.to_string());
    }
    assert_eq!(value_of(&b, "#ad-gift").await, field);
    assert_eq!(value_of(&b, "#payment-card").await, pay[1].to_string());
    assert_eq!(value_of(&b, "#delivery-pickup").await, ship[1].to_string());
    assert!(value_of(&b, "#hook-orders")
        .await
        .as_str()
        .unwrap()
        .starts_with(&format!("{}/v1/webhooks/keycrm/", h.base)));

    // The stock URL (issue 13): shown with the others, its own token, copyable, with the
    // steps of KeyCRM's stock webhook form.
    let stock_url = value_of(&b, "#hook-stock").await;
    assert!(
        stock_url
            .as_str()
            .unwrap_or_default()
            .starts_with(&format!("{}/v1/webhooks/keycrm/", h.base)),
        "{stock_url}"
    );
    assert_ne!(stock_url, value_of(&b, "#hook-orders").await);
    let steps = wait_text(&b, "#block-webhook", "Залишки").await;
    for needle in [
        "Як налаштувати вебхук залишків",
        "Додати вебхук",
        "Склади",
        "URL",
    ] {
        assert!(steps.contains(needle), "no «{needle}» in: {steps}");
    }
    b.set_permission("clipboard-read", "granted").await.unwrap();
    b.set_permission("clipboard-write", "granted")
        .await
        .unwrap();
    b.click("#hook-stock-copy").await.unwrap();
    wait_text(&b, "#hook-stock-copied", "Скопійовано").await;
    let clip = b
        .execute_async(
            "const done = arguments[arguments.length - 1];
             navigator.clipboard.readText().then(done, (e) => done('error: ' + e));",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(clip, stock_url);

    // The switch back off: saved off, and shown off after a reload.
    b.click("#realtime-stock").await.unwrap();
    b.click("#save").await.unwrap();
    b.wait_for("#block-connected", WAIT).await.unwrap();
    let (_, conn) = h.api("GET", SHOP, "", None).await;
    assert_eq!(conn["settings"]["realtime_stock"], false);
    h.open(&b, SHOP).await;
    b.click("#edit").await.unwrap();
    b.wait_for("#save", WAIT).await.unwrap();
    assert_eq!(value_of(&b, "#realtime-stock").await, false);
    h.finish(b).await;
}

/// A mapping the API refuses: its field errors appear next to the controls they name, and
/// nothing is saved.
#[tokio::test]
async fn an_invalid_mapping_is_shown_beside_its_field_and_nothing_is_saved() {
    let _one = BROWSER.lock().await;
    let h = harness().await;
    h.connect_by_api(SHOP).await;
    let b = h.browser("uk-UA,uk").await;
    h.open(&b, SHOP).await;
    b.click("#edit").await.unwrap();
    b.wait_for("#save", WAIT).await.unwrap();
    // Orders to be pushed, but no source and no payment mapping.
    b.select_value("#order-sync", "orders").await.unwrap();
    b.click("#save").await.unwrap();
    wait_text(&b, "#banner", "Нічого не збережено").await;
    let beside = b
        .execute(
            "const el = document.getElementById('source');
             const next = el.nextElementSibling;
             return next && next.classList.contains('field-error') ? next.dataset.field : null;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(beside, "source_id");
    assert_eq!(value_of(&b, "#source[aria-invalid='true']").await, "");
    // Every field error the API named is shown by a control (or listed in the banner).
    let shown = b
        .execute(
            "return [...document.querySelectorAll('.field-error')].map(e => e.dataset.field)",
            vec![],
        )
        .await
        .unwrap();
    assert!(
        shown.as_array().unwrap().len() >= 2,
        "only {shown} shown beside controls"
    );
    screenshot(&b, "10-invalid.uk").await;
    let (_, conn) = h.api("GET", SHOP, "", None).await;
    assert_eq!(conn["version"], 1, "something was saved");
    assert_eq!(conn["settings"]["order_sync"], "none");
    h.finish(b).await;
}

/// Pipelines: two URLs; Copy puts one on the clipboard; that URL, set in a KeyCRM trigger,
/// brings a card's status change to the shop order.
#[tokio::test]
async fn pipelines_show_two_urls_and_a_copied_url_brings_status_changes_to_the_shop() {
    let _one = BROWSER.lock().await;
    let h = harness().await;
    h.connect_by_api(SHOP).await;
    let k = keycrm_options(&h).await;
    let b = h.browser("uk-UA,uk").await;
    h.open(&b, SHOP).await;
    b.click("#edit").await.unwrap();
    b.wait_for("#save", WAIT).await.unwrap();
    b.select_value("#order-sync", "pipelines").await.unwrap();
    b.select_value("#source", &k["sources"][0]["id"].to_string())
        .await
        .unwrap();
    let pipeline = &k["pipelines"][0];
    let pid = pipeline["pipeline"]["id"].as_i64().unwrap();
    let st: Vec<i64> = pipeline["statuses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_i64().unwrap())
        .collect();
    for (sid, shop) in [(st[0], "new"), (st[1], "paid"), (st[2], "done")] {
        b.select_value(&format!("#cf-{pid}-{sid}"), shop)
            .await
            .unwrap();
    }
    for (shop, sid) in [("new", st[0]), ("paid", st[1]), ("done", st[2])] {
        b.select_value(&format!("#ct-{shop}"), &format!("{pid}:{sid}"))
            .await
            .unwrap();
    }
    b.select_value("#default-pipeline", &pid.to_string())
        .await
        .unwrap();
    let pay = k["payment_methods"][0]["id"].to_string();
    b.select_value("#payment-cod", &pay).await.unwrap();
    b.select_value("#payment-card", &pay).await.unwrap();
    b.click("#save").await.unwrap();
    b.wait_for("#block-connected", WAIT).await.unwrap();
    b.click("#edit").await.unwrap();
    b.wait_for("#hook-cards", WAIT).await.unwrap();
    let orders_url = value_of(&b, "#hook-orders").await;
    let cards_url = value_of(&b, "#hook-cards").await;
    for u in [&orders_url, &cards_url] {
        assert!(
            u.as_str()
                .unwrap_or_default()
                .starts_with(&format!("{}/v1/webhooks/keycrm/", h.base)),
            "{u}"
        );
    }
    assert_ne!(orders_url, cards_url);
    wait_text(&b, "#block-webhook", "Зміна статусу картки").await;
    screenshot(&b, "11-webhooks.uk").await;

    // Copy: the clipboard holds the URL.
    b.set_permission("clipboard-read", "granted").await.unwrap();
    b.set_permission("clipboard-write", "granted")
        .await
        .unwrap();
    b.click("#hook-cards-copy").await.unwrap();
    wait_text(&b, "#hook-cards-copied", "Скопійовано").await;
    let clip = b
        .execute_async(
            "const done = arguments[arguments.length - 1];
             navigator.clipboard.readText().then(done, (e) => done('error: ' + e));",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(clip, cards_url);

    // The merchant pastes it into KeyCRM's "Card status change" trigger; a card moves on.
    h.sim.set_webhook_url(
        KEY,
        "lead.change_lead_status",
        Some(clip.as_str().unwrap().to_string()),
    );
    // A shop order pushed as a card by order-push, as the saved settings say.
    let conn_id = h.connection(SHOP).await.id;
    h.shop.add_order(SHOP, "20001", "new");
    let sku = h.sim.catalog(KEY).offers[0].sku.clone();
    h.order_q
        .send(queue::Outgoing::new(order_event(SHOP, "20001", &sku)))
        .await
        .unwrap();
    let mut card = None;
    for _ in 0..100 {
        card = OrderLedger::get(h.table.as_ref(), &conn_id, "20001")
            .await
            .unwrap()
            .and_then(|e| e.keycrm_id);
        if card.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let card = card.expect("the order became a KeyCRM card");
    h.sim.change_card_status(KEY, card, st[1]).await.unwrap();
    let mut status = None;
    for _ in 0..100 {
        status = h.shop.order_status(SHOP, "20001");
        if status.as_deref() == Some("paid") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        status.as_deref(),
        Some("paid"),
        "the trigger did not reach the shop"
    );
    h.finish(b).await;
}

/// A policy change previewed before saving: the dry run of the page's settings reports what
/// would happen, and neither the shop nor the saved settings change.
#[tokio::test]
async fn a_policy_change_is_previewed_before_it_is_saved() {
    let _one = BROWSER.lock().await;
    let h = harness().await;
    h.connect_by_api(SHOP).await;
    let b = h.browser("uk-UA,uk").await;
    h.open(&b, SHOP).await;
    b.click("#edit").await.unwrap();
    b.wait_for("#preview", WAIT).await.unwrap();
    b.click("#sync-products").await.unwrap();
    b.select_value("#new-products", "publish").await.unwrap();
    b.click("#preview").await.unwrap();
    b.wait_for(
        "#run-result .run[data-state='completed']",
        Duration::from_secs(90),
    )
    .await
    .unwrap();
    let report = b.text("#run-result").await.unwrap();
    assert!(
        report.contains("Результат попереднього перегляду"),
        "{report}"
    );
    assert!(report.contains("буде створено"), "{report}");
    screenshot(&b, "12-preview.uk").await;
    assert!(
        h.shop.products(SHOP).is_empty(),
        "the preview wrote to the shop"
    );
    let (_, conn) = h.api("GET", SHOP, "", None).await;
    assert_eq!(conn["version"], 1);
    assert_eq!(conn["settings"]["new_products"], "hide");
    assert_eq!(conn["settings"]["sync_products"], false);
    h.finish(b).await;
}

/// Orders placed while the connection was off are pushed from the status block, once.
#[tokio::test]
async fn skipped_orders_are_pushed_from_the_page() {
    let _one = BROWSER.lock().await;
    let h = harness().await;
    let conn = h.connect_by_api(SHOP).await;
    let conn_id = conn["id"].as_str().unwrap().to_string();
    h.set_settings(SHOP, push_orders).await;
    let (s, _) = h
        .api("PATCH", SHOP, "", Some(json!({"active": false})))
        .await;
    assert_eq!(s, 200);
    let sku = h.sim.catalog(KEY).offers[0].sku.clone();
    h.shop.add_order(SHOP, "30001", "new");
    h.order_q
        .send(queue::Outgoing::new(order_event(SHOP, "30001", &sku)))
        .await
        .unwrap();
    let mut skipped = false;
    for _ in 0..100 {
        if let Some(e) = OrderLedger::get(h.table.as_ref(), &conn_id, "30001")
            .await
            .unwrap()
        {
            if e.state == store::LedgerState::Skipped {
                skipped = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        skipped,
        "the order was not skipped while the connection was off"
    );
    let (s, _) = h
        .api("PATCH", SHOP, "", Some(json!({"active": true})))
        .await;
    assert_eq!(s, 200);

    let b = h.browser("uk-UA,uk").await;
    h.open(&b, SHOP).await;
    wait_text(&b, "#count-skipped", "1").await;
    b.click("#push-skipped").await.unwrap();
    wait_text(&b, "#status-msg", "1").await;
    let mut placed = None;
    for _ in 0..100 {
        placed = OrderLedger::get(h.table.as_ref(), &conn_id, "30001")
            .await
            .unwrap()
            .and_then(|e| e.keycrm_id);
        if placed.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(placed.is_some(), "the skipped order never reached KeyCRM");
    // Pressing again queues nothing twice.
    b.click("#push-skipped").await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(h.sim.orders(KEY).len(), 1);
    h.finish(b).await;
}

/// The settings changed under the page (another tab, a toggle): the save is refused with a
/// reload offered, and the reload shows the newer settings.
#[tokio::test]
async fn a_version_conflict_offers_a_reload() {
    let _one = BROWSER.lock().await;
    let h = harness().await;
    h.connect_by_api(SHOP).await;
    let b = h.browser("uk-UA,uk").await;
    h.open(&b, SHOP).await;
    b.click("#edit").await.unwrap();
    b.wait_for("#save", WAIT).await.unwrap();
    // Meanwhile, elsewhere: product sync turned on and saved.
    let (_, conn) = h.api("GET", SHOP, "", None).await;
    let mut settings = conn["settings"].clone();
    settings["sync_products"] = json!(true);
    let (s, body) = h
        .api(
            "PUT",
            SHOP,
            "/settings",
            Some(json!({"version": conn["version"], "settings": settings})),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    // The page, still on the old version, saves its own change.
    b.select_value("#missing-products", "hide").await.unwrap();
    b.click("#save").await.unwrap();
    wait_text(&b, "#banner", "змінилися").await;
    assert!(h.connection(SHOP).await.settings.sync_products);
    b.click("#banner-action").await.unwrap();
    b.wait_until(
        "the reloaded settings",
        "const el = document.getElementById('sync-products'); return el && el.checked;",
        WAIT,
    )
    .await
    .unwrap();
    assert_eq!(value_of(&b, "#missing-products").await, "nothing");
    h.finish(b).await;
}
