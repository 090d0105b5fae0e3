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
                    .projection_type(ProjectionType::All)
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
