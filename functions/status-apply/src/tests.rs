use super::*;
use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use mapping::settings::{CardStatusMap, OrderStatusMap};
use mapping::Settings;
use queue::{MemoryQueue, Outgoing, Queue, Redrive};
use shop::{MemoryShop, NamedItem, ShopError, ShopOrders, ShopReference};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use store::{
    Connection, ConnectionStore, LedgerState, MemoryConnections, MemoryJournal, MemoryLedger,
    OrderLedger, StatusJournal, Target, WebhookTokens,
};
use tokio::sync::oneshot;

const CONN: &str = "c1";
const SHOP: &str = "s1";

fn t(sec: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 19, 10, 0, sec).unwrap()
}

fn settings() -> Settings {
    let link = |s: &str, id| (s.to_string(), id);
    let plink = |s: &str, p, id| (s.to_string(), p, id);
    Settings {
        source_id: Some(7),
        order_statuses: OrderStatusMap::from_legacy(vec![
            link("new", 1),
            link("processing", 3),
            link("awaiting_payment", 3),
            link("shipped", 7),
            link("done", 12),
        ]),
        card_statuses: CardStatusMap::from_legacy(vec![
            plink("new", 1, 1001),
            plink("processing", 1, 1002),
            plink("done", 1, 1004),
        ]),
        ..Settings::default()
    }
}

fn connection(active: bool) -> Connection {
    Connection {
        id: CONN.into(),
        shop_id: SHOP.into(),
        active,
        keycrm_base_url: "http://127.0.0.1:1/v1".into(),
        key_mask: "••••abcd".into(),
        key_fingerprint: "fp".into(),
        secret_name: "sec".into(),
        settings: settings(),
        webhook_tokens: WebhookTokens::default(),
        webhook_generations: Default::default(),
        account_epoch: 0,
        account_switched_at: None,
        version: 1,
        created_at: t(0),
        updated_at: t(0),
    }
}

/// A shop whose first status write can be held until the test lets it through.
struct GatedShop {
    inner: Arc<MemoryShop>,
    #[allow(clippy::type_complexity)]
    gate: Mutex<Option<(oneshot::Sender<()>, oneshot::Receiver<()>)>>,
}

#[async_trait]
impl ShopOrders for GatedShop {
    async fn reference(&self, shop_id: &str) -> Result<ShopReference, ShopError> {
        self.inner.reference(shop_id).await
    }
    async fn set_order_status(
        &self,
        shop_id: &str,
        order: &str,
        status: &str,
    ) -> Result<(), ShopError> {
        let gate = self.gate.lock().unwrap().take();
        if let Some((arrived, proceed)) = gate {
            let _ = arrived.send(());
            let _ = proceed.await;
        }
        self.inner.set_order_status(shop_id, order, status).await
    }
}

struct World {
    conns: Arc<MemoryConnections>,
    ledger: Arc<MemoryLedger>,
    shop: Arc<MemoryShop>,
    journal: Arc<MemoryJournal>,
    applier: Arc<StatusApplier>,
}

fn policy() -> RetryPolicy {
    RetryPolicy {
        base: Duration::from_millis(10),
        cap: Duration::from_millis(40),
        max_receives: 3,
    }
}

/// A shop order order-push created in KeyCRM as `keycrm_id` (claim, then record it).
async fn seed_linked(ledger: &MemoryLedger, order: &str, target: Target, keycrm_id: i64) {
    let holder = format!("seed-{order}");
    ledger
        .claim(CONN, order, target, &holder, Duration::from_secs(60), "{}")
        .await
        .unwrap();
    let created = store::ledger::Created {
        target,
        keycrm_id,
        report: Default::default(),
        shop_status: None,
        keycrm_status_id: None,
    };
    ledger
        .record_created(CONN, order, &holder, &created)
        .await
        .unwrap();
}

async fn world_with(
    active: bool,
    shop_port: Option<Arc<dyn ShopOrders>>,
    shop: Arc<MemoryShop>,
) -> World {
    let conns = Arc::new(MemoryConnections::default());
    conns.create(&connection(active)).await.unwrap();
    let ledger = Arc::new(MemoryLedger::default());
    seed_linked(&ledger, "A-1", Target::Order, 100).await;
    seed_linked(&ledger, "A-3", Target::Card, 555).await;
    shop.add_order(SHOP, "A-1", "new");
    shop.add_order(SHOP, "A-2", "new");
    shop.add_order(SHOP, "A-3", "new");
    let journal = Arc::new(MemoryJournal::default());
    let port: Arc<dyn ShopOrders> = shop_port.unwrap_or_else(|| shop.clone());
    let applier = Arc::new(StatusApplier::new(
        conns.clone(),
        ledger.clone(),
        port,
        journal.clone(),
        policy(),
    ));
    World {
        conns,
        ledger,
        shop,
        journal,
        applier,
    }
}

