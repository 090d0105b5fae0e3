//! An in-process queue with SQS's semantics where they matter: at-least-once delivery,
//! visibility timeouts, delays, receive counts and redrive to a dead-letter queue.

use crate::{Message, Outgoing, Queue, QueueError};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

#[derive(Clone)]
pub struct Redrive {
    pub dead_letter: Arc<MemoryQueue>,
    pub max_receives: u32,
}

struct Entry {
    id: String,
    body: String,
    attributes: HashMap<String, String>,
    visible_at: Instant,
    receive_count: u32,
    receipt: Option<String>,
}

pub struct MemoryQueue {
    name: String,
    entries: Mutex<Vec<Entry>>,
    notify: Notify,
    redrive: Option<Redrive>,
    seq: std::sync::atomic::AtomicU64,
}

impl MemoryQueue {
    pub fn new(name: &str) -> Self {
        MemoryQueue {
            name: name.to_string(),
            entries: Mutex::new(Vec::new()),
            notify: Notify::new(),
            redrive: None,
            seq: std::sync::atomic::AtomicU64::new(0),
        }
    }

    pub fn with_redrive(name: &str, redrive: Redrive) -> Self {
        MemoryQueue {
            redrive: Some(redrive),
            ..Self::new(name)
        }
    }

    fn next_id(&self, prefix: &str) -> String {
        let n = self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("{prefix}-{}-{n}", self.name)
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Vec<Entry>>, QueueError> {
        self.entries
            .lock()
            .map_err(|_| QueueError::Unavailable("queue state poisoned".into()))
    }

    /// Every body currently held (visible or not), for tests and the demo summary.
    pub fn bodies(&self) -> Vec<String> {
        self.entries
            .lock()
            .map(|e| e.iter().map(|m| m.body.clone()).collect())
            .unwrap_or_default()
    }

    fn take_ready(&self, max: usize, visibility: Duration) -> Result<Vec<Message>, QueueError> {
        let now = Instant::now();
        let mut out = Vec::new();
        let mut redriven = Vec::new();
        {
            let mut entries = self.lock()?;
            let mut i = 0;
            while i < entries.len() && out.len() < max {
                if entries[i].visible_at > now {
                    i += 1;
                    continue;
                }
                if let Some(r) = &self.redrive {
                    if entries[i].receive_count >= r.max_receives {
                        redriven.push(entries.remove(i));
                        continue;
                    }
                }
                let receipt = self.next_id("rcpt");
                let e = &mut entries[i];
                e.receive_count += 1;
                e.visible_at = now + visibility;
                e.receipt = Some(receipt.clone());
                out.push(Message {
                    id: e.id.clone(),
                    body: e.body.clone(),
                    receipt,
                    receive_count: e.receive_count,
                    attributes: e.attributes.clone(),
                });
                i += 1;
            }
        }
        if let Some(r) = &self.redrive {
            for e in redriven {
                tracing::warn!(queue = %self.name, message_id = %e.id, "redriving message to the dead-letter queue");
                r.dead_letter.push(Outgoing {
                    body: e.body,
                    delay: Duration::ZERO,
                    attributes: e.attributes,
                });
            }
        }
        Ok(out)
    }

    fn push(&self, msg: Outgoing) -> String {
        let id = self.next_id("msg");
        if let Ok(mut entries) = self.entries.lock() {
            entries.push(Entry {
                id: id.clone(),
                body: msg.body,
                attributes: msg.attributes,
                visible_at: Instant::now() + msg.delay,
                receive_count: 0,
                receipt: None,
            });
        }
        self.notify.notify_waiters();
        id
    }
}

#[async_trait]
impl Queue for MemoryQueue {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, msg: Outgoing) -> Result<String, QueueError> {
        Ok(self.push(msg))
    }

