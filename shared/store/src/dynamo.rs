//! The single DynamoDB table every adapter shares (see `DATA_MODEL.md` beside this crate),
//! and small helpers for reading and writing its attributes.
//!
//! `batch` holds the batch reads and writes with DynamoDB's limits; the partition keys every
//! adapter builds from a connection id are here so no adapter depends on another.

pub mod batch;

use crate::StoreError;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, Projection, ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};
use aws_sdk_dynamodb::Client;
use std::collections::HashMap;

pub type Item = HashMap<String, AttributeValue>;

pub const PK: &str = "pk";
pub const SK: &str = "sk";
pub const GSI1: &str = "gsi1";
pub const GSI1_PK: &str = "gsi1pk";
pub const GSI1_SK: &str = "gsi1sk";
/// What `gsi1` holds of an item besides the keys (`ProjectionType: INCLUDE`, the same list as
/// `template.yaml`): only what its readers use straight from the index. A connection listed
/// under `CONNS` is its `doc`; the resume tick filters `SYNC#UNFINISHED` on `lease_until` and
/// `queued_until`. A ledger entry has none of them, so its index copy is keys only: the
/// status webhooks' lookup reads the entry itself afterwards, and an update of the entry that
/// leaves its index keys alone (every status change) writes nothing to the index.
pub const GSI1_PROJECTED: [&str; 3] = ["doc", "lease_until", "queued_until"];
/// What DynamoDB adds to every index entry (its storage and write size).
pub const INDEX_ENTRY_OVERHEAD: usize = 100;
/// TTL attribute (epoch seconds).
pub const EXPIRES_AT: &str = "expires_at";

#[derive(Clone, Debug)]
pub struct DynamoTable {
    pub client: Client,
    pub name: String,
}

impl DynamoTable {
    pub fn new(client: Client, name: impl Into<String>) -> Self {
        DynamoTable {
            client,
            name: name.into(),
        }
    }

    /// Writes `item` whole, whatever was there (an unconditional `PutItem`).
    pub async fn put_item(&self, item: Item) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.name)
            .set_item(Some(item))
            .send()
            .await
            .map_err(sdk)?;
        Ok(())
    }

    /// A client configured from the environment (region, credentials, `AWS_ENDPOINT_URL`).
    pub async fn client_from_env() -> Client {
        let conf = crate::sdk_config::from_env().await;
        Client::new(&conf)
    }

    /// Creates the table with the production key schema. Used by tests and by the local run
    /// against the emulator; in AWS the template owns the table.
    pub async fn create(client: &Client, name: &str) -> Result<DynamoTable, StoreError> {
        let key = |n: &str, t: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(n)
                .key_type(t)
                .build()
                .map_err(unavailable)
        };
        let attr = |n: &str| {
            AttributeDefinition::builder()
                .attribute_name(n)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(unavailable)
        };
        let gsi = GlobalSecondaryIndex::builder()
            .index_name(GSI1)
            .key_schema(key(GSI1_PK, KeyType::Hash)?)
            .key_schema(key(GSI1_SK, KeyType::Range)?)
            .projection(
                Projection::builder()
                    .projection_type(ProjectionType::Include)
                    .set_non_key_attributes(Some(
                        GSI1_PROJECTED.iter().map(|a| a.to_string()).collect(),
                    ))
                    .build(),
            )
            .build()
            .map_err(unavailable)?;
        let created = client
            .create_table()
            .table_name(name)
            .billing_mode(BillingMode::PayPerRequest)
            .key_schema(key(PK, KeyType::Hash)?)
            .key_schema(key(SK, KeyType::Range)?)
            .attribute_definitions(attr(PK)?)
            .attribute_definitions(attr(SK)?)
            .attribute_definitions(attr(GSI1_PK)?)
            .attribute_definitions(attr(GSI1_SK)?)
            .global_secondary_indexes(gsi)
            .send()
            .await;
        match created {
            Ok(_) => {}
            Err(e)
                if DisplayErrorContext(&e)
                    .to_string()
                    .contains("ResourceInUse") => {}
            Err(e) => return Err(sdk(e)),
        }
        let ttl = client
            .update_time_to_live()
            .table_name(name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name(EXPIRES_AT)
                    .enabled(true)
                    .build()
                    .map_err(unavailable)?,
            )
            .send()
            .await;
        if let Err(e) = ttl {
            // Re-enabling TTL on an existing table is refused; that is fine.
            if !DisplayErrorContext(&e)
                .to_string()
                .contains("already enabled")
            {
                return Err(sdk(e));
            }
        }
        Ok(DynamoTable::new(client.clone(), name))
    }
}

