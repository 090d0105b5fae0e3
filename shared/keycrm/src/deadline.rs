//! The deadline of the work a KeyCRM call belongs to.
//!
//! A Lambda invocation has a hard end: work still running then is killed, and SQS delivers the
//! whole batch again. Every KeyCRM call made while processing one message must therefore fit
//! in what is left of that message's time: the rate-gate wait (a busy key can book slots a
//! minute ahead), the request itself and any retry pause. The consumer sets the deadline once
//! around a message's processing with [`scope`]; the client reads it with [`current`] and
//! refuses to wait, send or retry past it. Outside any scope (the settings page, tools) there
//! is no deadline and the client's own timeouts apply.

use std::future::Future;
use std::time::{Duration, Instant};

tokio::task_local! {
    static DEADLINE: Instant;
}

/// Runs `work` with `deadline` as the end of every KeyCRM call made inside it. A scope inside
/// another keeps the earlier of the two deadlines.
pub async fn scope<F: Future>(deadline: Option<Instant>, work: F) -> F::Output {
    let effective = match (current(), deadline) {
        (Some(outer), Some(inner)) => Some(outer.min(inner)),
        (outer, inner) => inner.or(outer),
    };
    match effective {
        Some(d) => DEADLINE.scope(d, work).await,
        None => work.await,
    }
}

/// The deadline of the current work, if one was set.
pub fn current() -> Option<Instant> {
    DEADLINE.try_with(|d| *d).ok()
}

/// Time left before the current deadline (`None`: no deadline).
pub fn remaining() -> Option<Duration> {
    current().map(|d| d.saturating_duration_since(Instant::now()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn scopes_nest_to_the_earlier_deadline() {
        assert_eq!(current(), None);
        let soon = Instant::now() + Duration::from_secs(5);
        let later = soon + Duration::from_secs(60);
        scope(Some(soon), async {
            assert_eq!(current(), Some(soon));
            scope(Some(later), async { assert_eq!(current(), Some(soon)) }).await;
            scope(None, async { assert_eq!(current(), Some(soon)) }).await;
            assert!(remaining().unwrap() <= Duration::from_secs(5));
        })
        .await;
        scope(Some(later), async {
            scope(Some(soon), async { assert_eq!(current(), Some(soon)) }).await;
        })
        .await;
        scope(None, async { assert_eq!(current(), None) }).await;
    }
}
