//! The KeyCRM client against the simulator: pagination, the error taxonomy, retry rules, and
//! the shared rate gate (with the DynamoDB gate on the emulator for concurrent callers).

use e2e_tests::emulator;
use keycrm::models::{FieldModel, NewBuyer, NewOrder, NewOrderProduct};
use keycrm::{
    ApiKey, ClientConfig, KeycrmClient, KeycrmError, LocalRateGate, OfferFilter, Pages, Priority,
    RateBudget, RateGate, RetryPolicy, UnlimitedGate,
};
use keycrm_sim::{AccountSpec, Faults, SimConfig, SimHandle};
use rust_decimal::Decimal;
use std::sync::Arc;
use std::time::{Duration, Instant};

const KEY: &str = "test-key-0001";

async fn sim(products: usize, rate_limit: u32, time_scale: f64) -> SimHandle {
    keycrm_sim::start(
        SimConfig {
            accounts: vec![AccountSpec {
                api_key: KEY.into(),
                seed: 7,
                products,
                pipelines_enabled: true,
            }],
            rate_limit_per_minute: rate_limit,
            time_scale,
            public_base_url: None,
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap()
}

fn client(sim: &SimHandle, gate: Arc<dyn RateGate>, retry: RetryPolicy) -> KeycrmClient {
    let mut cfg = ClientConfig::with_base_url(sim.base_url());
    cfg.retry = RetryPolicy {
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(50),
        ..retry
    };
    cfg.timeout = Duration::from_secs(2);
    KeycrmClient::new(cfg, ApiKey::new(KEY), gate).unwrap()
}

fn unlimited(sim: &SimHandle) -> KeycrmClient {
    client(sim, Arc::new(UnlimitedGate), RetryPolicy::default())
}

fn minimal_order(source_id: i64, uuid: &str) -> NewOrder {
    NewOrder {
        source_id,
        source_uuid: Some(uuid.into()),
        buyer: NewBuyer {
            full_name: Some("Тест Покупець".into()),
            phone: Some("+380501112233".into()),
            email: None,
        },
        products: vec![NewOrderProduct {
            sku: "NO-SUCH-SKU".into(),
            name: "Товар".into(),
            price: Decimal::from(100),
            quantity: Decimal::ONE,
            ..NewOrderProduct::default()
        }],
        ..NewOrder::default()
    }
}

#[tokio::test]
async fn pagination_walks_every_page_at_limit_50() {
    let sim = sim(180, 0, 1.0).await;
    let c = unlimited(&sim);
    let expected = sim.catalog(KEY).offers.len();
    sim.reset_stats();
    let mut pages = c.offers(&OfferFilter::default());
    let mut seen = Vec::new();
    while let Some(page) = pages.next_page().await.unwrap() {
        assert!(page.data.len() <= 50);
        seen.extend(page.data.into_iter().map(|o| o.id));
    }
    assert_eq!(seen.len(), expected);
    seen.dedup();
    assert_eq!(seen.len(), expected, "no offer twice");
    let floor = expected.div_ceil(50) as u64;
    assert_eq!(
        sim.stats().endpoint("GET /offers"),
        floor,
        "exactly one request per page"
    );
    assert_eq!(c.stats().requests, floor);
}

#[tokio::test]
async fn offers_carry_their_product_and_live_fields() {
    let sim = sim(60, 0, 1.0).await;
    let c = unlimited(&sim);
    let page = c
        .offers(&OfferFilter::default())
        .next_page()
        .await
        .unwrap()
        .unwrap();
    let o = &page.data[0];
    let p = o.product.as_ref().expect("include=product");
    assert_eq!(p.id, o.product_id);
    assert!(!p.name.is_empty());
    assert!(o.updated_at.is_some(), "ISO timestamps parse");
    assert!(o.quantity.is_some());
}

#[tokio::test]
async fn a_listing_resumes_from_a_saved_cursor() {
    let sim = sim(150, 0, 1.0).await;
    let c = unlimited(&sim);
    let mut first = c.offers(&OfferFilter::default());
    let p1 = first.next_page().await.unwrap().unwrap();
    let cursor = first.cursor().expect("more pages");
    drop(first);
    // A later invocation continues where the first stopped.
    let mut resumed: Pages<keycrm::models::Offer> = Pages::resume(&c, &cursor).unwrap();
    let p2 = resumed.next_page().await.unwrap().unwrap();
    assert_eq!(p2.current_page, 2);
    assert!(p2
        .data
        .iter()
        .all(|o| !p1.data.iter().any(|x| x.id == o.id)));
    // A cursor pointing elsewhere is refused: the key never leaves for another host.
    assert!(
        Pages::<keycrm::models::Offer>::resume(&c, "http://example.com/v1/offers?page=2").is_err()
    );
}

#[tokio::test]
async fn reference_reads_cover_what_the_settings_page_needs() {
    let sim = sim(30, 0, 1.0).await;
    let c = unlimited(&sim);
    assert!(!c.sources().await.unwrap().is_empty());
    let statuses = c.order_statuses().await.unwrap();
    assert!(statuses.iter().any(|s| s.group_id == 1));
    assert!(c
        .delivery_services()
        .await
        .unwrap()
        .iter()
        .any(|d| d.is_nova_poshta()));
    assert!(!c.payment_methods().await.unwrap().is_empty());
    let fields = c.custom_fields(FieldModel::Order).await.unwrap();
    assert!(fields.iter().all(|f| f.uuid.starts_with("OR_")));
    assert!(fields
        .iter()
        .any(|f| f.field_type == "select" && !f.options.is_empty()));
    let pipelines = c.pipelines().await.unwrap();
    let statuses = c.pipeline_statuses(pipelines[0].id).await.unwrap();
    assert!(statuses.iter().all(|s| s.pipeline_id == pipelines[0].id));
    let cats = c.categories().await.unwrap();
    assert!(
        cats.iter().any(|c| c.parent_id.is_none()) && cats.iter().any(|c| c.parent_id.is_some())
    );
}

#[tokio::test]
async fn error_taxonomy() {
    let sim = sim(10, 0, 1.0).await;
    let c = unlimited(&sim);

    let bad = KeycrmClient::new(
        ClientConfig::with_base_url(sim.base_url()),
        ApiKey::new("wrong-key"),
        Arc::new(UnlimitedGate),
    )
    .unwrap();
    assert!(matches!(
        bad.verify_key().await,
        Err(KeycrmError::Unauthorized)
    ));
    c.verify_key().await.unwrap();

    assert!(matches!(
        c.get_order(987_654).await,
        Err(KeycrmError::NotFound { .. })
    ));

    let err = c
        .list::<serde_json::Value>("order", &[("filter[created_at_min]", "2026-01-01".into())])
        .collect_all()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, KeycrmError::BadRequest { message } if message.contains("not allowed")),
        "{err:?}"
    );

    let err = c
        .create_order(&minimal_order(999_999, "bad-source"))
        .await
        .unwrap_err();
    match err {
        KeycrmError::Validation { errors, .. } => {
            assert!(errors.contains_key("source_id"), "{errors:?}")
        }
        other => panic!("{other:?}"),
    }

    let unreachable = KeycrmClient::new(
        ClientConfig {
            retry: RetryPolicy::none(),
            ..ClientConfig::with_base_url("http://127.0.0.1:9/v1")
        },
        ApiKey::new(KEY),
        Arc::new(UnlimitedGate),
    )
    .unwrap();
    assert!(matches!(
        unreachable.verify_key().await,
        Err(KeycrmError::Transient {
            maybe_committed: false,
            ..
        })
    ));
}

