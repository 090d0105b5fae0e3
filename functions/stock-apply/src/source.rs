//! Where current stock comes from: the [`StockSource`] port and its KeyCRM adapter, which
//! reads `GET /offers/stocks?filter[offers_id]=…` (50 offers a request) at background
//! priority, so order pushes on the same key always get their requests first.

use async_trait::async_trait;
use keycrm::{KeycrmError, Priority};
use runtime::{ClientsError, KeycrmClients};
use rust_decimal::Decimal;
use std::collections::HashMap;
use std::sync::Arc;
use store::Connection;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The merchant must replace the key; retrying will not help.
    #[error("KeyCRM rejected the API key")]
    Unauthorized,
    /// 5xx, 429 after the client's retries, timeouts, the rate gate or the secret store.
    #[error("KeyCRM stock could not be read: {0}")]
    Unavailable(String),
    /// Anything else KeyCRM refused or answered oddly; repeating the same request will not help.
    #[error("KeyCRM stock could not be read: {0}")]
    Refused(String),
}

impl SourceError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, SourceError::Unavailable(_))
    }
}

/// Current availability of offers.
#[async_trait]
pub trait StockSource: Send + Sync {
    /// `offer id → available` (`quantity - reserve > 0` over all warehouses) for those of
    /// `offers` (at most 50) KeyCRM knows.
    async fn available(
        &self,
        conn: &Connection,
        offers: &[i64],
    ) -> Result<HashMap<i64, bool>, SourceError>;
}

/// The KeyCRM adapter.
pub struct KeycrmStock {
    pub clients: Arc<KeycrmClients>,
}

fn from_keycrm(e: KeycrmError) -> SourceError {
    match e {
        KeycrmError::Unauthorized => SourceError::Unauthorized,
        e if e.is_retryable() => SourceError::Unavailable(e.to_string()),
        e => SourceError::Refused(e.to_string()),
    }
}

#[async_trait]
impl StockSource for KeycrmStock {
    async fn available(
        &self,
        conn: &Connection,
        offers: &[i64],
    ) -> Result<HashMap<i64, bool>, SourceError> {
        let client = self
            .clients
            .for_connection(conn)
            .await
            .map_err(|e| match e {
                ClientsError::Keycrm(k) => from_keycrm(k),
                other => SourceError::Unavailable(other.to_string()),
            })?
            .with_priority(Priority::Background);
        let mut out = HashMap::with_capacity(offers.len());
        let mut pages = client.offer_stocks(offers);
        while let Some(page) = pages.next_page().await.map_err(from_keycrm)? {
            for s in page.data {
                out.insert(s.id, s.available() > Decimal::ZERO);
            }
        }
        Ok(out)
    }
}
