//! Status webhooks end to end: the KeyCRM simulator changes an order or card status and fires
//! its trigger webhook at the receiver (served on loopback); the receiver hands the job to SQS
//! (moto); status-apply consumes it and sets the shop order's status. DynamoDB (moto) holds the
//! connection, the ledger and the journal.

use axum::routing::post;
use axum::Router;
use e2e_tests::connection::ConnectionBuilder;
use e2e_tests::emulator;
use keycrm::models::{CardContact, NewBuyer, NewCard, NewOrder, NewOrderProduct};
use keycrm::{ApiKey, ClientConfig, KeycrmClient, UnlimitedGate};
use keycrm_sim::{AccountSpec, SimConfig, SimHandle};
use mapping::settings::{CardStatusMap, OrderStatusMap};
use mapping::{OrderSyncType, Settings};
use queue::{Queue, SqsQueue};
use runtime::KeycrmClients;
use rust_decimal::Decimal;
use serde_json::Value;
use shop::MemoryShop;
use status_apply::{ConsumerOptions, KeycrmOrigins, RetryPolicy, StatusApplier};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use store::{
    tokens, ConnectionStore, DynamoTable, MemorySecrets, OrderLedger, SecretStore, StatusJournal,
    Target, WebhookGenerations, WebhookKind,
};
use tokio::task::JoinHandle;

const SHOP: &str = "shop-e2e";
const SECRET: &str = "shop-keycrm/e2e/keycrm/conn";
const SOURCE: i64 = 1;
const ORDER_EVENT: &str = "order.change_order_status";
const CARD_EVENT: &str = "lead.change_lead_status";

fn settings() -> Settings {
    let link = |s: &str, id| (s.to_string(), id);
    let plink = |s: &str, id| (s.to_string(), 1, id);
    Settings {
        // Pipelines: the connection has both URLs (orders and cards).
        order_sync: OrderSyncType::Pipelines,
        source_id: Some(SOURCE),
        order_statuses: OrderStatusMap::from_legacy(vec![
            link("new", 1),
            link("processing", 3),
            link("shipped", 7),
            link("done", 12),
            link("cancelled", 19),
        ]),
        card_statuses: CardStatusMap::from_legacy(vec![
            plink("new", 1001),
            plink("processing", 1002),
            plink("done", 1004),
        ]),
        ..Settings::default()
    }
}

