//! [`StatusJournal`] on the shared table: `CONN#{id}` / `STATUS` (counters, last error, last
//! syncs) and `CONN#{id}` / `FAIL#{shop order}` per open failure (TTL 30 days).

use crate::dynamo::conn_pk;
use crate::dynamo::{self, DynamoTable, EXPIRES_AT, PK, SK};
use crate::journal::{
    merchant_text, ConnectionStatus, Counter, JournalError, OrderFailure, StatusJournal,
    SyncSummary,
};
use crate::StoreError;
use async_trait::async_trait;
use chrono::Utc;

const STATUS: &str = "STATUS";
const FAILURE_TTL_DAYS: i64 = 30;

fn failure_sk(order: &str) -> String {
    format!("FAIL#{order}")
}

#[async_trait]
impl StatusJournal for DynamoTable {
    async fn count(&self, conn: &str, counter: Counter, n: u64) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.name)
            .set_key(Some(dynamo::key(conn_pk(conn), STATUS)))
            .update_expression("ADD #c :n")
            .expression_attribute_names("#c", counter.as_str())
            .expression_attribute_values(":n", dynamo::n(n))
            .send()
            .await
            .map_err(dynamo::sdk)?;
        Ok(())
    }

    async fn count_many(&self, conn: &str, counts: &[(Counter, u64)]) -> Result<(), StoreError> {
        let counts: Vec<&(Counter, u64)> = counts.iter().filter(|(_, n)| *n > 0).collect();
        if counts.is_empty() {
            return Ok(());
        }
        let mut update = self
            .client
            .update_item()
            .table_name(&self.name)
            .set_key(Some(dynamo::key(conn_pk(conn), STATUS)));
        let mut parts = Vec::new();
        for (i, (c, n)) in counts.iter().enumerate() {
            parts.push(format!("#c{i} :n{i}"));
            update = update
                .expression_attribute_names(format!("#c{i}"), c.as_str())
                .expression_attribute_values(format!(":n{i}"), dynamo::n(n));
        }
        update
            .update_expression(format!("ADD {}", parts.join(", ")))
            .send()
            .await
            .map_err(dynamo::sdk)?;
        Ok(())
    }

    async fn record_error(&self, conn: &str, message: &str) -> Result<(), StoreError> {
        let e = JournalError {
            at: Utc::now(),
            message: merchant_text(message),
        };
        self.client
            .update_item()
            .table_name(&self.name)
            .set_key(Some(dynamo::key(conn_pk(conn), STATUS)))
            .update_expression("SET last_error = :e")
            .expression_attribute_values(":e", dynamo::json(&e)?)
            .send()
            .await
            .map_err(dynamo::sdk)?;
        Ok(())
    }

    async fn record_failure(&self, conn: &str, f: &OrderFailure) -> Result<(), StoreError> {
        let f = &OrderFailure {
            reason: merchant_text(&f.reason),
            ..f.clone()
        };
        let mut item = dynamo::key(conn_pk(conn), failure_sk(&f.shop_order_id));
        item.insert("doc".into(), dynamo::json(f)?);
        item.insert(
            EXPIRES_AT.into(),
            dynamo::n((f.at + chrono::Duration::days(FAILURE_TTL_DAYS)).timestamp()),
        );
        self.put_item(item).await?;
        self.record_error(conn, &format!("order {}: {}", f.shop_order_id, f.reason))
            .await
    }

    async fn clear_failure(&self, conn: &str, shop_order_id: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.name)
            .set_key(Some(dynamo::key(conn_pk(conn), failure_sk(shop_order_id))))
            .send()
            .await
            .map_err(dynamo::sdk)?;
        Ok(())
    }

    async fn record_sync(
        &self,
        conn: &str,
        kind: &str,
        summary: &SyncSummary,
    ) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.name)
            .set_key(Some(dynamo::key(conn_pk(conn), STATUS)))
            .update_expression("SET #s = :s")
            .expression_attribute_names("#s", format!("sync_{kind}"))
            .expression_attribute_values(":s", dynamo::json(summary)?)
            .send()
            .await
            .map_err(dynamo::sdk)?;
        Ok(())
    }

    async fn status(&self, conn: &str) -> Result<ConnectionStatus, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.name)
            .set_key(Some(dynamo::key(conn_pk(conn), STATUS)))
            .consistent_read(true)
            .send()
            .await
            .map_err(dynamo::sdk)?;
        let mut status = ConnectionStatus::default();
        if let Some(item) = out.item {
            for c in Counter::ALL {
                status.counters.insert(
                    c.as_str().into(),
                    dynamo::get_n(&item, c.as_str()).unwrap_or(0),
                );
            }
            status.last_error = dynamo::get_json(&item, "last_error")?;
            for (k, _) in item.iter().filter(|(k, _)| k.starts_with("sync_")) {
                if let Some(s) = dynamo::get_json::<SyncSummary>(&item, k)? {
                    status.last_sync.insert(k["sync_".len()..].to_string(), s);
                }
            }
        } else {
            for c in Counter::ALL {
                status.counters.insert(c.as_str().into(), 0);
            }
        }
        let out = self
            .client
            .query()
            .table_name(&self.name)
            .key_condition_expression("#p = :p AND begins_with(#s, :f)")
            .expression_attribute_names("#p", PK)
            .expression_attribute_names("#s", SK)
            .expression_attribute_values(":p", dynamo::s(conn_pk(conn)))
            .expression_attribute_values(":f", dynamo::s("FAIL#"))
            .send()
            .await
            .map_err(dynamo::sdk)?;
        let mut failures = out
            .items
            .unwrap_or_default()
            .iter()
            .filter_map(|i| dynamo::get_json::<OrderFailure>(i, "doc").ok().flatten())
            .collect::<Vec<_>>();
        failures.sort_by_key(|f| std::cmp::Reverse(f.at));
        failures.truncate(50);
        status.failures = failures;
        Ok(status)
    }
}
