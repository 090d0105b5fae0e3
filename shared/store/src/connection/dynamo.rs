//! [`ConnectionStore`] on the shared table: `CONN#{id}` / `META` (the document), the shop's
//! pointer `SHOP#{shop}` / `CONNECTION`, `gsi1` `CONNS` for the list and `DELETING` for the
//! cleanup's to-do list.

use crate::connection::{Connection, ConnectionStore};
use crate::dynamo::batch;
use crate::dynamo::{self, DynamoTable, Item, GSI1, GSI1_PK, GSI1_SK, PK, SK};
use crate::dynamo::{conn_pk, links_pk};
use crate::StoreError;
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem};
use chrono::{DateTime, Utc};
use std::collections::HashMap;

fn shop_pk(shop_id: &str) -> String {
    format!("SHOP#{shop_id}")
}

const META: &str = "META";
const SHOP_POINTER: &str = "CONNECTION";
const ALL_CONNECTIONS: &str = "CONNS";
/// `gsi1pk` of connections marked as deleted (their cleanup's to-do list).
const DELETING: &str = "DELETING";
/// Attribute of `META` set when the connection was deleted (RFC 3339).
const DELETING_SINCE: &str = "deleting_since";

fn to_item(c: &Connection) -> Result<Item, StoreError> {
    let mut item = dynamo::key(conn_pk(&c.id), META);
    item.insert(GSI1_PK.into(), dynamo::s(ALL_CONNECTIONS));
    item.insert(GSI1_SK.into(), dynamo::s(&c.id));
    item.insert("doc".into(), dynamo::json(c)?);
    item.insert("shop_id".into(), dynamo::s(&c.shop_id));
    item.insert("version".into(), dynamo::n(c.version));
    Ok(item)
}

fn from_item(item: &Item) -> Result<Connection, StoreError> {
    dynamo::get_json(item, "doc")?
        .ok_or_else(|| StoreError::Corrupt("connection without document".into()))
}

fn deleting_since(item: &Item) -> Option<DateTime<Utc>> {
    dynamo::get_s(item, DELETING_SINCE)
        .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
        .map(|t| t.with_timezone(&Utc))
}

impl DynamoTable {
    async fn meta(&self, id: &str) -> Result<Option<Item>, StoreError> {
        Ok(self
            .client
            .get_item()
            .table_name(&self.name)
            .set_key(Some(dynamo::key(conn_pk(id), META)))
            .consistent_read(true)
            .send()
            .await
            .map_err(dynamo::sdk)?
            .item)
    }

