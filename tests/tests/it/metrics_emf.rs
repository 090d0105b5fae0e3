//! The metrics the functions emit, read back the way CloudWatch reads them: every line the
//! metrics sink receives is parsed as JSON and checked as an Embedded Metric Format document
//! (namespace, dimension sets, values), then the figures are compared with what happened:
//! one order pushed, one webhook accepted and applied, one catalog sync run. Everything runs
//! on the emulator (DynamoDB, SQS), the KeyCRM simulator and the in-memory/demo shop, wired
//! as the Lambdas wire it (`Emitter::run` around each invocation, metered shop ports, the
//! KeyCRM meter every `KeycrmClients` client carries).

use axum::body::Body;
use catalog_sync::{kit, Config, Deps, Engine, JobMessage, JobOutcome};
use chrono::Utc;
use e2e_tests::connection::ConnectionBuilder;
use e2e_tests::emulator;
use keycrm::{ApiKey, ClientConfig, RateBudget};
use keycrm_sim::{AccountSpec, SimConfig, SimHandle};
use mapping::settings::OrderStatusMap;
use mapping::{OrderSyncType, Settings};
use order_push::{Dictionaries, KeycrmProvider, OrderPush, Outcome, PushConfig};
use queue::{MemoryQueue, Outgoing, Queue};
use runtime::metrics::catalog::ADMIN_REQUESTS;
use runtime::metrics::{emf, Captured, Emitter, Function, MeteredCatalog, MeteredOrders, Sink};
use runtime::KeycrmClients;
use serde_json::{json, Value};
use shop::{MemoryShop, ShopCatalog, ShopOrders};
use status_apply::{ConsumerOptions, RetryPolicy, StatusApplier};
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::{
    tokens, Connection, ConnectionStore, DynamoRateGate, MemorySecrets, OrderLedger, SecretStore,
    StatusJournal, Target,
};
use tower::ServiceExt;

const CREATED: &str = include_str!("../../../contracts/order-events/examples/order.created.json");
const SCALE: f64 = 600.0;

