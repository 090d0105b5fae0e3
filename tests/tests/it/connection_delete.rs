//! Deleting a connection, end to end on the emulator (DynamoDB, SQS, Secrets Manager) with the
//! KeyCRM simulator: the admin API answers at once and only marks the connection; every
//! consumer treats it as gone from that moment; the shop can connect again while the old data
//! is still there; the cleanup job (catalog-sync, from the sync-jobs queue) removes the data in
//! resumable steps, then the key, then the mark; repeating it changes nothing.

use admin_api::{AdminApi, AdminConfig, TokenSigner};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use catalog_sync::{Config, Deps, Engine, JobOutcome, ScheduleKind};
use chrono::Utc;
use e2e_tests::api::assert_api_error;
use e2e_tests::emulator;
use e2e_tests::faults::{CatalogOp, HookedCatalog};
use keycrm::{ClientConfig, LocalRateGate, RateBudget};
use keycrm_sim::{AccountSpec, SimConfig, SimHandle};
use mapping::catalog::{ProductLink, VariantLink};
use mapping::Settings;
use queue::{Queue, SqsQueue};
use runtime::KeycrmClients;
use serde_json::{json, Value};
use shop::{MemoryShop, ShopCatalog};
use status_apply::{IgnoreReason, Outcome, RetryPolicy, StatusApplier, StatusJob};
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::{
    ConnectionStore, Counter, DynamoTable, LinkStore, OrderLedger, SecretStore, SecretsManager,
    StatusJournal, SyncKind, SyncRun, SyncStore, Target,
};
use tower::ServiceExt;

const KEY: &str = "kc-delete-test-4d5e6f708192a3b4c5d6e7f8091a2b3c";
const SHOP: &str = "shop-del";

struct Env {
    router: axum::Router,
    signer: TokenSigner,
    _sim: SimHandle,
    table: DynamoTable,
    secrets: SecretsManager,
    sync_q: SqsQueue,
    clients: Arc<KeycrmClients>,
    shop: Arc<MemoryShop>,
    token_key: store::TokenKey,
}

