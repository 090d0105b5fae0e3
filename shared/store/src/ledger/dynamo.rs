//! The order ledger on DynamoDB: one item per (connection, shop order) at
//! `CONN#{connection}` / `ORDER#{shop order id}`, one attribute per field so every step is a
//! single conditional `PutItem`/`UpdateItem` (no read-modify-write). Times are fixed-width
//! UTC strings (`2026-11-28T10:15:00.000000Z`) so conditions can compare them as text.
//! Once the KeyCRM id is known the item carries `gsi1pk = KC#{connection}#{target}#{id}`, the
//! lookup the status webhooks use. While an order is skipped it carries
//! `gsi1pk = SKIPPED#{connection}`, `gsi1sk = created_at` instead (the orders a merchant can
//! push later); a re-push removes it.
//!
//! The index holds an entry's keys only (`dynamo::GSI1_PROJECTED` names nothing an entry has):
//! both index readers take the keys from the index and read the entries themselves, so the
//! writes that follow an order's creation (status changes both ways, status pushes) cost the
//! item's own write units and nothing in the index. Once the order is in KeyCRM the stored
//! event is dropped, which keeps the entry under 1 KB: one write unit per step
//! (`DATA_MODEL.md`, "Ledger entry size").

use crate::dynamo::conn_pk;
use crate::dynamo::{self, batch, DynamoTable, Item, GSI1, GSI1_PK, GSI1_SK, PK, SK};
use crate::ledger::{
    future_horizon, lease_end, lost_claim, lost_push, not_adoptable, Claim, Created, LedgerEntry,
    LedgerState, OrderLedger, PushReservation, Target,
};
use crate::StoreError;
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use chrono::{DateTime, Utc};
use mapping::order_map::MappingReport;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

fn order_sk(shop_order_id: &str) -> String {
    format!("ORDER#{shop_order_id}")
}

fn kc_pk(connection_id: &str, target: Target, keycrm_id: i64) -> String {
    format!("KC#{connection_id}#{}#{keycrm_id}", target.as_str())
}

fn skipped_pk(connection_id: &str) -> String {
    format!("SKIPPED#{connection_id}")
}

fn ts(t: DateTime<Utc>) -> AttributeValue {
    dynamo::s(t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
}

fn get_ts(item: &Item, name: &str) -> Option<DateTime<Utc>> {
    dynamo::get_s(item, name)
        .and_then(|v| DateTime::parse_from_rfc3339(&v).ok())
        .map(|t| t.with_timezone(&Utc))
}

fn state_str(s: LedgerState) -> &'static str {
    match s {
        LedgerState::Pending => "pending",
        LedgerState::Created => "created",
        LedgerState::Failed => "failed",
        LedgerState::Skipped => "skipped",
    }
}

fn parse_state(v: &str) -> Result<LedgerState, StoreError> {
    Ok(match v {
        "pending" => LedgerState::Pending,
        "created" => LedgerState::Created,
        "failed" => LedgerState::Failed,
        "skipped" => LedgerState::Skipped,
        other => return Err(StoreError::Corrupt(format!("unknown ledger state {other}"))),
    })
}

fn parse_target(v: &str) -> Result<Target, StoreError> {
    Ok(match v {
        "order" => Target::Order,
        "card" => Target::Card,
        other => {
            return Err(StoreError::Corrupt(format!(
                "unknown ledger target {other}"
            )))
        }
    })
}