async fn simulator(key: &str, products: usize) -> SimHandle {
    keycrm_sim::start(
        SimConfig {
            accounts: vec![AccountSpec {
                api_key: key.into(),
                seed: 5,
                products,
                pipelines_enabled: true,
            }],
            rate_limit_per_minute: 60,
            time_scale: SCALE,
            public_base_url: None,
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap()
}

fn connection(id: &str, shop: &str, sim: &SimHandle, key: &str, settings: Settings) -> Connection {
    ConnectionBuilder::new(id, shop)
        .base_url(sim.base_url())
        .key(key)
        .settings(settings)
        .build()
}

/// Every captured line is a valid EMF document of `function`; returns them.
fn documents(lines: &Captured, function: &str) -> Vec<Value> {
    let docs = lines.documents();
    assert!(!docs.is_empty(), "nothing was emitted");
    for d in &docs {
        emf::validate(d).unwrap_or_else(|e| panic!("not valid EMF ({e}): {d}"));
        assert_eq!(d["function"], function, "{d}");
        assert_eq!(
            d["_aws"]["CloudWatchMetrics"][0]["Namespace"], "ShopKeycrm",
            "{d}"
        );
        let ts = d["_aws"]["Timestamp"].as_u64().unwrap();
        let now = u64::try_from(Utc::now().timestamp_millis()).unwrap();
        assert!(ts <= now && now - ts < 600_000, "timestamp {ts} is not now");
    }
    docs
}

/// The value of `metric` in the document whose dimension values are exactly `dims` (besides
/// `function`), and the dimension sets it is declared under there.
fn metric(docs: &[Value], name: &str, dims: &[(&str, &str)]) -> Option<(f64, Value)> {
    docs.iter().find_map(|d| {
        let v = d.get(name)?;
        let keys: Vec<&str> = d
            .as_object()?
            .iter()
            .filter(|(k, v)| v.is_string() && *k != "function")
            .map(|(k, _)| k.as_str())
            .collect();
        if keys.len() != dims.len() || !dims.iter().all(|(k, val)| d[*k] == *val) {
            return None;
        }
        let total = match v {
            Value::Array(a) => a.iter().filter_map(Value::as_f64).sum(),
            other => other.as_f64()?,
        };
        let sets = d["_aws"]["CloudWatchMetrics"]
            .as_array()?
            .iter()
            .find(|dir| {
                dir["Metrics"]
                    .as_array()
                    .is_some_and(|ms| ms.iter().any(|m| m["Name"] == name))
            })?["Dimensions"]
            .clone();
        Some((total, sets))
    })
}

/// Values recorded for a duration metric (a number or a list in the document).
fn observations(docs: &[Value], name: &str) -> usize {
    docs.iter()
        .filter_map(|d| d.get(name))
        .map(|v| v.as_array().map_or(1, Vec::len))
        .sum()
}

/// No identifier of a shop, connection, order, key or token in any line.
fn assert_no_identifiers(lines: &Captured, secrets: &[&str]) {
    for l in lines.lines() {
        for s in secrets {
            assert!(!l.contains(s), "{s} leaked into a metric line: {l}");
        }
    }
}

#[tokio::test]
async fn one_order_emits_its_push_its_keycrm_requests_and_its_gate_waits() {
    let key = emulator::unique("key");
    let sim = simulator(&key, 10).await;
    let table = Arc::new(emulator::table().await);
    let (orders, dlq) = emulator::queue(Some(5)).await;
    let conn_id = emulator::unique("conn");
    let shop_id = emulator::unique("shop");
    let settings = Settings {
        order_sync: OrderSyncType::Orders,
        source_id: Some(1),
        order_statuses: OrderStatusMap::from_legacy(vec![("new".into(), 1)]),
        ..Settings::default()
    };
    let conn = connection(&conn_id, &shop_id, &sim, &key, settings);
    ConnectionStore::create(table.as_ref(), &conn)
        .await
        .unwrap();
    let secrets = Arc::new(MemorySecrets::default());
    secrets
        .put(&conn.secret_name, &ApiKey::new(&key))
        .await
        .unwrap();
    let gate = Arc::new(DynamoRateGate::new(
        (*table).clone(),
        RateBudget::keycrm_scaled(SCALE),
    ));
    let clients = Arc::new(KeycrmClients::new(
        secrets,
        gate,
        ClientConfig::with_base_url(sim.base_url()),
    ));
    let push = OrderPush {
        connections: table.clone(),
        ledger: table.clone(),
        journal: table.clone(),
        crm: Arc::new(KeycrmProvider {
            clients,
            secret_prefix: Some("shop-keycrm/test/keycrm/".into()),
        }),
        retry_queue: Arc::new(orders.clone()),
        dead_letters: Arc::new(dlq.unwrap()),
        dictionaries: Arc::new(Dictionaries::default()),
        config: PushConfig {
            source_queue: orders.name().to_string(),
            ..PushConfig::default()
        },
    };
    let mut event: Value = serde_json::from_str(CREATED).unwrap();
    event["shop_id"] = shop_id.clone().into();
    event["order"]["id"] = "M-1".into();
    orders.send(Outgoing::new(event.to_string())).await.unwrap();

    let (sink, lines) = Sink::memory();
    let emitter = Emitter::new(Function::OrderPush)
        .with_sink(sink)
        .with_journal(table.clone());
    sim.reset_stats();
    let result = emitter
        .run(push.poll_once(&orders, 10, Duration::from_secs(2), Duration::from_secs(30)))
        .await
        .unwrap();
    assert!(
        matches!(result.outcomes[0].outcome, Outcome::Created { .. }),
        "{:?}",
        result.outcomes
    );
    let sent = sim.stats().total_requests;
    assert!(sent >= 1);

    let docs = documents(&lines, "order-push");
    // Flushed once for the batch: one document per combination of dimension values.
    assert!(docs.len() <= 3, "{docs:#?}");
    let (pushed, sets) = metric(&docs, "OrdersPushed", &[]).expect("OrdersPushed");
    assert_eq!(pushed, 1.0);
    assert_eq!(sets, json!([["function"]]));
    assert!(metric(&docs, "OrdersFailed", &[("reason", "validation")]).is_none());
    let (ok, sets) = metric(&docs, "KeycrmRequests", &[("outcome", "ok")]).expect("KeycrmRequests");
    assert_eq!(
        ok as u64, sent,
        "every request the simulator saw is counted"
    );
    assert_eq!(sets, json!([["function", "outcome"], ["function"]]));
    assert_eq!(observations(&docs, "RateGateWait"), sent as usize);
    assert_eq!(observations(&docs, "KeycrmLatency"), sent as usize);
    assert!(metric(&docs, "KeycrmRateLimited", &[]).is_none());
    assert_no_identifiers(&lines, &[&conn_id, &shop_id, &key, "M-1"]);

    // The connection's share of its key's budget is on its status, not in a dimension.
    let status = table.status(&conn_id).await.unwrap();
    assert_eq!(status.counters["keycrm_requests"], sent);
    assert_eq!(status.counters["keycrm_rate_limited"], 0);
    assert_eq!(status.counters["orders_pushed"], 1);
}

fn order_hook(id: i64, status: i64) -> String {
    json!({"event": "order.change_order_status", "context": {
        "id": id, "source_id": 1, "source_uuid": "W-1", "status_id": status, "status_group_id": 2,
        "status_changed_at": "2026-03-19T10:00:00.000000Z",
        "created_at": "2026-03-19T09:00:00.000000Z", "updated_at": "2026-03-19T10:00:00.000000Z"}})
    .to_string()
}

#[tokio::test]
async fn one_webhook_emits_accepted_at_the_receiver_and_applied_in_status_apply() {
    let key = emulator::unique("key");
    let sim = simulator(&key, 1).await;
    let table = Arc::new(emulator::table().await);
    let (q, _) = emulator::queue(None).await;
    let queue: Arc<dyn Queue> = Arc::new(q);
    let token_key = store::TokenKey::generate();
    let conn_id = emulator::unique("conn");
    let shop_id = emulator::unique("shop");
    let mut conn = connection(
        &conn_id,
        &shop_id,
        &sim,
        &key,
        Settings {
            order_sync: OrderSyncType::Orders,
            source_id: Some(1),
            order_statuses: OrderStatusMap::from_legacy(vec![
                ("new".into(), 1),
                ("shipped".into(), 7),
            ]),
            ..Settings::default()
        },
    );
    conn.webhook_generations.orders = 1;
    let token = tokens::derive(&token_key, &conn_id, store::WebhookKind::Orders, 1);
    ConnectionStore::create(table.as_ref(), &conn)
        .await
        .unwrap();
    // The order order-push created as KeyCRM order 501.
    table
        .claim(
            &conn_id,
            "W-1",
            Target::Order,
            "h",
            Duration::from_secs(60),
            "{}",
        )
        .await
        .unwrap();
    table
        .record_created(
            &conn_id,
            "W-1",
            "h",
            &store::ledger::Created {
                target: Target::Order,
                keycrm_id: 501,
                report: Default::default(),
                shop_status: Some("new".into()),
                keycrm_status_id: Some(1),
            },
        )
        .await
        .unwrap();
    let shop = Arc::new(MemoryShop::new());
    shop.add_order(&shop_id, "W-1", "new");

    // The receiver, as the Lambda serves it: one metrics invocation per request.
    let (sink, hook_lines) = Sink::memory();
    let receiver = webhook::Receiver::new(
        table.clone(),
        queue.clone(),
        table.clone(),
        token_key.clone(),
    );
    let app = runtime::metrics::http::layer(
        webhook::router(Arc::new(receiver)),
        Emitter::new(Function::Webhook).with_sink(sink),
        None,
    );
    let post = |path: String, body: String| {
        let app = app.clone();
        async move {
            let req = axum::http::Request::post(path)
                .header("content-type", "application/json")
                .body(Body::from(body))
                .unwrap();
            app.oneshot(req).await.unwrap().status().as_u16()
        }
    };
    let url = format!("/v1/webhooks/keycrm/{conn_id}/{token}");
    assert_eq!(post(url.clone(), order_hook(501, 7)).await, 200);
    // Unmapped status: ignored at the door. A wrong token: refused.
    assert_eq!(post(url.clone(), order_hook(501, 99)).await, 200);
    let wrong = format!("/v1/webhooks/keycrm/{conn_id}/{}", "x".repeat(43));
    assert_eq!(post(wrong, order_hook(501, 7)).await, 404);

    let docs = documents(&hook_lines, "webhook");
    assert_eq!(metric(&docs, "WebhooksAccepted", &[]).unwrap().0, 1.0);
    let (ignored, sets) =
        metric(&docs, "WebhooksIgnored", &[("reason", "unmapped_status")]).unwrap();
    assert_eq!(ignored, 1.0);
    assert_eq!(sets, json!([["function", "reason"], ["function"]]));
    assert_eq!(
        metric(&docs, "WebhooksRefused", &[("reason", "wrong_token")])
            .unwrap()
            .0,
        1.0
    );
    // Three requests, three flushes, one document each.
    assert_eq!(docs.len(), 3);

    // status-apply consumes the accepted job: one invocation, one applied.
    let (sink, apply_lines) = Sink::memory();
    let applier = StatusApplier::new(
        table.clone(),
        table.clone(),
        Arc::new(MeteredOrders(shop.clone() as Arc<dyn ShopOrders>)),
        table.clone(),
        RetryPolicy::default(),
    );
    let received = Emitter::new(Function::StatusApply)
        .with_sink(sink)
        .run(status_apply::poll_once(
            &applier,
            &queue,
            None,
            ConsumerOptions::default(),
        ))
        .await
        .unwrap();
    assert_eq!(received, 1);
    assert_eq!(
        shop.order_status(&shop_id, "W-1").as_deref(),
        Some("shipped")
    );
    let docs = documents(&apply_lines, "status-apply");
    assert_eq!(metric(&docs, "WebhooksApplied", &[]).unwrap().0, 1.0);
    assert!(metric(&docs, "ShopApiErrors", &[("reason", "unavailable")]).is_none());
    assert_no_identifiers(&hook_lines, &[&conn_id, &shop_id, &token, "W-1"]);
    assert_no_identifiers(&apply_lines, &[&conn_id, &shop_id, &token, "W-1"]);
}

#[tokio::test]
async fn one_sync_emits_its_outcome_duration_catalog_writes_and_requests() {
    let key = emulator::unique("key");
    let sim = simulator(&key, 6).await;
    let table = Arc::new(emulator::table().await);
    let conn_id = emulator::unique("conn");
    let shop_id = emulator::unique("shop");
    let settings = Settings {
        sync_products: true,
        sync_categories: true,
        ..Settings::default()
    };
    let conn = kit::connection(
        &conn_id,
        &shop_id,
        &sim.base_url(),
        "shop-keycrm/test/keycrm/sync",
        &ApiKey::new(&key),
        settings,
    );
    table.create(&conn).await.unwrap();
    let secrets = Arc::new(MemorySecrets::default());
    secrets
        .put("shop-keycrm/test/keycrm/sync", &ApiKey::new(&key))
        .await
        .unwrap();
    let clients = Arc::new(KeycrmClients::new(
        secrets,
        Arc::new(keycrm::LocalRateGate::new(RateBudget::keycrm_scaled(SCALE))),
        ClientConfig::with_base_url(sim.base_url()),
    ));
    let shop = Arc::new(MemoryShop::new());
    let engine = Engine::new(
        Deps {
            connections: table.clone(),
            sync: table.clone(),
            links: table.clone(),
            shop: Arc::new(MeteredCatalog(shop.clone() as Arc<dyn ShopCatalog>)),
            clients,
            journal: table.clone(),
            jobs: Arc::new(MemoryQueue::new("sync-jobs")),
        },
        Config {
            safety: Duration::from_millis(100),
            lease_slack: Duration::from_secs(1),
            ..Config::default()
        },
    );
    let (sink, lines) = Sink::memory();
    let emitter = Emitter::new(Function::CatalogSync)
        .with_sink(sink)
        .with_journal(table.clone());
    let msg = JobMessage {
        job: kit::job(&conn_id, store::SyncKind::Full, false),
        settings: None,
    };
    let outcome = emitter
        .run(engine.on_job(msg, Instant::now() + Duration::from_secs(120)))
        .await
        .unwrap();
    let JobOutcome::Finished { run_id, state } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(state, "completed");
    let run = store::SyncStore::get_run(table.as_ref(), &conn_id, &run_id)
        .await
        .unwrap()
        .unwrap();

    let docs = documents(&lines, "catalog-sync");
    let (runs, sets) = metric(
        &docs,
        "SyncRuns",
        &[("outcome", "completed"), ("kind", "full")],
    )
    .expect("SyncRuns");
    assert_eq!(runs, 1.0);
    assert_eq!(
        sets,
        json!([["function", "outcome", "kind"], ["function", "outcome"]])
    );
    let (_, sets) = metric(&docs, "SyncRunDuration", &[("outcome", "completed")]).unwrap();
    assert_eq!(sets, json!([["function", "outcome"]]));
    assert_eq!(observations(&docs, "SyncRunDuration"), 1);
    assert!(metric(&docs, "SyncInvocationTime", &[("outcome", "completed")]).is_some());
    let products = shop.products(&shop_id).len() as f64;
    assert!(products > 0.0);
    assert_eq!(
        metric(&docs, "CatalogWrites", &[("kind", "products")])
            .unwrap()
            .0,
        products
    );
    assert!(metric(&docs, "CatalogWrites", &[("kind", "categories")]).is_some());
    let (ok, _) = metric(&docs, "KeycrmRequests", &[("outcome", "ok")]).unwrap();
    assert_eq!(
        ok as u64, run.keycrm_requests,
        "the run report and the metric agree"
    );
    assert_no_identifiers(&lines, &[&conn_id, &shop_id, &key, &run_id]);
    // Its key's traffic on the connection's status as well.
    let status = table.status(&conn_id).await.unwrap();
    assert_eq!(status.counters["keycrm_requests"], run.keycrm_requests);
}

#[tokio::test]
async fn the_admin_api_counts_answers_by_class() {
    // Without the emulator: the layer around any router, as admin-api's main wires it.
    let (sink, lines) = Sink::memory();
    let app = runtime::metrics::http::layer(
        axum::Router::new(),
        Emitter::new(Function::AdminApi).with_sink(sink),
        Some(&ADMIN_REQUESTS),
    );
    let req = axum::http::Request::get("/v1/shops/s/connection")
        .body(Body::empty())
        .unwrap();
    assert_eq!(app.oneshot(req).await.unwrap().status().as_u16(), 404);
    let docs = documents(&lines, "admin-api");
    assert_eq!(
        metric(&docs, "AdminRequests", &[("outcome", "4xx")])
            .unwrap()
            .0,
        1.0
    );
}
