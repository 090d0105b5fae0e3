//! The reference cache in the table: one item per connection, `CONN#{id}` / `CACHE#options`,
//! holding the options document, when it was fetched and an `expires_at` TTL. TTL deletion
//! is lazy (up to days late), so reads check freshness themselves.

use crate::dynamo::conn_pk;
use crate::dynamo::{self, DynamoTable, EXPIRES_AT};
use crate::reference_cache::{is_fresh, ReferenceCache};
use crate::StoreError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mapping::SettingsOptions;
use std::time::Duration;

pub const CACHE_SK: &str = "CACHE#options";

#[async_trait]
impl ReferenceCache for DynamoTable {
    async fn get(
        &self,
        connection_id: &str,
        max_age: Duration,
    ) -> Result<Option<(SettingsOptions, DateTime<Utc>)>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.name)
            .set_key(Some(dynamo::key(conn_pk(connection_id), CACHE_SK)))
            // Written a moment ago by the same page: an eventually consistent read could miss
            // it and spend the KeyCRM budget again.
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
        // A document an older release wrote differently is a miss, not an error.
        match dynamo::get_json::<SettingsOptions>(&item, "doc") {
            Ok(Some(opts)) => Ok(Some((opts, fetched_at))),
            Ok(None) => Ok(None),
            Err(e) => {
                tracing::warn!(connection = %connection_id, error = %e, "ignoring an unreadable options cache entry");
                Ok(None)
            }
        }
    }

    async fn put(
        &self,
        connection_id: &str,
        options: &SettingsOptions,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let now = Utc::now();
        let mut item = dynamo::key(conn_pk(connection_id), CACHE_SK);
        item.insert("doc".into(), dynamo::json(options)?);
        item.insert("fetched_at".into(), dynamo::s(now.to_rfc3339()));
        item.insert(
            EXPIRES_AT.into(),
            dynamo::n(now.timestamp() + ttl.as_secs() as i64 + 1),
        );
        self.client
            .put_item()
            .table_name(&self.name)
            .set_item(Some(item))
            .send()
            .await
            .map_err(dynamo::sdk)?;
        Ok(())
    }

    async fn invalidate(&self, connection_id: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.name)
            .set_key(Some(dynamo::key(conn_pk(connection_id), CACHE_SK)))
            .send()
            .await
            .map_err(dynamo::sdk)?;
        Ok(())
    }
}
