//! Product and category links, staged products and seen ids, counted.

use super::*;

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
    async fn owners_page(
        &self,
        conn: &str,
        after: Option<String>,
        limit: usize,
    ) -> Result<(Vec<(String, i64)>, Option<String>), StoreError> {
        let (page, next) = self.inner.owners_page(conn, after, limit).await?;
        // A reverse pointer: the keys and the KeyCRM id.
        let bytes: usize = page.iter().map(|(s, _)| ITEM_OVERHEAD + s.len() + 10).sum();
        self.charge(
            conn,
            "links.owners_page (Query)",
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
