//! Connections: one shop linked to one KeyCRM account, with its settings and webhook tokens.

use crate::dynamo::{self, DynamoTable, Item, GSI1, GSI1_PK, GSI1_SK, PK, SK};
use crate::StoreError;
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem};
use chrono::{DateTime, Utc};
use mapping::Settings;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Connection {
    pub id: String,
    pub shop_id: String,
    pub active: bool,
    pub keycrm_base_url: String,
    /// `••••a1b2`: what the merchant is shown of the key.
    pub key_mask: String,
    /// Identifies the key's shared rate budget; not the key.
    pub key_fingerprint: String,
    /// Where the key itself lives in the secret store.
    pub secret_name: String,
    pub settings: Settings,
    pub webhook_tokens: WebhookTokens,
    /// Bumped on every write; writes are conditional on it (no lost updates).
    pub version: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// SHA-256 hashes of the webhook URL tokens.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookTokens {
    pub orders: Option<String>,
    pub cards: Option<String>,
    /// KeyCRM's stock webhook (realtime stock).
    #[serde(default)]
    pub stock: Option<String>,
}

/// Which webhook URL a call came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookKind {
    Orders,
    Cards,
    Stock,
}

impl WebhookKind {
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookKind::Orders => "orders",
            WebhookKind::Cards => "cards",
            WebhookKind::Stock => "stock",
        }
    }
}

impl WebhookTokens {
    pub fn hash_for(&self, kind: WebhookKind) -> Option<&str> {
        match kind {
            WebhookKind::Orders => self.orders.as_deref(),
            WebhookKind::Cards => self.cards.as_deref(),
            WebhookKind::Stock => self.stock.as_deref(),
        }
    }
}

#[async_trait]
pub trait ConnectionStore: Send + Sync {
    /// Stores a new connection; `AlreadyExists` if the shop already has one.
    async fn create(&self, conn: &Connection) -> Result<(), StoreError>;
    async fn get(&self, id: &str) -> Result<Option<Connection>, StoreError>;
    async fn get_by_shop(&self, shop_id: &str) -> Result<Option<Connection>, StoreError>;
    /// Replaces the connection if its stored version is `conn.version - 1`; `Conflict` otherwise.
    async fn update(&self, conn: &Connection) -> Result<(), StoreError>;
    /// Removes the connection, its shop pointer and every item it owns.
    async fn delete(&self, id: &str) -> Result<(), StoreError>;
    /// All connections, a page at a time (for the schedulers' fan-out).
    async fn list(
        &self,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<(Vec<Connection>, Option<String>), StoreError>;
}

pub fn conn_pk(id: &str) -> String {
    format!("CONN#{id}")
}

pub fn links_pk(id: &str) -> String {
    format!("LINKS#{id}")
}

fn shop_pk(shop_id: &str) -> String {
    format!("SHOP#{shop_id}")
}

const META: &str = "META";
const SHOP_POINTER: &str = "CONNECTION";
const ALL_CONNECTIONS: &str = "CONNS";

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
        let out = self
            .client
            .get_item()
            .table_name(&self.name)
            .set_key(Some(dynamo::key(conn_pk(id), META)))
            .consistent_read(true)
            .send()
            .await
            .map_err(dynamo::sdk)?;
        out.item.as_ref().map(from_item).transpose()
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
            .condition_expression("attribute_exists(pk) AND version = :prev")
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

    async fn delete(&self, id: &str) -> Result<(), StoreError> {
        let Some(c) = self.get(id).await? else {
            return Err(StoreError::NotFound(format!("connection {id}")));
        };
        // Owned items first, the connection last: a crash half-way leaves a connection that
        // can be deleted again, never orphans nobody can find.
        for pk in [links_pk(id), conn_pk(id)] {
            delete_partition(self, &pk, Some(META)).await?;
        }
        let del = |k: Item| {
            Delete::builder()
                .table_name(&self.name)
                .set_key(Some(k))
                .build()
                .map_err(dynamo::unavailable)
        };
        self.client
            .transact_write_items()
            .transact_items(
                TransactWriteItem::builder()
                    .delete(del(dynamo::key(conn_pk(id), META))?)
                    .build(),
            )
            .transact_items(
                TransactWriteItem::builder()
                    .delete(del(dynamo::key(shop_pk(&c.shop_id), SHOP_POINTER))?)
                    .build(),
            )
            .send()
            .await
            .map_err(dynamo::sdk)?;
        Ok(())
    }

