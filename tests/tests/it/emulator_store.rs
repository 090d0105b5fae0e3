//! Connection store, secrets and the shared rate gate against the moto emulator.

use chrono::Utc;
use e2e_tests::connection::ConnectionBuilder;
use e2e_tests::emulator;
use keycrm::{ApiKey, Priority, RateBudget, RateGate};
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::{Connection, ConnectionStore, DynamoRateGate, SecretStore, StoreError};

fn connection(id: &str, shop: &str) -> Connection {
    ConnectionBuilder::new(id, shop)
        .key_mask("••••abcd")
        .fingerprint("f")
        .build()
}

#[tokio::test]
async fn one_connection_per_shop_and_optimistic_updates() {
    let t = emulator::table().await;
    let c = connection("c1", "shop-1");
    t.create(&c).await.unwrap();
    assert!(matches!(
        t.create(&connection("c2", "shop-1")).await,
        Err(StoreError::AlreadyExists(_))
    ));
    assert_eq!(t.get_by_shop("shop-1").await.unwrap().unwrap().id, "c1");
    assert!(t.get_by_shop("shop-2").await.unwrap().is_none());

    let mut v2 = c.clone();
    v2.version = 2;
    v2.active = false;
    t.update(&v2).await.unwrap();
    // A writer still holding version 1 loses.
    let mut stale = c.clone();
    stale.version = 2;
    assert!(matches!(
        t.update(&stale).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(!t.get("c1").await.unwrap().unwrap().active);
}

async fn put_raw(t: &store::DynamoTable, pk: &str, sk: &str) {
    use aws_sdk_dynamodb::types::AttributeValue;
    t.client
        .put_item()
        .table_name(&t.name)
        .item("pk", AttributeValue::S(pk.into()))
        .item("sk", AttributeValue::S(sk.into()))
        .send()
        .await
        .unwrap();
}

async fn sort_keys(t: &store::DynamoTable, pk: &str) -> Vec<String> {
    use aws_sdk_dynamodb::types::AttributeValue;
    let out = t
        .client
        .query()
        .table_name(&t.name)
        .key_condition_expression("pk = :p")
        .expression_attribute_values(":p", AttributeValue::S(pk.into()))
        .send()
        .await
        .unwrap();
    out.items()
        .iter()
        .filter_map(|i| i.get("sk").and_then(|v| v.as_s().ok()).cloned())
        .collect()
}

/// Deleting is a mark first (the connection is gone for everyone and its shop is free at
/// once), then a purge in bounded steps that can stop and resume anywhere, then the mark goes.
#[tokio::test]
async fn delete_marks_first_frees_the_shop_and_purges_in_steps() {
    let t = emulator::table().await;
    let c1 = connection("c1", "shop-1");
    t.create(&c1).await.unwrap();
    t.create(&connection("c3", "shop-3")).await.unwrap();
    for i in 0..40 {
        put_raw(&t, "LINKS#c1", &format!("P#{i}")).await;
        put_raw(&t, "CONN#c1", &format!("ORDER#o-{i}")).await;
    }
    put_raw(&t, "CONN#c3", "ORDER#keep").await;

    // Never a live connection's data.
    assert!(matches!(
        t.purge("c1", 10).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(t.remove("c1").await, Err(StoreError::Conflict(_))));
    assert_eq!(sort_keys(&t, "LINKS#c1").await.len(), 40);
    // Only the version that was read.
    let stale = Connection {
        version: 9,
        ..c1.clone()
    };
    assert!(matches!(
        t.mark_deleting(&stale).await,
        Err(StoreError::Conflict(_))
    ));

    t.mark_deleting(&c1).await.unwrap();
    assert!(
        t.get("c1").await.unwrap().is_none(),
        "gone for every consumer"
    );
    assert!(t.get_by_shop("shop-1").await.unwrap().is_none());
    let (listed, _) = t.list(None, 100).await.unwrap();
    assert!(listed.iter().all(|c| c.id != "c1"), "no schedule lists it");
    assert_eq!(
        t.list_deleting(None, 10).await.unwrap().0,
        vec!["c1".to_string()]
    );
    let (doc, _since) = t.get_deleting("c1").await.unwrap().unwrap();
    assert_eq!(
        doc.secret_name, c1.secret_name,
        "the cleanup still knows the key's name"
    );
    let v2 = Connection {
        version: 2,
        ..c1.clone()
    };
    assert!(matches!(t.update(&v2).await, Err(StoreError::Conflict(_))));
    assert!(matches!(
        t.mark_deleting(&c1).await,
        Err(StoreError::Conflict(_))
    ));

    // The shop connects again while the old data is still there.
    t.create(&connection("c9", "shop-1")).await.unwrap();
    assert_eq!(t.get_by_shop("shop-1").await.unwrap().unwrap().id, "c9");

    let mut passes = 0;
    while !t.purge("c1", 25).await.unwrap() {
        passes += 1;
        assert!(passes < 20, "the purge makes progress");
    }
    assert!(passes >= 3, "80 items in steps of 25: {passes}");
    assert!(t.purge("c1", 25).await.unwrap(), "idempotent");
    assert!(sort_keys(&t, "LINKS#c1").await.is_empty());
    assert_eq!(sort_keys(&t, "CONN#c1").await, vec!["META".to_string()]);
    t.remove("c1").await.unwrap();
    t.remove("c1").await.unwrap();
    assert!(t.get_deleting("c1").await.unwrap().is_none());
    assert!(t.list_deleting(None, 10).await.unwrap().0.is_empty());
    assert!(sort_keys(&t, "CONN#c1").await.is_empty());

    assert!(
        t.get("c3").await.unwrap().is_some(),
        "other connections untouched"
    );
    assert_eq!(sort_keys(&t, "CONN#c3").await.len(), 2);
    assert_eq!(t.get_by_shop("shop-1").await.unwrap().unwrap().id, "c9");
}

#[tokio::test]
async fn listing_pages_through_every_connection() {
    let t = emulator::table().await;
    for i in 0..7 {
        t.create(&connection(&format!("c{i}"), &format!("s{i}")))
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let (page, next) = t.list(cursor, 3).await.unwrap();
        assert!(page.len() <= 3);
        seen.extend(page.into_iter().map(|c| c.id));
        match next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    seen.sort();
    assert_eq!(seen, (0..7).map(|i| format!("c{i}")).collect::<Vec<_>>());
}

#[tokio::test]
async fn secrets_round_trip_and_delete() {
    emulator::require();
    let sm = store::SecretsManager::from_env().await;
    let name = emulator::unique("shop-keycrm/test/keycrm/key");
    assert!(sm.get(&name).await.unwrap().is_none());
    sm.put(&name, &ApiKey::new("first-key-0001")).await.unwrap();
    sm.put(&name, &ApiKey::new("second-key-0002"))
        .await
        .unwrap();
    assert_eq!(
        sm.get(&name).await.unwrap().unwrap().expose(),
        "second-key-0002"
    );
    sm.delete(&name).await.unwrap();
    assert!(sm.get(&name).await.unwrap().is_none());
    sm.delete(&name).await.unwrap();
}

/// Two independent gate instances (as two Lambdas would have) spending one key: the shared
/// DynamoDB state keeps the combined rate within the budget in every window.
#[tokio::test]
async fn concurrent_callers_share_one_budget() {
    let t = emulator::table().await;
    // The production safety margin absorbs the scheduling jitter of measuring after each sleep.
    let budget = RateBudget {
        requests: 20,
        window: Duration::from_secs(1),
        background_share: 0.8,
        safety: 1.05,
    };
    let a = Arc::new(DynamoRateGate::new(t.clone(), budget.clone()));
    let b = Arc::new(DynamoRateGate::new(
        store::DynamoTable::new(store::DynamoTable::client_from_env().await, t.name.clone()),
        budget.clone(),
    ));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for gate in [a, b] {
        tasks.push(tokio::spawn(async move {
            let mut times = Vec::new();
            for _ in 0..15 {
                gate.acquire("shared-key", Priority::Interactive)
                    .await
                    .unwrap();
                times.push(start.elapsed());
            }
            times
        }));
    }
    let mut all: Vec<Duration> = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    let window = Duration::from_secs(1);
    let max_in_window = (0..all.len())
        .map(|i| {
            all[i..]
                .iter()
                .take_while(|t| **t < all[i] + window)
                .count()
        })
        .max()
        .unwrap();
    // 30 requests at 20/s need at least 1.45 s, and no one-second window holds more than 20.
    assert!(
        max_in_window <= 20,
        "{max_in_window} requests in one window"
    );
    assert!(
        *all.last().unwrap() >= Duration::from_millis(1400),
        "{:?}",
        all.last()
    );
}

/// An idle key lets interactive work spend the window at once (the settings page's reads), the
/// state being shared through DynamoDB; the next request waits for the window.
#[tokio::test]
async fn an_idle_key_grants_interactive_work_a_burst() {
    let t = emulator::table().await;
    let budget = RateBudget {
        requests: 4,
        window: Duration::from_secs(4),
        background_share: 1.0,
        safety: 1.0,
    };
    let a = DynamoRateGate::new(t.clone(), budget.clone());
    let b = DynamoRateGate::new(t.clone(), budget);
    let start = Instant::now();
    // Four requests through two instances: none waits for its one-second slot.
    for gate in [&a, &b, &a, &b] {
        let waited = gate
            .acquire("burst-key", Priority::Interactive)
            .await
            .unwrap();
        assert!(waited < Duration::from_millis(500), "waited {waited:?}");
    }
    // The fifth finds the window spent: it goes when the first request's window has passed.
    b.acquire("burst-key", Priority::Interactive).await.unwrap();
    assert!(
        start.elapsed() >= Duration::from_millis(3_900),
        "{:?}",
        start.elapsed()
    );
}

/// 10 requests a window of 4 s: slots 400 ms apart, background ones 500 ms, a share of 8.
fn ten_in_four_seconds() -> RateBudget {
    RateBudget {
        requests: 10,
        window: Duration::from_secs(4),
        background_share: 0.8,
        safety: 1.0,
    }
}

/// Background work on an idle key (a price run starting at night) spends its share of the
/// window at once, through two instances sharing the item; the grant is stored on the item,
/// and the request after the share is paced again.
#[tokio::test]
async fn an_idle_key_grants_background_work_a_burst_of_its_share() {
    let t = emulator::table().await;
    let budget = ten_in_four_seconds();
    let a = DynamoRateGate::new(t.clone(), budget.clone());
    let b = DynamoRateGate::new(t.clone(), budget.clone());
    let start = Instant::now();
    let before = keycrm::gate::now_us();
    a.acquire("bg-key", Priority::Background).await.unwrap();
    // The grant is on the item: 8 slots from the first request.
    let item = gate_item(&t, "bg-key").await;
    let granted: i64 = store::dynamo::get_n(&item, "bg_burst_until_us").unwrap();
    let tat: i64 = store::dynamo::get_n(&item, "tat_us").unwrap();
    assert_eq!(
        granted,
        tat - budget.interval_us() + 8 * budget.interval_us()
    );
    assert!(granted >= before + 8 * budget.interval_us(), "{granted}");
    for gate in [&b, &a, &b, &a, &b, &a, &b] {
        gate.acquire("bg-key", Priority::Background).await.unwrap();
    }
    // Paced at the share the eight would have taken 7 × 500 ms.
    let burst = start.elapsed();
    assert!(burst < Duration::from_millis(1_500), "{burst:?}");
    // The ninth waits for the background schedule: 8 slots of 500 ms from the first.
    b.acquire("bg-key", Priority::Background).await.unwrap();
    assert!(
        start.elapsed() >= Duration::from_millis(3_900),
        "{:?}",
        start.elapsed()
    );
}

/// A gate item written before the background burst existed (no `bg_burst_until_us`) grants
/// background work no burst: a sync paced by the old rule stays paced.
#[tokio::test]
async fn a_gate_item_without_the_background_burst_grants_none() {
    let t = emulator::table().await;
    let budget = ten_in_four_seconds();
    let now = keycrm::gate::now_us();
    // Idle for interactive work (with a long interactive grant), background due in 1.5 s.
    t.client
        .put_item()
        .table_name(&t.name)
        .item("pk", store::dynamo::s("GATE#old"))
        .item("sk", store::dynamo::s("GATE"))
        .item("tat_us", store::dynamo::n(now - 100_000))
        .item("bg_tat_us", store::dynamo::n(now + 1_500_000))
        .item("burst_until_us", store::dynamo::n(now + 3_000_000))
        .item("ver", store::dynamo::n(3))
        .send()
        .await
        .unwrap();
    let gate = DynamoRateGate::new(t.clone(), budget);
    let waited = gate.acquire("old", Priority::Background).await.unwrap();
    assert!(waited >= Duration::from_millis(1_300), "{waited:?}");
    // The rewritten item carries the field, still without a grant.
    let item = gate_item(&t, "old").await;
    assert_eq!(
        store::dynamo::get_n::<i64>(&item, "bg_burst_until_us"),
        Some(0)
    );
}

async fn gate_item(t: &store::DynamoTable, key: &str) -> store::dynamo::Item {
    t.client
        .get_item()
        .table_name(&t.name)
        .key("pk", store::dynamo::s(format!("GATE#{key}")))
        .key("sk", store::dynamo::s("GATE"))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .unwrap()
}

#[tokio::test]
async fn a_429_pauses_every_instance() {
    let t = emulator::table().await;
    let budget = RateBudget {
        requests: 100,
        window: Duration::from_secs(1),
        background_share: 1.0,
        safety: 1.0,
    };
    let a = DynamoRateGate::new(t.clone(), budget.clone());
    let b = DynamoRateGate::new(t.clone(), budget);
    a.penalize("k", Duration::from_millis(600)).await.unwrap();
    let start = Instant::now();
    b.acquire("k", Priority::Interactive).await.unwrap();
    assert!(
        start.elapsed() >= Duration::from_millis(500),
        "{:?}",
        start.elapsed()
    );
}

/// AWS SDK text (ARNs, account ids, request ids) stays in the operators' log: a real SDK
/// failure becomes a plain reason, and the status page never shows AWS resource names,
/// whatever text reaches the journal.
#[tokio::test]
async fn aws_error_text_never_reaches_the_status_page() {
    use store::StatusJournal;
    let t = emulator::table().await;
    let missing = store::DynamoTable::new(t.client.clone(), emulator::unique("no-such-table"));
    let err = ConnectionStore::get(&missing, "c1").await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("DynamoDB refused the request (ResourceNotFoundException)"),
        "{text}"
    );
    assert!(
        !text.contains("Requested resource not found") && !text.contains("service error"),
        "SDK text in a store error: {text}"
    );
    let sdk_text = "no KeyCRM client: service error: AccessDeniedException: User: \
        arn:aws:sts::123456789012:assumed-role/r/order-push is not authorized to perform: \
        secretsmanager:GetSecretValue on resource: \
        arn:aws:secretsmanager:eu-central-1:123456789012:secret:shop-keycrm/dev/keycrm/c1";
    t.record_error("c1", sdk_text).await.unwrap();
    t.record_failure(
        "c1",
        &store::OrderFailure {
            shop_order_id: "A-7".into(),
            at: Utc::now(),
            reason: sdk_text.into(),
            field_errors: Default::default(),
        },
    )
    .await
    .unwrap();
    let s = t.status("c1").await.unwrap();
    let shown = serde_json::to_string(&s).unwrap();
    assert!(!shown.contains("arn:"), "{shown}");
    assert!(!shown.contains("123456789012"), "{shown}");
    assert!(shown.contains("no KeyCRM client"), "{shown}");
}

#[tokio::test]
async fn a_huge_retry_after_never_freezes_the_shared_key() {
    let t = emulator::table().await;
    let budget = RateBudget {
        requests: 100,
        window: Duration::from_secs(1),
        background_share: 1.0,
        safety: 1.0,
    };
    let gate = DynamoRateGate::new(t.clone(), budget.clone());
    gate.penalize("k", Duration::MAX).await.unwrap();
    // The pause recorded is at most MAX_PENALTY, and the gate item expires soon after.
    let item = t
        .client
        .get_item()
        .table_name(&t.name)
        .key("pk", store::dynamo::s("GATE#k"))
        .key("sk", store::dynamo::s("GATE"))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    let tat: i64 = store::dynamo::get_n(&item, "tat_us").unwrap();
    let ahead = tat - keycrm::gate::now_us();
    assert!(
        ahead <= keycrm::gate::MAX_PENALTY.as_micros() as i64,
        "paused {ahead} µs ahead"
    );
    // A caller whose invocation ends before the pause is told at once and books nothing.
    let started = Instant::now();
    let slot = gate
        .acquire_until(
            "k",
            Priority::Interactive,
            Some(keycrm::gate::now_us() + 300_000),
        )
        .await
        .unwrap();
    assert!(matches!(slot, keycrm::Slot::TooLate(_)), "{slot:?}");
    assert!(started.elapsed() < Duration::from_secs(5));

    // A key an older version froze for a year (unclamped pause) thaws at once.
    let far = keycrm::gate::now_us() + 365 * 86_400 * 1_000_000;
    t.client
        .put_item()
        .table_name(&t.name)
        .item("pk", store::dynamo::s("GATE#frozen"))
        .item("sk", store::dynamo::s("GATE"))
        .item("tat_us", store::dynamo::n(far))
        .item("bg_tat_us", store::dynamo::n(far))
        .item("ver", store::dynamo::n(7))
        .send()
        .await
        .unwrap();
    let started = Instant::now();
    tokio::time::timeout(
        Duration::from_secs(20),
        gate.acquire("frozen", Priority::Interactive),
    )
    .await
    .expect("the frozen key does not hold the caller")
    .unwrap();
    assert!(started.elapsed() < Duration::from_secs(20));
}
