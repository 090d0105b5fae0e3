//! Counting adapters: the in-memory stores behind the real ports, each call charged as the
//! DynamoDB adapter (`shared/store`) would be billed for it. Item sizes are those of the
//! documents the DynamoDB adapter writes (the JSON of links, staged products, reports and
//! checkpoints, the order event in the ledger) plus the attribute names and keys.
//!
//! Billing rules used (DynamoDB on demand): a read is 1 RRU per 4 KB strongly consistent,
//! half for eventually consistent reads (`Query` and `BatchGetItem` here, and every GSI read);
//! a read of a missing item still costs its minimum; a write is 1 WRU per KB of the larger of
//! the old and the new item, also when its condition fails; `TransactWriteItems` costs twice;
//! an item in `gsi1` (projection ALL) costs its write again in the index.

use crate::meter::{read_units, write_units, Meter, Shop};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use keycrm::gate::{decide, now_us, penalized, sanitized, sleep_until_us, too_late, waited_since};
use keycrm::{ApiKey, GateError, Priority, RateBudget, RateGate, Slot};
use mapping::catalog::{CategoryLink, CrmProduct, ProductLink};
use mapping::order_map::MappingReport;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use store::ledger::Created;
use store::{
    Claim, ConnectionStatus, ConnectionStore, Counter, LedgerEntry, LinkStore, OrderFailure,
    OrderLedger, PushReservation, SecretStore, SeenSet, StatusJournal, StoreError, SyncKind,
    SyncLease, SyncRun, SyncStore, SyncSummary, Target,
};

/// Which shop an id belongs to.
#[derive(Default)]
pub struct Index {
    pub by_conn: HashMap<String, usize>,
    pub by_shop: HashMap<String, usize>,
    pub by_fingerprint: HashMap<String, usize>,
    pub by_secret: HashMap<String, usize>,
}

impl Index {
    /// A connection id, or a links scope (`{conn}` / `{conn}.{epoch}`).
    pub fn conn(&self, id: &str) -> Shop {
        let base = id.split('.').next().unwrap_or(id);
        self.by_conn.get(base).copied()
    }
    pub fn shop(&self, id: &str) -> Shop {
        self.by_shop.get(id).copied()
    }
}

/// Key attributes and bookkeeping every item carries besides its document.
const ITEM_OVERHEAD: usize = 120;

fn json_len<T: serde::Serialize>(v: &T) -> usize {
    serde_json::to_vec(v).map(|b| b.len()).unwrap_or(256)
}

#[derive(Clone)]
pub struct Ctx {
    pub meter: Arc<Meter>,
    pub index: Arc<Index>,
}

// ------------------------------------------------------------------ connections

pub struct Connections {
    pub inner: Arc<store::MemoryConnections>,
    pub ctx: Ctx,
    sizes: Mutex<HashMap<String, usize>>,
}

impl Connections {
    pub fn new(inner: Arc<store::MemoryConnections>, ctx: Ctx) -> Self {
        Connections {
            inner,
            ctx,
            sizes: Mutex::new(HashMap::new()),
        }
    }
    fn size(&self, c: &store::Connection) -> usize {
        if let Some(s) = self.sizes.lock().ok().and_then(|m| m.get(&c.id).copied()) {
            return s;
        }
        let s = json_len(c) + ITEM_OVERHEAD + 60;
        if let Ok(mut m) = self.sizes.lock() {
            m.insert(c.id.clone(), s);
        }
        s
    }
}

