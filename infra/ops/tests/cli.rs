//! The `ops` binary end to end against the emulator (DynamoDB, SQS, Secrets Manager on moto)
//! and the KeyCRM simulator: each command is run as an operator runs it, on a "stage" whose
//! table and queues carry the names CloudFormation gives them, and its output, its exit code
//! and what it changed are checked.

use catalog_sync::{Config, Deps, Engine, JobOutcome};
use chrono::Utc;
use e2e_tests::emulator;
use keycrm::models::{NewBuyer, NewOrder, NewOrderProduct};
use keycrm::{ApiKey, ClientConfig, KeycrmClient, LocalRateGate, RateBudget, UnlimitedGate};
use keycrm_sim::{AccountSpec, SimConfig, SimHandle};
use mapping::settings::OrderStatusMap;
use mapping::{OrderSyncType, Settings};
use queue::{DeadLetter, MemoryQueue, Outgoing, Queue, SqsQueue};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::ledger::Created;
use store::{
    tokens, Connection, ConnectionStore, DynamoTable, LedgerState, OrderFailure, OrderLedger,
    SecretStore, SecretsManager, StatusJournal, SyncJob, SyncRun, SyncStore, SyncSummary, Target,
    WebhookGenerations, WebhookTokens,
};

/// Variables the host may have set that would point the tool elsewhere.
const HOST_VARS: &[&str] = &[
    "TABLE_NAME",
    "ORDER_QUEUE_URL",
    "ORDER_DLQ_URL",
    "STATUS_QUEUE_URL",
    "STATUS_DLQ_URL",
    "SYNC_QUEUE_URL",
    "SYNC_DLQ_URL",
    "SHOP_KEYCRM_STAGE",
    "SHOP_KEYCRM_STACK",
];

struct Run {
    code: i32,
    out: String,
    err: String,
}

/// Runs the binary (off the test's runtime, which serves the simulator meanwhile).
async fn ops_with(args: &[&str], env: &[(&str, &str)], remove: &[&str]) -> Run {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let remove: Vec<String> = remove.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ops"));
        cmd.args(&args);
        for v in HOST_VARS {
            cmd.env_remove(v);
        }
        for v in &remove {
            cmd.env_remove(v);
        }
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let o = cmd.output().expect("ops runs");
        Run {
            code: o.status.code().unwrap_or(-1),
            out: String::from_utf8_lossy(&o.stdout).into_owned(),
            err: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    })
    .await
    .unwrap()
}

async fn ops(args: &[&str]) -> Run {
    ops_with(args, &[], &[]).await
}

fn ok(r: &Run) {
    assert_eq!(r.code, 0, "ops failed:\n{}\n{}", r.out, r.err);
}

/// A deployment on the emulator named as CloudFormation names stack `shop-keycrm-<stage>`.
struct Stage {
    stage: String,
    table: DynamoTable,
    queues: BTreeMap<&'static str, SqsQueue>,
}

