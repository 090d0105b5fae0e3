//! Re-push: a merchant sends one order again after fixing the mapping.

use queue::{Outgoing, Queue, QueueError};
use store::{LedgerEntry, LedgerState, OrderLedger, StoreError};

/// Marks a re-pushed message (informational; the ledger reset is what lets it through).
pub const REPUSH_ATTRIBUTE: &str = "repush";

#[derive(Debug, thiserror::Error)]
pub enum RepushError {
    #[error("order {0} is not known to this connection")]
    NotFound(String),
    #[error("order {order} is already in KeyCRM ({target} {keycrm_id})")]
    AlreadyInKeycrm {
        order: String,
        target: &'static str,
        keycrm_id: i64,
    },
    #[error("order {0} is being pushed right now; try again in a few minutes")]
    InProgress(String),
    #[error("order {0} has no stored event to send again")]
    NoStoredEvent(String),
    #[error(transparent)]
    Store(StoreError),
    #[error("could not queue the order: {0}")]
    Queue(#[from] QueueError),
}

/// Makes a failed or skipped order claimable again and queues its stored `order.created`
/// event on the order queue; the consumer then creates it as for a new event (searching
/// first if an earlier attempt may have reached KeyCRM). Returns the entry as reset.
pub async fn repush(
    ledger: &dyn OrderLedger,
    order_queue: &dyn Queue,
    connection_id: &str,
    shop_order_id: &str,
) -> Result<LedgerEntry, RepushError> {
    match ledger.get(connection_id, shop_order_id).await {
        Err(e) => return Err(RepushError::Store(e)),
        Ok(None) => return Err(RepushError::NotFound(shop_order_id.to_string())),
        Ok(Some(e)) if e.state == LedgerState::Created => {
            return Err(RepushError::AlreadyInKeycrm {
                order: shop_order_id.to_string(),
                target: e.target.as_str(),
                keycrm_id: e.keycrm_id.unwrap_or_default(),
            })
        }
        Ok(Some(e)) if e.event_json.is_none() => {
            return Err(RepushError::NoStoredEvent(shop_order_id.to_string()))
        }
        Ok(Some(_)) => {}
    }
    let entry = ledger
        .reset_for_repush(connection_id, shop_order_id)
        .await
        .map_err(|e| match e {
            StoreError::NotFound(_) => RepushError::NotFound(shop_order_id.to_string()),
            StoreError::Conflict(_) => RepushError::InProgress(shop_order_id.to_string()),
            other => RepushError::Store(other),
        })?;
    let body = entry
        .event_json
        .clone()
        .ok_or_else(|| RepushError::NoStoredEvent(shop_order_id.to_string()))?;
    order_queue
        .send(Outgoing::new(body).with_attribute(REPUSH_ATTRIBUTE, "1"))
        .await?;
    tracing::info!(connection = %connection_id, order = %shop_order_id, "order re-pushed");
    Ok(entry)
}
