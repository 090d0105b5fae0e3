//! The simulated deployment and its day: the stores, queues and functions, the merchants'
//! orders, KeyCRM managers moving orders through statuses, and the schedules.

use crate::clock::Clock;
use crate::fleet::{self, ShopSpec};
use crate::meter::{Meter, Shop, Snapshot};
use crate::pool::{Function, Instance, Pool};
use crate::ports::{self, Ctx, Index, KeyStore};
use crate::queues::{shop_of, Scaled};
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use catalog_sync::{Config as SyncConfig, Deps, Engine, JobMessage, ScheduleKind};
use chrono::{DateTime, TimeZone, Utc};
use keycrm::{ApiKey, ClientConfig, RateBudget, RetryPolicy as ClientRetry};
use keycrm_sim::{AccountSpec, Faults, SimConfig, SimHandle};
use order_push::{Dictionaries, KeycrmProvider, OrderPush, Outcome as PushOutcome, PushConfig};
use queue::{MemoryQueue, Message, Outgoing, Queue};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shop::{MemoryShop, ShopError, ShopOrders, ShopReference};
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};
use store::{ConnectionStore, SecretStore, SyncJob, SyncKind, SyncStore, WebhookGenerations};
use tokio::sync::Mutex;

mod actors;
mod day;
mod design;

use actors::*;
pub use day::run;
pub use design::*;

pub struct Params {
    pub shops: usize,
    pub scale: f64,
    /// The simulated window: from `start_hour` UTC, `hours` long (then up to two hours for
    /// what it started to finish).
    pub start_hour: u32,
    pub hours: i64,
    pub seed: u64,
    /// Multiplies every catalog size but the probes' (1.0 = the fleet as specified).
    pub product_scale: f64,
    /// KeyCRM hours before the window for onboarding.
    pub onboard_hours: f64,
    pub design: Design,
}

/// Everything the report needs.
pub struct Outcome {
    pub params: Params,
    pub shops: Vec<ShopSpec>,
    pub onboarding: Snapshot,
    pub onboarding_virtual: Duration,
    pub day: Snapshot,
    pub day_hours: f64,
    pub night: NightRuns,
    pub order_latency: Vec<(bool, f64)>,
    pub orders_sent: u64,
    pub status_latency: Vec<f64>,
    pub statuses_changed: u64,
    pub sim: keycrm_sim::SimStats,
    pub link_bytes: Vec<usize>,
    pub dead_letters: [usize; 3],
    pub webhook_throttled: u64,
    pub day_log_bytes: f64,
}

