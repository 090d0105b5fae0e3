//! stock-apply: realtime stock. KeyCRM's stock webhook only signals which offers changed (the
//! receiver records them in a pending set and schedules one delayed flush per window); this
//! function consumes the flush queue, reads the current stock of the signalled offers from
//! KeyCRM 50 at a time below orders' priority, and writes the shop only the variants whose
//! availability changed. Design and guarantees: `docs/stock.md`.
//!
//! The Lambda (`src/main.rs`) feeds SQS batches to [`consumer::handle_sqs_event`]; the local
//! run, the tests and the benchmark run [`consumer::run_queue_consumer`] over any
//! [`queue::Queue`].

pub mod consumer;
pub mod flush;
pub mod handler;
pub mod source;
pub mod wiring;

pub use consumer::{
    handle_sqs_event, poll_once, run_queue_consumer, ConsumerOptions, Settled, Transport,
};
pub use flush::{schedule, FlushEnd, FlushError, FlushReport, Flusher};
pub use handler::{Disposition, RetryPolicy, StockApplier};
// The job and its timing live in the shared `jobs` crate, which the webhook receiver uses too.
pub use jobs::stock::{
    FlushConfig, FlushJob, FlushJobError as JobError, FLUSH_JOB_VERSION as JOB_VERSION,
};
pub use source::{KeycrmStock, SourceError, StockSource};

#[cfg(test)]
mod tests;
