//! Catalog sync end to end: the KeyCRM simulator (HTTP), the demo shop over the platform HTTP
//! contract, and every store on DynamoDB (moto). Each test builds its own world.

use catalog_sync::{kit, Config, Deps, Engine, JobMessage, JobOutcome, ScheduleKind};
use e2e_tests::emulator;
use e2e_tests::faults::{CatalogOp, HookedCatalog};
use keycrm::{ApiKey, ClientConfig, LocalRateGate, RateBudget};
use keycrm_sim::{AccountSpec, CatalogMutation, CatalogSnapshot, SimConfig, SimHandle};
use mapping::settings::{ExistingProductPolicy, MatchKey, MissingProductPolicy, NewProductPolicy};
use mapping::Settings;
use queue::{MemoryQueue, Queue};
use runtime::KeycrmClients;
use rust_decimal::Decimal;
use shop::{
    HttpShop, MemoryShop, ProductUpsert, ShopCatalog, ShopCategory, ShopProduct, ShopStats,
    ShopVariant,
};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::{
    ConnectionStore, DynamoTable, MemorySecrets, SecretStore, SyncJob, SyncKind, SyncRun, SyncStore,
};

const SCALE: f64 = 600.0;
const KEY: &str = "kc-key";
const CONN: &str = "conn-1";
const SHOP: &str = "shop-1";

struct World {
    sim: SimHandle,
    shop: Arc<MemoryShop>,
    table: Arc<DynamoTable>,
    engine: Engine,
    deps: Deps,
}

fn on() -> Settings {
    Settings {
        sync_products: true,
        sync_categories: true,
        ..Settings::default()
    }
}

async fn world(products: usize, settings: Settings) -> World {
    world_with(products, settings, Config::default(), None).await
}

