//! Realtime stock benchmark (figures go to BENCHMARKS.md, section "Realtime stock").
//!
//! `cargo bench -p e2e-tests --bench stock_apply`
//!
//! One shop linked to 20,000 KeyCRM offers; 10,000 stock changes spread over an hour of
//! simulated time in bursts (single sales, stock documents of tens to hundreds of offers, one
//! import of 1,000). The KeyCRM simulator enforces 60 requests a minute on a compressed clock
//! and fires its stock webhook at the real receiver (served on loopback); the receiver records
//! signals and schedules windows on in-memory stores and queues; stock-apply flushes them
//! through the real KeyCRM client and the shared rate gate (same clock) into an in-memory shop
//! that timestamps every availability write. Printed:
//!
//! - KeyCRM requests against the offers read (one per 50 expected, plus at most one per window);
//! - 429s;
//! - shop writes against the availability flips in KeyCRM, writes that changed nothing, and
//!   variants left wrong at the end;
//! - time from a stock change in KeyCRM to the shop's availability (simulated seconds).
//!
//! Environment: `BENCH_TIME_SCALE` (default 60: a KeyCRM minute lasts one second),
//! `BENCH_OFFERS` (20000), `BENCH_CHANGES` (10000), `BENCH_SEED` (7).

use async_trait::async_trait;
use keycrm::{ClientConfig, LocalRateGate, RateBudget};
use keycrm_sim::{AccountSpec, SimConfig, StockWebhook};
use mapping::catalog::{ProductLink, VariantLink};
use mapping::Settings;
use queue::{MemoryQueue, Queue};
use runtime::KeycrmClients;
use shop::{
    CategoryStateChange, CategoryUpsert, MemoryShop, ProductStateChange, ProductUpsert,
    ShopCatalog, ShopCategory, ShopError, ShopProduct, ShopVariant, UpsertResult,
    VariantPriceChange,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use stock_apply::{
    ConsumerOptions, FlushConfig, Flusher, KeycrmStock, RetryPolicy, SourceError, StockApplier,
    StockSource,
};
use store::{
    tokens, Connection, ConnectionStore, LinkStore, MemoryConnections, MemoryJournal, MemoryLinks,
    MemorySecrets, MemoryStock, SecretStore, StatusJournal, StockStore, StockWindow, StoreError,
    WebhookGenerations, WebhookKind, WebhookTokens,
};

const KEY: &str = "bench-key";
const CONN: &str = "bench-conn";
const SHOP: &str = "bench-shop";
const HOUR: f64 = 3600.0;

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A tiny deterministic generator (xorshift) for the workload.
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() % 1_000_000) as f64 / 1e6 < p
    }
}

/// The shop, timestamping every availability write per variant.
struct RecordingShop {
    inner: MemoryShop,
    started: Instant,
    writes: Mutex<HashMap<String, Vec<(f64, bool)>>>,
}

#[async_trait]
impl ShopCatalog for RecordingShop {
    async fn products_page(
        &self,
        shop_id: &str,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<(Vec<ShopProduct>, Option<String>), ShopError> {
        self.inner.products_page(shop_id, cursor, limit).await
    }
    async fn upsert_products(
        &self,
        shop_id: &str,
        batch: &[ProductUpsert],
    ) -> Result<Vec<UpsertResult>, ShopError> {
        self.inner.upsert_products(shop_id, batch).await
    }
    async fn set_product_states(
        &self,
        shop_id: &str,
        changes: &[ProductStateChange],
    ) -> Result<(), ShopError> {
        self.inner.set_product_states(shop_id, changes).await
    }
    async fn set_variant_prices(
        &self,
        shop_id: &str,
        changes: &[VariantPriceChange],
    ) -> Result<(), ShopError> {
        self.inner.set_variant_prices(shop_id, changes).await?;
        let at = self.started.elapsed().as_secs_f64();
        let mut w = self.writes.lock().unwrap();
        for c in changes {
            if let Some(a) = c.available {
                w.entry(c.variant_id.clone()).or_default().push((at, a));
            }
        }
        Ok(())
    }
    async fn categories(&self, shop_id: &str) -> Result<Vec<ShopCategory>, ShopError> {
        self.inner.categories(shop_id).await
    }
    async fn set_category_states(
        &self,
        shop_id: &str,
        changes: &[CategoryStateChange],
    ) -> Result<(), ShopError> {
        self.inner.set_category_states(shop_id, changes).await
    }
    async fn upsert_categories(
        &self,
        shop_id: &str,
        batch: &[CategoryUpsert],
    ) -> Result<Vec<(String, String)>, ShopError> {
        self.inner.upsert_categories(shop_id, batch).await
    }
}

/// Counts the offers each KeyCRM read carried.
struct CountingSource {
    inner: KeycrmStock,
    requests: AtomicU64,
    offers: AtomicU64,
}

#[async_trait]
impl StockSource for CountingSource {
    async fn available(
        &self,
        conn: &Connection,
        offers: &[i64],
    ) -> Result<HashMap<i64, bool>, SourceError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.offers
            .fetch_add(offers.len() as u64, Ordering::Relaxed);
        self.inner.available(conn, offers).await
    }
}

