//! Realtime stock's hand-off between the webhook receiver and stock-apply, and its records.
//!
//! KeyCRM's stock webhook is only a signal, so the receiver just records *which* offers
//! changed and makes sure one flush is scheduled per window; the flush reads their current
//! stock from KeyCRM. Everything lives in the connection's partitions:
//!
//! - `CONN#{conn}` / `STOCK#P#{00..15}`: the pending set, offer ids in a number set `ids`,
//!   spread over 16 items by `offer id mod 16` so no item nears DynamoDB's 400 KB limit
//!   (about 70,000 ids each). `ADD` makes the receiver's write idempotent and concurrency-safe.
//! - `CONN#{conn}` / `STOCK#FLIGHT`: offers a flush has taken out of the pending set and not
//!   finished (`ids`). Taking is one transaction (add here, remove there), so a crash at any
//!   point leaves every signalled offer in one of the two sets; the next flush starts with
//!   the in-flight ones. Offers signalled again while in flight go back to the pending set
//!   and are read again, so a change during a flush is never lost.
//! - `CONN#{conn}` / `STOCK#WINDOW`: the scheduled flush `w` (its id), `until` (epoch ms) and,
//!   while a flush runs, its `holder`. Receivers schedule a new window only when none is live;
//!   the flush holds it (renewing `until`) so two flushes of one connection never overlap.
//! - `LINKS#{scope}` / `A#{offer}`: the availability realtime stock last wrote (`a`), the
//!   second record `mapping::stock::needs_write` compares with; kept with the links of the
//!   connection's current KeyCRM account (`Connection::links_scope`).

use crate::StoreError;
use async_trait::async_trait;
use std::collections::HashMap;

mod dynamo;
mod memory;

pub(crate) use dynamo::written_sk;
pub use memory::MemoryStock;

/// Pending items per connection.
pub const PENDING_BUCKETS: i64 = 16;

/// The pending item an offer id belongs to.
pub fn bucket_of(offer: i64) -> i64 {
    offer.rem_euclid(PENDING_BUCKETS)
}

/// The scheduled (or running) flush of a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StockWindow {
    pub id: String,
    /// Epoch milliseconds after which the window counts as dead (its message lost, its
    /// holder crashed) and a new one may be scheduled or taken over.
    pub until_ms: i64,
    pub holder: Option<String>,
}

impl StockWindow {
    pub fn is_live(&self, now_ms: i64) -> bool {
        self.until_ms >= now_ms
    }
}

#[async_trait]
pub trait StockStore: Send + Sync {
    /// Adds offers to the pending set (idempotent).
    async fn add_pending(&self, conn: &str, offers: &[i64]) -> Result<(), StoreError>;
    /// Every pending offer, ascending.
    async fn pending(&self, conn: &str) -> Result<Vec<i64>, StoreError>;
    /// Offers taken by a flush and not finished, ascending.
    async fn in_flight(&self, conn: &str) -> Result<Vec<i64>, StoreError>;
    /// Moves offers from the pending set to the in-flight set, atomically.
    async fn begin(&self, conn: &str, offers: &[i64]) -> Result<(), StoreError>;
    /// Drops finished offers from the in-flight set.
    async fn finish(&self, conn: &str, offers: &[i64]) -> Result<(), StoreError>;

    async fn window(&self, conn: &str) -> Result<Option<StockWindow>, StoreError>;
    /// Records window `id` as scheduled until `until_ms`, unless a live window exists
    /// (`Ok(false)`).
    async fn schedule_window(
        &self,
        conn: &str,
        id: &str,
        until_ms: i64,
        now_ms: i64,
    ) -> Result<bool, StoreError>;
    /// Takes window `id` for `holder` until `until_ms`: when it is the scheduled window and
    /// nobody holds it, or no live window exists (a lost message's window is taken over).
    /// `Ok(false)` when another window is live or someone holds this one.
    async fn take_window(
        &self,
        conn: &str,
        id: &str,
        holder: &str,
        until_ms: i64,
        now_ms: i64,
    ) -> Result<bool, StoreError>;
    /// Extends the hold; `Ok(false)` if the window is no longer this holder's.
    async fn renew_window(
        &self,
        conn: &str,
        holder: &str,
        until_ms: i64,
    ) -> Result<bool, StoreError>;
    /// Keeps the window scheduled until `until_ms` with nobody holding it, so the retry of
    /// the same message takes it again and receivers do not schedule another meanwhile.
    async fn park_window(
        &self,
        conn: &str,
        holder: &str,
        until_ms: i64,
    ) -> Result<bool, StoreError>;
    /// Ends the window if this holder still has it.
    async fn end_window(&self, conn: &str, holder: &str) -> Result<(), StoreError>;

    /// The availability realtime stock last wrote, for those of `offers` it ever wrote. These
    /// records live with the links: `conn` is the links scope (`Connection::links_scope`).
    async fn last_written(
        &self,
        conn: &str,
        offers: &[i64],
    ) -> Result<HashMap<i64, bool>, StoreError>;
    async fn record_written(&self, conn: &str, written: &[(i64, bool)]) -> Result<(), StoreError>;
}
