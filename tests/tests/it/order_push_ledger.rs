//! The order ledger's rules, run against the DynamoDB adapter (moto) and the in-memory one:
//! both must behave the same, since unit tests and the local run rely on the second.

use chrono::{Duration as Chrono, Utc};
use e2e_tests::emulator;
use mapping::order_map::{MappingReport, TotalMismatch};
use std::collections::BTreeMap;
use std::time::Duration;
use store::dynamo::{gsi1_entry_bytes, item_bytes, GSI1, GSI1_PK, GSI1_SK};
use store::ledger::{stored_size, Created};
use store::{Claim, LedgerState, MemoryLedger, OrderLedger, PushReservation, StoreError, Target};

const LEASE: Duration = Duration::from_secs(60);
const SHORT_LEASE: Duration = Duration::from_secs(2);

async fn claims_are_exclusive_and_expire(l: &dyn OrderLedger) {
    let g = l
        .claim(
            "c1",
            "o1",
            Target::Order,
            "h1",
            // Long enough for the four calls below on a loaded machine, short enough to wait out.
            SHORT_LEASE,
            "{\"e\":1}",
        )
        .await
        .unwrap();
    let Claim::Granted(e) = g else {
        panic!("{g:?}")
    };
    assert_eq!(
        (e.state, e.attempts, e.maybe_committed),
        (LedgerState::Pending, 1, false)
    );
    // Stored already marked as attempted: a crash before any other write still makes the
    // next attempt search first.
    let stored = l.get("c1", "o1").await.unwrap().unwrap();
    assert!(
        stored.maybe_committed && stored.attempt_started_at.is_some(),
        "{stored:?}"
    );
    assert_eq!(e.event_json.as_deref(), Some("{\"e\":1}"));

    let busy = l
        .claim("c1", "o1", Target::Order, "h2", LEASE, "{\"e\":2}")
        .await
        .unwrap();
    assert!(matches!(busy, Claim::Busy(_)), "{busy:?}");
    // Only the holder may act.
    assert!(matches!(
        l.mark_attempt("c1", "o1", "h2").await,
        Err(StoreError::Conflict(_))
    ));
    l.mark_attempt("c1", "o1", "h1").await.unwrap();
    assert!(l.get("c1", "o1").await.unwrap().unwrap().maybe_committed);

    tokio::time::sleep(SHORT_LEASE + Duration::from_millis(200)).await;
    // h1's lease ran out: it may no longer start a create.
    assert!(matches!(
        l.mark_attempt("c1", "o1", "h1").await,
        Err(StoreError::Conflict(_))
    ));
    let again = l
        .claim("c1", "o1", Target::Order, "h2", LEASE, "{\"e\":2}")
        .await
        .unwrap();
    let Claim::Granted(e) = again else {
        panic!("{again:?}")
    };
    assert_eq!(e.attempts, 2);
    assert!(e.maybe_committed, "the next attempt must search first");
    assert_eq!(
        e.event_json.as_deref(),
        Some("{\"e\":1}"),
        "the first event is kept"
    );
    assert_eq!(e.claim_holder.as_deref(), Some("h2"));
    assert!(e.attempt_started_at.is_some());
    // h1 comes back from the dead: too late.
    let err = l
        .mark_created("c1", "o1", "h1", 5, &MappingReport::default(), None, None)
        .await;
    assert!(matches!(err, Err(StoreError::Conflict(_))), "{err:?}");
}

