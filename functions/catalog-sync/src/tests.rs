//! In-process checks with memory adapters and the simulator (the end-to-end suite against
//! DynamoDB lives in `tests/tests/catalog_sync_e2e.rs`).

use crate::engine::{Config, Deps, Engine, JobOutcome};
use crate::kit;
use keycrm::{ApiKey, ClientConfig, LocalRateGate, RateBudget};
use keycrm_sim::{AccountSpec, SimConfig, SimHandle};
use mapping::settings::{MissingProductPolicy, NewProductPolicy};
use mapping::Settings;
use queue::MemoryQueue;
use runtime::KeycrmClients;
use shop::MemoryShop;
use std::sync::Arc;
use std::time::Duration;
use store::{
    ConnectionStore, MemoryConnections, MemoryJournal, MemoryLinks, MemorySecrets, MemorySync,
    SecretStore, SyncKind, SyncStore,
};

const SCALE: f64 = 600.0;

struct H {
    sim: SimHandle,
    shop: Arc<MemoryShop>,
    links: Arc<MemoryLinks>,
    sync: Arc<MemorySync>,
    engine: Engine,
}

async fn harness(products: usize, settings: Settings) -> H {
    let sim = keycrm_sim::start(
        SimConfig {
            accounts: vec![AccountSpec {
                api_key: "k1".into(),
                seed: 7,
                products,
                pipelines_enabled: false,
            }],
            rate_limit_per_minute: 60,
            time_scale: SCALE,
            public_base_url: None,
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let secrets = Arc::new(MemorySecrets::default());
    let key = ApiKey::new("k1");
    secrets.put("sec/c1", &key).await.unwrap();
    let gate = Arc::new(LocalRateGate::new(RateBudget::keycrm_scaled(SCALE)));
    let mut cc = ClientConfig::with_base_url(sim.base_url());
    cc.retry = keycrm::RetryPolicy::default();
    let clients = Arc::new(KeycrmClients::new(secrets, gate, cc));
    let conns = Arc::new(MemoryConnections::default());
    conns
        .create(&kit::connection(
            "c1",
            "s1",
            &sim.base_url(),
            "sec/c1",
            &key,
            settings,
        ))
        .await
        .unwrap();
    let shop = Arc::new(MemoryShop::new());
    let links = Arc::new(MemoryLinks::new());
    let sync = Arc::new(MemorySync::new());
    let deps = Deps {
        connections: conns,
        sync: sync.clone(),
        links: links.clone(),
        shop: shop.clone(),
        clients,
        journal: Arc::new(MemoryJournal::default()),
        jobs: Arc::new(MemoryQueue::new("jobs")),
    };
    let cfg = Config {
        safety: Duration::from_millis(50),
        ..Config::default()
    };
    H {
        sim,
        shop,
        links,
        sync,
        engine: Engine::new(deps, cfg),
    }
}

fn on() -> Settings {
    Settings {
        sync_products: true,
        sync_categories: true,
        new_products: NewProductPolicy::Publish,
        missing_products: MissingProductPolicy::Hide,
        ..Settings::default()
    }
}

async fn run(h: &H, kind: SyncKind) -> JobOutcome {
    kit::run_to_end(
        &h.engine,
        &kit::job("c1", kind, false),
        None,
        Duration::from_secs(60),
        50,
    )
    .await
    .unwrap()
    .0
}

#[tokio::test]
async fn full_sync_creates_then_writes_nothing_when_unchanged() {
    let h = harness(120, on()).await;
    let out = run(&h, SyncKind::Full).await;
    assert!(
        matches!(out, JobOutcome::Finished { ref state, .. } if state == "completed"),
        "{out:?}"
    );
    let snap = h.sim.catalog("k1");
    let active = snap.products.iter().filter(|p| !p.is_archived).count();
    let dupes = snap.duplicate_skus().len();
    let stats = h.shop.stats("s1");
    assert!(
        stats.products_created as usize >= active - 2 * dupes
            && stats.products_created as usize <= active,
        "{stats:?} active {active} dupes {dupes}"
    );
    assert_eq!(h.links.product_count("c1") as u64, stats.products_created);
    let runs = h.sync.list_runs("c1", 5).await.unwrap();
    assert_eq!(
        runs[0].counts.get("ambiguous").copied().unwrap_or(0) as usize,
        2 * dupes,
        "{:?}",
        runs[0].counts
    );
    assert!(stats.category_writes > 0);

    h.shop.reset_stats("s1");
    let out = run(&h, SyncKind::Full).await;
    assert!(matches!(out, JobOutcome::Finished { .. }), "{out:?}");
    assert_eq!(
        h.shop.stats("s1"),
        shop::ShopStats::default(),
        "nothing changed, nothing written"
    );

    h.sim.catalog_mutate(
        "k1",
        keycrm_sim::CatalogMutation::ChangePricesPercent {
            share: 0.05,
            seed: 3,
        },
    );
    let out = run(&h, SyncKind::Prices).await;
    assert!(matches!(out, JobOutcome::Finished { .. }), "{out:?}");
    let s = h.shop.stats("s1");
    assert!(
        s.price_changes > 0 && s.products_updated == 0 && s.products_created == 0,
        "{s:?}"
    );
    h.shop.reset_stats("s1");
    run(&h, SyncKind::Prices).await;
    assert_eq!(h.shop.stats("s1").price_changes, 0);
    assert_eq!(h.sim.stats().rate_limited_429, 0);
}

/// A connection store with a bug on one connection: reading it panics.
struct PanickingConnections {
    inner: Arc<dyn ConnectionStore>,
    poison: &'static str,
}

#[async_trait::async_trait]
impl ConnectionStore for PanickingConnections {
    async fn create(&self, conn: &store::Connection) -> Result<(), store::StoreError> {
        self.inner.create(conn).await
    }
    async fn get(&self, id: &str) -> Result<Option<store::Connection>, store::StoreError> {
        if id == self.poison {
            panic!("attempt to subtract with overflow");
        }
        self.inner.get(id).await
    }
    async fn get_by_shop(
        &self,
        shop: &str,
    ) -> Result<Option<store::Connection>, store::StoreError> {
        self.inner.get_by_shop(shop).await
    }
    async fn update(&self, conn: &store::Connection) -> Result<(), store::StoreError> {
        self.inner.update(conn).await
    }
    async fn delete(&self, id: &str) -> Result<(), store::StoreError> {
        self.inner.delete(id).await
    }
    async fn list(
        &self,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<(Vec<store::Connection>, Option<String>), store::StoreError> {
        self.inner.list(cursor, limit).await
    }
}

#[tokio::test]
async fn poison_sync_jobs_are_dead_lettered_alone_with_their_reason() {
    use crate::lambda::{handle_sqs, DeadLetters};
    use queue::Queue;
    let mut h = harness(20, on()).await;
    h.engine.deps.connections = Arc::new(PanickingConnections {
        inner: h.engine.deps.connections.clone(),
        poison: "c-bug",
    });
    let job = |conn: &str| serde_json::to_string(&kit::job(conn, SyncKind::Prices, false)).unwrap();
    let records: Vec<serde_json::Value> = [
        ("unreadable", "{not a job".to_string()),
        ("bug", job("c-bug")),
        ("good", job("c1")),
    ]
    .iter()
    .map(|(id, body)| serde_json::json!({"messageId": id, "receiptHandle": id, "body": body}))
    .collect();
    let event: aws_lambda_events::event::sqs::SqsEvent =
        serde_json::from_value(serde_json::json!({ "Records": records })).unwrap();
    let dlq = MemoryQueue::new("sync-dlq");
    let dl = DeadLetters {
        queue: &dlq,
        source_queue: "sync-jobs",
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let resp = handle_sqs(&h.engine, event, Some(deadline), Some(&dl)).await;
    assert!(resp.batch_item_failures.is_empty(), "{resp:?}");
    let letters: Vec<queue::DeadLetter> = dlq
        .bodies()
        .iter()
        .map(|b| serde_json::from_str(b).unwrap())
        .collect();
    let kinds: Vec<&str> = letters.iter().map(|l| l.kind.as_str()).collect();
    assert_eq!(kinds, vec!["malformed", "internal_error"]);
    assert!(letters[0].reason.contains("unreadable sync job"));
    assert!(letters[1].reason.contains("panic"), "{}", letters[1].reason);
    assert_eq!(letters[1].original, job("c-bug"));
    // The good job ran.
    let runs = h.sync.list_runs("c1", 5).await.unwrap();
    assert!(!runs.is_empty(), "the batch-mate was synced");
    assert_eq!(dlq.approximate_len().await.unwrap(), 2);
}
