//! A connection's status: what the merchant sees instead of log files. Counters, the last
//! error, open order failures and the last sync of each kind.

use crate::connection::conn_pk;
use crate::dynamo::{self, DynamoTable, EXPIRES_AT, PK, SK};
use crate::StoreError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

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

const STATUS: &str = "STATUS";
const FAILURE_TTL_DAYS: i64 = 30;

fn failure_sk(order: &str) -> String {
    format!("FAIL#{order}")
}

#[async_trait]
impl StatusJournal for DynamoTable {
    async fn count(&self, conn: &str, counter: Counter, n: u64) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.name)
            .set_key(Some(dynamo::key(conn_pk(conn), STATUS)))
            .update_expression("ADD #c :n")
            .expression_attribute_names("#c", counter.as_str())
            .expression_attribute_values(":n", dynamo::n(n))
            .send()
            .await
            .map_err(dynamo::sdk)?;
        Ok(())
    }

    async fn count_many(&self, conn: &str, counts: &[(Counter, u64)]) -> Result<(), StoreError> {
        let counts: Vec<&(Counter, u64)> = counts.iter().filter(|(_, n)| *n > 0).collect();
        if counts.is_empty() {
            return Ok(());
        }
        let mut update = self
            .client
            .update_item()
            .table_name(&self.name)
            .set_key(Some(dynamo::key(conn_pk(conn), STATUS)));
        let mut parts = Vec::new();
        for (i, (c, n)) in counts.iter().enumerate() {
            parts.push(format!("#c{i} :n{i}"));
            update = update
                .expression_attribute_names(format!("#c{i}"), c.as_str())
                .expression_attribute_values(format!(":n{i}"), dynamo::n(n));
        }
        update
            .update_expression(format!("ADD {}", parts.join(", ")))
            .send()
            .await
            .map_err(dynamo::sdk)?;
        Ok(())
    }

    async fn record_error(&self, conn: &str, message: &str) -> Result<(), StoreError> {
        let e = JournalError {
            at: Utc::now(),
            message: merchant_text(message),
        };
        self.client
            .update_item()
            .table_name(&self.name)
            .set_key(Some(dynamo::key(conn_pk(conn), STATUS)))
            .update_expression("SET last_error = :e")
            .expression_attribute_values(":e", dynamo::json(&e)?)
            .send()
            .await
            .map_err(dynamo::sdk)?;
        Ok(())
    }

    async fn record_failure(&self, conn: &str, f: &OrderFailure) -> Result<(), StoreError> {
        let f = &OrderFailure {
            reason: merchant_text(&f.reason),
            ..f.clone()
        };
        let mut item = dynamo::key(conn_pk(conn), failure_sk(&f.shop_order_id));
        item.insert("doc".into(), dynamo::json(f)?);
        item.insert(
            EXPIRES_AT.into(),
            dynamo::n((f.at + chrono::Duration::days(FAILURE_TTL_DAYS)).timestamp()),
        );
        self.client
            .put_item()
            .table_name(&self.name)
            .set_item(Some(item))
            .send()
            .await
            .map_err(dynamo::sdk)?;
        self.record_error(conn, &format!("order {}: {}", f.shop_order_id, f.reason))
            .await
    }

    async fn clear_failure(&self, conn: &str, shop_order_id: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.name)
            .set_key(Some(dynamo::key(conn_pk(conn), failure_sk(shop_order_id))))
            .send()
            .await
            .map_err(dynamo::sdk)?;
        Ok(())
    }

    async fn record_sync(
        &self,
        conn: &str,
        kind: &str,
        summary: &SyncSummary,
    ) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.name)
            .set_key(Some(dynamo::key(conn_pk(conn), STATUS)))
            .update_expression("SET #s = :s")
            .expression_attribute_names("#s", format!("sync_{kind}"))
            .expression_attribute_values(":s", dynamo::json(summary)?)
            .send()
            .await
            .map_err(dynamo::sdk)?;
        Ok(())
    }

    async fn status(&self, conn: &str) -> Result<ConnectionStatus, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.name)
            .set_key(Some(dynamo::key(conn_pk(conn), STATUS)))
            .consistent_read(true)
            .send()
            .await
            .map_err(dynamo::sdk)?;
        let mut status = ConnectionStatus::default();
        if let Some(item) = out.item {
            for c in Counter::ALL {
                status.counters.insert(
                    c.as_str().into(),
                    dynamo::get_n(&item, c.as_str()).unwrap_or(0),
                );
            }
            status.last_error = dynamo::get_json(&item, "last_error")?;
            for (k, _) in item.iter().filter(|(k, _)| k.starts_with("sync_")) {
                if let Some(s) = dynamo::get_json::<SyncSummary>(&item, k)? {
                    status.last_sync.insert(k["sync_".len()..].to_string(), s);
                }
            }
        } else {
            for c in Counter::ALL {
                status.counters.insert(c.as_str().into(), 0);
            }
        }
        let out = self
            .client
            .query()
            .table_name(&self.name)
            .key_condition_expression("#p = :p AND begins_with(#s, :f)")
            .expression_attribute_names("#p", PK)
            .expression_attribute_names("#s", SK)
            .expression_attribute_values(":p", dynamo::s(conn_pk(conn)))
            .expression_attribute_values(":f", dynamo::s("FAIL#"))
            .send()
            .await
            .map_err(dynamo::sdk)?;
        let mut failures = out
            .items
            .unwrap_or_default()
            .iter()
            .filter_map(|i| dynamo::get_json::<OrderFailure>(i, "doc").ok().flatten())
            .collect::<Vec<_>>();
        failures.sort_by_key(|f| std::cmp::Reverse(f.at));
        failures.truncate(50);
        status.failures = failures;
        Ok(status)
    }
}

