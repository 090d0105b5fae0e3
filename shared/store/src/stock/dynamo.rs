//! [`StockStore`] on the shared table (layout in `stock.rs`).

use crate::dynamo::batch;
use crate::dynamo::{self, DynamoTable, Item, PK, SK};
use crate::dynamo::{conn_pk, links_pk};
use crate::stock::{bucket_of, StockStore, StockWindow};
use crate::StoreError;
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};
use std::collections::{BTreeMap, BTreeSet, HashMap};

const PENDING_PREFIX: &str = "STOCK#P#";
const FLIGHT: &str = "STOCK#FLIGHT";
const WINDOW: &str = "STOCK#WINDOW";
const WRITTEN_PREFIX: &str = "A#";

pub(crate) fn written_sk(offer: i64) -> String {
    format!("{WRITTEN_PREFIX}{offer}")
}

fn bucket_sk(bucket: i64) -> String {
    format!("{PENDING_PREFIX}{bucket:02}")
}

fn id_set(ids: &[i64]) -> AttributeValue {
    let unique: BTreeSet<i64> = ids.iter().copied().collect();
    AttributeValue::Ns(unique.into_iter().map(|i| i.to_string()).collect())
}

fn ids_of(item: &Item) -> impl Iterator<Item = i64> + '_ {
    let set: &[String] = match item.get("ids") {
        Some(AttributeValue::Ns(v)) => v,
        _ => &[],
    };
    set.iter().filter_map(|s| s.parse().ok())
}

fn by_bucket(offers: &[i64]) -> BTreeMap<i64, Vec<i64>> {
    let mut m: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for &o in offers {
        m.entry(bucket_of(o)).or_default().push(o);
    }
    m
}