    /// One page of connection metas listed in `gsi1` under `list` (`CONNS`, or `DELETING`),
    /// ordered by id; `cursor` is the last id of the page before.
    async fn connections_page(
        &self,
        list: &str,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<(Vec<Item>, Option<String>), StoreError> {
        let mut q = self
            .client
            .query()
            .table_name(&self.name)
            .index_name(GSI1)
            .key_condition_expression("#p = :p")
            .expression_attribute_names("#p", GSI1_PK)
            .expression_attribute_values(":p", dynamo::s(list))
            .limit(limit.clamp(1, 1000) as i32);
        if let Some(after) = cursor {
            let mut start = dynamo::key(conn_pk(&after), META);
            start.insert(GSI1_PK.into(), dynamo::s(list));
            start.insert(GSI1_SK.into(), dynamo::s(&after));
            q = q.set_exclusive_start_key(Some(start));
        }
        let out = q.send().await.map_err(dynamo::sdk)?;
        let next = out
            .last_evaluated_key
            .and_then(|k| dynamo::get_s(&k, GSI1_SK));
        Ok((out.items.unwrap_or_default(), next))
    }
}

#[async_trait]
impl ConnectionStore for DynamoTable {
    async fn create(&self, c: &Connection) -> Result<(), StoreError> {
        let mut pointer = dynamo::key(shop_pk(&c.shop_id), SHOP_POINTER);
        pointer.insert("connection_id".into(), dynamo::s(&c.id));
        let put_pointer = Put::builder()
            .table_name(&self.name)
            .set_item(Some(pointer))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(dynamo::unavailable)?;
        let put_conn = Put::builder()
            .table_name(&self.name)
            .set_item(Some(to_item(c)?))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(dynamo::unavailable)?;
        let res = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put_pointer).build())
            .transact_items(TransactWriteItem::builder().put(put_conn).build())
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) => match dynamo::sdk(e) {
                StoreError::Conflict(_) => Err(StoreError::AlreadyExists(format!(
                    "shop {} already has a KeyCRM connection",
                    c.shop_id
                ))),
                other => Err(other),
            },
        }
    }

    async fn get(&self, id: &str) -> Result<Option<Connection>, StoreError> {
        match self.meta(id).await? {
            Some(item) if deleting_since(&item).is_none() => from_item(&item).map(Some),
            _ => Ok(None),
        }
    }

    async fn get_by_shop(&self, shop_id: &str) -> Result<Option<Connection>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.name)
            .set_key(Some(dynamo::key(shop_pk(shop_id), SHOP_POINTER)))
            .consistent_read(true)
            .send()
            .await
            .map_err(dynamo::sdk)?;
        let Some(id) = out
            .item
            .as_ref()
            .and_then(|i| dynamo::get_s(i, "connection_id"))
        else {
            return Ok(None);
        };
        self.get(&id).await
    }

    async fn update(&self, c: &Connection) -> Result<(), StoreError> {
        let prev = c.version.saturating_sub(1);
        self.client
            .put_item()
            .table_name(&self.name)
            .set_item(Some(to_item(c)?))
            .condition_expression(
                "attribute_exists(pk) AND version = :prev AND attribute_not_exists(#d)",
            )
            .expression_attribute_names("#d", DELETING_SINCE)
            .expression_attribute_values(":prev", dynamo::n(prev))
            .send()
            .await
            .map_err(dynamo::sdk)
            .map_err(|e| match e {
                StoreError::Conflict(_) => {
                    StoreError::Conflict(format!("connection {} changed since it was read", c.id))
                }
                other => other,
            })?;
        Ok(())
    }

    async fn mark_deleting(&self, c: &Connection) -> Result<(), StoreError> {
        // The document stays (the cleanup needs the secret's name); the item leaves the
        // `CONNS` index for the `DELETING` one, so the schedulers stop listing it and the
        // cleanup's resume finds it.
        let mut item = to_item(&Connection {
            version: c.version + 1,
            updated_at: Utc::now(),
            ..c.clone()
        })?;
        item.insert(GSI1_PK.into(), dynamo::s(DELETING));
        item.insert(DELETING_SINCE.into(), dynamo::s(Utc::now().to_rfc3339()));
        let put_meta = Put::builder()
            .table_name(&self.name)
            .set_item(Some(item))
            .condition_expression(
                "attribute_exists(pk) AND version = :prev AND attribute_not_exists(#d)",
            )
            .expression_attribute_names("#d", DELETING_SINCE)
            .expression_attribute_values(":prev", dynamo::n(c.version))
            .build()
            .map_err(dynamo::unavailable)?;
        // The pointer goes now, so the shop can connect again while the cleanup runs; only
        // this connection's pointer (a new connection's is never touched).
        let drop_pointer = Delete::builder()
            .table_name(&self.name)
            .set_key(Some(dynamo::key(shop_pk(&c.shop_id), SHOP_POINTER)))
            .condition_expression("attribute_not_exists(pk) OR connection_id = :id")
            .expression_attribute_values(":id", dynamo::s(&c.id))
            .build()
            .map_err(dynamo::unavailable)?;
        self.client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put_meta).build())
            .transact_items(TransactWriteItem::builder().delete(drop_pointer).build())
            .send()
            .await
            .map_err(dynamo::sdk)
            .map_err(|e| match e {
                StoreError::Conflict(_) => {
                    StoreError::Conflict(format!("connection {} changed since it was read", c.id))
                }
                other => other,
            })?;
        Ok(())
    }

    async fn get_deleting(
        &self,
        id: &str,
    ) -> Result<Option<(Connection, DateTime<Utc>)>, StoreError> {
        match self.meta(id).await? {
            Some(item) => match deleting_since(&item) {
                Some(since) => Ok(Some((from_item(&item)?, since))),
                None => Ok(None),
            },
            None => Ok(None),
        }
    }

    async fn list_deleting(
        &self,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<(Vec<String>, Option<String>), StoreError> {
        let (items, next) = self.connections_page(DELETING, cursor, limit).await?;
        let ids = items
            .iter()
            .filter_map(|i| dynamo::get_s(i, GSI1_SK))
            .collect();
        Ok((ids, next))
    }

    async fn purge(&self, id: &str, max_items: usize) -> Result<bool, StoreError> {
        // Never a live connection's data: only once the mark is there.
        let meta = self.meta(id).await?;
        let Some(meta) = meta.filter(|m| deleting_since(m).is_some()) else {
            return Err(StoreError::Conflict(format!(
                "connection {id} is not marked as deleted"
            )));
        };
        let conn = from_item(&meta)?;
        let mut budget = max_items.max(1);
        // Links first (those of every KeyCRM account the connection used): the `CONN#`
        // partition holds the sync lease, which keeps syncs out until the rest is gone.
        let mut partitions: Vec<String> = conn
            .previous_links_scopes()
            .iter()
            .map(|s| links_pk(s))
            .collect();
        partitions.push(links_pk(&conn.links_scope()));
        partitions.push(conn_pk(id));
        for pk in partitions {
            let (deleted, more) = delete_some(self, &pk, Some(META), budget).await?;
            budget = budget.saturating_sub(deleted);
            if more || budget == 0 {
                // Something may be left: the caller comes back.
                return Ok(false);
            }
        }
        Ok(true)
    }

    async fn remove(&self, id: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.name)
            .set_key(Some(dynamo::key(conn_pk(id), META)))
            .condition_expression("attribute_not_exists(pk) OR attribute_exists(#d)")
            .expression_attribute_names("#d", DELETING_SINCE)
            .send()
            .await
            .map_err(dynamo::sdk)
            .map_err(|e| match e {
                StoreError::Conflict(_) => {
                    StoreError::Conflict(format!("connection {id} is not marked as deleted"))
                }
                other => other,
            })?;
        Ok(())
    }

    async fn list(
        &self,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<(Vec<Connection>, Option<String>), StoreError> {
        let (items, next) = self
            .connections_page(ALL_CONNECTIONS, cursor, limit)
            .await?;
        let conns = items.iter().map(from_item).collect::<Result<Vec<_>, _>>()?;
        Ok((conns, next))
    }
}