fn to_item(e: &LedgerEntry) -> Result<Item, StoreError> {
    let mut item = dynamo::key(conn_pk(&e.connection_id), order_sk(&e.shop_order_id));
    let mut put = |k: &str, v: AttributeValue| {
        item.insert(k.to_string(), v);
    };
    put("connection_id", dynamo::s(&e.connection_id));
    put("shop_order_id", dynamo::s(&e.shop_order_id));
    put("state", dynamo::s(state_str(e.state)));
    put("target", dynamo::s(e.target.as_str()));
    put("attempts", dynamo::n(e.attempts));
    put("maybe_committed", dynamo::b(e.maybe_committed));
    put("scoped_key", dynamo::b(e.scoped_key));
    // Empty field errors and an empty report are left out (read back as empty): bytes an
    // entry would otherwise carry for nothing.
    if !e.field_errors.is_empty() {
        put("field_errors", dynamo::json(&e.field_errors)?);
    }
    if e.report != MappingReport::default() {
        put("report", dynamo::json(&e.report)?);
    }
    put("created_at", ts(e.created_at));
    put("updated_at", ts(e.updated_at));
    if let Some(id) = e.keycrm_id {
        put("keycrm_id", dynamo::n(id));
        put(GSI1_PK, dynamo::s(kc_pk(&e.connection_id, e.target, id)));
        put(GSI1_SK, dynamo::s(order_sk(&e.shop_order_id)));
    }
    if let Some(h) = &e.claim_holder {
        put("claim_holder", dynamo::s(h));
    }
    if let Some(t) = e.claim_until {
        put("claim_until", ts(t));
    }
    if let Some(t) = e.attempt_started_at {
        put("attempt_started_at", ts(t));
    }
    if let Some(v) = &e.last_error {
        put("last_error", dynamo::s(v));
    }
    if let Some(v) = &e.event_json {
        put("event_json", dynamo::s(v));
    }
    if let Some(v) = &e.order_number {
        put("order_number", dynamo::s(v));
    }
    if let Some(v) = &e.shop_status {
        put("shop_status", dynamo::s(v));
    }
    if let Some(t) = e.shop_status_at {
        put("shop_status_at", ts(t));
    }
    if let Some(v) = e.keycrm_status_id {
        put("keycrm_status_id", dynamo::n(v));
    }
    if let Some(t) = e.keycrm_status_changed_at {
        put("keycrm_status_changed_at", ts(t));
    }
    if let Some(v) = &e.applied_from_keycrm {
        put("applied_from_keycrm", dynamo::s(v));
    }
    if let Some(v) = &e.push_holder {
        put("push_holder", dynamo::s(v));
    }
    if let Some(t) = e.push_until {
        put("push_until", ts(t));
    }
    Ok(item)
}

fn from_item(item: &Item) -> Result<LedgerEntry, StoreError> {
    let now = Utc::now();
    Ok(LedgerEntry {
        connection_id: dynamo::req_s(item, "connection_id")?,
        shop_order_id: dynamo::req_s(item, "shop_order_id")?,
        state: parse_state(&dynamo::req_s(item, "state")?)?,
        target: parse_target(&dynamo::req_s(item, "target")?)?,
        keycrm_id: dynamo::get_n(item, "keycrm_id"),
        claim_holder: dynamo::get_s(item, "claim_holder"),
        claim_until: get_ts(item, "claim_until"),
        attempts: dynamo::get_n(item, "attempts").unwrap_or(0),
        maybe_committed: dynamo::get_b(item, "maybe_committed").unwrap_or(false),
        attempt_started_at: get_ts(item, "attempt_started_at"),
        scoped_key: dynamo::get_b(item, "scoped_key").unwrap_or(false),
        last_error: dynamo::get_s(item, "last_error"),
        field_errors: dynamo::get_json(item, "field_errors")?.unwrap_or_default(),
        report: dynamo::get_json(item, "report")?.unwrap_or_default(),
        event_json: dynamo::get_s(item, "event_json"),
        order_number: dynamo::get_s(item, "order_number"),
        shop_status: dynamo::get_s(item, "shop_status"),
        shop_status_at: get_ts(item, "shop_status_at"),
        keycrm_status_id: dynamo::get_n(item, "keycrm_status_id"),
        keycrm_status_changed_at: get_ts(item, "keycrm_status_changed_at"),
        applied_from_keycrm: dynamo::get_s(item, "applied_from_keycrm"),
        push_holder: dynamo::get_s(item, "push_holder"),
        push_until: get_ts(item, "push_until"),
        created_at: get_ts(item, "created_at").unwrap_or(now),
        updated_at: get_ts(item, "updated_at").unwrap_or(now),
    })
}

/// What DynamoDB bills for an entry as this adapter stores it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoredSize {
    /// The item's bytes (`dynamo::item_bytes`).
    pub item: usize,
    /// Its entry in `gsi1`, when it has one (a KeyCRM id, or skipped): keys only.
    pub index: Option<usize>,
}

/// The size of `e` stored by this adapter: what the fleet bench bills for each step.
pub fn stored_size(e: &LedgerEntry) -> Result<StoredSize, StoreError> {
    let mut item = to_item(e)?;
    if e.state == LedgerState::Skipped && e.keycrm_id.is_none() {
        item.insert(GSI1_PK.into(), dynamo::s(skipped_pk(&e.connection_id)));
        item.insert(GSI1_SK.into(), ts(e.created_at));
    }
    Ok(StoredSize {
        item: dynamo::item_bytes(&item),
        index: dynamo::gsi1_entry_bytes(&item),
    })
}

