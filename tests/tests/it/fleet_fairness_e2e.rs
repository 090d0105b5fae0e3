//! The fleet's fairness end to end (issue 14): sync jobs go through the sync-jobs consumer as
//! deployed (a capped number of invocations, each running the jobs of its batch side by side,
//! in time slices whose rest is handed to a delayed continuation), orders through order-push,
//! status webhooks through the receiver and status-apply; DynamoDB (connections, runs, links,
//! ledger, the shared rate gate) and SQS are moto, KeyCRM is the simulator (60 requests a
//! minute per key, time-scaled).
//!
//! Every duration handed to the handlers is divided by `SCALE`, as the fleet bench does.

use aws_lambda_events::event::sqs::SqsEvent;
use catalog_sync::{kit, Config, Deps, Engine, JobMessage};
use chrono::{DateTime, Utc};
use e2e_tests::emulator;
use keycrm::{ApiKey, ClientConfig, RateBudget};
use keycrm_sim::{AccountSpec, SimConfig, SimHandle};
use mapping::settings::{DeliveryLink, OrderStatusMap, PaymentLink};
use mapping::{OrderSyncType, Settings};
use order_push::{Dictionaries, KeycrmProvider, OrderPush, Outcome, PushConfig, RetryPolicy};
use queue::{Message, Outgoing, Queue, SqsQueue};
use runtime::KeycrmClients;
use serde_json::Value;
use shop::{MemoryShop, NamedItem, ShopReference};
use status_apply::{ConsumerOptions, StatusApplier};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use store::{
    tokens, ConnectionStore, DynamoRateGate, DynamoTable, MemorySecrets, SecretStore, SyncJob,
    SyncKind, SyncRun, SyncStore, WebhookGenerations, WebhookKind,
};
use tokio::task::JoinHandle;

/// A KeyCRM minute lasts 6 real seconds: 10 requests a second per key, 8 of them for syncs.
const SCALE: f64 = 10.0;
const CREATED: &str = include_str!("../../../contracts/order-events/examples/order.created.json");

fn scaled(d: Duration) -> Duration {
    Duration::from_secs_f64(d.as_secs_f64() / SCALE)
}