    async fn list(
        &self,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<(Vec<Connection>, Option<String>), StoreError> {
        let mut q = self
            .client
            .query()
            .table_name(&self.name)
            .index_name(GSI1)
            .key_condition_expression("#p = :p")
            .expression_attribute_names("#p", GSI1_PK)
            .expression_attribute_values(":p", dynamo::s(ALL_CONNECTIONS))
            .limit(limit.clamp(1, 1000) as i32);
        if let Some(after) = cursor {
            let mut start = dynamo::key(conn_pk(&after), META);
            start.insert(GSI1_PK.into(), dynamo::s(ALL_CONNECTIONS));
            start.insert(GSI1_SK.into(), dynamo::s(&after));
            q = q.set_exclusive_start_key(Some(start));
        }
        let out = q.send().await.map_err(dynamo::sdk)?;
        let conns = out
            .items
            .unwrap_or_default()
            .iter()
            .map(from_item)
            .collect::<Result<Vec<_>, _>>()?;
        let next = out
            .last_evaluated_key
            .and_then(|k| dynamo::get_s(&k, GSI1_SK));
        Ok((conns, next))
    }
}

/// Deletes every item of a partition (25 at a time), except the sort key `keep`.
pub async fn delete_partition(
    table: &DynamoTable,
    pk: &str,
    keep: Option<&str>,
) -> Result<usize, StoreError> {
    let mut deleted = 0;
    let mut start: Option<Item> = None;
    loop {
        let out = table
            .client
            .query()
            .table_name(&table.name)
            .key_condition_expression("#p = :p")
            .expression_attribute_names("#p", PK)
            .expression_attribute_values(":p", dynamo::s(pk))
            .projection_expression("#p, sk")
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(dynamo::sdk)?;
        let keys: Vec<Item> = out
            .items
            .unwrap_or_default()
            .into_iter()
            .filter(|i| keep.is_none_or(|k| dynamo::get_s(i, SK).as_deref() != Some(k)))
            .map(|i| {
                i.into_iter()
                    .filter(|(k, _)| k == PK || k == SK)
                    .collect::<HashMap<String, AttributeValue>>()
            })
            .collect();
        for chunk in keys.chunks(25) {
            crate::batch::delete_keys(table, chunk.to_vec()).await?;
            deleted += chunk.len();
        }
        match out.last_evaluated_key {
            Some(k) => start = Some(k),
            None => return Ok(deleted),
        }
    }
}

/// The in-memory adapter (unit tests, local run).
#[derive(Default)]
pub struct MemoryConnections {
    inner: Mutex<HashMap<String, Connection>>,
}

impl MemoryConnections {
    fn lock(&self) -> Result<std::sync::MutexGuard<'_, HashMap<String, Connection>>, StoreError> {
        self.inner
            .lock()
            .map_err(|_| StoreError::Unavailable("poisoned".into()))
    }
}

#[async_trait]
impl ConnectionStore for MemoryConnections {
    async fn create(&self, c: &Connection) -> Result<(), StoreError> {
        let mut m = self.lock()?;
        if m.values().any(|x| x.shop_id == c.shop_id) || m.contains_key(&c.id) {
            return Err(StoreError::AlreadyExists(format!(
                "shop {} already has a KeyCRM connection",
                c.shop_id
            )));
        }
        m.insert(c.id.clone(), c.clone());
        Ok(())
    }

    async fn get(&self, id: &str) -> Result<Option<Connection>, StoreError> {
        Ok(self.lock()?.get(id).cloned())
    }

    async fn get_by_shop(&self, shop_id: &str) -> Result<Option<Connection>, StoreError> {
        Ok(self
            .lock()?
            .values()
            .find(|c| c.shop_id == shop_id)
            .cloned())
    }

    async fn update(&self, c: &Connection) -> Result<(), StoreError> {
        let mut m = self.lock()?;
        match m.get(&c.id) {
            Some(old) if old.version + 1 == c.version => {
                m.insert(c.id.clone(), c.clone());
                Ok(())
            }
            Some(_) => Err(StoreError::Conflict(format!(
                "connection {} changed since it was read",
                c.id
            ))),
            None => Err(StoreError::NotFound(format!("connection {}", c.id))),
        }
    }

    async fn delete(&self, id: &str) -> Result<(), StoreError> {
        self.lock()?
            .remove(id)
            .map(|_| ())
            .ok_or_else(|| StoreError::NotFound(format!("connection {id}")))
    }

    async fn list(
        &self,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<(Vec<Connection>, Option<String>), StoreError> {
        let m = self.lock()?;
        let mut all: Vec<&Connection> = m.values().collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        let page: Vec<Connection> = all
            .into_iter()
            .filter(|c| cursor.as_deref().is_none_or(|after| c.id.as_str() > after))
            .take(limit.max(1) + 1)
            .cloned()
            .collect();
        if page.len() > limit.max(1) {
            let mut page = page;
            page.pop();
            let next = page.last().map(|c| c.id.clone());
            Ok((page, next))
        } else {
            Ok((page, None))
        }
    }
}
