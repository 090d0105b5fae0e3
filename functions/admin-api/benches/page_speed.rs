//! Settings page speed (figures go to BENCHMARKS.md, section "Settings page").
//!
//! `cargo bench -p admin-api --bench page_speed`
//!
//! The admin API router as `main.rs` wires it for Lambda: with `AWS_ENDPOINT_URL` set (the
//! emulator), the connection store, options cache, journal, secrets and the shared DynamoDB
//! rate gate live on it; without, their in-memory twins and the in-process gate stand in.
//! KeyCRM is the simulator at KeyCRM's real limit (60 requests per real minute per key) with
//! `BENCH_KEYCRM_LATENCY_MS` (default 150) added to every answer, as KeyCRM's own response
//! time. The shop is the in-memory shop.
//!
//! 1. Idle key (a fresh key per round, `BENCH_ROUNDS`, default 5): connect; open the page's
//!    data (`GET /connection`, then `GET /options` with a cold cache); open it again (cache);
//!    save settings (the cache is young); save again after the cache expired.
//! 2. Busy key: the same while a catalog sync spends its share of the key (background
//!    priority, as catalog-sync does), running for a minute before and during the round.
//! 3. KeyCRM that never answers in time (every answer delayed two minutes), and KeyCRM
//!    answering 429 with `Retry-After` (the key spent by another client): how long each admin
//!    request takes to answer, and with what, under the default 25 s deadline.
//!
//! The page's weight (HTML + JS + CSS, uncompressed) is printed first.

use admin_api::{AdminApi, AdminConfig, TokenSigner};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use keycrm::{ClientConfig, LocalRateGate, RateBudget, RateGate};
use keycrm_sim::{AccountSpec, Faults, SimConfig, SimHandle};
use queue::MemoryQueue;
use runtime::KeycrmClients;
use serde_json::{json, Value};
use shop::{MemoryShop, NamedItem, ShopReference};
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::{
    ConnectionStore, DynamoRateGate, DynamoTable, LinkStore, MemoryConnections, MemoryJournal,
    MemoryLedger, MemoryLinks, MemoryReferenceCache, MemorySecrets, MemorySync, OrderLedger,
    ReferenceCache, SecretStore, SecretsManager, StatusJournal, SyncStore,
};
use tower::ServiceExt;

const SIGNING_KEY: &str = "bench-page-signing-key-0123456789abcdef";

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn key(i: usize) -> String {
    format!("bench-page-key-{i:02}-0123456789abcdef0123456789")
}

fn shop_reference() -> ShopReference {
    let n = |id: &str| NamedItem {
        id: id.into(),
        name: id.to_uppercase(),
    };
    ShopReference {
        order_statuses: vec![n("new"), n("paid"), n("done")],
        order_addons: vec![],
        payment_methods: vec![n("cod"), n("card")],
        delivery_methods: vec![n("np")],
        currency: "UAH".into(),
    }
}

/// The stores and the gate: on the emulator when there is one, as on Lambda.
struct Ports {
    connections: Arc<dyn ConnectionStore>,
    secrets: Arc<dyn SecretStore>,
    journal: Arc<dyn StatusJournal>,
    cache: Arc<dyn ReferenceCache>,
    ledger: Arc<dyn OrderLedger>,
    sync: Arc<dyn SyncStore>,
    links: Arc<dyn LinkStore>,
    gate: Arc<dyn RateGate>,
    what: &'static str,
}