#[derive(Default)]
pub struct NightRuns {
    pub window_start: Option<DateTime<Utc>>,
    pub completed: usize,
    pub other: usize,
    pub unfinished: usize,
    /// The shops whose night run was unfinished, and why (`running`, `not started`).
    pub unfinished_shops: Vec<(usize, &'static str)>,
    pub last_finish: Option<DateTime<Utc>>,
    pub durations_min: Vec<f64>,
}

/// The stores every function shares (DynamoDB), counted.
struct Stores {
    conns: Arc<ports::Connections>,
    ledger: Arc<ports::Ledger>,
    links: Arc<ports::Links>,
    sync: Arc<ports::Sync>,
    journal: Arc<ports::Journal>,
    keys: Arc<ports::Keys>,
    gate: Arc<ports::Gate>,
    dictionaries: Arc<ports::Dictionaries>,
    shop: Arc<MemoryShop>,
}

/// A due KeyCRM status change: (virtual µs, shop, keycrm id, status id, shop order id).
type Due = (i64, usize, i64, i64, String);

/// Latency bookkeeping.
#[derive(Default)]
struct Watch {
    /// (shop, order) → virtual send time.
    sent: StdMutex<HashMap<(usize, String), DateTime<Utc>>>,
    order_latency: StdMutex<Vec<(bool, f64)>>,
    /// (shop id, order id, shop status) → virtual time KeyCRM changed it.
    changed: StdMutex<HashMap<(String, String, String), DateTime<Utc>>>,
    status_latency: StdMutex<Vec<f64>>,
    statuses_changed: AtomicU64,
    /// Due KeyCRM status changes: (virtual µs, shop, keycrm id, status id, shop order id).
    due: StdMutex<BinaryHeap<std::cmp::Reverse<Due>>>,
}

/// The shop's order API, recording when a KeyCRM status reached the shop.
struct RecordingOrders {
    inner: Arc<MemoryShop>,
    watch: Arc<Watch>,
    clock: Clock,
}

#[async_trait::async_trait]
impl ShopOrders for RecordingOrders {
    async fn reference(&self, shop_id: &str) -> Result<ShopReference, ShopError> {
        self.inner.reference(shop_id).await
    }
    async fn set_order_status(
        &self,
        shop_id: &str,
        order_id: &str,
        status: &str,
    ) -> Result<(), ShopError> {
        self.inner
            .set_order_status(shop_id, order_id, status)
            .await?;
        let key = (
            shop_id.to_string(),
            order_id.to_string(),
            status.to_string(),
        );
        if let Some(at) = self
            .watch
            .changed
            .lock()
            .ok()
            .and_then(|mut m| m.remove(&key))
        {
            let l = (self.clock.now() - at).num_milliseconds() as f64 / 1000.0;
            if let Ok(mut v) = self.watch.status_latency.lock() {
                v.push(l);
            }
        }
        Ok(())
    }
}

fn real_cfg(c: &SyncConfig, clock: &Clock) -> SyncConfig {
    SyncConfig {
        safety: clock.real(c.safety),
        lease_slack: clock.real(c.lease_slack),
        deletion_check: clock.real(c.deletion_check),
        slice: c.slice.map(|s| clock.real(s)),
        hand_off_grace: clock.real(c.hand_off_grace),
        checkpoint_every: clock.real(c.checkpoint_every),
        cleanup_grace: clock.real(c.cleanup_grace),
        busy_retry: clock.real(c.busy_retry),
        // Run ids name the compressed clock's nights: a busy full run's retry is judged by it.
        now: {
            let clock = *clock;
            catalog_sync::Now::from_fn(move || clock.now())
        },
        ..c.clone()
    }
}

fn client_config(base: &str, clock: &Clock, patience: Option<Duration>) -> ClientConfig {
    let d = ClientConfig::default();
    ClientConfig {
        // Not scaled: the bench's own CPU time is magnified by the scale, and a page of a big
        // catalog would time out on the compressed clock without KeyCRM being slow.
        timeout: d.timeout,
        connect_timeout: Duration::from_secs(5),
        retry: ClientRetry {
            base_delay: clock.real(d.retry.base_delay),
            max_delay: clock.real(d.retry.max_delay),
            max_retry_after: clock.real(d.retry.max_retry_after),
            ..d.retry
        },
        min_request_time: clock.real(d.min_request_time),
        max_gate_wait: patience.map(|p| clock.real(p)),
        ..ClientConfig::with_base_url(base)
    }
}

fn sqs_event(msgs: &[Message]) -> SqsEvent {
    let records: Vec<serde_json::Value> = msgs
        .iter()
        .map(|m| {
            let attrs: serde_json::Map<String, serde_json::Value> = m
                .attributes
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        serde_json::json!({"stringValue": v, "dataType": "String"}),
                    )
                })
                .collect();
            serde_json::json!({
                "messageId": m.id, "receiptHandle": m.receipt, "body": m.body,
                "attributes": {"ApproximateReceiveCount": m.receive_count.to_string()},
                "messageAttributes": attrs, "eventSource": "aws:sqs"
            })
        })
        .collect();
    serde_json::from_value(serde_json::json!({ "Records": records })).expect("an SQS event")
}

struct World {
    clock: Clock,
    pool: Arc<Pool>,
    ctx: Ctx,
    stores: Stores,
    sim: SimHandle,
    shops: Arc<Vec<ShopSpec>>,
    design: Design,
    order_q: Arc<Scaled>,
    status_q: Arc<Scaled>,
    sync_q: Arc<Scaled>,
    dlqs: [Arc<MemoryQueue>; 3],
    watch: Arc<Watch>,
    stop: Arc<AtomicBool>,
}

impl World {
    fn clients(&self, patience: Option<Duration>) -> Arc<runtime::KeycrmClients> {
        Arc::new(runtime::KeycrmClients::new(
            Arc::new(self.stores.keys.for_instance()),
            self.stores.gate.clone(),
            client_config(&self.sim.base_url(), &self.clock, patience),
        ))
    }

    fn engine(&self, jobs: Arc<dyn Queue>) -> Engine {
        Engine::new(
            Deps {
                connections: self.stores.conns.clone(),
                sync: self.stores.sync.clone(),
                links: self.stores.links.clone(),
                shop: self.stores.shop.clone(),
                clients: self.clients(self.design.sync_gate_wait),
                journal: self.stores.journal.clone(),
                jobs,
            },
            real_cfg(&self.design.sync_cfg, &self.clock),
        )
    }

