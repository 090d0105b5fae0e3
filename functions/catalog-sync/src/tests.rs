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
    SecretStore, StatusJournal, SyncKind, SyncStore,
};

const SCALE: f64 = 600.0;

struct H {
    sim: SimHandle,
    shop: Arc<MemoryShop>,
    links: Arc<MemoryLinks>,
    sync: Arc<MemorySync>,
    journal: Arc<MemoryJournal>,
    deps: Deps,
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
    let journal = Arc::new(MemoryJournal::default());
    let deps = Deps {
        connections: conns,
        sync: sync.clone(),
        links: links.clone(),
        shop: shop.clone(),
        clients,
        journal: journal.clone(),
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
        journal,
        deps: deps.clone(),
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

// ------------------------------------------------------------------ catalog safety

fn variants(prefix: &str, n: usize) -> Vec<keycrm_sim::NewVariant> {
    (1..=n)
        .map(|i| keycrm_sim::NewVariant {
            sku: format!("{prefix}-{i}"),
            barcode: None,
            price: Some(100.0 + i as f64),
            quantity: 5,
            properties: vec![keycrm_sim::PropertyInfo {
                name: "Розмір".into(),
                value: format!("{i}"),
            }],
        })
        .collect()
}

fn add_product(h: &H, name: &str, prefix: &str, n: usize) {
    h.sim.catalog_mutate(
        "k1",
        keycrm_sim::CatalogMutation::AddProduct {
            name: name.into(),
            category_id: None,
            sku: None,
            price: 100.0,
            barcode: None,
            quantity: 5,
            description: None,
            variants: variants(prefix, n),
        },
    );
}

fn offer_id(h: &H, sku: &str) -> i64 {
    h.sim
        .catalog("k1")
        .offers
        .iter()
        .find(|o| o.sku == sku)
        .map(|o| o.id)
        .unwrap_or_else(|| panic!("no offer {sku}"))
}

/// The shop variant linked to a KeyCRM offer, as the shop holds it now.
async fn shop_variant(h: &H, offer: i64) -> shop::ShopVariant {
    use store::LinkStore;
    let (links, _) = h.links.products_page("c1", None, 1000).await.unwrap();
    let (product, variant) = links
        .iter()
        .find_map(|l| {
            l.variants
                .iter()
                .find(|v| v.offer_id == offer)
                .map(|v| (l.shop_id.clone(), v.shop_id.clone()))
        })
        .expect("linked");
    h.shop
        .product("s1", &product)
        .and_then(|p| p.variants.into_iter().find(|v| v.id == variant))
        .expect("in the shop")
}

async fn last_run(h: &H) -> store::SyncRun {
    h.sync.list_runs("c1", 1).await.unwrap().remove(0)
}

fn count(run: &store::SyncRun, key: &str) -> u64 {
    run.counts.get(key).copied().unwrap_or(0)
}

/// Two products of 50 and 3 variants (53 offers: two KeyCRM pages), synced and linked.
async fn two_pages() -> H {
    let h = harness(0, on()).await;
    add_product(&h, "Велика", "B", 50);
    add_product(&h, "Мала", "S", 3);
    let out = run(&h, SyncKind::Full).await;
    assert!(
        matches!(out, JobOutcome::Finished { ref state, .. } if state == "completed"),
        "{out:?}"
    );
    assert_eq!(h.links.product_count("c1"), 2);
    h
}

/// An offer the listing did not show is re-checked with KeyCRM: one hidden by a listing that
/// shifted under the pass stays available, one really archived is made unavailable.
#[tokio::test]
async fn offers_missing_from_the_listing_are_rechecked_before_their_variant_goes() {
    let h = two_pages().await;
    let s1 = offer_id(&h, "S-1");
    let s3 = offer_id(&h, "S-3");
    h.sim.catalog_mutate(
        "k1",
        keycrm_sim::CatalogMutation::ArchiveOffer { offer_id: s3 },
    );
    // One invocation reads the categories and the first offers page, then pauses.
    let paged = Engine::new(
        h.deps.clone(),
        Config {
            safety: Duration::from_millis(50),
            max_units: Some(2),
            ..Config::default()
        },
    );
    let job = kit::job("c1", SyncKind::Full, false);
    let first = paged
        .run_job(
            &job,
            None,
            std::time::Instant::now() + Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert!(matches!(first, JobOutcome::Paused { .. }), "{first:?}");
    // An offer of the first page is deleted meanwhile: offset paging shifts, and S-1 (the
    // first offer of the second page) slips into the page already read.
    let b10 = offer_id(&h, "B-10");
    h.sim.catalog_mutate(
        "k1",
        keycrm_sim::CatalogMutation::DeleteOffer { offer_id: b10 },
    );
    let mut resume = job.clone();
    resume.requested_by = store::RequestedBy::Resume;
    let (out, _) = kit::run_to_end(&h.engine, &resume, None, Duration::from_secs(60), 50)
        .await
        .unwrap();
    assert!(
        matches!(out, JobOutcome::Finished { ref state, .. } if state == "completed"),
        "{out:?}"
    );
    let r = last_run(&h).await;
    assert_eq!(count(&r, "rechecked_offers"), 1, "{:?}", r.counts);
    assert_eq!(count(&r, "variants_unavailable"), 1, "{:?}", r.counts);
    assert!(
        shop_variant(&h, s1).await.available,
        "S-1 is still on sale in KeyCRM"
    );
    assert!(!shop_variant(&h, s3).await.available, "S-3 was archived");
    assert!(
        shop_variant(&h, b10).await.available,
        "listed before it was deleted"
    );

    // The next run lists S-1 again and finds B-10 gone.
    run(&h, SyncKind::Full).await;
    let r = last_run(&h).await;
    assert_eq!(count(&r, "rechecked_offers"), 0, "{:?}", r.counts);
    assert_eq!(count(&r, "variants_unavailable"), 1, "{:?}", r.counts);
    assert!(!shop_variant(&h, b10).await.available);
    assert!(shop_variant(&h, s1).await.available);
}

/// Variants vanishing from products that are still listed count in the vanish guard: too
/// many at once refuse the sweep instead of making them unavailable.
#[tokio::test]
async fn the_vanish_guard_counts_offers_that_vanished_from_listed_products() {
    let h = two_pages().await;
    let gone: Vec<i64> = (1..=20).map(|i| offer_id(&h, &format!("B-{i}"))).collect();
    for o in &gone {
        h.sim.catalog_mutate(
            "k1",
            keycrm_sim::CatalogMutation::ArchiveOffer { offer_id: *o },
        );
    }
    h.shop.reset_stats("s1");
    let out = run(&h, SyncKind::Full).await;
    assert!(
        matches!(out, JobOutcome::Finished { ref state, .. } if state == "refused"),
        "20 of 53 variants at once is over the 30% guard: {out:?}"
    );
    let r = last_run(&h).await;
    assert_eq!(count(&r, "vanished_offers"), 20, "{:?}", r.counts);
    assert_eq!(count(&r, "variants_unavailable"), 0);
    assert!(
        r.message
            .as_deref()
            .unwrap_or("")
            .contains("20 of 53 linked variants"),
        "{:?}",
        r.message
    );
    for o in &gone {
        assert!(
            shop_variant(&h, *o).await.available,
            "nothing made unavailable"
        );
    }
    assert_eq!(h.shop.stats("s1").price_changes, 0);
}

/// A price or availability edited in the shop is brought back to KeyCRM's by the next full
/// run, writing only what differs; after that nothing is written.
#[tokio::test]
async fn the_full_run_repairs_prices_and_availability_edited_in_the_shop() {
    use shop::ShopCatalog;
    let h = two_pages().await;
    let b1 = offer_id(&h, "B-1");
    let s2 = offer_id(&h, "S-2");
    let (v_b1, v_s2) = (shop_variant(&h, b1).await, shop_variant(&h, s2).await);
    let product_of = |sku: &str| {
        h.shop
            .products("s1")
            .into_iter()
            .find(|p| p.variants.iter().any(|v| v.sku.as_deref() == Some(sku)))
            .map(|p| p.id)
            .unwrap()
    };
    // A merchant's edits: a price, and a variant switched off.
    h.shop
        .set_variant_prices(
            "s1",
            &[
                shop::VariantPriceChange {
                    product_id: product_of("B-1"),
                    variant_id: v_b1.id.clone(),
                    price: Some("1.00".parse().unwrap()),
                    available: None,
                },
                shop::VariantPriceChange {
                    product_id: product_of("S-2"),
                    variant_id: v_s2.id.clone(),
                    price: None,
                    available: Some(false),
                },
            ],
        )
        .await
        .unwrap();
    h.shop.reset_stats("s1");
    run(&h, SyncKind::Full).await;
    let r = last_run(&h).await;
    assert_eq!(count(&r, "drift_repaired"), 2, "{:?}", r.counts);
    assert_eq!(count(&r, "drift_checked"), 2, "{:?}", r.counts);
    assert_eq!(
        h.shop.stats("s1").price_changes,
        2,
        "only the two edited variants"
    );
    assert_eq!(shop_variant(&h, b1).await.price, v_b1.price);
    assert!(shop_variant(&h, s2).await.available);

    h.shop.reset_stats("s1");
    run(&h, SyncKind::Full).await;
    assert_eq!(
        h.shop.stats("s1"),
        shop::ShopStats::default(),
        "in step again: nothing written"
    );
    assert_eq!(count(&last_run(&h).await, "drift_repaired"), 0);
}

/// Scheduled price runs compare the shop too, once nothing has for 20 hours; a merchant's
/// price run always does.
#[tokio::test]
async fn a_price_run_repairs_drift_at_least_once_a_day() {
    use shop::ShopCatalog;
    let h = two_pages().await;
    let b2 = offer_id(&h, "B-2");
    let v = shop_variant(&h, b2).await;
    let product = h
        .shop
        .products("s1")
        .into_iter()
        .find(|p| p.variants.iter().any(|x| x.id == v.id))
        .unwrap()
        .id;
    let edit = || shop::VariantPriceChange {
        product_id: product.clone(),
        variant_id: v.id.clone(),
        price: Some("7.00".parse().unwrap()),
        available: None,
    };
    h.shop.set_variant_prices("s1", &[edit()]).await.unwrap();
    // The full run just repaired the shop: a scheduled price run leaves it.
    run(&h, SyncKind::Prices).await;
    assert_eq!(
        shop_variant(&h, b2).await.price,
        Some("7.00".parse().unwrap())
    );
    assert_eq!(count(&last_run(&h).await, "drift_checked"), 0);

    // A day later (the last repair 21 hours ago) the scheduled price run repairs.
    let mut full = h.journal.status("c1").await.unwrap().last_sync["full"].clone();
    full.finished_at = Some(chrono::Utc::now() - chrono::Duration::hours(21));
    h.journal.record_sync("c1", "full", &full).await.unwrap();
    run(&h, SyncKind::Prices).await;
    assert_eq!(shop_variant(&h, b2).await.price, v.price);
    assert_eq!(count(&last_run(&h).await, "drift_repaired"), 1);

    // A merchant's "sync prices now" always compares.
    h.shop.set_variant_prices("s1", &[edit()]).await.unwrap();
    let job = store::SyncJob {
        connection_id: "c1".into(),
        kind: SyncKind::Prices,
        dry_run: false,
        requested_by: store::RequestedBy::Merchant,
        run_id: Some("merchant-prices-1".into()),
    };
    kit::run_to_end(&h.engine, &job, None, Duration::from_secs(60), 50)
        .await
        .unwrap();
    assert_eq!(shop_variant(&h, b2).await.price, v.price);
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
    async fn mark_deleting(&self, conn: &store::Connection) -> Result<(), store::StoreError> {
        self.inner.mark_deleting(conn).await
    }
    async fn get_deleting(
        &self,
        id: &str,
    ) -> Result<Option<(store::Connection, chrono::DateTime<chrono::Utc>)>, store::StoreError> {
        self.inner.get_deleting(id).await
    }
    async fn list_deleting(
        &self,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<(Vec<String>, Option<String>), store::StoreError> {
        self.inner.list_deleting(cursor, limit).await
    }
    async fn purge(&self, id: &str, max_items: usize) -> Result<bool, store::StoreError> {
        self.inner.purge(id, max_items).await
    }
    async fn remove(&self, id: &str) -> Result<(), store::StoreError> {
        self.inner.remove(id).await
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

// The Lambda edge from JSON event fixtures, on this file's harness.
#[path = "../tests/lambda/fixtures.rs"]
mod lambda_fixtures;
