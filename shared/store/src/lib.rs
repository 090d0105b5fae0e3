//! Storage ports and their adapters. One DynamoDB table holds everything (layout in
//! `DATA_MODEL.md`); in-memory adapters serve unit tests and the local run.
//!
//! One layout throughout: `x.rs` holds a port (its trait, its types and the rules every
//! adapter shares), and its adapters sit beside it by technology in `x/dynamo.rs`,
//! `x/memory.rs` (and `secrets/kms.rs`, `secrets/secrets_manager.rs`). What every DynamoDB
//! adapter needs (the table, attribute helpers, partition keys, batches) is in `dynamo`.

pub mod aws_error;
pub mod connection;
pub mod dynamo;
mod error;
pub mod gate;
pub mod journal;
pub mod ledger;
pub mod links;
pub mod reference_cache;
pub mod sdk_config;
pub mod secrets;
pub mod stock;
pub mod sync;
pub mod tokens;

pub use connection::{
    CleanupJob, Connection, ConnectionStore, MemoryConnections, WebhookGenerations, WebhookKind,
    WebhookTokens, CLEANUP_GRACE,
};
pub use dynamo::DynamoTable;
pub use error::StoreError;
pub use gate::DynamoRateGate;
pub use journal::{
    ConnectionStatus, Counter, MemoryJournal, OrderFailure, StatusJournal, SyncSummary,
};
pub use ledger::{
    Claim, LedgerEntry, LedgerState, MemoryLedger, OrderLedger, PushReservation, Target,
};
pub use links::{LinkStore, MemoryLinks, SeenSet};
pub use reference_cache::{
    CachedDictionaries, DictionaryCache, MemoryDictionaryCache, MemoryReferenceCache,
    ReferenceCache,
};
pub use secrets::{EnvelopeSecrets, MemorySecrets, SecretStore, SecretsManager};
pub use stock::{MemoryStock, StockStore, StockWindow};
pub use sync::{
    MemorySync, ReportItem, RequestedBy, RunState, SyncJob, SyncKind, SyncLease, SyncRun, SyncStore,
};
pub use tokens::TokenKey;
