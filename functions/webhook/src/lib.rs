//! webhook: the receiver for KeyCRM trigger webhooks (`order.change_order_status`,
//! `lead.change_lead_status`). It authenticates the token in the URL, validates the body and
//! hands a compact status job to the status queue, answering 200 within a few milliseconds;
//! `status-apply` does the rest. Policy and design: `docs/webhooks.md`. The connection's
//! third URL takes KeyCRM's stock webhook (`stock.rs`, `docs/stock.md`).

pub mod payload;
pub mod receiver;
mod router;
pub mod stock;
pub mod wiring;

pub use payload::{Delivery, Event, PayloadError, StatusChange};
pub use receiver::{Receiver, Reply, MAX_BODY, ROUTE};
pub use router::router;
pub use stock::{StockBodyError, StockIntake, MAX_STOCK_BODY, MAX_STOCK_ITEMS};

#[cfg(test)]
mod stock_tests;
#[cfg(test)]
mod tests;