/// The size DynamoDB bills and stores for an item (its write units are this over 1 KB,
/// rounded up): every attribute name in UTF-8 plus its value, following the service's sizing
/// rules (strings and binaries by length, numbers one byte per two significant digits plus
/// one, booleans and nulls one byte, lists and maps three bytes plus one per element).
pub fn item_bytes(item: &Item) -> usize {
    item.iter().map(|(k, v)| k.len() + value_bytes(v)).sum()
}

fn value_bytes(v: &AttributeValue) -> usize {
    match v {
        AttributeValue::S(s) => s.len(),
        AttributeValue::N(n) => number_bytes(n),
        AttributeValue::B(b) => b.as_ref().len(),
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::Ss(v) => v.iter().map(String::len).sum(),
        AttributeValue::Ns(v) => v.iter().map(|n| number_bytes(n)).sum(),
        AttributeValue::Bs(v) => v.iter().map(|b| b.as_ref().len()).sum(),
        AttributeValue::L(v) => 3 + v.iter().map(|e| 1 + value_bytes(e)).sum::<usize>(),
        AttributeValue::M(m) => {
            3 + m
                .iter()
                .map(|(k, e)| 1 + k.len() + value_bytes(e))
                .sum::<usize>()
        }
        _ => 0,
    }
}

/// One byte per two significant digits (leading and trailing zeros trimmed), plus one.
fn number_bytes(n: &str) -> usize {
    let digits: String = n
        .split(['e', 'E'])
        .next()
        .unwrap_or("")
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    let significant = digits.trim_start_matches('0').trim_end_matches('0').len();
    significant.max(1).div_ceil(2) + 1
}

/// The size of an item's entry in `gsi1` when it has the index keys (`None` otherwise): the
/// table and index keys, the projected attributes it has, and DynamoDB's overhead.
pub fn gsi1_entry_bytes(item: &Item) -> Option<usize> {
    if !item.contains_key(GSI1_PK) || !item.contains_key(GSI1_SK) {
        return None;
    }
    let kept = [PK, SK, GSI1_PK, GSI1_SK]
        .iter()
        .chain(GSI1_PROJECTED.iter())
        .filter_map(|k| item.get(*k).map(|v| k.len() + value_bytes(v)))
        .sum::<usize>();
    Some(kept + INDEX_ENTRY_OVERHEAD)
}

pub fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// Maps an SDK error: conditional-check failures (alone or in a cancelled transaction) become
/// `Conflict`; anything else `Unavailable` with a plain reason, the SDK's text (ARNs, account
/// ids) going to the log only (see [`crate::aws_error`]).
pub fn sdk<E, R>(e: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let text = DisplayErrorContext(&e).to_string();
    if text.contains("ConditionalCheckFailed") {
        return StoreError::Conflict("condition not met".into());
    }
    StoreError::Unavailable(crate::aws_error::logged("DynamoDB", &e))
}

pub fn is_condition_failure(e: &StoreError) -> bool {
    matches!(e, StoreError::Conflict(_))
}

pub fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub fn b(v: bool) -> AttributeValue {
    AttributeValue::Bool(v)
}

pub fn key(pk: impl Into<String>, sk: impl Into<String>) -> Item {
    let mut k = Item::new();
    k.insert(PK.into(), s(pk));
    k.insert(SK.into(), s(sk));
    k
}

