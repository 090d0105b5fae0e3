//! [`SyncStore`] on the shared table.
//!
//! - `CONN#{id}` / `SYNC#{kind}`: the lease (`lease_holder`, `lease_until` in epoch ms), the run
//!   in progress (`run_doc`) and its checkpoint. While a checkpoint exists the item is also in
//!   `gsi1` under `SYNC#UNFINISHED`, which is how the resume schedule finds paused runs with a
//!   Query (never a Scan). `queued_until` (epoch ms) marks the run's continuation as waiting
//!   in the sync-jobs queue, so the resume schedule does not queue it again meanwhile.
//! - `CONN#{id}` / `RUN#{started_at}#{run_id}`: a run report (`doc`), TTL 30 days; plus
//!   `CONN#{id}` / `RUNID#{run_id}` pointing at it, so a run is found by id with two reads.

use crate::dynamo::conn_pk;
use crate::dynamo::{self, DynamoTable, Item, EXPIRES_AT, GSI1, GSI1_PK, GSI1_SK, PK, SK};
use crate::sync::{SyncKind, SyncLease, SyncRun, SyncStore};
use crate::StoreError;
use async_trait::async_trait;
use aws_sdk_dynamodb::types::ReturnValue;
use chrono::{DateTime, TimeZone, Utc};
use std::time::Duration;

const UNFINISHED: &str = "SYNC#UNFINISHED";
const QUEUED_UNTIL: &str = "queued_until";
const RUN_TTL_DAYS: i64 = 30;

fn lease_sk(kind: SyncKind) -> String {
    format!("SYNC#{}", kind.as_str())
}

fn run_sk(run: &SyncRun) -> String {
    let at = run.started_at.unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
    format!("RUN#{}#{}", at.format("%Y-%m-%dT%H:%M:%S%.6fZ"), run.run_id)
}