fn settings() -> Settings {
    Settings {
        sync_products: true,
        sync_categories: true,
        order_sync: OrderSyncType::Orders,
        source_id: Some(1),
        order_statuses: OrderStatusMap::from_legacy([
            ("new".to_string(), 1),
            ("paid".to_string(), 4),
            ("done".to_string(), 12),
        ]),
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

fn reference() -> ShopReference {
    let n = |id: &str, name: &str| NamedItem {
        id: id.into(),
        name: name.into(),
    };
    ShopReference {
        order_statuses: vec![
            n("new", "Нове"),
            n("paid", "Оплачене"),
            n("done", "Виконане"),
        ],
        order_addons: vec![],
        payment_methods: vec![n("cod", "Накладений платіж")],
        delivery_methods: vec![n("nova_poshta", "Нова Пошта")],
        currency: "UAH".into(),
    }
}

struct Shop {
    conn: String,
    shop_id: String,
    key: String,
}

struct Fleet {
    sim: SimHandle,
    table: Arc<DynamoTable>,
    sync_q: Arc<SqsQueue>,
    shop: Arc<MemoryShop>,
    shops: Vec<Shop>,
    clients: Arc<KeycrmClients>,
    sync_clients: Arc<KeycrmClients>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// `shops` connections over `keys` KeyCRM accounts (shop `i` uses key `i % keys`), each
/// account with a catalog of `products`.
async fn fleet(shops: usize, keys: usize, products: usize) -> Fleet {
    emulator::require();
    let key_names: Vec<String> = (0..keys).map(|_| emulator::unique("key")).collect();
    let sim = keycrm_sim::start(
        SimConfig {
            accounts: key_names
                .iter()
                .enumerate()
                .map(|(i, k)| AccountSpec {
                    api_key: k.clone(),
                    seed: 40 + i as u64,
                    products,
                    pipelines_enabled: false,
                })
                .collect(),
            rate_limit_per_minute: 60,
            time_scale: SCALE,
            public_base_url: None,
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .expect("simulator starts");
    let table = Arc::new(emulator::table().await);
    let (sync_q, _) = emulator::queue(None).await;
    let secrets = Arc::new(MemorySecrets::default());
    let shop = Arc::new(MemoryShop::new());
    let mut list = Vec::new();
    for i in 0..shops {
        let key = key_names[i % keys].clone();
        let conn = emulator::unique("conn");
        let shop_id = emulator::unique("shop");
        let secret = format!("shop-keycrm/e2e/keycrm/{conn}");
        secrets.put(&secret, &ApiKey::new(&key)).await.unwrap();
        let mut c = kit::connection(
            &conn,
            &shop_id,
            &sim.base_url(),
            &secret,
            &ApiKey::new(&key),
            settings(),
        );
        c.webhook_generations = WebhookGenerations {
            orders: 1,
            cards: 1,
            stock: 1,
        };
        ConnectionStore::create(table.as_ref(), &c).await.unwrap();
        shop.set_reference(&shop_id, reference());
        list.push(Shop { conn, shop_id, key });
    }
    // One budget per key, shared through DynamoDB by every function (as deployed).
    let gate = Arc::new(DynamoRateGate::new(
        table.as_ref().clone(),
        RateBudget::keycrm_scaled(SCALE),
    ));
    let client = |max_gate_wait: Option<Duration>| ClientConfig {
        timeout: Duration::from_secs(5),
        max_gate_wait,
        ..ClientConfig::with_base_url(sim.base_url())
    };
    let clients = Arc::new(KeycrmClients::new(
        secrets.clone(),
        gate.clone(),
        client(Some(scaled(order_push::MAX_GATE_WAIT))),
    ));
    let sync_clients = Arc::new(KeycrmClients::new(
        secrets,
        gate,
        client(Some(scaled(catalog_sync::MAX_GATE_WAIT))),
    ));
    Fleet {
        sim,
        table,
        sync_q: Arc::new(sync_q),
        shop,
        shops: list,
        clients,
        sync_clients,
        tasks: Vec::new(),
    }
}

fn sqs_event(msgs: &[Message]) -> SqsEvent {
    let records: Vec<Value> = msgs
        .iter()
        .map(|m| {
            serde_json::json!({
                "messageId": m.id, "receiptHandle": m.receipt, "body": m.body,
                "attributes": {"ApproximateReceiveCount": m.receive_count.to_string()},
                "eventSource": "aws:sqs"
            })
        })
        .collect();
    serde_json::from_value(serde_json::json!({ "Records": records })).expect("an SQS event")
}

impl Fleet {
    /// The sync-jobs consumer as deployed (`Config::lambda()`, on the test's clock) with
    /// `max_concurrency` invocations at a time, each running up to `jobs_at_once` jobs of
    /// its batch side by side, in slices of `slice` (real time).
    fn start_sync_consumer(
        &mut self,
        max_concurrency: usize,
        jobs_at_once: usize,
        slice: Duration,
    ) {
        let d = Config::lambda();
        let cfg = Config {
            safety: Duration::from_millis(200),
            lease_slack: Duration::from_secs(2),
            deletion_check: Duration::from_secs(2),
            slice: Some(slice),
            hand_off_grace: Duration::from_secs(10),
            // The deployed spacing of checkpoints, on the test's clock.
            checkpoint_every: d.checkpoint_every.div_f64(SCALE),
            jobs_at_once,
            ..d
        };
        let engine = Arc::new(Engine::new(
            Deps {
                connections: self.table.clone(),
                sync: self.table.clone(),
                links: self.table.clone(),
                shop: self.shop.clone(),
                clients: self.sync_clients.clone(),
                journal: self.table.clone(),
                jobs: self.sync_q.clone(),
            },
            cfg,
        ));
        for _ in 0..max_concurrency {
            let engine = engine.clone();
            let q = self.sync_q.clone();
            self.tasks.push(tokio::spawn(async move {
                loop {
                    let mut msgs = q
                        .receive(10, Duration::from_secs(1), Duration::from_secs(60))
                        .await
                        .unwrap_or_default();
                    if msgs.is_empty() {
                        continue;
                    }
                    // The event source's batching window (20 s as deployed, on the clock).
                    if msgs.len() < 10 {
                        tokio::time::sleep(scaled(Duration::from_secs(20))).await;
                        let more = q
                            .receive(10 - msgs.len(), Duration::ZERO, Duration::from_secs(60))
                            .await
                            .unwrap_or_default();
                        msgs.extend(more);
                    }
                    // A 60 s invocation: the handler keeps 10 s for settling.
                    let deadline = Instant::now() + Duration::from_secs(60);
                    let resp = catalog_sync::lambda::handle_sqs(
                        &engine,
                        sqs_event(&msgs),
                        Some(deadline),
                        None,
                    )
                    .await;
                    for m in &msgs {
                        if !resp
                            .batch_item_failures
                            .iter()
                            .any(|f| f.item_identifier == m.id)
                        {
                            let _ = q.delete(&m.receipt).await;
                        }
                    }
                }
            }));
        }
    }

    async fn start_full_syncs(&self) {
        for s in &self.shops {
            let job = JobMessage {
                job: SyncJob {
                    connection_id: s.conn.clone(),
                    kind: SyncKind::Full,
                    dry_run: false,
                    requested_by: store::RequestedBy::Merchant,
                    run_id: Some(emulator::unique("run")),
                },
                settings: None,
                handoff: None,
            };
            self.sync_q
                .send(Outgoing::new(serde_json::to_string(&job).unwrap()))
                .await
                .unwrap();
        }
    }

    async fn run_of(&self, conn: &str) -> Option<SyncRun> {
        SyncStore::list_runs(self.table.as_ref(), conn, 5)
            .await
            .unwrap()
            .into_iter()
            .find(|r| r.kind == Some(SyncKind::Full))
    }

    /// Waits until every shop's full run is over; their reports, in shop order.
    async fn wait_for_runs(&self, limit: Duration) -> Vec<SyncRun> {
        let until = Instant::now() + limit;
        loop {
            let mut done = Vec::new();
            for s in &self.shops {
                match self.run_of(&s.conn).await {
                    Some(r) if r.state != "running" && r.finished_at.is_some() => done.push(r),
                    _ => break,
                }
            }
            if done.len() == self.shops.len() {
                return done;
            }
            assert!(
                Instant::now() < until,
                "syncs still running after {limit:?}: {} of {} over",
                done.len(),
                self.shops.len()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn any_run_in_progress(&self) -> bool {
        for s in &self.shops {
            match self.run_of(&s.conn).await {
                None => return true,
                Some(r) if r.finished_at.is_none() => return true,
                _ => {}
            }
        }
        false
    }
}

fn secs(a: DateTime<Utc>, b: DateTime<Utc>) -> f64 {
    (b - a).num_milliseconds() as f64 / 1000.0
}

/// Two shops whose KeyCRM account (one API key, one 60-a-minute budget) is the same, their
/// full syncs started together on a consumer with one invocation at a time: the key's budget
/// is split between them, so they run side by side and end together, instead of the second
/// waiting for the first to finish (what one job per invocation did).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_shops_on_one_key_split_its_budget_fairly() {
    let mut f = fleet(2, 1, 400).await;
    f.start_sync_consumer(1, 10, Duration::from_secs(4));
    f.start_full_syncs().await;
    let runs = f.wait_for_runs(Duration::from_secs(240)).await;

    for r in &runs {
        assert_eq!(r.state, "completed", "{r:?}");
        assert!(r.keycrm_requests > 10, "a real catalog was read: {r:?}");
    }
    let (a, b) = (&runs[0], &runs[1]);
    let span = |r: &SyncRun| (r.started_at.unwrap(), r.finished_at.unwrap());
    let ((a0, a1), (b0, b1)) = (span(a), span(b));
    let overlap = secs(a0.max(b0), a1.min(b1)).max(0.0);
    for (r, (s, e)) in [(a, (a0, a1)), (b, (b0, b1))] {
        let own = secs(s, e);
        assert!(
            overlap >= 0.7 * own,
            "the runs shared the key side by side ({overlap:.1} s of {own:.1} s together; \
             {a0}..{a1} and {b0}..{b1}): {:?}",
            r.run_id
        );
    }
    // Same catalog, same budget: the requests were split about evenly.
    let (ra, rb) = (a.keycrm_requests as f64, b.keycrm_requests as f64);
    assert!(
        (ra - rb).abs() <= 0.25 * ra.max(rb),
        "requests {ra} vs {rb}"
    );
    // One after the other, the later run would end at twice the earlier's time; side by side
    // they end close together. The margin is a time slice's misalignment on a starved machine
    // (1.41 was seen with a release build running beside the suite on 2 cores).
    let first = secs(a0.min(b0), a1.min(b1));
    let last = secs(a0.min(b0), a1.max(b1));
    assert!(
        last <= 1.5 * first,
        "the later run ended at {last:.1} s, the earlier at {first:.1} s"
    );
    assert_eq!(f.sim.stats().rate_limited_429, 0, "the shared budget held");
    assert_eq!(
        f.shop.products(&f.shops[0].shop_id).len(),
        f.shop.products(&f.shops[1].shop_id).len()
    );
}

/// A sync storm (every shop of the fleet starts its full sync at once, more jobs than the
/// capped consumer runs at a time) while orders arrive and KeyCRM managers change statuses:
/// every order reaches KeyCRM and every status reaches the shop within seconds of KeyCRM
/// time, all while the storm is still going.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sync_storm_leaves_order_push_and_webhooks_on_time() {
    let shops = 12;
    let mut f = fleet(shops, shops, 400).await;

    // order-push on its own queue.
    let (orders, dlq) = emulator::queue(Some(5)).await;
    let orders = Arc::new(orders);
    let d = PushConfig::default();
    let push = Arc::new(OrderPush {
        connections: f.table.clone(),
        ledger: f.table.clone(),
        journal: f.table.clone(),
        crm: Arc::new(KeycrmProvider {
            clients: f.clients.clone(),
            secret_prefix: Some("shop-keycrm/e2e/keycrm/".into()),
        }),
        retry_queue: orders.clone(),
        dead_letters: Arc::new(dlq.expect("dead-letter queue")),
        dictionaries: Arc::new(Dictionaries::default()),
        config: PushConfig {
            lease: Duration::from_secs(5),
            retry: RetryPolicy {
                base: Duration::from_secs(1),
                max_delay: Duration::from_secs(2),
                busy_delay: Duration::from_secs(1),
                ..d.retry
            },
            source_queue: orders.name().to_string(),
            ..d
        },
    });
    let created: Arc<Mutex<HashMap<String, (Instant, i64)>>> = Arc::default();
    {
        let (push, orders, created) = (push.clone(), orders.clone(), created.clone());
        f.tasks.push(tokio::spawn(async move {
            loop {
                let msgs = orders
                    .receive(10, Duration::from_secs(1), Duration::from_secs(30))
                    .await
                    .unwrap_or_default();
                if msgs.is_empty() {
                    continue;
                }
                let out = push
                    .handle_batch_until(
                        msgs.clone(),
                        Some(Instant::now() + Duration::from_secs(30)),
                    )
                    .await;
                for o in &out.outcomes {
                    if let Outcome::Created {
                        shop_order_id,
                        keycrm_id,
                        ..
                    } = &o.outcome
                    {
                        created
                            .lock()
                            .unwrap()
                            .insert(shop_order_id.clone(), (Instant::now(), *keycrm_id));
                    }
                }
                for m in &msgs {
                    if !out.failed_message_ids.contains(&m.id) {
                        let _ = orders.delete(&m.receipt).await;
                    }
                }
            }
        }));
    }

    // The webhook receiver and status-apply on the status queue.
    let (status_q, _) = emulator::queue(None).await;
    let status_q = Arc::new(status_q);
    let token_key = store::TokenKey::generate();
    let receiver = webhook::Receiver::new(
        f.table.clone(),
        status_q.clone(),
        f.table.clone(),
        token_key.clone(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    f.tasks.push(tokio::spawn(async move {
        let _ = axum::serve(listener, webhook::router(Arc::new(receiver))).await;
    }));
    for s in &f.shops {
        let token = tokens::derive(&token_key, &s.conn, WebhookKind::Orders, 1);
        f.sim.set_webhook_url(
            &s.key,
            "order.change_order_status",
            Some(format!("{base}/v1/webhooks/keycrm/{}/{token}", s.conn)),
        );
    }
    let applier = Arc::new(StatusApplier::new(
        f.table.clone(),
        f.table.clone(),
        f.shop.clone(),
        f.table.clone(),
        status_apply::RetryPolicy {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(2),
            max_receives: 10,
        },
    ));
    f.tasks.push(tokio::spawn(status_apply::run_queue_consumer(
        applier,
        status_q.clone(),
        None,
        ConsumerOptions {
            batch: 10,
            wait: Duration::from_secs(1),
            visibility: Duration::from_secs(20),
        },
        std::future::pending(),
    )));

    // The storm: twelve full syncs, two invocations of three jobs at a time.
    f.start_sync_consumer(2, 3, Duration::from_secs(3));
    let storm_began = Instant::now();
    f.start_full_syncs().await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Orders of four shops during the storm, then their status changes in KeyCRM.
    let mut sent = Vec::new();
    for (n, s) in f.shops.iter().enumerate().take(4) {
        let order_id = format!("{}", 7000 + n);
        f.shop.add_order(&s.shop_id, &order_id, "new");
        let mut v: Value = serde_json::from_str(CREATED).unwrap();
        v["shop_id"] = s.shop_id.clone().into();
        v["event_id"] = format!("evt-{}-{order_id}", s.shop_id).into();
        v["order"]["id"] = order_id.clone().into();
        v["order"]["number"] = order_id.clone().into();
        v["order"]["status"] = "new".into();
        v["order"]["payment"]["method"] = "cod".into();
        v["order"]["delivery"]["method"] = "nova_poshta".into();
        orders.send(Outgoing::new(v.to_string())).await.unwrap();
        sent.push((n, order_id, Instant::now()));
    }
    let mut pushed = Vec::new();
    for (n, order_id, at) in &sent {
        let until = *at + Duration::from_secs(30);
        let (landed, keycrm_id) = loop {
            if let Some(v) = created.lock().unwrap().get(order_id).copied() {
                break v;
            }
            assert!(
                Instant::now() < until,
                "order {order_id} not in KeyCRM after 30 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let waited = landed.saturating_duration_since(*at);
        // 12 s real is two KeyCRM minutes (the storm lasts many): an order waits for a few of
        // its key's slots, however many syncs run.
        assert!(
            waited < Duration::from_secs(12),
            "order {order_id} of shop {n} took {waited:?} to reach KeyCRM during the storm"
        );
        pushed.push((*n, order_id.clone(), keycrm_id));
    }
    assert!(
        f.any_run_in_progress().await,
        "the orders were pushed while the storm was still going"
    );

    for (n, order_id, keycrm_id) in &pushed {
        let s = &f.shops[*n];
        let at = Instant::now();
        f.sim
            .change_order_status(&s.key, *keycrm_id, 4)
            .await
            .expect("status changed in KeyCRM");
        loop {
            if f.shop.order_status(&s.shop_id, order_id).as_deref() == Some("paid") {
                break;
            }
            assert!(
                at.elapsed() < Duration::from_secs(12),
                "the status of order {order_id} did not reach the shop within two KeyCRM minutes"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert!(
        f.any_run_in_progress().await,
        "the statuses came back while the storm was still going"
    );

    let runs = f.wait_for_runs(Duration::from_secs(300)).await;
    for r in &runs {
        assert_eq!(r.state, "completed", "{r:?}");
    }
    assert_eq!(f.sim.stats().rate_limited_429, 0);
    eprintln!(
        "storm of {shops} full syncs over in {:?}",
        storm_began.elapsed()
    );
}