/// One `UpdateItem`, assembled clause by clause. Every attribute goes through a `#name`
/// placeholder, so DynamoDB's reserved words (`state`, …) never bite.
#[derive(Default)]
struct Update {
    set: Vec<String>,
    remove: Vec<String>,
    condition: Option<String>,
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl Update {
    fn name(&mut self, attr: &str) -> String {
        let placeholder = format!(
            "#{}",
            attr.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
        );
        self.names.insert(placeholder.clone(), attr.to_string());
        placeholder
    }

    fn value(&mut self, v: AttributeValue) -> String {
        let placeholder = format!(":v{}", self.values.len());
        self.values.insert(placeholder.clone(), v);
        placeholder
    }

    fn set(mut self, attr: &str, v: AttributeValue) -> Self {
        let (n, v) = (self.name(attr), self.value(v));
        self.set.push(format!("{n} = {v}"));
        self
    }

    /// `attr = from` (another attribute's value).
    fn copy(mut self, attr: &str, from: &str) -> Self {
        let (n, f) = (self.name(attr), self.name(from));
        self.set.push(format!("{n} = {f}"));
        self
    }

    fn set_if_absent(mut self, attr: &str, v: AttributeValue) -> Self {
        let (n, v) = (self.name(attr), self.value(v));
        self.set.push(format!("{n} = if_not_exists({n}, {v})"));
        self
    }

    fn remove(mut self, attr: &str) -> Self {
        let n = self.name(attr);
        self.remove.push(n);
        self
    }

    /// `attr` set to `v`, or removed when `v` is `None` (an empty value is not stored).
    fn set_or_remove(self, attr: &str, v: Option<AttributeValue>) -> Self {
        match v {
            Some(v) => self.set(attr, v),
            None => self.remove(attr),
        }
    }

    /// `cond` names attributes as `#attr` and values as `{0}`, `{1}` … of `vals`.
    fn when(mut self, cond: &str, attrs: &[&str], vals: Vec<AttributeValue>) -> Self {
        for a in attrs {
            self.name(a);
        }
        let mut text = cond.to_string();
        for (i, v) in vals.into_iter().enumerate() {
            let p = self.value(v);
            text = text.replace(&format!("{{{i}}}"), &p);
        }
        self.condition = Some(text);
        self
    }

    fn expression(&self) -> String {
        let mut parts = Vec::new();
        if !self.set.is_empty() {
            parts.push(format!("SET {}", self.set.join(", ")));
        }
        if !self.remove.is_empty() {
            parts.push(format!("REMOVE {}", self.remove.join(", ")));
        }
        parts.join(" ")
    }

    /// Runs it; `Ok(None)` when the condition did not hold.
    /// Runs it and returns the item as written; `Ok(None)` when the condition did not hold.
    async fn run(
        self,
        table: &DynamoTable,
        connection_id: &str,
        shop_order_id: &str,
    ) -> Result<Option<LedgerEntry>, StoreError> {
        match self
            .send(table, connection_id, shop_order_id, ReturnValue::AllNew)
            .await?
        {
            None => Ok(None),
            Some(item) => item.as_ref().map(from_item).transpose(),
        }
    }

    /// Runs it without reading the item back (smaller answers for the steps on the order
    /// path); `Ok(false)` when the condition did not hold.
    async fn run_quiet(
        self,
        table: &DynamoTable,
        connection_id: &str,
        shop_order_id: &str,
    ) -> Result<bool, StoreError> {
        Ok(self
            .send(table, connection_id, shop_order_id, ReturnValue::None)
            .await?
            .is_some())
    }

    async fn send(
        self,
        table: &DynamoTable,
        connection_id: &str,
        shop_order_id: &str,
        answer: ReturnValue,
    ) -> Result<Option<Option<Item>>, StoreError> {
        let res = table
            .client
            .update_item()
            .table_name(&table.name)
            .set_key(Some(dynamo::key(
                conn_pk(connection_id),
                order_sk(shop_order_id),
            )))
            .update_expression(self.expression())
            .set_condition_expression(self.condition.clone())
            .set_expression_attribute_names(Some(self.names))
            .set_expression_attribute_values((!self.values.is_empty()).then_some(self.values))
            .return_values(answer)
            .send()
            .await;
        match res {
            Ok(out) => Ok(Some(out.attributes)),
            Err(e) => match dynamo::sdk(e) {
                StoreError::Conflict(_) => Ok(None),
                other => Err(other),
            },
        }
    }
}

/// The stored form of field errors: none when there are none.
fn field_errors_value(
    f: &BTreeMap<String, Vec<String>>,
) -> Result<Option<AttributeValue>, StoreError> {
    (!f.is_empty()).then(|| dynamo::json(f)).transpose()
}

/// The stored form of a mapping report: none when it says nothing.
fn report_value(r: &MappingReport) -> Result<Option<AttributeValue>, StoreError> {
    (*r != MappingReport::default())
        .then(|| dynamo::json(r))
        .transpose()
}

/// Only the current holder may finish or give up a claim.
fn as_holder(holder: &str) -> Update {
    Update::default().when(
        "#claim_holder = {0}",
        &["claim_holder"],
        vec![dynamo::s(holder)],
    )
}

impl DynamoTable {
    async fn ledger_item(
        &self,
        connection_id: &str,
        shop_order_id: &str,
    ) -> Result<Option<LedgerEntry>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.name)
            .set_key(Some(dynamo::key(
                conn_pk(connection_id),
                order_sk(shop_order_id),
            )))
            .consistent_read(true)
            .send()
            .await
            .map_err(dynamo::sdk)?;
        out.item.as_ref().map(from_item).transpose()
    }

    async fn holder_step(
        &self,
        connection_id: &str,
        shop_order_id: &str,
        update: Update,
    ) -> Result<(), StoreError> {
        if update.run_quiet(self, connection_id, shop_order_id).await? {
            Ok(())
        } else {
            Err(lost_claim(shop_order_id))
        }
    }
}