/// Deletes up to `max` items of a partition (25 a batch), except the sort key `keep`.
/// Returns how many went and whether more may be left.
pub async fn delete_some(
    table: &DynamoTable,
    pk: &str,
    keep: Option<&str>,
    max: usize,
) -> Result<(usize, bool), StoreError> {
    let mut deleted = 0;
    loop {
        let left = max.saturating_sub(deleted);
        if left == 0 {
            return Ok((deleted, true));
        }
        // Keys only; `keep` may be in the page, so one more than needed is read.
        let out = table
            .client
            .query()
            .table_name(&table.name)
            .key_condition_expression("#p = :p")
            .expression_attribute_names("#p", PK)
            .expression_attribute_values(":p", dynamo::s(pk))
            .projection_expression("#p, sk")
            .limit((left + 1).min(1000) as i32)
            .send()
            .await
            .map_err(dynamo::sdk)?;
        let keys: Vec<Item> = out
            .items
            .unwrap_or_default()
            .into_iter()
            .filter(|i| keep.is_none_or(|k| dynamo::get_s(i, SK).as_deref() != Some(k)))
            .take(left)
            .map(|i| {
                i.into_iter()
                    .filter(|(k, _)| k == PK || k == SK)
                    .collect::<HashMap<String, AttributeValue>>()
            })
            .collect();
        if keys.is_empty() {
            return Ok((deleted, false));
        }
        for chunk in keys.chunks(25) {
            batch::delete_keys(table, chunk.to_vec()).await?;
            deleted += chunk.len();
        }
    }
}