async fn ports() -> Ports {
    if std::env::var("AWS_ENDPOINT_URL").is_ok_and(|v| !v.is_empty()) {
        let client = DynamoTable::client_from_env().await;
        let name = format!("bench-page-{}", std::process::id());
        let table = DynamoTable::create(&client, &name)
            .await
            .expect("a table on the emulator");
        let gate = Arc::new(DynamoRateGate::new(table.clone(), RateBudget::keycrm()));
        let t = Arc::new(table);
        Ports {
            connections: t.clone(),
            secrets: Arc::new(SecretsManager::from_env().await),
            journal: t.clone(),
            cache: t.clone(),
            ledger: t.clone(),
            sync: t.clone(),
            links: t,
            gate,
            what: "DynamoDB, Secrets Manager and the rate gate on the emulator",
        }
    } else {
        Ports {
            connections: Arc::new(MemoryConnections::default()),
            secrets: Arc::new(MemorySecrets::default()),
            journal: Arc::new(MemoryJournal::default()),
            cache: Arc::new(MemoryReferenceCache::new()),
            ledger: Arc::new(MemoryLedger::new()),
            sync: Arc::new(MemorySync::new()),
            links: Arc::new(MemoryLinks::new()),
            gate: Arc::new(LocalRateGate::new(RateBudget::keycrm())),
            what: "in-memory stores and gate (set AWS_ENDPOINT_URL for the emulator)",
        }
    }
}

struct Bench {
    router: Router,
    signer: TokenSigner,
    sim: SimHandle,
}

impl Bench {
    async fn call(
        &self,
        method: &str,
        shop: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value, Duration) {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("/v1/shops/{shop}/connection{path}"))
            .header(
                "authorization",
                format!("Bearer {}", self.signer.mint(shop, 600)),
            )
            .header("host", "bench.example.com");
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req
            .body(
                body.map(|b| Body::from(b.to_string()))
                    .unwrap_or_else(Body::empty),
            )
            .unwrap();
        let started = Instant::now();
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 24)
            .await
            .unwrap();
        let took = started.elapsed();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            took,
        )
    }

    fn requests(&self) -> u64 {
        self.sim.stats().total_requests
    }
}

/// One measured step: wall time and KeyCRM requests it made.
#[derive(Default)]
struct Step {
    times: Vec<Duration>,
    requests: Vec<u64>,
}

impl Step {
    fn add(&mut self, t: Duration, r: u64) {
        self.times.push(t);
        self.requests.push(r);
    }
    fn row(&self, name: &str) {
        let mut t = self.times.clone();
        t.sort();
        let p50 = t.get(t.len() / 2).copied().unwrap_or_default();
        let max = t.last().copied().unwrap_or_default();
        let reqs = self.requests.iter().sum::<u64>() as f64 / self.requests.len().max(1) as f64;
        println!(
            "| {name} | {} | {:.0} ms | {:.0} ms | {reqs:.1} |",
            t.len(),
            p50.as_secs_f64() * 1000.0,
            max.as_secs_f64() * 1000.0
        );
    }
}

async fn measure<F, Fut>(b: &Bench, step: &mut Step, f: F) -> (StatusCode, Value)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = (StatusCode, Value, Duration)>,
{
    let before = b.requests();
    let (status, body, took) = f().await;
    step.add(took, b.requests() - before);
    (status, body)
}

/// Connect, open, open again, save, save with an expired cache: one round on one key.
async fn round(b: &Bench, ports: &Ports, shop: &str, key: &str, steps: &mut [Step; 6]) {
    let (s, conn) = measure(b, &mut steps[0], || {
        b.call("PUT", shop, "", Some(json!({"api_key": key})))
    })
    .await;
    assert!(s.is_success(), "connect: {s} {conn}");
    let id = conn["id"].as_str().unwrap_or_default().to_string();
    let (s, conn) = measure(b, &mut steps[1], || b.call("GET", shop, "", None)).await;
    assert_eq!(s, StatusCode::OK, "{conn}");
    let (s, opts) = measure(b, &mut steps[2], || b.call("GET", shop, "/options", None)).await;
    assert_eq!(s, StatusCode::OK, "{opts}");
    assert_eq!(opts["cached"], false);
    let (s, again) = measure(b, &mut steps[3], || b.call("GET", shop, "/options", None)).await;
    assert_eq!((s, again["cached"].as_bool()), (StatusCode::OK, Some(true)));
    let category = opts["keycrm"]["categories"][0]["id"].clone();
    let pay = opts["keycrm"]["payment_methods"][0]["id"].clone();
    let settings = |on: bool| {
        json!({
            "sync_products": on, "sync_categories": on, "category_filter": [category],
            "payment_map": [{"shop_method": "cod", "keycrm_method_id": pay},
                            {"shop_method": "card", "keycrm_method_id": pay}],
        })
    };
    let version = conn["version"].as_u64().unwrap_or(1);
    let (s, saved) = measure(b, &mut steps[4], || {
        b.call(
            "PUT",
            shop,
            "/settings",
            Some(json!({"version": version, "settings": settings(true)})),
        )
    })
    .await;
    assert_eq!(s, StatusCode::OK, "{saved}");
    // The cache has expired (or was never filled): the save reads both sides live.
    ports.cache.invalidate(&id).await.unwrap();
    let version = saved["version"].as_u64().unwrap_or(2);
    let (s, saved) = measure(b, &mut steps[5], || {
        b.call(
            "PUT",
            shop,
            "/settings",
            Some(json!({"version": version, "settings": settings(false)})),
        )
    })
    .await;
    assert_eq!(s, StatusCode::OK, "{saved}");
}

