//! What every function's wiring shares: logging, metrics, configuration and per-connection
//! KeyCRM clients. Handlers receive these ready-made, so the same handler code runs on Lambda and in
//! the local runner.

pub mod aws;
pub mod clients;
pub mod config;
pub mod key_store;
pub mod lambda;
#[cfg(any(test, feature = "test-kit"))]
pub mod log_capture;
pub mod media_type;
pub mod metrics;
pub mod platform;
pub mod sqs_batch;
pub mod telemetry;
pub mod token_key;

pub use clients::{ClientsError, KeycrmClients};
pub use config::{env_opt, env_req, ConfigError};
pub use key_store::{key_store, KeyAccess};
pub use platform::{
    admin_token_signing_key_from_env, shop_api_token_from_env, PlatformSecret, PlatformSecretError,
};
pub use token_key::{load_token_key, TokenKeySecretError};