/// The in-memory stock store, counting the windows flushes took.
struct CountingStock {
    inner: MemoryStock,
    windows: AtomicU64,
}

#[async_trait]
impl StockStore for CountingStock {
    async fn add_pending(&self, conn: &str, offers: &[i64]) -> Result<(), StoreError> {
        self.inner.add_pending(conn, offers).await
    }
    async fn pending(&self, conn: &str) -> Result<Vec<i64>, StoreError> {
        self.inner.pending(conn).await
    }
    async fn in_flight(&self, conn: &str) -> Result<Vec<i64>, StoreError> {
        self.inner.in_flight(conn).await
    }
    async fn begin(&self, conn: &str, offers: &[i64]) -> Result<(), StoreError> {
        self.inner.begin(conn, offers).await
    }
    async fn finish(&self, conn: &str, offers: &[i64]) -> Result<(), StoreError> {
        self.inner.finish(conn, offers).await
    }
    async fn window(&self, conn: &str) -> Result<Option<StockWindow>, StoreError> {
        self.inner.window(conn).await
    }
    async fn schedule_window(
        &self,
        conn: &str,
        id: &str,
        until_ms: i64,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        self.inner.schedule_window(conn, id, until_ms, now_ms).await
    }
    async fn take_window(
        &self,
        conn: &str,
        id: &str,
        holder: &str,
        until_ms: i64,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let taken = self
            .inner
            .take_window(conn, id, holder, until_ms, now_ms)
            .await?;
        if taken {
            self.windows.fetch_add(1, Ordering::Relaxed);
        }
        Ok(taken)
    }
    async fn renew_window(
        &self,
        conn: &str,
        holder: &str,
        until_ms: i64,
    ) -> Result<bool, StoreError> {
        self.inner.renew_window(conn, holder, until_ms).await
    }
    async fn park_window(
        &self,
        conn: &str,
        holder: &str,
        until_ms: i64,
    ) -> Result<bool, StoreError> {
        self.inner.park_window(conn, holder, until_ms).await
    }
    async fn end_window(&self, conn: &str, holder: &str) -> Result<(), StoreError> {
        self.inner.end_window(conn, holder).await
    }
    async fn last_written(
        &self,
        conn: &str,
        offers: &[i64],
    ) -> Result<HashMap<i64, bool>, StoreError> {
        self.inner.last_written(conn, offers).await
    }
    async fn record_written(&self, conn: &str, written: &[(i64, bool)]) -> Result<(), StoreError> {
        self.inner.record_written(conn, written).await
    }
}

/// KeyCRM's side as the benchmark models it: per offer, main-warehouse (on hand, reserved)
/// and the rest of the warehouses, to know the true availability after every change.
#[derive(Clone, Copy)]
struct Truth {
    q1: i64,
    r1: i64,
    q_other: i64,
    r_other: i64,
}

impl Truth {
    fn available(&self) -> bool {
        self.q1 + self.q_other - self.r1 - self.r_other > 0
    }
    fn set_main(&mut self, q: i64) {
        self.q1 = q;
        self.r1 = self.r1.min(q.max(0));
    }
}

/// One burst: at simulated second `at`, set these main-warehouse quantities.
struct Burst {
    at: f64,
    items: Vec<(i64, i64)>,
}

