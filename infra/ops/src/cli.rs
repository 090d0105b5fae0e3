//! Command-line flags. Every deployment setting has a flag and an environment variable; the
//! queue and table variables are the ones the functions themselves read (README).

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug, Clone)]
#[command(
    name = "ops",
    about = "Operate a shop-keycrm deployment: connections and their health, an order's history, \
             dead letters (show, redrive), catalog syncs and their reports. Never prints a KeyCRM \
             key or a webhook token.",
    long_about = None
)]
pub struct Cli {
    #[command(flatten)]
    pub target: TargetArgs,

    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

/// Which deployment: a stage (its resources are found by the stack's names), or the table and
/// queues named directly.
#[derive(Args, Debug, Clone, Default)]
pub struct TargetArgs {
    /// Deployment stage (the template's `Stage`): finds the table and queues of stack
    /// `shop-keycrm-<stage>` in the account and region of the AWS credentials.
    #[arg(long, env = "SHOP_KEYCRM_STAGE", global = true)]
    pub stage: Option<String>,

    /// Stack name, when it is not `shop-keycrm-<stage>`.
    #[arg(long, env = "SHOP_KEYCRM_STACK", global = true)]
    pub stack: Option<String>,

    /// AWS profile (otherwise AWS_PROFILE and the usual credential chain).
    #[arg(long, global = true)]
    pub profile: Option<String>,

    /// AWS region (otherwise AWS_REGION or the profile's region).
    #[arg(long, global = true)]
    pub region: Option<String>,

    /// The DynamoDB table (overrides the stage's).
    #[arg(long, env = "TABLE_NAME", global = true)]
    pub table: Option<String>,

    /// The order queue's URL (overrides the stage's).
    #[arg(long, env = "ORDER_QUEUE_URL", global = true)]
    pub order_queue_url: Option<String>,
    /// The order dead-letter queue's URL (overrides the stage's).
    #[arg(long, env = "ORDER_DLQ_URL", global = true)]
    pub order_dlq_url: Option<String>,
    /// The status queue's URL (overrides the stage's).
    #[arg(long, env = "STATUS_QUEUE_URL", global = true)]
    pub status_queue_url: Option<String>,
    /// The status dead-letter queue's URL (overrides the stage's).
    #[arg(long, env = "STATUS_DLQ_URL", global = true)]
    pub status_dlq_url: Option<String>,
    /// The sync-jobs queue's URL (overrides the stage's).
    #[arg(long, env = "SYNC_QUEUE_URL", global = true)]
    pub sync_queue_url: Option<String>,
    /// The sync-jobs dead-letter queue's URL (overrides the stage's).
    #[arg(long, env = "SYNC_DLQ_URL", global = true)]
    pub sync_dlq_url: Option<String>,
    /// The stock flush queue's URL (overrides the stage's).
    #[arg(long, env = "STOCK_QUEUE_URL", global = true)]
    pub stock_queue_url: Option<String>,
    /// The stock flush dead-letter queue's URL (overrides the stage's).
    #[arg(long, env = "STOCK_DLQ_URL", global = true)]
    pub stock_dlq_url: Option<String>,
}

#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    /// Every connection: state, last syncs, failures, KeyCRM usage.
    Connections {
        /// Only connections with open order failures, an error or an unfinished last sync.
        #[arg(long)]
        failing: bool,
        /// Stop after this many connections.
        #[arg(long)]
        limit: Option<usize>,
    },
    /// One shop's connection and its health.
    Connection { shop: String },
    /// One order's ledger history and where it is in KeyCRM.
    Order {
        shop: String,
        order_id: String,
        /// Also read the order (or card) from KeyCRM now, with the shop's key (one request
        /// of its budget, through the shared rate gate).
        #[arg(long)]
        keycrm: bool,
    },
    /// Dead letters: read them with their reasons, or send them back.
    Dlq {
        #[command(subcommand)]
        action: DlqAction,
    },
    /// Starts a catalog sync of one shop now.
    Sync {
        shop: String,
        /// Report what the sync would change without writing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long, value_enum, default_value_t = SyncKindArg::Full)]
        kind: SyncKindArg,
    },
    /// Recent catalog sync reports of one shop, newest first.
    Runs {
        shop: String,
        #[arg(long, default_value_t = 10)]
        limit: usize,
    },
}

#[derive(Subcommand, Debug, Clone)]
pub enum DlqAction {
    /// Lists dead letters with their reasons (they stay in the queue).
    Show {
        #[arg(value_enum)]
        queue: QueueArg,
        #[command(flatten)]
        filter: FilterArgs,
        /// Also print each letter's original message (order events hold buyer data).
        #[arg(long)]
        body: bool,
    },
    /// Sends dead letters back to their queue (failed orders are re-pushed: their ledger
    /// entry is reset first) and removes them from the dead-letter queue.
    Redrive {
        #[arg(value_enum)]
        queue: QueueArg,
        #[command(flatten)]
        filter: FilterArgs,
        /// Say what would be done, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Args, Debug, Clone, Default)]
pub struct FilterArgs {
    /// Only letters of this kind (validation, mapping, keycrm_rejected, retries_exhausted,
    /// malformed, internal_error, failed_earlier, status_update, max_receives, ...).
    #[arg(long)]
    pub kind: Option<String>,
    /// Only letters of this shop.
    #[arg(long)]
    pub shop: Option<String>,
    /// Only letters whose reason contains this text (case-insensitive).
    #[arg(long)]
    pub reason: Option<String>,
    /// Read at most this many letters.
    #[arg(long)]
    pub limit: Option<usize>,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueArg {
    /// Order events (order-push).
    Orders,
    /// KeyCRM status changes (status-apply).
    Statuses,
    /// Catalog sync jobs (catalog-sync).
    Sync,
    /// Realtime stock flushes (stock-apply).
    Stock,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncKindArg {
    Full,
    Prices,
}
