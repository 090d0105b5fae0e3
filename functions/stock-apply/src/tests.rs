//! The flush with in-memory adapters and a stock source under the test's control.

use crate::*;
use async_trait::async_trait;
use mapping::catalog::{ProductLink, VariantLink};
use mapping::Settings;
use queue::{MemoryQueue, Queue};
use shop::{MemoryShop, ShopProduct, ShopVariant};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use store::{
    Connection, ConnectionStore, LinkStore, MemoryConnections, MemoryJournal, MemoryLinks,
    MemoryStock, StatusJournal, StockStore, WebhookTokens,
};

const CONN: &str = "c0ffee";
const SHOP: &str = "shop-1";

/// KeyCRM's stock as the test sets it; counts requests; can fail or run a hook mid-read.
#[derive(Default)]
struct FakeSource {
    available: Mutex<HashMap<i64, bool>>,
    requests: AtomicU64,
    fail: Mutex<Option<fn() -> SourceError>>,
    /// Fails from this request on (1-based).
    fail_from: AtomicU64,
    during: Mutex<Option<Box<dyn Fn() + Send + Sync>>>,
    /// A slow KeyCRM: each read takes this long.
    delay: Mutex<Option<Duration>>,
}

#[async_trait]
impl StockSource for FakeSource {
    async fn available(
        &self,
        _conn: &Connection,
        offers: &[i64],
    ) -> Result<HashMap<i64, bool>, SourceError> {
        assert!(offers.len() <= 50, "at most 50 offers a request");
        let n = self.requests.fetch_add(1, Ordering::SeqCst) + 1;
        let from = self.fail_from.load(Ordering::SeqCst);
        if let Some(f) = *self.fail.lock().unwrap() {
            if from == 0 || n >= from {
                return Err(f());
            }
        }
        if let Some(hook) = self.during.lock().unwrap().as_ref() {
            hook();
        }
        let delay = *self.delay.lock().unwrap();
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        let a = self.available.lock().unwrap();
        Ok(offers
            .iter()
            .filter_map(|o| a.get(o).map(|v| (*o, *v)))
            .collect())
    }
}

struct World {
    conns: Arc<MemoryConnections>,
    stock: Arc<MemoryStock>,
    links: Arc<MemoryLinks>,
    shop: Arc<MemoryShop>,
    source: Arc<FakeSource>,
    journal: Arc<MemoryJournal>,
    flushes: Arc<MemoryQueue>,
    applier: StockApplier,
}

fn settings() -> Settings {
    Settings {
        sync_products: true,
        realtime_stock: true,
        ..Settings::default()
    }
}

/// `products` linked products with `per` variants each (offers `1000 + 10·p + v`), all
/// available in the shop and in the links.
async fn world(products: i64, per: i64, config: FlushConfig, retry: RetryPolicy) -> World {
    let conns = Arc::new(MemoryConnections::default());
    let now = chrono::Utc::now();
    conns
        .create(&Connection {
            id: CONN.into(),
            shop_id: SHOP.into(),
            active: true,
            keycrm_base_url: "http://127.0.0.1:1/v1".into(),
            key_mask: "••••".into(),
            key_fingerprint: "fp".into(),
            secret_name: "s".into(),
            settings: settings(),
            webhook_tokens: WebhookTokens::default(),
            webhook_generations: Default::default(),
            account_epoch: 0,
            account_switched_at: None,
            version: 1,
            created_at: now,
            updated_at: now,
        })
        .await
        .unwrap();
    let links = Arc::new(MemoryLinks::new());
    let shop = Arc::new(MemoryShop::new());
    let source = Arc::new(FakeSource::default());
    let mut all = Vec::new();
    for p in 0..products {
        let k = 100 + p;
        let variants: Vec<i64> = (0..per).map(|v| 1000 + 10 * p + v).collect();
        shop.add_product(
            SHOP,
            ShopProduct {
                id: format!("sp{k}"),
                name: format!("P{k}"),
                visible: true,
                available: true,
                variants: variants
                    .iter()
                    .map(|o| ShopVariant {
                        id: format!("sv{o}"),
                        available: true,
                        ..ShopVariant::default()
                    })
                    .collect(),
                ..ShopProduct::default()
            },
        );
        all.push(ProductLink {
            keycrm_id: k,
            shop_id: format!("sp{k}"),
            hash: 1,
            swept: None,
            variants: variants
                .iter()
                .map(|o| VariantLink {
                    offer_id: *o,
                    shop_id: format!("sv{o}"),
                    hash: 1,
                    price: None,
                    available: Some(true),
                    gone: false,
                })
                .collect(),
        });
        let mut a = source.available.lock().unwrap();
        for o in variants {
            a.insert(o, true);
        }
    }
    links.put_products(CONN, &all).await.unwrap();
    let stock = Arc::new(MemoryStock::new());
    let journal = Arc::new(MemoryJournal::default());
    let flushes = Arc::new(MemoryQueue::new("stock-flushes"));
    let flusher = Flusher::new(
        conns.clone(),
        stock.clone(),
        links.clone(),
        shop.clone(),
        source.clone(),
        journal.clone(),
        flushes.clone(),
        config,
    );
    World {
        conns,
        stock,
        links,
        shop,
        source,
        journal,
        flushes,
        applier: StockApplier::new(flusher, retry),
    }
}

