//! The handler with in-memory adapters and the transport-free in-memory KeyCRM: every path of the
//! design, fast. The same paths against DynamoDB/SQS (moto) and the KeyCRM simulator are in
//! `tests/tests/order_push_*.rs` at the workspace root.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use keycrm::models::*;
use mapping::order_map::MappingReport;
use mapping::settings::{AddonLink, DeliveryLink, PaymentLink};
use mapping::{KeycrmReference, OrderSyncType, PipelineWithStatuses, Settings};
use order_push::memory_crm::{MemoryCrm, MemoryCrmFault, MemoryCrmProvider};
use order_push::{Dictionaries, OrderPush, Outcome, PushConfig, RetryPolicy};
use queue::{MemoryQueue, Message, Queue};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::{
    Claim, Connection, ConnectionStore, LedgerEntry, LedgerState, MemoryConnections, MemoryJournal,
    MemoryLedger, OrderLedger, StatusJournal, StoreError, Target, WebhookTokens,
};

const CREATED: &str = include_str!("../../../contracts/order-events/examples/order.created.json");
const STATUS: &str =
    include_str!("../../../contracts/order-events/examples/order.status_changed.json");

fn reference() -> KeycrmReference {
    let status = |id: i64, group_id: i64| OrderStatus {
        id,
        name: format!("s{id}"),
        alias: None,
        group_id,
        is_active: true,
        is_closing_order: false,
    };
    let field = |uuid: &str, ty: &str, options: &[&str]| CustomField {
        id: 0,
        uuid: uuid.into(),
        name: uuid.into(),
        model: None,
        field_type: ty.into(),
        is_multiple: false,
        required: false,
        options: options
            .iter()
            .enumerate()
            .map(|(i, v)| CustomFieldOption {
                id: i as i64 + 1,
                value: v.to_string(),
            })
            .collect(),
    };
    KeycrmReference {
        order_statuses: vec![status(1, 1), status(3, 2), status(12, 5)],
        pipelines: vec![PipelineWithStatuses {
            pipeline: Pipeline {
                id: 1,
                name: "Sales".into(),
            },
            statuses: vec![
                PipelineStatus {
                    id: 101,
                    pipeline_id: 1,
                    title: "new".into(),
                    alias: None,
                    is_final: false,
                },
                PipelineStatus {
                    id: 102,
                    pipeline_id: 1,
                    title: "paid".into(),
                    alias: None,
                    is_final: false,
                },
            ],
        }],
        pipelines_enabled: true,
        delivery_services: vec![DeliveryService {
            id: 3,
            name: "Нова Пошта".into(),
            alias: None,
            source_name: Some("novaposhta".into()),
        }],
        order_fields: vec![
            field("OR_1002", "select", &["Так", "Ні"]),
            field("OR_1004", "switcher", &[]),
        ],
        lead_fields: vec![field("LD_1001", "textarea", &[])],
        ..KeycrmReference::default()
    }
}

fn settings(sync: OrderSyncType) -> Settings {
    Settings {
        order_sync: sync,
        source_id: Some(1),
        order_statuses: mapping::settings::OrderStatusMap::from_legacy([
            ("new".to_string(), 1),
            ("paid".to_string(), 3),
            ("done".to_string(), 12),
        ]),
        card_statuses: mapping::settings::CardStatusMap::from_legacy([
            ("new".to_string(), 1, 101),
            ("paid".to_string(), 1, 102),
        ]),
        payment_map: vec![PaymentLink {
            shop_method: "cod".into(),
            keycrm_method_id: 1,
        }],
        delivery_map: vec![DeliveryLink {
            shop_method: "nova_poshta".into(),
            keycrm_service_id: 3,
        }],
        addon_fields: vec![
            AddonLink {
                addon_id: "gift_wrap".into(),
                field_uuid: "OR_1002".into(),
            },
            AddonLink {
                addon_id: "call_back".into(),
                field_uuid: "OR_1004".into(),
            },
        ],
        ..Settings::default()
    }
}

fn connection(id: &str, shop: &str, sync: OrderSyncType) -> Connection {
    Connection {
        id: id.into(),
        shop_id: shop.into(),
        active: true,
        keycrm_base_url: "http://127.0.0.1:9/v1".into(),
        key_mask: "••••abcd".into(),
        key_fingerprint: format!("fp-{id}"),
        secret_name: format!("test/{id}"),
        settings: settings(sync),
        webhook_tokens: WebhookTokens::default(),
        webhook_generations: Default::default(),
        account_epoch: 0,
        account_switched_at: None,
        version: 1,
        created_at: Utc::now(),
        updated_at: Utc::now(),
    }
}

fn created_event(shop: &str, order_id: &str) -> String {
    let mut v: serde_json::Value = serde_json::from_str(CREATED).unwrap();
    v["shop_id"] = shop.into();
    v["event_id"] = format!("evt-{order_id}").into();
    v["order"]["id"] = order_id.into();
    v["order"]["number"] = order_id.into();
    v.to_string()
}

fn status_event(shop: &str, order_id: &str, status: &str, at: DateTime<Utc>) -> String {
    let mut v: serde_json::Value = serde_json::from_str(STATUS).unwrap();
    v["shop_id"] = shop.into();
    v["order_id"] = order_id.into();
    v["status"] = status.into();
    v["occurred_at"] = at.to_rfc3339().into();
    v.to_string()
}

static SEQ: AtomicU32 = AtomicU32::new(0);

fn message(body: &str) -> Message {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    Message {
        id: format!("m{n}"),
        body: body.to_string(),
        receipt: format!("r{n}"),
        receive_count: 1,
        attributes: Default::default(),
    }
}

struct World {
    push: OrderPush,
    crm: Arc<MemoryCrm>,
    ledger: Arc<dyn OrderLedger>,
    journal: Arc<MemoryJournal>,
    connections: Arc<MemoryConnections>,
    retries: Arc<MemoryQueue>,
    dlq: Arc<MemoryQueue>,
}

fn world_with(ledger: Arc<dyn OrderLedger>, config: PushConfig) -> World {
    let crm = Arc::new(MemoryCrm::new(reference()));
    let journal = Arc::new(MemoryJournal::default());
    let connections = Arc::new(MemoryConnections::default());
    let retries = Arc::new(MemoryQueue::new("orders"));
    let dlq = Arc::new(MemoryQueue::new("orders-dlq"));
    let push = OrderPush {
        connections: connections.clone(),
        ledger: ledger.clone(),
        journal: journal.clone(),
        crm: Arc::new(MemoryCrmProvider(crm.clone())),
        retry_queue: retries.clone(),
        dead_letters: dlq.clone(),
        dictionaries: Arc::new(Dictionaries::default()),
        config,
    };
    World {
        push,
        crm,
        ledger,
        journal,
        connections,
        retries,
        dlq,
    }
}

fn quick() -> PushConfig {
    PushConfig {
        lease: Duration::from_millis(300),
        retry: RetryPolicy {
            base: Duration::ZERO,
            max_delay: Duration::ZERO,
            max_attempts: 5,
            busy_delay: Duration::ZERO,
            unknown_order_attempts: 3,
        },
        ..PushConfig::default()
    }
}

