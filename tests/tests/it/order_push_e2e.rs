//! Order push end to end: events on SQS (moto), the ledger and journal in DynamoDB (moto),
//! the key in Secrets Manager (moto), and the KeyCRM simulator over HTTP with its rate limit,
//! fault injection and a compressed clock (a KeyCRM minute lasts one second).

use chrono::{DateTime, Utc};
use e2e_tests::connection::ConnectionBuilder;
use e2e_tests::emulator;
use e2e_tests::faults::{HookedLedger, LedgerOp, Nth};
use keycrm::{ClientConfig, LocalRateGate, RateBudget, RateGate};
use keycrm_sim::{AccountSpec, Faults, SimConfig, SimHandle};
use mapping::settings::{AddonLink, DeliveryLink, PaymentLink};
use mapping::{OrderSyncType, Settings};
use order_push::{Dictionaries, KeycrmProvider, OrderPush, Outcome, PushConfig, RetryPolicy};
use queue::{Outgoing, Queue, SqsQueue};
use runtime::KeycrmClients;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::{
    Connection, ConnectionStore, DynamoRateGate, DynamoTable, LedgerEntry, LedgerState,
    OrderLedger, SecretStore, SecretsManager, StatusJournal, StoreError, Target,
};

const CREATED: &str = include_str!("../../../contracts/order-events/examples/order.created.json");
const TIME_SCALE: f64 = 60.0;
const VIS: Duration = Duration::from_secs(30);