/// A connection's status plus its open failures by shop order id.
type JournalEntry = (ConnectionStatus, BTreeMap<String, OrderFailure>);

#[derive(Default)]
pub struct MemoryJournal {
    inner: Mutex<HashMap<String, JournalEntry>>,
}

impl MemoryJournal {
    fn with<T>(&self, conn: &str, f: impl FnOnce(&mut JournalEntry) -> T) -> Result<T, StoreError> {
        let mut m = self
            .inner
            .lock()
            .map_err(|_| StoreError::Unavailable("poisoned".into()))?;
        Ok(f(m.entry(conn.to_string()).or_default()))
    }
}

#[async_trait]
impl StatusJournal for MemoryJournal {
    async fn count(&self, conn: &str, counter: Counter, n: u64) -> Result<(), StoreError> {
        self.with(conn, |(s, _)| {
            *s.counters.entry(counter.as_str().into()).or_default() += n;
        })
    }
    async fn record_error(&self, conn: &str, message: &str) -> Result<(), StoreError> {
        self.with(conn, |(s, _)| {
            s.last_error = Some(JournalError {
                at: Utc::now(),
                message: merchant_text(message),
            })
        })
    }
    async fn record_failure(&self, conn: &str, f: &OrderFailure) -> Result<(), StoreError> {
        let f = &OrderFailure {
            reason: merchant_text(&f.reason),
            ..f.clone()
        };
        self.with(conn, |(s, fails)| {
            fails.insert(f.shop_order_id.clone(), f.clone());
            s.last_error = Some(JournalError {
                at: f.at,
                message: format!("order {}: {}", f.shop_order_id, f.reason),
            });
        })
    }
    async fn clear_failure(&self, conn: &str, shop_order_id: &str) -> Result<(), StoreError> {
        self.with(conn, |(_, fails)| {
            fails.remove(shop_order_id);
        })
    }
    async fn record_sync(
        &self,
        conn: &str,
        kind: &str,
        summary: &SyncSummary,
    ) -> Result<(), StoreError> {
        self.with(conn, |(s, _)| {
            s.last_sync.insert(kind.to_string(), summary.clone());
        })
    }
    async fn status(&self, conn: &str) -> Result<ConnectionStatus, StoreError> {
        self.with(conn, |(s, fails)| {
            let mut out = s.clone();
            for c in Counter::ALL {
                out.counters.entry(c.as_str().into()).or_insert(0);
            }
            let mut f: Vec<OrderFailure> = fails.values().cloned().collect();
            f.sort_by_key(|x| std::cmp::Reverse(x.at));
            f.truncate(50);
            out.failures = f;
            out
        })
    }
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
