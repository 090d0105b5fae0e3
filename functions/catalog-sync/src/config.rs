//! What the sync engine is built from: its adapters ([`Deps`]) and its limits ([`Config`]).

use chrono::{DateTime, Utc};
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
    /// When each connection's scheduled runs start (the tick schedule).
    pub spread: mapping::schedule::Spread,
    /// The longest one invocation works on a run before handing the rest to a continuation
    /// (a time slice); `None`: until the invocation's deadline.
    pub slice: Option<Duration>,
    /// Whether a run that stops before it is done (time slice or deadline over, or the key's
    /// budget has no slot soon) sends its own continuation to the sync-jobs queue, keeping
    /// its lease for it, instead of waiting for the resume tick.
    pub hand_off: bool,
    /// How long a handed-off lease stays reserved beyond the continuation's delay. After that
    /// a lost or late continuation is covered by the resume tick.
    pub hand_off_grace: Duration,
    /// How long a queued continuation (a hand-off's, beyond its delay, or one the resume tick
    /// queued) is trusted to be waiting in the sync-jobs queue: until then the resume tick
    /// does not queue the run again, however long a backlog keeps it waiting past its lease.
    /// A continuation lost for good (dead-lettered) is replaced after this.
    pub continuation_mark: Duration,
    /// How often a run saves its checkpoint while it works: `ZERO` after every unit of work;
    /// otherwise after the first unit done this long after the last save. A run also saves
    /// whenever it stops (time slice, deadline, budget wait, error) and before it creates shop
    /// products, so only a crash loses the units since the last save, and those are redone
    /// (every unit is idempotent). Each save is a write of the whole lease item (checkpoint
    /// and report, several KB): the largest DynamoDB cost of a sync (BENCHMARKS.md, "Fleet").
    pub checkpoint_every: Duration,
    /// Sync jobs of one SQS batch run at once (each on its own key's budget, so they mostly
    /// wait side by side instead of each holding its own invocation).
    pub jobs_at_once: usize,
    /// What time it is for the decisions measured against the schedule's windows (whether a
    /// busy full run may still try again tonight). The wall clock; the fleet bench, whose
    /// KeyCRM and schedule run on a compressed clock, passes its own.
    pub now: Now,
    /// How long a scheduled full run that found its connection busy waits before it tries
    /// again ([`crate::engine::BUSY_RETRY`]).
    pub busy_retry: Duration,
}

/// A source of the current time (see [`Config::now`]).
#[derive(Clone)]
pub struct Now(Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>);

impl Now {
    /// The wall clock.
    pub fn wall() -> Self {
        Now(Arc::new(Utc::now))
    }

    /// Any other clock (the fleet bench's compressed one, a test's fixed instant).
    pub fn from_fn(f: impl Fn() -> DateTime<Utc> + Send + Sync + 'static) -> Self {
        Now(Arc::new(f))
    }

    /// The time now, by this clock.
    pub fn get(&self) -> DateTime<Utc> {
        (self.0)()
    }
}

impl std::fmt::Debug for Now {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Now")
    }
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
            spread: mapping::schedule::Spread::default(),
            slice: None,
            hand_off: false,
            hand_off_grace: Duration::from_secs(20 * 60),
            continuation_mark: Duration::from_secs(2 * 60 * 60),
            checkpoint_every: Duration::ZERO,
            jobs_at_once: 1,
            now: Now::wall(),
            busy_retry: crate::engine::BUSY_RETRY,
        }
    }
}

/// How long a sync waits in-process for its key's next slot before handing the rest of the
/// run to a delayed continuation (`ClientConfig::max_gate_wait` of catalog-sync's client).
/// Ordinary pacing at the background share is one slot every 1.29 s; a slot further away than
/// this means the key is busy with orders or paused by a 429, and sleeping through it would
/// only bill the Lambda (BENCHMARKS.md, "Fleet").
pub const MAX_GATE_WAIT: Duration = Duration::from_secs(10);

impl Config {
    /// The settings of the deployed function, chosen with the fleet cost model
    /// (BENCHMARKS.md, "Fleet"): jobs of a batch run side by side, a run works in time slices
    /// of at most five minutes, hands what is left to its own delayed continuation, and
    /// saves its checkpoint every 30 seconds of work (at most 24 KeyCRM requests of a
    /// background share to redo after a crash) instead of after every request.
    pub fn lambda() -> Self {
        Config {
            slice: Some(Duration::from_secs(300)),
            hand_off: true,
            jobs_at_once: 10,
            checkpoint_every: Duration::from_secs(30),
            ..Config::default()
        }
    }
}