fn run_pointer_sk(run_id: &str) -> String {
    format!("RUNID#{run_id}")
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn at_ms(v: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(v)
        .single()
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

fn later(d: Duration) -> DateTime<Utc> {
    Utc::now() + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::zero())
}

fn lease_from(item: &Item, conn: &str, kind: SyncKind) -> Result<SyncLease, StoreError> {
    Ok(SyncLease {
        connection_id: conn.to_string(),
        kind,
        holder: dynamo::get_s(item, "lease_holder").unwrap_or_default(),
        until: at_ms(dynamo::get_n(item, "lease_until").unwrap_or(0)),
        run: dynamo::get_json(item, "run_doc")?,
        checkpoint: dynamo::get_s(item, "checkpoint"),
    })
}

fn kind_of(s: &str) -> Option<SyncKind> {
    match s {
        "full" => Some(SyncKind::Full),
        "prices" => Some(SyncKind::Prices),
        _ => None,
    }
}

impl DynamoTable {
    /// Writes run + checkpoint and sets the lease's end, if `lease.holder` still holds it;
    /// `unmark`: also removes the queued-continuation mark (the run is paused).
    async fn save_lease(
        &self,
        lease: &SyncLease,
        until: DateTime<Utc>,
        unmark: bool,
    ) -> Result<(), StoreError> {
        let mut set = vec!["#u = :u"];
        let mut remove = Vec::new();
        if unmark {
            remove.push(QUEUED_UNTIL);
        }
        let mut req = self
            .client
            .update_item()
            .table_name(&self.name)
            .set_key(Some(dynamo::key(
                conn_pk(&lease.connection_id),
                lease_sk(lease.kind),
            )))
            .condition_expression("#h = :h")
            .expression_attribute_names("#h", "lease_holder")
            .expression_attribute_names("#u", "lease_until")
            .expression_attribute_values(":h", dynamo::s(&lease.holder))
            .expression_attribute_values(":u", dynamo::n(ms(until)));
        match &lease.run {
            Some(run) => {
                set.push("run_doc = :r");
                req = req.expression_attribute_values(":r", dynamo::json(run)?);
            }
            None => remove.push("run_doc"),
        }
        match &lease.checkpoint {
            Some(cp) => {
                set.push("checkpoint = :c");
                set.push("#gp = :gp");
                set.push("#gs = :gs");
                req = req
                    .expression_attribute_values(":c", dynamo::s(cp))
                    .expression_attribute_values(":gp", dynamo::s(UNFINISHED))
                    .expression_attribute_values(
                        ":gs",
                        dynamo::s(format!("{}#{}", lease.connection_id, lease.kind.as_str())),
                    );
            }
            None => {
                remove.push("checkpoint");
                remove.push("#gp");
                remove.push("#gs");
            }
        }
        req = req
            .expression_attribute_names("#gp", GSI1_PK)
            .expression_attribute_names("#gs", GSI1_SK);
        let mut expr = format!("SET {}", set.join(", "));
        if !remove.is_empty() {
            expr.push_str(&format!(" REMOVE {}", remove.join(", ")));
        }
        req.update_expression(expr)
            .send()
            .await
            .map_err(|e| lost(dynamo::sdk(e)))?;
        Ok(())
    }
}

fn lost(e: StoreError) -> StoreError {
    match e {
        StoreError::Conflict(_) => StoreError::Conflict("the sync lease was lost".into()),
        other => other,
    }
}

#[async_trait]
impl SyncStore for DynamoTable {
    async fn acquire(
        &self,
        connection_id: &str,
        kind: SyncKind,
        holder: &str,
        lease: Duration,
    ) -> Result<Option<SyncLease>, StoreError> {
        let now = Utc::now();
        let res = self
            .client
            .update_item()
            .table_name(&self.name)
            .set_key(Some(dynamo::key(conn_pk(connection_id), lease_sk(kind))))
            // Whatever was queued for this run has been consumed: this job is it.
            .update_expression("SET #h = :h, #u = :u REMOVE #q")
            .condition_expression("attribute_not_exists(#pk) OR #u < :now OR #h = :h")
            .expression_attribute_names("#q", QUEUED_UNTIL)
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#h", "lease_holder")
            .expression_attribute_names("#u", "lease_until")
            .expression_attribute_values(":h", dynamo::s(holder))
            .expression_attribute_values(":u", dynamo::n(ms(later(lease))))
            .expression_attribute_values(":now", dynamo::n(ms(now)))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match res {
            Ok(out) => {
                let item = out.attributes.unwrap_or_default();
                Ok(Some(lease_from(&item, connection_id, kind)?))
            }
            Err(e) => match dynamo::sdk(e) {
                StoreError::Conflict(_) => Ok(None),
                other => Err(other),
            },
        }
    }

    async fn checkpoint(
        &self,
        lease: &SyncLease,
        extend_by: Duration,
    ) -> Result<SyncLease, StoreError> {
        // The caller's lease is what was written: no need to read it back.
        let until = later(extend_by);
        self.save_lease(lease, until, false).await?;
        Ok(SyncLease {
            until: at_ms(ms(until)),
            ..lease.clone()
        })
    }

    async fn finish(&self, lease: &SyncLease) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.name)
            .set_key(Some(dynamo::key(
                conn_pk(&lease.connection_id),
                lease_sk(lease.kind),
            )))
            .condition_expression("#h = :h")
            .expression_attribute_names("#h", "lease_holder")
            .expression_attribute_values(":h", dynamo::s(&lease.holder))
            .send()
            .await
            .map_err(|e| lost(dynamo::sdk(e)))?;
        Ok(())
    }

    async fn pause(&self, lease: &SyncLease) -> Result<(), StoreError> {
        self.save_lease(lease, Utc::now() - chrono::Duration::milliseconds(1), true)
            .await
    }

    async fn unfinished(&self, limit: usize) -> Result<Vec<(String, SyncKind)>, StoreError> {
        let now = ms(Utc::now());
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let res = self
                .client
                .query()
                .table_name(&self.name)
                .index_name(GSI1)
                .key_condition_expression("#p = :p")
                .filter_expression("#u < :now AND (attribute_not_exists(#q) OR #q < :now)")
                .expression_attribute_names("#p", GSI1_PK)
                .expression_attribute_names("#u", "lease_until")
                .expression_attribute_names("#q", QUEUED_UNTIL)
                .expression_attribute_values(":p", dynamo::s(UNFINISHED))
                .expression_attribute_values(":now", dynamo::n(now))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(dynamo::sdk)?;
            for item in res.items.unwrap_or_default() {
                let pk = dynamo::get_s(&item, PK).unwrap_or_default();
                let sk = dynamo::get_s(&item, SK).unwrap_or_default();
                let (Some(conn), Some(kind)) = (
                    pk.strip_prefix("CONN#"),
                    sk.strip_prefix("SYNC#").and_then(kind_of),
                ) else {
                    continue;
                };
                out.push((conn.to_string(), kind));
                if out.len() >= limit {
                    return Ok(out);
                }
            }
            match res.last_evaluated_key {
                Some(k) => start = Some(k),
                None => return Ok(out),
            }
        }
    }

    async fn mark_queued(
        &self,
        connection_id: &str,
        kind: SyncKind,
        holder: Option<&str>,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut req = self
            .client
            .update_item()
            .table_name(&self.name)
            .set_key(Some(dynamo::key(conn_pk(connection_id), lease_sk(kind))))
            .update_expression("SET #q = :q")
            .expression_attribute_names("#q", QUEUED_UNTIL)
            .expression_attribute_values(":q", dynamo::n(ms(until)));
        req = match holder {
            Some(h) => req
                .condition_expression("#h = :h")
                .expression_attribute_names("#h", "lease_holder")
                .expression_attribute_values(":h", dynamo::s(h)),
            // Conditional, so two ticks (or a tick and its retry) never both queue the run.
            None => req
                .condition_expression(
                    "attribute_exists(#c) AND #u < :now AND (attribute_not_exists(#q) OR #q < :now)",
                )
                .expression_attribute_names("#c", "checkpoint")
                .expression_attribute_names("#u", "lease_until")
                .expression_attribute_values(":now", dynamo::n(ms(Utc::now()))),
        };
        match req.send().await {
            Ok(_) => Ok(true),
            Err(e) => match dynamo::sdk(e) {
                StoreError::Conflict(_) => Ok(false),
                other => Err(other),
            },
        }
    }

    async fn clear_queued(
        &self,
        connection_id: &str,
        kind: SyncKind,
        until: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let res = self
            .client
            .update_item()
            .table_name(&self.name)
            .set_key(Some(dynamo::key(conn_pk(connection_id), lease_sk(kind))))
            .update_expression("REMOVE #q")
            .condition_expression("#q = :q")
            .expression_attribute_names("#q", QUEUED_UNTIL)
            .expression_attribute_values(":q", dynamo::n(ms(until)))
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) => match dynamo::sdk(e) {
                StoreError::Conflict(_) => Ok(()),
                other => Err(other),
            },
        }
    }

    async fn put_run(&self, run: &SyncRun) -> Result<(), StoreError> {
        let pk = conn_pk(&run.connection_id);
        let sk = run_sk(run);
        let pointer = self
            .client
            .get_item()
            .table_name(&self.name)
            .set_key(Some(dynamo::key(&pk, run_pointer_sk(&run.run_id))))
            .send()
            .await
            .map_err(dynamo::sdk)?;
        let expires = (run.started_at.unwrap_or_else(Utc::now)
            + chrono::Duration::days(RUN_TTL_DAYS))
        .timestamp();
        let mut item = dynamo::key(&pk, &sk);
        item.insert("doc".into(), dynamo::json(run)?);
        item.insert(EXPIRES_AT.into(), dynamo::n(expires));
        let mut ptr = dynamo::key(&pk, run_pointer_sk(&run.run_id));
        ptr.insert("run_sk".into(), dynamo::s(&sk));
        ptr.insert(EXPIRES_AT.into(), dynamo::n(expires));
        crate::dynamo::batch::put_items(self, vec![item, ptr]).await?;
        // A run first recorded with another start time (e.g. queued earlier) keeps one report.
        if let Some(old) = pointer.item.and_then(|i| dynamo::get_s(&i, "run_sk")) {
            if old != sk {
                crate::dynamo::batch::delete_keys(self, vec![dynamo::key(&pk, old)]).await?;
            }
        }
        Ok(())
    }

    async fn get_run(
        &self,
        connection_id: &str,
        run_id: &str,
    ) -> Result<Option<SyncRun>, StoreError> {
        let pk = conn_pk(connection_id);
        let pointer = self
            .client
            .get_item()
            .table_name(&self.name)
            .set_key(Some(dynamo::key(&pk, run_pointer_sk(run_id))))
            .send()
            .await
            .map_err(dynamo::sdk)?;
        let Some(sk) = pointer.item.and_then(|i| dynamo::get_s(&i, "run_sk")) else {
            return Ok(None);
        };
        let out = self
            .client
            .get_item()
            .table_name(&self.name)
            .set_key(Some(dynamo::key(&pk, sk)))
            .send()
            .await
            .map_err(dynamo::sdk)?;
        match out.item {
            Some(i) => dynamo::get_json(&i, "doc"),
            None => Ok(None),
        }
    }

    async fn list_runs(
        &self,
        connection_id: &str,
        limit: usize,
    ) -> Result<Vec<SyncRun>, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.name)
            .key_condition_expression("#p = :p AND begins_with(#s, :f)")
            .expression_attribute_names("#p", PK)
            .expression_attribute_names("#s", SK)
            .expression_attribute_values(":p", dynamo::s(conn_pk(connection_id)))
            .expression_attribute_values(":f", dynamo::s("RUN#"))
            .scan_index_forward(false)
            .limit(limit.clamp(1, 1000) as i32)
            .send()
            .await
            .map_err(dynamo::sdk)?;
        out.items
            .unwrap_or_default()
            .iter()
            .filter_map(|i| dynamo::get_json::<SyncRun>(i, "doc").transpose())
            .collect()
    }
}
