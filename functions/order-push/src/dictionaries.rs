//! The KeyCRM dictionaries an order needs (statuses, delivery services, custom fields,
//! pipelines), kept in process per connection so orders cost no lookups.
//!
//! - Keyed by connection id and the connection's `version`: saving the settings (which bumps
//!   the version) makes the next order reload, so a newly mapped field or pipeline is seen at
//!   once.
//! - Entries live for `ttl` (10 minutes by default); a warm Lambda reloads at most that often
//!   per connection, a cold one once.
//! - Only what the sync type needs is loaded: 3 requests for orders (statuses, delivery
//!   services, order fields), 2 + pipelines for cards.
//! - A KeyCRM 422 on an order invalidates the entry: the dictionaries may be what is stale.

use crate::crm::CrmApi;
use keycrm::KeycrmError;
use mapping::{KeycrmReference, OrderSyncType};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use store::Connection;

pub const DEFAULT_TTL: Duration = Duration::from_secs(600);

struct Entry {
    version: u64,
    sync: OrderSyncType,
    loaded: Instant,
    reference: Arc<KeycrmReference>,
}

pub struct Dictionaries {
    ttl: Duration,
    entries: Mutex<HashMap<String, Entry>>,
    loads: AtomicU64,
}

impl Default for Dictionaries {
    fn default() -> Self {
        Self::new(DEFAULT_TTL)
    }
}

impl Dictionaries {
    pub fn new(ttl: Duration) -> Self {
        Dictionaries {
            ttl,
            entries: Mutex::new(HashMap::new()),
            loads: AtomicU64::new(0),
        }
    }

    /// How many times dictionaries were fetched from KeyCRM (for benchmarks and tests).
    pub fn loads(&self) -> u64 {
        self.loads.load(Ordering::Relaxed)
    }

    fn cached(&self, conn: &Connection) -> Option<Arc<KeycrmReference>> {
        let entries = self.entries.lock().ok()?;
        let e = entries.get(&conn.id)?;
        let fresh = e.version == conn.version
            && e.sync == conn.settings.order_sync
            && e.loaded.elapsed() < self.ttl;
        fresh.then(|| e.reference.clone())
    }

    /// The connection's dictionaries, from memory or (on a miss) from KeyCRM.
    pub async fn get(
        &self,
        conn: &Connection,
        crm: &dyn CrmApi,
    ) -> Result<Arc<KeycrmReference>, KeycrmError> {
        if let Some(r) = self.cached(conn) {
            return Ok(r);
        }
        let sync = conn.settings.order_sync;
        let reference = Arc::new(crm.load_reference(sync).await?);
        self.loads.fetch_add(1, Ordering::Relaxed);
        tracing::info!(connection = %conn.id, version = conn.version, "loaded KeyCRM dictionaries");
        if let Ok(mut entries) = self.entries.lock() {
            entries.insert(
                conn.id.clone(),
                Entry {
                    version: conn.version,
                    sync,
                    loaded: Instant::now(),
                    reference: reference.clone(),
                },
            );
        }
        Ok(reference)
    }

    pub fn invalidate(&self, connection_id: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(connection_id);
        }
    }
}