async fn world(sync: OrderSyncType) -> World {
    let w = world_with(Arc::new(MemoryLedger::new()), quick());
    w.connections
        .create(&connection("c1", "shop-1", sync))
        .await
        .unwrap();
    w
}

impl World {
    async fn run(&self, bodies: &[&str]) -> Vec<Outcome> {
        let msgs = bodies.iter().map(|b| message(b)).collect();
        let r = self.push.handle_batch(msgs).await;
        assert!(r.failed_message_ids.is_empty(), "{r:?}");
        r.outcomes.into_iter().map(|o| o.outcome).collect()
    }

    /// Delivers every deferred copy waiting on the retry queue (with its attributes).
    async fn redeliver(&self) -> Vec<Outcome> {
        let msgs = self
            .retries
            .receive(10, Duration::from_millis(50), Duration::from_secs(30))
            .await
            .unwrap();
        for m in &msgs {
            self.retries.delete(&m.receipt).await.unwrap();
        }
        let r = self.push.handle_batch(msgs).await;
        r.outcomes.into_iter().map(|o| o.outcome).collect()
    }

    async fn dead_letters(&self) -> Vec<serde_json::Value> {
        self.dlq
            .bodies()
            .iter()
            .map(|b| serde_json::from_str(b).unwrap())
            .collect()
    }

    async fn entry(&self, order: &str) -> LedgerEntry {
        self.ledger
            .get("c1", order)
            .await
            .unwrap()
            .expect("ledger entry")
    }

    async fn counter(&self, name: &str) -> u64 {
        self.journal.status("c1").await.unwrap().counters[name]
    }
}

fn is_created(o: &Outcome) -> bool {
    matches!(o, Outcome::Created { .. })
}

#[tokio::test]
async fn a_new_order_is_created_once_with_one_request() {
    let w = world(OrderSyncType::Orders).await;
    let out = w.run(&[&created_event("shop-1", "A1")]).await;
    assert!(
        matches!(
            &out[0],
            Outcome::Created {
                keycrm_id: 5001,
                recovered: false,
                target: Target::Order,
                ..
            }
        ),
        "{out:?}"
    );
    assert_eq!(
        w.crm.total_requests(),
        2,
        "create + one dictionary load: {:?}",
        w.crm.requests()
    );
    let orders = w.crm.orders();
    let body = &orders[0].1;
    // Named with its shop: another shop on the same KeyCRM account may have an order A1.
    assert_eq!(body.source_uuid.as_deref(), Some("shop-1:A1"));
    assert_eq!(body.buyer.phone.as_deref(), Some("+380501112233"));
    assert_eq!(
        body.shipping.as_ref().unwrap().warehouse_ref.as_deref(),
        Some("1ec09d88-e1c2-11e3-8c4a-0050568002cf")
    );
    let e = w.entry("A1").await;
    assert_eq!(
        (e.state, e.keycrm_id, e.maybe_committed),
        (LedgerState::Created, Some(5001), false)
    );
    assert_eq!(e.shop_status.as_deref(), Some("new"));
    assert_eq!(w.counter("orders_pushed").await, 1);

    // The next order of the same connection costs exactly one request: dictionaries are cached.
    w.run(&[&created_event("shop-1", "A2")]).await;
    assert_eq!(w.crm.requests()["load_reference"], 1);
    assert_eq!(w.crm.requests()["create_order"], 2);
}

#[tokio::test]
async fn duplicates_in_one_batch_and_later_make_one_order() {
    let w = world(OrderSyncType::Orders).await;
    let ev = created_event("shop-1", "D1");
    let out = w.run(&[&ev, &ev, &ev]).await;
    assert_eq!(out.iter().filter(|o| is_created(o)).count(), 1, "{out:?}");
    assert!(
        out.iter()
            .skip(1)
            .all(|o| matches!(o, Outcome::AlreadyDone { .. })),
        "{out:?}"
    );
    let again = w.run(&[&ev]).await;
    assert!(matches!(again[0], Outcome::AlreadyDone { .. }));
    assert_eq!(w.crm.orders().len(), 1);
    assert_eq!(w.crm.requests()["create_order"], 1);
}

