//! The receiver's decisions, independent of the HTTP framework: authenticate the URL token,
//! then accept (enqueue a status job) or ignore a parsed delivery.

use crate::payload::{Delivery, Event};
use http::StatusCode;
use jobs::{StatusJob, JOB_VERSION};
use queue::{Outgoing, Queue};
use runtime::metrics::catalog::{
    WEBHOOKS_ACCEPTED, WEBHOOKS_IGNORED, WEBHOOKS_REFUSED, WEBHOOKS_UNAVAILABLE,
};
use runtime::metrics::count;
use serde_json::json;
use std::sync::Arc;
use store::{
    tokens, Connection, ConnectionStore, Counter, StatusJournal, Target, TokenKey, WebhookKind,
};

/// The route as configured in API Gateway. Logs name this template, never the request path:
/// the path carries the token.
pub const ROUTE: &str = "/v1/webhooks/keycrm/{connection_id}/{token}";

/// Largest body accepted. A KeyCRM context is a bare row (1–3 KiB); anything near this is
/// not KeyCRM.
pub const MAX_BODY: usize = 64 * 1024;

/// An HTTP answer: status plus a small JSON body.
#[derive(Clone, Debug, PartialEq)]
pub struct Reply {
    pub status: StatusCode,
    pub body: serde_json::Value,
}

impl Reply {
    /// The one answer for an unknown connection, a wrong token or a malformed URL.
    pub fn not_found() -> Reply {
        Reply {
            status: StatusCode::NOT_FOUND,
            body: json!({"error": "not found"}),
        }
    }

    pub fn error(status: StatusCode, message: impl std::fmt::Display) -> Reply {
        Reply {
            status,
            body: json!({"error": message.to_string()}),
        }
    }

    pub fn unavailable() -> Reply {
        Reply::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily unavailable, please retry",
        )
    }

    pub fn accepted() -> Reply {
        Reply {
            status: StatusCode::OK,
            body: json!({"status": "accepted"}),
        }
    }

    pub fn ignored(reason: &str) -> Reply {
        Reply {
            status: StatusCode::OK,
            body: json!({"status": "ignored", "reason": reason}),
        }
    }
}

