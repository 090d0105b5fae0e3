//! The order ledger (one item per shop order, copied into gsi1 once it has a KeyCRM id), counted.

use super::*;

pub struct Ledger {
    pub inner: Arc<store::MemoryLedger>,
    pub ctx: Ctx,
    /// (connection, order) → (item bytes, in gsi1).
    items: Mutex<HashMap<(String, String), (usize, bool)>>,
    /// (connection, KeyCRM id) → the orders ever given that id: what gsi1 answers in one
    /// Query. The in-memory ledger scans every entry of every shop for it, which at 2,000
    /// shops took most of the bench's CPU at the evening peak (each status webhook asks).
    by_keycrm: Mutex<HashMap<(String, i64), Vec<String>>>,
}

const LEDGER_ATTRS: usize = 520;

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
    /// The entry `find_by_keycrm_id` returns (the latest pushed of those carrying the id),
    /// from the index; `None` when the index knows no order with that id.
    async fn find_indexed(
        &self,
        c: &str,
        target: Target,
        keycrm_id: i64,
    ) -> Result<Option<Option<LedgerEntry>>, StoreError> {
        let orders = self
            .by_keycrm
            .lock()
            .ok()
            .and_then(|m| m.get(&(c.to_string(), keycrm_id)).cloned());
        let Some(orders) = orders else {
            return Ok(None);
        };
        let mut best: Option<LedgerEntry> = None;
        for o in orders {
            if let Some(e) = self.inner.get(c, &o).await? {
                if e.target == target
                    && e.keycrm_id == Some(keycrm_id)
                    && best.as_ref().is_none_or(|b| e.pushed_at() > b.pushed_at())
                {
                    best = Some(e);
                }
            }
        }
        Ok(Some(best))
    }
    fn item(&self, conn: &str, order: &str) -> (usize, bool) {
        self.items
            .lock()
            .ok()
            .and_then(|m| m.get(&(conn.to_string(), order.to_string())).copied())
            .unwrap_or((LEDGER_ATTRS + 1200, false))
    }
    fn set(&self, conn: &str, order: &str, size: usize, gsi: bool) {
        if let Ok(mut m) = self.items.lock() {
            m.insert((conn.to_string(), order.to_string()), (size, gsi));
        }
    }
    /// An UpdateItem of the entry (and of its copy in gsi1, once it is there).
    fn update(&self, op: &'static str, conn: &str, order: &str, gsi_after: Option<bool>) {
        let (size, gsi) = self.item(conn, order);
        let gsi_now = gsi_after.unwrap_or(gsi);
        let w = write_units(size) * if gsi || gsi_now { 2.0 } else { 1.0 };
        self.ctx.meter.dynamo(self.ctx.index.conn(conn), op, 0.0, w);
        if gsi_after.is_some() {
            self.set(conn, order, size, gsi_now);
        }
    }
    fn read(&self, op: &'static str, conn: &str, order: &str, consistent: bool) {
        let (size, _) = self.item(conn, order);
        self.ctx.meter.dynamo(
            self.ctx.index.conn(conn),
            op,
            read_units(size, consistent),
            0.0,
        );
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
        let size = LEDGER_ATTRS + event_json.len();
        let known = self
            .items
            .lock()
            .map(|m| m.contains_key(&(connection_id.to_string(), shop_order_id.to_string())))
            .unwrap_or(false);
        if !known {
            self.set(connection_id, shop_order_id, size, false);
        }
        match &out {
            Claim::Granted(_) if !known => self.ctx.meter.dynamo(
                self.ctx.index.conn(connection_id),
                "ledger.claim (new)",
                0.0,
                write_units(size),
            ),
            Claim::Granted(_) => {
                self.update("ledger.claim (retake)", connection_id, shop_order_id, None)
            }
            _ => {
                // The conditional put fails, then the entry is read (consistent) to answer.
                self.update("ledger.claim (taken)", connection_id, shop_order_id, None);
                self.read("ledger.claim (read)", connection_id, shop_order_id, true);
            }
        }
        Ok(out)
    }
    async fn mark_attempt(&self, c: &str, o: &str, holder: &str) -> Result<(), StoreError> {
        self.update("ledger.mark_attempt", c, o, None);
        self.inner.mark_attempt(c, o, holder).await
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
        self.read("ledger.mark_created (read)", c, o, true);
        self.update("ledger.mark_created", c, o, Some(true));
        self.index_keycrm_id(c, o, keycrm_id);
        self.inner
            .mark_created(
                c,
                o,
                holder,
                keycrm_id,
                report,
                shop_status,
                keycrm_status_id,
            )
            .await
    }
    async fn record_created(
        &self,
        c: &str,
        o: &str,
        holder: &str,
        created: &Created,
    ) -> Result<(), StoreError> {
        self.update("ledger.record_created", c, o, Some(true));
        self.index_keycrm_id(c, o, created.keycrm_id);
        self.inner.record_created(c, o, holder, created).await
    }
    async fn mark_failed(
        &self,
        c: &str,
        o: &str,
        holder: &str,
        error: &str,
        field_errors: &BTreeMap<String, Vec<String>>,
    ) -> Result<(), StoreError> {
        self.update("ledger.mark_failed", c, o, None);
        self.inner
            .mark_failed(c, o, holder, error, field_errors)
            .await
    }
    async fn mark_skipped(
        &self,
        c: &str,
        o: &str,
        holder: &str,
        reason: &str,
    ) -> Result<(), StoreError> {
        self.update("ledger.mark_skipped", c, o, Some(true));
        self.inner.mark_skipped(c, o, holder, reason).await
    }
    async fn release(
        &self,
        c: &str,
        o: &str,
        holder: &str,
        error: &str,
        maybe_committed: bool,
    ) -> Result<(), StoreError> {
        self.update("ledger.release", c, o, None);
        self.inner
            .release(c, o, holder, error, maybe_committed)
            .await
    }
    async fn get(&self, c: &str, o: &str) -> Result<Option<LedgerEntry>, StoreError> {
        self.read("ledger.get", c, o, true);
        self.inner.get(c, o).await
    }
    async fn find_by_keycrm_id(
        &self,
        c: &str,
        target: Target,
        keycrm_id: i64,
    ) -> Result<Option<LedgerEntry>, StoreError> {
        // Ids set outside the ledger's own writes (none in the bench) fall back to the scan.
        let got = match self.find_indexed(c, target, keycrm_id).await? {
            Some(found) => found,
            None => self.inner.find_by_keycrm_id(c, target, keycrm_id).await?,
        };
        let r = match &got {
            Some(e) => read_units(self.item(c, &e.shop_order_id).0, false),
            None => 0.5,
        };
        self.ctx.meter.dynamo(
            self.ctx.index.conn(c),
            "ledger.find_by_keycrm_id (gsi1)",
            r,
            0.0,
        );
        Ok(got)
    }
    async fn adopt(
        &self,
        c: &str,
        o: &str,
        target: Target,
        keycrm_id: i64,
    ) -> Result<LedgerEntry, StoreError> {
        self.update("ledger.adopt", c, o, Some(true));
        self.index_keycrm_id(c, o, keycrm_id);
        self.inner.adopt(c, o, target, keycrm_id).await
    }
    async fn record_keycrm_status(
        &self,
        c: &str,
        o: &str,
        keycrm_status_id: i64,
        changed_at: DateTime<Utc>,
        shop_status: &str,
    ) -> Result<bool, StoreError> {
        self.update("ledger.record_keycrm_status", c, o, None);
        self.inner
            .record_keycrm_status(c, o, keycrm_status_id, changed_at, shop_status)
            .await
    }
    async fn record_shop_status(
        &self,
        c: &str,
        o: &str,
        shop_status: &str,
        keycrm_status_id: Option<i64>,
        occurred_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.update("ledger.record_shop_status", c, o, None);
        self.inner
            .record_shop_status(c, o, shop_status, keycrm_status_id, occurred_at)
            .await
    }
    async fn reserve_shop_push(
        &self,
        c: &str,
        o: &str,
        occurred_at: DateTime<Utc>,
        holder: &str,
        lease: Duration,
    ) -> Result<PushReservation, StoreError> {
        self.update("ledger.reserve_shop_push", c, o, None);
        self.inner
            .reserve_shop_push(c, o, occurred_at, holder, lease)
            .await
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
        self.update("ledger.finish_shop_push", c, o, None);
        self.inner
            .finish_shop_push(c, o, holder, shop_status, keycrm_status_id, occurred_at)
            .await
    }
    async fn release_shop_push(&self, c: &str, o: &str, holder: &str) -> Result<(), StoreError> {
        self.update("ledger.release_shop_push", c, o, None);
        self.inner.release_shop_push(c, o, holder).await
    }
    async fn reset_for_repush(&self, c: &str, o: &str) -> Result<LedgerEntry, StoreError> {
        self.update("ledger.reset_for_repush", c, o, None);
        self.inner.reset_for_repush(c, o).await
    }
    async fn unskip(&self, c: &str, o: &str) -> Result<LedgerEntry, StoreError> {
        self.update("ledger.unskip", c, o, Some(false));
        self.inner.unskip(c, o).await
    }
    async fn skipped(
        &self,
        c: &str,
        since: Option<DateTime<Utc>>,
        limit: usize,
    ) -> Result<Vec<LedgerEntry>, StoreError> {
        let out = self.inner.skipped(c, since, limit).await?;
        let r = read_units(out.len() * (LEDGER_ATTRS + 1200), false);
        self.ctx
            .meter
            .dynamo(self.ctx.index.conn(c), "ledger.skipped (gsi1)", r, 0.0);
        Ok(out)
    }
    async fn sample_created(&self, c: &str, limit: usize) -> Result<Vec<LedgerEntry>, StoreError> {
        let out = self.inner.sample_created(c, limit).await?;
        let r = read_units(out.len() * (LEDGER_ATTRS + 1200), false);
        self.ctx
            .meter
            .dynamo(self.ctx.index.conn(c), "ledger.sample_created", r, 0.0);
        Ok(out)
    }
}