#[async_trait]
impl OrderLedger for DynamoTable {
    async fn claim(
        &self,
        connection_id: &str,
        shop_order_id: &str,
        target: Target,
        holder: &str,
        lease: Duration,
        event_json: &str,
    ) -> Result<Claim, StoreError> {
        // A claim can lose two races (the item appears, or a claim expires, between our
        // writes); a few rounds always settle it.
        for _ in 0..4 {
            let now = Utc::now();
            let fresh = LedgerEntry::claimed(
                connection_id,
                shop_order_id,
                target,
                holder,
                lease,
                event_json,
                now,
            );
            let stored = fresh.stored_as_attempted(now);
            let put = self
                .client
                .put_item()
                .table_name(&self.name)
                .set_item(Some(to_item(&stored)?))
                .condition_expression("attribute_not_exists(pk)")
                .send()
                .await;
            match put {
                Ok(_) => return Ok(Claim::Granted(fresh)),
                Err(e) => match dynamo::sdk(e) {
                    StoreError::Conflict(_) => {}
                    other => return Err(other),
                },
            }
            let retake = Update::default()
                .set("claim_holder", dynamo::s(holder))
                .set("claim_until", ts(lease_end(now, lease)))
                .set("target", dynamo::s(target.as_str()))
                .set("updated_at", ts(now))
                .set_if_absent("event_json", dynamo::s(event_json))
                .when(
                    "#state = {0} AND (attribute_not_exists(#claim_until) OR #claim_until < {1})",
                    &["state", "claim_until"],
                    vec![dynamo::s("pending"), ts(now)],
                );
            let mut retake = match &fresh.order_number {
                Some(number) => retake.set_if_absent("order_number", dynamo::s(number)),
                None => retake,
            };
            let n = retake.name("attempts");
            let one = retake.value(dynamo::n(1));
            retake.set.push(format!("{n} = {n} + {one}"));
            if let Some(e) = retake.run(self, connection_id, shop_order_id).await? {
                return Ok(Claim::Granted(e));
            }
            let Some(e) = self.ledger_item(connection_id, shop_order_id).await? else {
                continue;
            };
            match e.state {
                LedgerState::Created => return Ok(Claim::AlreadyCreated(e)),
                LedgerState::Failed | LedgerState::Skipped => return Ok(Claim::Settled(e)),
                LedgerState::Pending if e.claim_is_live(Utc::now()) => return Ok(Claim::Busy(e)),
                LedgerState::Pending => continue,
            }
        }
        Err(StoreError::Conflict(format!(
            "order {shop_order_id} kept changing while it was being claimed"
        )))
    }

    async fn mark_attempt(
        &self,
        connection_id: &str,
        shop_order_id: &str,
        holder: &str,
    ) -> Result<(), StoreError> {
        let now = Utc::now();
        let u = Update::default()
            .set("maybe_committed", dynamo::b(true))
            .set("scoped_key", dynamo::b(true))
            .set("attempt_started_at", ts(now))
            .set("updated_at", ts(now))
            .when(
                "#claim_holder = {0} AND #claim_until > {1}",
                &["claim_holder", "claim_until"],
                vec![dynamo::s(holder), ts(now)],
            );
        self.holder_step(connection_id, shop_order_id, u).await
    }

