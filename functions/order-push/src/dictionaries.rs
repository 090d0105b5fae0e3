//! The KeyCRM dictionaries an order needs (statuses, delivery services, custom fields,
//! pipelines), kept in process per connection so orders cost no lookups.
//!
//! - Keyed by connection id and the connection's `version`: saving the settings (which bumps
//!   the version) makes the next order reload, so a newly mapped field or pipeline is seen at
//!   once.
//! - Entries live for `ttl` (10 minutes by default) in process; a warm Lambda reloads at most
//!   that often per connection, a cold one once.
//! - Behind the process, a cache shared by every instance ([`store::DictionaryCache`], one
//!   item per connection in the table, [`SHARED_TTL`]): a connection's orders land on
//!   whichever instance is free, so without it nearly every order of a shop with tens of
//!   orders a day found a cold entry and spent three KeyCRM requests (and their rate-gate
//!   bookings, and 750 ms of Lambda time) before its own. An entry is used only for the
//!   connection version and sync type it was loaded for, like the process's. The shared
//!   cache failing costs requests, never an order: a read error is a miss, a write error is
//!   logged.
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
use store::{CachedDictionaries, Connection, DictionaryCache};

pub const DEFAULT_TTL: Duration = Duration::from_secs(600);

/// How long the shared entry is trusted. The dictionaries matter to an order only through the
/// settings' mapping, and saving the settings bumps the connection version (a new entry); a
/// dictionary entry that disappeared in KeyCRM makes the order a 422, which drops the entry.
/// What is left is a status or field renamed in KeyCRM, which the order does not depend on.
pub const SHARED_TTL: Duration = Duration::from_secs(6 * 3600);

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
    /// The cache every instance shares, and how long its entries are trusted.
    shared: Option<(Arc<dyn DictionaryCache>, Duration)>,
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
            shared: None,
        }
    }

    /// Adds the cache shared by every instance (entries trusted for `ttl`).
    pub fn with_shared(mut self, cache: Arc<dyn DictionaryCache>, ttl: Duration) -> Self {
        self.shared = Some((cache, ttl));
        self
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

    /// The connection's dictionaries, from memory, the shared cache or (on a miss) KeyCRM.
    pub async fn get(
        &self,
        conn: &Connection,
        crm: &dyn CrmApi,
    ) -> Result<Arc<KeycrmReference>, KeycrmError> {
        if let Some(r) = self.cached(conn) {
            return Ok(r);
        }
        let sync = conn.settings.order_sync;
        if let Some(r) = self.shared_entry(conn).await {
            self.keep(conn, r.clone());
            return Ok(r);
        }
        let reference = Arc::new(crm.load_reference(sync).await?);
        self.loads.fetch_add(1, Ordering::Relaxed);
        tracing::info!(connection = %conn.id, version = conn.version, "loaded KeyCRM dictionaries");
        self.keep(conn, reference.clone());
        if let Some((cache, ttl)) = &self.shared {
            let entry = CachedDictionaries {
                version: conn.version,
                sync,
                reference: (*reference).clone(),
            };
            if let Err(e) = cache.put(&conn.id, &entry, *ttl).await {
                tracing::warn!(connection = %conn.id, error = %e, "could not share the KeyCRM dictionaries");
            }
        }
        Ok(reference)
    }

    /// The shared entry, if there is one for this connection version and sync type.
    async fn shared_entry(&self, conn: &Connection) -> Option<Arc<KeycrmReference>> {
        let (cache, ttl) = self.shared.as_ref()?;
        match cache.get(&conn.id, *ttl).await {
            Ok(Some((e, _))) if e.version == conn.version && e.sync == conn.settings.order_sync => {
                Some(Arc::new(e.reference))
            }
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(connection = %conn.id, error = %e, "shared KeyCRM dictionaries unreadable; loading them");
                None
            }
        }
    }

    fn keep(&self, conn: &Connection, reference: Arc<KeycrmReference>) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.insert(
                conn.id.clone(),
                Entry {
                    version: conn.version,
                    sync: conn.settings.order_sync,
                    loaded: Instant::now(),
                    reference,
                },
            );
        }
    }

    /// Drops the connection's entry here and in the shared cache (the next order reloads).
    pub async fn invalidate(&self, connection_id: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(connection_id);
        }
        if let Some((cache, _)) = &self.shared {
            if let Err(e) = cache.invalidate(connection_id).await {
                tracing::warn!(connection = %connection_id, error = %e, "could not drop the shared KeyCRM dictionaries");
            }
        }
    }
}
