//! The in-memory [`StatusJournal`].

use crate::journal::{
    merchant_text, ConnectionStatus, Counter, JournalError, OrderFailure, StatusJournal,
    SyncSummary,
};
use crate::StoreError;
use async_trait::async_trait;
use chrono::Utc;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

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
