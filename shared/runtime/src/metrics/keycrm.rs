//! The KeyCRM client's observer (`keycrm::RequestObserver`): the one place KeyCRM traffic is
//! counted, whichever function or caller sends it.

use super::catalog::{
    KEYCRM_LATENCY, KEYCRM_RATE_LIMITED, KEYCRM_REQUESTS, RATE_GATE_REFUSED, RATE_GATE_WAIT,
};
use keycrm::{RequestObserver, RequestOutcome};
use std::time::Duration;

/// Counts into the current invocation; with a connection id, also that connection's usage.
#[derive(Clone, Debug, Default)]
pub struct KeycrmMeter {
    connection_id: Option<String>,
}

impl KeycrmMeter {
    /// For a client of a stored connection (its usage goes to its status).
    pub fn for_connection(connection_id: &str) -> Self {
        KeycrmMeter {
            connection_id: Some(connection_id.to_string()),
        }
    }

    /// For a client of a key not stored yet (validating a key on connect).
    pub fn unattributed() -> Self {
        KeycrmMeter::default()
    }
}

impl RequestObserver for KeycrmMeter {
    fn request(&self, outcome: RequestOutcome, elapsed: Duration) {
        super::count(&KEYCRM_REQUESTS, &[outcome.as_str()], 1);
        let limited = outcome == RequestOutcome::RateLimited;
        if limited {
            super::count(&KEYCRM_RATE_LIMITED, &[], 1);
        }
        super::observe(&KEYCRM_LATENCY, &[], elapsed);
        if let Some(c) = &self.connection_id {
            super::keycrm_usage(c, limited);
        }
    }

    fn gate_wait(&self, waited: Duration) {
        super::observe(&RATE_GATE_WAIT, &[], waited);
    }

    fn gate_refused(&self) {
        super::count(&RATE_GATE_REFUSED, &[], 1);
    }
}
