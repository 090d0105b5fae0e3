//! A port through which the client reports what each request did, so operations can count
//! KeyCRM traffic, 429s and rate-gate waits without every caller doing it. The client calls it
//! once per request attempt; the adapter (`runtime::metrics`) turns the reports into metrics
//! and into per-connection usage on the connection's status.

use crate::KeycrmError;
use std::time::Duration;

/// What one request attempt came to, in a low-cardinality label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestOutcome {
    /// 2xx.
    Ok,
    /// 429.
    RateLimited,
    /// Any other 4xx (validation, not found, unauthorized...): the request was wrong.
    ClientError,
    /// 5xx, timeouts, dropped connections, unreadable answers.
    ServerError,
}

impl RequestOutcome {
    pub fn of(result: Result<(), &KeycrmError>) -> Self {
        match result {
            Ok(()) => RequestOutcome::Ok,
            Err(KeycrmError::RateLimited { .. }) => RequestOutcome::RateLimited,
            Err(KeycrmError::Transient { .. } | KeycrmError::Protocol { .. }) => {
                RequestOutcome::ServerError
            }
            Err(_) => RequestOutcome::ClientError,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RequestOutcome::Ok => "ok",
            RequestOutcome::RateLimited => "rate_limited",
            RequestOutcome::ClientError => "client_error",
            RequestOutcome::ServerError => "server_error",
        }
    }
}

/// Receives the client's reports. Implementations must be cheap and never fail: they run on
/// every request.
pub trait RequestObserver: Send + Sync + std::fmt::Debug {
    /// A request was sent and answered (or failed on the way) after `elapsed`.
    fn request(&self, outcome: RequestOutcome, elapsed: Duration);
    /// The rate gate granted a slot after the caller waited `waited` for it.
    fn gate_wait(&self, waited: Duration);
    /// The rate gate had no slot for the key before the work's deadline: nothing was sent and
    /// the caller got a rate-limited error to defer with.
    fn gate_refused(&self);
}
