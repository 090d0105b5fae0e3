//! The pure heart of the connector: settings and their validation, the order event contract,
//! and the rules that turn shop orders into KeyCRM orders or cards. No I/O lives here.

pub mod catalog;
pub mod events;
pub mod lang;
pub mod order_map;
pub mod phone;
pub mod reference;
pub mod schedule;
pub mod settings;
pub mod settings_limits;
pub mod settings_problem;
pub mod shop;
pub mod source_key;
pub mod status_map;
pub mod stock;
pub mod sync_enabled;

#[cfg(test)]
mod testdata;

pub use events::{parse_event, EventBody, EventError, OrderEvent, ShopOrder, StatusChange};
pub use lang::Lang;
pub use reference::{KeycrmReference, PipelineWithStatuses, SettingsOptions};
pub use settings::{FieldError, MatchKey, OrderSyncType, Settings};
pub use settings_problem::{Issue, Problem};
pub use sync_enabled::CatalogSyncKind;