async fn world() -> World {
    world_with(true, None, Arc::new(MemoryShop::new())).await
}

fn job(keycrm_id: i64, status_id: i64, at: DateTime<Utc>) -> StatusJob {
    StatusJob {
        v: JOB_VERSION,
        connection_id: CONN.into(),
        target: Target::Order,
        keycrm_id,
        status_id,
        pipeline_id: None,
        changed_at: at,
        source_id: Some(7),
        source_uuid: None,
        received_at: at,
    }
}

fn card_job(card_id: i64, pipeline: Option<i64>, status_id: i64, at: DateTime<Utc>) -> StatusJob {
    StatusJob {
        target: Target::Card,
        pipeline_id: pipeline,
        source_uuid: None,
        ..job(card_id, status_id, at)
    }
}

impl World {
    fn status(&self, order: &str) -> Option<String> {
        self.shop.order_status(SHOP, order)
    }
    fn history(&self) -> Vec<(String, String)> {
        self.shop.status_history(SHOP)
    }
    async fn counter(&self, name: &str) -> u64 {
        let st = self.journal.status(CONN).await.unwrap();
        st.counters.get(name).copied().unwrap_or(0)
    }
    async fn handle(&self, j: &StatusJob, receive_count: u32) -> Disposition {
        self.applier
            .handle_message(&j.to_body(), receive_count)
            .await
    }
}

fn is_ignored(o: &Outcome, why: IgnoreReason) -> bool {
    matches!(o, Outcome::Ignored { reason, .. } if *reason == why)
}

#[tokio::test]
async fn applies_a_mapped_order_status_and_arms_the_echo_guard() {
    let w = world().await;
    assert_eq!(w.handle(&job(100, 3, t(1)), 1).await, Disposition::Done);
    assert_eq!(w.status("A-1").as_deref(), Some("processing"));
    let e = w.ledger.get(CONN, "A-1").await.unwrap().unwrap();
    assert_eq!(e.applied_from_keycrm.as_deref(), Some("processing"));
    assert_eq!(e.keycrm_status_changed_at, Some(t(1)));
    assert_eq!(e.keycrm_status_id, Some(3));
    assert_eq!(w.counter("webhooks_applied").await, 1);
    assert_eq!(w.counter("webhooks_ignored").await, 0);
}

#[tokio::test]
async fn duplicates_change_the_shop_once() {
    let w = world().await;
    let j = job(100, 7, t(1));
    for _ in 0..3 {
        assert_eq!(w.handle(&j, 1).await, Disposition::Done);
    }
    assert_eq!(
        w.history(),
        vec![("A-1".to_string(), "shipped".to_string())]
    );
    assert_eq!(w.shop.stats(SHOP).status_changes, 1);
    assert_eq!(w.counter("webhooks_applied").await, 1);
    assert_eq!(w.counter("webhooks_ignored").await, 2);
}

#[tokio::test]
async fn an_older_event_after_a_newer_one_changes_nothing() {
    let w = world().await;
    w.handle(&job(100, 7, t(5)), 1).await;
    let o = w.applier.process(&job(100, 3, t(2)), 1).await;
    assert!(is_ignored(&o, IgnoreReason::Stale), "{o:?}");
    assert_eq!(w.status("A-1").as_deref(), Some("shipped"));
    assert_eq!(w.history().len(), 1);
    let e = w.ledger.get(CONN, "A-1").await.unwrap().unwrap();
    assert_eq!(e.keycrm_status_changed_at, Some(t(5)));
}

#[tokio::test]
async fn a_same_second_change_to_another_status_is_not_taken_for_a_duplicate_of_it() {
    let w = world().await;
    w.handle(&job(100, 7, t(5)), 1).await;
    let o = w.applier.process(&job(100, 12, t(5)), 1).await;
    assert!(is_ignored(&o, IgnoreReason::Stale), "{o:?}");
    assert_eq!(w.status("A-1").as_deref(), Some("shipped"));
}