/// The shape of ids this service hands out: connection ids are simple UUIDs and tokens
/// 43-character base64url strings; the bounds leave room without reading anything odd.
fn well_formed(s: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub struct Receiver {
    connections: Arc<dyn ConnectionStore>,
    queue: Arc<dyn Queue>,
    journal: Arc<dyn StatusJournal>,
    /// What URL tokens derive from (`WEBHOOK_TOKEN_KEY_SECRET_ARN`).
    token_key: TokenKey,
    max_body: usize,
    /// The stock URL's hand-off (realtime stock); see `stock.rs`.
    stock: Option<crate::stock::StockIntake>,
}

impl Receiver {
    pub fn new(
        connections: Arc<dyn ConnectionStore>,
        queue: Arc<dyn Queue>,
        journal: Arc<dyn StatusJournal>,
        token_key: TokenKey,
    ) -> Self {
        Receiver {
            connections,
            queue,
            journal,
            token_key,
            max_body: MAX_BODY,
            stock: None,
        }
    }

    pub fn with_max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// Enables the stock URL's hand-off.
    pub fn with_stock(mut self, intake: crate::stock::StockIntake) -> Self {
        self.stock = Some(intake);
        self
    }

    pub(crate) fn stock(&self) -> Option<&crate::stock::StockIntake> {
        self.stock.as_ref()
    }

    /// Largest body of the status URLs.
    pub fn max_body(&self) -> usize {
        self.max_body
    }

    /// Largest body any URL takes: what is refused before authentication.
    pub fn max_body_any(&self) -> usize {
        self.max_body.max(crate::stock::MAX_STOCK_BODY)
    }

    /// Finds the connection and which of its URLs the token belongs to. The connection is
    /// read on every call (consistent read) so a rotated token fails at once. Every failure
    /// is the same 404; the logs say which it was, but never show the token, nor the id of
    /// a connection that does not exist (a swapped URL would put the token there).
    pub async fn authenticate(
        &self,
        connection_id: &str,
        token: &str,
    ) -> Result<(Connection, WebhookKind), Reply> {
        if !well_formed(connection_id, 1, 64) || !well_formed(token, 16, 128) {
            count(&WEBHOOKS_REFUSED, &["malformed_url"], 1);
            tracing::warn!(
                route = ROUTE,
                status = 404,
                "webhook refused: malformed URL"
            );
            return Err(Reply::not_found());
        }
        let conn = match self.connections.get(connection_id).await {
            Ok(Some(c)) => c,
            Ok(None) => {
                count(&WEBHOOKS_REFUSED, &["unknown_connection"], 1);
                tracing::warn!(
                    route = ROUTE,
                    status = 404,
                    "webhook refused: unknown connection"
                );
                return Err(Reply::not_found());
            }
            Err(e) => {
                count(&WEBHOOKS_UNAVAILABLE, &["store_unavailable"], 1);
                tracing::error!(route = ROUTE, status = 503, error = %e, "webhook: reading the connection failed");
                return Err(Reply::unavailable());
            }
        };
        // Every issued kind is checked, in constant time, whichever matches (store::tokens).
        let Some(kind) = tokens::authenticate(&self.token_key, &conn, token) else {
            count(&WEBHOOKS_REFUSED, &["wrong_token"], 1);
            tracing::warn!(route = ROUTE, status = 404, connection = %conn.id, "webhook refused: wrong token");
            return Err(Reply::not_found());
        };
        Ok((conn, kind))
    }

    /// Decides what to do with an authenticated, well-formed delivery.
    pub async fn accept(&self, conn: &Connection, kind: WebhookKind, delivery: Delivery) -> Reply {
        let event = delivery.event.label().to_string();
        let ignore = |reason: &'static str| async move {
            tracing::info!(
                route = ROUTE, status = 200, connection = %conn.id, url_kind = kind.as_str(),
                event = %event, outcome = "ignored", reason, "webhook ignored"
            );
            count_ignored(self.journal.as_ref(), &conn.id, reason).await;
            Reply::ignored(reason)
        };
        if !conn.active {
            return ignore("inactive_connection").await;
        }
        let target = match (kind, &delivery.event) {
            (WebhookKind::Orders, Event::OrderStatus) => Target::Order,
            (WebhookKind::Cards, Event::LeadStatus) => Target::Card,
            (_, Event::Other(_)) => return ignore("unhandled_event").await,
            // An order trigger pointed at the cards URL or the reverse (stock URL deliveries
            // never get here: the router hands them to `stock.rs`).
            _ => return ignore("event_on_wrong_url").await,
        };
        let Some(change) = delivery.change else {
            count(&WEBHOOKS_REFUSED, &["missing_context"], 1);
            return Reply::error(StatusCode::UNPROCESSABLE_ENTITY, "context is missing");
        };
        let mapped = match target {
            Target::Order => conn.settings.shop_status_for(change.status_id),
            Target::Card => conn
                .settings
                .shop_status_for_card(change.pipeline_id, change.status_id),
        };
        if mapped.is_none() {
            return ignore("unmapped_status").await;
        }
        let job = StatusJob {
            v: JOB_VERSION,
            connection_id: conn.id.clone(),
            target,
            keycrm_id: change.id,
            status_id: change.status_id,
            pipeline_id: change.pipeline_id,
            changed_at: change.changed_at,
            source_id: change.source_id,
            source_uuid: change.source_uuid,
            received_at: chrono::Utc::now(),
        };
        match self.queue.send(Outgoing::new(job.to_body())).await {
            Ok(_) => {
                count(&WEBHOOKS_ACCEPTED, &[], 1);
                tracing::info!(
                    route = ROUTE, status = 200, connection = %conn.id, url_kind = kind.as_str(),
                    event = %delivery.event.label(), keycrm_id = job.keycrm_id,
                    status_id = job.status_id, outcome = "accepted", "webhook accepted"
                );
                Reply::accepted()
            }
            Err(e) => {
                // Not acknowledged, so KeyCRM delivers it again.
                count(&WEBHOOKS_UNAVAILABLE, &["queue_unavailable"], 1);
                tracing::error!(
                    route = ROUTE, status = 503, connection = %conn.id, keycrm_id = job.keycrm_id,
                    error = %e, "webhook: enqueueing the status update failed"
                );
                Reply::unavailable()
            }
        }
    }
}

/// Counts a delivery answered 200 but not acted on, in the metrics and on the connection's
/// status page; a journal that cannot be written is logged, since KeyCRM's answer stands.
pub(crate) async fn count_ignored(
    journal: &dyn StatusJournal,
    connection_id: &str,
    reason: &'static str,
) {
    count(&WEBHOOKS_IGNORED, &[reason], 1);
    if let Err(e) = journal
        .count(connection_id, Counter::WebhooksIgnored, 1)
        .await
    {
        tracing::warn!(connection = %connection_id, error = %e, "could not update the journal");
    }
}
