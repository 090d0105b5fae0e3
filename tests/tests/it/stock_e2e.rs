//! Realtime stock end to end: the KeyCRM simulator changes stock (orders reserving and
//! releasing, `PUT /offers/stocks`) and fires its stock webhook at the receiver served on
//! loopback; the receiver records the signal in DynamoDB (moto) and schedules a flush on SQS
//! (moto); stock-apply consumes it, reads `GET /offers/stocks` through the shared DynamoDB
//! rate gate and writes the demo shop over the platform's HTTP contract. Links come from a
//! real catalog sync first.

use async_trait::async_trait;
use axum::routing::post;
use axum::Router;
use catalog_sync::{kit, Config, Deps, Engine, JobOutcome};
use e2e_tests::emulator;
use keycrm::{ApiKey, ClientConfig, GateError, Priority, RateBudget, RateGate, Slot};
use keycrm_sim::{AccountSpec, OfferInfo, SimConfig, SimHandle, StockWebhook};
use mapping::settings::{DeliveryLink, PaymentLink};
use mapping::status_map::OrderStatusMap;
use mapping::{OrderSyncType, Settings};
use queue::{MemoryQueue, Message, Queue, SqsQueue};
use runtime::KeycrmClients;
use serde_json::{json, Value};
use shop::{HttpShop, MemoryShop, ShopCatalog};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use stock_apply::{
    ConsumerOptions, FlushConfig, FlushJob, Flusher, KeycrmStock, RetryPolicy, StockApplier,
};
use store::{
    tokens, ConnectionStore, DynamoRateGate, DynamoTable, LinkStore, MemorySecrets, SecretStore,
    StatusJournal, StockStore, SyncKind, WebhookKind,
};
use tokio::task::JoinHandle;

const KEY: &str = "stock-key";
const CONN: &str = "conn-stock";
const SHOP: &str = "shop-stock";
const SECRET: &str = "shop-keycrm/test/keycrm/conn-stock";

/// One slot the shared gate handed out.
#[derive(Debug, Clone)]
struct Grant {
    user: &'static str,
    priority: Priority,
    asked: Instant,
    /// When `acquire_until` returned (the gate's storage latency included).
    granted: Instant,
    /// For a background slot: the time the gate booked it (wall-clock µs), read back from
    /// the gate's item. Exact, unlike `granted`, which is late by however long the emulator
    /// took to confirm the booking.
    booked_bg_us: Option<i64>,
}

type GateLog = Arc<Mutex<Vec<Grant>>>;

/// Records every slot the shared gate hands out to one user: who, at which priority, when
/// asked, when granted.
struct RecordingGate {
    user: &'static str,
    inner: Arc<dyn RateGate>,
    /// The table and budget of the DynamoDB gate behind `inner`.
    table: DynamoTable,
    budget: RateBudget,
    log: GateLog,
}

impl RecordingGate {
    /// The background slot just booked on `key`: the gate advances `bg_tat_us` to the booked
    /// time plus one background interval, and only background bookings move it.
    async fn booked_background(&self, key: &str) -> Option<i64> {
        let item = self
            .table
            .client
            .get_item()
            .table_name(&self.table.name)
            .set_key(Some(store::dynamo::key(format!("GATE#{key}"), "GATE")))
            .consistent_read(true)
            .send()
            .await
            .ok()?
            .item?;
        let bg_tat: i64 = store::dynamo::get_n(&item, "bg_tat_us")?;
        Some(bg_tat - self.budget.background_interval_us())
    }
}

#[async_trait]
impl RateGate for RecordingGate {
    async fn acquire_until(
        &self,
        key: &str,
        priority: Priority,
        latest_us: Option<i64>,
    ) -> Result<Slot, GateError> {
        let asked = Instant::now();
        let slot = self.inner.acquire_until(key, priority, latest_us).await?;
        if matches!(slot, Slot::Granted(_)) {
            let granted = Instant::now();
            let booked_bg_us = match priority {
                Priority::Background => self.booked_background(key).await,
                Priority::Interactive => None,
            };
            self.log.lock().unwrap().push(Grant {
                user: self.user,
                priority,
                asked,
                granted,
                booked_bg_us,
            });
        }
        Ok(slot)
    }
    async fn penalize(&self, key: &str, retry_after: Duration) -> Result<(), GateError> {
        self.inner.penalize(key, retry_after).await
    }
}

