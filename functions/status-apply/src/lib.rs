//! status-apply: consumes the status-update queue the webhook receiver fills and applies each
//! KeyCRM status change to the shop order: resolve the order through the ledger (or adopt it
//! by `source_uuid`), map the status with the connection's settings, record it in the ledger
//! (dedupe, ordering, echo guard), then set it through the shop port. Shop outages are
//! retried with backoff; what cannot be applied ends in the dead-letter queue with a reason.
//!
//! The Lambda (`src/main.rs`, [`wiring`]) feeds SQS batches to [`consumer::handle_sqs_event`]; the local
//! runner and the tests run [`consumer::run_queue_consumer`] over any [`queue::Queue`].

pub mod apply;
pub mod consumer;
pub mod keycrm_read;
pub mod wiring;

pub use apply::{Disposition, IgnoreReason, Outcome, RetryPolicy, StatusApplier};
pub use consumer::{
    handle_sqs_event, poll_once, queue_url_from_arn, run_queue_consumer, ConsumerOptions, Settled,
    Transport,
};
/// The job format lives in `jobs` (the webhook writes it without depending on this crate).
pub use jobs::{JobError, StatusJob, JOB_VERSION};
pub use keycrm_read::{KeycrmOrders, KeycrmOrigins, OrderOrigin};

#[cfg(test)]
mod tests;
