//! The caches in the table: one item per connection and document, `CONN#{id}` /
//! `CACHE#options` (settings page) or `CACHE#dictionaries` (order push), holding the document,
//! when it was fetched and an `expires_at` TTL. TTL deletion is lazy (up to days late), so
//! reads check freshness themselves.

use crate::dynamo::conn_pk;
use crate::dynamo::{self, DynamoTable, EXPIRES_AT};
use crate::reference_cache::{is_fresh, CachedDictionaries, DictionaryCache, ReferenceCache};
use crate::StoreError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mapping::SettingsOptions;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Duration;

pub const CACHE_SK: &str = "CACHE#options";
pub const DICTIONARIES_SK: &str = "CACHE#dictionaries";

/// The document under `sk` if younger than `max_age`. A document an older release wrote
/// differently is a miss, not an error.
async fn get_doc<T: DeserializeOwned>(
    table: &DynamoTable,
    connection_id: &str,
    sk: &str,
    max_age: Duration,
) -> Result<Option<(T, DateTime<Utc>)>, StoreError> {
    let out = table
        .client
        .get_item()
        .table_name(&table.name)
        .set_key(Some(dynamo::key(conn_pk(connection_id), sk)))
        // Written a moment ago (by the same page, or by the instance that just loaded the
        // dictionaries): an eventually consistent read could miss it and spend the KeyCRM
        // budget again.
        .consistent_read(true)
        .send()
        .await
        .map_err(dynamo::sdk)?;
    let Some(item) = out.item else {
        return Ok(None);
    };
    let Some(fetched_at) = dynamo::get_s(&item, "fetched_at")
        .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
        .map(|t| t.with_timezone(&Utc))
    else {
        return Ok(None);
    };
    if !is_fresh(fetched_at, max_age, Utc::now()) {
        return Ok(None);
    }
    match dynamo::get_json::<T>(&item, "doc") {
        Ok(Some(doc)) => Ok(Some((doc, fetched_at))),
        Ok(None) => Ok(None),
        Err(e) => {
            tracing::warn!(connection = %connection_id, cache = sk, error = %e, "ignoring an unreadable cache entry");
            Ok(None)
        }
    }
}

async fn put_doc<T: Serialize>(
    table: &DynamoTable,
    connection_id: &str,
    sk: &str,
    doc: &T,
    ttl: Duration,
) -> Result<(), StoreError> {
    let now = Utc::now();
    let mut item = dynamo::key(conn_pk(connection_id), sk);
    item.insert("doc".into(), dynamo::json(doc)?);
    item.insert("fetched_at".into(), dynamo::s(now.to_rfc3339()));
    let ttl_s = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
    item.insert(
        EXPIRES_AT.into(),
        dynamo::n(now.timestamp().saturating_add(ttl_s).saturating_add(1)),
    );
    table.put_item(item).await?;
    Ok(())
}

async fn delete_doc(table: &DynamoTable, connection_id: &str, sk: &str) -> Result<(), StoreError> {
    table
        .client
        .delete_item()
        .table_name(&table.name)
        .set_key(Some(dynamo::key(conn_pk(connection_id), sk)))
        .send()
        .await
        .map_err(dynamo::sdk)?;
    Ok(())
}

#[async_trait]
impl ReferenceCache for DynamoTable {
    async fn get(
        &self,
        connection_id: &str,
        max_age: Duration,
    ) -> Result<Option<(SettingsOptions, DateTime<Utc>)>, StoreError> {
        get_doc(self, connection_id, CACHE_SK, max_age).await
    }

    async fn put(
        &self,
        connection_id: &str,
        options: &SettingsOptions,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        put_doc(self, connection_id, CACHE_SK, options, ttl).await
    }

    async fn invalidate(&self, connection_id: &str) -> Result<(), StoreError> {
        delete_doc(self, connection_id, CACHE_SK).await
    }
}

#[async_trait]
impl DictionaryCache for DynamoTable {
    async fn get(
        &self,
        connection_id: &str,
        max_age: Duration,
    ) -> Result<Option<(CachedDictionaries, DateTime<Utc>)>, StoreError> {
        get_doc(self, connection_id, DICTIONARIES_SK, max_age).await
    }

    async fn put(
        &self,
        connection_id: &str,
        dictionaries: &CachedDictionaries,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        put_doc(self, connection_id, DICTIONARIES_SK, dictionaries, ttl).await
    }

    async fn invalidate(&self, connection_id: &str) -> Result<(), StoreError> {
        delete_doc(self, connection_id, DICTIONARIES_SK).await
    }
}