    fn order_push(&self) -> OrderPush {
        let c = &self.clock;
        let d = PushConfig::default();
        OrderPush {
            connections: self.stores.conns.clone(),
            ledger: self.stores.ledger.clone(),
            journal: self.stores.journal.clone(),
            crm: Arc::new(KeycrmProvider {
                clients: self.clients(self.design.order_gate_wait),
                secret_prefix: None,
            }),
            retry_queue: self.order_q.clone(),
            dead_letters: Arc::new(self.dead_letters(0)),
            dictionaries: Arc::new({
                let d = Dictionaries::new(c.real(order_push::dictionaries::DEFAULT_TTL));
                if self.design.shared_dictionaries {
                    d.with_shared(
                        self.stores.dictionaries.clone(),
                        c.real(order_push::dictionaries::SHARED_TTL),
                    )
                } else {
                    d
                }
            }),
            config: PushConfig {
                lease: c.real(d.lease),
                retry: order_push::RetryPolicy {
                    base: c.real(d.retry.base),
                    max_delay: c.real(d.retry.max_delay),
                    busy_delay: c.real(d.retry.busy_delay),
                    ..d.retry
                },
                recovery_margin: c.real(d.recovery_margin),
                deadline_margin: c.real(d.deadline_margin),
                source_queue: "order-events".into(),
                ..d
            },
        }
    }

    fn applier(&self) -> status_apply::StatusApplier {
        let d = status_apply::RetryPolicy::default();
        status_apply::StatusApplier::new(
            self.stores.conns.clone(),
            self.stores.ledger.clone(),
            Arc::new(RecordingOrders {
                inner: self.stores.shop.clone(),
                watch: self.watch.clone(),
                clock: self.clock,
            }),
            self.stores.journal.clone(),
            status_apply::RetryPolicy {
                base: self.clock.real(d.base),
                cap: self.clock.real(d.cap),
                ..d
            },
        )
    }

    /// Receives one batch the way the event source mapping does (long poll, then the
    /// batching window to fill it).
    async fn receive(&self, q: &Scaled, f: &Function) -> Vec<Message> {
        let vis = self.clock.real(f.timeout * 6 + Duration::from_secs(5));
        let wait = self.clock.real(Duration::from_secs(20));
        let mut msgs = q.receive(f.batch, wait, vis).await.unwrap_or_default();
        if !msgs.is_empty() && msgs.len() < f.batch && !f.window.is_zero() {
            tokio::time::sleep(self.clock.real(f.window)).await;
            let more = q
                .receive(f.batch - msgs.len(), Duration::ZERO, vis)
                .await
                .unwrap_or_default();
            msgs.extend(more);
        }
        if !msgs.is_empty() {
            // One ReceiveMessage (the empty long polls are in the fixed base).
            self.ctx
                .meter
                .sqs_by_poller(shop_of(&self.ctx, &msgs[0].body), 1.0);
        }
        msgs
    }

    async fn delete_done(&self, q: &Scaled, msgs: &[Message], failed: &[String]) {
        let mut any = false;
        for m in msgs {
            if !failed.contains(&m.id) {
                let _ = q.delete(&m.receipt).await;
                any = true;
            }
        }
        if any {
            // One DeleteMessageBatch.
            self.ctx
                .meter
                .sqs_by_poller(shop_of(&self.ctx, &msgs[0].body), 1.0);
        }
    }

    /// Deletes what a Lambda's partial-batch answer did not name as failed.
    async fn delete_answered(&self, q: &Scaled, msgs: &[Message], resp: &SqsBatchResponse) {
        let failed: Vec<String> = resp
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect();
        self.delete_done(q, msgs, &failed).await;
    }

    /// Dead-letter queue `i` (orders, statuses, sync jobs) as the functions see it.
    fn dead_letters(&self, i: usize) -> Scaled {
        Scaled {
            inner: self.dlqs[i].clone(),
            clock: self.clock,
            ctx: self.ctx.clone(),
            scale_delays: false,
        }
    }

    fn shops_of(&self, msgs: &[Message]) -> Vec<Shop> {
        msgs.iter().map(|m| shop_of(&self.ctx, &m.body)).collect()
    }
}

