//! DynamoDB's connections items (the record, its shop pointer, the META copy in gsi1), counted.

use super::*;

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