    async fn mark_created(
        &self,
        connection_id: &str,
        shop_order_id: &str,
        holder: &str,
        keycrm_id: i64,
        report: &MappingReport,
        shop_status: Option<&str>,
        keycrm_status_id: Option<i64>,
    ) -> Result<(), StoreError> {
        // The target is part of the index key; read it from the claim we hold.
        let Some(current) = self.ledger_item(connection_id, shop_order_id).await? else {
            return Err(lost_claim(shop_order_id));
        };
        if current.claim_holder.as_deref() != Some(holder) {
            return Err(lost_claim(shop_order_id));
        }
        let created = Created {
            target: current.target,
            keycrm_id,
            report: report.clone(),
            shop_status: shop_status.map(str::to_string),
            keycrm_status_id,
        };
        self.record_created(connection_id, shop_order_id, holder, &created)
            .await
    }

    async fn record_created(
        &self,
        connection_id: &str,
        shop_order_id: &str,
        holder: &str,
        c: &Created,
    ) -> Result<(), StoreError> {
        let mut u = as_holder(holder)
            .set("state", dynamo::s("created"))
            .set("target", dynamo::s(c.target.as_str()))
            .set("keycrm_id", dynamo::n(c.keycrm_id))
            .set(
                GSI1_PK,
                dynamo::s(kc_pk(connection_id, c.target, c.keycrm_id)),
            )
            .set(GSI1_SK, dynamo::s(order_sk(shop_order_id)))
            .set_or_remove("report", report_value(&c.report)?)
            .set("maybe_committed", dynamo::b(false))
            .set("updated_at", ts(Utc::now()))
            .remove("field_errors")
            .remove("claim_holder")
            .remove("claim_until")
            .remove("last_error")
            // In KeyCRM now: nothing sends the event again (`order_number` stays).
            .remove("event_json");
        if let Some(s) = &c.shop_status {
            u = u.set("shop_status", dynamo::s(s));
        }
        if let Some(id) = c.keycrm_status_id {
            u = u.set("keycrm_status_id", dynamo::n(id));
        }
        self.holder_step(connection_id, shop_order_id, u).await
    }

    async fn mark_failed(
        &self,
        connection_id: &str,
        shop_order_id: &str,
        holder: &str,
        error: &str,
        field_errors: &BTreeMap<String, Vec<String>>,
    ) -> Result<(), StoreError> {
        let u = as_holder(holder)
            .set("state", dynamo::s("failed"))
            .set("last_error", dynamo::s(error))
            .set_or_remove("field_errors", field_errors_value(field_errors)?)
            .set("updated_at", ts(Utc::now()))
            .remove("claim_holder")
            .remove("claim_until");
        self.holder_step(connection_id, shop_order_id, u).await
    }

    async fn mark_skipped(
        &self,
        connection_id: &str,
        shop_order_id: &str,
        holder: &str,
        reason: &str,
    ) -> Result<(), StoreError> {
        let u = as_holder(holder)
            .set("state", dynamo::s("skipped"))
            .set("last_error", dynamo::s(reason))
            .set("updated_at", ts(Utc::now()))
            // Listed for "push skipped orders", oldest first.
            .set(GSI1_PK, dynamo::s(skipped_pk(connection_id)))
            .copy(GSI1_SK, "created_at")
            .remove("claim_holder")
            .remove("claim_until");
        self.holder_step(connection_id, shop_order_id, u).await
    }

    async fn release(
        &self,
        connection_id: &str,
        shop_order_id: &str,
        holder: &str,
        error: &str,
        maybe_committed: bool,
    ) -> Result<(), StoreError> {
        let u = as_holder(holder)
            .set("last_error", dynamo::s(error))
            .set("maybe_committed", dynamo::b(maybe_committed))
            .set("updated_at", ts(Utc::now()))
            .remove("claim_holder")
            .remove("claim_until");
        self.holder_step(connection_id, shop_order_id, u).await
    }

    async fn get(
        &self,
        connection_id: &str,
        shop_order_id: &str,
    ) -> Result<Option<LedgerEntry>, StoreError> {
        self.ledger_item(connection_id, shop_order_id).await
    }