fn stage_name() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!(
        "t{:x}{}",
        nanos ^ std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

async fn stage() -> Stage {
    emulator::require();
    let stage = stage_name();
    let stack = format!("shop-keycrm-{stage}");
    let ddb = DynamoTable::client_from_env().await;
    let table = DynamoTable::create(&ddb, &format!("{stack}-ConnectorTable-ABC123XYZ"))
        .await
        .unwrap();
    let sqs = SqsQueue::client_from_env().await;
    let mut queues = BTreeMap::new();
    for id in [
        "OrderEventsQueue",
        "OrderEventsDLQ",
        "StatusUpdatesQueue",
        "StatusUpdatesDLQ",
        "SyncJobsQueue",
        "SyncJobsDLQ",
        "StockFlushQueue",
        "StockFlushDLQ",
    ] {
        let q = SqsQueue::create(&sqs, &format!("{stack}-{id}-Q1w2E3r4"), None)
            .await
            .unwrap();
        queues.insert(id, q);
    }
    Stage {
        stage,
        table,
        queues,
    }
}

impl Stage {
    fn q(&self, id: &str) -> &SqsQueue {
        &self.queues[id]
    }

    async fn run(&self, args: &[&str]) -> Run {
        let mut all = vec!["--stage", self.stage.as_str()];
        all.extend_from_slice(args);
        ops(&all).await
    }

    /// A connection of `shop` with its key stored in Secrets Manager.
    async fn connect(
        &self,
        shop: &str,
        key: &str,
        base_url: &str,
        settings: Settings,
    ) -> Connection {
        let id = emulator::unique("conn").replace('-', "");
        let secret_name = format!("shop-keycrm/{}/keycrm/{id}", self.stage);
        SecretsManager::from_env()
            .await
            .put(&secret_name, &ApiKey::new(key))
            .await
            .unwrap();
        // Orders: a derived URL (generation 1); cards: a legacy token's hash.
        let (_, cards_hash) = tokens::generate();
        let c = Connection {
            id,
            shop_id: shop.into(),
            active: true,
            keycrm_base_url: base_url.into(),
            key_mask: ApiKey::new(key).masked(),
            key_fingerprint: ApiKey::new(key).fingerprint(),
            secret_name,
            settings,
            webhook_tokens: WebhookTokens {
                orders: None,
                cards: Some(cards_hash),
            },
            webhook_generations: WebhookGenerations {
                orders: 1,
                cards: 0,
                stock: 1,
            },
            account_epoch: 0,
            account_switched_at: None,
            version: 1,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        };
        ConnectionStore::create(&self.table, &c).await.unwrap();
        c
    }

    /// Drains a queue: every body (deleting them).
    async fn drain(&self, id: &str) -> Vec<(String, BTreeMap<String, String>)> {
        let q = self.q(id);
        let mut out = Vec::new();
        loop {
            let got = q
                .receive(10, Duration::from_secs(1), Duration::from_secs(30))
                .await
                .unwrap();
            if got.is_empty() {
                return out;
            }
            for m in got {
                q.delete(&m.receipt).await.unwrap();
                out.push((m.body, m.attributes.into_iter().collect()));
            }
        }
    }

    /// Messages currently visible (receives them and hands them back).
    async fn visible(&self, id: &str) -> usize {
        let q = self.q(id);
        let mut n = 0;
        let mut receipts = Vec::new();
        loop {
            let got = q
                .receive(10, Duration::from_secs(1), Duration::from_secs(30))
                .await
                .unwrap();
            if got.is_empty() {
                break;
            }
            n += got.len();
            receipts.extend(got.into_iter().map(|m| m.receipt));
        }
        for r in receipts {
            q.change_visibility(&r, Duration::ZERO).await.unwrap();
        }
        n
    }
}

fn settings() -> Settings {
    Settings {
        order_sync: OrderSyncType::Orders,
        source_id: Some(1),
        sync_products: true,
        sync_categories: true,
        order_statuses: OrderStatusMap::from_legacy(vec![("new".into(), 1), ("shipped".into(), 7)]),
        ..Settings::default()
    }
}

fn created_event(shop: &str, order: &str) -> String {
    json!({"version": 1, "type": "order.created", "event_id": format!("e-{order}"),
           "shop_id": shop, "occurred_at": "2026-03-19T10:00:00Z",
           "order": {"id": order, "number": order}})
    .to_string()
}

async fn simulator(key: &str, products: usize) -> SimHandle {
    keycrm_sim::start(
        SimConfig {
            accounts: vec![AccountSpec {
                api_key: key.into(),
                seed: 3,
                products,
                pipelines_enabled: true,
            }],
            rate_limit_per_minute: 0,
            time_scale: 600.0,
            public_base_url: None,
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn connections_lists_state_syncs_failures_and_usage_never_a_secret() {
    let s = stage().await;
    let key_a = emulator::unique("secret-key-a");
    let a = s
        .connect("shop-a", &key_a, "http://127.0.0.1:9/v1", settings())
        .await;
    let mut b = s
        .connect(
            "shop-b",
            &emulator::unique("secret-key-b"),
            "http://127.0.0.1:9/v1",
            settings(),
        )
        .await;
    b.active = false;
    b.version += 1;
    s.table.update(&b).await.unwrap();
    s.table
        .count_many(
            &a.id,
            &[
                (store::Counter::OrdersPushed, 41),
                (store::Counter::KeycrmRequests, 97),
            ],
        )
        .await
        .unwrap();
    s.table
        .record_failure(
            &a.id,
            &OrderFailure {
                shop_order_id: "A-7".into(),
                at: Utc::now(),
                reason: "KeyCRM refused the order: phone".into(),
                field_errors: Default::default(),
            },
        )
        .await
        .unwrap();
    s.table
        .record_sync(
            &b.id,
            "full",
            &SyncSummary {
                run_id: "r1".into(),
                finished_at: Some(Utc::now()),
                complete: true,
                ..SyncSummary::default()
            },
        )
        .await
        .unwrap();

    let r = s.run(&["connections"]).await;
    ok(&r);
    assert!(
        r.out.contains("shop-a") && r.out.contains("shop-b"),
        "{}",
        r.out
    );
    assert!(r.out.contains("inactive"));
    assert!(r.out.contains("KeyCRM refused the order: phone"));
    assert!(r.out.contains("2 connection(s)"));
    let line_a = r.out.lines().find(|l| l.starts_with("shop-a")).unwrap();
    assert!(
        line_a.contains(" 41 ") && line_a.contains(" 97 "),
        "{line_a}"
    );
    for secret in [&key_a, a.webhook_tokens.cards.as_ref().unwrap()] {
        assert!(!r.out.contains(secret.as_str()), "a secret was printed");
    }

    let r = s.run(&["connections", "--failing"]).await;
    ok(&r);
    assert!(
        r.out.contains("shop-a") && !r.out.contains("shop-b"),
        "{}",
        r.out
    );

    let r = s.run(&["--json", "connections"]).await;
    ok(&r);
    let v: Value = serde_json::from_str(&r.out).unwrap();
    assert_eq!(v["connections"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn connection_shows_its_health_and_never_a_key_or_token() {
    let s = stage().await;
    let key = emulator::unique("secret-key");
    let c = s
        .connect("shop-h", &key, "http://127.0.0.1:9/v1", settings())
        .await;
    s.table
        .record_error(&c.id, "the shop API is unavailable: 503")
        .await
        .unwrap();

    let r = s.run(&["connection", "shop-h"]).await;
    ok(&r);
    assert!(r.out.contains(&c.id));
    assert!(r.out.contains("active"));
    assert!(r.out.contains("stored"), "{}", r.out);
    assert!(
        r.out
            .contains("orders issued (generation 1), cards issued (legacy token), stock issued (generation 1)"),
        "{}",
        r.out
    );
    assert!(r.out.contains("realtime stock false"), "{}", r.out);
    assert!(r.out.contains("the shop API is unavailable: 503"));
    assert!(r.out.contains(&c.key_mask));
    assert!(!r.out.contains(&key), "the key was printed");
    assert!(!r.out.contains(c.webhook_tokens.cards.as_ref().unwrap()));

    // The key gone from Secrets Manager: said plainly.
    SecretsManager::from_env()
        .await
        .delete(&c.secret_name)
        .await
        .unwrap();
    let r = s.run(&["connection", "shop-h"]).await;
    ok(&r);
    assert!(r.out.contains("MISSING"), "{}", r.out);

    let r = s.run(&["connection", "no-such-shop"]).await;
    assert_eq!(r.code, 1);
    assert!(r.err.contains("has no KeyCRM connection"), "{}", r.err);
}

#[tokio::test]
async fn order_shows_its_ledger_history_and_where_it_is_in_keycrm() {
    let s = stage().await;
    let key = emulator::unique("k");
    let sim = simulator(&key, 1).await;
    let c = s.connect("shop-o", &key, &sim.base_url(), settings()).await;
    let crm = KeycrmClient::new(
        ClientConfig::with_base_url(sim.base_url()),
        ApiKey::new(&key),
        Arc::new(UnlimitedGate),
    )
    .unwrap();
    let o = crm
        .create_order(&NewOrder {
            source_id: 1,
            source_uuid: Some("shop-o:A-1".into()),
            buyer: NewBuyer {
                full_name: Some("Олена".into()),
                phone: Some("+380501234567".into()),
                ..NewBuyer::default()
            },
            products: vec![NewOrderProduct {
                sku: "S".into(),
                name: "Сукня".into(),
                price: Decimal::from(100),
                quantity: Decimal::ONE,
                ..NewOrderProduct::default()
            }],
            ..NewOrder::default()
        })
        .await
        .unwrap();
    s.table
        .claim(
            &c.id,
            "A-1",
            Target::Order,
            "h",
            Duration::from_secs(60),
            &created_event("shop-o", "A-1"),
        )
        .await
        .unwrap();
    s.table
        .record_created(
            &c.id,
            "A-1",
            "h",
            &Created {
                target: Target::Order,
                keycrm_id: o.id,
                report: Default::default(),
                shop_status: Some("new".into()),
                keycrm_status_id: Some(1),
            },
        )
        .await
        .unwrap();
    sim.change_order_status(&key, o.id, 7).await.unwrap();

    let r = s.run(&["order", "shop-o", "A-1", "--keycrm"]).await;
    ok(&r);
    assert!(r.out.contains("Created"), "{}", r.out);
    assert!(r.out.contains(&format!("order {}", o.id)));
    assert!(r.out.contains("history"));
    assert!(r.out.contains("first taken for creation"));
    // Where it is in KeyCRM now: status 7, which the mapping calls "shipped".
    assert!(r.out.contains("status 7 = shop \"shipped\""), "{}", r.out);
    assert!(!r.out.contains("+380501234567"), "buyer data printed");
    assert!(!r.out.contains(&key));

    let r = s.run(&["order", "shop-o", "NOPE-1"]).await;
    assert_eq!(r.code, 1);
    assert!(r.err.contains("not in the ledger"), "{}", r.err);
}

fn letter(kind: &str, reason: &str, shop: &str, order: &str) -> Outgoing {
    let mut d = DeadLetter::new(kind, reason, "order-events", &created_event(shop, order));
    d.shop_id = Some(shop.into());
    d.order_id = Some(order.into());
    d.to_outgoing()
}

#[tokio::test]
async fn dlq_show_lists_the_reasons_and_leaves_every_letter_in_place() {
    let s = stage().await;
    let dlq = s.q("OrderEventsDLQ");
    dlq.send(letter(
        "validation",
        "KeyCRM refused the order: phone invalid",
        "shop-1",
        "A-1",
    ))
    .await
    .unwrap();
    dlq.send(letter(
        "mapping",
        "no KeyCRM source is configured",
        "shop-2",
        "B-1",
    ))
    .await
    .unwrap();
    // Moved by the redrive policy: no reason recorded.
    dlq.send(Outgoing::new(created_event("shop-1", "A-2")))
        .await
        .unwrap();

    let r = s.run(&["dlq", "show", "orders"]).await;
    ok(&r);
    assert!(r.out.starts_with("3 dead letter(s)"), "{}", r.out);
    assert!(r.out.contains("phone invalid"));
    assert!(r.out.contains("no KeyCRM source is configured"));
    assert!(r.out.contains("max_receives"));
    assert!(r
        .out
        .contains("by kind: mapping 1, max_receives 1, validation 1"));
    assert!(!r.out.contains("order.created"), "bodies only with --body");

    let r = s
        .run(&["dlq", "show", "orders", "--kind", "validation"])
        .await;
    ok(&r);
    assert!(r.out.starts_with("1 dead letter(s)"), "{}", r.out);
    assert!(r.out.contains("2 other letter(s)"));
    let r = s
        .run(&["dlq", "show", "orders", "--shop", "shop-1", "--body"])
        .await;
    ok(&r);
    assert!(r.out.starts_with("2 dead letter(s)"), "{}", r.out);
    assert!(r.out.contains("order.created"));
    let r = s
        .run(&["--json", "dlq", "show", "orders", "--reason", "SOURCE"])
        .await;
    ok(&r);
    let v: Value = serde_json::from_str(&r.out).unwrap();
    assert_eq!(v["count"], 1);
    assert_eq!(v["letters"][0]["kind"], "mapping");

    // Reading changed nothing: all three are there to read again at once.
    assert_eq!(s.visible("OrderEventsDLQ").await, 3);
}

#[tokio::test]
async fn dlq_redrive_repushes_failed_orders_resends_the_rest_and_shows_progress() {
    let s = stage().await;
    let c = s
        .connect(
            "shop-r",
            &emulator::unique("k"),
            "http://127.0.0.1:9/v1",
            settings(),
        )
        .await;
    // A-1 failed validation (its ledger entry says so), A-2 is in KeyCRM already.
    for (order, created) in [("A-1", false), ("A-2", true)] {
        s.table
            .claim(
                &c.id,
                order,
                Target::Order,
                "h",
                Duration::from_secs(60),
                &created_event("shop-r", order),
            )
            .await
            .unwrap();
        if created {
            s.table
                .record_created(
                    &c.id,
                    order,
                    "h",
                    &Created {
                        target: Target::Order,
                        keycrm_id: 77,
                        report: Default::default(),
                        shop_status: None,
                        keycrm_status_id: None,
                    },
                )
                .await
                .unwrap();
        } else {
            s.table
                .mark_failed(
                    &c.id,
                    order,
                    "h",
                    "KeyCRM refused the order: phone",
                    &Default::default(),
                )
                .await
                .unwrap();
        }
    }
    let dlq = s.q("OrderEventsDLQ");
    dlq.send(letter(
        "validation",
        "KeyCRM refused the order: phone",
        "shop-r",
        "A-1",
    ))
    .await
    .unwrap();
    dlq.send(letter(
        "failed_earlier",
        "order A-2 failed earlier",
        "shop-r",
        "A-2",
    ))
    .await
    .unwrap();
    dlq.send(letter("mapping", "no source", "shop-r", "A-3"))
        .await
        .unwrap();

    // A dry run says what it would do and changes nothing.
    let r = s
        .run(&["dlq", "redrive", "orders", "--shop", "shop-r", "--dry-run"])
        .await;
    ok(&r);
    assert!(r.out.contains("would re-push"), "{}", r.out);
    assert!(r.out.contains("would remove (already in KeyCRM)"));
    assert!(r.out.contains("would send back"));
    assert_eq!(s.visible("OrderEventsDLQ").await, 3);
    assert!(s.drain("OrderEventsQueue").await.is_empty());
    let entry = OrderLedger::get(&s.table, &c.id, "A-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(entry.state, LedgerState::Failed);

    // Only validation and failed_earlier letters: A-1 re-pushed, A-2's letter removed.
    for kind in ["validation", "failed_earlier"] {
        let r = s.run(&["dlq", "redrive", "orders", "--kind", kind]).await;
        ok(&r);
    }
    let entry = OrderLedger::get(&s.table, &c.id, "A-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(entry.state, LedgerState::Pending, "reset for the re-push");
    let sent = s.drain("OrderEventsQueue").await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    let ev: Value = serde_json::from_str(&sent[0].0).unwrap();
    assert_eq!(ev["order"]["id"], "A-1");
    assert_eq!(sent[0].1.get("repush").map(String::as_str), Some("1"));
    // The mapping letter did not match and stays.
    assert_eq!(s.visible("OrderEventsDLQ").await, 1);

    // A long redrive of status jobs moved by SQS: progress on stderr, every one sent back.
    let sdlq = s.q("StatusUpdatesDLQ");
    for i in 0..60 {
        sdlq.send(Outgoing::new(
            json!({"v": 1, "connection_id": c.id, "target": "order", "keycrm_id": i,
                   "status_id": 7, "changed_at": "2026-03-19T10:00:00Z",
                   "received_at": "2026-03-19T10:00:01Z"})
            .to_string(),
        ))
        .await
        .unwrap();
    }
    let r = s.run(&["dlq", "redrive", "statuses"]).await;
    ok(&r);
    assert!(r.out.contains("sent back: 60"), "{}", r.out);
    assert!(
        r.err.contains("redrive: 25 letters"),
        "no progress: {}",
        r.err
    );
    assert!(r.err.contains("redrive: 50 letters"), "{}", r.err);
    assert!(r.err.contains("redrive: 60 letters"), "{}", r.err);
    assert_eq!(s.drain("StatusUpdatesQueue").await.len(), 60);
    assert_eq!(s.visible("StatusUpdatesDLQ").await, 0);
}

#[tokio::test]
async fn dlq_shows_and_redrives_realtime_stock_flushes() {
    let s = stage().await;
    let key = emulator::unique("stock-key");
    let c = s
        .connect("shop-k", &key, "http://127.0.0.1:9/v1", settings())
        .await;
    let job = json!({"v": 1, "connection_id": c.id, "window": "w1"}).to_string();
    s.q("StockFlushDLQ")
        .send(
            DeadLetter::new(
                "stock_flush",
                "realtime stock: the flush failed after 10 attempt(s): the shop API is unavailable: 503",
                "stock-flushes",
                &job,
            )
            .to_outgoing(),
        )
        .await
        .unwrap();

    let r = s.run(&["dlq", "show", "stock", "--shop", "shop-k"]).await;
    ok(&r);
    assert!(
        r.out.contains("1 dead letter(s) in the stock flushes DLQ"),
        "{}",
        r.out
    );
    assert!(r.out.contains(&format!("connection {}", c.id)), "{}", r.out);
    assert!(r.out.contains("the shop API is unavailable"), "{}", r.out);
    assert!(r.out.contains("by kind: stock_flush 1"), "{}", r.out);

    let r = s.run(&["dlq", "redrive", "stock", "--dry-run"]).await;
    ok(&r);
    assert!(r.out.contains("would send back"), "{}", r.out);
    assert_eq!(s.visible("StockFlushDLQ").await, 1);

    // Sent back as it was: stock-apply takes the connection's window (none is live) and
    // flushes whatever is pending or was left in flight.
    let r = s.run(&["dlq", "redrive", "stock"]).await;
    ok(&r);
    assert!(r.out.contains("sent back: 1"), "{}", r.out);
    let sent = s.drain("StockFlushQueue").await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, job);
    assert_eq!(s.visible("StockFlushDLQ").await, 0);
}

#[tokio::test]
async fn sync_queues_an_operator_run_that_catalog_sync_carries_out_under_its_id() {
    let s = stage().await;
    let key = emulator::unique("k");
    let sim = simulator(&key, 4).await;
    let c = s.connect("shop-s", &key, &sim.base_url(), settings()).await;

    let r = s.run(&["sync", "shop-s", "--kind", "full"]).await;
    ok(&r);
    let run_id = r
        .out
        .split_whitespace()
        .skip_while(|w| *w != "run")
        .nth(1)
        .unwrap()
        .to_string();
    let runs = s.run(&["runs", "shop-s"]).await;
    ok(&runs);
    assert!(
        runs.out.contains(&run_id) && runs.out.contains("queued"),
        "{}",
        runs.out
    );

    // catalog-sync takes the job off the queue and runs it under the operator's run id.
    let jobs = s.drain("SyncJobsQueue").await;
    assert_eq!(jobs.len(), 1);
    let job: SyncJob = serde_json::from_str(&jobs[0].0).unwrap();
    assert_eq!(job.requested_by, "operator");
    assert_eq!(job.run_id.as_deref(), Some(run_id.as_str()));
    let secrets = Arc::new(SecretsManager::from_env().await);
    let engine = Engine::new(
        Deps {
            connections: Arc::new(s.table.clone()),
            sync: Arc::new(s.table.clone()),
            links: Arc::new(s.table.clone()),
            shop: Arc::new(shop::MemoryShop::new()),
            clients: Arc::new(runtime::KeycrmClients::new(
                secrets,
                Arc::new(LocalRateGate::new(RateBudget::keycrm_scaled(600.0))),
                ClientConfig::with_base_url(sim.base_url()),
            )),
            journal: Arc::new(s.table.clone()),
            jobs: Arc::new(MemoryQueue::new("sync-jobs")),
        },
        Config {
            safety: Duration::from_millis(100),
            ..Config::default()
        },
    );
    let out = engine
        .on_message(&jobs[0].0, Instant::now() + Duration::from_secs(120))
        .await
        .unwrap();
    assert_eq!(
        out,
        JobOutcome::Finished {
            run_id: run_id.clone(),
            state: store::RunState::Completed
        }
    );
    let runs = s.run(&["runs", "shop-s"]).await;
    ok(&runs);
    let line = runs.out.lines().find(|l| l.starts_with(&run_id)).unwrap();
    assert!(
        line.contains("completed") && line.contains("full"),
        "{line}"
    );

    // A dry run of prices; an inactive connection is refused.
    let r = s
        .run(&["sync", "shop-s", "--kind", "prices", "--dry-run"])
        .await;
    ok(&r);
    let job: SyncJob = serde_json::from_str(&s.drain("SyncJobsQueue").await[0].0).unwrap();
    assert!(job.dry_run);
    assert_eq!(job.kind, store::SyncKind::Prices);
    let mut off = c.clone();
    off.active = false;
    off.version += 1;
    s.table.update(&off).await.unwrap();
    let r = s.run(&["sync", "shop-s"]).await;
    assert_eq!(r.code, 1);
    assert!(r.err.contains("inactive"), "{}", r.err);
}

#[tokio::test]
async fn runs_lists_recent_reports_newest_first() {
    let s = stage().await;
    let c = s
        .connect(
            "shop-n",
            &emulator::unique("k"),
            "http://127.0.0.1:9/v1",
            settings(),
        )
        .await;
    let t0 = Utc::now() - chrono::Duration::hours(2);
    for (i, state) in [store::RunState::Completed, store::RunState::Failed]
        .iter()
        .enumerate()
    {
        let started = t0 + chrono::Duration::minutes(30 * i as i64);
        let mut counts = BTreeMap::new();
        counts.insert("create".to_string(), 3 + i as u64);
        s.table
            .put_run(&SyncRun {
                run_id: format!("run{i}"),
                connection_id: c.id.clone(),
                kind: Some(store::SyncKind::Full),
                state: *state,
                started_at: Some(started),
                finished_at: Some(started + chrono::Duration::seconds(95)),
                counts,
                keycrm_requests: 12,
                message: (i == 1).then(|| "KeyCRM: unauthorized".to_string()),
                ..SyncRun::default()
            })
            .await
            .unwrap();
    }
    let r = s.run(&["runs", "shop-n"]).await;
    ok(&r);
    let lines: Vec<&str> = r.out.lines().collect();
    assert!(
        lines[1].starts_with("run1") && lines[2].starts_with("run0"),
        "{}",
        r.out
    );
    assert!(lines[1].contains("failed") && lines[1].contains("KeyCRM: unauthorized"));
    assert!(lines[2].contains("1m35s") && lines[2].contains("create=3"));
    assert!(r.out.contains("2 run(s)"));
}

/// A moto server of its own that checks credentials (the shared one accepts any).
struct StrictMoto {
    child: Child,
    url: String,
}

impl Drop for StrictMoto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn moto_server_bin() -> std::path::PathBuf {
    if let Ok(p) = std::env::var("MOTO_SERVER") {
        return p.into();
    }
    let cache = std::env::var("SHOP_KEYCRM_CACHE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| {
            std::path::PathBuf::from(std::env::var("HOME").unwrap_or_default())
                .join(".cache/shop-keycrm")
        });
    cache.join("venv/bin/moto_server")
}

fn strict_moto() -> StrictMoto {
    let bin = moto_server_bin();
    assert!(
        bin.exists(),
        "{} not found: run the suite with `bash infra/scripts/test-all.sh` (it installs moto), \
         or set MOTO_SERVER",
        bin.display()
    );
    let mut child = Command::new(bin)
        .args(["-H", "127.0.0.1", "-p", "0"])
        .env("INITIAL_NO_AUTH_ACTION_COUNT", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("moto_server starts");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("Running on http://127.0.0.1:").nth(1) {
                let port: String = rest.chars().take_while(char::is_ascii_digit).collect();
                let _ = tx.send(port);
            }
        }
    });
    let port = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("moto_server reports its port");
    StrictMoto {
        child,
        url: format!("http://127.0.0.1:{port}"),
    }
}

#[tokio::test]
async fn clear_errors_for_a_bad_stage_a_missing_table_or_queue_and_wrong_credentials() {
    emulator::require();
    let r = ops(&["--stage", "Prod_1", "connections"]).await;
    assert_eq!(r.code, 2);
    assert!(r.err.contains("is not a stage name"), "{}", r.err);

    let r = ops(&["--stage", &stage_name(), "connections"]).await;
    assert_eq!(r.code, 1);
    assert!(r.err.contains("has no table"), "{}", r.err);
    assert!(r.err.contains("is that stage deployed"), "{}", r.err);

    let r = ops(&["--table", "no-such-table-here", "connections"]).await;
    assert_eq!(r.code, 1);
    assert!(
        r.err.contains("table `no-such-table-here`") && r.err.contains("does not exist"),
        "{}",
        r.err
    );

    let r = ops(&["connections"]).await;
    assert_eq!(r.code, 2);
    assert!(r.err.contains("say which deployment"), "{}", r.err);

    let s = stage().await;
    let gone = format!(
        "{}/123456789012/no-such-queue",
        std::env::var("AWS_ENDPOINT_URL").unwrap()
    );
    let r = ops(&[
        "--table",
        &s.table.name,
        "--order-dlq-url",
        &gone,
        "dlq",
        "show",
        "orders",
    ])
    .await;
    assert_eq!(r.code, 1);
    assert!(r.err.contains("does not exist"), "{}", r.err);

    // Credentials the account does not know.
    let strict = strict_moto();
    let r = ops_with(
        &["--table", "t", "connections"],
        &[
            ("AWS_ENDPOINT_URL", strict.url.as_str()),
            ("AWS_ACCESS_KEY_ID", "AKIAWRONGWRONGWRONG0"),
            ("AWS_SECRET_ACCESS_KEY", "wrong"),
        ],
        &[],
    )
    .await;
    assert_eq!(r.code, 1, "{}", r.err);
    assert!(r.err.contains("rejected the credentials"), "{}", r.err);
    assert!(!r.err.contains("wrong\n"), "the secret key was echoed");

    // No credentials at all.
    let r = ops_with(
        &["--table", "t", "connections"],
        &[
            ("AWS_CONFIG_FILE", "/dev/null"),
            ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ],
        &[
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_PROFILE",
        ],
    )
    .await;
    assert_eq!(r.code, 1, "{}", r.err);
    assert!(r.err.contains("no AWS credentials"), "{}", r.err);
}
