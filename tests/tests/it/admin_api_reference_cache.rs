//! The reference cache's DynamoDB adapter on the emulator: one item per connection, fresh
//! only within `max_age`, with a TTL attribute, dropped on invalidate and with the
//! connection's partition.

use e2e_tests::emulator;
use mapping::SettingsOptions;
use std::time::Duration;
use store::reference_cache::CACHE_SK;
use store::ReferenceCache;

fn options(currency: &str) -> SettingsOptions {
    let mut o = SettingsOptions::default();
    o.shop.currency = currency.into();
    o.keycrm.pipelines_enabled = true;
    o.keycrm.categories = vec![keycrm::models::Category {
        id: 3,
        name: "Mugs".into(),
        parent_id: None,
    }];
    o
}

async fn item(table: &store::DynamoTable, conn: &str) -> Option<store::dynamo::Item> {
    table
        .client
        .get_item()
        .table_name(&table.name)
        .set_key(Some(store::dynamo::key(format!("CONN#{conn}"), CACHE_SK)))
        .send()
        .await
        .unwrap()
        .item
}

#[tokio::test]
async fn put_get_freshness_and_invalidate() {
    let t = emulator::table().await;
    let ttl = Duration::from_secs(300);
    assert!(t.get("c1", ttl).await.unwrap().is_none());

    t.put("c1", &options("UAH"), ttl).await.unwrap();
    t.put("c2", &options("EUR"), ttl).await.unwrap();
    let (got, at) = t.get("c1", ttl).await.unwrap().unwrap();
    assert_eq!(got, options("UAH"));
    assert!((chrono::Utc::now() - at).num_seconds() < 5);
    assert_eq!(
        t.get("c2", ttl).await.unwrap().unwrap().0.shop.currency,
        "EUR",
        "per connection"
    );

    // Older than the caller's max age: a miss even though the item is still there (TTL
    // deletion is lazy).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(t.get("c1", Duration::from_secs(1)).await.unwrap().is_none());
    assert!(item(&t, "c1").await.is_some());

    let i = item(&t, "c1").await.unwrap();
    let expires: i64 = store::dynamo::get_n(&i, "expires_at").unwrap();
    let now = chrono::Utc::now().timestamp();
    assert!(
        expires > now && expires <= now + 302,
        "TTL attribute set: {expires} vs {now}"
    );

    t.invalidate("c1").await.unwrap();
    assert!(t.get("c1", ttl).await.unwrap().is_none());
    assert!(item(&t, "c1").await.is_none());
    assert!(
        t.get("c2", ttl).await.unwrap().is_some(),
        "other connections keep theirs"
    );
    t.invalidate("never-cached").await.unwrap();
}

#[tokio::test]
async fn an_unreadable_entry_is_a_miss_not_an_error() {
    let t = emulator::table().await;
    // The settings page's options and order push's dictionaries: one reader for both.
    for (conn, sk) in [
        ("c9", CACHE_SK),
        ("c8", store::reference_cache::DICTIONARIES_SK),
    ] {
        let mut i = store::dynamo::key(format!("CONN#{conn}"), sk);
        i.insert(
            "doc".into(),
            store::dynamo::s("{\"from\": \"an older release\"}"),
        );
        i.insert(
            "fetched_at".into(),
            store::dynamo::s(chrono::Utc::now().to_rfc3339()),
        );
        t.client
            .put_item()
            .table_name(&t.name)
            .set_item(Some(i))
            .send()
            .await
            .unwrap();
    }
    assert!(ReferenceCache::get(&t, "c9", Duration::from_secs(300))
        .await
        .unwrap()
        .is_none());
    assert!(
        store::DictionaryCache::get(&t, "c8", Duration::from_secs(300))
            .await
            .unwrap()
            .is_none()
    );
}
