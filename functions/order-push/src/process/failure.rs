//! How an order that could not be created settles: KeyCRM's answer read as permanent or
//! transient, the claim given back for a retry, or the order failed with a reason the
//! merchant sees.

use super::*;

impl OrderPush {
    pub(super) async fn on_keycrm_error(
        &self,
        c: &Claimed<'_>,
        attempt: u32,
        e: KeycrmError,
        maybe_before: bool,
        doing: &str,
    ) -> Decision {
        match e {
            KeycrmError::Validation { ref errors, .. } => {
                // The dictionaries may be what is out of date: reload them next time.
                self.dictionaries.invalidate(&c.conn.id).await;
                let reason = format!("KeyCRM refused the order: {e}");
                self.fail_order(c, "validation", reason, errors).await
            }
            KeycrmError::RateLimited { retry_after } => {
                self.give_back(
                    c,
                    attempt,
                    &e.to_string(),
                    maybe_before,
                    Some(retry_after),
                    "rate_limited",
                )
                .await
            }
            KeycrmError::Transient {
                maybe_committed, ..
            } => {
                let why = format!("{doing}: {e}");
                self.give_back(
                    c,
                    attempt,
                    &why,
                    maybe_before || maybe_committed,
                    None,
                    "keycrm_unavailable",
                )
                .await
            }
            KeycrmError::Protocol { .. } => {
                // An unreadable answer to a create may hide a created order.
                let maybe = maybe_before || c.progress.has_sent().unwrap_or(true);
                self.give_back(
                    c,
                    attempt,
                    &format!("{doing}: {e}"),
                    maybe,
                    None,
                    "keycrm_unavailable",
                )
                .await
            }
            KeycrmError::Unauthorized
            | KeycrmError::Forbidden { .. }
            | KeycrmError::BadRequest { .. }
            | KeycrmError::NotFound { .. } => {
                let reason = format!("KeyCRM refused {doing}: {e}");
                self.fail_order(c, "keycrm_rejected", reason, &no_fields())
                    .await
            }
        }
    }

    /// Releases the claim and defers; once the attempts are used up, fails the order instead.
    pub(super) async fn give_back(
        &self,
        c: &Claimed<'_>,
        attempt: u32,
        reason: &str,
        maybe_committed: bool,
        retry_after: Option<Duration>,
        label: &'static str,
    ) -> Decision {
        if !self.config.retry.may_defer(attempt) {
            let why = format!("retries exhausted after {attempt} attempts: {reason}");
            return self
                .fail_order(c, "retries_exhausted", why, &no_fields())
                .await;
        }
        if let Err(e) = self
            .ledger
            .release(&c.conn.id, &c.order.id, &c.holder, reason, maybe_committed)
            .await
        {
            tracing::warn!(order = %c.order.id, error = %e, "could not release the claim; it expires with its lease");
        }
        c.progress.clear();
        self.defer(attempt, retry_after, label, reason)
    }

    /// Records a permanent failure (ledger, journal) and dead-letters the event.
    pub(super) async fn fail_order(
        &self,
        c: &Claimed<'_>,
        kind: &'static str,
        reason: String,
        field_errors: &BTreeMap<String, Vec<String>>,
    ) -> Decision {
        if let Err(e) = self
            .ledger
            .mark_failed(&c.conn.id, &c.order.id, &c.holder, &reason, field_errors)
            .await
        {
            tracing::warn!(order = %c.order.id, error = %e, "could not record the failure in the ledger");
        }
        c.progress.clear();
        self.journal_failure(&c.conn.id, &c.order.id, &reason, field_errors, &c.progress)
            .await;
        Decision::DeadLetter {
            kind,
            reason,
            shop_id: Some(c.event.shop_id.clone()),
            order_id: Some(c.order.id.clone()),
        }
    }

    pub(super) async fn journal_failure(
        &self,
        connection_id: &str,
        shop_order_id: &str,
        reason: &str,
        field_errors: &BTreeMap<String, Vec<String>>,
        progress: &Progress,
    ) {
        let failure = OrderFailure {
            shop_order_id: shop_order_id.to_string(),
            at: Utc::now(),
            reason: reason.to_string(),
            field_errors: field_errors.clone(),
        };
        if let Err(e) = self.journal.record_failure(connection_id, &failure).await {
            tracing::warn!(connection = %connection_id, error = %e, "could not record the failure in the journal");
        }
        progress.count(connection_id, Counter::OrdersFailed);
    }
}
