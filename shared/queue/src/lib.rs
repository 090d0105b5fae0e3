//! The queue port: order events in, deferred retries, dead letters out. SQS in AWS (and on the
//! moto emulator in tests), an in-memory queue with the same visibility and redrive rules for
//! unit tests and the local run.

pub mod consume;
mod dead_letter;
mod memory;
pub mod settle;
mod sqs;

pub use dead_letter::DeadLetter;
pub use memory::{MemoryQueue, Redrive};
pub use sqs::SqsQueue;

use async_trait::async_trait;
use std::collections::HashMap;
use std::time::Duration;

/// SQS caps a message delay at 15 minutes.
pub const MAX_DELAY: Duration = Duration::from_secs(900);

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue {queue} does not exist")]
    NoSuchQueue { queue: String },
    #[error("receipt handle is no longer valid")]
    InvalidReceipt,
    #[error("queue unavailable: {0}")]
    Unavailable(String),
}

/// A received message.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub id: String,
    pub body: String,
    /// Handle for delete / change-visibility; valid only for this receive.
    pub receipt: String,
    /// How many times the queue has handed this message out (1 on first delivery).
    pub receive_count: u32,
    pub attributes: HashMap<String, String>,
}

impl Message {
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes.get(name).map(String::as_str)
    }
}

/// An outgoing message.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outgoing {
    pub body: String,
    pub delay: Duration,
    pub attributes: HashMap<String, String>,
}

impl Outgoing {
    pub fn new(body: impl Into<String>) -> Self {
        Outgoing {
            body: body.into(),
            ..Self::default()
        }
    }

    pub fn delayed(mut self, delay: Duration) -> Self {
        self.delay = delay.min(MAX_DELAY);
        self
    }

    pub fn with_attribute(mut self, name: &str, value: impl Into<String>) -> Self {
        self.attributes.insert(name.to_string(), value.into());
        self
    }
}

#[async_trait]
pub trait Queue: Send + Sync {
    /// A human-readable name for logs and reports.
    fn name(&self) -> &str;
    async fn send(&self, msg: Outgoing) -> Result<String, QueueError>;
    /// Long-polls up to `wait` for at most `max` (1..=10) messages, hiding them for `visibility`.
    async fn receive(
        &self,
        max: usize,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<Message>, QueueError>;
    async fn delete(&self, receipt: &str) -> Result<(), QueueError>;
    async fn change_visibility(&self, receipt: &str, timeout: Duration) -> Result<(), QueueError>;
    /// Messages waiting (visible or delayed), for status pages and tests; approximate on SQS.
    async fn approximate_len(&self) -> Result<usize, QueueError>;
}
