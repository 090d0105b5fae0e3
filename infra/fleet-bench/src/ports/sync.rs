//! Sync leases (with their checkpoints), queued-continuation marks and run reports, counted.

use super::*;

pub struct Sync {
    pub inner: Arc<store::MemorySync>,
    pub ctx: Ctx,
    /// connection → (lease item bytes, in gsi1).
    leases: Mutex<HashMap<String, (usize, bool)>>,
}

/// A lease item's gsi1 entry: keys (`CONN#…`, `SYNC#…`, `SYNC#UNFINISHED`, `{conn}#{kind}`),
/// the two projected times and DynamoDB's 100 bytes.
const INDEX_ENTRY_BYTES: usize = 280;

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
    /// Charges an UpdateItem of the lease item that leaves it at `new` bytes. Its gsi1 entry
    /// (while a checkpoint exists) holds the keys, `lease_until` and `queued_until` only
    /// (`store::dynamo::GSI1_PROJECTED`), which every lease write changes: one small index
    /// write, whatever the checkpoint's size.
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
            write_units(INDEX_ENTRY_BYTES)
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
            .map(|m| m.values().filter(|(_, g)| *g).count() * INDEX_ENTRY_BYTES)
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