#[tokio::test]
async fn a_rate_limited_create_is_deferred_and_then_created() {
    let w = world(OrderSyncType::Orders).await;
    w.crm
        .fail_next([MemoryCrmFault::RateLimited(Duration::from_secs(1))]);
    let mut w = w;
    w.push.config.retry.max_delay = Duration::from_secs(60);
    let out = w.run(&[&created_event("shop-1", "R1")]).await;
    match &out[0] {
        Outcome::Deferred { attempt, delay, .. } => {
            assert_eq!(*attempt, 2);
            assert!(
                *delay >= Duration::from_secs(1),
                "Retry-After is a floor: {delay:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    let e = w.entry("R1").await;
    assert_eq!(
        (e.state, e.claim_holder.clone(), e.maybe_committed),
        (LedgerState::Pending, None, false)
    );
    // The deferred copy carries its attempt number.
    let copies = w
        .retries
        .receive(10, Duration::from_secs(3), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(copies[0].attribute("attempt"), Some("2"));
    let r = w.push.handle_batch(copies).await;
    assert!(is_created(&r.outcomes[0].outcome), "{r:?}");
    assert_eq!(w.crm.orders().len(), 1);
    assert!(
        !w.crm.requests().contains_key("find_orders"),
        "a 429 proves nothing was stored"
    );
}

#[tokio::test]
async fn commit_then_timeout_is_found_by_source_uuid_not_created_again() {
    let w = world(OrderSyncType::Orders).await;
    w.crm.fail_next([MemoryCrmFault::CommitThenTimeout]);
    let out = w.run(&[&created_event("shop-1", "T1")]).await;
    assert!(matches!(out[0], Outcome::Deferred { .. }), "{out:?}");
    assert!(w.entry("T1").await.maybe_committed);
    let out = w.redeliver().await;
    assert!(
        matches!(
            &out[0],
            Outcome::Created {
                recovered: true,
                keycrm_id: 5001,
                ..
            }
        ),
        "{out:?}"
    );
    assert_eq!(w.crm.orders().len(), 1);
    assert_eq!(w.crm.requests()["find_orders"], 1);
    assert_eq!(w.crm.requests()["create_order"], 1);
    assert!(!w.entry("T1").await.maybe_committed);
}

#[tokio::test]
async fn a_5xx_storm_ends_with_every_order_created_once() {
    let w = world(OrderSyncType::Orders).await;
    w.crm.fail_next([
        MemoryCrmFault::Unavailable,
        MemoryCrmFault::Unavailable,
        MemoryCrmFault::RateLimited(Duration::ZERO),
        MemoryCrmFault::Unavailable,
    ]);
    let bodies: Vec<String> = (0..4)
        .map(|i| created_event("shop-1", &format!("S{i}")))
        .collect();
    let refs: Vec<&str> = bodies.iter().map(String::as_str).collect();
    w.run(&refs).await;
    for _ in 0..4 {
        if w.retries.approximate_len().await.unwrap() == 0 {
            break;
        }
        w.redeliver().await;
    }
    let mut uuids: Vec<String> = w
        .crm
        .orders()
        .iter()
        .map(|(o, _)| o.source_uuid.clone().unwrap())
        .collect();
    uuids.sort();
    assert_eq!(
        uuids,
        vec!["shop-1:S0", "shop-1:S1", "shop-1:S2", "shop-1:S3"]
    );
    assert!(w.dlq.bodies().is_empty());
}

/// A ledger whose `mark_created` and `release` fail for one order, as if the process died
/// right after KeyCRM answered.
struct CrashingLedger {
    inner: MemoryLedger,
    crash_order: String,
    crashes_left: AtomicU32,
}

#[async_trait]
impl OrderLedger for CrashingLedger {
    async fn claim(
        &self,
        c: &str,
        o: &str,
        t: Target,
        h: &str,
        l: Duration,
        e: &str,
    ) -> Result<Claim, StoreError> {
        self.inner.claim(c, o, t, h, l, e).await
    }
    async fn mark_attempt(&self, c: &str, o: &str, h: &str) -> Result<(), StoreError> {
        self.inner.mark_attempt(c, o, h).await
    }
    async fn mark_created(
        &self,
        c: &str,
        o: &str,
        h: &str,
        id: i64,
        r: &MappingReport,
        s: Option<&str>,
        k: Option<i64>,
    ) -> Result<(), StoreError> {
        if o == self.crash_order && self.crashes_left.load(Ordering::SeqCst) > 0 {
            return Err(StoreError::Unavailable("crashed".into()));
        }
        self.inner.mark_created(c, o, h, id, r, s, k).await
    }
    async fn mark_failed(
        &self,
        c: &str,
        o: &str,
        h: &str,
        e: &str,
        f: &BTreeMap<String, Vec<String>>,
    ) -> Result<(), StoreError> {
        self.inner.mark_failed(c, o, h, e, f).await
    }
    async fn mark_skipped(&self, c: &str, o: &str, h: &str, r: &str) -> Result<(), StoreError> {
        self.inner.mark_skipped(c, o, h, r).await
    }
    async fn release(&self, c: &str, o: &str, h: &str, e: &str, m: bool) -> Result<(), StoreError> {
        if o == self.crash_order && self.crashes_left.fetch_sub(1, Ordering::SeqCst) > 0 {
            return Err(StoreError::Unavailable("crashed".into()));
        }
        self.inner.release(c, o, h, e, m).await
    }
    async fn get(&self, c: &str, o: &str) -> Result<Option<LedgerEntry>, StoreError> {
        self.inner.get(c, o).await
    }
    async fn find_by_keycrm_id(
        &self,
        c: &str,
        t: Target,
        id: i64,
    ) -> Result<Option<LedgerEntry>, StoreError> {
        self.inner.find_by_keycrm_id(c, t, id).await
    }
    async fn adopt(&self, c: &str, o: &str, t: Target, id: i64) -> Result<LedgerEntry, StoreError> {
        self.inner.adopt(c, o, t, id).await
    }
    async fn record_keycrm_status(
        &self,
        c: &str,
        o: &str,
        k: i64,
        at: DateTime<Utc>,
        s: &str,
    ) -> Result<bool, StoreError> {
        self.inner.record_keycrm_status(c, o, k, at, s).await
    }
    async fn record_shop_status(
        &self,
        c: &str,
        o: &str,
        s: &str,
        k: Option<i64>,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.inner.record_shop_status(c, o, s, k, at).await
    }
    async fn reset_for_repush(&self, c: &str, o: &str) -> Result<LedgerEntry, StoreError> {
        self.inner.reset_for_repush(c, o).await
    }
    async fn reserve_shop_push(
        &self,
        c: &str,
        o: &str,
        at: DateTime<Utc>,
        h: &str,
        lease: Duration,
    ) -> Result<store::PushReservation, StoreError> {
        self.inner.reserve_shop_push(c, o, at, h, lease).await
    }
    async fn finish_shop_push(
        &self,
        c: &str,
        o: &str,
        h: &str,
        s: &str,
        k: Option<i64>,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.inner.finish_shop_push(c, o, h, s, k, at).await
    }
    async fn release_shop_push(&self, c: &str, o: &str, h: &str) -> Result<(), StoreError> {
        self.inner.release_shop_push(c, o, h).await
    }
    async fn unskip(&self, c: &str, o: &str) -> Result<LedgerEntry, StoreError> {
        self.inner.unskip(c, o).await
    }
    async fn skipped(
        &self,
        c: &str,
        since: Option<chrono::DateTime<Utc>>,
        limit: usize,
    ) -> Result<Vec<LedgerEntry>, StoreError> {
        self.inner.skipped(c, since, limit).await
    }
    async fn sample_created(&self, c: &str, limit: usize) -> Result<Vec<LedgerEntry>, StoreError> {
        self.inner.sample_created(c, limit).await
    }
}

#[tokio::test]
async fn a_crash_after_the_create_leaves_a_claim_the_retry_recovers_from() {
    let ledger = Arc::new(CrashingLedger {
        inner: MemoryLedger::new(),
        crash_order: "X1".into(),
        crashes_left: AtomicU32::new(1),
    });
    let w = world_with(ledger.clone(), quick());
    w.connections
        .create(&connection("c1", "shop-1", OrderSyncType::Orders))
        .await
        .unwrap();
    let out = w.run(&[&created_event("shop-1", "X1")]).await;
    assert!(matches!(out[0], Outcome::Deferred { .. }), "{out:?}");
    let e = w.entry("X1").await;
    assert!(
        e.maybe_committed && e.claim_holder.is_some(),
        "nothing after the create was written: {e:?}"
    );
    assert_eq!(w.crm.orders().len(), 1);

    // While the dead attempt's lease runs, a retry waits; after it, the retry searches.
    let out = w.redeliver().await;
    assert!(matches!(out[0], Outcome::Deferred { .. }), "busy: {out:?}");
    tokio::time::sleep(Duration::from_millis(350)).await;
    let out = w.redeliver().await;
    assert!(
        matches!(
            &out[0],
            Outcome::Created {
                recovered: true,
                ..
            }
        ),
        "{out:?}"
    );
    assert_eq!(w.crm.orders().len(), 1);
    assert_eq!(w.crm.requests()["create_order"], 1);
}

#[tokio::test]
async fn a_validation_error_fails_the_order_visibly_and_a_repush_after_the_fix_creates_it() {
    let w = world(OrderSyncType::Orders).await;
    let mut errors = BTreeMap::new();
    errors.insert(
        "shipping.delivery_service_id".to_string(),
        vec!["The selected delivery service id is invalid.".to_string()],
    );
    w.crm
        .fail_next([MemoryCrmFault::Validation(errors.clone())]);
    let out = w.run(&[&created_event("shop-1", "V1")]).await;
    assert!(
        matches!(&out[0], Outcome::DeadLettered { kind, .. } if kind == "validation"),
        "{out:?}"
    );
    let e = w.entry("V1").await;
    assert_eq!(e.state, LedgerState::Failed);
    assert_eq!(e.field_errors, errors);
    let status = w.journal.status("c1").await.unwrap();
    assert_eq!(status.failures[0].shop_order_id, "V1");
    assert_eq!(status.failures[0].field_errors, errors);
    assert_eq!(status.counters["orders_failed"], 1);
    let dl = &w.dead_letters().await[0];
    assert_eq!(dl["kind"], "validation");
    assert!(
        dl["reason"]
            .as_str()
            .unwrap()
            .contains("delivery service id is invalid"),
        "{dl}"
    );
    assert_eq!(dl["order_id"], "V1");
    assert_eq!(dl["shop_id"], "shop-1");
    assert_eq!(
        dl["original"].as_str().unwrap(),
        created_event("shop-1", "V1")
    );

    // The same event again is not retried behind the merchant's back.
    let out = w.run(&[&created_event("shop-1", "V1")]).await;
    assert!(
        matches!(&out[0], Outcome::DeadLettered { kind, .. } if kind == "failed_earlier"),
        "{out:?}"
    );

    // The merchant fixes the mapping and re-pushes.
    jobs::repush(w.ledger.as_ref(), w.retries.as_ref(), "c1", "V1")
        .await
        .unwrap();
    let out = w.redeliver().await;
    assert!(is_created(&out[0]), "{out:?}");
    assert!(
        w.journal.status("c1").await.unwrap().failures.is_empty(),
        "failure cleared"
    );
    assert_eq!(w.crm.orders().len(), 1);
    let err = jobs::repush(w.ledger.as_ref(), w.retries.as_ref(), "c1", "V1")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already in KeyCRM"), "{err}");
    let err = jobs::repush(w.ledger.as_ref(), w.retries.as_ref(), "c1", "nope")
        .await
        .unwrap_err();
    assert!(matches!(err, jobs::RepushError::NotFound(_)));
}

#[tokio::test]
async fn malformed_events_are_dead_lettered_with_reasons_without_blocking_the_batch() {
    let w = world(OrderSyncType::Orders).await;
    let mut wrong_type: serde_json::Value =
        serde_json::from_str(&created_event("shop-1", "M1")).unwrap();
    wrong_type["order"]["total"] = "2121".into();
    let mut missing: serde_json::Value =
        serde_json::from_str(&created_event("shop-1", "M2")).unwrap();
    missing["order"].as_object_mut().unwrap().remove("items");
    let mut version: serde_json::Value =
        serde_json::from_str(&created_event("shop-1", "M3")).unwrap();
    version["version"] = 2.into();
    let huge = format!("{{\"pad\": \"{}\"}}", "x".repeat(300 * 1024));
    let good = created_event("shop-1", "OK1");
    let out = w
        .run(&[
            "not json",
            &wrong_type.to_string(),
            &missing.to_string(),
            &version.to_string(),
            &huge,
            &good,
        ])
        .await;
    assert!(is_created(&out[5]), "{out:?}");
    let dls = w.dead_letters().await;
    assert_eq!(dls.len(), 5);
    let reasons: Vec<&str> = dls.iter().map(|d| d["reason"].as_str().unwrap()).collect();
    assert!(reasons[0].contains("not valid JSON"), "{reasons:?}");
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("order.total") && r.contains("expected a number")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("order.items") && r.contains("required")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("version 2")),
        "{reasons:?}"
    );
    assert!(reasons.iter().any(|r| r.contains("bytes")), "{reasons:?}");
    assert!(dls.iter().all(|d| d["kind"] == "malformed"));
    assert_eq!(
        w.crm.requests()["create_order"],
        1,
        "no KeyCRM call for malformed events"
    );
    let status = w.journal.status("c1").await.unwrap();
    assert!(
        status.last_error.unwrap().message.contains("refused"),
        "the merchant sees it"
    );
}

#[tokio::test]
async fn sync_none_inactive_and_unknown_shops_are_skipped() {
    let w = world(OrderSyncType::None).await;
    let mut inactive = connection("c2", "shop-2", OrderSyncType::Orders);
    inactive.active = false;
    w.connections.create(&inactive).await.unwrap();
    let out = w
        .run(&[
            &created_event("shop-1", "N1"),
            &created_event("shop-2", "N2"),
            &created_event("shop-9", "N3"),
        ])
        .await;
    assert!(
        out.iter().all(|o| matches!(o, Outcome::Skipped { .. })),
        "{out:?}"
    );
    assert_eq!(w.crm.total_requests(), 0);
    assert_eq!(w.entry("N1").await.state, LedgerState::Skipped);
    assert_eq!(w.counter("orders_skipped").await, 1);
    assert_eq!(
        w.journal.status("c2").await.unwrap().counters["orders_skipped"],
        1
    );
}

#[tokio::test]
async fn status_changes_are_pushed_once_and_never_echoed() {
    let w = world(OrderSyncType::Orders).await;
    let t0 = Utc::now();
    // A change arriving before its order is created waits for it.
    let early = status_event("shop-1", "ST1", "paid", t0);
    let out = w.run(&[&early]).await;
    assert!(matches!(out[0], Outcome::Deferred { .. }), "{out:?}");
    w.run(&[&created_event("shop-1", "ST1")]).await;
    let out = w.redeliver().await;
    assert!(
        matches!(
            out[0],
            Outcome::StatusPushed {
                keycrm_status_id: 3,
                ..
            }
        ),
        "{out:?}"
    );
    assert_eq!(w.crm.orders()[0].0.status_id, 3);
    assert_eq!(w.counter("statuses_pushed").await, 1);

    // The same event again, and an older one, change nothing.
    let out = w
        .run(&[
            &early,
            &status_event("shop-1", "ST1", "new", t0 - chrono::Duration::seconds(5)),
        ])
        .await;
    assert!(
        out.iter().all(|o| matches!(o, Outcome::Skipped { .. })),
        "{out:?}"
    );

    // KeyCRM moved it to "done"; the connector applied that to the shop, which echoes it.
    let kc_at = t0 + chrono::Duration::seconds(10);
    w.crm.set_status(5001, 12);
    assert!(w
        .ledger
        .record_keycrm_status("c1", "ST1", 12, kc_at, "done")
        .await
        .unwrap());
    let echo = status_event(
        "shop-1",
        "ST1",
        "done",
        kc_at + chrono::Duration::seconds(1),
    );
    let mut by_keycrm: serde_json::Value = serde_json::from_str(&status_event(
        "shop-1",
        "ST1",
        "paid",
        kc_at + chrono::Duration::seconds(2),
    ))
    .unwrap();
    by_keycrm["changed_by"] = "keycrm".into();
    let out = w.run(&[&echo, &by_keycrm.to_string()]).await;
    assert!(
        out.iter().all(|o| matches!(o, Outcome::Skipped { .. })),
        "{out:?}"
    );
    assert_eq!(w.crm.requests()["set_order_status"], 1, "no ping-pong");

    // A real change by the merchant afterwards goes through.
    let out = w
        .run(&[&status_event(
            "shop-1",
            "ST1",
            "paid",
            kc_at + chrono::Duration::seconds(3),
        )])
        .await;
    assert!(matches!(out[0], Outcome::StatusPushed { .. }), "{out:?}");
    assert_eq!(w.crm.orders()[0].0.status_id, 3);
    let e = w.entry("ST1").await;
    assert_eq!(
        (e.shop_status.as_deref(), e.applied_from_keycrm.clone()),
        (Some("paid"), None)
    );
}

#[tokio::test]
async fn status_changes_of_unknown_orders_are_dropped_after_a_few_tries() {
    let w = world(OrderSyncType::Orders).await;
    w.run(&[&status_event("shop-1", "GHOST", "paid", Utc::now())])
        .await;
    let mut last = Vec::new();
    for _ in 0..2 {
        last = w.redeliver().await;
    }
    assert!(
        matches!(&last[0], Outcome::Skipped { reason } if reason.contains("never pushed")),
        "{last:?}"
    );
    assert_eq!(w.retries.approximate_len().await.unwrap(), 0);
}

#[tokio::test]
async fn a_non_default_initial_status_is_set_right_after_creation() {
    let w = world(OrderSyncType::Orders).await;
    let mut v: serde_json::Value = serde_json::from_str(&created_event("shop-1", "P1")).unwrap();
    v["order"]["status"] = "paid".into();
    w.run(&[&v.to_string()]).await;
    assert_eq!(w.crm.orders()[0].0.status_id, 3);
    let e = w.entry("P1").await;
    assert_eq!(
        (e.keycrm_status_id, e.shop_status.as_deref()),
        (Some(3), Some("paid"))
    );
    assert_eq!(w.crm.requests()["set_order_status"], 1);
}

#[tokio::test]
async fn an_initial_status_that_cannot_be_set_now_follows_as_a_status_change() {
    let w = world(OrderSyncType::Orders).await;
    let mut v: serde_json::Value = serde_json::from_str(&created_event("shop-1", "Q1")).unwrap();
    v["order"]["status"] = "paid".into();
    w.crm.fail_next_on(
        "set_order_status",
        [MemoryCrmFault::RateLimited(Duration::from_secs(1))],
    );
    let out = w.run(&[&v.to_string()]).await;
    assert!(is_created(&out[0]), "the order exists: {out:?}");
    assert_eq!(w.crm.orders()[0].0.status_id, 1);
    let e = w.entry("Q1").await;
    assert_eq!(e.shop_status, None, "its status is not in KeyCRM yet");
    let out = w.redeliver().await;
    assert!(
        matches!(
            out[0],
            Outcome::StatusPushed {
                keycrm_status_id: 3,
                ..
            }
        ),
        "{out:?}"
    );
    assert_eq!(w.crm.orders()[0].0.status_id, 3);
    assert_eq!(w.crm.orders().len(), 1);
}

#[tokio::test]
async fn cards_are_created_in_the_mapped_pipeline_and_recovered_without_source_uuid() {
    let w = world(OrderSyncType::Pipelines).await;
    let mut conn = w.connections.get("c1").await.unwrap().unwrap();
    conn.settings.addon_fields = vec![AddonLink {
        addon_id: "gift_wrap".into(),
        field_uuid: "LD_1001".into(),
    }];
    conn.version += 1;
    w.connections.update(&conn).await.unwrap();

    let out = w.run(&[&created_event("shop-1", "K1")]).await;
    assert!(
        matches!(
            &out[0],
            Outcome::Created {
                target: Target::Card,
                ..
            }
        ),
        "{out:?}"
    );
    let cards = w.crm.cards();
    assert_eq!(cards[0].body.pipeline_id, 1);
    assert_eq!(cards[0].body.title.as_deref(), Some("Замовлення №K1"));
    assert_eq!(
        cards[0].body.contact.phone.as_deref(),
        Some("+380501112233")
    );
    assert_eq!(cards[0].body.utm_source.as_deref(), Some("instagram"));
    assert_eq!(cards[0].body.custom_fields[0].uuid, "LD_1001");

    w.crm.fail_next([MemoryCrmFault::CommitThenTimeout]);
    let out = w.run(&[&created_event("shop-1", "K2")]).await;
    assert!(matches!(out[0], Outcome::Deferred { .. }), "{out:?}");
    let out = w.redeliver().await;
    assert!(
        matches!(
            &out[0],
            Outcome::Created {
                recovered: true,
                target: Target::Card,
                ..
            }
        ),
        "{out:?}"
    );
    assert_eq!(w.crm.cards().len(), 2);
    assert_eq!(
        w.crm.requests()["cards_page"],
        1,
        "found by its marker in one request"
    );

    // A shop status change moves the card.
    let out = w
        .run(&[&status_event("shop-1", "K1", "paid", Utc::now())])
        .await;
    assert!(
        matches!(
            out[0],
            Outcome::StatusPushed {
                keycrm_status_id: 102,
                ..
            }
        ),
        "{out:?}"
    );
    assert_eq!(w.crm.cards()[0].status_id, 102);
}

#[tokio::test]
async fn retries_are_bounded_and_end_in_the_dead_letter_queue() {
    let w = world(OrderSyncType::Orders).await;
    w.crm
        .fail_next((0..5).map(|_| MemoryCrmFault::RateLimited(Duration::ZERO)));
    w.run(&[&created_event("shop-1", "E1")]).await;
    let mut last = Vec::new();
    for _ in 0..4 {
        last = w.redeliver().await;
    }
    assert!(
        matches!(&last[0], Outcome::DeadLettered { kind, reason } if kind == "retries_exhausted" && reason.contains("5 attempts")),
        "{last:?}"
    );
    assert_eq!(w.entry("E1").await.state, LedgerState::Failed);
    assert_eq!(w.crm.orders().len(), 0);
    assert_eq!(w.journal.status("c1").await.unwrap().failures.len(), 1);
}

#[tokio::test]
async fn work_past_the_deadline_is_deferred_and_a_cut_off_attempt_gives_its_claim_back() {
    let mut w = world(OrderSyncType::Orders).await;
    w.push.config.deadline_margin = Duration::from_millis(50);
    w.crm.set_latency(Duration::from_millis(400));
    let msgs = vec![
        message(&created_event("shop-1", "DL1")),
        message(&created_event("shop-1", "DL2")),
    ];
    let r = w
        .push
        .handle_batch_until(msgs, Some(Instant::now() + Duration::from_millis(250)))
        .await;
    assert!(r.failed_message_ids.is_empty());
    let outs: Vec<&Outcome> = r.outcomes.iter().map(|o| &o.outcome).collect();
    assert!(
        matches!(outs[0], Outcome::Deferred { attempt: 2, .. }),
        "{outs:?}"
    );
    assert!(
        matches!(outs[1], Outcome::Deferred { attempt: 1, .. }),
        "not started: {outs:?}"
    );
    // The cut-off attempt had sent its create: the claim is released with maybe_committed.
    let e = w.entry("DL1").await;
    assert!(e.claim_holder.is_none() && e.maybe_committed, "{e:?}");
    // The not-started message comes back after a second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    w.crm.set_latency(Duration::ZERO);
    let out = w.redeliver().await;
    assert_eq!(out.iter().filter(|o| is_created(o)).count(), 2, "{out:?}");
    assert!(
        out.iter().any(|o| matches!(
            o,
            Outcome::Created {
                recovered: true,
                ..
            }
        )),
        "DL1 was stored before the cut: {out:?}"
    );
    assert_eq!(w.crm.orders().len(), 2);
}

/// A KeyCRM port with a bug: it panics on one order (as `rust_decimal` did on absurd amounts).
struct PanickingCrm {
    inner: Arc<MemoryCrm>,
    poison: &'static str,
}

#[async_trait]
impl order_push::CrmApi for PanickingCrm {
    async fn create_order(&self, body: &NewOrder) -> Result<Order, keycrm::KeycrmError> {
        if body
            .source_uuid
            .as_deref()
            .is_some_and(|u| u.ends_with(self.poison))
        {
            panic!("Multiplication overflowed");
        }
        self.inner.create_order(body).await
    }
    async fn find_orders(
        &self,
        uuid: &str,
        source: Option<i64>,
    ) -> Result<Vec<Order>, keycrm::KeycrmError> {
        self.inner.find_orders(uuid, source).await
    }
    async fn set_order_status(&self, id: i64, status: i64) -> Result<(), keycrm::KeycrmError> {
        self.inner.set_order_status(id, status).await
    }
    async fn create_card(&self, body: &NewCard) -> Result<(i64, i64), keycrm::KeycrmError> {
        self.inner.create_card(body).await
    }
    async fn cards_page(
        &self,
        window: (DateTime<Utc>, DateTime<Utc>),
        with_contact: bool,
        page: u32,
    ) -> Result<order_push::crm::CardPage, keycrm::KeycrmError> {
        self.inner.cards_page(window, with_contact, page).await
    }
    async fn set_card_status(&self, id: i64, status: i64) -> Result<(), keycrm::KeycrmError> {
        self.inner.set_card_status(id, status).await
    }
    async fn load_reference(
        &self,
        sync: OrderSyncType,
    ) -> Result<KeycrmReference, keycrm::KeycrmError> {
        self.inner.load_reference(sync).await
    }
}

struct PanickingProvider(Arc<PanickingCrm>);

#[async_trait]
impl order_push::CrmProvider for PanickingProvider {
    async fn crm_for(
        &self,
        _conn: &Connection,
    ) -> Result<Arc<dyn order_push::CrmApi>, runtime::ClientsError> {
        Ok(self.0.clone())
    }
}

fn absurd_event(shop: &str, order_id: &str) -> String {
    let mut v: serde_json::Value = serde_json::from_str(&created_event(shop, order_id)).unwrap();
    // Schema-valid before the contract had bounds; `rust_decimal` panicked multiplying them.
    v["order"]["items"][0]["price"] = serde_json::json!(1e20);
    v["order"]["items"][0]["quantity"] = serde_json::json!(1e10);
    v.to_string()
}

#[tokio::test]
async fn a_poison_order_is_dead_lettered_alone_and_its_batch_mates_are_created() {
    let w = world(OrderSyncType::Orders).await;
    w.connections
        .create(&connection("c2", "shop-2", OrderSyncType::Orders))
        .await
        .unwrap();
    let out = w
        .run(&[
            &created_event("shop-1", "M1"),
            &absurd_event("shop-1", "P1"),
            &created_event("shop-1", "M2"),
            &created_event("shop-2", "M3"),
        ])
        .await;
    assert!(
        is_created(&out[0]) && is_created(&out[2]) && is_created(&out[3]),
        "{out:?}"
    );
    match &out[1] {
        Outcome::DeadLettered { kind, reason } => {
            assert_eq!(kind, "malformed");
            assert!(reason.contains("order.items[0].price"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(w.crm.orders().len(), 3, "the mates are in KeyCRM once each");
    let letters = w.dead_letters().await;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0]["order_id"], "P1");
    assert_eq!(letters[0]["kind"], "malformed");
}

#[tokio::test]
async fn an_unforeseen_panic_dead_letters_only_its_message_with_a_reason() {
    let mut w = world(OrderSyncType::Orders).await;
    w.push.crm = Arc::new(PanickingProvider(Arc::new(PanickingCrm {
        inner: w.crm.clone(),
        poison: "BUG1",
    })));
    w.connections
        .create(&connection("c2", "shop-2", OrderSyncType::Orders))
        .await
        .unwrap();
    let out = w
        .run(&[
            &created_event("shop-1", "BUG1"),
            &created_event("shop-1", "OK1"),
            &created_event("shop-2", "OK2"),
        ])
        .await;
    match &out[0] {
        Outcome::DeadLettered { kind, reason } => {
            assert_eq!(kind, "internal_error");
            assert!(reason.contains("Multiplication overflowed"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert!(is_created(&out[1]) && is_created(&out[2]), "{out:?}");
    // The poisoned order is visibly failed (a re-push searches KeyCRM first), not stuck.
    let e = w.entry("BUG1").await;
    assert_eq!(e.state, LedgerState::Failed);
    assert!(e.maybe_committed, "a re-push must look before creating");
    assert_eq!(w.counter("orders_failed").await, 1);
    let letters = w.dead_letters().await;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0]["kind"], "internal_error");
    assert_eq!(letters[0]["order_id"], "BUG1");
}

#[tokio::test]
async fn the_answer_is_ready_before_the_deadline_even_when_settling_hangs() {
    // The dead-letter queue stalls (an SQS call that never answers): the batch result still
    // comes back before the invocation deadline, with the created order settled as done.
    struct StalledQueue;
    #[async_trait]
    impl Queue for StalledQueue {
        fn name(&self) -> &str {
            "stalled"
        }
        async fn send(&self, _m: queue::Outgoing) -> Result<String, queue::QueueError> {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(String::new())
        }
        async fn receive(
            &self,
            _max: usize,
            _wait: Duration,
            _visibility: Duration,
        ) -> Result<Vec<Message>, queue::QueueError> {
            Ok(vec![])
        }
        async fn delete(&self, _receipt: &str) -> Result<(), queue::QueueError> {
            Ok(())
        }
        async fn change_visibility(
            &self,
            _receipt: &str,
            _visibility: Duration,
        ) -> Result<(), queue::QueueError> {
            Ok(())
        }
        async fn approximate_len(&self) -> Result<usize, queue::QueueError> {
            Ok(0)
        }
    }
    let mut w = world(OrderSyncType::Orders).await;
    w.push.dead_letters = Arc::new(StalledQueue);
    w.push.config.deadline_margin = Duration::from_millis(200);
    let ok = message(&created_event("shop-1", "FINE1"));
    let bad = message("{not json");
    let started = Instant::now();
    let deadline = started + Duration::from_millis(1500);
    let r = w
        .push
        .handle_batch_until(vec![ok.clone(), bad.clone()], Some(deadline))
        .await;
    assert!(Instant::now() < deadline, "answered after the deadline");
    assert_eq!(r.failed_message_ids, vec![bad.id.clone()], "{r:?}");
    assert!(is_created(&r.outcomes[0].outcome), "{r:?}");
}

async fn two_shops_on_one_account(sync: OrderSyncType) -> World {
    // Both connections use the same KeyCRM account (the provider hands out one CRM) and,
    // misconfigured or not, the same source.
    let w = world(sync).await;
    w.connections
        .create(&connection("c2", "shop-2", sync))
        .await
        .unwrap();
    w
}

#[tokio::test]
async fn two_shops_on_one_account_never_take_each_others_orders() {
    let w = two_shops_on_one_account(OrderSyncType::Orders).await;
    // Shop 1's order 77 is in KeyCRM; shop 2's order 77 commits and loses its answer.
    w.run(&[&created_event("shop-1", "77")]).await;
    w.crm.fail_next([MemoryCrmFault::CommitThenTimeout]);
    let out = w.run(&[&created_event("shop-2", "77")]).await;
    assert!(matches!(out[0], Outcome::Deferred { .. }), "{out:?}");
    let out = w.redeliver().await;
    let recovered_id = match &out[0] {
        Outcome::Created {
            recovered: true,
            keycrm_id,
            connection_id,
            ..
        } => {
            assert_eq!(connection_id, "c2");
            *keycrm_id
        }
        other => panic!("{other:?}"),
    };
    let orders = w.crm.orders();
    assert_eq!(orders.len(), 2, "one order per shop");
    let shop1 = w.ledger.get("c1", "77").await.unwrap().unwrap();
    assert_ne!(shop1.keycrm_id, Some(recovered_id), "not shop 1's order");
    let mine = orders.iter().find(|(o, _)| o.id == recovered_id).unwrap();
    assert_eq!(mine.0.source_uuid.as_deref(), Some("shop-2:77"));
}

#[tokio::test]
async fn a_source_changed_between_two_attempts_does_not_duplicate_the_order() {
    let w = world(OrderSyncType::Orders).await;
    w.crm.fail_next([MemoryCrmFault::CommitThenTimeout]);
    w.run(&[&created_event("shop-1", "SRC1")]).await;
    // The merchant picks another KeyCRM source before the retry.
    let mut conn = w.connections.get("c1").await.unwrap().unwrap();
    conn.settings.source_id = Some(2);
    conn.version += 1;
    w.connections.update(&conn).await.unwrap();
    let out = w.redeliver().await;
    assert!(
        matches!(
            &out[0],
            Outcome::Created {
                recovered: true,
                ..
            }
        ),
        "{out:?}"
    );
    assert_eq!(w.crm.orders().len(), 1, "found in the old source");
}

#[tokio::test]
async fn an_attempt_an_older_version_made_is_found_by_its_bare_id() {
    let ledger = Arc::new(MemoryLedger::new());
    let w = world_with(ledger.clone(), quick());
    w.connections
        .create(&connection("c1", "shop-1", OrderSyncType::Orders))
        .await
        .unwrap();
    // What the older version left: its create reached KeyCRM under the bare id, the
    // answer was lost, the claim was released with maybe_committed.
    let event = created_event("shop-1", "OLD1");
    use order_push::CrmApi;
    w.crm
        .create_order(&NewOrder {
            source_id: 1,
            source_uuid: Some("OLD1".into()),
            ..NewOrder::default()
        })
        .await
        .unwrap();
    // Another shop's legacy order 'OLD1' in another source is not ours.
    w.crm
        .create_order(&NewOrder {
            source_id: 9,
            source_uuid: Some("OLD1".into()),
            ..NewOrder::default()
        })
        .await
        .unwrap();
    let mut legacy = LedgerEntry::claimed(
        "c1",
        "OLD1",
        Target::Order,
        "old-holder",
        Duration::ZERO,
        &event,
        Utc::now(),
    );
    legacy.claim_holder = None;
    legacy.claim_until = None;
    legacy.maybe_committed = true;
    legacy.scoped_key = false;
    ledger.put(legacy);
    let out = w.run(&[&event]).await;
    assert!(
        matches!(
            &out[0],
            Outcome::Created {
                recovered: true,
                keycrm_id: 5001,
                ..
            }
        ),
        "{out:?}"
    );
    assert_eq!(w.crm.orders().len(), 2, "nothing created");
}

#[tokio::test]
async fn cards_of_two_shops_with_the_same_number_and_buyer_are_told_apart() {
    let w = two_shops_on_one_account(OrderSyncType::Pipelines).await;
    // Same number, same buyer, same title, same minute: only the marker differs.
    w.run(&[&created_event("shop-1", "N5")]).await;
    w.crm.fail_next([MemoryCrmFault::CommitThenTimeout]);
    w.run(&[&created_event("shop-2", "N5")]).await;
    let out = w.redeliver().await;
    let id = match &out[0] {
        Outcome::Created {
            recovered: true,
            keycrm_id,
            target: Target::Card,
            ..
        } => *keycrm_id,
        other => panic!("{other:?}"),
    };
    let cards = w.crm.cards();
    assert_eq!(cards.len(), 2);
    let shop1 = w.ledger.get("c1", "N5").await.unwrap().unwrap();
    assert_ne!(shop1.keycrm_id, Some(id), "shop 2 recovered its own card");
    let mine = cards.iter().find(|c| c.id == id).unwrap();
    assert!(mapping::source_key::has_card_marker(
        mine.body.manager_comment.as_deref(),
        "shop-2",
        "N5"
    ));
}

/// KeyCRM whose status update to `hold` is held until the test lets it through.
struct HeldStatusCrm {
    inner: Arc<MemoryCrm>,
    hold: i64,
    #[allow(clippy::type_complexity)]
    gate: std::sync::Mutex<
        Option<(
            tokio::sync::oneshot::Sender<()>,
            tokio::sync::oneshot::Receiver<()>,
        )>,
    >,
}

#[async_trait]
impl order_push::CrmApi for HeldStatusCrm {
    async fn create_order(&self, body: &NewOrder) -> Result<Order, keycrm::KeycrmError> {
        self.inner.create_order(body).await
    }
    async fn find_orders(
        &self,
        uuid: &str,
        source: Option<i64>,
    ) -> Result<Vec<Order>, keycrm::KeycrmError> {
        self.inner.find_orders(uuid, source).await
    }
    async fn set_order_status(&self, id: i64, status: i64) -> Result<(), keycrm::KeycrmError> {
        if status == self.hold {
            let gate = self.gate.lock().unwrap().take();
            if let Some((arrived, proceed)) = gate {
                let _ = arrived.send(());
                let _ = proceed.await;
            }
        }
        self.inner.set_order_status(id, status).await
    }
    async fn create_card(&self, body: &NewCard) -> Result<(i64, i64), keycrm::KeycrmError> {
        self.inner.create_card(body).await
    }
    async fn cards_page(
        &self,
        window: (DateTime<Utc>, DateTime<Utc>),
        with_contact: bool,
        page: u32,
    ) -> Result<order_push::crm::CardPage, keycrm::KeycrmError> {
        self.inner.cards_page(window, with_contact, page).await
    }
    async fn set_card_status(&self, id: i64, status: i64) -> Result<(), keycrm::KeycrmError> {
        self.inner.set_card_status(id, status).await
    }
    async fn load_reference(
        &self,
        sync: OrderSyncType,
    ) -> Result<KeycrmReference, keycrm::KeycrmError> {
        self.inner.load_reference(sync).await
    }
}

struct HeldProvider(Arc<HeldStatusCrm>);

#[async_trait]
impl order_push::CrmProvider for HeldProvider {
    async fn crm_for(
        &self,
        _conn: &Connection,
    ) -> Result<Arc<dyn order_push::CrmApi>, runtime::ClientsError> {
        Ok(self.0.clone())
    }
}

#[tokio::test]
async fn concurrent_status_pushes_of_one_order_land_in_order() {
    let mut w = world(OrderSyncType::Orders).await;
    w.run(&[&created_event("shop-1", "R1")]).await;
    let (arrived_tx, arrived_rx) = tokio::sync::oneshot::channel();
    let (proceed_tx, proceed_rx) = tokio::sync::oneshot::channel();
    w.push.crm = Arc::new(HeldProvider(Arc::new(HeldStatusCrm {
        inner: w.crm.clone(),
        hold: 3,
        gate: std::sync::Mutex::new(Some((arrived_tx, proceed_rx))),
    })));
    let t1 = Utc::now() - chrono::Duration::seconds(10);
    let older = message(&status_event("shop-1", "R1", "paid", t1));
    let newer = message(&status_event("shop-1", "R1", "done", Utc::now()));
    // The older push reaches KeyCRM slowly; the newer one arrives in another invocation
    // while it is in flight.
    let (first, second) = tokio::join!(w.push.handle_batch(vec![older]), async {
        arrived_rx.await.unwrap();
        let r = w.push.handle_batch(vec![newer]).await;
        proceed_tx.send(()).unwrap();
        r
    });
    assert!(
        matches!(
            first.outcomes[0].outcome,
            Outcome::StatusPushed {
                keycrm_status_id: 3,
                ..
            }
        ),
        "{first:?}"
    );
    assert!(
        matches!(second.outcomes[0].outcome, Outcome::Deferred { .. }),
        "the newer change waits for the one in flight: {second:?}"
    );
    let out = w.redeliver().await;
    assert!(
        matches!(
            out[0],
            Outcome::StatusPushed {
                keycrm_status_id: 12,
                ..
            }
        ),
        "{out:?}"
    );
    let (order, _) = &w.crm.orders()[0];
    assert_eq!(order.status_id, 12, "KeyCRM ends on the newest status");
    assert_eq!(w.entry("R1").await.shop_status.as_deref(), Some("done"));
}

// The Lambda edge from JSON event fixtures, on this file's in-memory world.
#[path = "lambda/fixtures.rs"]
mod lambda_fixtures;

/// A shared dictionary cache that is down.
struct DownCache;

#[async_trait]
impl store::DictionaryCache for DownCache {
    async fn get(
        &self,
        _: &str,
        _: Duration,
    ) -> Result<Option<(store::CachedDictionaries, DateTime<Utc>)>, StoreError> {
        Err(StoreError::Unavailable("table down".into()))
    }
    async fn put(
        &self,
        _: &str,
        _: &store::CachedDictionaries,
        _: Duration,
    ) -> Result<(), StoreError> {
        Err(StoreError::Unavailable("table down".into()))
    }
    async fn invalidate(&self, _: &str) -> Result<(), StoreError> {
        Err(StoreError::Unavailable("table down".into()))
    }
}

impl World {
    /// A cold instance (empty in-process dictionaries) on the shared cache.
    fn new_instance(&mut self, shared: Arc<dyn store::DictionaryCache>) {
        self.push.dictionaries = Arc::new(
            Dictionaries::default().with_shared(shared, order_push::dictionaries::SHARED_TTL),
        );
    }
}

#[tokio::test]
async fn an_instance_uses_the_dictionaries_another_instance_loaded() {
    let mut w = world(OrderSyncType::Orders).await;
    let shared = Arc::new(store::MemoryDictionaryCache::new());
    w.new_instance(shared.clone());
    w.run(&[&created_event("shop-1", "S1")]).await;
    assert_eq!(w.crm.requests()["load_reference"], 1);
    // Two more cold instances: each maps its order with the shared copy, no KeyCRM lookup.
    for order in ["S2", "S3"] {
        w.new_instance(shared.clone());
        let out = w.run(&[&created_event("shop-1", order)]).await;
        assert!(is_created(&out[0]), "{out:?}");
    }
    assert_eq!(
        w.crm.requests()["load_reference"],
        1,
        "{:?}",
        w.crm.requests()
    );
    assert_eq!(w.crm.requests()["create_order"], 3);
    let (entry, _) = store::DictionaryCache::get(shared.as_ref(), "c1", Duration::from_secs(60))
        .await
        .unwrap()
        .expect("shared entry");
    assert_eq!(entry.version, 1);
    assert_eq!(entry.sync, OrderSyncType::Orders);
    assert_eq!(entry.reference, reference());
}

#[tokio::test]
async fn saved_settings_make_every_instance_reload_the_dictionaries() {
    let mut w = world(OrderSyncType::Orders).await;
    let shared = Arc::new(store::MemoryDictionaryCache::new());
    w.new_instance(shared.clone());
    w.run(&[&created_event("shop-1", "S1")]).await;
    // The merchant saves the settings: the connection's version moves on.
    let mut c = w.connections.get("c1").await.unwrap().unwrap();
    c.version += 1;
    w.connections.update(&c).await.unwrap();
    assert_eq!(w.connections.get("c1").await.unwrap().unwrap().version, 2);
    w.new_instance(shared.clone());
    w.run(&[&created_event("shop-1", "S2")]).await;
    assert_eq!(
        w.crm.requests()["load_reference"],
        2,
        "the old copy is not used"
    );
    w.new_instance(shared.clone());
    w.run(&[&created_event("shop-1", "S3")]).await;
    assert_eq!(
        w.crm.requests()["load_reference"],
        2,
        "the new copy is shared"
    );
}

#[tokio::test]
async fn a_validation_error_drops_the_shared_dictionaries_too() {
    let mut w = world(OrderSyncType::Orders).await;
    let shared = Arc::new(store::MemoryDictionaryCache::new());
    w.new_instance(shared.clone());
    w.run(&[&created_event("shop-1", "S1")]).await;
    let mut errors = BTreeMap::new();
    errors.insert(
        "shipping.delivery_service_id".to_string(),
        vec!["The selected delivery service id is invalid.".to_string()],
    );
    w.crm.fail_next([MemoryCrmFault::Validation(errors)]);
    w.run(&[&created_event("shop-1", "S2")]).await;
    assert!(
        store::DictionaryCache::get(shared.as_ref(), "c1", Duration::from_secs(60))
            .await
            .unwrap()
            .is_none(),
        "the shared copy may be what is stale"
    );
    w.new_instance(shared.clone());
    w.run(&[&created_event("shop-1", "S3")]).await;
    assert_eq!(w.crm.requests()["load_reference"], 2);
}

#[tokio::test]
async fn a_shared_cache_that_is_down_costs_requests_not_orders() {
    let mut w = world(OrderSyncType::Orders).await;
    w.new_instance(Arc::new(DownCache));
    let out = w.run(&[&created_event("shop-1", "S1")]).await;
    assert!(is_created(&out[0]), "{out:?}");
    // The process keeps its own copy meanwhile.
    let out = w.run(&[&created_event("shop-1", "S2")]).await;
    assert!(is_created(&out[0]), "{out:?}");
    assert_eq!(w.crm.requests()["load_reference"], 1);
    // A validation error with the cache down still fails only that order.
    let mut errors = BTreeMap::new();
    errors.insert("buyer.phone".to_string(), vec!["invalid".to_string()]);
    w.crm.fail_next([MemoryCrmFault::Validation(errors)]);
    let out = w.run(&[&created_event("shop-1", "S3")]).await;
    assert!(
        matches!(&out[0], Outcome::DeadLettered { kind, .. } if kind == "validation"),
        "{out:?}"
    );
    assert_eq!(w.crm.orders().len(), 2);
}
