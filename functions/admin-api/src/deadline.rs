//! Every admin request answers within its deadline, whatever KeyCRM (or the shop platform)
//! does.
//!
//! API Gateway gives up on a request after 30 s and shows the merchant a bare 503. KeyCRM can
//! be slower than that: the key's budget may be taken by other work (the rate gate queues us),
//! a read may be retried after 5xx or a 429's `Retry-After`, a request may hang until its own
//! timeout. So the router stamps each request with a deadline on arrival, and every step that
//! waits on KeyCRM or the shop runs under it ([`Deadline::upstream`]). Inside, the KeyCRM
//! client knows the deadline too (`keycrm::deadline`): it books no rate-gate slot it could not
//! use in time (and says when the next one is), and no request or retry pause outlives it. A
//! step that cannot finish in time is dropped before anything is written and the request
//! answers `503 keycrm_busy` with `Retry-After`, well inside the gateway's limit. Writes to our
//! own storage come after the upstream steps and keep [`WRITE_RESERVE`] of the budget.

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;

/// The whole-request budget by default: API Gateway's 30 s minus a margin for Lambda's own
/// overhead and the network.
pub const DEFAULT_REQUEST_DEADLINE: Duration = Duration::from_secs(25);
/// Kept back from the upstream steps for the storage writes that follow them.
pub const WRITE_RESERVE: Duration = Duration::from_secs(3);
/// What the merchant is told to wait when KeyCRM did not answer in time and said nothing
/// better: about half a KeyCRM rate window, by when a queue of other work has moved on.
pub const RETRY_AFTER_TIMEOUT: Duration = Duration::from_secs(30);

/// Within this of the deadline, a KeyCRM transport failure is the deadline's doing: the client
/// starts no request with less than 2 s left and cuts a running one at the deadline.
const CUT_SHORT: Duration = Duration::from_millis(2_500);

/// The instant by which the upstream part of a request must be done.
#[derive(Clone, Copy, Debug)]
pub struct Deadline {
    upstream_by: Instant,
}

impl Deadline {
    /// A deadline for a request arriving now with the given whole-request budget.
    pub fn for_request(budget: Duration) -> Self {
        let upstream = budget
            .saturating_sub(WRITE_RESERVE)
            .max(Duration::from_secs(1));
        Deadline {
            upstream_by: Instant::now() + upstream,
        }
    }

    /// Time left for waiting on KeyCRM or the shop.
    pub fn remaining(&self) -> Duration {
        self.upstream_by.saturating_duration_since(Instant::now())
    }

    /// Runs a step that waits on KeyCRM or the shop. If the deadline passes first, the step
    /// is dropped (nothing it would have written is written) and the answer is
    /// `503 keycrm_busy`.
    pub async fn upstream<T>(&self, step: impl Future<Output = ApiResult<T>>) -> ApiResult<T> {
        let scoped = keycrm::deadline::scope(Some(self.upstream_by.into_std()), step);
        match tokio::time::timeout_at(self.upstream_by, scoped).await {
            // A KeyCRM request cut short by the deadline (or not started for lack of time)
            // is KeyCRM being too slow for this request, not KeyCRM being unreachable.
            Ok(Err(e)) if e.code == "keycrm_unreachable" && self.remaining() < CUT_SHORT => {
                tracing::warn!("KeyCRM did not answer within the admin request's deadline");
                Err(ApiError::keycrm_busy(RETRY_AFTER_TIMEOUT))
            }
            Ok(result) => result,
            Err(_) => {
                tracing::warn!(
                    "KeyCRM or the shop did not answer within the admin request's deadline"
                );
                Err(ApiError::keycrm_busy(RETRY_AFTER_TIMEOUT))
            }
        }
    }
}

/// Router middleware: stamps the request with its deadline as it arrives.
pub async fn stamp(State(api): State<AppState>, mut req: Request, next: Next) -> Response {
    req.extensions_mut()
        .insert(Deadline::for_request(api.config.request_deadline));
    next.run(req).await
}

impl<S: Send + Sync> FromRequestParts<S> for Deadline {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        Ok(parts
            .extensions
            .get::<Deadline>()
            .copied()
            .unwrap_or_else(|| Deadline::for_request(DEFAULT_REQUEST_DEADLINE)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_step_that_outlives_the_deadline_is_cut_with_keycrm_busy() {
        let d = Deadline::for_request(Duration::from_secs(10));
        assert_eq!(d.remaining(), Duration::from_secs(7));
        let slow = async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok::<_, ApiError>(())
        };
        let started = Instant::now();
        let err = d.upstream(slow).await.unwrap_err();
        assert_eq!(started.elapsed(), Duration::from_secs(7));
        assert_eq!(err.code, "keycrm_busy");
        assert_eq!(err.status.as_u16(), 503);
        assert_eq!(err.retry_after, Some(30));
    }

    #[tokio::test(start_paused = true)]
    async fn a_step_in_time_keeps_its_own_result() {
        let d = Deadline::for_request(Duration::from_secs(10));
        let fast = async {
            tokio::time::sleep(Duration::from_secs(2)).await;
            Err::<(), _>(ApiError::not_connected())
        };
        assert_eq!(d.upstream(fast).await.unwrap_err().code, "not_connected");
    }
}