async fn world_with(
    products: usize,
    settings: Settings,
    cfg: Config,
    shop_override: Option<Arc<dyn ShopCatalog>>,
) -> World {
    let table = Arc::new(emulator::table().await);
    let sim = keycrm_sim::start(
        SimConfig {
            accounts: vec![AccountSpec {
                api_key: KEY.into(),
                seed: 11,
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
    let mem = Arc::new(MemoryShop::new());
    let (addr, _) = shop::demo_server::serve(
        mem.clone(),
        "shop-token".into(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let http: Arc<dyn ShopCatalog> =
        Arc::new(HttpShop::new(&format!("http://{addr}/v1"), "shop-token").unwrap());
    let secrets = Arc::new(MemorySecrets::default());
    let key = ApiKey::new(KEY);
    secrets
        .put("shop-keycrm/test/keycrm/conn-1", &key)
        .await
        .unwrap();
    let gate = Arc::new(LocalRateGate::new(RateBudget::keycrm_scaled(SCALE)));
    let clients = Arc::new(KeycrmClients::new(
        secrets,
        gate,
        ClientConfig::with_base_url(sim.base_url()),
    ));
    table
        .create(&kit::connection(
            CONN,
            SHOP,
            &sim.base_url(),
            "shop-keycrm/test/keycrm/conn-1",
            &key,
            settings,
        ))
        .await
        .unwrap();
    let deps = Deps {
        connections: table.clone(),
        sync: table.clone(),
        links: table.clone(),
        shop: shop_override.unwrap_or(http),
        clients,
        journal: table.clone(),
        jobs: Arc::new(MemoryQueue::new("sync-jobs")),
    };
    let cfg = Config {
        safety: Duration::from_millis(100),
        lease_slack: Duration::from_secs(1),
        ..cfg
    };
    World {
        engine: Engine::new(deps.clone(), cfg),
        deps,
        sim,
        shop: mem,
        table,
    }
}

impl World {
    async fn run(&self, kind: SyncKind) -> (JobOutcome, SyncRun) {
        self.run_job(&kit::job(CONN, kind, false), None).await
    }

    async fn run_job(&self, job: &SyncJob, settings: Option<Settings>) -> (JobOutcome, SyncRun) {
        let (out, _) = kit::run_to_end(&self.engine, job, settings, Duration::from_secs(120), 100)
            .await
            .unwrap();
        let run_id = match &out {
            JobOutcome::Finished { run_id, .. } | JobOutcome::Paused { run_id } => run_id.clone(),
            other => panic!("unexpected outcome {other:?}"),
        };
        (
            out,
            self.table.get_run(CONN, &run_id).await.unwrap().unwrap(),
        )
    }

    async fn settings(&self, s: Settings) {
        let mut c = self.table.get(CONN).await.unwrap().unwrap();
        c.settings = s;
        c.version += 1;
        self.table.update(&c).await.unwrap();
    }

    fn snap(&self) -> CatalogSnapshot {
        self.sim.catalog(KEY)
    }

    fn products(&self) -> Vec<ShopProduct> {
        self.shop.products(SHOP)
    }

    /// Shop product created for a KeyCRM product (its external id).
    fn for_keycrm(&self, id: i64) -> Option<ShopProduct> {
        self.products()
            .into_iter()
            .find(|p| p.external_id.as_deref() == Some(&id.to_string()))
    }

    fn stats(&self) -> ShopStats {
        self.shop.stats(SHOP)
    }

    fn mutate(&self, m: CatalogMutation) {
        self.sim.catalog_mutate(KEY, m);
    }
}

fn dec(f: f64) -> Decimal {
    format!("{f}").parse().unwrap()
}

fn completed(out: &JobOutcome) -> bool {
    matches!(out, JobOutcome::Finished { state, .. } if state == "completed")
}

fn count(run: &SyncRun, key: &str) -> u64 {
    run.counts.get(key).copied().unwrap_or(0)
}

/// Products whose SKUs collide with another product's (the simulator's traps).
fn trapped(snap: &CatalogSnapshot) -> HashSet<i64> {
    let dup: HashSet<String> = snap.duplicate_skus().into_iter().collect();
    snap.offers
        .iter()
        .filter(|o| dup.contains(&o.sku))
        .map(|o| o.product_id)
        .collect()
}

fn active(snap: &CatalogSnapshot) -> Vec<i64> {
    snap.products
        .iter()
        .filter(|p| !p.is_archived)
        .map(|p| p.id)
        .collect()
}

fn floor(snap: &CatalogSnapshot) -> u64 {
    let offers = snap.offers.iter().filter(|o| !o.is_archived).count() as u64;
    offers.div_ceil(50) + (snap.categories.len() as u64).div_ceil(50)
}

// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn first_sync_creates_hidden_products_and_categories_then_an_unchanged_sync_writes_nothing() {
    let w = world(150, on()).await;
    w.sim.reset_stats();
    let (out, run) = w.run(SyncKind::Full).await;
    assert!(completed(&out), "{out:?} {run:?}");
    let snap = w.snap();
    let traps = trapped(&snap);
    let expected: Vec<i64> = active(&snap)
        .into_iter()
        .filter(|id| !traps.contains(id))
        .collect();
    assert_eq!(
        count(&run, "create") as usize,
        expected.len(),
        "{:?}",
        run.counts
    );
    assert_eq!(w.products().len(), expected.len());
    assert!(w.sim.stats().rate_limited_429 == 0);
    assert!(
        run.keycrm_requests as f64 <= floor(&snap) as f64 * 1.02,
        "{} vs floor {}",
        run.keycrm_requests,
        floor(&snap)
    );

    // Categories: every one, parents before children, linked by KeyCRM id.
    let cats: HashMap<String, ShopCategory> = w
        .shop
        .category_list(SHOP)
        .into_iter()
        .map(|c| (c.id.clone(), c))
        .collect();
    assert_eq!(cats.len(), snap.categories.len());
    for c in cats.values() {
        if let Some(p) = &c.parent_id {
            assert!(cats.contains_key(p), "parent {p} exists");
        }
    }
    for id in &expected {
        let kp = snap.products.iter().find(|p| p.id == *id).unwrap();
        let sp = w.for_keycrm(*id).expect("created");
        assert!(!sp.visible, "new products are hidden by default");
        assert_eq!(sp.name, kp.name);
        let offers = snap.offers_of(*id);
        assert_eq!(sp.variants.len(), offers.len());
        for o in offers {
            let v = sp
                .variants
                .iter()
                .find(|v| v.sku.as_deref() == Some(o.sku.as_str()))
                .unwrap();
            assert_eq!(v.price, Some(dec(o.price)));
            assert_eq!(
                v.available,
                o.quantity - o.in_reserve > 0,
                "availability from stock"
            );
        }
        let details = w.shop.product_details(SHOP, &sp.id).unwrap();
        let cat = cats.get(details.category_id.as_deref().unwrap()).unwrap();
        let kc_cat = snap
            .categories
            .iter()
            .find(|c| c.id == kp.category_id)
            .unwrap();
        assert_eq!(cat.name, kc_cat.name);
    }
    // Archived products are never created.
    for p in snap.products.iter().filter(|p| p.is_archived) {
        assert!(w.for_keycrm(p.id).is_none());
    }

    w.shop.reset_stats(SHOP);
    let (out, run2) = w.run(SyncKind::Full).await;
    assert!(completed(&out));
    assert_eq!(
        w.stats(),
        ShopStats::default(),
        "nothing changed: nothing written"
    );
    assert_eq!(count(&run2, "unchanged") as usize, expected.len());
    assert_eq!(run2.keycrm_requests, run.keycrm_requests);

    // A rename and a category move in KeyCRM apply to the linked shop category.
    let child = snap
        .categories
        .iter()
        .find(|c| c.parent_id.is_some())
        .unwrap();
    w.mutate(CatalogMutation::AddCategory {
        name: "Нова категорія".into(),
        parent_id: Some(child.id),
    });
    let (_, run3) = w.run(SyncKind::Full).await;
    assert_eq!(count(&run3, "category_create"), 1);
    let new_cat = w
        .shop
        .category_list(SHOP)
        .into_iter()
        .find(|c| c.name == "Нова категорія")
        .unwrap();
    let parent = w
        .shop
        .category_list(SHOP)
        .into_iter()
        .find(|c| Some(&c.id) == new_cat.parent_id.as_ref())
        .unwrap();
    assert_eq!(parent.name, child.name);
    assert_eq!(w.stats().products_created, 0);
}

#[tokio::test]
async fn new_product_policies_publish_and_dont_create() {
    let w = world(
        60,
        Settings {
            new_products: NewProductPolicy::Publish,
            ..on()
        },
    )
    .await;
    let (_, run) = w.run(SyncKind::Full).await;
    assert!(count(&run, "create") > 0);
    assert!(w.products().iter().all(|p| p.visible), "published");

    w.settings(Settings {
        new_products: NewProductPolicy::DontCreate,
        ..on()
    })
    .await;
    w.mutate(CatalogMutation::AddProduct {
        name: "Светр новий".into(),
        category_id: None,
        sku: Some("NEW-1".into()),
        price: 999.0,
        barcode: None,
        quantity: 3,
        description: None,
        variants: vec![],
    });
    let before = w.products().len();
    let (_, run) = w.run(SyncKind::Full).await;
    assert_eq!(w.products().len(), before, "not created");
    assert_eq!(
        count(&run, "skipped"),
        1,
        "only the new product; the traps are ambiguous"
    );
    assert!(run.samples["skipped"][0].name.contains("Светр новий"));
}

#[tokio::test]
async fn existing_product_policies_update_or_leave_content_but_keep_prices_current() {
    let w = world(
        60,
        Settings {
            sync_categories: false,
            ..on()
        },
    )
    .await;
    w.run(SyncKind::Full).await;
    let snap = w.snap();
    let id = active(&snap)
        .into_iter()
        .find(|id| !trapped(&snap).contains(id))
        .unwrap();
    let offer = snap.offers_of(id)[0].clone();
    let sp = w.for_keycrm(id).unwrap();
    // The merchant filed it under their own category: the sync has none to offer and
    // must leave it.
    w.shop
        .upsert_products(
            SHOP,
            &[ProductUpsert {
                id: Some(sp.id.clone()),
                external_ref: id.to_string(),
                category_id: Some("merchant-cat".into()),
                ..ProductUpsert::default()
            }],
        )
        .await
        .unwrap();

    w.settings(Settings {
        sync_categories: false,
        existing_products: ExistingProductPolicy::DontUpdate,
        ..on()
    })
    .await;
    w.mutate(CatalogMutation::Rename {
        product_id: id,
        name: "Перейменовано".into(),
    });
    w.mutate(CatalogMutation::SetPrice {
        offer_id: offer.id,
        price: 4321.0,
    });
    w.shop.reset_stats(SHOP);
    let (_, run) = w.run(SyncKind::Full).await;
    let p = w.shop.product(SHOP, &sp.id).unwrap();
    assert_eq!(p.name, sp.name, "don't update: content untouched");
    let v = p
        .variants
        .iter()
        .find(|v| v.sku.as_deref() == Some(offer.sku.as_str()))
        .unwrap();
    assert_eq!(
        v.price,
        Some(Decimal::from(4321)),
        "prices still follow KeyCRM"
    );
    assert_eq!(w.stats().products_updated, 0);
    assert_eq!(count(&run, "price_changed"), 1);

    w.settings(Settings {
        sync_categories: false,
        existing_products: ExistingProductPolicy::Update,
        ..on()
    })
    .await;
    let (_, run) = w.run(SyncKind::Full).await;
    assert_eq!(count(&run, "update"), 1);
    assert_eq!(w.shop.product(SHOP, &sp.id).unwrap().name, "Перейменовано");
    let d = w.shop.product_details(SHOP, &sp.id).unwrap();
    assert_eq!(
        d.category_id.as_deref(),
        Some("merchant-cat"),
        "never overwritten with a blank"
    );
    assert!(d.description.is_some());
}

#[tokio::test]
async fn missing_products_nothing_hide_or_make_unavailable_and_come_back() {
    let w = world(
        80,
        Settings {
            missing_products: MissingProductPolicy::Nothing,
            new_products: NewProductPolicy::Publish,
            ..on()
        },
    )
    .await;
    w.run(SyncKind::Full).await;
    let snap = w.snap();
    let traps = trapped(&snap);
    let ids: Vec<i64> = active(&snap)
        .into_iter()
        .filter(|i| !traps.contains(i))
        .collect();
    let (a, b) = (ids[0], ids[1]);
    w.mutate(CatalogMutation::Archive { product_id: a });
    w.mutate(CatalogMutation::Delete { product_id: b });

    let (_, run) = w.run(SyncKind::Full).await;
    assert_eq!(count(&run, "hide") + count(&run, "make_unavailable"), 0);
    assert!(w.for_keycrm(a).unwrap().visible, "nothing");

    w.settings(Settings {
        missing_products: MissingProductPolicy::Hide,
        ..on()
    })
    .await;
    let (_, run) = w.run(SyncKind::Full).await;
    assert_eq!(count(&run, "hide"), 2, "{:?}", run.counts);
    assert!(!w.for_keycrm(a).unwrap().visible && !w.for_keycrm(b).unwrap().visible);
    let details: BTreeSet<String> = run.samples["hide"]
        .iter()
        .filter_map(|i| i.detail.clone())
        .collect();
    assert!(
        details.contains("archived in KeyCRM") && details.contains("deleted in KeyCRM"),
        "{details:?}"
    );
    // Swept once, not again.
    let (_, run) = w.run(SyncKind::Full).await;
    assert_eq!(count(&run, "hide"), 0);
    // Back in KeyCRM: shown again.
    w.mutate(CatalogMutation::Unarchive { product_id: a });
    let (_, run) = w.run(SyncKind::Full).await;
    assert_eq!(count(&run, "restored"), 1);
    assert!(w.for_keycrm(a).unwrap().visible);

    w.settings(Settings {
        missing_products: MissingProductPolicy::MakeUnavailable,
        ..on()
    })
    .await;
    let c = ids[2];
    w.mutate(CatalogMutation::Archive { product_id: c });
    let (_, run) = w.run(SyncKind::Full).await;
    assert_eq!(count(&run, "make_unavailable"), 1);
    let p = w.for_keycrm(c).unwrap();
    assert!(p.visible && !p.available && p.variants.iter().all(|v| !v.available));
}

fn seeded(
    id: &str,
    name: &str,
    sku: Option<&str>,
    barcode: Option<&str>,
    external: Option<&str>,
) -> ShopProduct {
    ShopProduct {
        id: id.into(),
        name: name.into(),
        sku: sku.map(Into::into),
        barcode: barcode.map(Into::into),
        external_id: external.map(Into::into),
        visible: true,
        available: true,
        variants: vec![ShopVariant {
            id: format!("{id}-v"),
            sku: sku.map(Into::into),
            barcode: barcode.map(Into::into),
            price: Some(Decimal::ONE),
            available: true,
        }],
    }
}

#[tokio::test]
async fn each_match_key_links_existing_shop_products() {
    for key in [
        MatchKey::Id,
        MatchKey::Sku,
        MatchKey::Name,
        MatchKey::Barcode,
        MatchKey::ExternalId,
        MatchKey::CreateOnly,
    ] {
        let settings = Settings {
            match_key: key,
            new_products: NewProductPolicy::DontCreate,
            sync_categories: false,
            ..on()
        };
        let w = world(60, settings.clone()).await;
        let snap = w.snap();
        let traps = trapped(&snap);
        // A simple product (one offer with a barcode) with a unique name.
        let p = snap
            .products
            .iter()
            .filter(|p| !p.is_archived && !traps.contains(&p.id))
            .find(|p| {
                let o = snap.offers_of(p.id);
                o.len() == 1
                    && o[0].barcode.is_some()
                    && snap
                        .products
                        .iter()
                        .filter(|q| q.name.to_lowercase() == p.name.to_lowercase())
                        .count()
                        == 1
            })
            .unwrap();
        let o = snap.offers_of(p.id)[0].clone();
        let pid = p.id.to_string();
        let shop_product = match key {
            MatchKey::Id => seeded(&pid, "Інша назва", None, None, None),
            MatchKey::Sku => seeded("x1", "Інша назва", Some(&o.sku), None, None),
            MatchKey::Name => seeded(
                "x1",
                &format!("  {}  ", p.name.to_uppercase()),
                None,
                None,
                None,
            ),
            MatchKey::Barcode => seeded("x1", "Інша назва", None, o.barcode.as_deref(), None),
            MatchKey::ExternalId => seeded("x1", "Інша назва", None, None, Some(&pid)),
            MatchKey::CreateOnly => seeded("x1", &p.name, Some(&o.sku), o.barcode.as_deref(), None),
        };
        let shop_id = shop_product.id.clone();
        w.shop.add_product(SHOP, shop_product);
        let (out, run) = w.run(SyncKind::Full).await;
        assert!(completed(&out), "{key:?}");
        if key == MatchKey::CreateOnly {
            assert_eq!(count(&run, "update"), 0, "{key:?}: never matched");
            assert_eq!(
                w.stats().products_created,
                0,
                "and DontCreate creates nothing"
            );
            // With creating on, create-only makes a second product even with the same SKU.
            w.settings(Settings {
                new_products: NewProductPolicy::Hide,
                ..settings
            })
            .await;
            w.run(SyncKind::Full).await;
            let same_sku = w
                .products()
                .iter()
                .filter(|s| s.sku.as_deref() == Some(o.sku.as_str()))
                .count();
            assert_eq!(same_sku, 2);
            continue;
        }
        assert_eq!(
            count(&run, "update"),
            1,
            "{key:?}: {:?} {:?}",
            run.counts,
            run.samples
        );
        assert_eq!(w.stats().products_created, 0);
        let got = w.shop.product(SHOP, &shop_id).unwrap();
        assert_eq!(
            got.name, p.name,
            "{key:?}: KeyCRM's data written into the match"
        );
        assert_eq!(
            got.variants.len(),
            1,
            "{key:?}: the only variant paired, not duplicated"
        );
        assert_eq!(got.variants[0].price, Some(dec(o.price)));
        // Linked: the next run goes by id whatever the key says.
        w.mutate(CatalogMutation::SetPrice {
            offer_id: o.id,
            price: 7777.0,
        });
        w.settings(Settings {
            match_key: MatchKey::CreateOnly,
            ..settings
        })
        .await;
        w.run(SyncKind::Full).await;
        assert_eq!(
            w.shop.product(SHOP, &shop_id).unwrap().variants[0].price,
            Some(Decimal::from(7777))
        );
    }
}

#[tokio::test]
async fn ambiguity_is_reported_and_skipped_on_both_sides() {
    let w = world(
        200,
        Settings {
            new_products: NewProductPolicy::Publish,
            ..on()
        },
    )
    .await;
    let snap = w.snap();
    let traps = trapped(&snap);
    assert!(!traps.is_empty(), "the simulator seeds duplicate SKUs");
    // A shop-side duplicate: two shop products carry one KeyCRM SKU.
    let victim = active(&snap)
        .into_iter()
        .find(|id| !traps.contains(id))
        .unwrap();
    let sku = snap.offers_of(victim)[0].sku.clone();
    w.shop
        .add_product(SHOP, seeded("dup-a", "A", Some(&sku), None, None));
    w.shop
        .add_product(SHOP, seeded("dup-b", "B", Some(&sku), None, None));

    let (_, run) = w.run(SyncKind::Full).await;
    assert_eq!(
        count(&run, "ambiguous") as usize,
        traps.len() + 1,
        "{:?}",
        run.counts
    );
    for id in &traps {
        assert!(
            w.for_keycrm(*id).is_none(),
            "KeyCRM-side duplicates are not created"
        );
    }
    assert!(w.for_keycrm(victim).is_none());
    assert_eq!(
        w.shop.product(SHOP, "dup-a").unwrap().name,
        "A",
        "neither shop product touched"
    );
    let details: Vec<String> = run.samples["ambiguous"]
        .iter()
        .filter_map(|i| i.detail.clone())
        .collect();
    assert!(
        details
            .iter()
            .any(|d| d.contains("is also on KeyCRM product")),
        "{details:?}"
    );
    let all = w.table.get_run(CONN, &run.run_id).await.unwrap().unwrap();
    assert!(all.samples["ambiguous"].len() <= 5);
}

#[tokio::test]
async fn category_filter_takes_descendants_by_the_cheaper_plan() {
    let w = world(400, Settings::default()).await;
    let snap = w.snap();
    let root = snap
        .categories
        .iter()
        .find(|c| c.parent_id.is_none())
        .unwrap()
        .id;
    let mut scope: BTreeSet<i64> = BTreeSet::from([root]);
    loop {
        let more: Vec<i64> = snap
            .categories
            .iter()
            .filter(|c| c.parent_id.is_some_and(|p| scope.contains(&p)))
            .map(|c| c.id)
            .collect();
        let before = scope.len();
        scope.extend(more);
        if scope.len() == before {
            break;
        }
    }
    assert!(scope.len() > 1, "the root has descendants");
    let traps = trapped(&snap);
    let expected: BTreeSet<i64> = snap
        .products
        .iter()
        .filter(|p| !p.is_archived && scope.contains(&p.category_id) && !traps.contains(&p.id))
        .map(|p| p.id)
        .collect();
    w.settings(Settings {
        category_filter: vec![root],
        match_key: MatchKey::CreateOnly,
        ..on()
    })
    .await;
    w.sim.reset_stats();
    let (out, run) = w.run(SyncKind::Full).await;
    assert!(completed(&out));
    let created: BTreeSet<i64> = w
        .products()
        .iter()
        .filter_map(|p| p.external_id.as_ref()?.parse().ok())
        .collect();
    let expected_all: BTreeSet<i64> = snap
        .products
        .iter()
        .filter(|p| !p.is_archived && scope.contains(&p.category_id))
        .map(|p| p.id)
        .collect();
    assert_eq!(
        created, expected_all,
        "create-only: every product under the root, nothing else"
    );
    assert!(expected.is_subset(&created));
    // One root of six: filtering server-side on /products is cheaper than reading all offers.
    let st = w.sim.stats();
    assert!(
        st.endpoint("GET /products") > 0,
        "{:?}",
        st.requests_by_endpoint
    );
    let all_offers_cost = snap
        .offers
        .iter()
        .filter(|o| !o.is_archived)
        .count()
        .div_ceil(50) as u64;
    assert!(
        run.keycrm_requests < all_offers_cost,
        "{} < {all_offers_cost}",
        run.keycrm_requests
    );
    // The shop's categories: the filtered subtree (and its path to the root) only.
    let shop_cats: BTreeSet<String> = w
        .shop
        .category_list(SHOP)
        .into_iter()
        .map(|c| c.name)
        .collect();
    let kc_names: BTreeSet<String> = snap
        .categories
        .iter()
        .filter(|c| scope.contains(&c.id))
        .map(|c| c.name.clone())
        .collect();
    assert_eq!(shop_cats, kc_names);

    // A filter covering most of the catalog reads every offer instead (and filters here).
    let roots: Vec<i64> = snap
        .categories
        .iter()
        .filter(|c| c.parent_id.is_none())
        .map(|c| c.id)
        .collect();
    let w2 = world(
        400,
        Settings {
            category_filter: roots[1..].to_vec(),
            match_key: MatchKey::CreateOnly,
            ..on()
        },
    )
    .await;
    w2.sim.reset_stats();
    w2.run(SyncKind::Full).await;
    let st = w2.sim.stats();
    assert_eq!(
        st.endpoint("GET /products"),
        1,
        "only the sizing probe: {:?}",
        st.requests_by_endpoint
    );
    let created: BTreeSet<i64> = w2
        .products()
        .iter()
        .filter_map(|p| p.external_id.as_ref()?.parse().ok())
        .collect();
    assert!(created.iter().all(|id| snap
        .products
        .iter()
        .find(|p| p.id == *id)
        .is_some_and(|p| !scope.contains(&p.category_id))));

    // Moving a product out of the filter makes it missing.
    let moved = *expected.iter().next().unwrap();
    let outside = snap
        .categories
        .iter()
        .find(|c| !scope.contains(&c.id))
        .unwrap()
        .id;
    w.settings(Settings {
        category_filter: vec![root],
        match_key: MatchKey::CreateOnly,
        missing_products: MissingProductPolicy::Hide,
        ..on()
    })
    .await;
    w.mutate(CatalogMutation::MoveCategory {
        product_id: moved,
        category_id: outside,
    });
    let (_, run) = w.run(SyncKind::Full).await;
    assert_eq!(count(&run, "hide"), 1, "{:?}", run.counts);
    assert_eq!(
        run.samples["hide"][0].detail.as_deref(),
        Some("moved out of the selected categories")
    );
}

#[tokio::test]
async fn an_unfinished_run_hides_nothing_and_the_vanish_guard_refuses_mass_hiding() {
    let cfg = Config {
        max_units: Some(2),
        ..Config::default()
    };
    let w = world_with(
        200,
        Settings {
            missing_products: MissingProductPolicy::Hide,
            new_products: NewProductPolicy::Publish,
            ..on()
        },
        cfg,
        None,
    )
    .await;
    // First sync, to completion over several invocations.
    let (out, run) = w.run(SyncKind::Full).await;
    assert!(completed(&out));
    assert!(
        run.invocations > 2,
        "paused and resumed: {}",
        run.invocations
    );
    let snap = w.snap();
    let traps = trapped(&snap);
    let linked: Vec<i64> = active(&snap)
        .into_iter()
        .filter(|i| !traps.contains(i))
        .collect();

    // One archived product; a run that has not finished its pass hides nothing.
    w.mutate(CatalogMutation::Archive {
        product_id: linked[0],
    });
    let out = w
        .engine
        .run_job(
            &kit::job(CONN, SyncKind::Full, false),
            None,
            Instant::now() + Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert!(matches!(out, JobOutcome::Paused { .. }));
    assert!(
        w.for_keycrm(linked[0]).unwrap().visible,
        "mid-run: not hidden"
    );
    assert_eq!(
        w.table.unfinished(10).await.unwrap(),
        vec![(CONN.to_string(), SyncKind::Full)]
    );
    let (out, run) = w
        .run_job(
            &SyncJob {
                requested_by: store::RequestedBy::Resume,
                ..kit::job(CONN, SyncKind::Full, false)
            },
            None,
        )
        .await;
    assert!(completed(&out));
    assert_eq!(count(&run, "hide"), 1);
    assert!(!w.for_keycrm(linked[0]).unwrap().visible);

    // 40% vanish at once: refused, nothing hidden, the reason reported.
    let many: Vec<i64> = linked[1..]
        .iter()
        .copied()
        .take(linked.len() * 4 / 10)
        .collect();
    for id in &many {
        w.mutate(CatalogMutation::Archive { product_id: *id });
    }
    let (out, run) = w.run(SyncKind::Full).await;
    assert!(
        matches!(out, JobOutcome::Finished { ref state, .. } if state == "refused"),
        "{out:?}"
    );
    assert!(
        run.message.as_deref().unwrap().contains("vanish guard"),
        "{:?}",
        run.message
    );
    assert_eq!(count(&run, "vanished"), many.len() as u64);
    assert!(many.iter().all(|id| w.for_keycrm(*id).unwrap().visible));
    let status = store::StatusJournal::status(w.table.as_ref(), CONN)
        .await
        .unwrap();
    assert!(!status.last_sync["full"].complete);

    // The merchant raises the guard: the sweep goes through.
    w.settings(Settings {
        missing_products: MissingProductPolicy::Hide,
        vanish_guard: 0.5,
        ..on()
    })
    .await;
    let (out, run) = w.run(SyncKind::Full).await;
    assert!(completed(&out));
    assert_eq!(count(&run, "hide"), many.len() as u64);
}

#[tokio::test]
async fn a_crashed_run_resumes_from_its_checkpoint_without_duplicates() {
    let w = world(
        300,
        Settings {
            new_products: NewProductPolicy::Publish,
            ..on()
        },
    )
    .await;
    // A shop that, after 1 product write, commits one more and then never answers: the
    // invocation dies mid-write, as a Lambda killed at its timeout would.
    let hung = Arc::new(tokio::sync::Notify::new());
    let on_hang = hung.clone();
    let crashing = Arc::new(HookedCatalog::new(w.deps.shop.clone()).after(move |op, n| {
        let hang = op == CatalogOp::UpsertProducts && n >= 1;
        let on_hang = on_hang.clone();
        async move {
            if hang {
                on_hang.notify_one();
                futures::future::pending::<()>().await;
            }
            Ok(())
        }
    }));
    let crash_engine = Engine::new(
        Deps {
            shop: crashing.clone(),
            ..w.deps.clone()
        },
        Config {
            safety: Duration::from_millis(100),
            lease_slack: Duration::from_secs(1),
            shop_batch: 50,
            ..Config::default()
        },
    );
    w.sim.reset_stats();
    // The invocation is killed while the second create batch is in flight (already stored
    // in the shop, its links not yet).
    // Dropping the invocation's future while it hangs is the crash.
    let first = kit::job(CONN, SyncKind::Full, false);
    tokio::select! {
        r = crash_engine.run_job(
            &first,
            None,
            Instant::now() + Duration::from_secs(10),
        ) => panic!("the crashing invocation returned: {r:?}"),
        _ = hung.notified() => {}
    }
    let mid = w.products().len();
    assert_eq!(mid, 100, "two batches of 50 reached the shop");
    // Its lease is still held: a second invocation does not overlap it.
    let busy = w
        .engine
        .run_job(
            &kit::job(CONN, SyncKind::Full, false),
            None,
            Instant::now() + Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert_eq!(busy, JobOutcome::Busy);
    // Once the lease expires (deadline + 1 s of slack), the resume schedule finds the run.
    let until = Instant::now() + Duration::from_secs(30);
    while w.table.unfinished(10).await.unwrap().is_empty() {
        assert!(
            Instant::now() < until,
            "the crashed run's lease never expired"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        w.table.unfinished(10).await.unwrap(),
        vec![(CONN.to_string(), SyncKind::Full)]
    );
    let (out, run) = w
        .run_job(
            &SyncJob {
                requested_by: store::RequestedBy::Resume,
                ..kit::job(CONN, SyncKind::Full, false)
            },
            None,
        )
        .await;
    assert!(completed(&out), "{out:?}");
    let snap = w.snap();
    let traps = trapped(&snap);
    let expected = active(&snap)
        .into_iter()
        .filter(|i| !traps.contains(i))
        .count();
    assert_eq!(w.products().len(), expected, "no product created twice");
    let ext: HashSet<String> = w
        .products()
        .into_iter()
        .filter_map(|p| p.external_id)
        .collect();
    assert_eq!(ext.len(), expected);
    assert!(run.invocations >= 2);
    // The catalog pass was not repeated: resumed from the checkpoint.
    assert!(
        w.sim.stats().endpoint("GET /offers") <= floor(&snap) + 1,
        "{:?}",
        w.sim.stats().requests_by_endpoint
    );
    // And everything is linked: an unchanged run writes nothing.
    w.shop.reset_stats(SHOP);
    w.run(SyncKind::Full).await;
    assert_eq!(w.stats(), ShopStats::default());
}

#[tokio::test]
async fn two_runs_of_one_connection_never_overlap() {
    let w = world(100, on()).await;
    // The first run is held inside its first shop write until the second has been tried.
    // A shop whose first category write waits for a signal (a run caught mid-way).
    let entered = Arc::new(tokio::sync::Notify::new());
    let release = Arc::new(tokio::sync::Notify::new());
    let (on_enter, on_release) = (entered.clone(), release.clone());
    let holding = Arc::new(
        HookedCatalog::new(w.deps.shop.clone()).before(move |op, n| {
            let hold = op == CatalogOp::UpsertCategories && n == 0;
            let (on_enter, on_release) = (on_enter.clone(), on_release.clone());
            async move {
                if hold {
                    on_enter.notify_one();
                    on_release.notified().await;
                }
                Ok(())
            }
        }),
    );
    let held = Engine::new(
        Deps {
            shop: holding.clone(),
            ..w.deps.clone()
        },
        Config {
            safety: Duration::from_millis(100),
            ..Config::default()
        },
    );
    let job = kit::job(CONN, SyncKind::Full, false);
    let merchant = SyncJob {
        requested_by: store::RequestedBy::Merchant,
        run_id: Some("merchant-run".into()),
        kind: SyncKind::Prices,
        ..job.clone()
    };
    let (a, b) = tokio::join!(
        held.run_job(&job, None, Instant::now() + Duration::from_secs(60)),
        async {
            entered.notified().await;
            let b = w
                .engine
                .run_job(&merchant, None, Instant::now() + Duration::from_secs(60))
                .await;
            release.notify_one();
            b
        }
    );
    assert!(completed(&a.unwrap()));
    assert_eq!(b.unwrap(), JobOutcome::Busy);
    let skipped = w
        .table
        .get_run(CONN, "merchant-run")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(skipped.state, "skipped");
    assert!(skipped.message.unwrap().contains("in progress"));
    let runs = w.table.list_runs(CONN, 10).await.unwrap();
    assert_eq!(runs.iter().filter(|r| r.state == "completed").count(), 1);
}

#[tokio::test]
async fn dry_run_previews_a_policy_change_without_writing() {
    let w = world(100, Settings::default()).await;
    // Before the merchant turns anything on: the preview of proposed settings.
    let proposed = Settings {
        new_products: NewProductPolicy::Publish,
        ..on()
    };
    let dry = SyncJob {
        requested_by: store::RequestedBy::Merchant,
        run_id: Some("preview-1".into()),
        ..kit::job(CONN, SyncKind::Full, true)
    };
    let (out, run) = w.run_job(&dry, Some(proposed.clone())).await;
    assert!(completed(&out));
    assert!(run.dry_run);
    let snap = w.snap();
    let traps = trapped(&snap);
    let expected = active(&snap)
        .into_iter()
        .filter(|i| !traps.contains(i))
        .count() as u64;
    assert_eq!(count(&run, "create"), expected);
    assert_eq!(count(&run, "ambiguous"), traps.len() as u64);
    assert_eq!(count(&run, "category_create"), snap.categories.len() as u64);
    assert_eq!(run.samples["create"].len(), 5);
    assert_eq!(w.stats(), ShopStats::default(), "nothing written");
    assert!(
        store::LinkStore::products_page(w.table.as_ref(), CONN, None, 10)
            .await
            .unwrap()
            .0
            .is_empty(),
        "no links"
    );

    // After a real sync with "missing: nothing", preview switching to "hide".
    w.settings(Settings {
        missing_products: MissingProductPolicy::Nothing,
        ..on()
    })
    .await;
    w.run(SyncKind::Full).await;
    let ids: Vec<i64> = active(&snap)
        .into_iter()
        .filter(|i| !traps.contains(i))
        .take(3)
        .collect();
    for id in &ids {
        w.mutate(CatalogMutation::Archive { product_id: *id });
    }
    w.shop.reset_stats(SHOP);
    let dry = SyncJob {
        requested_by: store::RequestedBy::Merchant,
        run_id: Some("preview-2".into()),
        ..kit::job(CONN, SyncKind::Full, true)
    };
    let (_, run) = w
        .run_job(
            &dry,
            Some(Settings {
                missing_products: MissingProductPolicy::Hide,
                ..on()
            }),
        )
        .await;
    assert_eq!(count(&run, "hide"), 3);
    assert_eq!(count(&run, "unchanged"), expected - 3);
    assert_eq!(w.stats(), ShopStats::default());
    let (_, real) = w.run(SyncKind::Full).await;
    assert_eq!(
        count(&real, "hide"),
        0,
        "the saved policy is still 'nothing'"
    );
    // A dry price sync counts without writing either.
    w.mutate(CatalogMutation::ChangePricesPercent {
        share: 0.2,
        seed: 5,
    });
    let (_, run) = w
        .run_job(&kit::job(CONN, SyncKind::Prices, true), None)
        .await;
    assert!(count(&run, "price_changed") > 0);
    assert_eq!(w.stats().price_changes, 0);
}

#[tokio::test]
async fn price_sync_writes_only_changed_prices_and_availability() {
    let w = world(300, on()).await;
    w.run(SyncKind::Full).await;
    let snap = w.snap();
    let traps = trapped(&snap);
    let linked_offers: Vec<_> = snap
        .offers
        .iter()
        .filter(|o| !o.is_archived && !traps.contains(&o.product_id))
        .cloned()
        .collect();
    w.mutate(CatalogMutation::ChangePricesPercent {
        share: 0.05,
        seed: 9,
    });
    let after = w.snap();
    let changed: HashSet<i64> = after
        .offers
        .iter()
        .filter(|o| {
            linked_offers
                .iter()
                .any(|l| l.id == o.id && l.price != o.price)
        })
        .map(|o| o.id)
        .collect();
    let in_stock = linked_offers
        .iter()
        .find(|o| o.quantity - o.in_reserve > 0 && !changed.contains(&o.id))
        .unwrap()
        .clone();
    w.mutate(CatalogMutation::SetStock {
        offer_id: in_stock.id,
        quantity: 0,
    });

    w.shop.reset_stats(SHOP);
    w.sim.reset_stats();
    let (out, run) = w.run(SyncKind::Prices).await;
    assert!(completed(&out));
    let s = w.stats();
    assert_eq!(s.price_changes as usize, changed.len() + 1, "{s:?}");
    assert_eq!(
        (s.products_created, s.products_updated, s.state_changes),
        (0, 0, 0)
    );
    assert_eq!(count(&run, "price_changed") as usize, changed.len() + 1);
    let st = w.sim.stats();
    assert_eq!(
        st.endpoint("GET /offers/stocks") as usize,
        linked_offers.len().div_ceil(50),
        "50 offers a request"
    );
    assert_eq!(st.rate_limited_429, 0);
    let p = w.for_keycrm(in_stock.product_id).unwrap();
    assert!(
        !p.variants
            .iter()
            .find(|v| v.sku.as_deref() == Some(in_stock.sku.as_str()))
            .unwrap()
            .available
    );
    // Nothing new: nothing written.
    w.shop.reset_stats(SHOP);
    let (_, run) = w.run(SyncKind::Prices).await;
    assert_eq!(w.stats().price_changes, 0);
    assert_eq!(count(&run, "unchanged") as usize, linked_offers.len());
}

#[tokio::test]
async fn schedules_fan_out_per_connection_and_resume_paused_runs() {
    let w = world(60, on()).await;
    let (q, _) = emulator::queue(None).await;
    let q = Arc::new(q);
    let mut c2 = w.table.get(CONN).await.unwrap().unwrap();
    c2.id = "conn-2".into();
    c2.shop_id = "shop-2".into();
    c2.active = false;
    w.table.create(&c2).await.unwrap();
    let engine = Engine::new(
        Deps {
            jobs: q.clone(),
            ..w.deps.clone()
        },
        Config {
            safety: Duration::from_millis(100),
            max_units: Some(1),
            ..Config::default()
        },
    );
    let fan = engine.on_schedule(ScheduleKind::Full).await.unwrap();
    assert_eq!(
        (fan.enqueued, fan.skipped),
        (1, 1),
        "the inactive connection is skipped"
    );
    let msgs = q
        .receive(10, Duration::from_secs(1), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(msgs.len(), 1);
    let tick = msgs[0].body.clone();
    let m: JobMessage = serde_json::from_str(&tick).unwrap();
    assert_eq!(
        (m.job.connection_id.as_str(), m.job.kind),
        (CONN, SyncKind::Full)
    );
    q.delete(&msgs[0].receipt).await.unwrap();
    let out = engine
        .on_message(&tick, Instant::now() + Duration::from_secs(30))
        .await
        .unwrap();
    assert!(
        matches!(out, JobOutcome::Paused { .. }),
        "one unit per invocation here: {out:?}"
    );
    // The resume tick finds the paused run and enqueues it.
    let again = engine.on_schedule(ScheduleKind::Resume).await.unwrap();
    assert_eq!(again.enqueued, 1);
    let msgs = q
        .receive(10, Duration::from_secs(1), Duration::from_secs(30))
        .await
        .unwrap();
    let m: JobMessage = serde_json::from_str(&msgs[0].body).unwrap();
    assert_eq!(m.job.requested_by, "resume");
    let (out, run) = w.run_job(&m.job, None).await;
    assert!(completed(&out));
    assert_eq!(
        Some(run.run_id.clone()),
        serde_json::from_str::<JobMessage>(&tick)
            .unwrap()
            .job
            .run_id
    );
    // The same tick delivered again (a retry) is not a second run.
    // A resume job for a run that has finished meanwhile starts nothing.
    let late = w
        .engine
        .on_message(&msgs[0].body, Instant::now() + Duration::from_secs(30))
        .await
        .unwrap();
    assert!(matches!(late, JobOutcome::Skipped { .. }), "{late:?}");
    let dup = w
        .engine
        .on_message(&tick, Instant::now() + Duration::from_secs(30))
        .await
        .unwrap();
    assert!(matches!(dup, JobOutcome::Skipped { .. }), "{dup:?}");
    assert!(matches!(
        w.engine
            .on_message("not json", Instant::now())
            .await
            .unwrap(),
        JobOutcome::Skipped { .. }
    ));
}
