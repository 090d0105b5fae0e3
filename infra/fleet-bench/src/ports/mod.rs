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

mod connections;
mod dictionaries;
mod gate;
mod journal;
mod keys;
mod ledger;
mod links;
mod sync;

pub use connections::*;
pub use dictionaries::*;
pub use gate::*;
pub use journal::*;
pub use keys::*;
pub use ledger::*;
pub use links::*;
pub use sync::*;

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
    /// The bench clock's scale: the gate runs in real time, the bill in KeyCRM time.
    pub scale: f64,
}
