//! One flush: the offers KeyCRM signalled for a connection during a window, read from KeyCRM
//! 50 at a time and written to the shop where availability changed.
//!
//! Order of a chunk (each step idempotent, so a crash anywhere only repeats work):
//! 1. take the chunk out of the pending set into the in-flight set (one transaction);
//! 2. read its current stock (`GET /offers/stocks`, one request), then confirm and extend the
//!    hold on the window (the read may have waited behind orders); read the links and
//!    realtime stock's last writes;
//! 3. write the changed availabilities to the shop in one call;
//! 4. record them in the links and in the written records;
//! 5. drop the chunk from the in-flight set.
//!
//! A flush starts with what an earlier one left in flight, then takes what was pending when
//! it started. Offers signalled meanwhile wait for the next window, which is scheduled when
//! this one ends, so a burst costs one request per 50 distinct offers per window.

use crate::source::{SourceError, StockSource};
pub use jobs::stock::FlushConfig;
use jobs::stock::FlushJob;
use jobs::stock::ScheduleError;
use mapping::stock::{plan_chunk, record_in_links, ChunkInput, OfferOutcome, OFFERS_PER_REQUEST};
use queue::Queue;
use shop::VariantPriceChange;
use shop::{ShopCatalog, ShopError};
use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use store::{
    Connection, ConnectionStore, Counter, LinkStore, StatusJournal, StockStore, StoreError,
};

/// Why a flush could not finish.
#[derive(Debug, thiserror::Error)]
pub enum FlushError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("the shop API is unavailable: {0}")]
    ShopUnavailable(String),
    #[error("the shop API rejected the platform credentials")]
    ShopUnauthorized,
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("the flush queue: {0}")]
    Queue(String),
}

impl FlushError {
    pub fn is_retryable(&self) -> bool {
        match self {
            FlushError::Source(e) => e.is_retryable(),
            FlushError::ShopUnavailable(_) | FlushError::Queue(_) => true,
            FlushError::Store(e) => e.is_transient(),
            FlushError::ShopUnauthorized => false,
        }
    }
}

/// How a flush ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlushEnd {
    /// Everything taken was applied.
    Drained,
    /// The invocation's budget ran out; the rest continues in the next window.
    OutOfTime,
    /// The hold was lost (a takeover after an overrun): stop, the new holder goes on.
    LostWindow,
}

/// What a flush did, for logs, the journal and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlushReport {
    /// `GET /offers/stocks` requests (one per chunk).
    pub requests: u64,
    pub offers: u64,
    pub changed: u64,
    pub unchanged: u64,
    pub unlinked: u64,
    pub skipped: u64,
    pub not_found: u64,
    /// Variants the shop refused (reported, not retried).
    pub refused: u64,
}

impl FlushReport {
    fn add(&mut self, outcome: OfferOutcome) {
        self.offers += 1;
        match outcome {
            OfferOutcome::Changed => self.changed += 1,
            OfferOutcome::Unchanged => self.unchanged += 1,
            OfferOutcome::Unlinked => self.unlinked += 1,
            OfferOutcome::Skipped => self.skipped += 1,
            OfferOutcome::NotFound => self.not_found += 1,
        }
    }
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

pub struct Flusher {
    pub connections: Arc<dyn ConnectionStore>,
    pub stock: Arc<dyn StockStore>,
    pub links: Arc<dyn LinkStore>,
    pub shop: Arc<dyn ShopCatalog>,
    pub source: Arc<dyn StockSource>,
    pub journal: Arc<dyn StatusJournal>,
    /// The flush queue, to schedule the next window.
    pub flushes: Arc<dyn Queue>,
    pub config: FlushConfig,
    /// Connections whose offer index is known complete in this process.
    indexed: Mutex<HashSet<String>>,
}

impl Flusher {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        connections: Arc<dyn ConnectionStore>,
        stock: Arc<dyn StockStore>,
        links: Arc<dyn LinkStore>,
        shop: Arc<dyn ShopCatalog>,
        source: Arc<dyn StockSource>,
        journal: Arc<dyn StatusJournal>,
        flushes: Arc<dyn Queue>,
        config: FlushConfig,
    ) -> Self {
        Flusher {
            connections,
            stock,
            links,
            shop,
            source,
            journal,
            flushes,
            config,
            indexed: Mutex::new(HashSet::new()),
        }
    }

