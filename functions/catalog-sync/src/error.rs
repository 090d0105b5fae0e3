//! How a sync step can fail, and what each failure means for the run.

use keycrm::KeycrmError;
use runtime::ClientsError;
use shop::ShopError;
use store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("KeyCRM: {0}")]
    Keycrm(#[from] KeycrmError),
    #[error("shop: {0}")]
    Shop(#[from] ShopError),
    #[error(transparent)]
    Clients(#[from] ClientsError),
    #[error("the sync lease was lost to another run")]
    LeaseLost,
    #[error("queue: {0}")]
    Queue(#[from] queue::QueueError),
}

impl SyncError {
    /// Errors a later attempt will not fix: the run ends as failed.
    pub(crate) fn is_fatal(&self) -> bool {
        match self {
            SyncError::Keycrm(e) => !matches!(
                e,
                KeycrmError::RateLimited { .. } | KeycrmError::Transient { .. }
            ),
            SyncError::Shop(e) => matches!(e, ShopError::Unauthorized),
            SyncError::Clients(ClientsError::MissingKey(_)) => true,
            SyncError::Clients(ClientsError::Keycrm(e)) => !matches!(
                e,
                KeycrmError::Transient { .. } | KeycrmError::RateLimited { .. }
            ),
            SyncError::Store(StoreError::Corrupt(_)) => true,
            _ => false,
        }
    }

    /// The key's budget has no slot soon (the gate's answer, or KeyCRM's 429 after the
    /// client's retries): how long until it may have one. Not a failure of the run.
    pub(crate) fn budget_wait(&self) -> Option<std::time::Duration> {
        match self {
            SyncError::Keycrm(KeycrmError::RateLimited { retry_after })
            | SyncError::Clients(ClientsError::Keycrm(KeycrmError::RateLimited { retry_after })) => {
                Some(*retry_after)
            }
            _ => None,
        }
    }

    pub(crate) fn lost(&self) -> bool {
        matches!(
            self,
            SyncError::LeaseLost | SyncError::Store(StoreError::Conflict(_))
        )
    }
}