pub fn get_s(item: &Item, name: &str) -> Option<String> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Some(v.clone()),
        _ => None,
    }
}

pub fn req_s(item: &Item, name: &str) -> Result<String, StoreError> {
    get_s(item, name).ok_or_else(|| StoreError::Corrupt(format!("missing string attribute {name}")))
}

pub fn get_n<T: std::str::FromStr>(item: &Item, name: &str) -> Option<T> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => v.parse().ok(),
        _ => None,
    }
}

pub fn get_b(item: &Item, name: &str) -> Option<bool> {
    match item.get(name) {
        Some(AttributeValue::Bool(v)) => Some(*v),
        _ => None,
    }
}

/// A JSON document stored as a string attribute.
pub fn json<T: serde::Serialize>(v: &T) -> Result<AttributeValue, StoreError> {
    serde_json::to_string(v)
        .map(AttributeValue::S)
        .map_err(|e| StoreError::Corrupt(format!("cannot encode: {e}")))
}

pub fn get_json<T: serde::de::DeserializeOwned>(
    item: &Item,
    name: &str,
) -> Result<Option<T>, StoreError> {
    match get_s(item, name) {
        None => Ok(None),
        Some(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| StoreError::Corrupt(format!("attribute {name}: {e}"))),
    }
}

pub fn epoch_secs(t: chrono::DateTime<chrono::Utc>) -> i64 {
    t.timestamp()
}

/// The partition of a connection's own items (meta, ledger, sync state, status, stock).
pub fn conn_pk(id: &str) -> String {
    format!("CONN#{id}")
}

/// The partition of a links scope (`Connection::links_scope`): catalog links and their indexes.
pub fn links_pk(id: &str) -> String {
    format!("LINKS#{id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_sizes_follow_dynamodb_rules() {
        let mut item = key("CONN#c1", "ORDER#7");
        // Names and strings count their UTF-8 bytes: "pk" + 7, "sk" + 7.
        assert_eq!(item_bytes(&item), 2 + 7 + 2 + 7);
        item.insert("name".into(), s("Олена")); // 4 + 10 bytes
        item.insert("ok".into(), b(true)); // 2 + 1
        assert_eq!(item_bytes(&item), 18 + 14 + 3);
        // Numbers: one byte per two significant digits, plus one; zeros at either end trimmed.
        assert_eq!(number_bytes("12345"), 4);
        assert_eq!(number_bytes("1200"), 2);
        assert_eq!(number_bytes("-0.0012"), 2);
        assert_eq!(number_bytes("0"), 2);
        assert_eq!(number_bytes("1700000000123"), 8);
        let nested =
            AttributeValue::M([("a".to_string(), AttributeValue::L(vec![n(1), s("xy")]))].into());
        // The map's 3 + ("a": 1 + 1 + the list's 3 + (1 + 2) + (1 + 2)).
        assert_eq!(value_bytes(&nested), 3 + 1 + 1 + 3 + 3 + 3);
    }

    #[test]
    fn only_items_with_both_index_keys_have_an_index_entry() {
        let mut item = key("CONN#c1", "SYNC#full");
        item.insert("checkpoint".into(), s("x".repeat(5000)));
        item.insert("lease_until".into(), n(1_700_000_000_123_i64));
        assert_eq!(gsi1_entry_bytes(&item), None);
        item.insert(GSI1_PK.into(), s("SYNC#UNFINISHED"));
        assert_eq!(gsi1_entry_bytes(&item), None);
        item.insert(GSI1_SK.into(), s("c1#full"));
        // Keys, the projected time, DynamoDB's overhead: never the checkpoint.
        assert_eq!(
            gsi1_entry_bytes(&item),
            Some(2 + 7 + 2 + 9 + 6 + 15 + 6 + 7 + 11 + 8 + INDEX_ENTRY_OVERHEAD)
        );
    }
}