impl DynamoTable {
    async fn set_op(
        &self,
        sk: String,
        op: &str,
        ids: &[i64],
        conn: &str,
    ) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.name)
            .set_key(Some(dynamo::key(conn_pk(conn), sk)))
            .update_expression(format!("{op} ids :s"))
            .expression_attribute_values(":s", id_set(ids))
            .send()
            .await
            .map_err(dynamo::sdk)?;
        Ok(())
    }

    async fn get_window_item(&self, conn: &str) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.name)
            .set_key(Some(dynamo::key(conn_pk(conn), WINDOW)))
            .consistent_read(true)
            .send()
            .await
            .map_err(dynamo::sdk)?;
        Ok(out.item)
    }

    /// A conditional update of the window item; `Ok(false)` when the condition failed.
    async fn window_update(
        &self,
        conn: &str,
        update: &str,
        condition: &str,
        values: &[(&str, AttributeValue)],
    ) -> Result<bool, StoreError> {
        let mut req = self
            .client
            .update_item()
            .table_name(&self.name)
            .set_key(Some(dynamo::key(conn_pk(conn), WINDOW)))
            .update_expression(update)
            .condition_expression(condition)
            .expression_attribute_names("#u", "until");
        for (k, v) in values {
            req = req.expression_attribute_values(*k, v.clone());
        }
        match req.send().await.map_err(dynamo::sdk) {
            Ok(_) => Ok(true),
            Err(e) if dynamo::is_condition_failure(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

#[async_trait]
impl StockStore for DynamoTable {
    async fn add_pending(&self, conn: &str, offers: &[i64]) -> Result<(), StoreError> {
        let writes = by_bucket(offers)
            .into_iter()
            .map(|(b, ids)| async move { self.set_op(bucket_sk(b), "ADD", &ids, conn).await });
        for r in futures::future::join_all(writes).await {
            r?;
        }
        Ok(())
    }

    async fn pending(&self, conn: &str) -> Result<Vec<i64>, StoreError> {
        let mut out = BTreeSet::new();
        let mut start: Option<Item> = None;
        loop {
            let res = self
                .client
                .query()
                .table_name(&self.name)
                .key_condition_expression("#p = :p AND begins_with(#s, :f)")
                .expression_attribute_names("#p", PK)
                .expression_attribute_names("#s", SK)
                .expression_attribute_values(":p", dynamo::s(conn_pk(conn)))
                .expression_attribute_values(":f", dynamo::s(PENDING_PREFIX))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(dynamo::sdk)?;
            for item in res.items.unwrap_or_default() {
                out.extend(ids_of(&item));
            }
            match res.last_evaluated_key {
                Some(k) => start = Some(k),
                None => return Ok(out.into_iter().collect()),
            }
        }
    }

    async fn in_flight(&self, conn: &str) -> Result<Vec<i64>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.name)
            .set_key(Some(dynamo::key(conn_pk(conn), FLIGHT)))
            .consistent_read(true)
            .send()
            .await
            .map_err(dynamo::sdk)?;
        let set: BTreeSet<i64> = out
            .item
            .as_ref()
            .map(|i| ids_of(i).collect())
            .unwrap_or_default();
        Ok(set.into_iter().collect())
    }

    async fn begin(&self, conn: &str, offers: &[i64]) -> Result<(), StoreError> {
        if offers.is_empty() {
            return Ok(());
        }
        let update = |sk: String, op: &str, ids: &[i64]| {
            Update::builder()
                .table_name(&self.name)
                .set_key(Some(dynamo::key(conn_pk(conn), sk)))
                .update_expression(format!("{op} ids :s"))
                .expression_attribute_values(":s", id_set(ids))
                .build()
                .map(|u| TransactWriteItem::builder().update(u).build())
                .map_err(dynamo::unavailable)
        };
        let mut req = self.client.transact_write_items().transact_items(update(
            FLIGHT.into(),
            "ADD",
            offers,
        )?);
        for (b, ids) in by_bucket(offers) {
            req = req.transact_items(update(bucket_sk(b), "DELETE", &ids)?);
        }
        req.send().await.map_err(dynamo::sdk)?;
        Ok(())
    }

    async fn finish(&self, conn: &str, offers: &[i64]) -> Result<(), StoreError> {
        if offers.is_empty() {
            return Ok(());
        }
        self.set_op(FLIGHT.into(), "DELETE", offers, conn).await
    }

    async fn window(&self, conn: &str) -> Result<Option<StockWindow>, StoreError> {
        Ok(self.get_window_item(conn).await?.and_then(|i| {
            Some(StockWindow {
                id: dynamo::get_s(&i, "w")?,
                until_ms: dynamo::get_n(&i, "until")?,
                holder: dynamo::get_s(&i, "holder"),
            })
        }))
    }

    async fn schedule_window(
        &self,
        conn: &str,
        id: &str,
        until_ms: i64,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        self.window_update(
            conn,
            "SET w = :w, #u = :u REMOVE holder",
            "attribute_not_exists(pk) OR #u < :now",
            &[
                (":w", dynamo::s(id)),
                (":u", dynamo::n(until_ms)),
                (":now", dynamo::n(now_ms)),
            ],
        )
        .await
    }

    async fn take_window(
        &self,
        conn: &str,
        id: &str,
        holder: &str,
        until_ms: i64,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        self.window_update(
            conn,
            "SET w = :w, #u = :u, holder = :h",
            "attribute_not_exists(pk) OR #u < :now OR (w = :w AND attribute_not_exists(holder))",
            &[
                (":w", dynamo::s(id)),
                (":u", dynamo::n(until_ms)),
                (":h", dynamo::s(holder)),
                (":now", dynamo::n(now_ms)),
            ],
        )
        .await
    }

    async fn renew_window(
        &self,
        conn: &str,
        holder: &str,
        until_ms: i64,
    ) -> Result<bool, StoreError> {
        self.window_update(
            conn,
            "SET #u = :u",
            "holder = :h",
            &[(":u", dynamo::n(until_ms)), (":h", dynamo::s(holder))],
        )
        .await
    }

    async fn park_window(
        &self,
        conn: &str,
        holder: &str,
        until_ms: i64,
    ) -> Result<bool, StoreError> {
        self.window_update(
            conn,
            "SET #u = :u REMOVE holder",
            "holder = :h",
            &[(":u", dynamo::n(until_ms)), (":h", dynamo::s(holder))],
        )
        .await
    }

    async fn end_window(&self, conn: &str, holder: &str) -> Result<(), StoreError> {
        let res = self
            .client
            .delete_item()
            .table_name(&self.name)
            .set_key(Some(dynamo::key(conn_pk(conn), WINDOW)))
            .condition_expression("holder = :h")
            .expression_attribute_values(":h", dynamo::s(holder))
            .send()
            .await
            .map_err(dynamo::sdk);
        match res {
            Ok(_) => Ok(()),
            Err(e) if dynamo::is_condition_failure(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn last_written(
        &self,
        conn: &str,
        offers: &[i64],
    ) -> Result<HashMap<i64, bool>, StoreError> {
        let pk = links_pk(conn);
        let unique: BTreeSet<i64> = offers.iter().copied().collect();
        let keys = unique
            .into_iter()
            .map(|o| dynamo::key(&pk, written_sk(o)))
            .collect();
        Ok(batch::get_items(self, keys)
            .await?
            .iter()
            .filter_map(|i| {
                let offer = dynamo::get_s(i, SK)?
                    .strip_prefix(WRITTEN_PREFIX)?
                    .parse()
                    .ok()?;
                Some((offer, dynamo::get_b(i, "a")?))
            })
            .collect())
    }

    async fn record_written(&self, conn: &str, written: &[(i64, bool)]) -> Result<(), StoreError> {
        let pk = links_pk(conn);
        let last: BTreeMap<i64, bool> = written.iter().copied().collect();
        let items = last
            .into_iter()
            .map(|(offer, a)| {
                let mut item = dynamo::key(&pk, written_sk(offer));
                item.insert("a".into(), dynamo::b(a));
                item
            })
            .collect();
        batch::put_items(self, items).await
    }
}
