//! KeyCRM API keys under envelope encryption (`store::EnvelopeSecrets`) on the emulator:
//! DynamoDB for the sealed items and the keyring, KMS for the ring keys (and the data keys of
//! the first format), Secrets Manager for the keys an older version stored there.

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_kms::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_kms::config::{ConfigBag, Intercept, RuntimeComponents};
use e2e_tests::emulator;
use keycrm::ApiKey;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use store::secrets::kms::RING_KEY_MAX_AGE_DAYS;
use store::{DynamoTable, EnvelopeSecrets, SecretStore, SecretsManager, StoreError};

const KEY: &str = "MDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMWExYjI";

async fn stores() -> (
    DynamoTable,
    EnvelopeSecrets,
    EnvelopeSecrets,
    SecretsManager,
) {
    let table = emulator::table().await;
    let (kms, key_id) = emulator::kms_key().await;
    let legacy = SecretsManager::from_env().await;
    let reader = EnvelopeSecrets::new(table.clone(), kms.clone(), &key_id, Some(legacy.clone()));
    let manager = EnvelopeSecrets::migrating(table.clone(), kms, &key_id, legacy.clone());
    (table, reader, manager, legacy)
}

async fn raw_item(
    table: &DynamoTable,
    name: &str,
) -> Option<std::collections::HashMap<String, AttributeValue>> {
    table
        .client
        .get_item()
        .table_name(&table.name)
        .key("pk", AttributeValue::S(format!("SECRET#{name}")))
        .key("sk", AttributeValue::S("KEY".into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn keys_round_trip_sealed_and_are_replaced_and_deleted() {
    let (table, reader, manager, _) = stores().await;
    let name = emulator::unique("shop-keycrm/test/keycrm/c");
    assert!(reader.get(&name).await.unwrap().is_none());
    manager.put(&name, &ApiKey::new(KEY)).await.unwrap();
    // Any function with decrypt rights reads it.
    assert_eq!(reader.get(&name).await.unwrap().unwrap().expose(), KEY);

    // The item holds no trace of the key: a wrapped data key, a nonce, the ciphertext.
    let item = raw_item(&table, &name).await.expect("stored in the table");
    for (attr, v) in &item {
        let bytes: Vec<u8> = match v {
            AttributeValue::S(s) => s.as_bytes().to_vec(),
            AttributeValue::B(b) => b.as_ref().to_vec(),
            AttributeValue::N(n) => n.as_bytes().to_vec(),
            _ => Vec::new(),
        };
        assert!(!contains(&bytes, KEY.as_bytes()), "{attr} holds the key");
        assert!(
            !contains(&bytes, &KEY.as_bytes()[..16]),
            "{attr} holds part of the key"
        );
    }
    // (The first format held the key's own wrapped data key, `dek`; the item now names the
    // ring key it is sealed under, which lives only wrapped in its own item.)
    for attr in ["nonce", "ct"] {
        assert!(
            matches!(item.get(attr), Some(AttributeValue::B(_))),
            "{attr}"
        );
    }
    assert_eq!(item.get("v"), Some(&AttributeValue::N("2".into())));
    assert!(matches!(item.get("ring"), Some(AttributeValue::S(_))));
    assert!(!item.contains_key("dek"));
    assert!(!format!("{reader:?} {manager:?}").contains(&KEY[..8]));

    // Replaced: the new key, a new nonce, the same ring key.
    manager
        .put(&name, &ApiKey::new("second-key-000000000000000000002"))
        .await
        .unwrap();
    assert_eq!(
        reader.get(&name).await.unwrap().unwrap().expose(),
        "second-key-000000000000000000002"
    );
    let again = raw_item(&table, &name).await.unwrap();
    assert_ne!(again.get("nonce"), item.get("nonce"));
    assert_ne!(again.get("ct"), item.get("ct"));
    assert_eq!(again.get("ring"), item.get("ring"));

    manager.delete(&name).await.unwrap();
    assert!(reader.get(&name).await.unwrap().is_none());
    // Deleting what is gone is fine (a cleanup step repeated after a crash).
    manager.delete(&name).await.unwrap();
}

#[tokio::test]
async fn a_sealed_key_opens_only_under_its_own_name() {
    let (table, reader, manager, _) = stores().await;
    let a = emulator::unique("shop-keycrm/test/keycrm/a");
    let b = emulator::unique("shop-keycrm/test/keycrm/b");
    manager.put(&a, &ApiKey::new(KEY)).await.unwrap();
    // Someone with write access to the table copies a's item to b's name.
    let mut item = raw_item(&table, &a).await.unwrap();
    item.insert("pk".into(), AttributeValue::S(format!("SECRET#{b}")));
    table
        .client
        .put_item()
        .table_name(&table.name)
        .set_item(Some(item))
        .send()
        .await
        .unwrap();
    let err = reader.get(&b).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    let text = format!("{err} {err:?}");
    assert!(!text.contains(&KEY[..8]), "{text}");
    // a is untouched.
    assert_eq!(reader.get(&a).await.unwrap().unwrap().expose(), KEY);
}

#[tokio::test]
async fn keys_kept_in_secrets_manager_are_read_and_moved_once() {
    let (table, reader, manager, legacy) = stores().await;
    let name = emulator::unique("shop-keycrm/test/keycrm/old");
    legacy.put(&name, &ApiKey::new(KEY)).await.unwrap();

    // A function that may only read keys reads it where it is and leaves it there.
    assert_eq!(reader.get(&name).await.unwrap().unwrap().expose(), KEY);
    assert!(raw_item(&table, &name).await.is_none());
    assert!(legacy.get(&name).await.unwrap().is_some());
    assert!(
        !reader.migrate(&name).await.unwrap(),
        "a reader never moves keys"
    );

    // One that manages keys moves it on first read: sealed in the table, the secret deleted.
    assert_eq!(manager.get(&name).await.unwrap().unwrap().expose(), KEY);
    assert!(raw_item(&table, &name).await.is_some());
    assert!(legacy.get(&name).await.unwrap().is_none());
    assert_eq!(reader.get(&name).await.unwrap().unwrap().expose(), KEY);

    // The nightly sweep's explicit move: once, then nothing left to move.
    let other = emulator::unique("shop-keycrm/test/keycrm/old2");
    legacy
        .put(&other, &ApiKey::new("other-key-0000000000000000000003"))
        .await
        .unwrap();
    assert!(manager.migrate(&other).await.unwrap());
    assert!(!manager.migrate(&other).await.unwrap());
    assert!(legacy.get(&other).await.unwrap().is_none());
    assert_eq!(
        reader.get(&other).await.unwrap().unwrap().expose(),
        "other-key-0000000000000000000003"
    );
    // A name nobody stored: nothing to move.
    assert!(!manager.migrate(&emulator::unique("none")).await.unwrap());

    // A new key stored under a name that still has an old secret supersedes it.
    let third = emulator::unique("shop-keycrm/test/keycrm/old3");
    legacy
        .put(&third, &ApiKey::new("stale-key-00000000000000000000004"))
        .await
        .unwrap();
    manager.put(&third, &ApiKey::new(KEY)).await.unwrap();
    assert!(legacy.get(&third).await.unwrap().is_none());
    assert_eq!(reader.get(&third).await.unwrap().unwrap().expose(), KEY);
}

/// The KMS operations a client sent (`X-Amz-Target` without the service prefix), counted by
/// an interceptor on the client the store is given.
#[derive(Clone, Debug, Default)]
struct KmsCalls(Arc<Mutex<Vec<String>>>);

impl Intercept for KmsCalls {
    fn name(&self) -> &'static str {
        "KmsCalls"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), aws_sdk_kms::error::BoxError> {
        let target = context
            .request()
            .headers()
            .get("x-amz-target")
            .unwrap_or("?");
        let op = target.rsplit('.').next().unwrap_or(target).to_string();
        self.0.lock().unwrap().push(op);
        Ok(())
    }
}

impl KmsCalls {
    fn count(&self, op: &str) -> usize {
        self.0.lock().unwrap().iter().filter(|o| *o == op).count()
    }

    fn total(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

/// A KMS client on the emulator whose calls are counted.
async fn counted_kms() -> (aws_sdk_kms::Client, KmsCalls) {
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    let calls = KmsCalls::default();
    let kms = aws_sdk_kms::Client::from_conf(
        aws_sdk_kms::config::Builder::from(&conf)
            .interceptor(calls.clone())
            .build(),
    );
    (kms, calls)
}

/// `KEYRING` items of the table, by sort key.
async fn keyring(table: &DynamoTable) -> HashMap<String, HashMap<String, AttributeValue>> {
    let out = table
        .client
        .query()
        .table_name(&table.name)
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", AttributeValue::S("KEYRING".into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    out.items
        .unwrap_or_default()
        .into_iter()
        .map(|item| {
            let sk = match item.get("sk") {
                Some(AttributeValue::S(s)) => s.clone(),
                other => panic!("sk {other:?}"),
            };
            (sk, item)
        })
        .collect()
}

fn s_attr(item: &HashMap<String, AttributeValue>, name: &str) -> String {
    match item.get(name) {
        Some(AttributeValue::S(s)) => s.clone(),
        other => panic!("{name}: {other:?}"),
    }
}

async fn put_raw(table: &DynamoTable, item: HashMap<String, AttributeValue>) {
    table
        .client
        .put_item()
        .table_name(&table.name)
        .set_item(Some(item))
        .send()
        .await
        .unwrap();
}

fn key_for(i: usize) -> String {
    format!("key-of-connection-{i:04}-000000000000000")
}

#[tokio::test]
async fn a_warm_reader_unwraps_one_ring_key_for_all_connections() {
    let table = emulator::table().await;
    let (_, key_id) = emulator::kms_key().await;
    let (kms_w, writes) = counted_kms().await;
    let writer = EnvelopeSecrets::new(table.clone(), kms_w, &key_id, None);
    let names: Vec<String> = (0..12)
        .map(|i| emulator::unique(&format!("shop-keycrm/test/keycrm/many{i}")))
        .collect();
    for (i, name) in names.iter().enumerate() {
        writer.put(name, &ApiKey::new(key_for(i))).await.unwrap();
    }
    // Sealing twelve keys made one ring key and unwrapped nothing.
    assert_eq!(writes.count("GenerateDataKey"), 1, "{writes:?}");
    assert_eq!(writes.total(), 1, "{writes:?}");

    // A reader (decrypt only) on a warm instance: every connection's key for one Decrypt,
    // also when they are asked for at once; its clones share what it unwrapped.
    let (kms_r, reads) = counted_kms().await;
    let reader = EnvelopeSecrets::new(table.clone(), kms_r, &key_id, None);
    let clone = reader.clone();
    let got = futures::future::join_all(names.iter().map(|n| reader.get(n))).await;
    for (i, key) in got.into_iter().enumerate() {
        assert_eq!(key.unwrap().unwrap().expose(), key_for(i));
    }
    for (i, name) in names.iter().enumerate() {
        assert_eq!(clone.get(name).await.unwrap().unwrap().expose(), key_for(i));
    }
    assert_eq!(reads.count("Decrypt"), 1, "{reads:?}");
    assert_eq!(reads.total(), 1, "{reads:?}");
    // Debug shows a count, not the key.
    let debug = format!("{reader:?}");
    assert!(debug.contains("ring_keys_unwrapped: 1"), "{debug}");

    // The writer's own clones read what it sealed without a Decrypt: it made the ring key.
    assert_eq!(
        writer
            .clone()
            .get(&names[0])
            .await
            .unwrap()
            .unwrap()
            .expose(),
        key_for(0)
    );
    assert_eq!(writes.count("Decrypt"), 0, "{writes:?}");
}

#[tokio::test]
async fn keys_of_the_first_format_still_open_and_move_to_the_ring_when_put_again() {
    let (table, reader, manager, _) = stores().await;
    let name = emulator::unique("shop-keycrm/test/keycrm/v1");
    manager
        .put_v1_for_tests(&name, &ApiKey::new(KEY))
        .await
        .unwrap();
    let item = raw_item(&table, &name).await.unwrap();
    assert_eq!(item.get("v"), Some(&AttributeValue::N("1".into())));
    assert!(matches!(item.get("dek"), Some(AttributeValue::B(_))));
    assert!(keyring(&table).await.is_empty(), "no ring key for v1");

    // Read as always (its own data key); no ring key made for it.
    assert_eq!(reader.get(&name).await.unwrap().unwrap().expose(), KEY);
    assert!(keyring(&table).await.is_empty());

    // Copied to another name, the first format is as unreadable as before.
    let other = emulator::unique("shop-keycrm/test/keycrm/v1copy");
    let mut copy = item.clone();
    copy.insert("pk".into(), AttributeValue::S(format!("SECRET#{other}")));
    put_raw(&table, copy).await;
    let err = reader.get(&other).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");

    // Stored again: sealed under the ring.
    manager.put(&name, &ApiKey::new(KEY)).await.unwrap();
    let item = raw_item(&table, &name).await.unwrap();
    assert_eq!(item.get("v"), Some(&AttributeValue::N("2".into())));
    assert!(!item.contains_key("dek"));
    assert_eq!(reader.get(&name).await.unwrap().unwrap().expose(), KEY);
}

#[tokio::test]
async fn a_ring_sealed_key_copied_or_pointed_at_another_ring_key_is_unreadable() {
    let (table, reader, manager, _) = stores().await;
    let a = emulator::unique("shop-keycrm/test/keycrm/ra");
    let b = emulator::unique("shop-keycrm/test/keycrm/rb");
    manager.put(&a, &ApiKey::new(KEY)).await.unwrap();
    let item = raw_item(&table, &a).await.unwrap();

    // Copied to b's name (a_sealed_key_opens_only_under_its_own_name, with a fresh reader).
    let mut copy = item.clone();
    copy.insert("pk".into(), AttributeValue::S(format!("SECRET#{b}")));
    put_raw(&table, copy).await;
    for store in [&reader, &manager] {
        let err = store.get(&b).await.unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
        assert!(!format!("{err} {err:?}").contains(&KEY[..8]));
    }

    // Its ring id swapped for one that does not exist, or is not an id at all.
    for ring in [
        "0123456789abcdef0123456789abcdef".to_string(),
        "../KEY".to_string(),
        String::new(),
    ] {
        let mut swapped = item.clone();
        swapped.insert("ring".into(), AttributeValue::S(ring.clone()));
        put_raw(&table, swapped).await;
        let err = reader.get(&a).await.unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{ring}: {err:?}");
    }
    // A nonce of the wrong length, a format nobody wrote: unreadable, no panic.
    let mut short = item.clone();
    short.insert(
        "nonce".into(),
        AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(vec![0u8; 5])),
    );
    put_raw(&table, short).await;
    assert!(matches!(
        reader.get(&a).await.unwrap_err(),
        StoreError::Corrupt(_)
    ));
    let mut v9 = item.clone();
    v9.insert("v".into(), AttributeValue::N("9".into()));
    put_raw(&table, v9).await;
    assert!(matches!(
        reader.get(&a).await.unwrap_err(),
        StoreError::Corrupt(_)
    ));

    // Restored, it opens.
    put_raw(&table, item).await;
    assert_eq!(reader.get(&a).await.unwrap().unwrap().expose(), KEY);
}

#[tokio::test]
async fn two_stores_sealing_at_once_on_an_empty_table_share_one_ring_key() {
    let table = emulator::table().await;
    let (kms, key_id) = emulator::kms_key().await;
    // Two instances (separate caches), each putting keys at the same moment.
    let (kms_one, calls_one) = counted_kms().await;
    let (kms_two, calls_two) = counted_kms().await;
    let one = EnvelopeSecrets::new(table.clone(), kms_one, &key_id, None);
    let two = EnvelopeSecrets::new(table.clone(), kms_two, &key_id, None);
    let names: Vec<String> = (0..4)
        .map(|i| emulator::unique(&format!("shop-keycrm/test/keycrm/race{i}")))
        .collect();
    let keys: Vec<ApiKey> = (0..4).map(|i| ApiKey::new(key_for(i))).collect();
    let (r1, r2, r3, r4) = tokio::join!(
        one.put(&names[0], &keys[0]),
        two.put(&names[1], &keys[1]),
        one.put(&names[2], &keys[2]),
        two.put(&names[3], &keys[3]),
    );
    for r in [r1, r2, r3, r4] {
        r.unwrap();
    }
    // Each instance made at most one ring key (the loser of the race, if both saw an empty
    // table, then unwrapped the winner's) and unwrapped at most one: its later puts used the
    // cache.
    for calls in [&calls_one, &calls_two] {
        assert!(calls.count("GenerateDataKey") <= 1, "{calls:?}");
        assert!(calls.count("Decrypt") <= 1, "{calls:?}");
    }
    assert!(calls_one.count("GenerateDataKey") + calls_two.count("GenerateDataKey") >= 1);
    let ring = keyring(&table).await;
    let current = s_attr(&ring["CURRENT"], "id");
    // One ring key: CURRENT and its immutable copy (the loser's was deleted).
    assert_eq!(ring.len(), 2, "{:?}", ring.keys().collect::<Vec<_>>());
    assert!(ring.contains_key(&format!("K#{current}")));
    for (i, name) in names.iter().enumerate() {
        let item = raw_item(&table, name).await.unwrap();
        assert_eq!(s_attr(&item, "ring"), current, "{name}");
        let reader = EnvelopeSecrets::new(table.clone(), kms.clone(), &key_id, None);
        assert_eq!(
            reader.get(name).await.unwrap().unwrap().expose(),
            key_for(i)
        );
    }
}

#[tokio::test]
async fn a_ring_key_90_days_old_is_replaced_by_the_next_put_and_still_opens_its_keys() {
    let table = emulator::table().await;
    let (kms, key_id) = emulator::kms_key().await;
    let reader = EnvelopeSecrets::new(table.clone(), kms.clone(), &key_id, None);
    let old_name = emulator::unique("shop-keycrm/test/keycrm/old-ring");
    let writer = EnvelopeSecrets::new(table.clone(), kms.clone(), &key_id, None);
    writer.put(&old_name, &ApiKey::new(KEY)).await.unwrap();
    let old_id = s_attr(&keyring(&table).await["CURRENT"], "id");
    // A reader warm before the rotation.
    assert_eq!(reader.get(&old_name).await.unwrap().unwrap().expose(), KEY);

    // A day short of the limit: still current for a new instance.
    let set_age = |days: i64| {
        let table = table.clone();
        async move {
            let at = (chrono::Utc::now() - chrono::Duration::days(days)).to_rfc3339();
            let mut current = keyring(&table).await.remove("CURRENT").unwrap();
            current.insert("created_at".into(), AttributeValue::S(at));
            put_raw(&table, current).await;
        }
    };
    set_age(RING_KEY_MAX_AGE_DAYS - 1).await;
    let late_name = emulator::unique("shop-keycrm/test/keycrm/late");
    let second = EnvelopeSecrets::new(table.clone(), kms.clone(), &key_id, None);
    second
        .put(&late_name, &ApiKey::new(key_for(89)))
        .await
        .unwrap();
    assert_eq!(
        s_attr(&raw_item(&table, &late_name).await.unwrap(), "ring"),
        old_id
    );

    // A day past it: the next put (a new instance) makes a new ring key.
    set_age(RING_KEY_MAX_AGE_DAYS + 1).await;
    let (kms_c, calls) = counted_kms().await;
    let third = EnvelopeSecrets::new(table.clone(), kms_c, &key_id, None);
    let new_name = emulator::unique("shop-keycrm/test/keycrm/new-ring");
    third
        .put(&new_name, &ApiKey::new(key_for(1)))
        .await
        .unwrap();
    assert_eq!(calls.count("GenerateDataKey"), 1, "{calls:?}");
    let ring = keyring(&table).await;
    let new_id = s_attr(&ring["CURRENT"], "id");
    assert_ne!(new_id, old_id);
    assert!(
        ring.contains_key(&format!("K#{old_id}")),
        "the old ring key stays"
    );
    assert!(ring.contains_key(&format!("K#{new_id}")));
    assert_eq!(ring.len(), 3);
    assert_eq!(
        s_attr(&raw_item(&table, &new_name).await.unwrap(), "ring"),
        new_id
    );

    // Keys sealed under the old ring key still open, for a warm and for a new reader.
    for r in [
        &reader,
        &EnvelopeSecrets::new(table.clone(), kms.clone(), &key_id, None),
    ] {
        assert_eq!(r.get(&old_name).await.unwrap().unwrap().expose(), KEY);
        assert_eq!(
            r.get(&late_name).await.unwrap().unwrap().expose(),
            key_for(89)
        );
        assert_eq!(
            r.get(&new_name).await.unwrap().unwrap().expose(),
            key_for(1)
        );
    }

    // A key pointed at the other (existing) ring key does not open.
    let mut swapped = raw_item(&table, &old_name).await.unwrap();
    swapped.insert("ring".into(), AttributeValue::S(new_id.clone()));
    put_raw(&table, swapped).await;
    let fresh = EnvelopeSecrets::new(table.clone(), kms.clone(), &key_id, None);
    for r in [&reader, &fresh] {
        let err = r.get(&old_name).await.unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    }

    // A ring key's wrapped key copied under another id does not unwrap (bound to its id).
    let mut forged = keyring(&table)
        .await
        .remove(&format!("K#{old_id}"))
        .unwrap();
    let forged_id = "fedcba9876543210fedcba9876543210";
    forged.insert("sk".into(), AttributeValue::S(format!("K#{forged_id}")));
    forged.insert("id".into(), AttributeValue::S(forged_id.into()));
    put_raw(&table, forged).await;
    let mut pointed = raw_item(&table, &late_name).await.unwrap();
    pointed.insert("ring".into(), AttributeValue::S(forged_id.into()));
    put_raw(&table, pointed).await;
    let err = EnvelopeSecrets::new(table.clone(), kms.clone(), &key_id, None)
        .get(&late_name)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
}

#[tokio::test]
async fn a_reader_on_a_table_without_a_ring_reads_nothing_and_makes_nothing() {
    let table = emulator::table().await;
    let (_, key_id) = emulator::kms_key().await;
    let (kms, calls) = counted_kms().await;
    let reader = EnvelopeSecrets::new(table.clone(), kms, &key_id, None);
    assert!(reader
        .get(&emulator::unique("shop-keycrm/test/keycrm/none"))
        .await
        .unwrap()
        .is_none());
    assert_eq!(calls.total(), 0, "{calls:?}");
    assert!(keyring(&table).await.is_empty());
}