#[tokio::test]
async fn unknown_orders_unmapped_statuses_and_inactive_connections_are_ignored() {
    let w = world().await;
    // Another source, not in the ledger.
    let mut other = job(999, 3, t(1));
    other.source_id = Some(8);
    other.source_uuid = Some("A-2".into());
    assert!(is_ignored(
        &w.applier.process(&other, 1).await,
        IgnoreReason::UnknownOrder
    ));
    // Our source but no source_uuid.
    let mut bare = job(998, 3, t(1));
    bare.source_uuid = None;
    assert!(is_ignored(
        &w.applier.process(&bare, 1).await,
        IgnoreReason::UnknownOrder
    ));
    // Unmapped KeyCRM status.
    assert!(is_ignored(
        &w.applier.process(&job(100, 5, t(1)), 1).await,
        IgnoreReason::Unmapped
    ));
    // Unknown card.
    assert!(is_ignored(
        &w.applier
            .process(&card_job(556, Some(1), 1002, t(1)), 1)
            .await,
        IgnoreReason::UnknownOrder
    ));
    assert!(w.history().is_empty());
    assert!(
        w.ledger.get(CONN, "A-2").await.unwrap().is_none(),
        "nothing adopted"
    );
    assert_eq!(w.handle(&other, 1).await, Disposition::Done);
    assert_eq!(w.counter("webhooks_ignored").await, 1);

    let off = world_with(false, None, Arc::new(MemoryShop::new())).await;
    assert!(is_ignored(
        &off.applier.process(&job(100, 3, t(1)), 1).await,
        IgnoreReason::Inactive
    ));
    assert!(off.history().is_empty());

    // Deleted (marked; its data is removed later in the background): already gone here.
    let c = w.conns.get(CONN).await.unwrap().unwrap();
    w.conns.mark_deleting(&c).await.unwrap();
    assert!(is_ignored(
        &w.applier.process(&job(100, 3, t(2)), 1).await,
        IgnoreReason::UnknownConnection
    ));
}

/// KeyCRM as the adoption check reads it back.
#[derive(Default)]
struct FakeKeycrm {
    orders: Mutex<std::collections::HashMap<i64, crate::OrderOrigin>>,
    reads: Mutex<u32>,
}

impl FakeKeycrm {
    fn has(&self, id: i64, source: i64, uuid: &str) {
        self.orders.lock().unwrap().insert(
            id,
            crate::OrderOrigin {
                source_id: Some(source),
                source_uuid: Some(uuid.into()),
            },
        );
    }
}

#[async_trait]
impl crate::KeycrmOrders for FakeKeycrm {
    async fn order_origin(
        &self,
        _conn: &Connection,
        id: i64,
    ) -> Result<Option<crate::OrderOrigin>, keycrm::KeycrmError> {
        *self.reads.lock().unwrap() += 1;
        Ok(self.orders.lock().unwrap().get(&id).cloned())
    }
}

/// An order whose create reached KeyCRM but whose answer was lost: pending, claim released.
async fn seed_waiting(ledger: &MemoryLedger, order: &str) {
    let holder = format!("w-{order}");
    ledger
        .claim(
            CONN,
            order,
            Target::Order,
            &holder,
            Duration::from_secs(60),
            "{}",
        )
        .await
        .unwrap();
    ledger
        .release(CONN, order, &holder, "timed out", true)
        .await
        .unwrap();
}

fn adopting_world(w: World, kc: Arc<FakeKeycrm>) -> World {
    let applier = StatusApplier::new(
        w.conns.clone(),
        w.ledger.clone(),
        w.shop.clone(),
        w.journal.clone(),
        policy(),
    )
    .with_keycrm(kc);
    World {
        applier: Arc::new(applier),
        ..w
    }
}

fn named(keycrm_id: i64, uuid: &str, at: DateTime<Utc>) -> StatusJob {
    let mut j = job(keycrm_id, 7, at);
    j.source_uuid = Some(uuid.into());
    j
}

#[tokio::test]
async fn an_order_an_earlier_attempt_created_is_adopted_after_reading_it_back() {
    let kc = Arc::new(FakeKeycrm::default());
    let w = adopting_world(world().await, kc.clone());
    seed_waiting(&w.ledger, "A-2").await;
    kc.has(200, 7, "s1:A-2");
    let o = w.applier.process(&named(200, "s1:A-2", t(1)), 1).await;
    assert!(
        matches!(o, Outcome::Applied { ref shop_order_id, .. } if shop_order_id == "A-2"),
        "{o:?}"
    );
    assert_eq!(w.status("A-2").as_deref(), Some("shipped"));
    let e = w
        .ledger
        .find_by_keycrm_id(CONN, Target::Order, 200)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (e.shop_order_id.as_str(), e.state),
        ("A-2", LedgerState::Created)
    );
    assert_eq!(*kc.reads.lock().unwrap(), 1);

    // A shop order already linked to another KeyCRM order is not taken over.
    kc.has(201, 7, "s1:A-2");
    let mut intruder = named(201, "s1:A-2", t(2));
    intruder.status_id = 12;
    assert!(is_ignored(
        &w.applier.process(&intruder, 1).await,
        IgnoreReason::UnknownOrder
    ));
    assert_eq!(w.status("A-2").as_deref(), Some("shipped"));
}