    /// Schedules a window for the connection unless one is live: the message first (delayed
    /// by `delay`), then the window record. A message whose record loses the race finds
    /// another live window on arrival and is dropped; a record never exists without its
    /// message, so a crash between the two cannot strand the pending offers.
    pub async fn schedule(&self, conn: &str, delay: Duration) -> Result<(), FlushError> {
        schedule(
            self.stock.as_ref(),
            self.flushes.as_ref(),
            conn,
            delay,
            self.config.grace,
        )
        .await
    }

    /// `scope`: the link-store scope of the connection's current KeyCRM account.
    async fn ensure_index(&self, scope: &str) -> Result<(), StoreError> {
        let known = self
            .indexed
            .lock()
            .map(|s| s.contains(scope))
            .unwrap_or(false);
        if !known {
            self.links.index_offers(scope).await?;
            if let Ok(mut s) = self.indexed.lock() {
                s.insert(scope.to_string());
            }
        }
        Ok(())
    }

    /// Runs a flush holding the window as `holder`, taking no chunk after `stop_at`.
    pub async fn flush(
        &self,
        conn: &Connection,
        holder: &str,
        stop_at: Instant,
        report: &mut FlushReport,
    ) -> Result<FlushEnd, FlushError> {
        self.ensure_index(&conn.links_scope()).await?;
        let leftovers = self.stock.in_flight(&conn.id).await?;
        let pending = self.stock.pending(&conn.id).await?;
        let leftover_set: BTreeSet<i64> = leftovers.iter().copied().collect();
        let work: Vec<i64> = leftovers
            .iter()
            .copied()
            .chain(pending.into_iter().filter(|o| !leftover_set.contains(o)))
            .collect();
        for (i, chunk) in work.chunks(OFFERS_PER_REQUEST).enumerate() {
            // At least one chunk per invocation, so a tiny budget still makes progress.
            if i > 0 && Instant::now() >= stop_at {
                return Ok(FlushEnd::OutOfTime);
            }
            // Leftovers signalled again are in both sets: taking them clears the pending
            // copy too, since the read below is newer than that signal.
            self.stock.begin(&conn.id, chunk).await?;
            if !self.apply_chunk(conn, holder, chunk, report).await? {
                // Taken over while this chunk waited: it stays in flight for the new holder.
                return Ok(FlushEnd::LostWindow);
            }
            self.stock.finish(&conn.id, chunk).await?;
        }
        Ok(FlushEnd::Drained)
    }

