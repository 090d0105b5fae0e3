//! The in-memory [`StockStore`] (unit tests, the local run, benchmarks), with the same
//! conditions as the DynamoDB adapter.

use crate::stock::{StockStore, StockWindow};
use crate::StoreError;
use async_trait::async_trait;
use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

#[derive(Default)]
struct ConnStock {
    pending: BTreeSet<i64>,
    flight: BTreeSet<i64>,
    window: Option<StockWindow>,
    written: HashMap<i64, bool>,
}

#[derive(Default)]
pub struct MemoryStock {
    inner: Mutex<HashMap<String, ConnStock>>,
}

impl MemoryStock {
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, conn: &str, f: impl FnOnce(&mut ConnStock) -> T) -> Result<T, StoreError> {
        let mut m = self
            .inner
            .lock()
            .map_err(|_| StoreError::Unavailable("stock store poisoned".into()))?;
        Ok(f(m.entry(conn.to_string()).or_default()))
    }
}

#[async_trait]
impl StockStore for MemoryStock {
    async fn add_pending(&self, conn: &str, offers: &[i64]) -> Result<(), StoreError> {
        self.with(conn, |c| c.pending.extend(offers.iter().copied()))
    }

    async fn pending(&self, conn: &str) -> Result<Vec<i64>, StoreError> {
        self.with(conn, |c| c.pending.iter().copied().collect())
    }

    async fn in_flight(&self, conn: &str) -> Result<Vec<i64>, StoreError> {
        self.with(conn, |c| c.flight.iter().copied().collect())
    }

    async fn begin(&self, conn: &str, offers: &[i64]) -> Result<(), StoreError> {
        self.with(conn, |c| {
            for o in offers {
                c.pending.remove(o);
                c.flight.insert(*o);
            }
        })
    }

    async fn finish(&self, conn: &str, offers: &[i64]) -> Result<(), StoreError> {
        self.with(conn, |c| {
            for o in offers {
                c.flight.remove(o);
            }
        })
    }

    async fn window(&self, conn: &str) -> Result<Option<StockWindow>, StoreError> {
        self.with(conn, |c| c.window.clone())
    }

    async fn schedule_window(
        &self,
        conn: &str,
        id: &str,
        until_ms: i64,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        self.with(conn, |c| {
            if c.window.as_ref().is_some_and(|w| w.until_ms >= now_ms) {
                return false;
            }
            c.window = Some(StockWindow {
                id: id.to_string(),
                until_ms,
                holder: None,
            });
            true
        })
    }

    async fn take_window(
        &self,
        conn: &str,
        id: &str,
        holder: &str,
        until_ms: i64,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        self.with(conn, |c| {
            let ok = match &c.window {
                None => true,
                Some(w) => w.until_ms < now_ms || (w.id == id && w.holder.is_none()),
            };
            if ok {
                c.window = Some(StockWindow {
                    id: id.to_string(),
                    until_ms,
                    holder: Some(holder.to_string()),
                });
            }
            ok
        })
    }

    async fn renew_window(
        &self,
        conn: &str,
        holder: &str,
        until_ms: i64,
    ) -> Result<bool, StoreError> {
        self.with(conn, |c| match &mut c.window {
            Some(w) if w.holder.as_deref() == Some(holder) => {
                w.until_ms = until_ms;
                true
            }
            _ => false,
        })
    }

    async fn park_window(
        &self,
        conn: &str,
        holder: &str,
        until_ms: i64,
    ) -> Result<bool, StoreError> {
        self.with(conn, |c| match &mut c.window {
            Some(w) if w.holder.as_deref() == Some(holder) => {
                w.until_ms = until_ms;
                w.holder = None;
                true
            }
            _ => false,
        })
    }

    async fn end_window(&self, conn: &str, holder: &str) -> Result<(), StoreError> {
        self.with(conn, |c| {
            if c.window
                .as_ref()
                .is_some_and(|w| w.holder.as_deref() == Some(holder))
            {
                c.window = None;
            }
        })
    }

    async fn last_written(
        &self,
        conn: &str,
        offers: &[i64],
    ) -> Result<HashMap<i64, bool>, StoreError> {
        self.with(conn, |c| {
            offers
                .iter()
                .filter_map(|o| c.written.get(o).map(|a| (*o, *a)))
                .collect()
        })
    }

    async fn record_written(&self, conn: &str, written: &[(i64, bool)]) -> Result<(), StoreError> {
        self.with(conn, |c| c.written.extend(written.iter().copied()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pending_moves_to_flight_and_signals_during_a_flush_come_back() {
        let s = MemoryStock::new();
        s.add_pending("c", &[5, 3, 5, 21]).await.unwrap();
        assert_eq!(s.pending("c").await.unwrap(), vec![3, 5, 21]);
        s.begin("c", &[3, 5]).await.unwrap();
        assert_eq!(s.pending("c").await.unwrap(), vec![21]);
        assert_eq!(s.in_flight("c").await.unwrap(), vec![3, 5]);
        // signalled again while in flight: pending again, read again later
        s.add_pending("c", &[3]).await.unwrap();
        s.finish("c", &[3, 5]).await.unwrap();
        assert_eq!(s.pending("c").await.unwrap(), vec![3, 21]);
        assert!(s.in_flight("c").await.unwrap().is_empty());
        assert!(s.pending("other").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn one_live_window_and_one_holder() {
        let s = MemoryStock::new();
        assert!(s.schedule_window("c", "w1", 100, 0).await.unwrap());
        assert!(
            !s.schedule_window("c", "w2", 100, 50).await.unwrap(),
            "w1 is live"
        );
        assert!(
            !s.take_window("c", "w2", "h2", 200, 50).await.unwrap(),
            "an orphan"
        );
        assert!(s.take_window("c", "w1", "h1", 200, 50).await.unwrap());
        assert!(
            !s.take_window("c", "w1", "dup", 200, 60).await.unwrap(),
            "held"
        );
        assert!(s.renew_window("c", "h1", 300).await.unwrap());
        assert!(!s.renew_window("c", "dup", 300).await.unwrap());
        // parked for a retry: still live, free for the same window only
        assert!(s.park_window("c", "h1", 400).await.unwrap());
        assert!(!s.schedule_window("c", "w3", 500, 350).await.unwrap());
        assert!(s.take_window("c", "w1", "h1b", 500, 350).await.unwrap());
        // a crashed holder's window is taken over once it expires
        assert!(s.take_window("c", "w9", "h9", 900, 501).await.unwrap());
        s.end_window("c", "h1b").await.unwrap();
        assert!(s.window("c").await.unwrap().is_some(), "not h1b's any more");
        s.end_window("c", "h9").await.unwrap();
        assert!(s.window("c").await.unwrap().is_none());
        assert!(s.schedule_window("c", "w10", 1000, 950).await.unwrap());
    }
}
