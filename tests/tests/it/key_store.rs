//! KeyCRM API keys under envelope encryption (`store::EnvelopeSecrets`) on the emulator:
//! DynamoDB for the sealed items and the keyring, KMS for the ring keys (and the data keys of
//! the first format), Secrets Manager for the keys an older version stored there.

use aws_sdk_dynamodb::types::AttributeValue;
use e2e_tests::emulator;
use keycrm::ApiKey;
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