fn workload(offers: &[i64], changes: usize, dice: &mut Dice) -> Vec<Burst> {
    let mut bursts = Vec::new();
    let mut left = changes;
    // one import of 1,000 offers a quarter into the hour
    let import = 1000.min(left / 4);
    let mut sizes = vec![import];
    left -= import;
    // stock documents (receipts, transfers, inventory) and single sales
    while left > 0 {
        let size = if dice.chance(0.3) {
            (20 + dice.below(280)) as usize
        } else {
            (1 + dice.below(3)) as usize
        }
        .min(left);
        sizes.push(size);
        left -= size;
    }
    let n = sizes.len();
    for (i, size) in sizes.into_iter().enumerate() {
        // spread over the hour, the import at 15 min, the rest evenly with jitter
        let at = if i == 0 {
            HOUR / 4.0
        } else {
            let slot = HOUR / n as f64;
            (i as f64 * slot + dice.below((slot * 1000.0) as u64) as f64 / 1000.0).min(HOUR - 1.0)
        };
        let mut items = Vec::with_capacity(size);
        let mut seen = std::collections::HashSet::new();
        while items.len() < size {
            let o = offers[dice.below(offers.len() as u64) as usize];
            if !seen.insert(o) {
                continue;
            }
            let q = if dice.chance(0.35) {
                0
            } else {
                1 + dice.below(40) as i64
            };
            items.push((o, q));
        }
        bursts.push(Burst { at, items });
    }
    bursts.sort_by(|a, b| a.at.total_cmp(&b.at));
    bursts
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(run());
}

