//! A connection's status: what the merchant sees instead of log files. Counters, the last
//! error, open order failures and the last sync of each kind.

use crate::StoreError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

mod dynamo;
mod memory;

pub use memory::MemoryJournal;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Counter {
    OrdersPushed,
    OrdersFailed,
    OrdersSkipped,
    StatusesPushed,
    WebhooksApplied,
    WebhooksIgnored,
    /// Offers signalled by KeyCRM's stock webhook (accepted deliveries).
    StockSignals,
    /// Shop variants whose availability realtime stock changed.
    StockChanged,
    /// Signalled offers no link of this connection holds.
    StockUnlinked,
    /// KeyCRM requests sent for this connection, by any function (its key's budget spent).
    KeycrmRequests,
    /// 429 answers KeyCRM gave this connection's key.
    KeycrmRateLimited,
}

impl Counter {
    pub fn as_str(self) -> &'static str {
        match self {
            Counter::OrdersPushed => "orders_pushed",
            Counter::OrdersFailed => "orders_failed",
            Counter::OrdersSkipped => "orders_skipped",
            Counter::StatusesPushed => "statuses_pushed",
            Counter::WebhooksApplied => "webhooks_applied",
            Counter::WebhooksIgnored => "webhooks_ignored",
            Counter::StockSignals => "stock_signals",
            Counter::StockChanged => "stock_changed",
            Counter::StockUnlinked => "stock_unlinked",
            Counter::KeycrmRequests => "keycrm_requests",
            Counter::KeycrmRateLimited => "keycrm_rate_limited",
        }
    }

    pub const ALL: [Counter; 11] = [
        Counter::OrdersPushed,
        Counter::OrdersFailed,
        Counter::OrdersSkipped,
        Counter::StatusesPushed,
        Counter::WebhooksApplied,
        Counter::WebhooksIgnored,
        Counter::StockSignals,
        Counter::StockChanged,
        Counter::StockUnlinked,
        Counter::KeycrmRequests,
        Counter::KeycrmRateLimited,
    ];
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JournalError {
    pub at: DateTime<Utc>,
    pub message: String,
}

/// An order that could not be placed and waits for the merchant (fix the mapping, re-push).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OrderFailure {
    pub shop_order_id: String,
    pub at: DateTime<Utc>,
    pub reason: String,
    #[serde(default)]
    pub field_errors: BTreeMap<String, Vec<String>>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SyncSummary {
    pub run_id: String,
    pub finished_at: Option<DateTime<Utc>>,
    pub complete: bool,
    pub counts: BTreeMap<String, u64>,
    pub keycrm_requests: u64,
    #[serde(default)]
    pub message: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ConnectionStatus {
    pub counters: BTreeMap<String, u64>,
    pub last_error: Option<JournalError>,
    /// Newest first, at most 50.
    pub failures: Vec<OrderFailure>,
    /// By sync kind (`full`, `prices`).
    pub last_sync: BTreeMap<String, SyncSummary>,
}

#[async_trait]
pub trait StatusJournal: Send + Sync {
    async fn count(&self, conn: &str, counter: Counter, n: u64) -> Result<(), StoreError>;
    /// Adds several counters at once (one write where the adapter can).
    async fn count_many(&self, conn: &str, counts: &[(Counter, u64)]) -> Result<(), StoreError> {
        for (c, n) in counts {
            self.count(conn, *c, *n).await?;
        }
        Ok(())
    }
    async fn record_error(&self, conn: &str, message: &str) -> Result<(), StoreError>;
    async fn record_failure(&self, conn: &str, failure: &OrderFailure) -> Result<(), StoreError>;
    async fn clear_failure(&self, conn: &str, shop_order_id: &str) -> Result<(), StoreError>;
    async fn record_sync(
        &self,
        conn: &str,
        kind: &str,
        summary: &SyncSummary,
    ) -> Result<(), StoreError>;
    async fn status(&self, conn: &str) -> Result<ConnectionStatus, StoreError>;
}

/// The longest `last_error` or failure reason kept.
const MAX_REASON: usize = 1000;

/// What a merchant may read of an error text: AWS resource names and endpoints (which carry
/// the account id) are replaced, and the text is bounded. Adapters already turn SDK failures
/// into plain reasons (see `aws_error`); this is the last gate before the status page, for
/// text that reaches the journal from anywhere.
pub fn merchant_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_REASON));
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if !word.is_empty() {
            let bare = word.trim_start_matches(|c: char| !c.is_ascii_alphanumeric());
            if bare.starts_with("arn:") || word.contains(":arn:") || word.contains("arn:aws") {
                out.push_str("[AWS resource]");
            } else if word.contains("amazonaws.com") {
                out.push_str("[AWS endpoint]");
            } else {
                out.push_str(word);
            }
            word.clear();
        }
    };
    for c in text.chars() {
        if c.is_whitespace() {
            flush(&mut word, &mut out);
            out.push(c);
        } else {
            word.push(c);
        }
    }
    flush(&mut word, &mut out);
    if out.chars().count() > MAX_REASON {
        out = out.chars().take(MAX_REASON).collect::<String>() + "…";
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SDK_TEXT: &str = "retries exhausted after 5 attempts: no KeyCRM client: storage unavailable: service error: AccessDeniedException: User: arn:aws:sts::123456789012:assumed-role/shop-keycrm-OrderPushRole/order-push is not authorized to perform: secretsmanager:GetSecretValue on resource: arn:aws:secretsmanager:eu-central-1:123456789012:secret:shop-keycrm/dev/keycrm/abc (https://secretsmanager.eu-central-1.amazonaws.com/)";

    #[test]
    fn merchant_text_drops_aws_resource_names_and_endpoints() {
        let t = merchant_text(SDK_TEXT);
        assert!(!t.contains("arn:"), "{t}");
        assert!(!t.contains("123456789012"), "{t}");
        assert!(!t.contains("amazonaws.com"), "{t}");
        assert!(
            t.starts_with("retries exhausted after 5 attempts: no KeyCRM client"),
            "{t}"
        );
        // Ordinary reasons pass unchanged, order ids included.
        let plain = "order 123456789012: KeyCRM refused the status \"paid\": the field is invalid";
        assert_eq!(merchant_text(plain), plain);
        assert!(merchant_text(&"x".repeat(5000)).chars().count() <= MAX_REASON + 1);
    }

    #[tokio::test]
    async fn the_status_page_never_shows_aws_detail() {
        let j = MemoryJournal::default();
        j.record_error("c", SDK_TEXT).await.unwrap();
        let s = j.status("c").await.unwrap();
        assert!(!s.last_error.unwrap().message.contains("123456789012"));
        j.record_failure(
            "c",
            &OrderFailure {
                shop_order_id: "A-1".into(),
                at: Utc::now(),
                reason: SDK_TEXT.into(),
                field_errors: BTreeMap::new(),
            },
        )
        .await
        .unwrap();
        let s = j.status("c").await.unwrap();
        assert!(!s.failures[0].reason.contains("arn:"), "{:?}", s.failures);
        assert!(!s.last_error.unwrap().message.contains("arn:"));
    }
}
