//! What is deployed: the functions' limits and the sync's configuration, before and after
//! issue 14 (and the sleep-on-the-gate variant).

use super::*;

/// What is deployed: the design before issue 14, or after.
#[derive(Clone, Debug)]
pub struct Design {
    pub name: &'static str,
    pub keys: KeyStore,
    /// Scheduled syncs spread by the 15-minute tick (else all at 03:00 Kyiv and every 4 h).
    pub spread: bool,
    pub sync: Function,
    pub sync_cfg: SyncConfig,
    pub order: Function,
    pub status: Function,
    pub webhook_reserved: Option<usize>,
    pub order_gate_wait: Option<Duration>,
    pub sync_gate_wait: Option<Duration>,
    /// Order push's KeyCRM dictionaries shared by every instance (else per instance only).
    pub shared_dictionaries: bool,
    /// Memory (MB) of order push, status apply and the webhook receiver.
    pub small_memory: u32,
}

pub const ACCOUNT_CONCURRENCY: usize = 1000;

/// template.yaml's `MemorySize` of order push, status apply and the webhook receiver.
pub const SMALL_MEMORY_MB: u32 = 256;

impl Design {
    fn functions(
        sync_batch: usize,
        sync_window: u64,
        sync_max: usize,
        order_max: usize,
        status_max: usize,
        high_volume_traced: bool,
    ) -> (Function, Function, Function) {
        (
            Function {
                name: "catalog-sync",
                memory_mb: 512,
                timeout: Duration::from_secs(900),
                batch: sync_batch,
                window: Duration::from_secs(sync_window),
                max_concurrency: sync_max,
                reserved: false,
                init_secret_reads: 1,
                traced: true,
                fixed_margin: catalog_sync::lambda::SETTLE_MARGIN,
            },
            Function {
                name: "order-push",
                memory_mb: 256,
                timeout: Duration::from_secs(60),
                batch: 10,
                window: Duration::from_secs(2),
                max_concurrency: order_max,
                reserved: false,
                init_secret_reads: 0,
                traced: true,
                // Its margin is configured (`PushConfig::deadline_margin`, scaled).
                fixed_margin: Duration::ZERO,
            },
            Function {
                name: "status-apply",
                memory_mb: 256,
                timeout: Duration::from_secs(30),
                batch: 10,
                window: Duration::from_secs(1),
                max_concurrency: status_max,
                reserved: false,
                init_secret_reads: 1,
                traced: high_volume_traced,
                fixed_margin: status_apply::consumer::SETTLE_MARGIN,
            },
        )
    }

    /// As deployed before issue 14: a secret per connection, every shop's sync at the same
    /// moment (03:00 Kyiv, and every 4 hours), one job per invocation sleeping on the gate, no
    /// cap on the sync and status consumers, order push capped at 5, no reservations.
    pub fn before() -> Self {
        let (sync, order, status) =
            Self::functions(1, 0, ACCOUNT_CONCURRENCY, 5, ACCOUNT_CONCURRENCY, true);
        Design {
            name: "before",
            keys: KeyStore::SecretsManager,
            spread: false,
            sync,
            sync_cfg: SyncConfig::default(),
            order,
            status,
            webhook_reserved: None,
            order_gate_wait: None,
            sync_gate_wait: None,
            shared_dictionaries: false,
            small_memory: 256,
        }
    }

    /// As deployed, except that a sync sleeps on its key's gate for as long as it takes and
    /// works until the invocation's deadline (no time slices, no hand-off): the other side of
    /// the sleep-vs-hand-off choice (BENCHMARKS.md, "Fleet").
    pub fn sleep() -> Self {
        let mut d = Self::after();
        d.name = "sleep";
        d.sync_cfg.slice = None;
        d.sync_cfg.hand_off = false;
        d.sync_gate_wait = None;
        d
    }

    /// As deployed now (template.yaml defaults).
    pub fn after() -> Self {
        // `HighVolumeTracing` defaults to PassThrough: the webhook and status apply untraced.
        let (sync, order, status) = Self::functions(10, 20, 10, 20, 5, false);
        Design {
            name: "after",
            keys: KeyStore::Keyring,
            spread: true,
            sync,
            sync_cfg: SyncConfig::lambda(),
            order,
            status,
            webhook_reserved: Some(20),
            order_gate_wait: Some(order_push::MAX_GATE_WAIT),
            sync_gate_wait: Some(catalog_sync::MAX_GATE_WAIT),
            shared_dictionaries: true,
            small_memory: 256,
        }
        .with_small_memory(SMALL_MEMORY_MB)
    }

    /// Order push, status apply and the webhook receiver at `mb`.
    pub fn with_small_memory(mut self, mb: u32) -> Self {
        self.small_memory = mb;
        self.order.memory_mb = mb;
        self.status.memory_mb = mb;
        self
    }
}