#[async_trait]
impl ConnectionStore for Connections {
    async fn create(&self, conn: &store::Connection) -> Result<(), StoreError> {
        let size = self.size(conn);
        // A transaction of two puts (twice the units), and the META copy in gsi1.
        let w = 2.0 * (write_units(size) + 1.0) + write_units(size);
        self.ctx
            .meter
            .dynamo(self.ctx.index.conn(&conn.id), "connections.create", 0.0, w);
        self.inner.create(conn).await
    }
    async fn get(&self, id: &str) -> Result<Option<store::Connection>, StoreError> {
        let got = self.inner.get(id).await?;
        let r = got.as_ref().map_or(1.0, |c| read_units(self.size(c), true));
        self.ctx
            .meter
            .dynamo(self.ctx.index.conn(id), "connections.get", r, 0.0);
        Ok(got)
    }
    async fn get_by_shop(&self, shop_id: &str) -> Result<Option<store::Connection>, StoreError> {
        let got = self.inner.get_by_shop(shop_id).await?;
        let r = 1.0 + got.as_ref().map_or(0.0, |c| read_units(self.size(c), true));
        self.ctx.meter.dynamo(
            self.ctx.index.shop(shop_id),
            "connections.get_by_shop",
            r,
            0.0,
        );
        Ok(got)
    }
    async fn update(&self, conn: &store::Connection) -> Result<(), StoreError> {
        if let Ok(mut m) = self.sizes.lock() {
            m.remove(&conn.id);
        }
        let size = self.size(conn);
        self.ctx.meter.dynamo(
            self.ctx.index.conn(&conn.id),
            "connections.update",
            0.0,
            2.0 * write_units(size),
        );
        self.inner.update(conn).await
    }
    async fn mark_deleting(&self, conn: &store::Connection) -> Result<(), StoreError> {
        self.inner.mark_deleting(conn).await
    }
    async fn get_deleting(
        &self,
        id: &str,
    ) -> Result<Option<(store::Connection, DateTime<Utc>)>, StoreError> {
        self.ctx.meter.dynamo(
            self.ctx.index.conn(id),
            "connections.get_deleting",
            1.0,
            0.0,
        );
        self.inner.get_deleting(id).await
    }
    async fn list_deleting(
        &self,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<(Vec<String>, Option<String>), StoreError> {
        let out = self.inner.list_deleting(cursor, limit).await?;
        self.ctx
            .meter
            .dynamo(None, "connections.list_deleting", 0.5, 0.0);
        Ok(out)
    }
    async fn purge(&self, id: &str, max_items: usize) -> Result<bool, StoreError> {
        self.inner.purge(id, max_items).await
    }
    async fn remove(&self, id: &str) -> Result<(), StoreError> {
        self.inner.remove(id).await
    }
    async fn list(
        &self,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<(Vec<store::Connection>, Option<String>), StoreError> {
        let (page, next) = self.inner.list(cursor, limit).await?;
        // One Query page on gsi1 (eventually consistent), charged to the connections read.
        for c in &page {
            let r = self.size(c) as f64 / 4096.0 / 2.0;
            self.ctx
                .meter
                .dynamo(self.ctx.index.conn(&c.id), "connections.list", r, 0.0);
        }
        Ok((page, next))
    }
}

// ------------------------------------------------------------------ ledger

pub struct Ledger {
    pub inner: Arc<store::MemoryLedger>,
    pub ctx: Ctx,
    /// (connection, order) → (item bytes, in gsi1).
    items: Mutex<HashMap<(String, String), (usize, bool)>>,
}

const LEDGER_ATTRS: usize = 520;

impl Ledger {
    pub fn new(inner: Arc<store::MemoryLedger>, ctx: Ctx) -> Self {
        Ledger {
            inner,
            ctx,
            items: Mutex::new(HashMap::new()),
        }
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
        let got = self.inner.find_by_keycrm_id(c, target, keycrm_id).await?;
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

// ------------------------------------------------------------------ links

pub struct Links {
    pub inner: Arc<store::MemoryLinks>,
    pub ctx: Ctx,
    /// Per connection scope: (bytes, count) of product links, to price listing pages.
    avg: Mutex<HashMap<String, (usize, usize)>>,
    /// Per (scope, run mark): bytes of seen-id items.
    seen: Mutex<HashMap<(String, i64), (usize, usize)>>,
}

impl Links {
    pub fn new(inner: Arc<store::MemoryLinks>, ctx: Ctx) -> Self {
        Links {
            inner,
            ctx,
            avg: Mutex::new(HashMap::new()),
            seen: Mutex::new(HashMap::new()),
        }
    }
    fn charge(&self, conn: &str, op: &'static str, r: f64, w: f64) {
        self.ctx.meter.dynamo(self.ctx.index.conn(conn), op, r, w);
    }
    fn link_bytes(l: &ProductLink) -> usize {
        json_len(l) + ITEM_OVERHEAD + 40
    }
    /// The average stored size of this connection's product links (and reverse pointers).
    pub fn average_bytes(&self, conn: &str) -> usize {
        self.avg_link(conn) + ITEM_OVERHEAD
    }
    fn avg_link(&self, conn: &str) -> usize {
        self.avg
            .lock()
            .ok()
            .and_then(|m| m.get(conn).copied())
            .filter(|(_, n)| *n > 0)
            .map_or(400, |(b, n)| b / n)
    }
}

#[async_trait]
impl LinkStore for Links {
    async fn get_products(&self, conn: &str, ids: &[i64]) -> Result<Vec<ProductLink>, StoreError> {
        let out = self.inner.get_products(conn, ids).await?;
        let mut distinct = ids.to_vec();
        distinct.sort_unstable();
        distinct.dedup();
        let found: f64 = out
            .iter()
            .map(|l| read_units(Self::link_bytes(l), false))
            .sum();
        let missing = distinct.len().saturating_sub(out.len()) as f64 * 0.5;
        self.charge(conn, "links.get_products (BatchGet)", found + missing, 0.0);
        Ok(out)
    }
    async fn put_products(&self, conn: &str, links: &[ProductLink]) -> Result<(), StoreError> {
        let mut w = 0.0;
        let mut bytes = 0;
        for l in links {
            let b = Self::link_bytes(l);
            bytes += b;
            w += write_units(b) + 1.0; // the link and its reverse pointer
        }
        if let Ok(mut m) = self.avg.lock() {
            let e = m.entry(conn.to_string()).or_default();
            e.0 += bytes;
            e.1 += links.len();
        }
        self.charge(conn, "links.put_products", 0.0, w);
        self.inner.put_products(conn, links).await
    }
    async fn delete_products(&self, conn: &str, links: &[ProductLink]) -> Result<(), StoreError> {
        let w: f64 = links
            .iter()
            .map(|l| write_units(Self::link_bytes(l)) + 1.0)
            .sum();
        self.charge(conn, "links.delete_products", 0.0, w);
        self.inner.delete_products(conn, links).await
    }
    async fn products_page(
        &self,
        conn: &str,
        after: Option<String>,
        limit: usize,
    ) -> Result<(Vec<ProductLink>, Option<String>), StoreError> {
        let (page, next) = self.inner.products_page(conn, after, limit).await?;
        let bytes: usize = page.iter().map(Self::link_bytes).sum();
        self.charge(
            conn,
            "links.products_page (Query)",
            read_units(bytes, false),
            0.0,
        );
        Ok((page, next))
    }
    async fn product_states_page(
        &self,
        conn: &str,
        after: Option<String>,
        limit: usize,
    ) -> Result<(Vec<(i64, bool)>, Option<String>), StoreError> {
        let (page, next) = self.inner.product_states_page(conn, after, limit).await?;
        // A projection does not make the items read smaller.
        let bytes = page.len() * self.avg_link(conn);
        self.charge(
            conn,
            "links.product_states_page (Query)",
            read_units(bytes, false),
            0.0,
        );
        Ok((page, next))
    }
    async fn owners(
        &self,
        conn: &str,
        shop_ids: &[String],
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let mut d: Vec<&String> = shop_ids.iter().collect();
        d.sort();
        d.dedup();
        self.charge(conn, "links.owners (BatchGet)", d.len() as f64 * 0.5, 0.0);
        self.inner.owners(conn, shop_ids).await
    }
    async fn categories(&self, conn: &str) -> Result<Vec<CategoryLink>, StoreError> {
        let out = self.inner.categories(conn).await?;
        let bytes: usize = out.iter().map(|c| json_len(c) + ITEM_OVERHEAD).sum();
        self.charge(
            conn,
            "links.categories (Query)",
            read_units(bytes, false),
            0.0,
        );
        Ok(out)
    }
    async fn put_categories(&self, conn: &str, links: &[CategoryLink]) -> Result<(), StoreError> {
        let w: f64 = links
            .iter()
            .map(|c| write_units(json_len(c) + ITEM_OVERHEAD))
            .sum();
        self.charge(conn, "links.put_categories", 0.0, w);
        self.inner.put_categories(conn, links).await
    }
    async fn put_staged(&self, conn: &str, products: &[CrmProduct]) -> Result<(), StoreError> {
        let w: f64 = products
            .iter()
            .map(|p| write_units(json_len(p) + ITEM_OVERHEAD))
            .sum();
        self.charge(conn, "links.put_staged", 0.0, w);
        self.inner.put_staged(conn, products).await
    }
    async fn get_staged(&self, conn: &str, ids: &[i64]) -> Result<Vec<CrmProduct>, StoreError> {
        let out = self.inner.get_staged(conn, ids).await?;
        self.charge(
            conn,
            "links.get_staged (BatchGet)",
            ids.len() as f64 * 0.5,
            0.0,
        );
        Ok(out)
    }
    async fn staged_page(
        &self,
        conn: &str,
        after: Option<String>,
        limit: usize,
    ) -> Result<(Vec<CrmProduct>, Option<String>), StoreError> {
        let (page, next) = self.inner.staged_page(conn, after, limit).await?;
        let bytes: usize = page.iter().map(|p| json_len(p) + ITEM_OVERHEAD).sum();
        self.charge(
            conn,
            "links.staged_page (Query)",
            read_units(bytes, false),
            0.0,
        );
        Ok((page, next))
    }
    async fn delete_staged(&self, conn: &str, ids: &[i64]) -> Result<(), StoreError> {
        self.charge(conn, "links.delete_staged", 0.0, ids.len() as f64);
        self.inner.delete_staged(conn, ids).await
    }
    async fn put_seen(
        &self,
        conn: &str,
        mark: i64,
        seq: u32,
        products: &[i64],
        offers: &[i64],
    ) -> Result<(), StoreError> {
        let bytes = ITEM_OVERHEAD + 8 * (products.len() + offers.len());
        if let Ok(mut m) = self.seen.lock() {
            let e = m.entry((conn.to_string(), mark)).or_default();
            e.0 += bytes;
            e.1 += 1;
        }
        self.charge(conn, "links.put_seen", 0.0, write_units(bytes));
        self.inner.put_seen(conn, mark, seq, products, offers).await
    }
    async fn seen(&self, conn: &str, mark: i64) -> Result<SeenSet, StoreError> {
        let (bytes, _) = self
            .seen
            .lock()
            .ok()
            .and_then(|m| m.get(&(conn.to_string(), mark)).copied())
            .unwrap_or_default();
        self.charge(conn, "links.seen (Query)", read_units(bytes, false), 0.0);
        self.inner.seen(conn, mark).await
    }
    async fn clear_seen(&self, conn: &str, mark: i64) -> Result<(), StoreError> {
        let (bytes, items) = self
            .seen
            .lock()
            .ok()
            .and_then(|mut m| m.remove(&(conn.to_string(), mark)))
            .unwrap_or_default();
        let per = bytes.checked_div(items).unwrap_or(0);
        self.charge(
            conn,
            "links.clear_seen",
            read_units(bytes, false),
            items as f64 * write_units(per),
        );
        self.inner.clear_seen(conn, mark).await
    }
}

// ------------------------------------------------------------------ sync state

pub struct Sync {
    pub inner: Arc<store::MemorySync>,
    pub ctx: Ctx,
    /// connection → (lease item bytes, in gsi1).
    leases: Mutex<HashMap<String, (usize, bool)>>,
}

impl Sync {
    pub fn new(inner: Arc<store::MemorySync>, ctx: Ctx) -> Self {
        Sync {
            inner,
            ctx,
            leases: Mutex::new(HashMap::new()),
        }
    }
    fn lease_bytes(l: &SyncLease) -> usize {
        ITEM_OVERHEAD
            + 80
            + l.checkpoint.as_ref().map_or(0, String::len)
            + l.run.as_ref().map_or(0, json_len)
    }
    /// Charges an UpdateItem of the lease item that leaves it at `new` bytes.
    fn write(&self, op: &'static str, conn: &str, new: Option<(usize, bool)>) {
        let old = self
            .leases
            .lock()
            .ok()
            .and_then(|m| m.get(conn).copied())
            .unwrap_or((ITEM_OVERHEAD + 80, false));
        let after = new.unwrap_or(old);
        let w = write_units(old.0.max(after.0));
        let gsi = if old.1 || after.1 {
            write_units(if after.1 { after.0 } else { old.0 })
        } else {
            0.0
        };
        self.ctx
            .meter
            .dynamo(self.ctx.index.conn(conn), op, 0.0, w + gsi);
        if let Ok(mut m) = self.leases.lock() {
            match new {
                Some(n) => m.insert(conn.to_string(), n),
                None => m.remove(conn),
            };
        }
    }
}

#[async_trait]
impl SyncStore for Sync {
    async fn acquire(
        &self,
        connection_id: &str,
        kind: SyncKind,
        holder: &str,
        lease: Duration,
    ) -> Result<Option<SyncLease>, StoreError> {
        let out = self
            .inner
            .acquire(connection_id, kind, holder, lease)
            .await?;
        let keep = self
            .leases
            .lock()
            .ok()
            .and_then(|m| m.get(connection_id).copied());
        let now = match &out {
            Some(l) => Some((Self::lease_bytes(l), l.checkpoint.is_some())),
            None => keep,
        };
        self.write(
            "sync.acquire",
            connection_id,
            now.or(Some((ITEM_OVERHEAD + 80, false))),
        );
        Ok(out)
    }
    async fn checkpoint(
        &self,
        lease: &SyncLease,
        extend_by: Duration,
    ) -> Result<SyncLease, StoreError> {
        self.write(
            "sync.checkpoint",
            &lease.connection_id,
            Some((Self::lease_bytes(lease), lease.checkpoint.is_some())),
        );
        self.inner.checkpoint(lease, extend_by).await
    }
    async fn finish(&self, lease: &SyncLease) -> Result<(), StoreError> {
        self.write("sync.finish (delete)", &lease.connection_id, None);
        self.inner.finish(lease).await
    }
    async fn pause(&self, lease: &SyncLease) -> Result<(), StoreError> {
        self.write(
            "sync.pause",
            &lease.connection_id,
            Some((Self::lease_bytes(lease), lease.checkpoint.is_some())),
        );
        self.inner.pause(lease).await
    }
    async fn unfinished(&self, limit: usize) -> Result<Vec<(String, SyncKind)>, StoreError> {
        let bytes: usize = self
            .leases
            .lock()
            .map(|m| m.values().filter(|(_, g)| *g).map(|(b, _)| *b).sum())
            .unwrap_or(0);
        self.ctx.meter.dynamo(
            None,
            "sync.unfinished (gsi1)",
            read_units(bytes, false),
            0.0,
        );
        self.inner.unfinished(limit).await
    }
    async fn mark_queued(
        &self,
        connection_id: &str,
        kind: SyncKind,
        holder: Option<&str>,
        until: chrono::DateTime<chrono::Utc>,
    ) -> Result<bool, StoreError> {
        // One conditional UpdateItem of a number attribute (a failed condition is billed too).
        self.ctx.meter.dynamo(
            self.ctx.index.conn(connection_id),
            "sync.mark_queued",
            0.0,
            1.0,
        );
        self.inner
            .mark_queued(connection_id, kind, holder, until)
            .await
    }
    async fn clear_queued(
        &self,
        connection_id: &str,
        kind: SyncKind,
        until: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), StoreError> {
        self.ctx.meter.dynamo(
            self.ctx.index.conn(connection_id),
            "sync.clear_queued",
            0.0,
            1.0,
        );
        self.inner.clear_queued(connection_id, kind, until).await
    }
    async fn put_run(&self, run: &SyncRun) -> Result<(), StoreError> {
        let bytes = json_len(run) + ITEM_OVERHEAD;
        self.ctx.meter.dynamo(
            self.ctx.index.conn(&run.connection_id),
            "sync.put_run",
            1.0,
            write_units(bytes) + 1.0,
        );
        self.inner.put_run(run).await
    }
    async fn get_run(&self, c: &str, run_id: &str) -> Result<Option<SyncRun>, StoreError> {
        let out = self.inner.get_run(c, run_id).await?;
        let r = 1.0 + out.as_ref().map_or(0.0, |r| read_units(json_len(r), true));
        self.ctx
            .meter
            .dynamo(self.ctx.index.conn(c), "sync.get_run", r, 0.0);
        Ok(out)
    }
    async fn list_runs(&self, c: &str, limit: usize) -> Result<Vec<SyncRun>, StoreError> {
        let out = self.inner.list_runs(c, limit).await?;
        let bytes: usize = out.iter().map(json_len).sum();
        self.ctx.meter.dynamo(
            self.ctx.index.conn(c),
            "sync.list_runs",
            read_units(bytes, false),
            0.0,
        );
        Ok(out)
    }
}

// ------------------------------------------------------------------ status journal

pub struct Journal {
    pub inner: Arc<store::MemoryJournal>,
    pub ctx: Ctx,
    /// connection → bytes of its `STATUS` item (grows with the sync summaries it holds).
    sizes: Mutex<HashMap<String, usize>>,
}

impl Journal {
    pub fn new(inner: Arc<store::MemoryJournal>, ctx: Ctx) -> Self {
        Journal {
            inner,
            ctx,
            sizes: Mutex::new(HashMap::new()),
        }
    }
    fn status_write(&self, op: &'static str, conn: &str, grow_to: Option<(&str, usize)>) {
        let mut m = match self.sizes.lock() {
            Ok(m) => m,
            Err(_) => return,
        };
        let size = m.entry(conn.to_string()).or_insert(ITEM_OVERHEAD + 160);
        if let Some((_, bytes)) = grow_to {
            *size = (*size).max(ITEM_OVERHEAD + 160 + 2 * bytes);
        }
        let w = write_units(*size);
        drop(m);
        self.ctx.meter.dynamo(self.ctx.index.conn(conn), op, 0.0, w);
    }
}

#[async_trait]
impl StatusJournal for Journal {
    async fn count(&self, conn: &str, counter: Counter, n: u64) -> Result<(), StoreError> {
        self.status_write("journal.count", conn, None);
        self.inner.count(conn, counter, n).await
    }
    async fn record_error(&self, conn: &str, message: &str) -> Result<(), StoreError> {
        self.status_write("journal.record_error", conn, None);
        self.inner.record_error(conn, message).await
    }
    async fn record_failure(&self, conn: &str, failure: &OrderFailure) -> Result<(), StoreError> {
        self.ctx.meter.dynamo(
            self.ctx.index.conn(conn),
            "journal.record_failure",
            0.0,
            write_units(json_len(failure) + ITEM_OVERHEAD),
        );
        self.inner.record_failure(conn, failure).await
    }
    async fn clear_failure(&self, conn: &str, shop_order_id: &str) -> Result<(), StoreError> {
        self.ctx
            .meter
            .dynamo(self.ctx.index.conn(conn), "journal.clear_failure", 0.0, 1.0);
        self.inner.clear_failure(conn, shop_order_id).await
    }
    async fn record_sync(
        &self,
        conn: &str,
        kind: &str,
        summary: &SyncSummary,
    ) -> Result<(), StoreError> {
        self.status_write("journal.record_sync", conn, Some((kind, json_len(summary))));
        self.inner.record_sync(conn, kind, summary).await
    }
    async fn status(&self, conn: &str) -> Result<ConnectionStatus, StoreError> {
        self.ctx
            .meter
            .dynamo(self.ctx.index.conn(conn), "journal.status", 1.5, 0.0);
        self.inner.status(conn).await
    }
}

// ------------------------------------------------------------------ KeyCRM keys

/// Where the KeyCRM keys are kept, for the bill.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyStore {
    /// One Secrets Manager secret per connection (before).
    SecretsManager,
    /// Envelope encryption in the table under one KMS key (after).
    Envelope,
}

pub struct Keys {
    pub inner: Arc<store::MemorySecrets>,
    pub ctx: Ctx,
    pub model: KeyStore,
}

#[async_trait]
impl SecretStore for Keys {
    async fn put(&self, name: &str, key: &ApiKey) -> Result<(), StoreError> {
        let shop = self.ctx.index.by_secret.get(name).copied();
        match self.model {
            KeyStore::SecretsManager => self.ctx.meter.secrets_manager(shop),
            KeyStore::Envelope => {
                self.ctx.meter.kms(shop);
                self.ctx.meter.dynamo(shop, "keys.put", 0.0, 1.0);
            }
        }
        self.inner.put(name, key).await
    }
    async fn get(&self, name: &str) -> Result<Option<ApiKey>, StoreError> {
        let shop = self.ctx.index.by_secret.get(name).copied();
        match self.model {
            KeyStore::SecretsManager => self.ctx.meter.secrets_manager(shop),
            KeyStore::Envelope => {
                self.ctx.meter.dynamo(shop, "keys.get", 1.0, 0.0);
                self.ctx.meter.kms(shop);
            }
        }
        self.inner.get(name).await
    }
    async fn delete(&self, name: &str) -> Result<(), StoreError> {
        self.inner.delete(name).await
    }
}

// ------------------------------------------------------------------ rate gate

/// The DynamoDB gate's rules (`store::DynamoRateGate`) on in-process state: every look at the
/// key's state is a consistent `GetItem`, every booking a conditional `PutItem`.
pub struct Gate {
    budget: RateBudget,
    state: Mutex<HashMap<String, keycrm::gate::GateState>>,
    pub ctx: Ctx,
}

impl Gate {
    pub fn new(budget: RateBudget, ctx: Ctx) -> Self {
        Gate {
            budget,
            state: Mutex::new(HashMap::new()),
            ctx,
        }
    }
}

#[async_trait]
impl RateGate for Gate {
    async fn acquire_until(
        &self,
        key: &str,
        priority: Priority,
        latest_us: Option<i64>,
    ) -> Result<Slot, GateError> {
        let shop = self.ctx.index.by_fingerprint.get(key).copied();
        let started = now_us();
        loop {
            let now = now_us();
            self.ctx.meter.dynamo(shop, "gate.read", 1.0, 0.0);
            let decision = {
                let mut m = self
                    .state
                    .lock()
                    .map_err(|_| GateError("gate poisoned".into()))?;
                let state = m.entry(key.to_string()).or_default();
                let d = decide(sanitized(*state, now), now, priority, &self.budget);
                match d {
                    keycrm::gate::Decision::Reserve { at_us, next } => {
                        if let Some(w) = too_late(at_us, latest_us, now) {
                            return Ok(Slot::TooLate(w));
                        }
                        *state = next;
                    }
                    keycrm::gate::Decision::Wait { until_us } => {
                        if let Some(w) = too_late(until_us, latest_us, now) {
                            return Ok(Slot::TooLate(w));
                        }
                    }
                }
                d
            };
            match decision {
                keycrm::gate::Decision::Reserve { at_us, .. } => {
                    self.ctx.meter.dynamo(shop, "gate.book", 0.0, 1.0);
                    sleep_until_us(at_us).await;
                    return Ok(Slot::Granted(waited_since(started)));
                }
                keycrm::gate::Decision::Wait { until_us } => sleep_until_us(until_us).await,
            }
        }
    }

    async fn penalize(&self, key: &str, retry_after: Duration) -> Result<(), GateError> {
        let shop = self.ctx.index.by_fingerprint.get(key).copied();
        self.ctx.meter.dynamo(shop, "gate.penalize", 1.0, 1.0);
        let mut m = self
            .state
            .lock()
            .map_err(|_| GateError("gate poisoned".into()))?;
        let s = m.entry(key.to_string()).or_default();
        let now = now_us();
        *s = penalized(sanitized(*s, now), now, retry_after);
        Ok(())
    }
}