async fn created_entries_are_final_and_indexed(l: &dyn OrderLedger) {
    let Claim::Granted(_) = l
        .claim("c1", "o2", Target::Card, "h", LEASE, "{}")
        .await
        .unwrap()
    else {
        panic!()
    };
    l.mark_attempt("c1", "o2", "h").await.unwrap();
    let report = MappingReport {
        notes: vec!["phone kept in the comment".into()],
        total_mismatch: Some(TotalMismatch {
            shop_total: 10.into(),
            computed: 12.into(),
        }),
    };
    l.mark_created("c1", "o2", "h", 301, &report, Some("new"), Some(1001))
        .await
        .unwrap();
    let e = l.get("c1", "o2").await.unwrap().unwrap();
    assert_eq!(
        (
            e.state,
            e.keycrm_id,
            e.maybe_committed,
            e.claim_holder.clone()
        ),
        (LedgerState::Created, Some(301), false, None)
    );
    assert_eq!(
        e.report, report,
        "a total mismatch is flagged in the order's record"
    );
    assert_eq!(
        (e.shop_status.as_deref(), e.keycrm_status_id),
        (Some("new"), Some(1001))
    );
    assert!(matches!(
        l.claim("c1", "o2", Target::Card, "h3", LEASE, "{}")
            .await
            .unwrap(),
        Claim::AlreadyCreated(_)
    ));

    let found = l
        .find_by_keycrm_id("c1", Target::Card, 301)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.shop_order_id, "o2");
    assert!(
        l.find_by_keycrm_id("c1", Target::Order, 301)
            .await
            .unwrap()
            .is_none(),
        "orders and cards are apart"
    );
    assert!(
        l.find_by_keycrm_id("c2", Target::Card, 301)
            .await
            .unwrap()
            .is_none(),
        "connections are apart"
    );

    let err = l.reset_for_repush("c1", "o2").await.unwrap_err();
    assert!(err.to_string().contains("already in KeyCRM"), "{err}");

    // The target-aware form writes the same in one step.
    let Claim::Granted(_) = l
        .claim("c1", "o7", Target::Order, "h", LEASE, "{}")
        .await
        .unwrap()
    else {
        panic!()
    };
    let created = Created {
        target: Target::Order,
        keycrm_id: 5001,
        report: MappingReport::default(),
        shop_status: Some("paid".into()),
        keycrm_status_id: Some(3),
    };
    assert!(matches!(
        l.record_created("c1", "o7", "other", &created).await,
        Err(StoreError::Conflict(_))
    ));
    l.record_created("c1", "o7", "h", &created).await.unwrap();
    let e = l
        .find_by_keycrm_id("c1", Target::Order, 5001)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (e.shop_order_id.as_str(), e.state, e.maybe_committed),
        ("o7", LedgerState::Created, false)
    );
    assert_eq!(
        (e.shop_status.as_deref(), e.keycrm_status_id),
        (Some("paid"), Some(3))
    );
}

async fn failures_wait_for_a_repush(l: &dyn OrderLedger) {
    let Claim::Granted(_) = l
        .claim("c1", "o3", Target::Order, "h", LEASE, "{\"x\":3}")
        .await
        .unwrap()
    else {
        panic!()
    };
    let mut fields = BTreeMap::new();
    fields.insert("buyer.phone".to_string(), vec!["invalid".to_string()]);
    l.mark_failed("c1", "o3", "h", "KeyCRM validation failed", &fields)
        .await
        .unwrap();
    let e = l.get("c1", "o3").await.unwrap().unwrap();
    assert_eq!(
        (e.state, e.field_errors.clone(), e.last_error.as_deref()),
        (
            LedgerState::Failed,
            fields,
            Some("KeyCRM validation failed")
        )
    );
    assert!(matches!(
        l.claim("c1", "o3", Target::Order, "h2", LEASE, "{}")
            .await
            .unwrap(),
        Claim::Settled(_)
    ));

    let reset = l.reset_for_repush("c1", "o3").await.unwrap();
    assert_eq!(
        (reset.state, reset.event_json.as_deref()),
        (LedgerState::Pending, Some("{\"x\":3}"))
    );
    let Claim::Granted(e) = l
        .claim("c1", "o3", Target::Order, "h3", LEASE, "{}")
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(e.attempts, 2);
    l.mark_created("c1", "o3", "h3", 77, &MappingReport::default(), None, None)
        .await
        .unwrap();
    let e = l.get("c1", "o3").await.unwrap().unwrap();
    assert!(e.field_errors.is_empty() && e.last_error.is_none(), "{e:?}");

    assert!(matches!(
        l.reset_for_repush("c1", "nope").await,
        Err(StoreError::NotFound(_))
    ));
    let Claim::Granted(_) = l
        .claim("c1", "o4", Target::Order, "h", LEASE, "{}")
        .await
        .unwrap()
    else {
        panic!()
    };
    assert!(
        matches!(
            l.reset_for_repush("c1", "o4").await,
            Err(StoreError::Conflict(_))
        ),
        "live claim"
    );
    l.mark_skipped("c1", "o4", "h", "order sync is off")
        .await
        .unwrap();
    assert_eq!(
        l.get("c1", "o4").await.unwrap().unwrap().state,
        LedgerState::Skipped
    );
    assert_eq!(
        l.reset_for_repush("c1", "o4").await.unwrap().state,
        LedgerState::Pending
    );
}

