//! Storage ports and their adapters. One DynamoDB table holds everything (layout in
//! `DATA_MODEL.md`); in-memory adapters serve unit tests and the local run.

pub mod aws_error;
pub mod batch;
pub mod connection;
pub mod dynamo;
pub mod envelope;
mod error;
pub mod gate;
pub mod journal;
pub mod ledger;
mod ledger_dynamo;
mod ledger_memory;
pub mod links;
mod offer_index;
pub mod reference_cache;
pub mod reference_cache_dynamo;
mod reference_cache_memory;
pub mod secrets;
pub mod stock;
mod stock_memory;
pub mod sync;
mod sync_dynamo;
mod sync_memory;
pub mod tokens;

pub use connection::{
    CleanupJob, Connection, ConnectionStore, MemoryConnections, WebhookGenerations, WebhookKind,
    WebhookTokens, CLEANUP_GRACE,
};
pub use dynamo::DynamoTable;
pub use envelope::EnvelopeSecrets;
pub use error::StoreError;
pub use gate::DynamoRateGate;
pub use journal::{
    ConnectionStatus, Counter, MemoryJournal, OrderFailure, StatusJournal, SyncSummary,
};
pub use ledger::{Claim, LedgerEntry, LedgerState, OrderLedger, PushReservation, Target};
pub use ledger_memory::MemoryLedger;
pub use links::{LinkStore, MemoryLinks, SeenSet};
pub use reference_cache::ReferenceCache;
pub use reference_cache_memory::MemoryReferenceCache;
pub use secrets::{MemorySecrets, SecretStore, SecretsManager};
pub use stock::{StockStore, StockWindow};
pub use stock_memory::MemoryStock;
pub use sync::{
    ReportItem, RequestedBy, RunState, SyncJob, SyncKind, SyncLease, SyncRun, SyncStore,
};
pub use sync_memory::MemorySync;
pub use tokens::TokenKey;
