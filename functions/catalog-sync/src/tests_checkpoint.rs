//! Checkpoints spaced in time (`Config::checkpoint_every`): fewer lease writes, the same
//! result, and a crash between two saves redoes the unsaved units without duplicates.

use crate::engine::{Config, Deps, Engine, JobOutcome};
use crate::kit;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use keycrm::{ApiKey, ClientConfig, LocalRateGate, Priority, RateBudget, RateGate};
use keycrm_sim::{AccountSpec, SimConfig, SimHandle};
use mapping::settings::NewProductPolicy;
use mapping::Settings;
use queue::MemoryQueue;
use runtime::KeycrmClients;
use shop::MemoryShop;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::{
    ConnectionStore, MemoryConnections, MemoryJournal, MemoryLinks, MemorySecrets, MemorySync,
    RequestedBy, SecretStore, StoreError, SyncJob, SyncKind, SyncLease, SyncRun, SyncStore,
};

// Slow enough (a request every ~125 ms) for the crash to fall in the catalog pass, once the
// run is paced (see `a_crash_between_spaced_checkpoints_…`).
const SCALE: f64 = 10.0;
const PRODUCTS: usize = 400;

/// The sync store, counting the checkpoint writes.
struct Counting {
    inner: Arc<MemorySync>,
    checkpoints: AtomicU64,
}

#[async_trait]
impl SyncStore for Counting {
    async fn acquire(
        &self,
        c: &str,
        kind: SyncKind,
        holder: &str,
        lease: Duration,
    ) -> Result<Option<SyncLease>, StoreError> {
        self.inner.acquire(c, kind, holder, lease).await
    }
    async fn checkpoint(&self, lease: &SyncLease, by: Duration) -> Result<SyncLease, StoreError> {
        self.checkpoints.fetch_add(1, Ordering::SeqCst);
        self.inner.checkpoint(lease, by).await
    }
    async fn finish(&self, lease: &SyncLease) -> Result<(), StoreError> {
        self.inner.finish(lease).await
    }
    async fn pause(&self, lease: &SyncLease) -> Result<(), StoreError> {
        self.inner.pause(lease).await
    }
    async fn unfinished(&self, limit: usize) -> Result<Vec<(String, SyncKind)>, StoreError> {
        self.inner.unfinished(limit).await
    }
    async fn mark_queued(
        &self,
        c: &str,
        kind: SyncKind,
        holder: Option<&str>,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.inner.mark_queued(c, kind, holder, until).await
    }
    async fn clear_queued(
        &self,
        c: &str,
        kind: SyncKind,
        until: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.inner.clear_queued(c, kind, until).await
    }
    async fn put_run(&self, run: &SyncRun) -> Result<(), StoreError> {
        self.inner.put_run(run).await
    }
    async fn get_run(&self, c: &str, run_id: &str) -> Result<Option<SyncRun>, StoreError> {
        self.inner.get_run(c, run_id).await
    }
    async fn list_runs(&self, c: &str, limit: usize) -> Result<Vec<SyncRun>, StoreError> {
        self.inner.list_runs(c, limit).await
    }
}

struct H {
    _sim: SimHandle,
    gate: Arc<LocalRateGate>,
    shop: Arc<MemoryShop>,
    sync: Arc<Counting>,
    deps: Deps,
}