fn fast() -> FlushConfig {
    FlushConfig {
        window: Duration::from_millis(50),
        grace: Duration::from_secs(5),
        lease: Duration::from_secs(5),
        budget: Duration::from_secs(30),
    }
}

impl World {
    fn set(&self, offer: i64, available: bool) {
        self.source
            .available
            .lock()
            .unwrap()
            .insert(offer, available);
    }

    /// Signals offers like the receiver does; returns the scheduled message body.
    async fn signal(&self, offers: &[i64]) -> Option<String> {
        self.stock.add_pending(CONN, offers).await.unwrap();
        let before = self.flushes.bodies().len();
        schedule(
            self.stock.as_ref(),
            self.flushes.as_ref(),
            CONN,
            Duration::ZERO,
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        let bodies = self.flushes.bodies();
        (bodies.len() > before).then(|| bodies[bodies.len() - 1].clone())
    }

    /// Receives and handles every due flush message once.
    async fn drain(&self) -> Vec<Disposition> {
        let mut out = Vec::new();
        let msgs = self
            .flushes
            .receive(10, Duration::from_millis(100), Duration::from_secs(30))
            .await
            .unwrap();
        for m in msgs {
            let d = self.applier.handle_message(&m.body, m.receive_count).await;
            if d == Disposition::Done {
                self.flushes.delete(&m.receipt).await.unwrap();
            }
            out.push(d);
        }
        out
    }

    fn variant(&self, offer: i64) -> bool {
        let p = (offer - 1000) / 10 + 100;
        self.shop
            .product(SHOP, &format!("sp{p}"))
            .and_then(|p| {
                p.variants
                    .iter()
                    .find(|v| v.id == format!("sv{offer}"))
                    .map(|v| v.available)
            })
            .expect("variant")
    }

    async fn link_available(&self, offer: i64) -> Option<bool> {
        let p = (offer - 1000) / 10 + 100;
        let l = self.links.get_products(CONN, &[p]).await.unwrap();
        l[0].variants
            .iter()
            .find(|v| v.offer_id == offer)
            .and_then(|v| v.available)
    }

    async fn counter(&self, name: &str) -> u64 {
        let st = self.journal.status(CONN).await.unwrap();
        st.counters.get(name).copied().unwrap_or(0)
    }

    fn requests(&self) -> u64 {
        self.source.requests.load(Ordering::SeqCst)
    }
}

#[tokio::test]
async fn a_window_reads_50_offers_a_request_and_writes_only_what_changed() {
    let w = world(60, 2, fast(), RetryPolicy::default()).await; // 120 offers
    let offers: Vec<i64> = (0..60)
        .flat_map(|p| [1000 + 10 * p, 1001 + 10 * p])
        .collect();
    for o in offers.iter().step_by(7) {
        w.set(*o, false);
    }
    let changed = offers.iter().step_by(7).count() as u64;
    let mut signalled = offers.clone();
    signalled.extend([5, 6, 7, 8, 9]); // not linked
    assert!(w.signal(&signalled).await.is_some());
    // the rest of the burst in the same window schedules nothing more
    assert!(w.signal(&offers[..10]).await.is_none());
    assert_eq!(w.drain().await, vec![Disposition::Done]);

    assert_eq!(w.requests(), 3, "ceil(125 / 50)");
    assert_eq!(w.shop.stats(SHOP).price_changes, changed);
    assert!(!w.variant(1000) && w.variant(1001));
    assert_eq!(w.link_available(1000).await, Some(false));
    assert_eq!(w.counter("stock_changed").await, changed);
    assert_eq!(w.counter("stock_unlinked").await, 5);
    assert!(w.stock.pending(CONN).await.unwrap().is_empty());
    assert!(w.stock.in_flight(CONN).await.unwrap().is_empty());
    assert!(w.stock.window(CONN).await.unwrap().is_none(), "window over");
    assert!(w.flushes.bodies().is_empty(), "nothing left to flush");

    // the same signal again: KeyCRM is read, nothing written
    w.signal(&offers[..3]).await;
    w.drain().await;
    assert_eq!(w.requests(), 4);
    assert_eq!(w.shop.stats(SHOP).price_changes, changed);
}

#[tokio::test]
async fn duplicates_and_reordered_signals_end_on_the_current_stock() {
    let w = world(3, 1, fast(), RetryPolicy::default()).await;
    // KeyCRM: 1000 sold out, then back; deliveries arrive duplicated and in any order
    w.set(1000, false);
    w.signal(&[1000]).await;
    w.signal(&[1000, 1010]).await;
    w.drain().await;
    assert!(!w.variant(1000));
    w.set(1000, true);
    // a stale delivery (saying "0 in stock") arriving late changes nothing: only the
    // current stock counts
    w.signal(&[1000]).await;
    w.drain().await;
    w.signal(&[1000]).await;
    w.drain().await;
    assert!(w.variant(1000) && w.variant(1010));
    assert_eq!(w.shop.stats(SHOP).price_changes, 2);
}

#[tokio::test]
async fn signals_during_a_flush_get_the_next_window() {
    let w = world(3, 1, fast(), RetryPolicy::default()).await;
    let stock = w.stock.clone();
    *w.source.during.lock().unwrap() = Some(Box::new(move || {
        // a webhook for 1010 arrives while the flush reads 1000 (and sees a window held)
        futures::executor::block_on(stock.add_pending(CONN, &[1010])).unwrap();
    }));
    w.set(1010, false);
    w.signal(&[1000]).await;
    w.drain().await;
    *w.source.during.lock().unwrap() = None;
    assert_eq!(w.stock.pending(CONN).await.unwrap(), vec![1010]);
    assert_eq!(w.flushes.bodies().len(), 1, "the next window is scheduled");
    assert!(w.variant(1010), "not yet: it waits for its window");
    tokio::time::sleep(Duration::from_millis(80)).await;
    w.drain().await;
    assert!(!w.variant(1010));
    assert!(w.flushes.bodies().is_empty());
}

#[tokio::test]
async fn a_crash_after_taking_offers_loses_nothing() {
    let w = world(3, 1, fast(), RetryPolicy::default()).await;
    w.set(1000, false);
    w.set(1020, false);
    // an earlier flush took 1000 out of the pending set and died before writing the shop
    w.stock.add_pending(CONN, &[1000, 1020]).await.unwrap();
    w.stock.begin(CONN, &[1000]).await.unwrap();
    assert_eq!(w.stock.pending(CONN).await.unwrap(), vec![1020]);
    // its window expired; the next signal schedules a new one, which finishes the job
    w.signal(&[1010]).await.expect("scheduled");
    w.drain().await;
    assert!(!w.variant(1000) && !w.variant(1020) && w.variant(1010));
    assert!(w.stock.in_flight(CONN).await.unwrap().is_empty());
}

#[tokio::test]
async fn duplicate_and_orphan_messages_are_dropped() {
    let w = world(2, 1, fast(), RetryPolicy::default()).await;
    let body = w.signal(&[1000]).await.unwrap();
    // an orphan: scheduled by a receiver that lost the race for the window record
    let orphan = FlushJob::new(CONN).to_body();
    assert_eq!(
        w.applier.handle_message(&orphan, 1).await,
        Disposition::Done
    );
    assert_eq!(w.requests(), 0, "the orphan read nothing");
    // the real one runs; its duplicate afterwards finds nothing to do
    w.set(1000, false);
    assert_eq!(w.applier.handle_message(&body, 1).await, Disposition::Done);
    assert_eq!(w.applier.handle_message(&body, 2).await, Disposition::Done);
    assert_eq!(w.shop.stats(SHOP).price_changes, 1);
    // a garbage body is dead-lettered
    assert!(matches!(
        w.applier.handle_message("{}", 1).await,
        Disposition::GiveUp { .. }
    ));
}

#[tokio::test]
async fn a_flush_taken_over_during_its_read_writes_nothing() {
    let w = world(2, 1, fast(), RetryPolicy::default()).await;
    w.set(1000, false);
    let body = w.signal(&[1000]).await.unwrap();
    let stock = w.stock.clone();
    *w.source.during.lock().unwrap() = Some(Box::new(move || {
        // the read waited past the hold; another flush took the window over
        let taken = futures::executor::block_on(stock.take_window(
            CONN,
            "newer",
            "thief",
            i64::MAX / 4,
            i64::MAX / 8,
        ))
        .unwrap();
        assert!(taken);
    }));
    assert_eq!(w.applier.handle_message(&body, 1).await, Disposition::Done);
    assert!(w.variant(1000), "the older read was not written");
    assert_eq!(w.shop.stats(SHOP).price_changes, 0);
    assert_eq!(
        w.stock.in_flight(CONN).await.unwrap(),
        vec![1000],
        "left for the new holder"
    );
    let win = w.stock.window(CONN).await.unwrap().unwrap();
    assert_eq!(
        win.holder.as_deref(),
        Some("thief"),
        "not ended by the loser"
    );
}

#[tokio::test]
async fn a_stale_link_does_not_hide_a_change() {
    let w = world(1, 1, fast(), RetryPolicy::default()).await;
    // realtime stock made 1000 unavailable ...
    w.set(1000, false);
    w.signal(&[1000]).await;
    w.drain().await;
    assert!(!w.variant(1000));
    // ... then a catalog run rewrote the link from a copy read before that
    let mut l = w.links.get_products(CONN, &[100]).await.unwrap();
    l[0].variants[0].available = Some(true);
    w.links.put_products(CONN, &l).await.unwrap();
    // back in stock: the link agrees, realtime stock's record does not -> written
    w.set(1000, true);
    w.signal(&[1000]).await;
    w.drain().await;
    assert!(w.variant(1000));
}

#[tokio::test]
async fn shop_outage_is_retried_with_the_window_parked_then_dead_lettered() {
    let retry = RetryPolicy {
        base: Duration::from_secs(30),
        cap: Duration::from_secs(900),
        max_receives: 3,
    };
    let w = world(1, 1, fast(), retry).await;
    w.set(1000, false);
    let body = w.signal(&[1000]).await.unwrap();
    w.shop.set_down(true);
    let d = w.applier.handle_message(&body, 1).await;
    assert!(
        matches!(&d, Disposition::RetryAfter { delay, reason } if *delay == Duration::from_secs(30) && reason.contains("unavailable")),
        "{d:?}"
    );
    let win = w.stock.window(CONN).await.unwrap().expect("parked");
    assert!(win.holder.is_none() && win.until_ms > flush::now_ms() + 30_000);
    assert!(
        w.signal(&[1000]).await.is_none(),
        "receivers wait for the retry"
    );
    assert_eq!(w.stock.in_flight(CONN).await.unwrap(), vec![1000]);
    // the last delivery gives up: dead letter, journal, window ended, offer kept
    let d = w.applier.handle_message(&body, 3).await;
    let Disposition::GiveUp { reason } = d else {
        panic!("{d:?}")
    };
    assert!(reason.contains("after 3 attempt(s)"), "{reason}");
    let st = w.journal.status(CONN).await.unwrap();
    assert!(st.last_error.unwrap().message.contains("realtime stock"));
    assert!(w.stock.window(CONN).await.unwrap().is_none());
    assert_eq!(w.stock.in_flight(CONN).await.unwrap(), vec![1000]);
    // the shop is back and the next signal brings everything in
    w.shop.set_down(false);
    w.signal(&[1000]).await.expect("scheduled");
    w.drain().await;
    assert!(!w.variant(1000));
}

#[tokio::test]
async fn a_revoked_key_gives_up_at_once_and_keycrm_outages_retry() {
    let w = world(1, 1, fast(), RetryPolicy::default()).await;
    let body = w.signal(&[1000]).await.unwrap();
    *w.source.fail.lock().unwrap() = Some(|| SourceError::Unavailable("503".into()));
    assert!(matches!(
        w.applier.handle_message(&body, 1).await,
        Disposition::RetryAfter { .. }
    ));
    *w.source.fail.lock().unwrap() = Some(|| SourceError::Unauthorized);
    let d = w.applier.handle_message(&body, 2).await;
    assert!(
        matches!(&d, Disposition::GiveUp { reason } if reason.contains("rejected the API key")),
        "{d:?}"
    );
}

#[tokio::test]
async fn a_panic_is_the_messages_own_and_is_given_up_with_its_reason() {
    let w = world(1, 1, fast(), RetryPolicy::default()).await;
    let body = w.signal(&[1000]).await.unwrap();
    *w.source.during.lock().unwrap() = Some(Box::new(|| panic!("unexpected KeyCRM shape")));
    let d = w.applier.handle_message(&body, 1).await;
    let Disposition::GiveUp { reason } = d else {
        panic!("{d:?}")
    };
    assert!(reason.contains("unexpected KeyCRM shape"), "{reason}");
    assert!(
        w.stock.window(CONN).await.unwrap().is_none(),
        "the window ended"
    );
    assert_eq!(w.stock.in_flight(CONN).await.unwrap(), vec![1000], "kept");
}

#[tokio::test]
async fn running_out_of_time_retries_with_the_window_parked() {
    let w = world(1, 1, fast(), RetryPolicy::default()).await;
    let body = w.signal(&[1000]).await.unwrap();
    *w.source.delay.lock().unwrap() = Some(Duration::from_secs(30));
    let until = std::time::Instant::now() + Duration::from_millis(100);
    let d = w.applier.handle_message_until(&body, 1, Some(until)).await;
    assert!(
        matches!(&d, Disposition::RetryAfter { reason, .. } if reason.contains("ran out of time")),
        "{d:?}"
    );
    let win = w.stock.window(CONN).await.unwrap().expect("parked");
    assert!(win.holder.is_none());
    // the retry takes it and finishes
    *w.source.delay.lock().unwrap() = None;
    w.set(1000, false);
    assert_eq!(w.applier.handle_message(&body, 2).await, Disposition::Done);
    assert!(!w.variant(1000));
}

#[tokio::test]
async fn nothing_happens_when_the_connection_is_off_or_gone() {
    let w = world(1, 1, fast(), RetryPolicy::default()).await;
    let body = w.signal(&[1000]).await.unwrap();
    let mut c = w.conns.get(CONN).await.unwrap().unwrap();
    c.settings.realtime_stock = false;
    c.version += 1;
    w.conns.update(&c).await.unwrap();
    assert_eq!(w.applier.handle_message(&body, 1).await, Disposition::Done);
    // realtime on again, but the merchant disconnects
    c.settings.realtime_stock = true;
    c.version += 1;
    w.conns.update(&c).await.unwrap();
    w.conns.mark_deleting(&c).await.unwrap();
    assert_eq!(w.applier.handle_message(&body, 1).await, Disposition::Done);
    assert_eq!(w.requests(), 0);
}

#[tokio::test]
async fn an_overrun_continues_at_once_in_a_new_window() {
    let cfg = FlushConfig {
        budget: Duration::ZERO,
        ..fast()
    };
    let w = world(60, 1, cfg, RetryPolicy::default()).await;
    let offers: Vec<i64> = (0..60).map(|p| 1000 + 10 * p).collect();
    for o in &offers {
        w.set(*o, false);
    }
    w.signal(&offers).await;
    w.drain().await;
    assert_eq!(w.requests(), 1, "one chunk per invocation at least");
    assert_eq!(w.stock.pending(CONN).await.unwrap().len(), 10);
    w.drain().await;
    assert_eq!(w.requests(), 2);
    assert!(offers.iter().all(|o| !w.variant(*o)));
    assert!(w.flushes.bodies().is_empty());
}

#[tokio::test]
async fn the_consumer_dead_letters_with_a_reason() {
    let w = world(1, 1, fast(), RetryPolicy::default()).await;
    let dlq = Arc::new(MemoryQueue::new("stock-flushes-dlq"));
    w.flushes
        .send(queue::Outgoing::new("not json"))
        .await
        .unwrap();
    let q: Arc<dyn Queue> = w.flushes.clone();
    let n = poll_once(
        &w.applier,
        &q,
        Some(dlq.clone()),
        ConsumerOptions {
            wait: Duration::from_millis(50),
            ..ConsumerOptions::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(n, 1);
    let letter: queue::DeadLetter = serde_json::from_str(&dlq.bodies()[0]).unwrap();
    assert_eq!(letter.kind, "stock_flush");
    assert_eq!(letter.original, "not json");
    assert!(
        letter.reason.contains("not valid JSON"),
        "{}",
        letter.reason
    );
    assert!(w.flushes.bodies().is_empty());
}

/// `(metric, label, value)` of every EMF sample `work` emitted as one stock-apply invocation.
async fn emitted<F: std::future::Future>(work: F) -> Vec<(String, String, f64)> {
    use runtime::metrics::{Emitter, Function, Sink};
    let (sink, captured) = Sink::memory();
    Emitter::new(Function::StockApply)
        .with_sink(sink)
        .run(work)
        .await;
    let mut out = Vec::new();
    for d in captured.documents() {
        assert_eq!(d["function"], "stock-apply");
        let label = ["reason", "outcome"]
            .iter()
            .find_map(|k| d.get(*k).and_then(|v| v.as_str()))
            .unwrap_or("")
            .to_string();
        for m in d["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap()
        {
            let name = m["Name"].as_str().unwrap().to_string();
            out.push((name.clone(), label.clone(), d[&name].as_f64().unwrap()));
        }
    }
    out
}

#[tokio::test]
async fn a_flush_emits_stock_writes_ignored_offers_and_its_outcome() {
    let w = world(3, 1, fast(), RetryPolicy::default()).await; // offers 1000, 1010, 1020
                                                               // The shop port metered as main.rs and the local run wire it.
    let applier = StockApplier::new(
        Flusher::new(
            w.conns.clone(),
            w.stock.clone(),
            w.links.clone(),
            Arc::new(runtime::metrics::MeteredCatalog(w.shop.clone())),
            w.source.clone(),
            w.journal.clone(),
            w.flushes.clone(),
            fast(),
        ),
        RetryPolicy::default(),
    );
    w.set(1000, false);
    w.set(1010, false);
    w.signal(&[1000, 1010, 1020, 5, 6]).await.unwrap();
    let msgs = w
        .flushes
        .receive(10, Duration::from_millis(100), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(msgs.len(), 1);
    let m = &msgs[0];
    let got = emitted(async {
        assert_eq!(
            applier.handle_message(&m.body, m.receive_count).await,
            Disposition::Done
        );
    })
    .await;
    assert!(
        got.contains(&("StockWrites".into(), "".into(), 2.0)),
        "{got:?}"
    );
    assert!(
        got.contains(&("StockOffersIgnored".into(), "unlinked".into(), 2.0)),
        "{got:?}"
    );
    assert!(
        got.contains(&("StockFlushes".into(), "drained".into(), 1.0)),
        "{got:?}"
    );
    w.flushes.delete(&m.receipt).await.unwrap();

    // Switched off: the flush is skipped, and says so.
    let mut c = w.conns.get(CONN).await.unwrap().unwrap();
    c.settings.realtime_stock = false;
    c.version += 1;
    w.conns.update(&c).await.unwrap();
    w.signal(&[1020]).await.unwrap();
    let msgs = w
        .flushes
        .receive(10, Duration::from_millis(100), Duration::from_secs(30))
        .await
        .unwrap();
    let m = &msgs[0];
    let got = emitted(applier.handle_message(&m.body, m.receive_count)).await;
    assert_eq!(
        got,
        vec![("StockFlushes".into(), "realtime_stock_off".into(), 1.0)]
    );
}

// The Lambda edge from JSON event fixtures, on this file's in-memory world.
#[path = "../tests/lambda/fixtures.rs"]
mod lambda_fixtures;