async fn simulator(keys: &[&str], time_scale: f64) -> SimHandle {
    let accounts = keys
        .iter()
        .enumerate()
        .map(|(i, k)| AccountSpec {
            api_key: k.to_string(),
            seed: 7 + i as u64,
            products: 20,
            pipelines_enabled: true,
        })
        .collect();
    keycrm_sim::start(
        SimConfig {
            accounts,
            rate_limit_per_minute: 60,
            time_scale,
            public_base_url: None,
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap()
}

fn settings(sync: OrderSyncType) -> Settings {
    Settings {
        order_sync: sync,
        source_id: Some(1),
        order_statuses: mapping::settings::OrderStatusMap::from_legacy([
            ("new".to_string(), 1),
            ("paid".to_string(), 4),
            ("done".to_string(), 12),
        ]),
        card_statuses: mapping::settings::CardStatusMap::from_legacy([
            ("new".to_string(), 1, 1001),
            ("paid".to_string(), 1, 1002),
        ]),
        payment_map: vec![PaymentLink {
            shop_method: "cod".into(),
            keycrm_method_id: 1,
        }],
        delivery_map: vec![DeliveryLink {
            shop_method: "nova_poshta".into(),
            keycrm_service_id: 3,
        }],
        addon_fields: match sync {
            OrderSyncType::Pipelines => vec![
                AddonLink {
                    addon_id: "channel".into(),
                    field_uuid: "LD_1002".into(),
                },
                AddonLink {
                    addon_id: "budget".into(),
                    field_uuid: "LD_1003".into(),
                },
                AddonLink {
                    addon_id: "call_back".into(),
                    field_uuid: "LD_1004".into(),
                },
            ],
            _ => vec![
                AddonLink {
                    addon_id: "channel".into(),
                    field_uuid: "OR_1002".into(),
                },
                AddonLink {
                    addon_id: "places".into(),
                    field_uuid: "OR_1003".into(),
                },
                AddonLink {
                    addon_id: "call_back".into(),
                    field_uuid: "OR_1004".into(),
                },
                AddonLink {
                    addon_id: "wanted_date".into(),
                    field_uuid: "OR_1005".into(),
                },
            ],
        },
        ..Settings::default()
    }
}

struct Env {
    push: OrderPush,
    sim: SimHandle,
    table: DynamoTable,
    orders: SqsQueue,
    dlq: SqsQueue,
    key: String,
    conn: Connection,
}

fn quick_config(queue: &SqsQueue) -> PushConfig {
    PushConfig {
        lease: Duration::from_secs(3),
        retry: RetryPolicy {
            base: Duration::from_secs(1),
            max_delay: Duration::from_secs(2),
            max_attempts: 25,
            busy_delay: Duration::from_secs(1),
            unknown_order_attempts: 4,
        },
        recovery_margin: Duration::from_secs(120),
        source_queue: queue.name().to_string(),
        ..PushConfig::default()
    }
}

/// One shop connected to one simulator account, everything stored on the emulator.
async fn env_with(
    sync: OrderSyncType,
    gate: Option<Arc<dyn RateGate>>,
    ledger: Option<Arc<dyn OrderLedger>>,
    time_scale: f64,
) -> Env {
    let key = format!("key-{}", emulator::unique("k"));
    let sim = simulator(&[&key], time_scale).await;
    let table = emulator::table().await;
    let (orders, dlq) = emulator::queue(Some(5)).await;
    let dlq = dlq.unwrap();
    let secrets = Arc::new(SecretsManager::from_env().await);
    let secret_name = format!("shop-keycrm/test/keycrm/{}", emulator::unique("s"));
    secrets
        .put(&secret_name, &keycrm::ApiKey::new(&key))
        .await
        .unwrap();
    let conn = ConnectionBuilder::new(emulator::unique("conn"), emulator::unique("shop"))
        .base_url(sim.base_url())
        .key(&key)
        .secret_name(secret_name)
        .settings(settings(sync))
        .build();
    ConnectionStore::create(&table, &conn).await.unwrap();
    let gate = gate.unwrap_or_else(|| {
        Arc::new(DynamoRateGate::new(
            table.clone(),
            RateBudget::keycrm_scaled(time_scale),
        ))
    });
    let mut client = ClientConfig::with_base_url(sim.base_url());
    // Shorter than the simulator's commit-then-timeout hang.
    client.timeout = Duration::from_secs(2);
    let clients = Arc::new(KeycrmClients::new(secrets, gate, client));
    let push = OrderPush {
        connections: Arc::new(table.clone()),
        ledger: ledger.unwrap_or_else(|| Arc::new(table.clone())),
        journal: Arc::new(table.clone()),
        crm: Arc::new(KeycrmProvider {
            clients,
            secret_prefix: Some("shop-keycrm/test/keycrm/".into()),
        }),
        retry_queue: Arc::new(orders.clone()),
        dead_letters: Arc::new(dlq.clone()),
        dictionaries: Arc::new(Dictionaries::default()),
        config: quick_config(&orders),
    };
    Env {
        push,
        sim,
        table,
        orders,
        dlq,
        key,
        conn,
    }
}

async fn env(sync: OrderSyncType) -> Env {
    env_with(sync, None, None, TIME_SCALE).await
}

fn created_event(shop: &str, order_id: &str, sku: &str) -> String {
    let mut v: Value = serde_json::from_str(CREATED).unwrap();
    v["shop_id"] = shop.into();
    v["event_id"] = format!("evt-{order_id}").into();
    v["order"]["id"] = order_id.into();
    v["order"]["number"] = format!("N-{order_id}").into();
    v["order"]["items"][0]["sku"] = sku.into();
    v["order"]["addons"] = json!([
        {"id": "channel", "value": "instagram"},
        {"id": "places", "value": "2"},
        {"id": "call_back", "value": true},
        {"id": "wanted_date", "value": "2026-12-24"},
        {"id": "budget", "value": "1500,50"}
    ]);
    v.to_string()
}

fn status_event(shop: &str, order_id: &str, status: &str, at: DateTime<Utc>) -> String {
    json!({
        "version": 1, "type": "order.status_changed", "event_id": format!("st-{order_id}-{status}"),
        "shop_id": shop, "occurred_at": at.to_rfc3339(), "order_id": order_id, "status": status,
        "previous_status": "new", "changed_by": "merchant"
    })
    .to_string()
}

impl Env {
    async fn publish(&self, bodies: &[String]) {
        for b in bodies {
            self.orders.send(Outgoing::new(b.clone())).await.unwrap();
        }
    }

    /// Polls the order queue until it stays empty; returns every outcome.
    async fn drain(&self, limit: Duration) -> Vec<Outcome> {
        self.drain_with(1, limit).await
    }

    /// Like [`Env::drain`] with `pollers` batches handled at once (like concurrent Lambdas).
    async fn drain_with(&self, pollers: usize, limit: Duration) -> Vec<Outcome> {
        let started = Instant::now();
        let mut all = Vec::new();
        let mut idle = 0;
        loop {
            assert!(
                started.elapsed() < limit,
                "queue not drained in {limit:?}: {all:?}"
            );
            let rounds = futures::future::join_all((0..pollers).map(|_| {
                self.push
                    .poll_once(&self.orders, 10, Duration::from_secs(1), VIS)
            }))
            .await;
            let mut r = order_push::BatchResult::default();
            for one in rounds {
                let one = one.unwrap();
                r.failed_message_ids.extend(one.failed_message_ids);
                r.outcomes.extend(one.outcomes);
            }
            assert!(r.failed_message_ids.is_empty(), "{r:?}");
            if r.outcomes.is_empty() {
                if self.orders.approximate_len().await.unwrap() == 0 {
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

    fn sim_orders(&self) -> Vec<Value> {
        self.sim.orders(&self.key)
    }

    async fn entry(&self, order: &str) -> LedgerEntry {
        self.push
            .ledger
            .get(&self.conn.id, order)
            .await
            .unwrap()
            .expect("ledger entry")
    }

    async fn dead_letters(&self) -> Vec<(Value, Option<String>)> {
        let mut out = Vec::new();
        loop {
            let got = self
                .dlq
                .receive(10, Duration::from_secs(1), VIS)
                .await
                .unwrap();
            if got.is_empty() {
                return out;
            }
            for m in got {
                out.push((
                    serde_json::from_str(&m.body).unwrap(),
                    m.attribute("kind").map(str::to_string),
                ));
                self.dlq.delete(&m.receipt).await.unwrap();
            }
        }
    }
}

fn catalog_sku(env: &Env) -> String {
    env.sim.catalog(&env.key).offers[0].sku.clone()
}

/// Orders named with this shop's key for shop order `order` (`<shop id>:<order id>`).
fn count_source_uuid(orders: &[Value], shop: &str, order: &str) -> usize {
    let key = mapping::source_key::source_uuid(shop, order);
    orders.iter().filter(|o| o["source_uuid"] == key).count()
}

#[tokio::test]
async fn every_mapped_field_lands_in_the_keycrm_order() {
    let env = env(OrderSyncType::Orders).await;
    let sku = catalog_sku(&env);
    env.sim.reset_stats();
    env.publish(&[created_event(&env.conn.shop_id, "E2E-1", &sku)])
        .await;
    let out = env.drain(Duration::from_secs(30)).await;
    assert!(
        matches!(
            &out[..],
            [Outcome::Created {
                recovered: false,
                ..
            }]
        ),
        "{out:?}"
    );

    let orders = env.sim_orders();
    assert_eq!(orders.len(), 1);
    let o = &orders[0];
    assert_eq!(o["source_id"], 1);
    assert_eq!(o["source_uuid"], format!("{}:E2E-1", env.conn.shop_id));
    assert_eq!(o["ordered_at"], "2026-11-28T10:14:52.000000Z");
    assert_eq!(o["status_id"], 1);
    assert_eq!(o["buyer"]["full_name"], "Олена Коваленко");
    assert_eq!(
        o["buyer"]["phone"], "+380501112233",
        "normalised to international form"
    );
    assert_eq!(o["buyer"]["email"], "olena@example.com");
    assert_eq!(o["buyer_comment"], "Подзвоніть перед доставкою");
    assert_eq!(o["promocode"], "BF2026");
    assert_eq!(
        o["grand_total"],
        json!(2121),
        "the total KeyCRM computes equals the shop's"
    );
    let p = &o["products"];
    assert_eq!(p[0]["sku"], sku.as_str());
    assert!(
        p[0]["offer"].is_object(),
        "the line is linked to the catalog offer by SKU: {}",
        p[0]
    );
    assert_eq!(p[0]["price"], json!(1290));
    assert_eq!(p[0]["discount_amount"], json!(90));
    assert_eq!(
        p[0]["properties"][0],
        json!({"name": "Розмір", "value": "M"})
    );
    assert_eq!(p[1]["sku"], "BLT-002");
    assert_eq!(p[1]["quantity"], json!(2));
    let s = &o["shipping"];
    assert_eq!(s["delivery_service_id"], 3);
    assert_eq!(s["warehouse_ref"], "1ec09d88-e1c2-11e3-8c4a-0050568002cf");
    assert_eq!(s["shipping_address_city"], "Київ");
    assert_eq!(s["shipping_receive_point"], "Відділення №12");
    assert_eq!(s["recipient_phone"], "+380501112233");
    assert_eq!(o["shipping_price"], json!(70));
    assert_eq!(o["payments"][0]["payment_method_id"], 1);
    assert_eq!(o["payments"][0]["status"], "not_paid");
    assert_eq!(o["payments"][0]["amount"], json!(2121));
    assert_eq!(o["marketing"]["utm_source"], "instagram");
    assert_eq!(o["marketing"]["utm_medium"], "cpc");
    assert_eq!(o["marketing"]["utm_campaign"], "black-friday");
    let fields: BTreeMap<String, Value> = o["custom_fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["uuid"].as_str().unwrap().to_string(), f["value"].clone()))
        .collect();
    assert_eq!(
        fields["OR_1002"],
        json!(["Instagram"]),
        "select: the option's own spelling"
    );
    assert_eq!(fields["OR_1003"], json!(2), "number");
    assert_eq!(fields["OR_1004"], json!(true), "switcher");
    assert_eq!(fields["OR_1005"], json!("2026-12-24"), "date");

    let e = env.entry("E2E-1").await;
    assert_eq!(
        (e.state, e.keycrm_id),
        (LedgerState::Created, o["id"].as_i64())
    );
    assert_eq!(e.report.total_mismatch, None);
    let status = env.table.status(&env.conn.id).await.unwrap();
    assert_eq!(status.counters["orders_pushed"], 1);

    // Exactly one KeyCRM request per order once the dictionaries are cached.
    let dictionary_reads = env.sim.stats().total_requests - 1;
    assert_eq!(env.sim.stats().endpoint("POST /order"), 1);
    env.publish(&[
        created_event(&env.conn.shop_id, "E2E-2", &sku),
        created_event(&env.conn.shop_id, "E2E-3", &sku),
    ])
    .await;
    env.drain(Duration::from_secs(30)).await;
    let stats = env.sim.stats();
    assert_eq!(stats.endpoint("POST /order"), 3);
    assert_eq!(stats.total_requests, dictionary_reads + 3);
    assert_eq!(stats.rate_limited_429, 0);
}

#[tokio::test]
async fn a_total_mismatch_is_pushed_and_flagged() {
    let env = env(OrderSyncType::Orders).await;
    let mut v: Value =
        serde_json::from_str(&created_event(&env.conn.shop_id, "MIS-1", "X-1")).unwrap();
    v["order"]["total"] = json!(2000);
    env.publish(&[v.to_string()]).await;
    env.drain(Duration::from_secs(30)).await;
    assert_eq!(env.sim_orders().len(), 1);
    let m = env
        .entry("MIS-1")
        .await
        .report
        .total_mismatch
        .expect("flagged");
    assert_eq!((m.shop_total, m.computed), (2000.into(), 2121.into()));
}

#[tokio::test]
async fn cards_land_in_the_mapped_pipeline_with_contact_products_utm_and_fields() {
    let env = env(OrderSyncType::Pipelines).await;
    let mut v: Value =
        serde_json::from_str(&created_event(&env.conn.shop_id, "CARD-1", "X-1")).unwrap();
    v["order"]["status"] = "paid".into();
    env.publish(&[v.to_string()]).await;
    let out = env.drain(Duration::from_secs(30)).await;
    assert!(
        matches!(
            &out[..],
            [Outcome::Created {
                target: Target::Card,
                ..
            }]
        ),
        "{out:?}"
    );
    let cards = env.sim.cards(&env.key);
    assert_eq!(cards.len(), 1);
    let c = &cards[0];
    assert_eq!(c["title"], "Замовлення №N-CARD-1");
    assert_eq!(c["pipeline_id"], 1);
    assert_eq!(c["source_id"], 1);
    assert_eq!(
        c["status_id"], 1002,
        "the mapped status, set right after creation"
    );
    assert_eq!(c["contact"]["phone"], "+380501112233");
    assert_eq!(c["contact"]["full_name"], "Олена Коваленко");
    assert_eq!(c["utm_source"], "instagram");
    assert_eq!(c["utm_campaign"], "black-friday");
    assert_eq!(c["products"].as_array().unwrap().len(), 2);
    assert_eq!(
        c["products"][0]["price"],
        json!(1200),
        "unit price after the line discount"
    );
    let fields: BTreeMap<String, Value> = c["custom_fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["uuid"].as_str().unwrap().to_string(), f["value"].clone()))
        .collect();
    assert_eq!(fields["LD_1002"], json!(["Instagram"]));
    assert_eq!(fields["LD_1003"], json!(1500.5));
    assert_eq!(fields["LD_1004"], json!(true));
    assert!(
        c["manager_comment"].as_str().unwrap().contains("NP ref"),
        "delivery goes to the comment"
    );
    let e = env.entry("CARD-1").await;
    assert_eq!((e.target, e.keycrm_status_id), (Target::Card, Some(1002)));
}

#[tokio::test]
async fn duplicate_events_produce_one_order() {
    let env = env(OrderSyncType::Orders).await;
    let ev = created_event(&env.conn.shop_id, "DUP-1", "X-1");
    env.publish(&[ev.clone(), ev.clone(), ev.clone()]).await;
    env.drain(Duration::from_secs(30)).await;
    env.publish(&[ev.clone(), ev]).await;
    let out = env.drain(Duration::from_secs(30)).await;
    assert!(
        out.iter().all(|o| matches!(o, Outcome::AlreadyDone { .. })),
        "{out:?}"
    );
    assert_eq!(
        count_source_uuid(&env.sim_orders(), &env.conn.shop_id, "DUP-1"),
        1
    );
    assert_eq!(env.sim.stats().endpoint("POST /order"), 1);
}

#[tokio::test]
async fn commit_then_timeout_produces_one_order_and_one_card() {
    for sync in [OrderSyncType::Orders, OrderSyncType::Pipelines] {
        let env = env(sync).await;
        env.sim.set_faults(Faults {
            commit_then_timeout: 1,
            hang_ms: 4000,
            ..Faults::default()
        });
        env.publish(&[created_event(&env.conn.shop_id, "CTT-1", "X-1")])
            .await;
        let out = env.drain(Duration::from_secs(60)).await;
        assert!(
            out.iter().any(|o| matches!(o, Outcome::Deferred { .. })),
            "{out:?}"
        );
        assert!(
            out.iter().any(|o| matches!(
                o,
                Outcome::Created {
                    recovered: true,
                    ..
                }
            )),
            "{sync:?}: {out:?}"
        );
        let stats = env.sim.stats();
        assert_eq!(stats.commit_then_timeout, 1);
        match sync {
            OrderSyncType::Pipelines => {
                assert_eq!(env.sim.cards(&env.key).len(), 1);
                assert_eq!(stats.endpoint("POST /pipelines/cards"), 1);
                assert_eq!(
                    stats.endpoint("GET /pipelines/cards"),
                    1,
                    "recovered by the card search"
                );
            }
            _ => {
                assert_eq!(
                    count_source_uuid(&env.sim_orders(), &env.conn.shop_id, "CTT-1"),
                    1
                );
                assert_eq!(stats.endpoint("POST /order"), 1);
            }
        }
        assert_eq!(env.entry("CTT-1").await.state, LedgerState::Created);
    }
}

#[tokio::test]
async fn card_recovery_on_a_busy_shared_account_is_exact_and_bounded() {
    let env = env(OrderSyncType::Pipelines).await;
    // Another shop on the same KeyCRM account just created 160 cards that look like ours:
    // same number, title, buyer and source, minutes apart at most.
    let other = keycrm::KeycrmClient::new(
        ClientConfig::with_base_url(env.sim.base_url()),
        keycrm::ApiKey::new(&env.key),
        Arc::new(LocalRateGate::new(RateBudget::keycrm_scaled(TIME_SCALE))),
    )
    .unwrap();
    for i in 0..160 {
        other
            .create_card(&keycrm::models::NewCard {
                title: Some("Замовлення №CTT-2".into()),
                pipeline_id: 1,
                source_id: Some(1),
                manager_comment: Some(mapping::source_key::card_marker(
                    &format!("other-shop-{i}"),
                    "CTT-2",
                )),
                contact: keycrm::models::CardContact {
                    full_name: Some("Олена Коваленко".into()),
                    email: Some("olena@example.com".into()),
                    phone: Some("+380501112233".into()),
                },
                ..keycrm::models::NewCard::default()
            })
            .await
            .unwrap();
    }
    env.sim.reset_stats();
    env.sim.set_faults(Faults {
        commit_then_timeout: 1,
        hang_ms: 4000,
        ..Faults::default()
    });
    env.publish(&[created_event(&env.conn.shop_id, "CTT-2", "X-1")])
        .await;
    let out = env.drain(Duration::from_secs(60)).await;
    let id = out
        .iter()
        .find_map(|o| match o {
            Outcome::Created {
                recovered: true,
                keycrm_id,
                ..
            } => Some(*keycrm_id),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{out:?}"));
    let cards = env.sim.cards(&env.key);
    assert_eq!(cards.len(), 161, "not created twice");
    let mine = cards.iter().find(|c| c["id"] == id).unwrap();
    assert!(
        mapping::source_key::has_card_marker(
            mine["manager_comment"].as_str(),
            &env.conn.shop_id,
            "CTT-2"
        ),
        "recovered this shop's own card: {mine}"
    );
    let searches = env.sim.stats().endpoint("GET /pipelines/cards");
    assert!((1..=5).contains(&searches), "{searches} card listings");
}

#[tokio::test]
async fn a_crash_after_the_keycrm_write_before_the_ledger_update_produces_one_order() {
    let table = emulator::table().await;
    // The first ledger update after KeyCRM answered, and the release after it, fail for this
    // order as if the process had died right after KeyCRM created the order.
    let died = || StoreError::Unavailable("process died".into());
    let crash: Arc<dyn OrderLedger> = Arc::new(
        HookedLedger::new(Arc::new(table))
            .only_order("CRASH-1")
            .fail(LedgerOp::RecordCreated, Nth::Call(0), died)
            .fail(LedgerOp::MarkCreated, Nth::Call(0), died)
            .fail(LedgerOp::Release, Nth::Call(0), died),
    );
    let env = env_with(OrderSyncType::Orders, None, Some(crash), TIME_SCALE).await;
    env.publish(&[created_event(&env.conn.shop_id, "CRASH-1", "X-1")])
        .await;
    let out = env.drain(Duration::from_secs(60)).await;
    assert!(
        out.iter().any(|o| matches!(
            o,
            Outcome::Created {
                recovered: true,
                ..
            }
        )),
        "{out:?}"
    );
    assert_eq!(
        count_source_uuid(&env.sim_orders(), &env.conn.shop_id, "CRASH-1"),
        1
    );
    assert_eq!(env.sim.stats().endpoint("POST /order"), 1);
    assert_eq!(
        env.sim.stats().endpoint("GET /order"),
        1,
        "found by source_uuid"
    );
}

#[tokio::test]
async fn error_and_rate_limit_storms_end_with_every_order_in_keycrm_once() {
    // The account allows 60 requests per 6 s (a KeyCRM minute lasts 6 s here). Another
    // integration on the same key spends all of it, so the connector's requests meet 429s
    // however fast the emulator lets it go.
    let gate: Arc<dyn RateGate> = Arc::new(LocalRateGate::new(RateBudget::keycrm_scaled(10.0)));
    let env = env_with(OrderSyncType::Orders, Some(gate), None, 10.0).await;
    // A first order loads the dictionaries, so the storm's orders go straight to POST /order
    // (an idle key's interactive burst would otherwise land them before the neighbour has
    // spent the window, and dictionary reads wait out a 429 instead of deferring).
    env.publish(&[created_event(&env.conn.shop_id, "STORM-WARM", "X-1")])
        .await;
    env.drain(Duration::from_secs(60)).await;
    env.sim.set_faults(Faults {
        error_rate_5xx: 0.25,
        drop_rate: 0.1,
        seed: 11,
        ..Faults::default()
    });
    // The neighbour keeps the key spent until the storm's creates have met it (several
    // attempts, so at least one lands past the window's first 60 requests), at least one
    // KeyCRM minute and at most ten: a fixed spell would end before a loaded machine gets
    // the first order to KeyCRM, and the orders would never see a 429.
    let creates_before = env.sim.stats().endpoint("POST /order");
    let neighbour = {
        let (url, key, sim) = (
            format!("{}/order/source", env.sim.base_url()),
            env.key.clone(),
            env.sim.clone(),
        );
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            let started = std::time::Instant::now();
            while started.elapsed() < Duration::from_secs(60) {
                let _ = http.get(&url).bearer_auth(&key).send().await;
                tokio::time::sleep(Duration::from_millis(25)).await;
                let creates = sim
                    .stats()
                    .endpoint("POST /order")
                    .saturating_sub(creates_before);
                if started.elapsed() > Duration::from_secs(6) && creates >= 8 {
                    break;
                }
            }
        })
    };
    // The orders come once the neighbour has spent the window.
    for _ in 0..200 {
        if env.sim.stats().rate_limited_429 > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ids: Vec<String> = (0..30).map(|i| format!("STORM-{i}")).collect();
    let events: Vec<String> = ids
        .iter()
        .map(|id| created_event(&env.conn.shop_id, id, "X-1"))
        .collect();
    env.publish(&events).await;
    let out = env.drain_with(3, Duration::from_secs(240)).await;
    neighbour.await.unwrap();
    let orders = env.sim_orders();
    for id in &ids {
        assert_eq!(count_source_uuid(&orders, &env.conn.shop_id, id), 1, "{id}");
        assert_eq!(env.entry(id).await.state, LedgerState::Created, "{id}");
    }
    assert_eq!(
        count_source_uuid(&orders, &env.conn.shop_id, "STORM-WARM"),
        1
    );
    assert_eq!(orders.len(), ids.len() + 1);
    let stats = env.sim.stats();
    let rate_limited = |o: &Outcome| matches!(o, Outcome::Deferred { reason, .. } if reason.contains("rate limit"));
    assert!(
        out.iter().any(rate_limited),
        "orders met 429s and were deferred: {out:?}"
    );
    assert!(
        stats.injected_5xx + stats.dropped_connections > 0,
        "the storm had 5xx and drops"
    );
    assert!(out.iter().any(|o| matches!(o, Outcome::Deferred { .. })));
    assert!(
        env.dead_letters().await.is_empty(),
        "nothing dead-lettered, nothing lost"
    );
}

#[tokio::test]
async fn malformed_events_end_in_the_dead_letter_queue_with_reasons() {
    let env = env(OrderSyncType::Orders).await;
    let good = created_event(&env.conn.shop_id, "GOOD-1", "X-1");
    let mut wrong: Value = serde_json::from_str(&good).unwrap();
    wrong["order"]["items"][1]["price"] = "450.50".into();
    wrong["order"]["id"] = "BAD-1".into();
    let mut missing: Value = serde_json::from_str(&good).unwrap();
    missing["order"].as_object_mut().unwrap().remove("customer");
    let mut version: Value = serde_json::from_str(&good).unwrap();
    version["version"] = 3.into();
    env.sim.reset_stats();
    env.publish(&[
        "{not json".to_string(),
        wrong.to_string(),
        missing.to_string(),
        version.to_string(),
        good,
    ])
    .await;
    let out = env.drain(Duration::from_secs(30)).await;
    assert_eq!(
        out.iter()
            .filter(|o| matches!(o, Outcome::Created { .. }))
            .count(),
        1,
        "{out:?}"
    );
    let dead = env.dead_letters().await;
    assert_eq!(dead.len(), 4, "{dead:?}");
    for (body, kind) in &dead {
        assert_eq!(kind.as_deref(), Some("malformed"));
        assert_eq!(body["kind"], "malformed");
        assert!(!body["reason"].as_str().unwrap().is_empty());
        assert!(body["original"].is_string());
    }
    let reasons: Vec<String> = dead
        .iter()
        .map(|(b, _)| b["reason"].as_str().unwrap().to_string())
        .collect();
    assert!(
        reasons.iter().any(|r| r.contains("not valid JSON")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("order.items[1].price")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("order.customer") && r.contains("required")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("version 3")),
        "{reasons:?}"
    );
    let bad = dead
        .iter()
        .find(|(b, _)| b["order_id"] == "BAD-1")
        .expect("ids kept");
    assert_eq!(bad.0["shop_id"], env.conn.shop_id.as_str());
    assert_eq!(
        env.sim.stats().endpoint("POST /order"),
        1,
        "no KeyCRM call for malformed events"
    );
}

#[tokio::test]
async fn a_validation_error_is_visible_and_a_repush_after_the_fix_creates_the_order() {
    let env = env(OrderSyncType::Orders).await;
    let mut conn = env.conn.clone();
    conn.settings.delivery_map = vec![DeliveryLink {
        shop_method: "nova_poshta".into(),
        keycrm_service_id: 99,
    }];
    conn.version += 1;
    ConnectionStore::update(&env.table, &conn).await.unwrap();
    env.publish(&[created_event(&env.conn.shop_id, "VAL-1", "X-1")])
        .await;
    let out = env.drain(Duration::from_secs(30)).await;
    assert!(
        matches!(&out[..], [Outcome::DeadLettered { kind, .. }] if kind == "validation"),
        "{out:?}"
    );
    let dead = env.dead_letters().await;
    assert!(
        dead[0].0["reason"]
            .as_str()
            .unwrap()
            .contains("shipping.delivery_service_id"),
        "{dead:?}"
    );
    let e = env.entry("VAL-1").await;
    assert_eq!(e.state, LedgerState::Failed);
    assert!(
        e.field_errors.contains_key("shipping.delivery_service_id"),
        "{e:?}"
    );
    let status = env.table.status(&env.conn.id).await.unwrap();
    assert_eq!(status.failures[0].shop_order_id, "VAL-1");
    assert!(status.failures[0]
        .field_errors
        .contains_key("shipping.delivery_service_id"));
    assert_eq!(status.counters["orders_failed"], 1);

    conn.settings.delivery_map[0].keycrm_service_id = 3;
    conn.version += 1;
    ConnectionStore::update(&env.table, &conn).await.unwrap();
    jobs::repush(env.push.ledger.as_ref(), &env.orders, &env.conn.id, "VAL-1")
        .await
        .unwrap();
    let out = env.drain(Duration::from_secs(30)).await;
    assert!(matches!(&out[..], [Outcome::Created { .. }]), "{out:?}");
    assert_eq!(env.sim_orders()[0]["shipping"]["delivery_service_id"], 3);
    assert!(
        env.table
            .status(&env.conn.id)
            .await
            .unwrap()
            .failures
            .is_empty(),
        "failure cleared"
    );
}

#[tokio::test]
async fn shop_status_changes_update_keycrm_and_keycrm_changes_are_not_echoed() {
    let env = env(OrderSyncType::Orders).await;
    let shop = env.conn.shop_id.clone();
    let t0 = Utc::now();
    // The status change is published right behind the order; it may even be handled first.
    env.publish(&[
        status_event(&shop, "ST-1", "paid", t0),
        created_event(&shop, "ST-1", "X-1"),
    ])
    .await;
    env.drain(Duration::from_secs(30)).await;
    let order_id = env.sim_orders()[0]["id"].as_i64().unwrap();
    assert_eq!(env.sim_orders()[0]["status_id"], 4);
    assert_eq!(env.sim.stats().endpoint("PUT /order/{id}"), 1);

    // KeyCRM moves it to completed; the status-apply side records what it applied to the shop.
    env.sim
        .change_order_status(&env.key, order_id, 12)
        .await
        .unwrap();
    let kc_at = Utc::now();
    assert!(env
        .push
        .ledger
        .record_keycrm_status(&env.conn.id, "ST-1", 12, kc_at, "done")
        .await
        .unwrap());
    // The shop announces that change: it must not go back to KeyCRM.
    env.publish(&[status_event(
        &shop,
        "ST-1",
        "done",
        kc_at + chrono::Duration::seconds(1),
    )])
    .await;
    let out = env.drain(Duration::from_secs(30)).await;
    assert!(matches!(&out[..], [Outcome::Skipped { .. }]), "{out:?}");
    assert_eq!(
        env.sim.stats().endpoint("PUT /order/{id}"),
        1,
        "no ping-pong"
    );
    assert_eq!(
        env.table.status(&env.conn.id).await.unwrap().counters["statuses_pushed"],
        1
    );
}
