//! The order ledger (one item per shop order; its gsi1 entry, keys only, once it has a KeyCRM
//! id or while it is skipped), counted. Sizes are those of the items the DynamoDB adapter
//! writes (`store::ledger::stored_size` of the entry after each step), and every request it
//! sends is billed: the conditional write (also when its condition fails, at the larger of
//! the item before and after), the index entry it adds or removes, and the consistent read
//! that answers a refused step.

use super::*;
use store::ledger::{stored_size, StoredSize};

pub struct Ledger {
    pub inner: Arc<store::MemoryLedger>,
    pub ctx: Ctx,
    /// (connection, order) → what DynamoDB holds of the entry now.
    items: Mutex<HashMap<(String, String), StoredSize>>,
    /// (connection, KeyCRM id) → the orders ever given that id: what gsi1 answers in one
    /// Query. The in-memory ledger scans every entry of every shop for it, which at 2,000
    /// shops took most of the bench's CPU at the evening peak (each status webhook asks).
    by_keycrm: Mutex<HashMap<(String, i64), Vec<String>>>,
}

/// A Query or GetItem that finds nothing still costs its minimum.
const NOTHING: usize = 1;

impl Ledger {
    pub fn new(inner: Arc<store::MemoryLedger>, ctx: Ctx) -> Self {
        Ledger {
            inner,
            ctx,
            items: Mutex::new(HashMap::new()),
            by_keycrm: Mutex::new(HashMap::new()),
        }
    }
    fn index_keycrm_id(&self, conn: &str, order: &str, keycrm_id: i64) {
        if let Ok(mut m) = self.by_keycrm.lock() {
            let orders = m.entry((conn.to_string(), keycrm_id)).or_default();
            if !orders.iter().any(|o| o == order) {
                orders.push(order.to_string());
            }
        }
    }
    /// The entries `find_by_keycrm_id` reads after its index Query (those the index lists
    /// under the id), and the one it returns (the latest pushed of those still carrying it);
    /// `None` when the bench's index knows no order with that id.
    async fn find_indexed(
        &self,
        c: &str,
        target: Target,
        keycrm_id: i64,
    ) -> Result<Option<(Vec<String>, Option<LedgerEntry>)>, StoreError> {
        let orders = self
            .by_keycrm
            .lock()
            .ok()
            .and_then(|m| m.get(&(c.to_string(), keycrm_id)).cloned());
        let Some(orders) = orders else {
            return Ok(None);
        };
        let mut best: Option<LedgerEntry> = None;
        let mut listed = Vec::new();
        for o in orders {
            if let Some(e) = self.inner.get(c, &o).await? {
                if e.target == target && e.keycrm_id == Some(keycrm_id) {
                    listed.push(o);
                    if best.as_ref().is_none_or(|b| e.pushed_at() > b.pushed_at()) {
                        best = Some(e);
                    }
                }
            }
        }
        Ok(Some((listed, best)))
    }
    /// What DynamoDB holds of the entry, as last billed (`None`: no item).
    fn held(&self, conn: &str, order: &str) -> Option<StoredSize> {
        self.items
            .lock()
            .ok()
            .and_then(|m| m.get(&(conn.to_string(), order.to_string())).copied())
    }
    /// The entry as the in-memory ledger holds it after a step, sized as DynamoDB stores it.
    async fn now_held(&self, conn: &str, order: &str) -> Option<StoredSize> {
        let size = match self.inner.get(conn, order).await {
            Ok(Some(e)) => stored_size(&e).ok(),
            _ => None,
        };
        if let (Some(s), Ok(mut m)) = (size, self.items.lock()) {
            m.insert((conn.to_string(), order.to_string()), s);
        }
        size
    }
    fn bill(&self, op: &'static str, conn: &str, rru: f64, wru: f64) {
        self.ctx
            .meter
            .dynamo(self.ctx.index.conn(conn), op, rru, wru);
    }
    /// A conditional `UpdateItem` of the entry that left it as `after` (as it was, when its
    /// condition failed): the larger item's units, and the index entry it added or removed.
    fn bill_update(
        &self,
        op: &'static str,
        conn: &str,
        before: Option<StoredSize>,
        after: Option<StoredSize>,
    ) {
        let item = before
            .map_or(NOTHING, |b| b.item)
            .max(after.map_or(NOTHING, |a| a.item));
        let index = match (before.and_then(|b| b.index), after.and_then(|a| a.index)) {
            (None, Some(added)) => write_units(added),
            (Some(removed), None) => write_units(removed),
            // An entry's index keys never change while it is indexed, and nothing else of
            // it is projected: updates leave the index alone.
            _ => 0.0,
        };
        self.bill(op, conn, 0.0, write_units(item) + index);
    }
    /// A consistent `GetItem` of the entry (the read that answers a refused step).
    fn bill_read(&self, op: &'static str, conn: &str, held: Option<StoredSize>) {
        let bytes = held.map_or(NOTHING, |h| h.item);
        self.bill(op, conn, read_units(bytes, true), 0.0);
    }
    /// A step that is one conditional `UpdateItem`, and `then_read` (the consistent read
    /// that answers it when it was refused).
    async fn step(&self, op: &'static str, c: &str, o: &str, then_read: Option<&'static str>) {
        let before = self.held(c, o);
        let after = self.now_held(c, o).await.or(before);
        self.bill_update(op, c, before, after);
        if let Some(read) = then_read {
            self.bill_read(read, c, after);
        }
    }
}

