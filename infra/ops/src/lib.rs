//! `ops`: the operator's command-line tool for a shop-keycrm deployment (not the merchant's:
//! that is the admin API). It works through the same store and queue crates the functions
//! use, against a real stage (AWS profile) or the emulator. Commands and their use:
//! `docs/operations.md`.

pub mod cli;
pub mod dlq;
pub mod error;
pub mod inspect;
pub mod letters;
pub mod progress;
pub mod sync;
pub mod target;

pub use error::OpsError;

use cli::{Cli, Command, DlqAction};
use store::DynamoTable;
use target::Target;
use tokio::sync::OnceCell;

/// What a command prints: text for people, JSON for scripts (`--json`).
#[derive(Debug)]
pub struct Output {
    pub text: String,
    pub json: serde_json::Value,
}

/// A deployment and its resources, each resolved (and checked) once, when first needed.
pub struct Ops {
    pub target: Target,
    table: OnceCell<DynamoTable>,
}

impl Ops {
    pub fn new(target: Target) -> Self {
        Ops {
            target,
            table: OnceCell::new(),
        }
    }

    pub async fn table(&self) -> Result<DynamoTable, OpsError> {
        self.table
            .get_or_try_init(|| self.target.table())
            .await
            .cloned()
    }
}

/// Runs one command line.
pub async fn run(cli: Cli) -> Result<Output, OpsError> {
    let ops = Ops::new(Target::new(cli.target.clone()).await?);
    match &cli.command {
        Command::Connections { failing, limit } => {
            inspect::connections(&ops, *failing, *limit).await
        }
        Command::Connection { shop } => inspect::connection(&ops, shop).await,
        Command::Order {
            shop,
            order_id,
            keycrm,
        } => inspect::order(&ops, shop, order_id, *keycrm).await,
        Command::Dlq { action } => match action {
            DlqAction::Show {
                queue,
                filter,
                body,
            } => dlq::show(&ops, *queue, filter, *body).await,
            DlqAction::Redrive {
                queue,
                filter,
                dry_run,
            } => dlq::redrive(&ops, *queue, filter, *dry_run).await,
        },
        Command::Sync {
            shop,
            dry_run,
            kind,
        } => sync::start(&ops, shop, *kind, *dry_run).await,
        Command::Runs { shop, limit } => inspect::runs(&ops, shop, *limit).await,
    }
}