#[tokio::test]
async fn forged_or_foreign_webhooks_adopt_nothing() {
    let kc = Arc::new(FakeKeycrm::default());
    let w = adopting_world(world().await, kc.clone());
    // 1. An order the ledger does not know: the real order.created must still be pushed.
    kc.has(300, 7, "s1:A-9");
    assert!(is_ignored(
        &w.applier.process(&named(300, "s1:A-9", t(1)), 1).await,
        IgnoreReason::UnknownOrder
    ));
    assert!(
        w.ledger.get(CONN, "A-9").await.unwrap().is_none(),
        "no entry made"
    );
    // 2. A webhook naming our waiting order, for a KeyCRM order that says otherwise.
    seed_waiting(&w.ledger, "A-2").await;
    kc.has(301, 7, "s2:A-2");
    assert!(is_ignored(
        &w.applier.process(&named(301, "s1:A-2", t(1)), 1).await,
        IgnoreReason::UnknownOrder
    ));
    // 3. ... or that does not exist.
    assert!(is_ignored(
        &w.applier.process(&named(302, "s1:A-2", t(1)), 1).await,
        IgnoreReason::UnknownOrder
    ));
    // 4. Another shop on the same account with its own order A-2.
    kc.has(303, 7, "s2:A-2");
    assert!(is_ignored(
        &w.applier.process(&named(303, "s2:A-2", t(1)), 1).await,
        IgnoreReason::UnknownOrder
    ));
    let e = w.ledger.get(CONN, "A-2").await.unwrap().unwrap();
    assert_eq!((e.state, e.keycrm_id), (LedgerState::Pending, None));
    assert!(w.history().is_empty(), "the shop was never touched");
    // 5. Being created right now: tried again later, not adopted under the attempt.
    w.ledger
        .claim(
            CONN,
            "A-5",
            Target::Order,
            "live",
            Duration::from_secs(60),
            "{}",
        )
        .await
        .unwrap();
    kc.has(304, 7, "s1:A-5");
    assert!(matches!(
        w.applier.process(&named(304, "s1:A-5", t(1)), 1).await,
        Outcome::Retry { .. }
    ));
    // 6. Without KeyCRM to read back, nothing is adopted.
    let blind = world().await;
    seed_waiting(&blind.ledger, "A-2").await;
    assert!(is_ignored(
        &blind.applier.process(&named(200, "s1:A-2", t(1)), 1).await,
        IgnoreReason::UnknownOrder
    ));
}

#[tokio::test]
async fn a_bare_id_is_adopted_only_from_our_source_for_an_older_attempt() {
    let kc = Arc::new(FakeKeycrm::default());
    let w = adopting_world(world().await, kc.clone());
    // What an older version left: attempted under the bare id.
    let mut legacy = store::LedgerEntry::claimed(
        CONN,
        "A-4",
        Target::Order,
        "old",
        Duration::ZERO,
        "{}",
        t(0),
    );
    legacy.claim_holder = None;
    legacy.claim_until = None;
    legacy.scoped_key = false;
    w.ledger.put(legacy);
    w.shop.add_order(SHOP, "A-4", "new");
    kc.has(400, 8, "A-4");
    let mut foreign = named(400, "A-4", t(1));
    foreign.source_id = Some(8);
    assert!(is_ignored(
        &w.applier.process(&foreign, 1).await,
        IgnoreReason::UnknownOrder
    ));
    kc.has(401, 7, "A-4");
    let o = w.applier.process(&named(401, "A-4", t(2)), 1).await;
    assert!(matches!(o, Outcome::Applied { .. }), "{o:?}");
    // An order only ever sent under its scoped name is not taken by a bare id.
    seed_waiting(&w.ledger, "A-6").await;
    kc.has(402, 7, "A-6");
    assert!(is_ignored(
        &w.applier.process(&named(402, "A-6", t(1)), 1).await,
        IgnoreReason::UnknownOrder
    ));
}

