//! KeyCRM Open API client: typed models, an error taxonomy a caller can act on, paced and
//! retried requests, and streamed pagination.

pub mod client;
pub mod deadline;
pub mod error;
pub mod gate;
pub mod observe;
pub mod retry;
pub mod secret;

/// The wire models live in `keycrm-model` (serde only, so the pure domain can use them without
/// this client's HTTP stack); re-exported here at their historical paths.
pub use keycrm_model::{models, money, time};

pub use client::{
    CardFilter, ClientConfig, ClientStats, KeycrmClient, OfferFilter, Pages, ProductFilter,
    DEFAULT_BASE_URL, PAGE_LIMIT,
};
pub use error::KeycrmError;
pub use gate::{GateError, LocalRateGate, Priority, RateBudget, RateGate, Slot, UnlimitedGate};
pub use observe::{RequestObserver, RequestOutcome};
pub use retry::RetryPolicy;
pub use secret::ApiKey;
