//! Catalog sync: KeyCRM's categories, products and prices into the shop.
//!
//! A schedule tick fans out one [`store::SyncJob`] per connection onto the sync-jobs queue;
//! each job runs one connection's sync within the invocation's time, checkpointing as it
//! goes (`Config::checkpoint_every`) and pausing before the deadline; the resume schedule
//! re-enqueues paused runs.
//! The same queue carries the cleanup of deleted connections ([`cleanup`]).
//! Design: `docs/catalog-sync.md`. Planning rules: [`mapping::catalog`].

pub mod checkpoint;
pub mod cleanup;
mod config;
pub mod drift;
pub mod engine;
mod error;
mod full;
pub mod handler;
#[cfg(any(test, feature = "test-kit"))]
pub mod kit;
pub mod lambda;
mod prices;
mod report;
mod run;
pub mod wiring;

pub use config::Now;
pub use engine::{Config, Deps, Engine, JobOutcome, SyncError, LEASE_SLOT, MAX_GATE_WAIT};
pub use handler::{FanOut, JobMessage, ScheduleInput, ScheduleKind};

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_checkpoint;
#[cfg(test)]
mod tests_fleet;
