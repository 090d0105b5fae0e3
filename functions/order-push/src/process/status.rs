//! `order.status_changed`: a shop order's new status pushed to the KeyCRM order or card the
//! ledger knows it as.

use super::*;

impl OrderPush {
    pub(super) async fn on_status(
        &self,
        attempt: u32,
        event: &OrderEvent,
        change: &StatusChange,
        conn: &Connection,
        progress: &Progress,
    ) -> Decision {
        let order_id = &change.order_id;
        if !conn.active || !conn.settings.order_sync_on() {
            return skipped(
                "inactive",
                "the connection is inactive or its order sync is off",
            );
        }
        let entry = match self.ledger.get(&conn.id, order_id).await {
            Ok(e) => e,
            Err(e) => {
                return self.defer(
                    attempt,
                    None,
                    "store_unavailable",
                    &format!("order ledger unavailable: {e}"),
                )
            }
        };
        let Some(entry) = entry else {
            if attempt < self.config.retry.unknown_order_attempts {
                return self.defer(
                    attempt,
                    None,
                    "not_known_yet",
                    "the order is not known yet (its creation may be on the way)",
                );
            }
            return skipped(
                "unknown_order",
                format!(
                    "order {order_id} was never pushed by this connector; status change dropped"
                ),
            );
        };
        match entry.state {
            LedgerState::Pending => {
                return self.defer(
                    attempt,
                    None,
                    "not_created_yet",
                    "the order is not in KeyCRM yet",
                )
            }
            LedgerState::Failed | LedgerState::Skipped => {
                return skipped(
                    "not_in_keycrm",
                    format!(
                        "order {order_id} is not in KeyCRM ({:?}); status change dropped",
                        entry.state
                    ),
                )
            }
            LedgerState::Created => {}
        }
        let Some(keycrm_id) = entry.keycrm_id else {
            return skipped(
                "not_in_keycrm",
                format!("order {order_id} has no KeyCRM id recorded"),
            );
        };
        if !entry.in_current_account(conn.account_switched_at) {
            // Its KeyCRM id names an unrelated order or card in the account used now.
            return skipped(
                "previous_account",
                format!("order {order_id} was pushed to the connection's previous KeyCRM account"),
            );
        }
        if change.changed_by.as_deref() == Some("keycrm") {
            return skipped(
                "echo",
                "the change came from KeyCRM through this connector (not echoed)",
            );
        }
        if entry.applied_from_keycrm.as_deref() == Some(change.status.as_str()) {
            return skipped(
                "echo",
                format!(
                    "\"{}\" is the status the connector applied from KeyCRM (not echoed)",
                    change.status
                ),
            );
        }
        if let Some(t) = entry.shop_status_at.filter(|t| *t >= event.occurred_at) {
            return skipped(
                "stale",
                format!("stale or duplicate: a shop status from {t} is already pushed"),
            );
        }
        if let Some(t) = entry
            .keycrm_status_changed_at
            .filter(|t| *t > event.occurred_at)
        {
            return skipped(
                "stale",
                format!("older than the KeyCRM status change of {t}"),
            );
        }
        let status_id = match entry.target {
            Target::Order => conn.settings.keycrm_status_for(&change.status),
            Target::Card => conn
                .settings
                .pipeline_status_for(&change.status)
                .map(|(_, s)| s),
        };
        let Some(status_id) = status_id else {
            return skipped(
                "unmapped_status",
                format!(
                    "shop status \"{}\" is not mapped; KeyCRM keeps its status",
                    change.status
                ),
            );
        };
        let crm = match self.crm.crm_for(conn).await {
            Ok(api) => api,
            Err(ClientsError::MissingKey(_)) => {
                return Decision::DeadLetter {
                    kind: "keycrm_rejected",
                    reason: "the connection's KeyCRM API key is missing".into(),
                    shop_id: None,
                    order_id: None,
                }
            }
            Err(e) => {
                return self.defer(
                    attempt,
                    None,
                    "keycrm_unavailable",
                    &format!("no KeyCRM client: {e}"),
                )
            }
        };
        // Reserve this change before writing KeyCRM: of two pushes of one order running at
        // once, the newer waits for the older, and an older one arriving later is stale.
        let holder = uuid::Uuid::new_v4().to_string();
        let reserved = self
            .ledger
            .reserve_shop_push(
                &conn.id,
                order_id,
                event.occurred_at,
                &holder,
                self.config.lease,
            )
            .await;
        match reserved {
            Ok(PushReservation::Granted) => {}
            Ok(PushReservation::Stale(e)) => {
                return skipped(
                    "stale",
                    format!(
                        "stale: the order's status is newer (shop {}, KeyCRM {})",
                        e.shop_status_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
                        e.keycrm_status_changed_at
                            .map(|t| t.to_rfc3339())
                            .unwrap_or_default()
                    ),
                )
            }
            Ok(PushReservation::Busy(_)) => {
                let policy = &self.config.retry;
                if policy.may_defer(attempt) {
                    return Decision::Defer {
                        delay: policy.busy_delay,
                        reason: "another status change of this order is being pushed".into(),
                        label: "busy",
                        next_attempt: attempt + 1,
                    };
                }
                return self.defer(
                    attempt,
                    None,
                    "busy",
                    "another status push kept the order busy",
                );
            }
            Err(e) => {
                return self.defer(
                    attempt,
                    None,
                    "store_unavailable",
                    &format!("order ledger unavailable: {e}"),
                )
            }
        }
        let set = match entry.target {
            Target::Order => crm.set_order_status(keycrm_id, status_id).await,
            Target::Card => crm.set_card_status(keycrm_id, status_id).await,
        };
        if set.is_err() {
            if let Err(e) = self
                .ledger
                .release_shop_push(&conn.id, order_id, &holder)
                .await
            {
                tracing::warn!(order = %order_id, error = %e, "could not release the status push; it expires with its lease");
            }
        }
        match set {
            Ok(()) => {
                if let Err(e) = self
                    .ledger
                    .finish_shop_push(
                        &conn.id,
                        order_id,
                        &holder,
                        &change.status,
                        Some(status_id),
                        event.occurred_at,
                    )
                    .await
                {
                    tracing::warn!(order = %order_id, error = %e, "status pushed but not recorded");
                }
                progress.count(&conn.id, Counter::StatusesPushed);
                Decision::Ack(Outcome::StatusPushed {
                    shop_order_id: order_id.clone(),
                    keycrm_status_id: status_id,
                })
            }
            Err(KeycrmError::RateLimited { retry_after }) => self.defer(
                attempt,
                Some(retry_after),
                "rate_limited",
                "KeyCRM rate limit",
            ),
            Err(e @ (KeycrmError::Transient { .. } | KeycrmError::Protocol { .. })) => {
                self.defer(attempt, None, "keycrm_unavailable", &e.to_string())
            }
            Err(KeycrmError::NotFound { .. }) => skipped(
                "keycrm_gone",
                format!(
                    "KeyCRM {} {keycrm_id} no longer exists; status change dropped",
                    entry.target.as_str()
                ),
            ),
            Err(e) => {
                let reason = format!("KeyCRM refused the status \"{}\": {e}", change.status);
                let fields = match &e {
                    KeycrmError::Validation { errors, .. } => errors.clone(),
                    _ => no_fields(),
                };
                let failure = OrderFailure {
                    shop_order_id: order_id.clone(),
                    at: Utc::now(),
                    reason: reason.clone(),
                    field_errors: fields,
                };
                if let Err(e) = self.journal.record_failure(&conn.id, &failure).await {
                    tracing::warn!(connection = %conn.id, error = %e, "could not record the failure");
                }
                Decision::DeadLetter {
                    kind: if matches!(e, KeycrmError::Validation { .. }) {
                        "validation"
                    } else {
                        "keycrm_rejected"
                    },
                    reason,
                    shop_id: None,
                    order_id: None,
                }
            }
        }
    }
}
