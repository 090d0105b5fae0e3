//! Outgoing trigger webhooks (`order.change_order_status`, `lead.change_lead_status`, ...).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::state::{lock, Account, Shared};
use crate::WebhookAttempt;

/// Attempts per event, like KeyCRM ("sends 3 attempts, expects HTTP 200").
pub(crate) const MAX_ATTEMPTS: u32 = 3;

/// Events the simulator can send.
pub const WEBHOOK_EVENTS: &[&str] = &[
    "order.change_order_status",
    "order.change_payment_status",
    "lead.change_lead_status",
];

/// Spawns delivery of `{"event": .., "context": ..}` if the account has a URL for `event`.
/// Returns immediately; delivery (with retries) runs on its own task.
pub(crate) fn fire(sh: &Arc<Shared>, acc: &Account, event: &str, entity_id: i64, context: Value) {
    let url = lock(&acc.webhooks).get(event).cloned();
    let Some(url) = url else {
        return;
    };
    let payload = json!({"event": event, "context": context});
    let sh = Arc::clone(sh);
    let event = event.to_string();
    tokio::spawn(async move {
        deliver(sh, event, url, entity_id, payload).await;
    });
}

pub(crate) async fn deliver(
    sh: Arc<Shared>,
    event: String,
    url: String,
    entity_id: i64,
    payload: Value,
) {
    for attempt in 1..=MAX_ATTEMPTS {
        let res = sh.http.post(&url).json(&payload).send().await;
        let (status, error) = match &res {
            Ok(r) => (Some(r.status().as_u16()), None),
            Err(e) => (None, Some(e.to_string())),
        };
        let ok = status.is_some_and(|s| (200..300).contains(&s));
        let gave_up = !ok && attempt == MAX_ATTEMPTS;
        sh.record_webhook(
            WebhookAttempt {
                event: event.clone(),
                url: url.clone(),
                entity_id,
                attempt,
                status,
                error,
                at: crate::time::iso(crate::time::now()),
            },
            ok,
            gave_up,
        );
        if ok {
            return;
        }
        if attempt < MAX_ATTEMPTS {
            tokio::time::sleep(sh.scaled(Duration::from_secs(u64::from(attempt)))).await;
        }
    }
}