const STEP_NAMES: [&str; 6] = [
    "connect (`PUT /connection`)",
    "open: `GET /connection`",
    "open: `GET /options`, cold cache",
    "open again: `GET /options`, cached",
    "save (`PUT /settings`), cache young",
    "save (`PUT /settings`), cache expired",
];

fn table(title: &str, steps: &[Step; 6]) {
    println!("\n{title}\n");
    println!("| step | runs | p50 | max | KeyCRM requests |");
    println!("|---|---:|---:|---:|---:|");
    for (s, name) in steps.iter().zip(STEP_NAMES) {
        s.row(name);
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

async fn run() {
    let rounds = env_u64("BENCH_ROUNDS", 5) as usize;
    let latency = env_u64("BENCH_KEYCRM_LATENCY_MS", 150);
    let keys: Vec<String> = (0..rounds + 3).map(key).collect();
    let sim = keycrm_sim::start(
        SimConfig {
            accounts: keys
                .iter()
                .enumerate()
                .map(|(i, k)| AccountSpec {
                    api_key: k.clone(),
                    seed: 100 + i as u64,
                    products: 60,
                    pipelines_enabled: true,
                })
                .collect(),
            rate_limit_per_minute: 60,
            time_scale: 1.0,
            public_base_url: None,
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    sim.set_faults(Faults {
        latency_ms: latency,
        ..Faults::default()
    });
    let ports = ports().await;
    let shop = Arc::new(MemoryShop::new());
    for i in 0..keys.len() {
        shop.set_reference(&format!("bench-shop-{i}"), shop_reference());
    }
    let signer = TokenSigner::new(SIGNING_KEY).unwrap();
    // As main.rs: KeyCRM calls time out after 10 s, the request answers within 25 s.
    let template = ClientConfig {
        timeout: Duration::from_secs(10),
        ..ClientConfig::default()
    };
    let clients = Arc::new(KeycrmClients::new(
        ports.secrets.clone(),
        ports.gate.clone(),
        template,
    ));
    let config = AdminConfig::new(
        format!("bench/{}/keycrm/", std::process::id()),
        sim.base_url(),
    );
    let router = admin_api::router(AdminApi {
        config,
        signer: signer.clone(),
        token_key: store::TokenKey::generate(),
        links: ports.links.clone(),
        connections: ports.connections.clone(),
        secrets: ports.secrets.clone(),
        journal: ports.journal.clone(),
        cache: ports.cache.clone(),
        ledger: ports.ledger.clone(),
        sync: ports.sync.clone(),
        clients: clients.clone(),
        shop,
        order_queue: Arc::new(MemoryQueue::new("orders")),
        sync_queue: Arc::new(MemoryQueue::new("sync")),
    });
    let b = Bench {
        router,
        signer,
        sim,
    };
    let files = admin_api::page::page_files();
    let weight: usize = files.iter().map(|(_, n)| n).sum();
    println!(
        "Settings page weight: {weight} bytes uncompressed in {} files (HTML + JS + CSS)",
        files.len()
    );
    println!("Settings page speed: {}; KeyCRM simulator at 60 requests/min per key, {latency} ms per answer.", ports.what);

    // 1. Idle keys.
    let mut steps: [Step; 6] = Default::default();
    for (i, key) in keys.iter().enumerate().take(rounds) {
        round(&b, &ports, &format!("bench-shop-{i}"), key, &mut steps).await;
    }
    table("1. Idle key (a fresh key per round)", &steps);

    // 2. A key a catalog sync is using: background requests at its share of the budget.
    let busy = keys[rounds].clone();
    let sync_client = clients
        .for_key(&b.sim.base_url(), keycrm::ApiKey::new(busy.clone()))
        .unwrap()
        .with_priority(keycrm::Priority::Background);
    let sync_requests = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = sync_requests.clone();
    let sync = tokio::spawn(async move {
        loop {
            if sync_client.verify_key().await.is_ok() {
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    });
    let warm_up = Duration::from_secs(env_u64("BENCH_SYNC_WARMUP_SECS", 65));
    tokio::time::sleep(warm_up).await;
    let before = sync_requests.load(std::sync::atomic::Ordering::Relaxed);
    let mut steps: [Step; 6] = Default::default();
    let started = Instant::now();
    round(
        &b,
        &ports,
        &format!("bench-shop-{rounds}"),
        &busy,
        &mut steps,
    )
    .await;
    let during = sync_requests.load(std::sync::atomic::Ordering::Relaxed) - before;
    let took = started.elapsed();
    sync.abort();
    table(
        &format!(
            "2. Key shared with a running catalog sync ({before} sync requests in the {} s before, {during} during the round's {:.1} s; the request counts include the sync's)",
            warm_up.as_secs(),
            took.as_secs_f64()
        ),
        &steps,
    );

    // 3. KeyCRM that does not answer in time, and KeyCRM rate-limiting us.
    println!("\n3. KeyCRM misbehaving (default 25 s request deadline)\n");
    println!("| KeyCRM | request | answered after | status | code | Retry-After |");
    println!("|---|---|---:|---:|---|---:|");
    let shop = format!("bench-shop-{}", rounds + 1);
    let (s, _, _) = b
        .call("PUT", &shop, "", Some(json!({"api_key": keys[rounds + 1]})))
        .await;
    assert!(s.is_success());
    b.sim.set_faults(Faults {
        latency_ms: 120_000,
        ..Faults::default()
    });
    for (what, method, path, body) in [
        ("`GET /options`", "GET", "/options?refresh=true", None),
        (
            "connect (`PUT /connection`)",
            "PUT",
            "",
            Some(json!({"api_key": keys[rounds + 1]})),
        ),
    ] {
        let (s, v, took) = b.call(method, &shop, path, body).await;
        println!(
            "| stalled (answers after 120 s) | {what} | {:.1} s | {} | {} | {} |",
            took.as_secs_f64(),
            s.as_u16(),
            v["error"]["code"].as_str().unwrap_or("-"),
            retry_in(&v)
        );
    }
    b.sim.set_faults(Faults {
        latency_ms: latency,
        ..Faults::default()
    });
    // Another client (another Lambda, another integration on the same key) already spent the
    // minute KeyCRM counts: KeyCRM answers 429 with Retry-After.
    let shop = format!("bench-shop-{}", rounds + 2);
    let k = &keys[rounds + 2];
    let (s, _, _) = b.call("PUT", &shop, "", Some(json!({"api_key": k}))).await;
    assert!(s.is_success());
    let raw = reqwest::Client::new();
    for _ in 0..70 {
        let _ = raw
            .get(format!("{}/order/source", b.sim.base_url()))
            .bearer_auth(k)
            .send()
            .await;
    }
    let (s, v, took) = b.call("GET", &shop, "/options?refresh=true", None).await;
    println!(
        "| 429 with Retry-After (key spent elsewhere) | `GET /options` | {:.1} s | {} | {} | {} |",
        took.as_secs_f64(),
        s.as_u16(),
        v["error"]["code"].as_str().unwrap_or("-"),
        retry_in(&v)
    );
}

/// The "try again in N s" of a busy answer.
fn retry_in(v: &Value) -> String {
    v["error"]["message"]
        .as_str()
        .and_then(|m| m.split("try again in ").nth(1))
        .map(|x| x.trim_end_matches(" s").to_string())
        .unwrap_or_else(|| "-".into())
}
