//! The KeyCRM Open API's request and response shapes, and the money and timestamp formats
//! they use, with nothing but serde underneath.
//!
//! Split from the `keycrm` client so the pure domain (`mapping`) can speak in KeyCRM's types
//! without pulling in an HTTP client or an async runtime. Keep it that way: no reqwest, tokio,
//! rand or anything doing I/O belongs in this crate. `keycrm` re-exports these modules at
//! `keycrm::models`, `keycrm::money` and `keycrm::time`.

pub mod models;
pub mod money;
pub mod time;
