//! Settling a received message outside the Lambda batch answer: making it visible again after
//! a backoff, or giving it up into a dead-letter queue with a reason. Every queue consumer
//! settles the same way; only its dead-letter kind and default source name differ.

use crate::{DeadLetter, Queue};
use std::sync::Arc;
use std::time::Duration;

/// Makes the message visible again after `delay` (`source`: the queue it came from; `None`
/// keeps the queue's own visibility timeout, which still brings it back).
pub async fn release_after(source: Option<&Arc<dyn Queue>>, receipt: &str, delay: Duration) {
    if let Some(q) = source {
        if let Err(e) = q.change_visibility(receipt, delay).await {
            tracing::warn!(error = %e, "could not change the message visibility");
        }
    }
}

/// Gives a message up. With a dead-letter queue the message goes there at once with its
/// reason and `true` says it may be deleted; otherwise (or if that write fails) it is made
/// visible at once so the queue's redrive takes it at the next receive, and `false` says
/// to leave it.
pub async fn give_up(
    source: Option<&Arc<dyn Queue>>,
    dead_letter: Option<&Arc<dyn Queue>>,
    kind: &str,
    default_source: &str,
    reason: String,
    receipt: &str,
    body: &str,
) -> bool {
    if let Some(dlq) = dead_letter {
        let name = source.map_or(default_source, |q| q.name());
        let letter = DeadLetter::new(kind, reason, name, body);
        match dlq.send(letter.to_outgoing()).await {
            Ok(_) => return true,
            Err(e) => {
                tracing::error!(error = %e, "could not write the dead letter; leaving the message for the redrive");
            }
        }
    }
    release_after(source, receipt, Duration::ZERO).await;
    false
}
