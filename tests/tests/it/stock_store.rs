//! Realtime stock's DynamoDB pieces against the moto emulator: the pending set and its
//! in-flight twin, the window record, realtime stock's written records, and the offer index
//! (kept with every link, back-filled once for links written before it).

use e2e_tests::emulator;
use mapping::catalog::{ProductLink, VariantLink};
use store::{DynamoTable, LinkStore, StockStore};

fn link(k: i64, offers: &[i64]) -> ProductLink {
    ProductLink {
        keycrm_id: k,
        shop_id: format!("sp{k}"),
        hash: 1,
        swept: None,
        variants: offers
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
    }
}

#[tokio::test]
async fn pending_offers_move_to_flight_atomically_and_come_back_when_signalled_again() {
    let t = emulator::table().await;
    let c = "conn-a";
    assert!(t.pending(c).await.unwrap().is_empty());
    // ids across every bucket, duplicates, twice (KeyCRM retries)
    let ids: Vec<i64> = (1000..1100).chain([1005, 1050]).collect();
    t.add_pending(c, &ids).await.unwrap();
    t.add_pending(c, &ids[..10]).await.unwrap();
    assert_eq!(
        t.pending(c).await.unwrap(),
        (1000..1100).collect::<Vec<_>>()
    );
    let chunk: Vec<i64> = (1000..1050).collect();
    t.begin(c, &chunk).await.unwrap();
    assert_eq!(
        t.pending(c).await.unwrap(),
        (1050..1100).collect::<Vec<_>>()
    );
    assert_eq!(t.in_flight(c).await.unwrap(), chunk);
    t.add_pending(c, &[1001]).await.unwrap(); // signalled again mid-flush
    t.finish(c, &chunk).await.unwrap();
    assert!(t.in_flight(c).await.unwrap().is_empty());
    let mut want: Vec<i64> = (1050..1100).collect();
    want.insert(0, 1001);
    assert_eq!(t.pending(c).await.unwrap(), want);
    assert!(t.pending("conn-b").await.unwrap().is_empty());
    t.begin(c, &[]).await.unwrap();
    t.finish(c, &[]).await.unwrap();
}

#[tokio::test]
async fn a_large_import_fits_the_pending_items() {
    let t = emulator::table().await;
    let ids: Vec<i64> = (100_000..130_000).collect();
    for chunk in ids.chunks(10_000) {
        t.add_pending("big", chunk).await.unwrap();
    }
    let got = t.pending("big").await.unwrap();
    assert_eq!(got.len(), 30_000);
    assert_eq!((got[0], got[29_999]), (100_000, 129_999));
}

#[tokio::test]
async fn one_live_window_one_holder_and_takeover_after_expiry() {
    let t = emulator::table().await;
    let c = "conn-w";
    assert!(t.window(c).await.unwrap().is_none());
    assert!(t.schedule_window(c, "w1", 1_000, 0).await.unwrap());
    assert!(!t.schedule_window(c, "w2", 2_000, 500).await.unwrap());
    assert!(
        !t.take_window(c, "w2", "h2", 2_000, 500).await.unwrap(),
        "orphan"
    );
    assert!(t.take_window(c, "w1", "h1", 3_000, 500).await.unwrap());
    assert!(
        !t.take_window(c, "w1", "dup", 3_000, 600).await.unwrap(),
        "held"
    );
    let w = t.window(c).await.unwrap().unwrap();
    assert_eq!(
        (w.id.as_str(), w.until_ms, w.holder.as_deref()),
        ("w1", 3_000, Some("h1"))
    );
    assert!(t.renew_window(c, "h1", 4_000).await.unwrap());
    assert!(!t.renew_window(c, "h9", 9_000).await.unwrap());
    assert!(t.park_window(c, "h1", 5_000).await.unwrap());
    assert!(
        !t.schedule_window(c, "w3", 6_000, 4_500).await.unwrap(),
        "parked = live"
    );
    assert!(
        t.take_window(c, "w1", "h1b", 6_000, 4_500).await.unwrap(),
        "the retry"
    );
    // the holder died; after expiry anyone may take over or schedule
    assert!(t.take_window(c, "w7", "h7", 9_000, 6_001).await.unwrap());
    t.end_window(c, "h1b").await.unwrap();
    assert_eq!(
        t.window(c).await.unwrap().unwrap().id,
        "w7",
        "not h1b's to end"
    );
    t.end_window(c, "h7").await.unwrap();
    assert!(t.window(c).await.unwrap().is_none());
    t.end_window(c, "h7").await.unwrap();
}

#[tokio::test]
async fn written_records_and_the_offer_index_follow_the_links() {
    let t = emulator::table().await;
    let c = "conn-i";
    t.put_products(c, &[link(10, &[1, 2]), link(20, &[3])])
        .await
        .unwrap();
    let m = t.products_of_offers(c, &[1, 2, 3, 4, 1]).await.unwrap();
    assert_eq!(m.len(), 3);
    assert_eq!((m[&1], m[&2], m[&3]), (10, 10, 20));
    t.record_written(c, &[(1, false), (3, true), (1, true)])
        .await
        .unwrap();
    let w = t.last_written(c, &[1, 2, 3]).await.unwrap();
    assert_eq!(w.len(), 2);
    assert_eq!(
        (w[&1], w[&3]),
        (true, true),
        "the last record of an offer wins"
    );
    // deleting a link removes its index entries and records
    t.delete_products(c, &[link(10, &[1, 2])]).await.unwrap();
    let m = t.products_of_offers(c, &[1, 2, 3]).await.unwrap();
    assert_eq!(m.keys().copied().collect::<Vec<_>>(), vec![3]);
    assert!(t.last_written(c, &[1]).await.unwrap().is_empty());
}

#[tokio::test]
async fn links_written_before_the_index_are_indexed_once() {
    let t = emulator::table().await;
    let c = "conn-old";
    t.put_products(c, &[link(10, &[1, 2]), link(20, &[3])])
        .await
        .unwrap();
    // a deployment before the index: drop the index entries the write just made
    drop_index(&t, c, &[1, 2, 3]).await;
    assert!(t
        .products_of_offers(c, &[1, 2, 3])
        .await
        .unwrap()
        .is_empty());
    t.index_offers(c).await.unwrap();
    assert_eq!(t.products_of_offers(c, &[1, 2, 3]).await.unwrap().len(), 3);
    // once only: a second call finds the marker and writes nothing
    drop_index(&t, c, &[3]).await;
    t.index_offers(c).await.unwrap();
    assert_eq!(t.products_of_offers(c, &[1, 2, 3]).await.unwrap().len(), 2);
}

async fn drop_index(t: &DynamoTable, conn: &str, offers: &[i64]) {
    for o in offers {
        t.client
            .delete_item()
            .table_name(&t.name)
            .key(
                "pk",
                aws_sdk_dynamodb::types::AttributeValue::S(format!("LINKS#{conn}")),
            )
            .key(
                "sk",
                aws_sdk_dynamodb::types::AttributeValue::S(format!("O#{o}")),
            )
            .send()
            .await
            .unwrap();
    }
}