async fn order_poller(w: Arc<World>) {
    let inst: Mutex<Instance<OrderPush>> = Mutex::new(Instance::default());
    let f = w.design.order.clone();
    while !w.stop.load(Ordering::Relaxed) {
        let msgs = w.receive(&w.order_q, &f).await;
        if msgs.is_empty() {
            continue;
        }
        let shops = w.shops_of(&msgs);
        let batch = msgs.clone();
        let result = w
            .pool
            .invoke(
                &f,
                &inst,
                || w.order_push(),
                shops,
                |h, deadline| async move { h.handle_batch_until(batch, Some(deadline)).await },
            )
            .await;
        let now = w.clock.now();
        for o in &result.outcomes {
            if let PushOutcome::Created {
                connection_id,
                shop_order_id,
                keycrm_id,
                ..
            } = &o.outcome
            {
                let Some(i) = w.ctx.index.conn(connection_id) else {
                    continue;
                };
                let sent = w
                    .watch
                    .sent
                    .lock()
                    .ok()
                    .and_then(|mut m| m.remove(&(i, shop_order_id.clone())));
                if let Some(sent) = sent {
                    let l = (now - sent).num_milliseconds() as f64 / 1000.0;
                    if let Ok(mut v) = w.watch.order_latency.lock() {
                        v.push((fleet::in_peak(sent), l));
                    }
                }
                // A manager will move it on: paid within the hour or two, done hours later.
                let mut rng = StdRng::seed_from_u64(*keycrm_id as u64 ^ i as u64);
                let paid = now + chrono::Duration::minutes(rng.gen_range(10..90));
                let done = paid + chrono::Duration::minutes(rng.gen_range(120..600));
                if let Ok(mut due) = w.watch.due.lock() {
                    for (t, s) in [(paid, fleet::PAID.0), (done, fleet::DONE.0)] {
                        due.push(std::cmp::Reverse((
                            t.timestamp_micros(),
                            i,
                            *keycrm_id,
                            s,
                            shop_order_id.clone(),
                        )));
                    }
                }
            }
        }
        w.delete_done(&w.order_q, &msgs, &result.failed_message_ids)
            .await;
    }
}

async fn status_poller(w: Arc<World>) {
    let inst: Mutex<Instance<status_apply::StatusApplier>> = Mutex::new(Instance::default());
    let f = w.design.status.clone();
    let transport = status_apply::Transport {
        source: Some(w.status_q.clone()),
        dead_letter: Some(Arc::new(w.dead_letters(1))),
    };
    while !w.stop.load(Ordering::Relaxed) {
        let msgs = w.receive(&w.status_q, &f).await;
        if msgs.is_empty() {
            continue;
        }
        let event = sqs_event(&msgs);
        let t = &transport;
        let resp = w
            .pool
            .invoke(
                &f,
                &inst,
                || w.applier(),
                w.shops_of(&msgs),
                |h, deadline| async move {
                    status_apply::handle_sqs_event(&h, t, event, Some(deadline)).await
                },
            )
            .await;
        w.delete_answered(&w.status_q, &msgs, &resp).await;
    }
}

async fn sync_poller(w: Arc<World>) {
    let inst: Mutex<Instance<Engine>> = Mutex::new(Instance::default());
    let f = w.design.sync.clone();
    let dlq = w.dead_letters(2);
    while !w.stop.load(Ordering::Relaxed) {
        let msgs = w.receive(&w.sync_q, &f).await;
        if msgs.is_empty() {
            continue;
        }
        let event = sqs_event(&msgs);
        let dlq = &dlq;
        // The shops whose message is (a slice of) their full run: counted once a day.
        let nightly = msgs
            .iter()
            .filter(|m| {
                catalog_sync::JobMessage::parse(&m.body)
                    .is_ok_and(|j| j.job.kind == store::SyncKind::Full)
            })
            .filter_map(|m| shop_of(&w.ctx, &m.body))
            .collect();
        crate::meter::once_a_day(nightly, async {
            let resp = w
                .pool
                .invoke(
                    &f,
                    &inst,
                    || w.engine(w.sync_q.clone()),
                    w.shops_of(&msgs),
                    |h, deadline| async move {
                        let dl = catalog_sync::lambda::DeadLetters {
                            queue: dlq,
                            source_queue: "sync-jobs",
                        };
                        catalog_sync::lambda::handle_sqs(&h, event, Some(deadline), Some(&dl)).await
                    },
                )
                .await;
            w.delete_answered(&w.sync_q, &msgs, &resp).await;
        })
        .await;
    }
}