async fn release_keeps_what_the_attempt_learned(l: &dyn OrderLedger) {
    let Claim::Granted(_) = l
        .claim("c1", "o5", Target::Order, "h", LEASE, "{}")
        .await
        .unwrap()
    else {
        panic!()
    };
    l.mark_attempt("c1", "o5", "h").await.unwrap();
    l.release("c1", "o5", "h", "timed out", true).await.unwrap();
    let e = l.get("c1", "o5").await.unwrap().unwrap();
    assert_eq!(
        (
            e.claim_holder.clone(),
            e.maybe_committed,
            e.last_error.as_deref()
        ),
        (None, true, Some("timed out"))
    );
    let Claim::Granted(e) = l
        .claim("c1", "o5", Target::Order, "h2", LEASE, "{}")
        .await
        .unwrap()
    else {
        panic!()
    };
    assert!(e.maybe_committed);
    l.release("c1", "o5", "h2", "rate limited", false)
        .await
        .unwrap();
    assert!(!l.get("c1", "o5").await.unwrap().unwrap().maybe_committed);
}

/// An order order-push created as KeyCRM `keycrm_id`.
async fn created(l: &dyn OrderLedger, order: &str, keycrm_id: i64) {
    let holder = format!("h-{order}");
    l.claim("c1", order, Target::Order, &holder, LEASE, "{}")
        .await
        .unwrap();
    let c = Created {
        target: Target::Order,
        keycrm_id,
        report: MappingReport::default(),
        shop_status: None,
        keycrm_status_id: None,
    };
    l.record_created("c1", order, &holder, &c).await.unwrap();
}

