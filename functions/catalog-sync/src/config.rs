//! What the sync engine is built from: its adapters ([`Deps`]) and its limits ([`Config`]).

use queue::Queue;
use runtime::KeycrmClients;
use shop::ShopCatalog;
use std::sync::Arc;
use std::time::Duration;
use store::{ConnectionStore, LinkStore, StatusJournal, SyncStore};

/// The adapters a sync needs.
#[derive(Clone)]
pub struct Deps {
    pub connections: Arc<dyn ConnectionStore>,
    pub sync: Arc<dyn SyncStore>,
    pub links: Arc<dyn LinkStore>,
    pub shop: Arc<dyn ShopCatalog>,
    pub clients: Arc<KeycrmClients>,
    pub journal: Arc<dyn StatusJournal>,
    /// The sync-jobs queue (fan-out and resume).
    pub jobs: Arc<dyn Queue>,
}

#[derive(Clone, Debug)]
pub struct Config {
    /// Stop starting new work this long before the invocation's deadline.
    pub safety: Duration,
    /// How long a lease outlives the invocation's deadline (a crashed run is resumable
    /// after that).
    pub lease_slack: Duration,
    /// Products per shop upsert call (the port allows up to `shop::MAX_UPSERT_BATCH`).
    pub shop_batch: usize,
    /// Links read per store page (sweep, prices).
    pub links_page: usize,
    /// Shop index page size (resolve).
    pub shop_page: usize,
    /// Units of KeyCRM work per invocation (tests force pauses with it); `None` = until the
    /// deadline.
    pub max_units: Option<u32>,
    /// Concurrent sends in a fan-out.
    pub fan_out: usize,
    /// How long after a connection was deleted its cleanup starts (`store::CLEANUP_GRACE`).
    pub cleanup_grace: Duration,
    /// Items deleted per cleanup pass.
    pub cleanup_batch: usize,
    /// How often a running sync checks that its connection still exists.
    pub deletion_check: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            safety: Duration::from_secs(60),
            lease_slack: Duration::from_secs(120),
            shop_batch: shop::MAX_UPSERT_BATCH,
            links_page: 100,
            shop_page: 500,
            max_units: None,
            fan_out: 16,
            cleanup_grace: store::CLEANUP_GRACE,
            cleanup_batch: 500,
            deletion_check: Duration::from_secs(20),
        }
    }
}