struct Harness {
    sim: SimHandle,
    key: String,
    table: Arc<DynamoTable>,
    queue: Arc<SqsQueue>,
    dlq: Arc<SqsQueue>,
    shop: Arc<MemoryShop>,
    conn_id: String,
    orders_token: String,
    cards_token: String,
    token_key: store::TokenKey,
    base: String,
    crm: KeycrmClient,
    http: reqwest::Client,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn harness(max_receives: u32) -> Harness {
    emulator::require();
    let key = emulator::unique("key");
    let sim = keycrm_sim::start(
        SimConfig {
            accounts: vec![AccountSpec {
                api_key: key.clone(),
                seed: 7,
                products: 5,
                pipelines_enabled: true,
            }],
            rate_limit_per_minute: 0,
            time_scale: 1.0,
            public_base_url: None,
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .expect("simulator starts");
    let table = Arc::new(emulator::table().await);
    let (q, dlq) = emulator::queue(Some(max_receives)).await;
    let queue = Arc::new(q);
    let dlq = Arc::new(dlq.expect("dead-letter queue"));

    // URL tokens derive from the key (what admin-api shows, what the receiver checks).
    let token_key = store::TokenKey::generate();
    let conn_id = emulator::unique("conn");
    let orders_token = tokens::derive(&token_key, &conn_id, WebhookKind::Orders, 1);
    let cards_token = tokens::derive(&token_key, &conn_id, WebhookKind::Cards, 1);
    ConnectionStore::create(
        table.as_ref(),
        &ConnectionBuilder::new(conn_id.clone(), SHOP)
            .base_url(sim.base_url())
            .key_mask("••••test")
            .fingerprint("fp")
            .secret_name(SECRET)
            .settings(settings())
            .webhook_generations(WebhookGenerations {
                orders: 1,
                cards: 1,
                stock: 0,
            })
            .build(),
    )
    .await
    .expect("connection stored");

    let shop = Arc::new(MemoryShop::new());
    let receiver = webhook::Receiver::new(
        table.clone(),
        queue.clone(),
        table.clone(),
        token_key.clone(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, webhook::router(Arc::new(receiver))).await;
    });
    // status-apply reads a KeyCRM order back before adopting it, with the connection's key.
    let secrets = Arc::new(MemorySecrets::default());
    secrets
        .put(SECRET, &ApiKey::new(key.clone()))
        .await
        .unwrap();
    let clients = Arc::new(KeycrmClients::new(
        secrets,
        Arc::new(UnlimitedGate),
        ClientConfig::with_base_url(sim.base_url()),
    ));
    let applier = Arc::new(
        StatusApplier::new(
            table.clone(),
            table.clone(),
            shop.clone(),
            table.clone(),
            RetryPolicy {
                base: Duration::from_secs(1),
                cap: Duration::from_secs(2),
                max_receives,
            },
        )
        .with_keycrm(Arc::new(KeycrmOrigins {
            clients,
            secret_prefix: Some("shop-keycrm/e2e/keycrm/".into()),
        })),
    );
    let consumer = tokio::spawn(status_apply::run_queue_consumer(
        applier,
        queue.clone(),
        None,
        ConsumerOptions {
            batch: 10,
            wait: Duration::from_secs(1),
            visibility: Duration::from_secs(20),
        },
        std::future::pending(),
    ));
    let crm = KeycrmClient::new(
        ClientConfig::with_base_url(sim.base_url()),
        ApiKey::new(key.clone()),
        Arc::new(UnlimitedGate),
    )
    .expect("client");
    Harness {
        sim,
        key,
        table,
        queue,
        dlq,
        shop,
        conn_id,
        orders_token,
        cards_token,
        token_key,
        base,
        crm,
        http: reqwest::Client::new(),
        tasks: vec![server, consumer],
    }
}

async fn eventually<F, Fut>(what: &str, secs: u64, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// KeyCRM stamps status changes to the second: wait for the next one so two changes of one
/// order carry different `status_changed_at`.
async fn next_second() {
    tokio::time::sleep(Duration::from_millis(1100)).await;
}

impl Harness {
    fn url(&self, token: &str) -> String {
        format!(
            "{}/v1/webhooks/keycrm/{}/{}",
            self.base, self.conn_id, token
        )
    }

    fn hook_orders(&self) {
        self.sim
            .set_webhook_url(&self.key, ORDER_EVENT, Some(self.url(&self.orders_token)));
    }

    /// A KeyCRM order for shop order `shop_order`, known to the shop (status `new`).
    async fn order(&self, shop_order: &str, source_id: i64) -> i64 {
        self.order_named(shop_order, shop_order, source_id).await
    }

    /// A KeyCRM order named `source_uuid` for shop order `shop_order`.
    async fn order_named(&self, source_uuid: &str, shop_order: &str, source_id: i64) -> i64 {
        let o = self
            .crm
            .create_order(&NewOrder {
                source_id,
                source_uuid: Some(source_uuid.into()),
                buyer: NewBuyer {
                    full_name: Some("Олена Коваль".into()),
                    phone: Some("+380501234567".into()),
                    ..NewBuyer::default()
                },
                products: vec![NewOrderProduct {
                    sku: "SKU-1".into(),
                    name: "Сукня".into(),
                    price: Decimal::from(1200),
                    quantity: Decimal::from(1),
                    ..NewOrderProduct::default()
                }],
                ..NewOrder::default()
            })
            .await
            .expect("order created in the simulator");
        self.shop.add_order(SHOP, shop_order, "new");
        o.id
    }

    /// A KeyCRM order this connector pushed (linked in the ledger).
    async fn linked_order(&self, shop_order: &str) -> i64 {
        let id = self.order(shop_order, SOURCE).await;
        self.link(shop_order, Target::Order, id).await;
        id
    }

    /// Records in the ledger that order-push created `shop_order` as `keycrm_id`.
    async fn link(&self, shop_order: &str, target: Target, keycrm_id: i64) {
        let holder = format!("e2e-{shop_order}");
        self.table
            .claim(
                &self.conn_id,
                shop_order,
                target,
                &holder,
                Duration::from_secs(60),
                "{}",
            )
            .await
            .expect("claimed");
        let created = store::ledger::Created {
            target,
            keycrm_id,
            report: Default::default(),
            shop_status: None,
            keycrm_status_id: None,
        };
        self.table
            .record_created(&self.conn_id, shop_order, &holder, &created)
            .await
            .expect("recorded");
    }

    fn status(&self, shop_order: &str) -> Option<String> {
        self.shop.order_status(SHOP, shop_order)
    }

    fn changes(&self, shop_order: &str) -> Vec<String> {
        self.shop
            .status_history(SHOP)
            .into_iter()
            .filter(|(o, _)| o == shop_order)
            .map(|(_, s)| s)
            .collect()
    }

    async fn wait_status(&self, shop_order: &str, want: &str) {
        eventually(&format!("{shop_order} to become {want}"), 20, || async {
            self.status(shop_order).as_deref() == Some(want)
        })
        .await;
    }

    async fn counter(&self, name: &str) -> u64 {
        let st = StatusJournal::status(self.table.as_ref(), &self.conn_id)
            .await
            .unwrap();
        st.counters.get(name).copied().unwrap_or(0)
    }

    async fn wait_counts(&self, applied: u64, ignored: u64) {
        eventually(
            &format!("{applied} applied and {ignored} ignored"),
            20,
            || async {
                self.counter("webhooks_applied").await == applied
                    && self.counter("webhooks_ignored").await == ignored
            },
        )
        .await;
    }

    /// Webhook attempts the simulator made, with the status each got.
    fn attempts(&self, event: &str, entity: i64) -> Vec<Option<u16>> {
        self.sim
            .stats()
            .webhook_log
            .into_iter()
            .filter(|a| a.event == event && a.entity_id == entity)
            .map(|a| a.status)
            .collect()
    }

    async fn wait_attempts(&self, event: &str, entity: i64, n: usize) -> Vec<Option<u16>> {
        eventually(&format!("{n} webhook attempts"), 20, || async {
            self.attempts(event, entity).len() >= n
        })
        .await;
        self.attempts(event, entity)
    }

    async fn post(
        &self,
        url: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> (u16, Value) {
        let r = self
            .http
            .post(url)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("receiver answers");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn queue_is_empty(&self) -> bool {
        self.queue.approximate_len().await.unwrap() == 0
    }
}

#[tokio::test]
async fn order_status_changes_reach_the_shop_order() {
    let h = harness(5).await;
    h.hook_orders();
    let kc = h.linked_order("A-1001").await;

    h.sim.change_order_status(&h.key, kc, 3).await.unwrap();
    h.wait_status("A-1001", "processing").await;
    next_second().await;
    h.sim.change_order_status(&h.key, kc, 7).await.unwrap();
    h.wait_status("A-1001", "shipped").await;

    assert_eq!(h.changes("A-1001"), vec!["processing", "shipped"]);
    assert_eq!(h.attempts(ORDER_EVENT, kc), vec![Some(200), Some(200)]);
    let entry = OrderLedger::get(h.table.as_ref(), &h.conn_id, "A-1001")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        entry.applied_from_keycrm.as_deref(),
        Some("shipped"),
        "the echo guard names the status applied from KeyCRM"
    );
    assert_eq!(entry.keycrm_status_id, Some(7));
    h.wait_counts(2, 0).await;
    assert_eq!(h.dlq.approximate_len().await.unwrap(), 0);
}

#[tokio::test]
async fn an_order_whose_create_answer_was_lost_is_adopted_after_reading_it_back() {
    let h = harness(5).await;
    h.hook_orders();
    // order-push's create reached KeyCRM, its answer was lost, the claim was released.
    h.table
        .claim(
            &h.conn_id,
            "A-2002",
            Target::Order,
            "lost",
            Duration::from_secs(60),
            "{}",
        )
        .await
        .unwrap();
    h.table
        .release(&h.conn_id, "A-2002", "lost", "timed out", true)
        .await
        .unwrap();
    let kc = h
        .order_named(&format!("{SHOP}:A-2002"), "A-2002", SOURCE)
        .await;
    h.sim.reset_stats();
    h.sim.change_order_status(&h.key, kc, 12).await.unwrap();
    h.wait_status("A-2002", "done").await;
    let e = h
        .table
        .find_by_keycrm_id(&h.conn_id, Target::Order, kc)
        .await
        .unwrap()
        .expect("adopted");
    assert_eq!(e.shop_order_id, "A-2002");
    assert_eq!(
        h.sim.stats().endpoint("GET /order/{id}"),
        1,
        "read back once before adopting"
    );
}

#[tokio::test]
async fn a_webhook_for_an_order_the_ledger_does_not_know_adopts_nothing() {
    let h = harness(5).await;
    h.hook_orders();
    // Named like this shop's order, but never pushed by it (forged, or pushed elsewhere):
    // marking it created would stop the real order.created from ever being pushed.
    let kc = h
        .order_named(&format!("{SHOP}:A-2007"), "A-2007", SOURCE)
        .await;
    h.sim.change_order_status(&h.key, kc, 12).await.unwrap();
    assert_eq!(h.wait_attempts(ORDER_EVENT, kc, 1).await, vec![Some(200)]);
    h.wait_counts(0, 1).await;
    assert!(OrderLedger::get(h.table.as_ref(), &h.conn_id, "A-2007")
        .await
        .unwrap()
        .is_none());
    assert_eq!(h.status("A-2007").as_deref(), Some("new"));
}

#[tokio::test]
async fn pipeline_card_status_changes_reach_the_shop_order() {
    let h = harness(5).await;
    let card = h
        .crm
        .create_card(&NewCard {
            title: Some("Замовлення A-3003".into()),
            pipeline_id: 1,
            source_id: Some(SOURCE),
            contact: CardContact {
                full_name: Some("Петро Іванов".into()),
                phone: Some("+380671112233".into()),
                ..CardContact::default()
            },
            ..NewCard::default()
        })
        .await
        .expect("card created");
    h.shop.add_order(SHOP, "A-3003", "new");
    h.link("A-3003", Target::Card, card.id).await;
    h.sim
        .set_webhook_url(&h.key, CARD_EVENT, Some(h.url(&h.cards_token)));

    h.sim
        .change_card_status(&h.key, card.id, 1002)
        .await
        .unwrap();
    h.wait_status("A-3003", "processing").await;
    next_second().await;
    h.sim
        .change_card_status(&h.key, card.id, 1004)
        .await
        .unwrap();
    h.wait_status("A-3003", "done").await;
    assert_eq!(h.changes("A-3003"), vec!["processing", "done"]);

    // A card event sent to the orders URL is answered 200 and ignored.
    h.sim
        .set_webhook_url(&h.key, CARD_EVENT, Some(h.url(&h.orders_token)));
    next_second().await;
    h.sim
        .change_card_status(&h.key, card.id, 1002)
        .await
        .unwrap();
    let attempts = h.wait_attempts(CARD_EVENT, card.id, 3).await;
    assert_eq!(attempts, vec![Some(200); 3]);
    h.wait_counts(2, 1).await;
    assert_eq!(h.status("A-3003").as_deref(), Some("done"));
}

/// A capture endpoint standing in for the receiver, so deliveries can be replayed in any
/// order and any number of times.
async fn capture_server() -> (String, Arc<Mutex<Vec<String>>>, JoinHandle<()>) {
    let got: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = got.clone();
    let app = Router::new().route(
        "/capture",
        post(move |body: String| {
            let sink = sink.clone();
            async move {
                sink.lock().unwrap().push(body);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/capture", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, got, task)
}

#[tokio::test]
async fn duplicate_and_out_of_order_deliveries_apply_the_newest_once() {
    let mut h = harness(5).await;
    let (capture_url, captured, task) = capture_server().await;
    h.tasks.push(task);
    h.sim
        .set_webhook_url(&h.key, ORDER_EVENT, Some(capture_url));
    let kc = h.linked_order("A-4004").await;

    h.sim.change_order_status(&h.key, kc, 3).await.unwrap();
    eventually("first capture", 10, || async {
        captured.lock().unwrap().len() == 1
    })
    .await;
    next_second().await;
    h.sim.change_order_status(&h.key, kc, 7).await.unwrap();
    eventually("second capture", 10, || async {
        captured.lock().unwrap().len() == 2
    })
    .await;
    let (older, newer) = {
        let c = captured.lock().unwrap();
        (c[0].clone(), c[1].clone())
    };

    // Newest first, then the older one late, then KeyCRM's retries of both.
    let url = h.url(&h.orders_token);
    for body in [&newer, &older, &newer, &older, &newer] {
        let (status, reply) = h.post(&url, "application/json", body.clone()).await;
        assert_eq!(status, 200, "{reply}");
        assert_eq!(reply["status"], "accepted");
    }
    h.wait_counts(1, 4).await;
    assert_eq!(h.status("A-4004").as_deref(), Some("shipped"));
    assert_eq!(
        h.changes("A-4004"),
        vec!["shipped"],
        "applied once, never set back"
    );
    let e = OrderLedger::get(h.table.as_ref(), &h.conn_id, "A-4004")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(e.keycrm_status_id, Some(7));
    eventually("queue drained", 10, || h.queue_is_empty()).await;
}

#[tokio::test]
async fn unknown_orders_and_unmapped_statuses_are_acknowledged_and_ignored() {
    let h = harness(5).await;
    h.hook_orders();
    // Another source's order (a marketplace, say) that this connector never pushed.
    let foreign = h.order("MP-5005", 2).await;
    h.sim.change_order_status(&h.key, foreign, 3).await.unwrap();
    assert_eq!(
        h.wait_attempts(ORDER_EVENT, foreign, 1).await,
        vec![Some(200)]
    );
    h.wait_counts(0, 1).await;
    assert!(
        h.table
            .find_by_keycrm_id(&h.conn_id, Target::Order, foreign)
            .await
            .unwrap()
            .is_none(),
        "nothing adopted"
    );

    // A status the merchant did not map (5 = production).
    let kc = h.linked_order("A-5006").await;
    h.sim.change_order_status(&h.key, kc, 5).await.unwrap();
    assert_eq!(h.wait_attempts(ORDER_EVENT, kc, 1).await, vec![Some(200)]);
    h.wait_counts(0, 2).await;
    assert!(h.shop.status_history(SHOP).is_empty());
    assert_eq!(h.status("MP-5005").as_deref(), Some("new"));
    assert_eq!(h.status("A-5006").as_deref(), Some("new"));
    assert!(h.queue_is_empty().await);
}

#[tokio::test]
async fn an_inactive_connection_acknowledges_and_ignores() {
    let h = harness(5).await;
    h.hook_orders();
    let kc = h.linked_order("A-6006").await;
    let mut c = ConnectionStore::get(h.table.as_ref(), &h.conn_id)
        .await
        .unwrap()
        .unwrap();
    c.active = false;
    c.version += 1;
    ConnectionStore::update(h.table.as_ref(), &c).await.unwrap();

    h.sim.change_order_status(&h.key, kc, 3).await.unwrap();
    assert_eq!(h.wait_attempts(ORDER_EVENT, kc, 1).await, vec![Some(200)]);
    h.wait_counts(0, 1).await;
    assert_eq!(h.status("A-6006").as_deref(), Some("new"));
    assert!(h.queue_is_empty().await);
}

#[tokio::test]
async fn wrong_and_rotated_tokens_get_404_and_change_nothing() {
    let h = harness(5).await;
    let kc = h.linked_order("A-7007").await;
    let (wrong, _) = tokens::generate();
    h.sim
        .set_webhook_url(&h.key, ORDER_EVENT, Some(h.url(&wrong)));
    h.sim.change_order_status(&h.key, kc, 3).await.unwrap();
    // KeyCRM tries three times, gets the same 404 each time, gives up.
    let attempts = h.wait_attempts(ORDER_EVENT, kc, 3).await;
    assert_eq!(attempts, vec![Some(404); 3]);
    assert!(h.sim.stats().webhooks_failed >= 1);
    assert_eq!(h.status("A-7007").as_deref(), Some("new"));

    // Unknown connection: the very same answer.
    let unknown = format!(
        "{}/v1/webhooks/keycrm/{}/{}",
        h.base, "nosuchconnection", h.orders_token
    );
    let body = r#"{"event":"order.change_order_status","context":{"id":1,"status_id":3,"status_changed_at":"2026-01-01T00:00:00.000000Z"}}"#;
    let a = h.post(&unknown, "application/json", body).await;
    let b = h.post(&h.url(&wrong), "application/json", body).await;
    assert_eq!(a, (404, serde_json::json!({"error": "not found"})));
    assert_eq!(a, b);

    // Rotation: the admin API bumps the generation; the old URL fails at once.
    let old = h.orders_token.clone();
    let mut c = ConnectionStore::get(h.table.as_ref(), &h.conn_id)
        .await
        .unwrap()
        .unwrap();
    let generation = c.rotate_webhook(WebhookKind::Orders);
    let new = tokens::derive(&h.token_key, &h.conn_id, WebhookKind::Orders, generation);
    c.version += 1;
    ConnectionStore::update(h.table.as_ref(), &c).await.unwrap();
    let (status, _) = h.post(&h.url(&old), "application/json", body).await;
    assert_eq!(status, 404);
    h.sim
        .set_webhook_url(&h.key, ORDER_EVENT, Some(h.url(&new)));
    next_second().await;
    h.sim.change_order_status(&h.key, kc, 7).await.unwrap();
    h.wait_status("A-7007", "shipped").await;
    // The shop write comes before the ledger record and the message's delete: wait for both.
    eventually("queue drained", 10, || h.queue_is_empty()).await;
}

#[tokio::test]
async fn a_shop_outage_delays_the_status_but_does_not_lose_it() {
    let h = harness(5).await;
    h.hook_orders();
    let kc = h.linked_order("A-8008").await;
    h.shop.set_down(true);
    h.sim.change_order_status(&h.key, kc, 7).await.unwrap();
    // KeyCRM got its 200 at once; the shop is still down.
    assert_eq!(h.wait_attempts(ORDER_EVENT, kc, 1).await, vec![Some(200)]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(h.status("A-8008").as_deref(), Some("new"));
    h.shop.set_down(false);
    h.wait_status("A-8008", "shipped").await;
    h.wait_counts(1, 0).await;
    assert_eq!(h.dlq.approximate_len().await.unwrap(), 0);
    eventually("queue drained", 10, || h.queue_is_empty()).await;
}

#[tokio::test]
async fn a_status_the_shop_never_takes_ends_in_the_dead_letter_queue_with_a_reason() {
    let h = harness(2).await;
    h.hook_orders();
    let kc = h.linked_order("A-9009").await;
    h.shop.set_down(true);
    h.sim.change_order_status(&h.key, kc, 7).await.unwrap();
    eventually("the dead letter", 30, || async {
        h.dlq.approximate_len().await.unwrap() == 1
    })
    .await;
    let st = StatusJournal::status(h.table.as_ref(), &h.conn_id)
        .await
        .unwrap();
    let err = st.last_error.expect("journaled").message;
    assert!(err.contains(&format!("KeyCRM order {kc}")), "{err}");
    assert!(err.contains("not applied after 2 attempts"), "{err}");
    assert!(err.contains("unavailable"), "{err}");
    let dead = h
        .dlq
        .receive(1, Duration::from_secs(1), Duration::from_secs(5))
        .await
        .unwrap();
    let job = status_apply::StatusJob::parse(&dead[0].body).expect("the original job");
    assert_eq!((job.keycrm_id, job.status_id), (kc, 7));
    assert_eq!(h.status("A-9009").as_deref(), Some("new"));
}

#[tokio::test]
async fn bad_bodies_get_4xx_and_change_nothing() {
    let h = harness(5).await;
    let url = h.url(&h.orders_token);
    let big = format!(r#"{{"event":"{}"}}"#, "x".repeat(70 * 1024));
    let cases: Vec<(&str, String, u16)> = vec![
        ("application/json", big, 413),
        ("application/x-www-form-urlencoded", "event=order.change_order_status".into(), 415),
        ("application/json", "{\"event\": oops".into(), 400),
        ("application/json", "[]".into(), 422),
        ("application/json", r#"{"event":"order.change_order_status"}"#.into(), 422),
        ("application/json", r#"{"event":"order.change_order_status","context":{"status_id":3,"status_changed_at":"2026-01-01T00:00:00.000000Z"}}"#.into(), 422),
        ("application/json", r#"{"event":"order.change_order_status","context":{"id":5,"status_changed_at":"2026-01-01T00:00:00.000000Z"}}"#.into(), 422),
    ];
    for (ct, body, want) in cases {
        let (status, reply) = h.post(&url, ct, body.clone()).await;
        assert_eq!(status, want, "{}", &body[..body.len().min(60)]);
        assert!(
            reply["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{reply}"
        );
    }
    let (status, _) = h
        .http
        .get(&url)
        .send()
        .await
        .map(|r| (r.status().as_u16(), ()))
        .unwrap();
    assert_eq!(status, 405);
    assert!(h.queue_is_empty().await);
    assert_eq!(h.counter("webhooks_ignored").await, 0);
    assert!(h.shop.status_history(SHOP).is_empty());
}