#[tokio::test]
async fn a_change_dated_in_the_future_cannot_lock_the_order() {
    let w = world().await;
    let mut future = job(100, 12, t(1));
    future.changed_at = Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap();
    future.received_at = t(1);
    assert_eq!(w.handle(&future, 1).await, Disposition::Done);
    assert_eq!(w.status("A-1").as_deref(), Some("done"));
    let e = w.ledger.get(CONN, "A-1").await.unwrap().unwrap();
    assert_eq!(
        e.keycrm_status_changed_at,
        Some(t(1)),
        "ordered by its receive time"
    );
    // The next real change applies.
    assert_eq!(w.handle(&job(100, 3, t(5)), 1).await, Disposition::Done);
    assert_eq!(w.status("A-1").as_deref(), Some("processing"));
}

#[tokio::test]
async fn pipeline_cards_map_through_the_pipeline_status_map() {
    let w = world().await;
    let o = w
        .applier
        .process(&card_job(555, Some(1), 1002, t(1)), 1)
        .await;
    assert!(matches!(o, Outcome::Applied { .. }), "{o:?}");
    assert_eq!(w.status("A-3").as_deref(), Some("processing"));
    // A status of another pipeline than the map's is unmapped.
    let o = w
        .applier
        .process(&card_job(555, Some(2), 1004, t(2)), 1)
        .await;
    assert!(is_ignored(&o, IgnoreReason::Unmapped), "{o:?}");
    // Without a pipeline id the status id alone decides.
    w.applier.process(&card_job(555, None, 1004, t(3)), 1).await;
    assert_eq!(w.status("A-3").as_deref(), Some("done"));
}

#[tokio::test]
async fn the_echo_of_our_own_push_keeps_the_shop_status_under_a_many_to_one_map() {
    let w = world().await;
    // The shop moved to awaiting_payment and order-push sent KeyCRM status 3 for it.
    w.shop.add_order(SHOP, "A-1", "awaiting_payment");
    w.ledger
        .record_shop_status(CONN, "A-1", "awaiting_payment", Some(3), t(1))
        .await
        .unwrap();
    let o = w.applier.process(&job(100, 3, t(2)), 1).await;
    assert!(
        matches!(o, Outcome::Applied { ref shop_status, .. } if shop_status == "awaiting_payment"),
        "{o:?}"
    );
    assert_eq!(w.status("A-1").as_deref(), Some("awaiting_payment"));
    assert!(
        w.history().is_empty(),
        "no flip to the first listed alternative"
    );
}

#[tokio::test]
async fn shop_outage_is_retried_with_backoff_then_applied() {
    let w = world().await;
    w.shop.set_down(true);
    let j = job(100, 7, t(1));
    let d = w.handle(&j, 1).await;
    assert!(
        matches!(d, Disposition::RetryAfter { delay, .. } if delay == Duration::from_millis(10)),
        "{d:?}"
    );
    let d = w.handle(&j, 2).await;
    assert!(
        matches!(d, Disposition::RetryAfter { delay, .. } if delay == Duration::from_millis(20)),
        "{d:?}"
    );
    assert_eq!(w.status("A-1").as_deref(), Some("new"));
    w.shop.set_down(false);
    assert_eq!(w.handle(&j, 3).await, Disposition::Done);
    assert_eq!(w.status("A-1").as_deref(), Some("shipped"));
    assert_eq!(w.counter("webhooks_applied").await, 1);
}

#[tokio::test]
async fn a_delivery_that_keeps_failing_is_given_up_with_a_readable_reason() {
    let w = world().await;
    w.shop.set_down(true);
    let d = w.handle(&job(100, 7, t(1)), 3).await;
    let Disposition::GiveUp { reason } = d else {
        panic!("expected give-up, got {d:?}");
    };
    assert!(reason.contains("KeyCRM order 100"), "{reason}");
    assert!(reason.contains("after 3 attempts"), "{reason}");
    assert!(reason.contains("unavailable"), "{reason}");
    let st = w.journal.status(CONN).await.unwrap();
    assert_eq!(st.last_error.map(|e| e.message), Some(reason));
}

