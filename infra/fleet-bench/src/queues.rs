//! The queues: SQS semantics (`queue::MemoryQueue`: visibility, delays, receive counts,
//! redrive), each send and visibility change counted as an SQS request of the shop the
//! message belongs to. Receives and deletes are the event source mapping's, counted by the
//! pool.
//!
//! Time: the handlers are configured in real time (every duration they are given is divided
//! by the clock's scale), so what they send is already in real time. Only the scheduler's
//! fan-out places starts in KeyCRM minutes (`mapping::schedule`); its view of the queue
//! scales those delays (`scale_delays`).

use crate::clock::Clock;
use crate::meter::Shop;
use crate::ports::Ctx;
use async_trait::async_trait;
use queue::{MemoryQueue, Message, Outgoing, Queue, QueueError, Redrive};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

pub struct Scaled {
    pub inner: Arc<MemoryQueue>,
    pub clock: Clock,
    pub ctx: Ctx,
    /// Delays of sent messages are KeyCRM time (the scheduler's view).
    pub scale_delays: bool,
}

#[derive(Deserialize)]
struct Probe {
    #[serde(default)]
    shop_id: Option<String>,
    #[serde(default)]
    connection_id: Option<String>,
}

/// The shop a message body belongs to (order events name the shop, jobs the connection).
pub fn shop_of(ctx: &Ctx, body: &str) -> Shop {
    let p: Probe = serde_json::from_str(body).ok()?;
    match (p.shop_id, p.connection_id) {
        (Some(s), _) => ctx.index.shop(&s),
        (None, Some(c)) => ctx.index.conn(&c),
        _ => None,
    }
}

impl Scaled {
    pub fn new(
        name: &str,
        clock: Clock,
        ctx: Ctx,
        dead_letter: Option<(Arc<MemoryQueue>, u32)>,
    ) -> Self {
        let inner = match dead_letter {
            Some((dlq, max)) => MemoryQueue::with_redrive(
                name,
                Redrive {
                    dead_letter: dlq,
                    max_receives: max,
                },
            ),
            None => MemoryQueue::new(name),
        };
        Scaled {
            inner: Arc::new(inner),
            clock,
            ctx,
            scale_delays: false,
        }
    }

    /// The same queue as the scheduler sees it (delays in KeyCRM time).
    pub fn scheduler_view(&self) -> Scaled {
        Scaled {
            inner: self.inner.clone(),
            clock: self.clock,
            ctx: self.ctx.clone(),
            scale_delays: true,
        }
    }
}

/// Requests one message of `bytes` costs (64 KB chunks).
fn chunks(bytes: usize) -> f64 {
    bytes.max(1).div_ceil(64 * 1024) as f64
}

#[async_trait]
impl Queue for Scaled {
    fn name(&self) -> &str {
        self.inner.name()
    }
    async fn send(&self, mut msg: Outgoing) -> Result<String, QueueError> {
        self.ctx
            .meter
            .sqs(shop_of(&self.ctx, &msg.body), chunks(msg.body.len()));
        if self.scale_delays {
            msg.delay = self.clock.real(msg.delay);
        }
        self.inner.send(msg).await
    }
    async fn receive(
        &self,
        max: usize,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<Message>, QueueError> {
        self.inner.receive(max, wait, visibility).await
    }
    async fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        self.inner.delete(receipt).await
    }
    async fn change_visibility(&self, receipt: &str, timeout: Duration) -> Result<(), QueueError> {
        self.ctx.meter.sqs(None, 1.0);
        self.inner.change_visibility(receipt, timeout).await
    }
    async fn approximate_len(&self) -> Result<usize, QueueError> {
        self.inner.approximate_len().await
    }
}
