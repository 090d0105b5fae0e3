//! The saved position of a run, stored with its lease between invocations. It holds ids and
//! cursors only (plus at most one product straddling a page boundary), never catalog pages.

use mapping::catalog::{CrmProduct, ReadPlan};
use mapping::Settings;
use serde::{Deserialize, Serialize};
use store::SyncKind;

/// Bumped when the format changes incompatibly; an unknown version restarts the run.
pub const VERSION: u32 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Read KeyCRM's categories (for the filter), write them when category sync is on.
    Categories,
    /// Stream the catalog: linked products written at once, unlinked ones staged.
    Products,
    /// Decide the staged products (match, create, report ambiguity) and write them.
    Resolve,
    /// Mark and sweep: missing products, within the vanish guard.
    Sweep,
    /// Categories KeyCRM no longer has get the missing-products policy (end of a complete
    /// run, within the vanish guard); hidden ones that came back are shown again.
    CategorySweep,
    /// Price and availability of linked products.
    Prices,
    /// Repair what the shop holds where it differs from what the connector wrote (prices and
    /// availability edited or lost in the shop).
    Drift,
    Done,
}

/// A position in a listing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "at", content = "next", rename_all = "snake_case")]
pub enum Listing {
    #[default]
    Start,
    /// A KeyCRM page URL (`Pages::cursor`) or a store cursor.
    Next(String),
    Done,
}

impl Listing {
    pub fn from_cursor(c: Option<String>) -> Self {
        c.map(Listing::Next).unwrap_or(Listing::Done)
    }

    pub fn is_done(&self) -> bool {
        matches!(self, Listing::Done)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SweepState {
    /// The guard's counting pass is done.
    pub counted: bool,
    /// Linked products not seen in this run and not swept before.
    pub to_sweep: u64,
    pub linked: u64,
    /// Variants of listed products whose offers were not listed (re-checked before any is
    /// made unavailable), and all linked variants: the guard's offer count.
    #[serde(default)]
    pub missing_offers: u64,
    #[serde(default)]
    pub linked_offers: u64,
    /// Why the guard refused, if it did.
    pub refused: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub v: u32,
    pub run_id: String,
    pub kind: SyncKind,
    pub dry_run: bool,
    /// The run's start in epoch ms: names its seen-id records.
    pub mark: i64,
    /// The settings the run started with (a change mid-run applies from the next run).
    pub settings: Settings,
    pub phase: Phase,
    #[serde(default)]
    pub plan: Option<ReadPlan>,
    /// `/offers` listing position.
    #[serde(default)]
    pub offers: Listing,
    /// `/products` listing position (category-filtered plan).
    #[serde(default)]
    pub products: Listing,
    /// Product ids waiting for their offers (category-filtered plan).
    #[serde(default)]
    pub pending: Vec<i64>,
    /// The last product of the previous page: its offers may continue on the next one.
    #[serde(default)]
    pub carry: Option<CrmProduct>,
    /// The highest product id staged so far: only a product at or below it can have been
    /// staged already (its offers spread over pages), so only those are looked up to merge.
    #[serde(default)]
    pub staged_max: i64,
    /// Whether the connection had any product link when the catalog pass began. Without
    /// links (a first sync) nothing can go missing: links are not looked up and seen ids are
    /// not recorded.
    #[serde(default)]
    pub had_links: Option<bool>,
    /// Link-store position (staged products, product links).
    #[serde(default)]
    pub links: Listing,
    /// `(KeyCRM product id, shop product id)` waiting to be verified and swept, or
    /// `(KeyCRM product id, offer id)` waiting for a stock read.
    #[serde(default)]
    pub queue: Vec<(i64, String)>,
    #[serde(default)]
    pub sweep: SweepState,
    /// `(KeyCRM product id, offer id)` of variants whose offer the pass did not list, waiting
    /// to be re-checked with KeyCRM.
    #[serde(default)]
    pub offer_queue: Vec<(i64, i64)>,
    /// Whether the run ends with the drift repair (`drift.rs`).
    #[serde(default)]
    pub drift: bool,
    /// Shop product index position (drift repair).
    #[serde(default)]
    pub shop: Listing,
    /// Shop products compared so far (drift repair).
    #[serde(default)]
    pub drift_checked: u64,
    #[serde(default)]
    pub seen_seq: u32,
    /// KeyCRM categories in scope (the filter with descendants); `None` = all.
    #[serde(default)]
    pub scope: Option<Vec<i64>>,
    /// Consecutive failed attempts; the run fails after too many.
    #[serde(default)]
    pub failures: u32,
    /// KeyCRM products whose create was sent to the shop in the resolve step in progress:
    /// if the run crashed before their links were stored, their external id is how they are
    /// recognised as ours (even under create-only), never created twice.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub creating: Vec<i64>,
    /// KeyCRM's category ids as read at the start of the run (category sync on only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category_ids: Option<Vec<i64>>,
    /// Why the vanish guard refused to hide categories KeyCRM no longer has, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub categories_refused: Option<String>,
}

impl Checkpoint {
    pub fn new(
        run_id: String,
        kind: SyncKind,
        dry_run: bool,
        mark: i64,
        settings: Settings,
    ) -> Self {
        Checkpoint {
            v: VERSION,
            run_id,
            kind,
            dry_run,
            mark,
            settings,
            phase: match kind {
                SyncKind::Full => Phase::Categories,
                SyncKind::Prices => Phase::Prices,
            },
            plan: None,
            offers: Listing::Start,
            products: Listing::Start,
            pending: Vec::new(),
            carry: None,
            staged_max: 0,
            had_links: None,
            links: Listing::Start,
            queue: Vec::new(),
            sweep: SweepState::default(),
            offer_queue: Vec::new(),
            drift: false,
            shop: Listing::Start,
            drift_checked: 0,
            seen_seq: 0,
            scope: None,
            failures: 0,
            creating: Vec::new(),
            category_ids: None,
            categories_refused: None,
        }
    }

    /// Whether a KeyCRM category is in the run's scope.
    pub fn in_scope(&self, category: Option<i64>) -> bool {
        match &self.scope {
            None => true,
            Some(s) => category.is_some_and(|c| s.binary_search(&c).is_ok()),
        }
    }
}