#[tokio::test]
async fn refused_statuses_fail_and_missing_shop_orders_are_ignored() {
    let w = world().await;
    w.shop.set_reference(
        SHOP,
        ShopReference {
            order_statuses: vec![NamedItem {
                id: "new".into(),
                name: "New".into(),
            }],
            ..ShopReference::default()
        },
    );
    let d = w.handle(&job(100, 7, t(1)), 1).await;
    assert!(
        matches!(&d, Disposition::GiveUp { reason } if reason.contains("shipped")),
        "{d:?}"
    );

    let w = world().await;
    seed_linked(&w.ledger, "GONE", Target::Order, 300).await;
    let o = w.applier.process(&job(300, 7, t(1)), 1).await;
    assert!(is_ignored(&o, IgnoreReason::ShopOrderMissing), "{o:?}");
}

#[tokio::test]
async fn malformed_jobs_are_given_up() {
    let w = world().await;
    assert!(matches!(
        w.applier.handle_message("{\"v\":1}", 1).await,
        Disposition::GiveUp { .. }
    ));
    assert!(matches!(
        w.applier.handle_message("not json", 1).await,
        Disposition::GiveUp { .. }
    ));
}

/// An older event's shop write lands after a newer event was recorded and written: the
/// older worker's post-write check writes the newest status again.
#[tokio::test]
async fn a_slow_older_write_cannot_leave_the_shop_behind() {
    let shop = Arc::new(MemoryShop::new());
    let (arrived_tx, arrived_rx) = oneshot::channel();
    let (proceed_tx, proceed_rx) = oneshot::channel();
    let gated = Arc::new(GatedShop {
        inner: shop.clone(),
        gate: Mutex::new(Some((arrived_tx, proceed_rx))),
    });
    let w = world_with(true, Some(gated), shop).await;
    let older = job(100, 3, t(1));
    let applier = w.applier.clone();
    let slow = tokio::spawn(async move { applier.process(&older, 1).await });
    arrived_rx.await.unwrap(); // the older event is recorded and about to write the shop
    let newer = w.applier.process(&job(100, 7, t(2)), 1).await;
    assert!(matches!(newer, Outcome::Applied { .. }), "{newer:?}");
    assert_eq!(w.status("A-1").as_deref(), Some("shipped"));
    proceed_tx.send(()).unwrap();
    let o = slow.await.unwrap();
    assert!(matches!(o, Outcome::Applied { .. }), "{o:?}");
    assert_eq!(
        w.status("A-1").as_deref(),
        Some("shipped"),
        "converged on the newest"
    );
    let h: Vec<String> = w.history().into_iter().map(|(_, s)| s).collect();
    assert_eq!(h, vec!["shipped", "processing", "shipped"]);
}

#[tokio::test]
async fn a_redelivered_stale_event_reasserts_the_newest_status() {
    let w = world().await;
    w.handle(&job(100, 7, t(5)), 1).await;
    // Someone else's write left the shop behind without our knowledge.
    w.shop.add_order(SHOP, "A-1", "processing");
    let o = w.applier.process(&job(100, 3, t(2)), 2).await;
    assert!(is_ignored(&o, IgnoreReason::Stale), "{o:?}");
    assert_eq!(w.status("A-1").as_deref(), Some("shipped"));
}

#[tokio::test]
async fn the_shop_is_not_set_back_after_it_moved_on() {
    let w = world().await;
    w.handle(&job(100, 7, t(1)), 1).await;
    // The merchant moved on in the shop and order-push recorded it.
    w.shop.add_order(SHOP, "A-1", "done");
    w.ledger
        .record_shop_status(CONN, "A-1", "done", Some(12), t(3))
        .await
        .unwrap();
    // A late duplicate of the first event must not flip it back.
    let o = w.applier.process(&job(100, 7, t(1)), 1).await;
    assert!(is_ignored(&o, IgnoreReason::Duplicate), "{o:?}");
    assert_eq!(w.status("A-1").as_deref(), Some("done"));
}

#[tokio::test]
async fn consumer_retries_then_redrives_to_the_dead_letter_queue() {
    let w = world().await;
    w.shop.set_down(true);
    let dlq = Arc::new(MemoryQueue::new("status-dlq"));
    let q: Arc<dyn Queue> = Arc::new(MemoryQueue::with_redrive(
        "status",
        Redrive {
            dead_letter: dlq.clone(),
            max_receives: 3,
        },
    ));
    q.send(Outgoing::new(job(100, 7, t(1)).to_body()))
        .await
        .unwrap();
    let opts = ConsumerOptions {
        batch: 10,
        wait: Duration::from_millis(100),
        visibility: Duration::from_secs(30),
    };
    let mut received = 0;
    for _ in 0..20 {
        received += poll_once(&w.applier, &q, None, opts).await.unwrap();
        if dlq.approximate_len().await.unwrap() > 0 {
            break;
        }
    }
    assert_eq!(received, 3, "delivered max_receives times");
    assert_eq!(dlq.approximate_len().await.unwrap(), 1);
    let st = w.journal.status(CONN).await.unwrap();
    assert!(st.last_error.unwrap().message.contains("after 3 attempts"));
}