struct World {
    sim: SimHandle,
    shop: Arc<MemoryShop>,
    table: Arc<DynamoTable>,
    flushes: Arc<SqsQueue>,
    dlq: Arc<SqsQueue>,
    gate_log: GateLog,
    /// The shared DynamoDB gate itself (not recorded).
    gate: Arc<dyn RateGate>,
    /// KeyCRM clients of order push: the same key and budget as stock-apply's.
    order_clients: Arc<KeycrmClients>,
    applier: Arc<StockApplier>,
    stock_url: String,
    base: String,
    http: reqwest::Client,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for World {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn stock_settings() -> Settings {
    Settings {
        sync_products: true,
        realtime_stock: true,
        // what order push needs, for the competing-order test
        order_sync: OrderSyncType::Orders,
        source_id: Some(1),
        order_statuses: OrderStatusMap::from_legacy(vec![("new".to_string(), 1)]),
        payment_map: vec![PaymentLink {
            shop_method: "cod".into(),
            keycrm_method_id: 1,
        }],
        delivery_map: vec![DeliveryLink {
            shop_method: "nova_poshta".into(),
            keycrm_service_id: 3,
        }],
        ..Settings::default()
    }
}

struct Setup {
    products: usize,
    scale: f64,
    consumer: bool,
    /// Run a full catalog sync first (links and shop products).
    sync: bool,
}

async fn world(s: Setup) -> World {
    let table = Arc::new(emulator::table().await);
    let sim = keycrm_sim::start(
        SimConfig {
            accounts: vec![AccountSpec {
                api_key: KEY.into(),
                seed: 23,
                products: s.products,
                pipelines_enabled: false,
            }],
            rate_limit_per_minute: 60,
            time_scale: s.scale,
            public_base_url: None,
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let mem = Arc::new(MemoryShop::new());
    let (addr, _) = shop::demo_server::serve(
        mem.clone(),
        "shop-token".into(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let http_shop: Arc<dyn ShopCatalog> =
        Arc::new(HttpShop::new(&format!("http://{addr}/v1"), "shop-token").unwrap());
    let secrets = Arc::new(MemorySecrets::default());
    let key = ApiKey::new(KEY);
    secrets.put(SECRET, &key).await.unwrap();
    // The shared per-key budget, on DynamoDB, on the simulator's clock; each user's slots
    // are recorded.
    let budget = RateBudget::keycrm_scaled(s.scale);
    let shared: Arc<dyn RateGate> = Arc::new(DynamoRateGate::new((*table).clone(), budget.clone()));
    let gate_log: GateLog = Arc::default();
    let clients_for = |user| {
        Arc::new(KeycrmClients::new(
            secrets.clone(),
            Arc::new(RecordingGate {
                user,
                inner: shared.clone(),
                table: (*table).clone(),
                budget: budget.clone(),
                log: gate_log.clone(),
            }),
            ClientConfig::with_base_url(sim.base_url()),
        ))
    };
    let clients = clients_for("stock");
    let order_clients = clients_for("orders");
    // The stock URL's token derives from the webhook token key and the stock generation.
    let token_key = tokens::TokenKey::generate();
    let stock_token = tokens::derive(&token_key, CONN, WebhookKind::Stock, 1);
    let mut conn = kit::connection(CONN, SHOP, &sim.base_url(), SECRET, &key, stock_settings());
    conn.webhook_generations.stock = 1;
    ConnectionStore::create(table.as_ref(), &conn)
        .await
        .unwrap();

    // Links and shop products from a real full sync.
    if s.sync {
        full_sync(&table, &http_shop, &clients).await;
    }

    let (q, dlq) = emulator::queue(Some(3)).await;
    let flushes = Arc::new(q);
    let dlq = Arc::new(dlq.unwrap());
    let config = FlushConfig {
        window: Duration::from_secs(1),
        grace: Duration::from_secs(10),
        lease: Duration::from_secs(90),
        budget: Duration::from_secs(60),
    };
    let intake = webhook::StockIntake::new(table.clone(), flushes.clone(), table.clone(), config);
    let receiver = webhook::Receiver::new(
        table.clone(),
        Arc::new(MemoryQueue::new("status-updates")),
        table.clone(),
        token_key.clone(),
    )
    .with_stock(intake);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = webhook::router(Arc::new(receiver));
    let mut tasks = vec![tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    })];
    let flusher = Flusher::new(
        table.clone(),
        table.clone(),
        table.clone(),
        http_shop,
        Arc::new(KeycrmStock {
            clients: clients.clone(),
        }),
        table.clone(),
        flushes.clone(),
        config,
    );
    let applier = Arc::new(StockApplier::new(
        flusher,
        RetryPolicy {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(2),
            max_receives: 3,
        },
    ));
    if s.consumer {
        tasks.push(tokio::spawn(stock_apply::run_queue_consumer(
            applier.clone(),
            flushes.clone(),
            Some(dlq.clone()),
            ConsumerOptions {
                batch: 10,
                wait: Duration::from_secs(1),
                visibility: Duration::from_secs(30),
            },
            std::future::pending(),
        )));
    }
    let stock_url = format!("{base}/v1/webhooks/keycrm/{CONN}/{stock_token}");
    sim.set_stock_webhooks(
        KEY,
        vec![StockWebhook {
            name: "shop".into(),
            url: stock_url.clone(),
            warehouses: vec![],
        }],
    );
    World {
        sim,
        shop: mem,
        table,
        flushes,
        dlq,
        gate_log,
        gate: shared,
        order_clients,
        applier,
        stock_url,
        base,
        http: reqwest::Client::new(),
        tasks,
    }
}

async fn full_sync(
    table: &Arc<DynamoTable>,
    shop: &Arc<dyn ShopCatalog>,
    clients: &Arc<KeycrmClients>,
) {
    let engine = Engine::new(
        Deps {
            connections: table.clone(),
            sync: table.clone(),
            links: table.clone(),
            shop: shop.clone(),
            clients: clients.clone(),
            journal: table.clone(),
            jobs: Arc::new(MemoryQueue::new("sync-jobs")),
        },
        Config::default(),
    );
    let (out, _) = kit::run_to_end(
        &engine,
        &kit::job(CONN, SyncKind::Full, false),
        None,
        Duration::from_secs(120),
        20,
    )
    .await
    .unwrap();
    assert!(
        matches!(out, JobOutcome::Finished { .. }),
        "full sync: {out:?}"
    );
}

async fn eventually<F, Fut>(what: &str, secs: u64, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl World {
    /// The shop's availability of the variant linked to a KeyCRM offer.
    async fn shop_available(&self, offer: i64) -> Option<bool> {
        let product = *self
            .table
            .products_of_offers(CONN, &[offer])
            .await
            .unwrap()
            .get(&offer)?;
        let link = self
            .table
            .get_products(CONN, &[product])
            .await
            .unwrap()
            .pop()?;
        let variant = link.variants.iter().find(|v| v.offer_id == offer)?;
        self.shop
            .product(SHOP, &link.shop_id)?
            .variants
            .iter()
            .find(|v| v.id == variant.shop_id)
            .map(|v| v.available)
    }

    /// Linked, active offers with their stock in the main warehouse only.
    async fn linked_offers(&self) -> Vec<OfferInfo> {
        let offers = self.sim.catalog(KEY).offers;
        let ids: Vec<i64> = offers.iter().map(|o| o.id).collect();
        let linked = self.table.products_of_offers(CONN, &ids).await.unwrap();
        offers
            .into_iter()
            .filter(|o| linked.contains_key(&o.id) && !o.is_archived && o.stocks.len() == 1)
            .collect()
    }

    async fn counter(&self, name: &str) -> u64 {
        let st = StatusJournal::status(self.table.as_ref(), CONN)
            .await
            .unwrap();
        st.counters.get(name).copied().unwrap_or(0)
    }

    async fn settled(&self) -> bool {
        StockStore::pending(self.table.as_ref(), CONN)
            .await
            .unwrap()
            .is_empty()
            && StockStore::in_flight(self.table.as_ref(), CONN)
                .await
                .unwrap()
                .is_empty()
            && StockStore::window(self.table.as_ref(), CONN)
                .await
                .unwrap()
                .is_none()
    }

    async fn post(&self, url: &str, ct: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let r = self
            .http
            .post(url)
            .header("content-type", ct)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn sim_post(&self, path: &str, body: Value) -> Value {
        let r = self
            .http
            .post(format!("{}{path}", self.sim.base_url()))
            .bearer_auth(KEY)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
        r.json().await.unwrap()
    }
}

#[tokio::test]
async fn a_sell_out_reaches_the_shop_and_a_cancellation_brings_it_back() {
    let w = world(Setup {
        products: 20,
        scale: 600.0,
        consumer: true,
        sync: true,
    })
    .await;
    let o = w
        .linked_offers()
        .await
        .into_iter()
        .find(|o| o.quantity - o.in_reserve > 0)
        .expect("an offer in stock");
    assert_eq!(w.shop_available(o.id).await, Some(true));
    let free = o.quantity - o.in_reserve;
    // a customer buys the last units in KeyCRM: the order reserves them
    let order = w
        .sim_post(
            "/order",
            json!({"source_id": 2, "buyer": {"full_name": "Ірина", "phone": "+380501234567"},
                   "products": [{"sku": o.sku, "quantity": free}]}),
        )
        .await;
    let started = Instant::now();
    eventually("the sell-out in the shop", 30, || async {
        w.shop_available(o.id).await == Some(false)
    })
    .await;
    println!("sell-out reached the shop in {:?}", started.elapsed());
    eventually("the window to end", 20, || w.settled()).await;
    assert_eq!(w.counter("stock_changed").await, 1);
    assert!(w.counter("stock_signals").await >= 1);
    // the order is cancelled: released, available again
    let id = order["id"].as_i64().unwrap();
    w.sim.change_order_status(KEY, id, 19).await.unwrap();
    eventually("the release in the shop", 30, || async {
        w.shop_available(o.id).await == Some(true)
    })
    .await;
    assert_eq!(w.sim.stats().rate_limited_429, 0);
    assert_eq!(w.dlq.approximate_len().await.unwrap(), 0);
}

#[tokio::test]
async fn a_burst_is_coalesced_into_one_request_per_50_offers() {
    let w = world(Setup {
        products: 120,
        scale: 600.0,
        consumer: true,
        sync: true,
    })
    .await;
    let offers: Vec<OfferInfo> = w.linked_offers().await.into_iter().take(120).collect();
    assert_eq!(offers.len(), 120);
    // a third sells out, the rest get more stock; only real changes are signalled
    let mut items = Vec::new();
    let (mut signalled, mut flips, mut expect_unavailable) = (0u64, 0u64, Vec::new());
    let mut deliveries = 0;
    for chunk in offers.chunks(20) {
        let mut any = false;
        for (i, o) in chunk.iter().enumerate() {
            let q = if i % 3 == 0 {
                o.in_reserve
            } else {
                o.quantity + 5
            };
            let (before, after) = (o.quantity - o.in_reserve > 0, q - o.in_reserve > 0);
            if q != o.quantity {
                signalled += 1;
                any = true;
            }
            if before != after {
                flips += 1;
            }
            if before && !after {
                expect_unavailable.push(o.id);
            }
            items.push((o.id, q));
        }
        deliveries += u64::from(any);
    }
    w.sim.reset_stats();
    w.shop.reset_stats(SHOP);
    // six stock documents within one window: a webhook each
    for chunk in items.chunks(20) {
        w.sim.put_stocks(KEY, 1, chunk).unwrap();
    }
    eventually("the deliveries", 10, || async {
        w.sim.stats().webhooks_delivered >= deliveries
    })
    .await;
    // Settled, and the flips counted: once, on a starved machine, 45 of 46 writes were
    // counted when the stock records had settled. Waiting for the count tells a late write
    // from a lost one (a lost one still fails below, after 30 s).
    eventually("the flush", 30, || async {
        w.settled().await && w.shop.stats(SHOP).price_changes >= flips
    })
    .await;
    let stats = w.sim.stats();
    assert_eq!(
        stats.endpoint("GET /offers/stocks"),
        signalled.div_ceil(50),
        "{signalled} offers in one window: one request per 50"
    );
    assert_eq!(
        w.shop.stats(SHOP).price_changes,
        flips,
        "only availability changes are written"
    );
    assert!(flips > 10 && signalled > 100, "{flips} {signalled}");
    for id in &expect_unavailable {
        assert_eq!(w.shop_available(*id).await, Some(false), "offer {id}");
    }
    assert_eq!(w.counter("stock_signals").await, signalled);
    assert_eq!(stats.rate_limited_429, 0);
}

/// A capture server standing in for the receiver: records each stock body.
async fn capture() -> (String, Arc<Mutex<Vec<Value>>>) {
    let hits = Arc::new(Mutex::new(Vec::new()));
    let h = hits.clone();
    let app = Router::new().route(
        "/hook",
        post(move |body: axum::Json<Value>| {
            let h = h.clone();
            async move {
                h.lock().unwrap().push(body.0);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, hits)
}

#[tokio::test]
async fn duplicate_and_reordered_deliveries_end_with_the_true_stock() {
    let w = world(Setup {
        products: 20,
        scale: 600.0,
        consumer: true,
        sync: true,
    })
    .await;
    let offers = w.linked_offers().await;
    let mut in_stock = offers.iter().filter(|o| o.quantity - o.in_reserve > 0);
    let (x, y) = (in_stock.next().unwrap(), in_stock.next().unwrap());
    let (url, hits) = capture().await;
    w.sim.set_stock_webhooks(
        KEY,
        vec![StockWebhook {
            name: "capture".into(),
            url,
            warehouses: vec![],
        }],
    );
    // x sells out and comes back; y sells out
    w.sim.put_stocks(KEY, 1, &[(x.id, x.in_reserve)]).unwrap();
    w.sim.put_stocks(KEY, 1, &[(x.id, x.quantity + 3)]).unwrap();
    w.sim.put_stocks(KEY, 1, &[(y.id, y.in_reserve)]).unwrap();
    let captured = {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let h = hits.lock().unwrap().clone();
            if h.len() == 3 || Instant::now() > deadline {
                break h;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    assert_eq!(captured.len(), 3);
    w.shop.reset_stats(SHOP);
    // KeyCRM's retries and reordering: newest first, the stale sell-out of x last, twice
    for body in [
        &captured[2],
        &captured[1],
        &captured[0],
        &captured[0],
        &captured[2],
    ] {
        let (status, reply) = w
            .post(&w.stock_url, "application/json", body.to_string())
            .await;
        assert_eq!((status, reply["status"].as_str()), (200, Some("accepted")));
    }
    eventually("the flush", 30, || w.settled()).await;
    assert_eq!(
        w.shop_available(x.id).await,
        Some(true),
        "x is back in stock"
    );
    assert_eq!(w.shop_available(y.id).await, Some(false), "y sold out");
    assert_eq!(
        w.shop.stats(SHOP).price_changes,
        1,
        "only y's availability changed"
    );
}

#[tokio::test]
async fn unknown_offers_bad_bodies_and_wrong_tokens_are_ignored_or_refused() {
    let w = world(Setup {
        products: 10,
        scale: 600.0,
        consumer: true,
        sync: true,
    })
    .await;
    // an offer no link holds: acknowledged, read once, counted, nothing written
    let (status, _) = w
        .post(
            &w.stock_url,
            "application/json",
            json!([{"offer_id": 987654, "sku": "NOPE", "in_stock": 0, "in_reserve": 0}])
                .to_string(),
        )
        .await;
    assert_eq!(status, 200);
    eventually("the flush", 30, || w.settled()).await;
    assert_eq!(w.counter("stock_unlinked").await, 1);
    assert_eq!(w.shop.stats(SHOP).price_changes, 0);

    let big = format!(
        "[{}]",
        vec![r#"{"offer_id":1001,"sku":"A-1","in_stock":1,"in_reserve":0}"#; 90_000].join(",")
    );
    assert!(big.len() > 5_000_000);
    let cases: Vec<(String, String, u16)> = vec![
        (w.stock_url.clone(), r#"[{"offer_id":"x"}]"#.into(), 422),
        (w.stock_url.clone(), r#"{"offer_id":1001}"#.into(), 422),
        (w.stock_url.clone(), "[{".into(), 400),
        (w.stock_url.clone(), big.clone(), 413),
        (
            format!(
                "{}/v1/webhooks/keycrm/{CONN}/{}",
                w.base,
                tokens::generate().0
            ),
            json!([{"offer_id": 1001}]).to_string(),
            404,
        ),
        (
            format!("{}/v1/webhooks/keycrm/{}/x", w.base, "nope"),
            big,
            413,
        ),
    ];
    for (url, body, want) in cases {
        let (status, reply) = w.post(&url, "application/json", body).await;
        assert_eq!(status, want, "{reply}");
        assert!(reply["error"].is_string(), "{reply}");
    }
    assert!(w.settled().await, "nothing was recorded");

    // realtime stock switched off: acknowledged and ignored
    let mut c = ConnectionStore::get(w.table.as_ref(), CONN)
        .await
        .unwrap()
        .unwrap();
    c.settings.realtime_stock = false;
    c.version += 1;
    ConnectionStore::update(w.table.as_ref(), &c).await.unwrap();
    let (status, reply) = w
        .post(
            &w.stock_url,
            "application/json",
            json!([{"offer_id": 1001}]).to_string(),
        )
        .await;
    assert_eq!(
        (status, reply),
        (
            200,
            json!({"status": "ignored", "reason": "realtime_stock_off"})
        )
    );
    assert!(w.settled().await);
    assert_eq!(w.flushes.approximate_len().await.unwrap(), 0);
}

const CREATED: &str = include_str!("../../../contracts/order-events/examples/order.created.json");

fn order_event(n: usize) -> String {
    let mut v: Value = serde_json::from_str(CREATED).unwrap();
    v["shop_id"] = SHOP.into();
    v["event_id"] = format!("evt-{n}").into();
    v["order"]["id"] = format!("O-{n}").into();
    v["order"]["number"] = format!("{n}").into();
    v["order"]["status"] = "new".into();
    v.to_string()
}

fn order_push(w: &World) -> order_push::OrderPush {
    order_push::OrderPush {
        connections: w.table.clone(),
        ledger: w.table.clone(),
        journal: w.table.clone(),
        crm: Arc::new(order_push::KeycrmProvider {
            clients: w.order_clients.clone(),
            secret_prefix: None,
        }),
        retry_queue: Arc::new(MemoryQueue::new("orders")),
        dead_letters: Arc::new(MemoryQueue::new("orders-dlq")),
        dictionaries: Arc::new(order_push::Dictionaries::default()),
        config: order_push::PushConfig::default(),
    }
}

fn order_messages(n: usize) -> Vec<Message> {
    (0..n)
        .map(|n| Message {
            id: format!("m{n}"),
            body: order_event(n),
            receipt: format!("r{n}"),
            receive_count: 1,
            attributes: HashMap::new(),
        })
        .collect()
}

#[tokio::test]
async fn an_order_push_competing_for_the_key_gets_its_requests_first() {
    // A KeyCRM minute lasts 30 s: slots 515 ms apart, background ones 644 ms (slow enough
    // that the emulator's latency does not hide the gate's spacing).
    let scale = 2.0;
    let budget = RateBudget::keycrm_scaled(scale);
    let w = world(Setup {
        products: 700,
        scale,
        consumer: false,
        // unlinked offers cost the same reads; no shop needed
        sync: false,
    })
    .await;
    let offers: Vec<i64> = w.sim.catalog(KEY).offers.iter().map(|o| o.id).collect();
    assert!(offers.len() >= 1000);
    // a large stock import is waiting: 20 background requests, more than the orders need,
    // so the import also runs alone for a while
    StockStore::add_pending(w.table.as_ref(), CONN, &offers[..1000])
        .await
        .unwrap();
    // An order has just gone out on the key, so its last window is in use: the import gets no
    // background burst and is paced from its first read, competing with the orders below.
    // (On a quiet key it would read its share at once: see
    // `a_stock_import_on_a_quiet_key_reads_at_once_and_orders_still_go_at_once`.)
    w.gate
        .acquire(&ApiKey::new(KEY).fingerprint(), Priority::Interactive)
        .await
        .unwrap();
    let job = FlushJob::new(CONN);
    w.gate_log.lock().unwrap().clear();
    w.sim.reset_stats();
    let applier = w.applier.clone();
    let body = job.to_body();
    let flush = tokio::spawn(async move { applier.handle_message(&body, 1).await });
    // once the flush is reading, six orders arrive
    let deadline = Instant::now() + Duration::from_secs(10);
    while !w.gate_log.lock().unwrap().iter().any(|g| g.user == "stock") {
        assert!(
            Instant::now() < deadline,
            "the flush never asked for a slot"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let push = order_push(&w);
    let orders_started = Instant::now();
    let msgs = order_messages(6);
    let result = push.handle_batch(msgs).await;
    let orders_took = orders_started.elapsed();
    assert_eq!(w.sim.orders(KEY).len(), 6, "{result:?}");
    let flushed = flush.await.unwrap();
    assert_eq!(flushed, stock_apply::Disposition::Done);

    let log = w.gate_log.lock().unwrap().clone();
    let interactive: Vec<_> = log.iter().filter(|g| g.user == "orders").collect();
    let background: Vec<_> = log.iter().filter(|g| g.user == "stock").collect();
    assert_eq!(background.len(), 20, "1000 offers, 50 a request");
    assert!(
        background
            .iter()
            .all(|g| g.priority == Priority::Background),
        "stock reads ask below orders' priority"
    );
    assert!(interactive
        .iter()
        .all(|g| g.priority == Priority::Interactive));
    // Stock reads run below orders' priority: never faster than the background share
    // (48 of 60 a minute), so orders always find free slots. Checked on the slots the gate
    // booked (exact); the times the calls returned also carry the emulator's latency.
    let bg_us = budget.background_interval_us();
    let booked: Vec<i64> = background
        .iter()
        .map(|g| g.booked_bg_us.expect("the booked background slot"))
        .collect();
    let tightest = booked.windows(2).map(|p| p[1] - p[0]).min().unwrap();
    assert!(
        tightest >= bg_us,
        "stock slots booked {tightest} µs apart; the background share allows {bg_us} µs"
    );
    // And the requests really went out at that pace (storage latency can only delay the
    // first grant, so the span is measured with 5% slack).
    let span = background[19].granted - background[0].granted;
    let least = Duration::from_micros(bg_us as u64 * 19);
    assert!(
        span.as_secs_f64() >= least.as_secs_f64() * 0.95,
        "20 stock requests within {span:?}; the background share needs {least:?}"
    );
    let slot = Duration::from_micros(budget.interval_us() as u64);
    assert!(interactive.len() >= 6, "{log:?}");
    // An order request waits at most for the one background slot already booked: no stock
    // request is granted ahead of more than one waiting order request.
    for g in &interactive {
        let overtaken = background
            .iter()
            .filter(|b| b.granted > g.asked && b.granted < g.granted)
            .count();
        assert!(
            overtaken <= 1,
            "{overtaken} stock requests went ahead of an order request"
        );
        assert!(
            g.granted - g.asked <= slot * 2 + Duration::from_millis(250),
            "an order request waited {:?}",
            g.granted - g.asked
        );
    }
    let last_order = interactive.iter().map(|g| g.granted).max().unwrap();
    let last_stock = background.iter().map(|g| g.granted).max().unwrap();
    assert!(
        last_order < last_stock,
        "the orders were done while the import was still being read (orders took {orders_took:?})"
    );
    assert_eq!(w.sim.stats().rate_limited_429, 0);
}

/// A stock import arriving on a quiet key (at night, say) reads its share of the window at
/// once instead of at 48 a minute, so the invocation is not billed for sleeping on the gate;
/// orders arriving meanwhile still go at once, as the window has room for both.
#[tokio::test]
async fn a_stock_import_on_a_quiet_key_reads_at_once_and_orders_still_go_at_once() {
    // A KeyCRM minute lasts a minute: slots 1.03 s apart, background ones 1.29 s, so the
    // import's 20 reads would take 24 s paced.
    let scale = 1.0;
    let budget = RateBudget::keycrm_scaled(scale);
    let w = world(Setup {
        products: 700,
        scale,
        consumer: false,
        sync: false,
    })
    .await;
    let offers: Vec<i64> = w.sim.catalog(KEY).offers.iter().map(|o| o.id).collect();
    StockStore::add_pending(w.table.as_ref(), CONN, &offers[..1000])
        .await
        .unwrap();
    w.gate_log.lock().unwrap().clear();
    w.sim.reset_stats();
    let started = Instant::now();
    let applier = w.applier.clone();
    let body = FlushJob::new(CONN).to_body();
    let flush = tokio::spawn(async move { applier.handle_message(&body, 1).await });
    let deadline = Instant::now() + Duration::from_secs(10);
    while !w.gate_log.lock().unwrap().iter().any(|g| g.user == "stock") {
        assert!(
            Instant::now() < deadline,
            "the flush never asked for a slot"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let result = order_push(&w).handle_batch(order_messages(6)).await;
    assert_eq!(w.sim.orders(KEY).len(), 6, "{result:?}");
    assert_eq!(flush.await.unwrap(), stock_apply::Disposition::Done);
    let took = started.elapsed();

    let log = w.gate_log.lock().unwrap().clone();
    let background: Vec<_> = log.iter().filter(|g| g.user == "stock").collect();
    let interactive: Vec<_> = log.iter().filter(|g| g.user == "orders").collect();
    assert_eq!(background.len(), 20, "1000 offers, 50 a request");
    assert!(interactive.len() >= 6, "{log:?}");
    let bg_us = budget.background_interval_us();
    let paced = Duration::from_micros(bg_us as u64 * 19);
    // Not paced: the whole import (and the orders) in well under half the paced time.
    assert!(
        took < paced / 2,
        "the import took {took:?}; paced it would take {paced:?}"
    );
    // No request waited for a slot: each grant took only the gate's storage round trips
    // (against the emulator on a loaded 2-core machine these reached 523 ms once: the bound
    // is three quarters of a slot, still below any wait for the next one).
    let slot = Duration::from_micros(budget.interval_us() as u64);
    for g in log.iter() {
        assert!(
            g.granted - g.asked < slot * 3 / 4,
            "a {:?} request waited {:?}",
            g.priority,
            g.granted - g.asked
        );
    }
    // The burst is recorded on the key's gate item, and the key was never over its limit.
    let fp = ApiKey::new(KEY).fingerprint();
    let item = w
        .table
        .client
        .get_item()
        .table_name(&w.table.name)
        .set_key(Some(store::dynamo::key(format!("GATE#{fp}"), "GATE")))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    assert!(store::dynamo::get_n::<i64>(&item, "bg_burst_until_us").unwrap() > 0);
    assert_eq!(w.sim.stats().rate_limited_429, 0);
}