async fn run() {
    let scale: f64 = env("BENCH_TIME_SCALE", 60.0);
    let want_offers: usize = env("BENCH_OFFERS", 20_000);
    let changes: usize = env("BENCH_CHANGES", 10_000);
    let seed: u64 = env("BENCH_SEED", 7);
    // About 1.5 offers a product.
    let products = want_offers * 2 / 3 + want_offers / 20;
    let sim = keycrm_sim::start(
        SimConfig {
            accounts: vec![AccountSpec {
                api_key: KEY.into(),
                seed,
                products,
                pipelines_enabled: false,
            }],
            rate_limit_per_minute: 60,
            time_scale: scale,
            public_base_url: None,
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .expect("simulator");
    let snapshot = sim.catalog(KEY);
    let chosen: Vec<_> = snapshot
        .offers
        .iter()
        .filter(|o| !o.is_archived)
        .take(want_offers)
        .cloned()
        .collect();
    assert_eq!(chosen.len(), want_offers, "raise the product count");

    // The shop and the links, as a first catalog sync would leave them.
    let started = Instant::now();
    let shop = Arc::new(RecordingShop {
        inner: MemoryShop::new(),
        started,
        writes: Mutex::new(HashMap::new()),
    });
    let links = Arc::new(MemoryLinks::new());
    let mut truth: HashMap<i64, Truth> = HashMap::new();
    let mut by_product: BTreeMap<i64, Vec<&keycrm_sim::OfferInfo>> = BTreeMap::new();
    for o in &chosen {
        by_product.entry(o.product_id).or_default().push(o);
        let main = o.stocks.iter().find(|s| s.warehouse_id == 1);
        let (q1, r1) = main.map(|s| (s.quantity, s.reserve)).unwrap_or((0, 0));
        truth.insert(
            o.id,
            Truth {
                q1,
                r1,
                q_other: o.quantity - q1,
                r_other: o.in_reserve - r1,
            },
        );
    }
    let mut all_links = Vec::new();
    for (p, offers) in &by_product {
        let variants: Vec<VariantLink> = offers
            .iter()
            .map(|o| VariantLink {
                offer_id: o.id,
                shop_id: format!("v{}", o.id),
                hash: 1,
                price: None,
                available: Some(truth[&o.id].available()),
                gone: false,
            })
            .collect();
        shop.inner.add_product(
            SHOP,
            ShopProduct {
                id: format!("p{p}"),
                name: format!("P{p}"),
                visible: true,
                available: true,
                variants: variants
                    .iter()
                    .map(|v| ShopVariant {
                        id: v.shop_id.clone(),
                        available: v.available.unwrap_or(false),
                        ..ShopVariant::default()
                    })
                    .collect(),
                ..ShopProduct::default()
            },
        );
        all_links.push(ProductLink {
            keycrm_id: *p,
            shop_id: format!("p{p}"),
            hash: 1,
            swept: None,
            variants,
        });
    }
    links.put_products(CONN, &all_links).await.unwrap();

    // The connection, its key and the shared budget on the simulator's clock.
    let key = keycrm::ApiKey::new(KEY);
    let secrets = Arc::new(MemorySecrets::default());
    secrets.put("bench/secret", &key).await.unwrap();
    let token_key = tokens::TokenKey::generate();
    let token = tokens::derive(&token_key, CONN, WebhookKind::Stock, 1);
    let conns = Arc::new(MemoryConnections::default());
    conns
        .create(&Connection {
            id: CONN.into(),
            shop_id: SHOP.into(),
            active: true,
            keycrm_base_url: sim.base_url(),
            key_mask: key.masked(),
            key_fingerprint: key.fingerprint(),
            secret_name: "bench/secret".into(),
            settings: Settings {
                sync_products: true,
                realtime_stock: true,
                ..Settings::default()
            },
            webhook_tokens: WebhookTokens::default(),
            webhook_generations: WebhookGenerations {
                stock: 1,
                ..WebhookGenerations::default()
            },
            account_epoch: 0,
            account_switched_at: None,
            version: 1,
            created_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
        })
        .await
        .unwrap();
    let clients = Arc::new(KeycrmClients::new(
        secrets,
        Arc::new(LocalRateGate::new(RateBudget::keycrm_scaled(scale))),
        ClientConfig::with_base_url(sim.base_url()),
    ));
    let config = FlushConfig {
        window: Duration::from_secs_f64(10.0 / scale),
        grace: Duration::from_secs_f64(60.0 / scale),
        lease: Duration::from_secs_f64(150.0 / scale),
        budget: Duration::from_secs_f64(90.0 / scale),
    };
    let stock = Arc::new(CountingStock {
        inner: MemoryStock::new(),
        windows: AtomicU64::new(0),
    });
    let journal = Arc::new(MemoryJournal::default());
    let flushes = Arc::new(MemoryQueue::new("stock-flushes"));
    let receiver = webhook::Receiver::new(
        conns.clone(),
        Arc::new(MemoryQueue::new("status")),
        journal.clone(),
        token_key,
    )
    .with_stock(webhook::StockIntake::new(
        stock.clone(),
        flushes.clone(),
        journal.clone(),
        config,
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/v1/webhooks/keycrm/{CONN}/{token}",
        listener.local_addr().unwrap()
    );
    let app = webhook::router(Arc::new(receiver));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let source = Arc::new(CountingSource {
        inner: KeycrmStock { clients },
        requests: AtomicU64::new(0),
        offers: AtomicU64::new(0),
    });
    let applier = Arc::new(StockApplier::new(
        Flusher::new(
            conns,
            stock.clone(),
            links,
            shop.clone(),
            source.clone(),
            journal.clone(),
            flushes.clone(),
            config,
        ),
        RetryPolicy::default(),
    ));
    let consumer = tokio::spawn(stock_apply::run_queue_consumer(
        applier,
        flushes.clone() as Arc<dyn Queue>,
        None,
        ConsumerOptions {
            batch: 10,
            wait: Duration::from_millis(20),
            visibility: Duration::from_secs(30),
        },
        std::future::pending(),
    ));
    sim.set_stock_webhooks(
        KEY,
        vec![StockWebhook {
            name: "shop".into(),
            url,
            warehouses: vec![],
        }],
    );

    // The hour of changes.
    let mut dice = Dice(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let ids: Vec<i64> = chosen.iter().map(|o| o.id).collect();
    let bursts = workload(&ids, changes, &mut dice);
    let mut events: Vec<(f64, i64, bool)> = Vec::new(); // (simulated at, offer, available after)
    let mut flips = 0u64;
    sim.reset_stats();
    let t0 = Instant::now();
    let origin = started.elapsed().as_secs_f64();
    println!(
        "realtime stock: {} offers linked, {changes} changes in {} bursts over {:.0} simulated minutes (clock x{scale})",
        chosen.len(),
        bursts.len(),
        HOUR / 60.0
    );
    for b in &bursts {
        let due = Duration::from_secs_f64(b.at / scale);
        if let Some(wait) = due.checked_sub(t0.elapsed()) {
            tokio::time::sleep(wait).await;
        }
        let at = (started.elapsed().as_secs_f64() - origin) * scale;
        sim.put_stocks(KEY, 1, &b.items).unwrap();
        for (o, q) in &b.items {
            let t = truth.get_mut(o).unwrap();
            let before = t.available();
            t.set_main(*q);
            let after = t.available();
            if before != after {
                flips += 1;
            }
            events.push((at, *o, after));
        }
    }
    // Let the last windows drain.
    let deadline = Instant::now() + Duration::from_secs_f64(600.0 / scale + 30.0);
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let idle = stock.pending(CONN).await.unwrap().is_empty()
            && stock.in_flight(CONN).await.unwrap().is_empty()
            && stock.window(CONN).await.unwrap().is_none()
            && flushes.approximate_len().await.unwrap() == 0;
        if idle || Instant::now() > deadline {
            break;
        }
    }
    consumer.abort();
    let wall = t0.elapsed();

    // Figures.
    let stats = sim.stats();
    let requests = source.requests.load(Ordering::Relaxed);
    let offers_read = source.offers.load(Ordering::Relaxed);
    let windows = stock.windows.load(Ordering::Relaxed);
    let writes = shop.writes.lock().unwrap().clone();
    let shop_writes: usize = writes.values().map(Vec::len).sum();
    // A write that set what the variant already had would be a wasted write.
    let mut state: HashMap<String, bool> = chosen
        .iter()
        .map(|o| (format!("v{}", o.id), o.quantity - o.in_reserve > 0))
        .collect();
    let mut all_writes: Vec<(f64, String, bool)> = writes
        .iter()
        .flat_map(|(v, w)| w.iter().map(move |(t, a)| (*t, v.clone(), *a)))
        .collect();
    all_writes.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut wasted = 0;
    for (_, v, a) in &all_writes {
        if state.insert(v.clone(), *a) == Some(*a) {
            wasted += 1;
        }
    }
    let wrong = truth
        .iter()
        .filter(|(o, t)| state.get(&format!("v{o}")).copied() != Some(t.available()))
        .count();
    // Change-to-shop latency: for each change that left the offer's availability different
    // from what the shop showed, and that no later change of the offer undid before it was
    // written, the first write of that value at or after the change.
    let initial: HashMap<i64, bool> = chosen
        .iter()
        .map(|o| (o.id, o.quantity - o.in_reserve > 0))
        .collect();
    let mut latencies = Vec::new();
    let mut superseded = 0;
    let mut by_offer: HashMap<i64, Vec<(f64, bool)>> = HashMap::new();
    for (at, o, a) in &events {
        by_offer.entry(*o).or_default().push((*at, *a));
    }
    for (o, evs) in &by_offer {
        let w: Vec<(f64, bool)> = writes
            .get(&format!("v{o}"))
            .map(|w| w.iter().map(|(t, a)| ((t - origin) * scale, *a)).collect())
            .unwrap_or_default();
        for (i, (at, a)) in evs.iter().enumerate() {
            let next_change = evs.get(i + 1).map(|e| e.0).unwrap_or(f64::INFINITY);
            // the shop's value just before this change
            let shown = w
                .iter()
                .rev()
                .find(|(t, _)| t < at)
                .map(|x| x.1)
                .unwrap_or_else(|| initial.get(o).copied().unwrap_or(false));
            if shown == *a {
                continue;
            }
            match w.iter().find(|(t, v)| t >= at && *v == *a) {
                Some((t, _)) if *t <= next_change || evs[i + 1..].iter().all(|e| e.1 == *a) => {
                    latencies.push(t - at)
                }
                _ => superseded += 1,
            }
        }
    }
    latencies.sort_by(f64::total_cmp);

    println!();
    println!("| offers linked | changes (bursts) | availability flips | offers read (distinct per window) | windows | KeyCRM requests | requests per 50 offers read | (requests - windows) per 50 offers read | 429s |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let per50 = offers_read as f64 / 50.0;
    println!(
        "| {} | {} ({}) | {} | {} | {} | {} | {:.2} | {:.2} | {} |",
        chosen.len(),
        events.len(),
        bursts.len(),
        flips,
        offers_read,
        windows,
        requests,
        requests as f64 / per50,
        (requests as f64 - windows as f64) / per50,
        stats.rate_limited_429
    );
    println!();
    println!("| shop writes | of which changed nothing | variants wrong at the end | changes measured | superseded before written | latency p50 | p90 | p99 | max |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {} | {} | {} | {} | {:.1} s | {:.1} s | {:.1} s | {:.1} s |",
        shop_writes,
        wasted,
        wrong,
        latencies.len(),
        superseded,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.9),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or(f64::NAN)
    );
    let st = journal.status(CONN).await.unwrap();
    println!();
    println!(
        "journal: {:?}; webhooks delivered {} of {} attempts; wall {:.1} s at x{scale}",
        st.counters,
        stats.webhooks_delivered,
        stats.webhook_attempts,
        wall.as_secs_f64()
    );
}