#[tokio::test]
async fn consumer_writes_a_reasoned_dead_letter_when_it_has_the_queue() {
    let w = world().await;
    let dlq = Arc::new(MemoryQueue::new("status-dlq"));
    let q: Arc<dyn Queue> = Arc::new(MemoryQueue::new("status"));
    q.send(Outgoing::new("{\"v\":9}")).await.unwrap();
    let opts = ConsumerOptions {
        wait: Duration::ZERO,
        ..ConsumerOptions::default()
    };
    assert_eq!(
        poll_once(&w.applier, &q, Some(dlq.clone()), opts)
            .await
            .unwrap(),
        1
    );
    assert_eq!(q.approximate_len().await.unwrap(), 0, "acknowledged");
    let letters = dlq.bodies();
    assert_eq!(letters.len(), 1);
    let letter: queue::DeadLetter = serde_json::from_str(&letters[0]).unwrap();
    assert_eq!(letter.kind, "status_update");
    assert_eq!(letter.original, "{\"v\":9}");
    assert!(!letter.reason.is_empty());
}

#[tokio::test]
async fn lambda_batches_report_only_the_failed_items() {
    let w = world().await;
    let q = Arc::new(MemoryQueue::new("status"));
    let transport = Transport {
        source: Some(q.clone()),
        dead_letter: None,
    };
    let good = job(100, 7, t(1)).to_body();
    // A linked order whose shop call will fail.
    let bad = job(100, 12, t(2));
    w.shop.set_down(false);
    let event: aws_lambda_events::event::sqs::SqsEvent =
        serde_json::from_value(serde_json::json!({
            "Records": [
                {"messageId": "m1", "receiptHandle": "r1", "body": good,
                 "attributes": {"ApproximateReceiveCount": "1"}},
                {"messageId": "m2", "receiptHandle": "r2", "body": "garbage",
                 "attributes": {"ApproximateReceiveCount": "1"}},
            ]
        }))
        .unwrap();
    let resp = handle_sqs_event(&w.applier, &transport, event, None).await;
    let failed: Vec<&str> = resp
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(failed, vec!["m2"]);
    assert_eq!(w.status("A-1").as_deref(), Some("shipped"));

    w.shop.set_down(true);
    let event: aws_lambda_events::event::sqs::SqsEvent =
        serde_json::from_value(serde_json::json!({
            "Records": [{"messageId": "m3", "receiptHandle": "r3", "body": bad.to_body(),
                         "attributes": {"ApproximateReceiveCount": "2"}}]
        }))
        .unwrap();
    let resp = handle_sqs_event(&w.applier, &transport, event, None).await;
    assert_eq!(resp.batch_item_failures.len(), 1);
}

#[test]
fn backoff_doubles_up_to_the_cap() {
    let p = RetryPolicy::default();
    let secs: Vec<u64> = (1..=7).map(|n| p.delay(n).as_secs()).collect();
    assert_eq!(secs, vec![30, 60, 120, 240, 480, 900, 900]);
    assert_eq!(p.delay(0).as_secs(), 30);
    assert_eq!(p.delay(u32::MAX).as_secs(), 900);
}

#[test]
fn queue_urls_from_arns() {
    assert_eq!(
        consumer::queue_url_from_arn("arn:aws:sqs:eu-central-1:123456789012:shop-keycrm-StatusUpdatesQueue-AbC").as_deref(),
        Some("https://sqs.eu-central-1.amazonaws.com/123456789012/shop-keycrm-StatusUpdatesQueue-AbC")
    );
    assert_eq!(
        consumer::queue_url_from_arn("arn:aws-cn:sqs:cn-north-1:123456789012:q").as_deref(),
        Some("https://sqs.cn-north-1.amazonaws.com.cn/123456789012/q")
    );
    assert_eq!(
        consumer::queue_url_from_arn("arn:aws:sns:eu-central-1:1:q"),
        None
    );
    assert_eq!(consumer::queue_url_from_arn("garbage"), None);
}

/// A shop port with a bug on one order (it panics) and a stall on another (it never answers).
struct FaultyShop {
    inner: Arc<MemoryShop>,
    panic_on: &'static str,
    hang_on: &'static str,
}