#[tokio::test]
async fn rate_limited_answers_carry_retry_after() {
    // 5 a minute, a minute lasting 2 s: the 6th request is refused with a Retry-After.
    let sim = sim(10, 5, 30.0).await;
    let c = client(&sim, Arc::new(UnlimitedGate), RetryPolicy::none());
    for _ in 0..5 {
        c.verify_key().await.unwrap();
    }
    match c.verify_key().await {
        Err(KeycrmError::RateLimited { retry_after }) => {
            assert!(retry_after >= Duration::from_secs(1))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(sim.stats().rate_limited_429, 1);
}

#[tokio::test]
async fn reads_retry_through_5xx_and_429_but_writes_do_not() {
    let sim = sim(10, 0, 1.0).await;
    let c = client(
        &sim,
        Arc::new(UnlimitedGate),
        RetryPolicy {
            max_attempts: 8,
            ..RetryPolicy::default()
        },
    );
    sim.set_faults(Faults {
        error_rate_5xx: 0.5,
        seed: 3,
        ..Faults::default()
    });
    for _ in 0..10 {
        c.order_statuses()
            .await
            .expect("reads survive a 50% 5xx storm");
    }
    assert!(c.stats().retries > 0, "some reads were retried");

    sim.set_faults(Faults {
        error_rate_5xx: 1.0,
        seed: 3,
        ..Faults::default()
    });
    sim.reset_stats();
    let source = 1;
    let err = c
        .create_order(&minimal_order(source, "w-1"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            KeycrmError::Transient {
                maybe_committed: true,
                status: Some(_),
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        sim.stats().endpoint("POST /order"),
        1,
        "a write is sent once"
    );
}

#[tokio::test]
async fn commit_then_timeout_is_reported_as_maybe_committed() {
    let sim = sim(10, 0, 1.0).await;
    let mut cfg = ClientConfig::with_base_url(sim.base_url());
    cfg.timeout = Duration::from_millis(300);
    let c = KeycrmClient::new(cfg, ApiKey::new(KEY), Arc::new(UnlimitedGate)).unwrap();
    let source = c.sources().await.unwrap()[0].id;
    sim.set_faults(Faults {
        commit_then_timeout: 1,
        hang_ms: 2_000,
        ..Faults::default()
    });
    let err = c
        .create_order(&minimal_order(source, "shop-77"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            KeycrmError::Transient {
                maybe_committed: true,
                ..
            }
        ),
        "{err:?}"
    );
    // The write landed: a lookup by source_uuid finds it, which is how callers recover.
    let found = c
        .find_orders_by_source_uuid("shop-77", Some(source))
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(sim.orders(KEY).len(), 1);
}

#[tokio::test]
async fn the_local_gate_keeps_one_process_under_the_limit() {
    // 60 a minute with a minute of 2 s; 90 requests must take more than one window and never
    // see a 429.
    let scale = 30.0;
    let sim = sim(10, 60, scale).await;
    let gate: Arc<dyn RateGate> = Arc::new(LocalRateGate::new(RateBudget::keycrm_scaled(scale)));
    let c = client(&sim, gate, RetryPolicy::none());
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..30 {
                c.verify_key().await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(sim.stats().rate_limited_429, 0);
    assert!(
        start.elapsed() >= Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
}

/// Two callers with their own clients and gate instances (two Lambdas) share one key through
/// the DynamoDB gate: together they stay within 60 a minute and see zero 429s.
#[tokio::test]
async fn two_concurrent_callers_sharing_a_key_see_no_429() {
    let table = emulator::table().await;
    let scale = 20.0; // a KeyCRM minute lasts 3 s
    let sim = sim(10, 60, scale).await;
    let mut tasks = Vec::new();
    let start = Instant::now();
    for priority in [Priority::Interactive, Priority::Background] {
        let gate: Arc<dyn RateGate> = Arc::new(store::DynamoRateGate::new(
            store::DynamoTable::new(
                store::DynamoTable::client_from_env().await,
                table.name.clone(),
            ),
            RateBudget::keycrm_scaled(scale),
        ));
        let c = client(&sim, gate, RetryPolicy::none()).with_priority(priority);
        tasks.push(tokio::spawn(async move {
            for _ in 0..45 {
                c.verify_key().await.expect("no 429, no error");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let stats = sim.stats();
    assert_eq!(stats.rate_limited_429, 0, "{:?}", stats.responses_by_status);
    assert_eq!(stats.requests_by_api_key.get(KEY).copied(), Some(90));
    // 90 requests at 60 per 3 s cannot finish inside one window.
    assert!(
        start.elapsed() >= Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );
}

/// A KeyCRM stand-in that answers every request 429 with the given `Retry-After`.
async fn always_429(retry_after: &'static str) -> String {
    use axum::http::{header, StatusCode};
    use axum::response::IntoResponse;
    let app = axum::Router::new().fallback(move || async move {
        (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, retry_after)],
            r#"{"message":"Too Many Attempts."}"#,
        )
            .into_response()
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/v1")
}

#[tokio::test]
async fn a_hostile_retry_after_neither_panics_nor_freezes_the_key() {
    let base = always_429("1e20").await;
    let gate = Arc::new(LocalRateGate::new(RateBudget::keycrm()));
    let c = KeycrmClient::new(
        ClientConfig::with_base_url(&base),
        ApiKey::new(KEY),
        gate.clone(),
    )
    .unwrap();
    let started = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(10);
    let err = keycrm::deadline::scope(Some(deadline), c.verify_key())
        .await
        .unwrap_err();
    match err {
        KeycrmError::RateLimited { retry_after } => {
            assert!(
                retry_after <= keycrm::client::MAX_RETRY_AFTER,
                "{retry_after:?}"
            )
        }
        other => panic!("{other:?}"),
    }
    // The key is paused for every caller, but at most MAX_PENALTY, and a caller with a
    // deadline is told at once instead of sleeping through it.
    let again = keycrm::deadline::scope(Some(deadline), c.verify_key())
        .await
        .unwrap_err();
    match again {
        KeycrmError::RateLimited { retry_after } => {
            assert!(retry_after <= keycrm::gate::MAX_PENALTY, "{retry_after:?}")
        }
        other => panic!("{other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_busy_key_never_makes_a_caller_wait_past_its_deadline() {
    let sim = sim(5, 0, 1.0).await;
    let gate = Arc::new(LocalRateGate::new(RateBudget::keycrm()));
    // Another function hit a 429 a moment ago: the key is paused for a minute.
    let fp = ApiKey::new(KEY).fingerprint();
    gate.penalize(&fp, Duration::from_secs(60)).await.unwrap();
    let c = client(&sim, gate, RetryPolicy::default());
    let started = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(5);
    let err = tokio::time::timeout(
        Duration::from_secs(30),
        keycrm::deadline::scope(Some(deadline), c.sources()),
    )
    .await
    .expect("returned instead of waiting out the pause")
    .unwrap_err();
    assert!(
        matches!(err, KeycrmError::RateLimited { retry_after } if retry_after > Duration::from_secs(50)),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(sim.stats().total_requests, 0, "nothing was sent");
    // With no time left at all, nothing is even asked of the gate.
    let gone = Instant::now();
    let err = keycrm::deadline::scope(Some(gone), c.sources())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            KeycrmError::Transient {
                maybe_committed: false,
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_request_never_outlives_the_deadline_it_runs_under() {
    let sim = sim(5, 0, 1.0).await;
    sim.set_faults(Faults {
        latency_ms: 10_000,
        ..Default::default()
    });
    let mut cfg = ClientConfig::with_base_url(sim.base_url());
    cfg.timeout = Duration::from_secs(20);
    cfg.retry = RetryPolicy::none();
    cfg.min_request_time = Duration::from_millis(100);
    let c = KeycrmClient::new(cfg, ApiKey::new(KEY), Arc::new(UnlimitedGate)).unwrap();
    let started = Instant::now();
    let err = keycrm::deadline::scope(
        Some(Instant::now() + Duration::from_millis(800)),
        c.sources(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, KeycrmError::Transient { .. }), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "cut at the deadline, not the 20 s timeout: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn every_request_429_and_gate_refusal_reaches_the_observer_once() {
    use runtime::metrics::{Emitter, Function, KeycrmMeter, Sink};
    // 5 a minute, a minute lasting 2 s: the 6th request is refused with a Retry-After.
    let sim = sim(10, 5, 30.0).await;
    let mut cfg = ClientConfig::with_base_url(sim.base_url());
    cfg.retry = RetryPolicy::none();
    cfg.observer = Some(Arc::new(KeycrmMeter::for_connection("conn-obs")));
    let c = KeycrmClient::new(cfg, ApiKey::new(KEY), Arc::new(UnlimitedGate)).unwrap();
    let (sink, lines) = Sink::memory();
    let journal = Arc::new(store::MemoryJournal::default());
    let emitter = Emitter::new(Function::OrderPush)
        .with_sink(sink)
        .with_journal(journal.clone());
    emitter
        .run(async {
            for _ in 0..5 {
                c.verify_key().await.unwrap();
            }
            assert!(matches!(
                c.verify_key().await,
                Err(KeycrmError::RateLimited { .. })
            ));
        })
        .await;
    let docs = lines.documents();
    let value = |name: &str, outcome: Option<&str>| -> f64 {
        docs.iter()
            .filter(|d| d.get(name).is_some())
            .filter(|d| outcome.is_none_or(|o| d["outcome"] == o))
            .map(|d| d[name].as_f64().unwrap_or(0.0))
            .sum()
    };
    assert_eq!(value("KeycrmRequests", Some("ok")), 5.0);
    assert_eq!(value("KeycrmRequests", Some("rate_limited")), 1.0);
    assert_eq!(value("KeycrmRateLimited", None), 1.0);
    assert_eq!(sim.stats().total_requests, 6);
    let status = store::StatusJournal::status(journal.as_ref(), "conn-obs")
        .await
        .unwrap();
    assert_eq!(status.counters["keycrm_requests"], 6);
    assert_eq!(status.counters["keycrm_rate_limited"], 1);

    // A key paused by a 429 elsewhere, and a deadline too close to wait for it: the gate
    // refuses, nothing is sent, and that is counted too.
    let gate = Arc::new(LocalRateGate::new(RateBudget::keycrm()));
    gate.penalize(&ApiKey::new(KEY).fingerprint(), Duration::from_secs(60))
        .await
        .unwrap();
    let mut cfg = ClientConfig::with_base_url(sim.base_url());
    cfg.observer = Some(Arc::new(KeycrmMeter::unattributed()));
    let paused = KeycrmClient::new(cfg, ApiKey::new(KEY), gate).unwrap();
    lines.clear();
    emitter
        .run(keycrm::deadline::scope(
            Some(Instant::now() + Duration::from_secs(5)),
            async { assert!(paused.sources().await.is_err()) },
        ))
        .await;
    let docs = lines.documents();
    assert_eq!(docs.len(), 1, "{docs:?}");
    assert_eq!(docs[0]["RateGateRefused"], 1.0);
    assert!(docs[0].get("KeycrmRequests").is_none());
}