    async fn find_by_keycrm_id(
        &self,
        connection_id: &str,
        target: Target,
        keycrm_id: i64,
    ) -> Result<Option<LedgerEntry>, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.name)
            .index_name(GSI1)
            .key_condition_expression("#p = :p")
            .expression_attribute_names("#p", GSI1_PK)
            .expression_attribute_values(":p", dynamo::s(kc_pk(connection_id, target, keycrm_id)))
            // One, or a few after account switches: the newest push is the current account's.
            .limit(16)
            .send()
            .await
            .map_err(dynamo::sdk)?;
        // The index holds keys only: each entry is read from the table (consistently, so the
        // caller sees its latest status), and kept only if it still carries the id.
        let mut best: Option<LedgerEntry> = None;
        for key in out.items.unwrap_or_default() {
            let Some(order) = dynamo::get_s(&key, SK)
                .as_deref()
                .and_then(|sk| sk.strip_prefix("ORDER#"))
                .map(str::to_string)
            else {
                continue;
            };
            let Some(e) = self.ledger_item(connection_id, &order).await? else {
                continue;
            };
            if e.target == target
                && e.keycrm_id == Some(keycrm_id)
                && best.as_ref().is_none_or(|b| e.pushed_at() > b.pushed_at())
            {
                best = Some(e);
            }
        }
        Ok(best)
    }

    async fn adopt(
        &self,
        connection_id: &str,
        shop_order_id: &str,
        target: Target,
        keycrm_id: i64,
    ) -> Result<LedgerEntry, StoreError> {
        let now = Utc::now();
        let u = Update::default()
            .set("state", dynamo::s("created"))
            .set("keycrm_id", dynamo::n(keycrm_id))
            .set("target", dynamo::s(target.as_str()))
            .set(GSI1_PK, dynamo::s(kc_pk(connection_id, target, keycrm_id)))
            .set(GSI1_SK, dynamo::s(order_sk(shop_order_id)))
            .set("maybe_committed", dynamo::b(false))
            .set("updated_at", ts(now))
            .remove("field_errors")
            .remove("claim_holder")
            .remove("claim_until")
            .remove("last_error")
            .remove("event_json")
            .when(
                "attribute_exists(pk) AND attribute_not_exists(#keycrm_id) AND \
                 (#state = {0} OR (#state = {1} AND \
                  (attribute_not_exists(#claim_until) OR #claim_until < {2})))",
                &["keycrm_id", "state", "claim_until"],
                vec![dynamo::s("failed"), dynamo::s("pending"), ts(now)],
            );
        if let Some(e) = u.run(self, connection_id, shop_order_id).await? {
            return Ok(e);
        }
        match self.ledger_item(connection_id, shop_order_id).await? {
            None => Err(StoreError::NotFound(format!("order {shop_order_id}"))),
            Some(e) if e.keycrm_id == Some(keycrm_id) && e.target == target => Ok(e),
            Some(e) => Err(not_adoptable(&e)),
        }
    }

    async fn record_keycrm_status(
        &self,
        connection_id: &str,
        shop_order_id: &str,
        keycrm_status_id: i64,
        changed_at: DateTime<Utc>,
        shop_status: &str,
    ) -> Result<bool, StoreError> {
        let u = Update::default()
            .set("keycrm_status_id", dynamo::n(keycrm_status_id))
            .set("keycrm_status_changed_at", ts(changed_at))
            .set("applied_from_keycrm", dynamo::s(shop_status))
            .set("shop_status", dynamo::s(shop_status))
            .set("updated_at", ts(Utc::now()))
            // A stored time beyond the horizon is no real change time: it never blocks.
            .when(
                "attribute_exists(pk) AND (attribute_not_exists(#keycrm_status_changed_at) \
                 OR #keycrm_status_changed_at < {0} OR #keycrm_status_changed_at > {1})",
                &["keycrm_status_changed_at"],
                vec![ts(changed_at), ts(future_horizon(Utc::now()))],
            );
        if u.run_quiet(self, connection_id, shop_order_id).await? {
            return Ok(true);
        }
        match self.ledger_item(connection_id, shop_order_id).await? {
            Some(_) => Ok(false),
            None => Err(StoreError::NotFound(format!("order {shop_order_id}"))),
        }
    }

    async fn record_shop_status(
        &self,
        connection_id: &str,
        shop_order_id: &str,
        shop_status: &str,
        keycrm_status_id: Option<i64>,
        occurred_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut u = Update::default()
            .set("shop_status", dynamo::s(shop_status))
            .set("shop_status_at", ts(occurred_at))
            .set("updated_at", ts(Utc::now()))
            .remove("applied_from_keycrm")
            .when(
                "attribute_exists(pk) AND (attribute_not_exists(#shop_status_at) \
                 OR #shop_status_at <= {0})",
                &["shop_status_at"],
                vec![ts(occurred_at)],
            );
        if let Some(id) = keycrm_status_id {
            u = u.set("keycrm_status_id", dynamo::n(id));
        }
        if u.run_quiet(self, connection_id, shop_order_id).await? {
            return Ok(());
        }
        // A newer shop status was recorded meanwhile: it stands.
        match self.ledger_item(connection_id, shop_order_id).await? {
            Some(_) => Ok(()),
            None => Err(StoreError::NotFound(format!("order {shop_order_id}"))),
        }
    }

    async fn reserve_shop_push(
        &self,
        connection_id: &str,
        shop_order_id: &str,
        occurred_at: DateTime<Utc>,
        holder: &str,
        lease: Duration,
    ) -> Result<PushReservation, StoreError> {
        let now = Utc::now();
        let u = Update::default()
            .set("push_holder", dynamo::s(holder))
            .set("push_until", ts(lease_end(now, lease)))
            .set("updated_at", ts(now))
            .when(
                "attribute_exists(pk) AND #state = {0} \
                 AND (attribute_not_exists(#shop_status_at) OR #shop_status_at < {1}) \
                 AND (attribute_not_exists(#keycrm_status_changed_at) \
                      OR #keycrm_status_changed_at <= {1} OR #keycrm_status_changed_at > {2}) \
                 AND (attribute_not_exists(#push_until) OR #push_until < {3} \
                      OR #push_holder = {4})",
                &[
                    "state",
                    "shop_status_at",
                    "keycrm_status_changed_at",
                    "push_until",
                    "push_holder",
                ],
                vec![
                    dynamo::s("created"),
                    ts(occurred_at),
                    ts(future_horizon(now)),
                    ts(now),
                    dynamo::s(holder),
                ],
            );
        if u.run_quiet(self, connection_id, shop_order_id).await? {
            return Ok(PushReservation::Granted);
        }
        let Some(e) = self.ledger_item(connection_id, shop_order_id).await? else {
            return Err(StoreError::NotFound(format!("order {shop_order_id}")));
        };
        let horizon = future_horizon(Utc::now());
        let stale = e.state != LedgerState::Created
            || e.shop_status_at.is_some_and(|t| t >= occurred_at)
            || e.keycrm_status_changed_at
                .is_some_and(|t| t > occurred_at && t <= horizon);
        Ok(if stale {
            PushReservation::Stale(e)
        } else {
            PushReservation::Busy(e)
        })
    }

    async fn finish_shop_push(
        &self,
        connection_id: &str,
        shop_order_id: &str,
        holder: &str,
        shop_status: &str,
        keycrm_status_id: Option<i64>,
        occurred_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut u = Update::default()
            .set("shop_status", dynamo::s(shop_status))
            .set("shop_status_at", ts(occurred_at))
            .set("updated_at", ts(Utc::now()))
            .remove("applied_from_keycrm")
            .remove("push_holder")
            .remove("push_until")
            .when(
                "#push_holder = {0}",
                &["push_holder"],
                vec![dynamo::s(holder)],
            );
        if let Some(id) = keycrm_status_id {
            u = u.set("keycrm_status_id", dynamo::n(id));
        }
        if u.run_quiet(self, connection_id, shop_order_id).await? {
            Ok(())
        } else {
            Err(lost_push(shop_order_id))
        }
    }

    async fn release_shop_push(
        &self,
        connection_id: &str,
        shop_order_id: &str,
        holder: &str,
    ) -> Result<(), StoreError> {
        let u = Update::default()
            .set("updated_at", ts(Utc::now()))
            .remove("push_holder")
            .remove("push_until")
            .when(
                "#push_holder = {0}",
                &["push_holder"],
                vec![dynamo::s(holder)],
            );
        if u.run_quiet(self, connection_id, shop_order_id).await? {
            Ok(())
        } else {
            Err(lost_push(shop_order_id))
        }
    }

    async fn reset_for_repush(
        &self,
        connection_id: &str,
        shop_order_id: &str,
    ) -> Result<LedgerEntry, StoreError> {
        let now = Utc::now();
        // None of the states a reset accepts has a KeyCRM id, so the index attributes can only
        // be the skipped-orders listing, which the order leaves now.
        let u = Update::default()
            .set("state", dynamo::s("pending"))
            .set("updated_at", ts(now))
            .remove("claim_holder")
            .remove("claim_until")
            .remove(GSI1_PK)
            .remove(GSI1_SK)
            .when(
                "attribute_exists(pk) AND (#state IN ({0}, {1}) OR (#state = {2} AND \
                 (attribute_not_exists(#claim_until) OR #claim_until < {3})))",
                &["state", "claim_until"],
                vec![
                    dynamo::s("failed"),
                    dynamo::s("skipped"),
                    dynamo::s("pending"),
                    ts(now),
                ],
            );
        if let Some(e) = u.run(self, connection_id, shop_order_id).await? {
            return Ok(e);
        }
        match self.ledger_item(connection_id, shop_order_id).await? {
            None => Err(StoreError::NotFound(format!("order {shop_order_id}"))),
            Some(e) if e.state == LedgerState::Created => Err(StoreError::Conflict(format!(
                "order {shop_order_id} is already in KeyCRM"
            ))),
            Some(_) => Err(StoreError::Conflict(format!(
                "order {shop_order_id} is being pushed right now"
            ))),
        }
    }

    async fn unskip(
        &self,
        connection_id: &str,
        shop_order_id: &str,
    ) -> Result<LedgerEntry, StoreError> {
        let u = Update::default()
            .set("state", dynamo::s("pending"))
            .set("updated_at", ts(Utc::now()))
            .remove("claim_holder")
            .remove("claim_until")
            .remove(GSI1_PK)
            .remove(GSI1_SK)
            .when(
                "attribute_exists(pk) AND #state = {0}",
                &["state"],
                vec![dynamo::s("skipped")],
            );
        if let Some(e) = u.run(self, connection_id, shop_order_id).await? {
            return Ok(e);
        }
        match self.ledger_item(connection_id, shop_order_id).await? {
            None => Err(StoreError::NotFound(format!("order {shop_order_id}"))),
            Some(_) => Err(StoreError::Conflict(format!(
                "order {shop_order_id} is not skipped"
            ))),
        }
    }

    async fn skipped(
        &self,
        connection_id: &str,
        since: Option<DateTime<Utc>>,
        limit: usize,
    ) -> Result<Vec<LedgerEntry>, StoreError> {
        let mut q = self
            .client
            .query()
            .table_name(&self.name)
            .index_name(GSI1)
            .expression_attribute_names("#p", GSI1_PK)
            .expression_attribute_values(":p", dynamo::s(skipped_pk(connection_id)))
            .limit(limit.clamp(1, 1000) as i32);
        q = match since {
            Some(t) => q
                .key_condition_expression("#p = :p AND #s >= :since")
                .expression_attribute_names("#s", GSI1_SK)
                .expression_attribute_values(":since", ts(t)),
            None => q.key_condition_expression("#p = :p"),
        };
        let out = q.send().await.map_err(dynamo::sdk)?;
        // The index holds keys only: the entries are read from the table in one batch and
        // listed in the index's order (oldest first).
        let keys: Vec<Item> = out
            .items
            .unwrap_or_default()
            .iter()
            .filter_map(|i| Some(dynamo::key(dynamo::get_s(i, PK)?, dynamo::get_s(i, SK)?)))
            .collect();
        let order: HashMap<String, usize> = keys
            .iter()
            .enumerate()
            .filter_map(|(n, k)| Some((dynamo::get_s(k, SK)?, n)))
            .collect();
        let mut found = batch::get_items(self, keys)
            .await?
            .iter()
            .map(|item| {
                let at = dynamo::get_s(item, SK)
                    .and_then(|sk| order.get(&sk).copied())
                    .unwrap_or(usize::MAX);
                from_item(item).map(|e| (at, e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        found.sort_by_key(|(at, _)| *at);
        // The index is eventually consistent: an entry reset a moment ago may still show.
        Ok(found
            .into_iter()
            .map(|(_, e)| e)
            .filter(|e| e.state == LedgerState::Skipped)
            .collect())
    }

    async fn sample_created(
        &self,
        connection_id: &str,
        limit: usize,
    ) -> Result<Vec<LedgerEntry>, StoreError> {
        let mut found = Vec::new();
        let mut start: Option<Item> = None;
        // A few pages at most: a sample, not a census.
        for _ in 0..4 {
            let out = self
                .client
                .query()
                .table_name(&self.name)
                .key_condition_expression("pk = :p AND begins_with(sk, :o)")
                .filter_expression("#state = :created")
                .expression_attribute_names("#state", "state")
                .expression_attribute_values(":p", dynamo::s(conn_pk(connection_id)))
                .expression_attribute_values(":o", dynamo::s("ORDER#"))
                .expression_attribute_values(":created", dynamo::s("created"))
                .scan_index_forward(false)
                .limit(200)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(dynamo::sdk)?;
            for item in out.items.unwrap_or_default() {
                found.push(from_item(&item)?);
            }
            match out.last_evaluated_key {
                Some(k) if found.len() < limit => start = Some(k),
                _ => break,
            }
        }
        found.sort_by_key(|e| std::cmp::Reverse(e.pushed_at()));
        found.truncate(limit);
        Ok(found)
    }
}