#[async_trait]
impl ShopOrders for FaultyShop {
    async fn reference(&self, shop_id: &str) -> Result<ShopReference, ShopError> {
        self.inner.reference(shop_id).await
    }
    async fn set_order_status(
        &self,
        shop_id: &str,
        order: &str,
        status: &str,
    ) -> Result<(), ShopError> {
        if order == self.panic_on {
            panic!("index out of bounds: the len is 0 but the index is 3");
        }
        if order == self.hang_on {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        self.inner.set_order_status(shop_id, order, status).await
    }
}

fn sqs_event(records: &[(&str, String)]) -> aws_lambda_events::event::sqs::SqsEvent {
    let records: Vec<serde_json::Value> = records
        .iter()
        .map(|(id, body)| {
            serde_json::json!({"messageId": id, "receiptHandle": format!("r-{id}"), "body": body,
                "attributes": {"ApproximateReceiveCount": "1"}})
        })
        .collect();
    serde_json::from_value(serde_json::json!({ "Records": records })).unwrap()
}

async fn faulty_world() -> World {
    let shop = Arc::new(MemoryShop::new());
    let port: Arc<dyn ShopOrders> = Arc::new(FaultyShop {
        inner: shop.clone(),
        panic_on: "A-3",
        hang_on: "A-4",
    });
    let w = world_with(true, Some(port), shop).await;
    w.shop.add_order(SHOP, "A-4", "new");
    w.shop.add_order(SHOP, "A-5", "new");
    seed_linked(&w.ledger, "A-4", Target::Order, 104).await;
    seed_linked(&w.ledger, "A-5", Target::Order, 105).await;
    w
}

#[tokio::test]
async fn a_poison_status_change_is_dead_lettered_alone_with_a_reason() {
    let w = faulty_world().await;
    let dlq = Arc::new(MemoryQueue::new("status-dlq"));
    let transport = Transport {
        source: Some(Arc::new(MemoryQueue::new("status"))),
        dead_letter: Some(dlq.clone()),
    };
    let event = sqs_event(&[
        ("ok-1", job(100, 7, t(1)).to_body()),
        ("poison", card_job(555, Some(1), 1002, t(1)).to_body()),
        ("ok-2", job(105, 3, t(1)).to_body()),
    ]);
    let resp = handle_sqs_event(&w.applier, &transport, event, None).await;
    assert!(resp.batch_item_failures.is_empty(), "{resp:?}");
    assert_eq!(w.status("A-1").as_deref(), Some("shipped"));
    assert_eq!(w.status("A-5").as_deref(), Some("processing"));
    let letters = dlq.bodies();
    assert_eq!(letters.len(), 1);
    let letter: queue::DeadLetter = serde_json::from_str(&letters[0]).unwrap();
    assert!(letter.reason.contains("panic"), "{}", letter.reason);
    assert_eq!(
        letter.original,
        card_job(555, Some(1), 1002, t(1)).to_body()
    );
    let st = w.journal.status(CONN).await.unwrap();
    assert!(st.last_error.unwrap().message.contains("panic"));
}

#[tokio::test]
async fn a_hung_change_is_cut_at_the_deadline_and_applied_ones_are_not_redelivered() {
    let w = faulty_world().await;
    let q = Arc::new(MemoryQueue::new("status"));
    let transport = Transport {
        source: Some(q.clone()),
        dead_letter: None,
    };
    let event = sqs_event(&[
        ("ok-1", job(100, 7, t(1)).to_body()),
        ("hang", job(104, 7, t(1)).to_body()),
        ("ok-2", job(105, 3, t(1)).to_body()),
    ]);
    let deadline = std::time::Instant::now() + consumer::SETTLE_MARGIN + Duration::from_millis(300);
    let resp = tokio::time::timeout(
        Duration::from_secs(30),
        handle_sqs_event(&w.applier, &transport, event, Some(deadline)),
    )
    .await
    .expect("the batch answers before the invocation is killed");
    assert!(std::time::Instant::now() < deadline, "answered in time");
    let failed: Vec<&str> = resp
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(failed, vec!["hang"], "only the unfinished one comes back");
    assert_eq!(w.status("A-1").as_deref(), Some("shipped"));
    assert_eq!(w.status("A-5").as_deref(), Some("processing"));
    assert_eq!(w.counter("webhooks_applied").await, 2);
}

// The Lambda edge from JSON event fixtures, on this file's in-memory world.
#[path = "../tests/lambda/fixtures.rs"]
mod lambda_fixtures;