    /// Reads, plans and writes one chunk; `false` if the window was lost meanwhile (nothing
    /// written then).
    async fn apply_chunk(
        &self,
        conn: &Connection,
        holder: &str,
        chunk: &[i64],
        report: &mut FlushReport,
    ) -> Result<bool, FlushError> {
        report.requests += 1;
        // Links (and realtime stock's records) belong to the connection's current account.
        let scope = conn.links_scope();
        let available = self.source.available(conn, chunk).await?;
        // The read may have waited long for a slot behind orders: confirm the window is still
        // this flush's (and extend it) right before writing, so a flush that was taken over
        // never writes an older read after the new holder's newer one.
        let until = now_ms() + ms(self.config.lease);
        if !self.stock.renew_window(&conn.id, holder, until).await? {
            return Ok(false);
        }
        let products = self.links.products_of_offers(&scope, chunk).await?;
        let ids: BTreeSet<i64> = products.values().copied().collect();
        let ids: Vec<i64> = ids.into_iter().collect();
        let links = self
            .links
            .get_products(&scope, &ids)
            .await?
            .into_iter()
            .map(|l| (l.keycrm_id, l))
            .collect();
        let last_written = self.stock.last_written(&scope, chunk).await?;
        let mut input = ChunkInput {
            products,
            links,
            last_written,
            available,
        };
        let mut plan = plan_chunk(chunk, &input);
        for (_, outcome) in &plan.outcomes {
            report.add(*outcome);
        }
        if plan.changes.is_empty() {
            return Ok(true);
        }
        let accepted = self.write(conn, &plan.changes).await?;
        let refused = accepted.iter().filter(|a| !**a).count() as u64;
        report.changed = report.changed.saturating_sub(refused);
        report.refused += refused;
        let mut i = 0;
        plan.written.retain(|_| {
            let keep = accepted.get(i).copied().unwrap_or(false);
            i += 1;
            keep
        });
        let touched = record_in_links(&mut input.links, &plan.written);
        let updated: Vec<_> = touched
            .iter()
            .filter_map(|k| input.links.get(k).cloned())
            .collect();
        self.links.put_products(&scope, &updated).await?;
        let written: Vec<(i64, bool)> = plan.written.iter().map(|w| (w.0, w.2)).collect();
        self.stock.record_written(&scope, &written).await?;
        Ok(true)
    }
    /// Writes availability changes; returns, per change, whether the shop took it. A refused
    /// batch writes nothing (shop contract), so it is retried change by change to find the
    /// culprits.
    async fn write(
        &self,
        conn: &Connection,
        changes: &[VariantPriceChange],
    ) -> Result<Vec<bool>, FlushError> {
        match self.shop.set_variant_prices(&conn.shop_id, changes).await {
            Ok(()) => return Ok(vec![true; changes.len()]),
            Err(e) => shop_fatal(e)?,
        }
        let mut accepted = Vec::with_capacity(changes.len());
        for c in changes {
            if let Err(e) = self
                .shop
                .set_variant_prices(&conn.shop_id, std::slice::from_ref(c))
                .await
            {
                let detail = e.to_string();
                shop_fatal(e)?;
                tracing::warn!(
                    connection = %conn.id, product = %c.product_id, variant = %c.variant_id,
                    error = %detail, "the shop refused an availability change"
                );
                if let Err(j) = self
                    .journal
                    .record_error(
                        &conn.id,
                        &format!(
                            "realtime stock: the shop refused availability of variant {} of product {}: {detail}",
                            c.variant_id, c.product_id
                        ),
                    )
                    .await
                {
                    tracing::warn!(connection = %conn.id, error = %j, "could not update the journal");
                }
                accepted.push(false);
            } else {
                accepted.push(true);
            }
        }
        Ok(accepted)
    }

    /// Adds a flush's counts to the connection's journal (best effort).
    pub async fn journal(&self, conn: &str, r: &FlushReport) {
        for (counter, n) in [
            (Counter::StockChanged, r.changed),
            (Counter::StockUnlinked, r.unlinked),
        ] {
            if n > 0 {
                if let Err(e) = self.journal.count(conn, counter, n).await {
                    tracing::warn!(connection = %conn, error = %e, "could not update the journal");
                }
            }
        }
    }

    pub(crate) async fn load(&self, job: &FlushJob) -> Result<Option<Connection>, StoreError> {
        self.connections.get(&job.connection_id).await
    }
}

/// Errors that stop the flush (the rest are per item).
fn shop_fatal(e: ShopError) -> Result<(), FlushError> {
    match e {
        ShopError::Unavailable(m) => Err(FlushError::ShopUnavailable(m)),
        ShopError::Unauthorized => Err(FlushError::ShopUnauthorized),
        ShopError::Rejected(_) | ShopError::NotFound(_) => Ok(()),
    }
}

/// See [`Flusher::schedule`] and [`jobs::stock::schedule_flush`].
pub async fn schedule(
    stock: &dyn StockStore,
    flushes: &dyn Queue,
    conn: &str,
    delay: Duration,
    grace: Duration,
) -> Result<(), FlushError> {
    jobs::stock::schedule_flush(stock, flushes, conn, delay, grace)
        .await
        .map_err(|e| match e {
            ScheduleError::Store(e) => FlushError::Store(e),
            ScheduleError::Queue(e) => FlushError::Queue(e),
        })
}