#[async_trait]
impl OrderLedger for Ledger {
    async fn claim(
        &self,
        connection_id: &str,
        shop_order_id: &str,
        target: Target,
        holder: &str,
        lease: Duration,
        event_json: &str,
    ) -> Result<Claim, StoreError> {
        let before = self.held(connection_id, shop_order_id);
        let out = self
            .inner
            .claim(
                connection_id,
                shop_order_id,
                target,
                holder,
                lease,
                event_json,
            )
            .await?;
        let after = self.now_held(connection_id, shop_order_id).await;
        let Some(existing) = before else {
            // The conditional PutItem of a new entry.
            let bytes = after.map_or(NOTHING, |a| a.item);
            self.bill("ledger.claim (new)", connection_id, 0.0, write_units(bytes));
            return Ok(out);
        };
        // The PutItem is refused (billed at the larger of the item and the one it would
        // have put), then the claim is re-taken with a conditional UpdateItem ...
        let would_put = stored_size(&LedgerEntry::claimed(
            connection_id,
            shop_order_id,
            target,
            holder,
            lease,
            event_json,
            Utc::now(),
        ))
        .map_or(NOTHING, |s| s.item);
        self.bill(
            "ledger.claim (put refused)",
            connection_id,
            0.0,
            write_units(existing.item.max(would_put)),
        );
        match &out {
            Claim::Granted(_) => {
                self.bill_update("ledger.claim (retake)", connection_id, before, after)
            }
            _ => {
                // ... and when that is refused too, the entry is read to answer.
                self.bill_update("ledger.claim (taken)", connection_id, before, after);
                self.bill_read("ledger.claim (read)", connection_id, after);
            }
        }
        Ok(out)
    }
    async fn mark_attempt(&self, c: &str, o: &str, holder: &str) -> Result<(), StoreError> {
        let out = self.inner.mark_attempt(c, o, holder).await;
        self.step("ledger.mark_attempt", c, o, None).await;
        out
    }
    async fn mark_created(
        &self,
        c: &str,
        o: &str,
        holder: &str,
        keycrm_id: i64,
        report: &MappingReport,
        shop_status: Option<&str>,
        keycrm_status_id: Option<i64>,
    ) -> Result<(), StoreError> {
        // Reads the item for its target first, then writes as record_created.
        self.bill_read("ledger.mark_created (read)", c, self.held(c, o));
        let out = self
            .inner
            .mark_created(
                c,
                o,
                holder,
                keycrm_id,
                report,
                shop_status,
                keycrm_status_id,
            )
            .await;
        if out.is_ok() {
            self.index_keycrm_id(c, o, keycrm_id);
        }
        self.step("ledger.mark_created", c, o, None).await;
        out
    }
    async fn record_created(
        &self,
        c: &str,
        o: &str,
        holder: &str,
        created: &Created,
    ) -> Result<(), StoreError> {
        let out = self.inner.record_created(c, o, holder, created).await;
        if out.is_ok() {
            self.index_keycrm_id(c, o, created.keycrm_id);
        }
        self.step("ledger.record_created", c, o, None).await;
        out
    }
    async fn mark_failed(
        &self,
        c: &str,
        o: &str,
        holder: &str,
        error: &str,
        field_errors: &BTreeMap<String, Vec<String>>,
    ) -> Result<(), StoreError> {
        let out = self
            .inner
            .mark_failed(c, o, holder, error, field_errors)
            .await;
        self.step("ledger.mark_failed", c, o, None).await;
        out
    }
    async fn mark_skipped(
        &self,
        c: &str,
        o: &str,
        holder: &str,
        reason: &str,
    ) -> Result<(), StoreError> {
        let out = self.inner.mark_skipped(c, o, holder, reason).await;
        self.step("ledger.mark_skipped", c, o, None).await;
        out
    }
    async fn release(
        &self,
        c: &str,
        o: &str,
        holder: &str,
        error: &str,
        maybe_committed: bool,
    ) -> Result<(), StoreError> {
        let out = self
            .inner
            .release(c, o, holder, error, maybe_committed)
            .await;
        self.step("ledger.release", c, o, None).await;
        out
    }
    async fn get(&self, c: &str, o: &str) -> Result<Option<LedgerEntry>, StoreError> {
        self.bill_read("ledger.get", c, self.held(c, o));
        self.inner.get(c, o).await
    }
    async fn find_by_keycrm_id(
        &self,
        c: &str,
        target: Target,
        keycrm_id: i64,
    ) -> Result<Option<LedgerEntry>, StoreError> {
        // Ids set outside the ledger's own writes (none in the bench) fall back to the scan.
        let (listed, got) = match self.find_indexed(c, target, keycrm_id).await? {
            Some(found) => found,
            None => {
                let got = self.inner.find_by_keycrm_id(c, target, keycrm_id).await?;
                (got.iter().map(|e| e.shop_order_id.clone()).collect(), got)
            }
        };
        // One Query of gsi1 (eventually consistent, keys only), then a consistent GetItem
        // of each entry it lists.
        let held: Vec<StoredSize> = listed.iter().filter_map(|o| self.held(c, o)).collect();
        let index_bytes: usize = held.iter().filter_map(|h| h.index).sum();
        self.bill(
            "ledger.find_by_keycrm_id (gsi1)",
            c,
            read_units(index_bytes.max(NOTHING), false),
            0.0,
        );
        for h in held {
            self.bill_read("ledger.find_by_keycrm_id (get)", c, Some(h));
        }
        Ok(got)
    }
    async fn adopt(
        &self,
        c: &str,
        o: &str,
        target: Target,
        keycrm_id: i64,
    ) -> Result<LedgerEntry, StoreError> {
        let before = self.held(c, o);
        let out = self.inner.adopt(c, o, target, keycrm_id).await;
        // The write is refused unless it added the index entry; a refusal is read back.
        let after = self.now_held(c, o).await.or(before);
        let adopted = out.is_ok()
            && before.is_some_and(|b| b.index.is_none())
            && after.is_some_and(|a| a.index.is_some());
        if out.is_ok() {
            self.index_keycrm_id(c, o, keycrm_id);
        }
        self.bill_update("ledger.adopt", c, before, after);
        if !adopted {
            self.bill_read("ledger.adopt (read)", c, after);
        }
        out
    }
    async fn record_keycrm_status(
        &self,
        c: &str,
        o: &str,
        keycrm_status_id: i64,
        changed_at: DateTime<Utc>,
        shop_status: &str,
    ) -> Result<bool, StoreError> {
        let out = self
            .inner
            .record_keycrm_status(c, o, keycrm_status_id, changed_at, shop_status)
            .await;
        // A stale or duplicate change is refused, then read to tell it from a missing order.
        let refused = !matches!(out, Ok(true));
        self.step(
            "ledger.record_keycrm_status",
            c,
            o,
            refused.then_some("ledger.record_keycrm_status (read)"),
        )
        .await;
        out
    }
    async fn record_shop_status(
        &self,
        c: &str,
        o: &str,
        shop_status: &str,
        keycrm_status_id: Option<i64>,
        occurred_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        // Refused (and read back) when a newer shop status is recorded already.
        let newer = matches!(
            self.inner.get(c, o).await,
            Ok(Some(e)) if e.shop_status_at.is_some_and(|t| t > occurred_at)
        );
        let out = self
            .inner
            .record_shop_status(c, o, shop_status, keycrm_status_id, occurred_at)
            .await;
        let refused = newer || out.is_err();
        self.step(
            "ledger.record_shop_status",
            c,
            o,
            refused.then_some("ledger.record_shop_status (read)"),
        )
        .await;
        out
    }
    async fn reserve_shop_push(
        &self,
        c: &str,
        o: &str,
        occurred_at: DateTime<Utc>,
        holder: &str,
        lease: Duration,
    ) -> Result<PushReservation, StoreError> {
        let out = self
            .inner
            .reserve_shop_push(c, o, occurred_at, holder, lease)
            .await;
        let refused = !matches!(out, Ok(PushReservation::Granted));
        self.step(
            "ledger.reserve_shop_push",
            c,
            o,
            refused.then_some("ledger.reserve_shop_push (read)"),
        )
        .await;
        out
    }
    async fn finish_shop_push(
        &self,
        c: &str,
        o: &str,
        holder: &str,
        shop_status: &str,
        keycrm_status_id: Option<i64>,
        occurred_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let out = self
            .inner
            .finish_shop_push(c, o, holder, shop_status, keycrm_status_id, occurred_at)
            .await;
        self.step("ledger.finish_shop_push", c, o, None).await;
        out
    }
    async fn release_shop_push(&self, c: &str, o: &str, holder: &str) -> Result<(), StoreError> {
        let out = self.inner.release_shop_push(c, o, holder).await;
        self.step("ledger.release_shop_push", c, o, None).await;
        out
    }
    async fn reset_for_repush(&self, c: &str, o: &str) -> Result<LedgerEntry, StoreError> {
        let out = self.inner.reset_for_repush(c, o).await;
        let refused = out.is_err();
        self.step(
            "ledger.reset_for_repush",
            c,
            o,
            refused.then_some("ledger.reset_for_repush (read)"),
        )
        .await;
        out
    }
    async fn unskip(&self, c: &str, o: &str) -> Result<LedgerEntry, StoreError> {
        let out = self.inner.unskip(c, o).await;
        let refused = out.is_err();
        self.step(
            "ledger.unskip",
            c,
            o,
            refused.then_some("ledger.unskip (read)"),
        )
        .await;
        out
    }
    async fn skipped(
        &self,
        c: &str,
        since: Option<DateTime<Utc>>,
        limit: usize,
    ) -> Result<Vec<LedgerEntry>, StoreError> {
        let out = self.inner.skipped(c, since, limit).await?;
        // One Query of gsi1 (keys only), then one BatchGetItem of the entries it lists.
        let held: Vec<StoredSize> = out
            .iter()
            .filter_map(|e| self.held(c, &e.shop_order_id))
            .collect();
        let index_bytes: usize = held.iter().filter_map(|h| h.index).sum();
        let gets: f64 = held.iter().map(|h| read_units(h.item, false)).sum();
        self.bill(
            "ledger.skipped (gsi1)",
            c,
            read_units(index_bytes.max(NOTHING), false) + gets,
            0.0,
        );
        Ok(out)
    }
    async fn sample_created(&self, c: &str, limit: usize) -> Result<Vec<LedgerEntry>, StoreError> {
        let out = self.inner.sample_created(c, limit).await?;
        let bytes: usize = out
            .iter()
            .filter_map(|e| self.held(c, &e.shop_order_id))
            .map(|h| h.item)
            .sum();
        self.bill(
            "ledger.sample_created",
            c,
            read_units(bytes.max(NOTHING), false),
            0.0,
        );
        Ok(out)
    }
}
