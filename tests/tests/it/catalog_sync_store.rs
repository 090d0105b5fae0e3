//! The catalog sync's DynamoDB adapters (links, staged products, seen ids, leases, run
//! reports) against the moto emulator.

use chrono::Utc;
use e2e_tests::emulator;
use mapping::catalog::{CategoryLink, CrmOffer, CrmProduct, ProductLink, Swept, VariantLink};
use rust_decimal::Decimal;
use std::time::Duration;
use store::{LinkStore, StoreError, SyncKind, SyncRun, SyncStore};

fn link(id: i64, shop: &str) -> ProductLink {
    ProductLink {
        keycrm_id: id,
        shop_id: shop.into(),
        hash: 0xdead_beef_0000_0001,
        swept: (id % 2 == 0).then_some(Swept::Hidden),
        variants: vec![VariantLink {
            offer_id: id * 10,
            shop_id: format!("{shop}-v1"),
            hash: u64::MAX,
            price: Some(Decimal::new(129_950, 2)),
            available: Some(false),
            gone: false,
        }],
    }
}

#[tokio::test]
async fn product_links_round_trip_page_and_find_owners() {
    let t = emulator::table().await;
    let links: Vec<ProductLink> = (1..=130).map(|i| link(i, &format!("p{i}"))).collect();
    t.put_products("c1", &links).await.unwrap();
    let got = t.get_products("c1", &[5, 6, 999, 5]).await.unwrap();
    assert_eq!(got.len(), 2);
    assert!(
        got.contains(&links[4]) && got.contains(&links[5]),
        "u64 hashes and decimals survive"
    );
    let ids: Vec<i64> = (1..=130).collect();
    assert_eq!(
        t.get_products("c1", &ids).await.unwrap().len(),
        130,
        "more than one BatchGet"
    );

    let mut seen = 0;
    let mut after = None;
    loop {
        let (page, next) = t.products_page("c1", after, 50).await.unwrap();
        seen += page.len();
        match next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(seen, 130);
    assert!(
        t.products_page("c2", None, 50).await.unwrap().0.is_empty(),
        "per connection"
    );

    let mut states = Vec::new();
    let mut after = None;
    loop {
        let (page, next) = t.product_states_page("c1", after, 40).await.unwrap();
        states.extend(page);
        match next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    states.sort();
    assert_eq!(states.len(), 130);
    assert_eq!(
        states[3],
        (4, true),
        "the swept flag without reading the link"
    );
    assert_eq!(states[4], (5, false));

    let mut owners = t
        .owners("c1", &["p3".into(), "p4".into(), "nope".into()])
        .await
        .unwrap();
    owners.sort();
    assert_eq!(owners, vec![("p3".to_string(), 3), ("p4".to_string(), 4)]);
    // Every reverse pointer by Query pages, in shop id order, nothing else of the partition.
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let (page, next) = t.owners_page("c1", after, 40).await.unwrap();
        assert!(page.len() <= 40);
        all.extend(page);
        match next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(all.len(), 130);
    assert!(
        all.windows(2).all(|w| w[0].0 < w[1].0),
        "in order, once each"
    );
    assert!(all.contains(&("p77".to_string(), 77)));
    assert!(t.owners_page("c2", None, 40).await.unwrap().0.is_empty());
    t.delete_products("c1", &[links[2].clone()]).await.unwrap();
    assert!(t.owners("c1", &["p3".into()]).await.unwrap().is_empty());
    let (first, _) = t.owners_page("c1", None, 1000).await.unwrap();
    assert_eq!(first.len(), 129, "a deleted link's pointer goes with it");
    assert!(t.get_products("c1", &[3]).await.unwrap().is_empty());

    t.put_categories(
        "c1",
        &[CategoryLink {
            keycrm_id: 11,
            shop_id: "c-a".into(),
            hash: 9,
            hidden: false,
        }],
    )
    .await
    .unwrap();
    t.put_categories(
        "c1",
        &[CategoryLink {
            keycrm_id: 11,
            shop_id: "c-a".into(),
            hash: 10,
            hidden: false,
        }],
    )
    .await
    .unwrap();
    assert_eq!(
        t.categories("c1").await.unwrap(),
        vec![CategoryLink {
            keycrm_id: 11,
            shop_id: "c-a".into(),
            hash: 10,
            hidden: false,
        }]
    );
}

#[tokio::test]
async fn staged_products_and_seen_ids() {
    let t = emulator::table().await;
    let staged: Vec<CrmProduct> = (1..=60)
        .map(|i| CrmProduct {
            id: i,
            name: format!("Сукня {i}"),
            offers: vec![CrmOffer {
                id: i * 10,
                sku: Some(format!("S-{i}")),
                price: Decimal::from(i),
                ..CrmOffer::default()
            }],
            ..CrmProduct::default()
        })
        .collect();
    t.put_staged("c1", &staged).await.unwrap();
    assert_eq!(t.get_staged("c1", &[7, 8]).await.unwrap().len(), 2);
    let (first, next) = t.staged_page("c1", None, 25).await.unwrap();
    assert_eq!(first.len(), 25);
    // Deleting what was read does not disturb the cursor.
    t.delete_staged("c1", &first.iter().map(|p| p.id).collect::<Vec<_>>())
        .await
        .unwrap();
    let (second, _) = t.staged_page("c1", next, 100).await.unwrap();
    assert_eq!(second.len(), 35);
    assert_eq!(t.staged_page("c1", None, 100).await.unwrap().0.len(), 35);

    t.put_seen("c1", 1000, 1, &[1, 2, 3], &[10, 20])
        .await
        .unwrap();
    t.put_seen("c1", 1000, 2, &[4], &[40]).await.unwrap();
    t.put_seen("c1", 2000, 1, &[9], &[90]).await.unwrap();
    let s = t.seen("c1", 1000).await.unwrap();
    assert_eq!(s.products.len(), 4);
    assert!(
        s.offers.contains(&40) && !s.offers.contains(&90),
        "runs apart"
    );
    t.clear_seen("c1", 1000).await.unwrap();
    assert!(t.seen("c1", 1000).await.unwrap().products.is_empty());
    assert_eq!(t.seen("c1", 2000).await.unwrap().products.len(), 1);
}

#[tokio::test]
async fn leases_never_overlap_and_paused_runs_are_found_for_resume() {
    let t = emulator::table().await;
    let long = Duration::from_secs(60);
    let mut a = t
        .acquire("c1", SyncKind::Full, "a", long)
        .await
        .unwrap()
        .unwrap();
    assert!(t
        .acquire("c1", SyncKind::Full, "b", long)
        .await
        .unwrap()
        .is_none());
    assert!(
        t.acquire("c1", SyncKind::Full, "a", long)
            .await
            .unwrap()
            .is_some(),
        "re-entrant"
    );
    a.checkpoint = Some(r#"{"page":3}"#.into());
    a.run = Some(SyncRun {
        run_id: "r1".into(),
        connection_id: "c1".into(),
        state: store::RunState::Running,
        ..SyncRun::default()
    });
    let a = t.checkpoint(&a, long).await.unwrap();
    assert_eq!(a.checkpoint.as_deref(), Some(r#"{"page":3}"#));
    assert!(
        t.unfinished(10).await.unwrap().is_empty(),
        "a held lease is not resumable"
    );
    t.pause(&a).await.unwrap();
    assert_eq!(
        t.unfinished(10).await.unwrap(),
        vec![("c1".to_string(), SyncKind::Full)]
    );

    let b = t
        .acquire("c1", SyncKind::Full, "b", long)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(b.checkpoint.as_deref(), Some(r#"{"page":3}"#));
    assert_eq!(b.run.as_ref().unwrap().run_id, "r1");
    assert!(
        matches!(t.checkpoint(&a, long).await, Err(StoreError::Conflict(_))),
        "a lost it"
    );
    assert!(matches!(t.pause(&a).await, Err(StoreError::Conflict(_))));
    let mut done = b.clone();
    done.checkpoint = None;
    let done = t.checkpoint(&done, long).await.unwrap();
    assert_eq!(done.checkpoint, None);
    t.finish(&done).await.unwrap();
    assert!(t.unfinished(10).await.unwrap().is_empty());
    let c = t
        .acquire("c1", SyncKind::Full, "c", long)
        .await
        .unwrap()
        .unwrap();
    assert!(c.checkpoint.is_none() && c.run.is_none());

    // A crashed holder's lease expires and is taken over with its checkpoint.
    let mut x = t
        .acquire("c2", SyncKind::Full, "x", Duration::from_millis(200))
        .await
        .unwrap()
        .unwrap();
    x.checkpoint = Some("cp".into());
    t.checkpoint(&x, Duration::from_millis(200)).await.unwrap();
    assert!(t
        .acquire("c2", SyncKind::Full, "y", long)
        .await
        .unwrap()
        .is_none());
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        t.unfinished(10).await.unwrap(),
        vec![("c2".to_string(), SyncKind::Full)]
    );
    let y = t
        .acquire("c2", SyncKind::Full, "y", long)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(y.checkpoint.as_deref(), Some("cp"));
}

/// The queued-continuation mark on the lease item (DynamoDB): a marked run is not resumable
/// until the mark passes; the tick's claim is conditional; acquiring and pausing clear it.
#[tokio::test]
async fn a_queued_continuation_mark_keeps_the_run_from_the_resume_tick() {
    let t = emulator::table().await;
    let conn = format!("q{}", Utc::now().timestamp_micros());
    let later = Utc::now() + chrono::Duration::hours(2);
    let resumable = |t: &store::DynamoTable| {
        let t = t.clone();
        let conn = conn.clone();
        async move {
            t.unfinished(10_000)
                .await
                .unwrap()
                .contains(&(conn, SyncKind::Full))
        }
    };
    assert!(
        !t.mark_queued(&conn, SyncKind::Full, None, later)
            .await
            .unwrap(),
        "no run, no mark"
    );
    let mut a = t
        .acquire(&conn, SyncKind::Full, "a", Duration::from_millis(100))
        .await
        .unwrap()
        .unwrap();
    a.checkpoint = Some("cp".into());
    t.checkpoint(&a, Duration::from_millis(100)).await.unwrap();
    // The hand-off marks while it holds the lease; another holder cannot.
    assert!(!t
        .mark_queued(&conn, SyncKind::Full, Some("b"), later)
        .await
        .unwrap());
    assert!(t
        .mark_queued(&conn, SyncKind::Full, Some("a"), later)
        .await
        .unwrap());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!resumable(&t).await, "the continuation is still queued");
    assert!(!t
        .mark_queued(&conn, SyncKind::Full, None, later)
        .await
        .unwrap());
    // The continuation is consumed: the mark goes with the acquire.
    let b = t
        .acquire(&conn, SyncKind::Full, "a", Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    t.pause(&b).await.unwrap();
    assert!(resumable(&t).await);
    // The tick claims it once; a second claim (another tick) fails; clearing a mark that is
    // not the one written leaves it.
    assert!(t
        .mark_queued(&conn, SyncKind::Full, None, later)
        .await
        .unwrap());
    assert!(!t
        .mark_queued(&conn, SyncKind::Full, None, later)
        .await
        .unwrap());
    assert!(!resumable(&t).await);
    let other = later + chrono::Duration::seconds(1);
    t.clear_queued(&conn, SyncKind::Full, other).await.unwrap();
    assert!(!resumable(&t).await);
    // Its job could not be sent: the mark is removed and the run is resumable again.
    t.clear_queued(&conn, SyncKind::Full, later).await.unwrap();
    assert!(resumable(&t).await);
    // A mark that has passed does not hide the run.
    let past = Utc::now() - chrono::Duration::seconds(1);
    let c = t
        .acquire(&conn, SyncKind::Full, "c", Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    assert!(t
        .mark_queued(&conn, SyncKind::Full, Some("c"), past)
        .await
        .unwrap());
    t.pause(&c).await.unwrap();
    assert!(resumable(&t).await);
    assert!(t
        .mark_queued(&conn, SyncKind::Full, Some("c"), later)
        .await
        .unwrap());
    // Pausing clears a live mark too (nothing is queued for a paused run).
    t.pause(&c).await.unwrap();
    assert!(resumable(&t).await);
}

#[tokio::test]
async fn run_reports_by_id_and_newest_first() {
    let t = emulator::table().await;
    let t0 = Utc::now();
    for (i, id) in ["r1", "r2", "r3"].iter().enumerate() {
        t.put_run(&SyncRun {
            run_id: id.to_string(),
            connection_id: "c1".into(),
            kind: Some(SyncKind::Full),
            state: store::RunState::Running,
            started_at: Some(t0 + chrono::Duration::seconds(i as i64)),
            ..SyncRun::default()
        })
        .await
        .unwrap();
    }
    let mut r2 = t.get_run("c1", "r2").await.unwrap().unwrap();
    r2.state = store::RunState::Completed;
    r2.counts.insert("create".into(), 5);
    t.put_run(&r2).await.unwrap();
    // Re-recorded with another start time: still one report.
    let mut r1 = t.get_run("c1", "r1").await.unwrap().unwrap();
    r1.started_at = Some(t0 + chrono::Duration::seconds(10));
    t.put_run(&r1).await.unwrap();
    let runs = t.list_runs("c1", 10).await.unwrap();
    let ids: Vec<&str> = runs.iter().map(|r| r.run_id.as_str()).collect();
    assert_eq!(ids, vec!["r1", "r3", "r2"]);
    assert_eq!(
        t.get_run("c1", "r2").await.unwrap().unwrap().counts["create"],
        5
    );
    assert_eq!(t.list_runs("c1", 2).await.unwrap().len(), 2);
    assert!(t.get_run("c1", "nope").await.unwrap().is_none());
    assert!(t.list_runs("c9", 5).await.unwrap().is_empty());
}