async fn statuses_from_both_sides(l: &dyn OrderLedger) {
    let t = Utc::now();
    assert!(matches!(
        l.record_keycrm_status("c1", "missing", 3, t, "paid").await,
        Err(StoreError::NotFound(_))
    ));
    created(l, "o6", 900).await;
    // A linked order is never re-pointed at another KeyCRM entity.
    assert!(matches!(
        l.adopt("c1", "o6", Target::Order, 901).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        l.adopt("c1", "o6", Target::Order, 900)
            .await
            .unwrap()
            .keycrm_id,
        Some(900),
        "adopting the same id again is harmless"
    );
    assert_eq!(
        l.find_by_keycrm_id("c1", Target::Order, 900)
            .await
            .unwrap()
            .unwrap()
            .shop_order_id,
        "o6"
    );

    assert!(l
        .record_keycrm_status("c1", "o6", 3, t, "paid")
        .await
        .unwrap());
    assert!(
        !l.record_keycrm_status("c1", "o6", 3, t, "paid")
            .await
            .unwrap(),
        "duplicate"
    );
    assert!(
        !l.record_keycrm_status("c1", "o6", 1, t - Chrono::seconds(5), "new")
            .await
            .unwrap(),
        "stale"
    );
    let e = l.get("c1", "o6").await.unwrap().unwrap();
    assert_eq!(
        (
            e.applied_from_keycrm.as_deref(),
            e.shop_status.as_deref(),
            e.keycrm_status_id
        ),
        (Some("paid"), Some("paid"), Some(3))
    );

    l.record_shop_status("c1", "o6", "done", Some(12), t + Chrono::seconds(1))
        .await
        .unwrap();
    let e = l.get("c1", "o6").await.unwrap().unwrap();
    assert_eq!(
        (
            e.shop_status.as_deref(),
            e.applied_from_keycrm.clone(),
            e.keycrm_status_id
        ),
        (Some("done"), None, Some(12))
    );
    // An older shop status recorded late does not overwrite a newer one.
    l.record_shop_status("c1", "o6", "new", Some(1), t)
        .await
        .unwrap();
    assert_eq!(
        l.get("c1", "o6")
            .await
            .unwrap()
            .unwrap()
            .shop_status
            .as_deref(),
        Some("done")
    );
    assert!(matches!(
        l.record_shop_status("c1", "missing", "x", None, t).await,
        Err(StoreError::NotFound(_))
    ));
}

/// Adoption links only what the connector itself was creating.
async fn adoption_needs_an_order_waiting_to_be_created(l: &dyn OrderLedger) {
    // Unknown to the ledger: a webhook cannot create an entry.
    assert!(matches!(
        l.adopt("c1", "a-unknown", Target::Order, 700).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(l.get("c1", "a-unknown").await.unwrap().is_none());
    // Being created right now: the attempt itself records it.
    l.claim("c1", "a1", Target::Order, "h1", LEASE, "{}")
        .await
        .unwrap();
    assert!(matches!(
        l.adopt("c1", "a1", Target::Order, 701).await,
        Err(StoreError::Conflict(_))
    ));
    // Released after a lost answer: adopted, index written, errors cleared.
    l.release("c1", "a1", "h1", "timed out", true)
        .await
        .unwrap();
    let e = l.adopt("c1", "a1", Target::Order, 701).await.unwrap();
    assert_eq!(
        (
            e.state,
            e.keycrm_id,
            e.maybe_committed,
            e.last_error.clone()
        ),
        (LedgerState::Created, Some(701), false, None)
    );
    assert_eq!(
        l.find_by_keycrm_id("c1", Target::Order, 701)
            .await
            .unwrap()
            .unwrap()
            .shop_order_id,
        "a1"
    );
    // A later claim sees it created: the order is never pushed a second time.
    assert!(matches!(
        l.claim("c1", "a1", Target::Order, "h2", LEASE, "{}")
            .await
            .unwrap(),
        Claim::AlreadyCreated(_)
    ));
    // Failed (retries exhausted after an ambiguous create): adopted too.
    l.claim("c1", "a2", Target::Order, "h3", LEASE, "{}")
        .await
        .unwrap();
    l.mark_failed("c1", "a2", "h3", "retries exhausted", &BTreeMap::new())
        .await
        .unwrap();
    assert_eq!(
        l.adopt("c1", "a2", Target::Order, 702).await.unwrap().state,
        LedgerState::Created
    );
    // Skipped on purpose: not adopted.
    l.claim("c1", "a3", Target::Order, "h4", LEASE, "{}")
        .await
        .unwrap();
    l.mark_skipped("c1", "a3", "h4", "sync off").await.unwrap();
    assert!(matches!(
        l.adopt("c1", "a3", Target::Order, 703).await,
        Err(StoreError::Conflict(_))
    ));
}

/// Shop → KeyCRM pushes reserve their change first, so they land in order.
async fn status_pushes_are_reserved_in_order(l: &dyn OrderLedger) {
    let t = whole_second(Utc::now());
    assert!(matches!(
        l.reserve_shop_push("c1", "p-missing", t, "x", LEASE).await,
        Err(StoreError::NotFound(_))
    ));
    created(l, "p1", 800).await;
    let older = t - Chrono::seconds(10);
    assert_eq!(
        l.reserve_shop_push("c1", "p1", older, "A", LEASE)
            .await
            .unwrap(),
        PushReservation::Granted
    );
    // While A is in flight, a newer change waits instead of racing it.
    assert!(matches!(
        l.reserve_shop_push("c1", "p1", t, "B", LEASE)
            .await
            .unwrap(),
        PushReservation::Busy(_)
    ));
    l.finish_shop_push("c1", "p1", "A", "paid", Some(3), older)
        .await
        .unwrap();
    assert!(matches!(
        l.finish_shop_push("c1", "p1", "A", "paid", Some(3), older)
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        l.reserve_shop_push("c1", "p1", t, "B", LEASE)
            .await
            .unwrap(),
        PushReservation::Granted
    );
    l.finish_shop_push("c1", "p1", "B", "done", Some(12), t)
        .await
        .unwrap();
    let e = l.get("c1", "p1").await.unwrap().unwrap();
    assert_eq!(
        (e.shop_status.as_deref(), e.shop_status_at, e.push_holder),
        (Some("done"), Some(t), None)
    );
    // The older change arriving now is stale, and so is a duplicate.
    for (at, who) in [(older, "C"), (t, "D")] {
        assert!(matches!(
            l.reserve_shop_push("c1", "p1", at, who, LEASE)
                .await
                .unwrap(),
            PushReservation::Stale(_)
        ));
    }
    // A failed push gives its reservation back; an expired one is taken over.
    let later = t + Chrono::seconds(5);
    assert_eq!(
        l.reserve_shop_push("c1", "p1", later, "E", LEASE)
            .await
            .unwrap(),
        PushReservation::Granted
    );
    l.release_shop_push("c1", "p1", "E").await.unwrap();
    assert_eq!(
        l.reserve_shop_push("c1", "p1", later, "F", Duration::from_millis(200))
            .await
            .unwrap(),
        PushReservation::Granted
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        l.reserve_shop_push("c1", "p1", later, "G", LEASE)
            .await
            .unwrap(),
        PushReservation::Granted
    );
    // A newer KeyCRM change applied to the shop makes an older shop push stale.
    l.release_shop_push("c1", "p1", "G").await.unwrap();
    assert!(l
        .record_keycrm_status("c1", "p1", 7, later + Chrono::seconds(5), "shipped")
        .await
        .unwrap());
    assert!(matches!(
        l.reserve_shop_push("c1", "p1", later + Chrono::seconds(1), "H", LEASE)
            .await
            .unwrap(),
        PushReservation::Stale(_)
    ));
}

/// Times far in the future are no change times: they can never lock an order.
async fn future_times_never_lock_an_order(l: &dyn OrderLedger) {
    created(l, "f1", 950).await;
    let year_9999 = chrono::DateTime::parse_from_rfc3339("9999-12-31T23:59:59Z")
        .unwrap()
        .with_timezone(&Utc);
    // As an older version recorded it, unclamped.
    assert!(l
        .record_keycrm_status("c1", "f1", 12, year_9999, "done")
        .await
        .unwrap());
    let now = whole_second(Utc::now());
    assert!(
        l.record_keycrm_status("c1", "f1", 3, now, "paid")
            .await
            .unwrap(),
        "a real change still applies"
    );
    assert_eq!(
        l.get("c1", "f1")
            .await
            .unwrap()
            .unwrap()
            .keycrm_status_changed_at,
        Some(now)
    );
    assert!(l
        .record_keycrm_status("c1", "f1", 12, year_9999, "done")
        .await
        .unwrap());
    assert_eq!(
        l.reserve_shop_push("c1", "f1", now, "S", LEASE)
            .await
            .unwrap(),
        PushReservation::Granted,
        "shop pushes are not locked either"
    );
}

/// A time both adapters store exactly.
fn whole_second(t: chrono::DateTime<Utc>) -> chrono::DateTime<Utc> {
    chrono::DateTime::from_timestamp(t.timestamp(), 0).unwrap()
}

/// An `order.created` event of a big real order (two dozen lines, a comment: over 3 KB), as
/// the ledger keeps it until the order is in KeyCRM.
fn big_event(order: &str, number: &str) -> String {
    let items: Vec<serde_json::Value> = (0..24)
        .map(|i| {
            serde_json::json!({
                "sku": format!("SKU-{i:04}"),
                "name": "Светр вовняний, ручна робота, розмір M",
                "price": 1250,
                "quantity": 1
            })
        })
        .collect();
    serde_json::json!({
        "version": 1,
        "event_id": format!("evt-{order}"),
        "type": "order.created",
        "shop_id": "1001",
        "occurred_at": "2026-11-28T10:15:00Z",
        "order": {
            "id": order,
            "number": number,
            "created_at": "2026-11-28T10:14:58Z",
            "status": "new",
            "currency": "UAH",
            "customer": {"name": "Олена Коваленко", "phone": "050 123 45 67", "email": "olena@example.com"},
            "items": items,
            "comment": "Подзвоніть, будь ласка, перед доставкою; під'їзд з двору, код 1234",
            "total": 15000
        }
    })
    .to_string()
}

/// Once an order is in KeyCRM its entry no longer carries the event (nothing sends it again)
/// but keeps the order's number (a card's title names it); until then, and for orders that
/// wait for a re-push, the event stays.
async fn created_entries_keep_only_what_later_steps_need(l: &dyn OrderLedger) {
    let event = big_event("n1", "A-77");
    let Claim::Granted(e) = l
        .claim("c1", "n1", Target::Card, "h", LEASE, &event)
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(e.order_number.as_deref(), Some("A-77"));
    let created = Created {
        target: Target::Card,
        keycrm_id: 9001,
        report: MappingReport::default(),
        shop_status: Some("new".into()),
        keycrm_status_id: Some(1),
    };
    l.record_created("c1", "n1", "h", &created).await.unwrap();
    let e = l.get("c1", "n1").await.unwrap().unwrap();
    assert_eq!(
        (
            e.event_json.as_deref(),
            e.order_number.as_deref(),
            e.shop_order_number().as_deref()
        ),
        (None, Some("A-77"), Some("A-77"))
    );
    assert_eq!(
        l.find_by_keycrm_id("c1", Target::Card, 9001)
            .await
            .unwrap()
            .unwrap(),
        e,
        "the index lookup answers with the whole entry"
    );

    // Failed: the event waits for the re-push; adopted later: dropped, the number kept.
    l.claim(
        "c1",
        "n2",
        Target::Card,
        "h",
        LEASE,
        &big_event("n2", "A-78"),
    )
    .await
    .unwrap();
    l.mark_failed("c1", "n2", "h", "retries exhausted", &BTreeMap::new())
        .await
        .unwrap();
    assert!(l
        .get("c1", "n2")
        .await
        .unwrap()
        .unwrap()
        .event_json
        .is_some());
    let e = l.adopt("c1", "n2", Target::Card, 9002).await.unwrap();
    assert_eq!(
        (e.event_json.as_deref(), e.shop_order_number().as_deref()),
        (None, Some("A-78"))
    );

    // The skipped orders are listed whole, oldest first: pushing them sends their events.
    for (order, number) in [("s1", "B-1"), ("s2", "B-2")] {
        l.claim(
            "c9",
            order,
            Target::Order,
            "h",
            LEASE,
            &big_event(order, number),
        )
        .await
        .unwrap();
        l.mark_skipped("c9", order, "h", "order sync is off")
            .await
            .unwrap();
    }
    let listed = l.skipped("c9", None, 10).await.unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|e| (e.shop_order_id.as_str(), e.state, e.event_json.clone()))
            .collect::<Vec<_>>(),
        vec![
            ("s1", LedgerState::Skipped, Some(big_event("s1", "B-1"))),
            ("s2", LedgerState::Skipped, Some(big_event("s2", "B-2"))),
        ]
    );
    l.unskip("c9", "s1").await.unwrap();
    assert_eq!(
        l.skipped("c9", None, 10).await.unwrap()[0].shop_order_id,
        "s2",
        "an order taken for a push leaves the list"
    );
}

async fn contract(l: &dyn OrderLedger) {
    claims_are_exclusive_and_expire(l).await;
    created_entries_are_final_and_indexed(l).await;
    failures_wait_for_a_repush(l).await;
    release_keeps_what_the_attempt_learned(l).await;
    statuses_from_both_sides(l).await;
    adoption_needs_an_order_waiting_to_be_created(l).await;
    status_pushes_are_reserved_in_order(l).await;
    future_times_never_lock_an_order(l).await;
    created_entries_keep_only_what_later_steps_need(l).await;
}

#[tokio::test]
async fn the_dynamodb_ledger_keeps_the_rules() {
    let table = emulator::table().await;
    contract(&table).await;
}

#[tokio::test]
async fn the_memory_ledger_keeps_the_same_rules() {
    contract(&MemoryLedger::new()).await;
}

#[tokio::test]
async fn concurrent_claims_grant_exactly_one() {
    let table = emulator::table().await;
    let mut handles = Vec::new();
    for i in 0..8 {
        let t = table.clone();
        handles.push(tokio::spawn(async move {
            t.claim("c1", "race", Target::Order, &format!("h{i}"), LEASE, "{}")
                .await
                .unwrap()
        }));
    }
    let mut granted = 0;
    for h in handles {
        if matches!(h.await.unwrap(), Claim::Granted(_)) {
            granted += 1;
        }
    }
    assert_eq!(granted, 1);
}

/// What each write of an order's life costs on DynamoDB: once the order is in KeyCRM its entry
/// fits one write unit whatever the size of its event, and its `gsi1` entry holds the keys
/// only, so a status change writes the item's one unit and nothing in the index (the index
/// used to hold the whole entry: every status change wrote it twice, 2 KB each).
#[tokio::test]
async fn a_created_entry_is_one_write_unit_and_its_index_entry_only_keys() {
    let table = emulator::table().await;
    // Real sizes: connection ids are 32 hex characters, holders too.
    let conn = "3f2a9c0e5b7d41e6a8c2f0b4d6e8a1c3";
    let order = "1001-2026-000123";
    let holder = "9b1c4e7a2d5f48b0a3c6e9f2b5d8a1c4";
    let event = big_event(order, "000123");
    assert!(event.len() > 3000, "{}", event.len());
    let raw = || async {
        table
            .client
            .get_item()
            .table_name(&table.name)
            .set_key(Some(store::dynamo::key(
                format!("CONN#{conn}"),
                format!("ORDER#{order}"),
            )))
            .consistent_read(true)
            .send()
            .await
            .unwrap()
            .item
            .unwrap()
    };
    // The size the fleet bench bills for an entry is the size DynamoDB holds.
    let billed_as_stored = |item: &store::dynamo::Item, e: &store::LedgerEntry| {
        let billed = stored_size(e).unwrap();
        assert_eq!(
            (billed.item, billed.index),
            (item_bytes(item), gsi1_entry_bytes(item)),
            "{e:?}"
        );
    };

    l_claim(&table, conn, order, holder, &event).await;
    let claimed = raw().await;
    assert!(
        item_bytes(&claimed) > 3000,
        "the event is kept while pending"
    );
    billed_as_stored(&claimed, &table.get(conn, order).await.unwrap().unwrap());

    let created = Created {
        target: Target::Order,
        keycrm_id: 4_000_123,
        report: MappingReport {
            notes: vec!["the phone was kept in the comment".into()],
            total_mismatch: None,
        },
        shop_status: Some("new".into()),
        keycrm_status_id: Some(1),
    };
    table
        .record_created(conn, order, holder, &created)
        .await
        .unwrap();
    let t = Utc::now();
    // The largest the entry gets: a shop status push in flight after a KeyCRM change.
    assert!(table
        .record_keycrm_status(conn, order, 3, t, "paid")
        .await
        .unwrap());
    let reserved = table
        .reserve_shop_push(conn, order, t + Chrono::seconds(1), holder, LEASE)
        .await
        .unwrap();
    assert_eq!(reserved, PushReservation::Granted);
    let largest = raw().await;
    assert!(
        item_bytes(&largest) <= 1024,
        "{} bytes: {largest:?}",
        item_bytes(&largest)
    );
    billed_as_stored(&largest, &table.get(conn, order).await.unwrap().unwrap());
    table
        .finish_shop_push(
            conn,
            order,
            holder,
            "done",
            Some(12),
            t + Chrono::seconds(1),
        )
        .await
        .unwrap();
    assert!(table
        .record_keycrm_status(conn, order, 4, t + Chrono::seconds(2), "sent")
        .await
        .unwrap());
    let after = raw().await;
    assert!(item_bytes(&after) <= 1024, "{}", item_bytes(&after));
    let entry = table.get(conn, order).await.unwrap().unwrap();
    billed_as_stored(&after, &entry);

    // The index entry is the keys ...
    let indexed = table
        .client
        .query()
        .table_name(&table.name)
        .index_name(GSI1)
        .key_condition_expression("#p = :p")
        .expression_attribute_names("#p", GSI1_PK)
        .expression_attribute_values(":p", store::dynamo::s(format!("KC#{conn}#order#4000123")))
        .send()
        .await
        .unwrap()
        .items
        .unwrap();
    assert_eq!(indexed.len(), 1);
    let mut names: Vec<&str> = indexed[0].keys().map(String::as_str).collect();
    names.sort();
    assert_eq!(names, vec![GSI1_PK, GSI1_SK, "pk", "sk"]);
    // ... and the webhooks' lookup answers with the whole entry as it is now.
    let found = table
        .find_by_keycrm_id(conn, Target::Order, 4_000_123)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found, entry);
    assert_eq!(
        (found.keycrm_status_id, found.applied_from_keycrm.as_deref()),
        (Some(4), Some("sent"))
    );
}

async fn l_claim(l: &dyn OrderLedger, conn: &str, order: &str, holder: &str, event: &str) {
    let granted = l
        .claim(conn, order, Target::Order, holder, LEASE, event)
        .await
        .unwrap();
    assert!(matches!(granted, Claim::Granted(_)), "{granted:?}");
}
