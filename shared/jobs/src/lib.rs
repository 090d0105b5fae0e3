//! The messages one function hands another through a queue, and the operations that queue
//! them. Producers and consumers both build on this crate, so no function depends on another:
//! the webhook receiver writes [`StatusJob`]s that status-apply reads and [`stock::FlushJob`]s
//! that stock-apply reads, and [`repush`] (the
//! admin API's and the operator CLI's "send this order again") queues what order-push consumes.

mod repush;
mod status;
pub mod stock;

pub use repush::{repush, RepushError, REPUSH_ATTRIBUTE};
pub use status::{JobError, StatusJob, JOB_VERSION};
