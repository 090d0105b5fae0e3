//! Order push's shared KeyCRM dictionaries on the emulator: `CONN#{id}` /
//! `CACHE#dictionaries`, fresh only within `max_age`, with a TTL attribute, beside (not over)
//! the settings page's options, and dropped on invalidate. (An unreadable entry is a miss:
//! `admin_api_reference_cache.rs`, which reads both caches' items.)

use e2e_tests::emulator;
use mapping::{KeycrmReference, OrderSyncType};
use std::time::Duration;
use store::reference_cache::{CACHE_SK, DICTIONARIES_SK};
use store::{CachedDictionaries, DictionaryCache};

fn dictionaries(version: u64) -> CachedDictionaries {
    let reference = KeycrmReference {
        order_statuses: vec![keycrm::models::OrderStatus {
            id: 1,
            name: "Новий".into(),
            alias: None,
            group_id: 1,
            is_active: true,
            is_closing_order: false,
        }],
        ..KeycrmReference::default()
    };
    CachedDictionaries {
        version,
        sync: OrderSyncType::Orders,
        reference,
    }
}

async fn item(table: &store::DynamoTable, conn: &str, sk: &str) -> Option<store::dynamo::Item> {
    table
        .client
        .get_item()
        .table_name(&table.name)
        .set_key(Some(store::dynamo::key(format!("CONN#{conn}"), sk)))
        .send()
        .await
        .unwrap()
        .item
}

#[tokio::test]
async fn shared_dictionaries_round_trip_expire_and_are_dropped() {
    let t = emulator::table().await;
    let ttl = Duration::from_secs(6 * 3600);
    assert!(DictionaryCache::get(&t, "c1", ttl).await.unwrap().is_none());
    DictionaryCache::put(&t, "c1", &dictionaries(3), ttl)
        .await
        .unwrap();
    let (got, at) = DictionaryCache::get(&t, "c1", ttl).await.unwrap().unwrap();
    assert_eq!(got, dictionaries(3));
    assert!((chrono::Utc::now() - at).num_seconds() < 5);

    // Its own item, not the settings page's options.
    assert!(item(&t, "c1", DICTIONARIES_SK).await.is_some());
    assert!(item(&t, "c1", CACHE_SK).await.is_none());
    let i = item(&t, "c1", DICTIONARIES_SK).await.unwrap();
    let expires: i64 = store::dynamo::get_n(&i, "expires_at").unwrap();
    let now = chrono::Utc::now().timestamp();
    assert!(expires > now + 6 * 3600 - 5 && expires <= now + 6 * 3600 + 2);

    // Older than the caller's max age: a miss although the item is still there.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(DictionaryCache::get(&t, "c1", Duration::from_secs(1))
        .await
        .unwrap()
        .is_none());

    DictionaryCache::invalidate(&t, "c1").await.unwrap();
    assert!(DictionaryCache::get(&t, "c1", ttl).await.unwrap().is_none());
    assert!(item(&t, "c1", DICTIONARIES_SK).await.is_none());
    DictionaryCache::invalidate(&t, "never-cached")
        .await
        .unwrap();
}