async fn env() -> Env {
    emulator::require();
    let sim = keycrm_sim::start(
        SimConfig {
            accounts: vec![AccountSpec {
                api_key: KEY.into(),
                seed: 41,
                products: 3,
                pipelines_enabled: false,
            }],
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
    let (sync_q, _) = emulator::queue(None).await;
    let (order_q, _) = emulator::queue(None).await;
    let gate = Arc::new(LocalRateGate::new(RateBudget::keycrm_scaled(60.0)));
    let clients = Arc::new(KeycrmClients::new(
        Arc::new(secrets.clone()),
        gate,
        ClientConfig {
            timeout: Duration::from_secs(5),
            ..ClientConfig::with_base_url(sim.base_url())
        },
    ));
    let signer = TokenSigner::new("delete-test-signing-key-0123456789abcdef").unwrap();
    let mut config = AdminConfig::new(
        format!("{}/keycrm/", emulator::unique("del")),
        sim.base_url(),
    );
    config.public_base_url = Some("https://hooks.example.test".into());
    // The production delay lets work in flight finish; the test runs the cleanup itself.
    config.cleanup_delay = Duration::ZERO;
    let t = Arc::new(table.clone());
    let shop = Arc::new(MemoryShop::new());
    let token_key = store::TokenKey::generate();
    let router = admin_api::router(AdminApi {
        config,
        signer: signer.clone(),
        connections: t.clone(),
        secrets: Arc::new(secrets.clone()),
        journal: t.clone(),
        cache: t.clone(),
        ledger: t.clone(),
        sync: t.clone(),
        clients: clients.clone(),
        shop: shop.clone(),
        order_queue: Arc::new(order_q),
        sync_queue: Arc::new(sync_q.clone()),
        token_key: token_key.clone(),
        links: t.clone(),
    });
    Env {
        router,
        signer,
        _sim: sim,
        table,
        secrets,
        sync_q,
        clients,
        shop,
        token_key,
    }
}

impl Env {
    async fn call(&self, method: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("/v1/shops/{SHOP}/connection"))
            .header(
                "authorization",
                format!("Bearer {}", self.signer.mint(SHOP, 600)),
            );
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
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, v)
    }

    fn engine(&self, shop: Arc<dyn ShopCatalog>, cfg: Config) -> Engine {
        let t = Arc::new(self.table.clone());
        Engine::new(
            Deps {
                connections: t.clone(),
                sync: t.clone(),
                links: t.clone(),
                shop,
                clients: self.clients.clone(),
                journal: t,
                jobs: Arc::new(self.sync_q.clone()),
            },
            cfg,
        )
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

    /// Receives every waiting sync-jobs message and hands it to `engine`, as the Lambda does.
    async fn deliver(&self, engine: &Engine) -> Vec<JobOutcome> {
        let mut outcomes = Vec::new();
        for m in self
            .sync_q
            .receive(10, Duration::from_secs(30), Duration::from_millis(200))
            .await
            .unwrap()
        {
            outcomes.push(
                engine
                    .on_message(&m.body, Instant::now() + Duration::from_secs(60))
                    .await
                    .unwrap(),
            );
            self.sync_q.delete(&m.receipt).await.unwrap();
        }
        outcomes
    }
}

fn links(n: i64) -> Vec<ProductLink> {
    (1..=n)
        .map(|k| ProductLink {
            keycrm_id: k,
            shop_id: format!("sp-{k}"),
            hash: 1,
            swept: None,
            variants: vec![VariantLink {
                offer_id: k * 10,
                shop_id: format!("sv-{k}"),
                hash: 1,
                price: None,
                available: None,
                gone: false,
            }],
        })
        .collect()
}

#[tokio::test]
async fn delete_answers_at_once_and_the_cleanup_runs_in_the_background() {
    let e = env().await;
    let (status, body) = e.call("PUT", Some(json!({"api_key": KEY}))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    let token = body["webhooks"]["orders"]["url"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let old = ConnectionStore::get(&e.table, &id).await.unwrap().unwrap();
    // A connection with a sizeable footprint: links, a ledger entry, counters, a report.
    LinkStore::put_products(&e.table, &id, &links(70))
        .await
        .unwrap();
    StatusJournal::count(&e.table, &id, Counter::OrdersPushed, 2)
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
    SyncStore::put_run(
        &e.table,
        &SyncRun {
            run_id: "r-1".into(),
            connection_id: id.clone(),
            kind: Some(SyncKind::Full),
            state: store::RunState::Completed,
            started_at: Some(Utc::now()),
            ..SyncRun::default()
        },
    )
    .await
    .unwrap();
    let links_before = e.partition(&format!("LINKS#{id}")).await.len();
    assert!(links_before >= 70, "{links_before}");

    // 1. The request only marks the connection: nothing is deleted inside it.
    let (status, _) = e.call("DELETE", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        e.partition(&format!("LINKS#{id}")).await.len(),
        links_before,
        "the links are left for the background cleanup"
    );
    assert!(
        e.secrets.get(&old.secret_name).await.unwrap().is_some(),
        "the key is deleted last, not first"
    );

    // 2. From now on it is gone for everyone.
    let (status, body) = e.call("GET", None).await;
    assert_api_error(
        status,
        &body,
        StatusCode::NOT_FOUND,
        "not_connected",
        &[KEY],
    );
    let (q, _) = emulator::queue(None).await;
    let receiver = webhook::Receiver::new(
        Arc::new(e.table.clone()),
        Arc::new(q),
        Arc::new(e.table.clone()),
        e.token_key.clone(),
    );
    let refused = receiver.authenticate(&id, &token).await.expect_err("404");
    assert_eq!(refused.status, StatusCode::NOT_FOUND);
    let applier = StatusApplier::new(
        Arc::new(e.table.clone()),
        Arc::new(e.table.clone()),
        e.shop.clone(),
        Arc::new(e.table.clone()),
        RetryPolicy {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(2),
            max_receives: 3,
        },
    );
    let job = StatusJob {
        v: status_apply::JOB_VERSION,
        connection_id: id.clone(),
        target: Target::Order,
        keycrm_id: 1,
        status_id: 1,
        pipeline_id: None,
        changed_at: Utc::now(),
        source_id: None,
        source_uuid: Some("o-1".into()),
        received_at: Utc::now(),
    };
    assert!(matches!(
        applier.process(&job, 1).await,
        Outcome::Ignored {
            reason: IgnoreReason::UnknownConnection,
            ..
        }
    ));
    let cfg = Config {
        cleanup_grace: Duration::ZERO,
        cleanup_batch: 25,
        // One purge step per invocation: the cleanup must resume to finish.
        max_units: Some(1),
        safety: Duration::from_millis(10),
        lease_slack: Duration::from_secs(1),
        ..Config::default()
    };
    let engine = e.engine(e.shop.clone(), cfg);
    let sync = engine
        .run_job(
            &catalog_sync::kit::job(&id, SyncKind::Full, false),
            None,
            Instant::now() + Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert!(matches!(sync, JobOutcome::Skipped { .. }), "{sync:?}");
    let (to_clean, _) = e.table.list_deleting(None, 100).await.unwrap();
    assert_eq!(to_clean, vec![id.clone()]);

    // 3. The shop connects again while the old data is still there.
    let (status, body) = e.call("PUT", Some(json!({"api_key": KEY}))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let new_id = body["id"].as_str().unwrap().to_string();
    assert_ne!(new_id, id);
    let new = ConnectionStore::get(&e.table, &new_id)
        .await
        .unwrap()
        .unwrap();

    // 4. The queued cleanup job, then the resume schedule, until it is done.
    let mut outcomes = e.deliver(&engine).await;
    assert!(
        matches!(outcomes.first(), Some(JobOutcome::Paused { .. })),
        "one step per invocation: {outcomes:?}"
    );
    assert!(e.secrets.get(&old.secret_name).await.unwrap().is_some());
    let mut ticks = 0;
    while !outcomes
        .iter()
        .any(|o| matches!(o, JobOutcome::Finished { state, .. } if state == "deleted"))
    {
        ticks += 1;
        assert!(ticks < 30, "the cleanup makes progress: {outcomes:?}");
        engine.on_schedule(ScheduleKind::Resume).await.unwrap();
        outcomes = e.deliver(&engine).await;
    }
    assert!(ticks >= 2, "{ticks} resumes");
    assert!(e.partition(&format!("LINKS#{id}")).await.is_empty());
    assert!(e.partition(&format!("CONN#{id}")).await.is_empty());
    assert!(
        e.secrets.get(&old.secret_name).await.unwrap().is_none(),
        "the key is gone, last"
    );
    assert!(e.table.list_deleting(None, 100).await.unwrap().0.is_empty());

    // The new connection is untouched.
    assert_eq!(
        ConnectionStore::get_by_shop(&e.table, SHOP)
            .await
            .unwrap()
            .unwrap()
            .id,
        new_id
    );
    assert!(e.secrets.get(&new.secret_name).await.unwrap().is_some());
    let (status, _) = e.call("GET", None).await;
    assert_eq!(status, StatusCode::OK);

    // 5. Idempotent: the same job again finds nothing to do.
    let again = engine
        .on_message(
            &store::CleanupJob::new(&id).to_body(),
            Instant::now() + Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert!(matches!(again, JobOutcome::Skipped { .. }), "{again:?}");
}

/// A sync that is running when the connection is deleted stops at its next check and frees
/// the lease, so the cleanup does not wait for it (and it writes nothing more).
#[tokio::test]
async fn a_running_sync_stops_when_its_connection_is_deleted() {
    let e = env().await;
    let (status, body) = e.call("PUT", Some(json!({"api_key": KEY}))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    let conn = ConnectionStore::get(&e.table, &id).await.unwrap().unwrap();
    let settings = Settings {
        sync_products: true,
        sync_categories: true,
        ..Settings::default()
    };
    e.table
        .update(&store::Connection {
            settings,
            version: conn.version + 1,
            ..conn.clone()
        })
        .await
        .unwrap();
    // A shop port that deletes the connection (as a merchant would, mid-sync) on the first
    // write.
    let (table, connection_id) = (e.table.clone(), id.clone());
    let shop = Arc::new(HookedCatalog::new(e.shop.clone()).before(move |op, _| {
        let write = matches!(op, CatalogOp::UpsertProducts | CatalogOp::UpsertCategories);
        let (table, connection_id) = (table.clone(), connection_id.clone());
        async move {
            if write {
                if let Some(c) = ConnectionStore::get(&table, &connection_id).await.unwrap() {
                    table.mark_deleting(&c).await.unwrap();
                }
            }
            Ok(())
        }
    }));
    let cfg = Config {
        deletion_check: Duration::ZERO,
        cleanup_grace: Duration::ZERO,
        safety: Duration::from_millis(10),
        ..Config::default()
    };
    let engine = e.engine(shop, cfg);
    let out = engine
        .run_job(
            &catalog_sync::kit::job(&id, SyncKind::Full, false),
            None,
            Instant::now() + Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert_eq!(
        out,
        JobOutcome::Skipped {
            reason: "the connection was deleted".into()
        }
    );
    assert!(
        e.shop.products(SHOP).is_empty(),
        "no product written after the deletion"
    );
    // The lease is free: the cleanup runs at once.
    let done = engine
        .on_message(
            &store::CleanupJob::new(&id).to_body(),
            Instant::now() + Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert_eq!(
        done,
        JobOutcome::Finished {
            run_id: "cleanup".into(),
            state: store::RunState::Deleted
        }
    );
    assert!(e.partition(&format!("LINKS#{id}")).await.is_empty());
    assert!(e.partition(&format!("CONN#{id}")).await.is_empty());
    assert!(e.secrets.get(&conn.secret_name).await.unwrap().is_none());
}