/// One connection on its own simulator (the same seeded catalog in every harness).
async fn harness() -> H {
    let sim = keycrm_sim::start(
        SimConfig {
            accounts: vec![AccountSpec {
                api_key: "k1".into(),
                seed: 11,
                products: PRODUCTS,
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
    let clients = Arc::new(KeycrmClients::new(
        secrets,
        gate.clone(),
        ClientConfig::with_base_url(sim.base_url()),
    ));
    let conns = Arc::new(MemoryConnections::default());
    let settings = Settings {
        sync_products: true,
        sync_categories: true,
        new_products: NewProductPolicy::Publish,
        ..Settings::default()
    };
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
    let sync = Arc::new(Counting {
        inner: Arc::new(MemorySync::new()),
        checkpoints: AtomicU64::new(0),
    });
    let deps = Deps {
        connections: conns,
        sync: sync.clone(),
        links: Arc::new(MemoryLinks::new()),
        shop: shop.clone(),
        clients,
        journal: Arc::new(MemoryJournal::default()),
        jobs: Arc::new(MemoryQueue::new("jobs")),
    };
    H {
        _sim: sim,
        gate,
        shop,
        sync,
        deps,
    }
}

fn config(every: Duration) -> Config {
    Config {
        safety: Duration::from_millis(50),
        lease_slack: Duration::from_millis(300),
        checkpoint_every: every,
        ..Config::default()
    }
}

async fn run_to_end(h: &H, every: Duration) -> JobOutcome {
    let engine = Engine::new(h.deps.clone(), config(every));
    kit::run_to_end(
        &engine,
        &kit::job("c1", SyncKind::Full, false),
        None,
        Duration::from_secs(60),
        20,
    )
    .await
    .unwrap()
    .0
}

/// What the shop holds: each product's KeyCRM id (external id) and name, in order; a
/// duplicate create would show as a second entry.
fn shop_products(h: &H) -> Vec<(Option<String>, String)> {
    let mut v: Vec<(Option<String>, String)> = h
        .shop
        .products("s1")
        .into_iter()
        .map(|p| (p.external_id, p.name))
        .collect();
    v.sort();
    v
}

fn completed(out: &JobOutcome) -> bool {
    matches!(out, JobOutcome::Finished { state, .. } if state == "completed")
}

#[tokio::test]
async fn spaced_checkpoints_write_the_lease_less_often_with_the_same_result() {
    let every_unit = harness().await;
    let out = run_to_end(&every_unit, Duration::ZERO).await;
    assert!(completed(&out), "{out:?}");
    let spaced = harness().await;
    let out = run_to_end(&spaced, Duration::from_secs(3600)).await;
    assert!(completed(&out), "{out:?}");

    let all = every_unit.sync.checkpoints.load(Ordering::SeqCst);
    let few = spaced.sync.checkpoints.load(Ordering::SeqCst);
    // Every unit: each offers page and more. Spaced by an hour: the first unit (so the
    // resume tick can find the run), the save before the creates, nothing else.
    assert!(all >= (PRODUCTS / 50) as u64, "{all} checkpoints");
    assert!(few <= 3, "{few} checkpoints with an hour between saves");
    assert!(few < all);
    let products = shop_products(&spaced);
    assert!(!products.is_empty());
    assert_eq!(products, shop_products(&every_unit));
}

#[tokio::test]
async fn a_crash_between_spaced_checkpoints_redoes_the_unsaved_units_without_duplicates() {
    let reference = harness().await;
    assert!(completed(&run_to_end(&reference, Duration::ZERO).await));

    let h = harness().await;
    // An order has just gone out on the key: its last window is in use, so the run gets no
    // background burst (on a quiet key its ~15 requests would all go at once, ending the run
    // before the crash) and is paced from its first request.
    h.gate
        .acquire(&ApiKey::new("k1").fingerprint(), Priority::Interactive)
        .await
        .unwrap();
    let engine = Engine::new(h.deps.clone(), config(Duration::from_secs(3600)));
    // The invocation dies in the catalog pass, units after the first one unsaved: the
    // future is dropped, as a Lambda killed at its timeout would be.
    let crashed = tokio::time::timeout(
        Duration::from_millis(600),
        engine.run_job(
            &kit::job("c1", SyncKind::Full, false),
            None,
            Instant::now() + Duration::from_millis(700),
        ),
    )
    .await;
    assert!(
        crashed.is_err(),
        "the run ended before the crash: {crashed:?}"
    );
    assert_eq!(h.sync.checkpoints.load(Ordering::SeqCst), 1);
    // The first unit's checkpoint makes the run one the resume tick finds once its lease
    // has expired.
    let until = Instant::now() + Duration::from_secs(10);
    while h.sync.unfinished(10).await.unwrap().is_empty() {
        assert!(
            Instant::now() < until,
            "the crashed run was never resumable"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let resume = SyncJob {
        requested_by: RequestedBy::Resume,
        ..kit::job("c1", SyncKind::Full, false)
    };
    let (out, _) = kit::run_to_end(&engine, &resume, None, Duration::from_secs(60), 20)
        .await
        .unwrap();
    assert!(completed(&out), "{out:?}");
    let products = shop_products(&h);
    let distinct: BTreeSet<_> = products.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(
        distinct.len(),
        products.len(),
        "a product was created twice"
    );
    assert_eq!(products, shop_products(&reference));
}
