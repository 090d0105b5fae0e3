//! The one KeyCRM call status-apply makes: reading an order back before adopting it into the
//! ledger (a webhook's `source_uuid` is only a claim; the order in KeyCRM is the proof).

use async_trait::async_trait;
use keycrm::KeycrmError;
use runtime::{ClientsError, KeycrmClients};
use std::sync::Arc;
use store::Connection;

/// Where a KeyCRM order came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderOrigin {
    pub source_id: Option<i64>,
    pub source_uuid: Option<String>,
}

#[async_trait]
pub trait KeycrmOrders: Send + Sync {
    /// `GET /order/{id}` of the connection's account; `None` when KeyCRM has no such order.
    async fn order_origin(
        &self,
        conn: &Connection,
        order_id: i64,
    ) -> Result<Option<OrderOrigin>, KeycrmError>;
}

/// The production reader: the connection's KeyCRM client (its key from the secret store,
/// paced by the shared per-key gate), refusing a secret outside this deployment's prefix.
pub struct KeycrmOrigins {
    pub clients: Arc<KeycrmClients>,
    pub secret_prefix: Option<String>,
}

#[async_trait]
impl KeycrmOrders for KeycrmOrigins {
    async fn order_origin(
        &self,
        conn: &Connection,
        order_id: i64,
    ) -> Result<Option<OrderOrigin>, KeycrmError> {
        if let Some(prefix) = &self.secret_prefix {
            if !conn.secret_name.starts_with(prefix.as_str()) {
                tracing::error!(connection = %conn.id, "connection secret is outside this deployment's prefix");
                return Err(KeycrmError::Unauthorized);
            }
        }
        let client = match self.clients.for_connection(conn).await {
            Ok(c) => c,
            Err(ClientsError::MissingKey(_)) => return Err(KeycrmError::Unauthorized),
            Err(ClientsError::Keycrm(e)) => return Err(e),
            Err(ClientsError::Store(e)) => {
                return Err(KeycrmError::Transient {
                    status: None,
                    detail: format!("reading the API key: {e}"),
                    maybe_committed: false,
                })
            }
        };
        match client.get_order_row(order_id).await {
            Ok(o) => Ok(Some(OrderOrigin {
                source_id: o.source_id,
                source_uuid: o.source_uuid,
            })),
            Err(KeycrmError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