    async fn receive(
        &self,
        max: usize,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<Message>, QueueError> {
        let deadline = Instant::now() + wait;
        loop {
            let got = self.take_ready(max.clamp(1, 10), visibility)?;
            if !got.is_empty() || Instant::now() >= deadline {
                return Ok(got);
            }
            // Wake on a send, or re-check soon for delayed/invisible messages coming due.
            let nap = (deadline - Instant::now()).min(Duration::from_millis(50));
            let _ = tokio::time::timeout(nap, self.notify.notified()).await;
        }
    }

    async fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        let mut entries = self.lock()?;
        let before = entries.len();
        entries.retain(|e| e.receipt.as_deref() != Some(receipt));
        if entries.len() == before {
            return Err(QueueError::InvalidReceipt);
        }
        Ok(())
    }

    async fn change_visibility(&self, receipt: &str, timeout: Duration) -> Result<(), QueueError> {
        let mut entries = self.lock()?;
        let e = entries
            .iter_mut()
            .find(|e| e.receipt.as_deref() == Some(receipt))
            .ok_or(QueueError::InvalidReceipt)?;
        e.visible_at = Instant::now() + timeout;
        drop(entries);
        self.notify.notify_waiters();
        Ok(())
    }

    async fn approximate_len(&self) -> Result<usize, QueueError> {
        Ok(self.lock()?.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VIS: Duration = Duration::from_millis(200);

    #[tokio::test]
    async fn delivered_until_deleted() {
        let q = MemoryQueue::new("t");
        q.send(Outgoing::new("a")).await.unwrap();
        let first = q.receive(10, Duration::ZERO, VIS).await.unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].receive_count, 1);
        // Invisible while in flight.
        assert!(q.receive(10, Duration::ZERO, VIS).await.unwrap().is_empty());
        tokio::time::sleep(VIS + Duration::from_millis(20)).await;
        let again = q.receive(10, Duration::ZERO, VIS).await.unwrap();
        assert_eq!(again[0].receive_count, 2);
        assert!(
            matches!(
                q.delete(&first[0].receipt).await,
                Err(QueueError::InvalidReceipt)
            ),
            "old receipt is stale"
        );
        q.delete(&again[0].receipt).await.unwrap();
        assert_eq!(q.approximate_len().await.unwrap(), 0);
    }

    #[tokio::test]
    async fn delays_and_long_polls() {
        let q = Arc::new(MemoryQueue::new("t"));
        q.send(Outgoing::new("later").delayed(Duration::from_millis(100)))
            .await
            .unwrap();
        assert!(q.receive(1, Duration::ZERO, VIS).await.unwrap().is_empty());
        let got = q.receive(1, Duration::from_secs(2), VIS).await.unwrap();
        assert_eq!(got[0].body, "later");

        let q2 = q.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            q2.send(Outgoing::new("wake")).await.unwrap();
        });
        let start = Instant::now();
        let got = q.receive(1, Duration::from_secs(5), VIS).await.unwrap();
        assert_eq!(got[0].body, "wake");
        assert!(start.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn redrives_after_max_receives() {
        let dlq = Arc::new(MemoryQueue::new("dlq"));
        let q = MemoryQueue::with_redrive(
            "main",
            Redrive {
                dead_letter: dlq.clone(),
                max_receives: 2,
            },
        );
        q.send(Outgoing::new("poison").with_attribute("k", "v"))
            .await
            .unwrap();
        for _ in 0..2 {
            let m = q.receive(1, Duration::ZERO, Duration::ZERO).await.unwrap();
            assert_eq!(m.len(), 1);
        }
        assert!(q
            .receive(1, Duration::ZERO, Duration::ZERO)
            .await
            .unwrap()
            .is_empty());
        let dead = dlq.receive(1, Duration::ZERO, VIS).await.unwrap();
        assert_eq!(dead[0].body, "poison");
        assert_eq!(dead[0].attribute("k"), Some("v"));
    }

    #[tokio::test]
    async fn visibility_can_be_extended_or_cut() {
        let q = MemoryQueue::new("t");
        q.send(Outgoing::new("x")).await.unwrap();
        let m = q
            .receive(1, Duration::ZERO, Duration::from_secs(60))
            .await
            .unwrap();
        q.change_visibility(&m[0].receipt, Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(q.receive(1, Duration::ZERO, VIS).await.unwrap().len(), 1);
    }
}
