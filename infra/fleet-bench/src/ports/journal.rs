//! The status journal (the connection's `STATUS` item and its order failures), counted.

use super::*;

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
    async fn count_many(&self, conn: &str, counts: &[(Counter, u64)]) -> Result<(), StoreError> {
        // One UpdateItem (an ADD per counter), none when every count is zero: as the DynamoDB
        // adapter sends it.
        if counts.iter().any(|(_, n)| *n > 0) {
            self.status_write("journal.count_many", conn, None);
        }
        self.inner.count_many(conn, counts).await
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
