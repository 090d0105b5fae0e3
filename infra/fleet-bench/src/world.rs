//! The simulated deployment and its day: the stores, queues and functions, the merchants'
//! orders, KeyCRM managers moving orders through statuses, and the schedules.

use crate::clock::Clock;
use crate::fleet::{self, ShopSpec};
use crate::meter::{Meter, Shop, Snapshot};
use crate::pool::{Function, Instance, Pool};
use crate::ports::{self, Ctx, Index, KeyStore};
use crate::queues::{shop_of, Scaled};
use aws_lambda_events::event::sqs::SqsEvent;
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

/// What is deployed: the design before issue 14, or after.
#[derive(Clone, Debug)]
pub struct Design {
    pub name: &'static str,
    pub keys: KeyStore,
    /// Scheduled syncs spread by the 15-minute tick (else all at 03:00 Kyiv and every 4 h).
    pub spread: bool,
    pub sync: Function,
    pub sync_cfg: SyncConfig,
    pub order: Function,
    pub status: Function,
    pub webhook_reserved: Option<usize>,
    pub order_gate_wait: Option<Duration>,
    pub sync_gate_wait: Option<Duration>,
}

const ACCOUNT_CONCURRENCY: usize = 1000;

impl Design {
    fn functions(
        sync_batch: usize,
        sync_window: u64,
        sync_max: usize,
        order_max: usize,
        status_max: usize,
    ) -> (Function, Function, Function) {
        (
            Function {
                name: "catalog-sync",
                memory_mb: 512,
                timeout: Duration::from_secs(900),
                batch: sync_batch,
                window: Duration::from_secs(sync_window),
                max_concurrency: sync_max,
                reserved: false,
                init_secret_reads: 1,
                fixed_margin: catalog_sync::lambda::SETTLE_MARGIN,
            },
            Function {
                name: "order-push",
                memory_mb: 256,
                timeout: Duration::from_secs(60),
                batch: 10,
                window: Duration::from_secs(2),
                max_concurrency: order_max,
                reserved: false,
                init_secret_reads: 0,
                // Its margin is configured (`PushConfig::deadline_margin`, scaled).
                fixed_margin: Duration::ZERO,
            },
            Function {
                name: "status-apply",
                memory_mb: 256,
                timeout: Duration::from_secs(30),
                batch: 10,
                window: Duration::from_secs(1),
                max_concurrency: status_max,
                reserved: false,
                init_secret_reads: 1,
                fixed_margin: status_apply::consumer::SETTLE_MARGIN,
            },
        )
    }

    /// As deployed before issue 14: a secret per connection, every shop's sync at the same
    /// moment (03:00 Kyiv, and every 4 hours), one job per invocation sleeping on the gate, no
    /// cap on the sync and status consumers, order push capped at 5, no reservations.
    pub fn before() -> Self {
        let (sync, order, status) =
            Self::functions(1, 0, ACCOUNT_CONCURRENCY, 5, ACCOUNT_CONCURRENCY);
        Design {
            name: "before",
            keys: KeyStore::SecretsManager,
            spread: false,
            sync,
            sync_cfg: SyncConfig::default(),
            order,
            status,
            webhook_reserved: None,
            order_gate_wait: None,
            sync_gate_wait: None,
        }
    }

    /// As deployed, except that a sync sleeps on its key's gate for as long as it takes and
    /// works until the invocation's deadline (no time slices, no hand-off): the other side of
    /// the sleep-vs-hand-off choice (BENCHMARKS.md, "Fleet").
    pub fn sleep() -> Self {
        let mut d = Self::after();
        d.name = "sleep";
        d.sync_cfg.slice = None;
        d.sync_cfg.hand_off = false;
        d.sync_gate_wait = None;
        d
    }

    /// As deployed now (template.yaml defaults).
    pub fn after() -> Self {
        let (sync, order, status) = Self::functions(10, 20, 10, 20, 5);
        Design {
            name: "after",
            keys: KeyStore::Envelope,
            spread: true,
            sync,
            sync_cfg: SyncConfig::lambda(),
            order,
            status,
            webhook_reserved: Some(20),
            order_gate_wait: Some(order_push::MAX_GATE_WAIT),
            sync_gate_wait: Some(catalog_sync::MAX_GATE_WAIT),
        }
    }
}

pub struct Params {
    pub shops: usize,
    pub scale: f64,
    pub hours: i64,
    pub seed: u64,
    /// Multiplies every catalog size (1.0 = the fleet as specified; smaller for quick runs).
    pub product_scale: f64,
    /// KeyCRM hours before the day for onboarding.
    pub onboard_hours: i64,
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
        cleanup_grace: clock.real(c.cleanup_grace),
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
            self.stores.keys.clone(),
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
            dead_letters: Arc::new(Scaled {
                inner: self.dlqs[0].clone(),
                clock: *c,
                ctx: self.ctx.clone(),
                scale_delays: false,
            }),
            dictionaries: Arc::new(Dictionaries::new(
                c.real(order_push::dictionaries::DEFAULT_TTL),
            )),
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
        dead_letter: Some(Arc::new(Scaled {
            inner: w.dlqs[1].clone(),
            clock: w.clock,
            ctx: w.ctx.clone(),
            scale_delays: false,
        })),
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
        let failed: Vec<String> = resp
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect();
        w.delete_done(&w.status_q, &msgs, &failed).await;
    }
}

async fn sync_poller(w: Arc<World>) {
    let inst: Mutex<Instance<Engine>> = Mutex::new(Instance::default());
    let f = w.design.sync.clone();
    let dlq = Scaled {
        inner: w.dlqs[2].clone(),
        clock: w.clock,
        ctx: w.ctx.clone(),
        scale_delays: false,
    };
    while !w.stop.load(Ordering::Relaxed) {
        let msgs = w.receive(&w.sync_q, &f).await;
        if msgs.is_empty() {
            continue;
        }
        let event = sqs_event(&msgs);
        let dlq = &dlq;
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
        let failed: Vec<String> = resp
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect();
        w.delete_done(&w.sync_q, &msgs, &failed).await;
    }
}

/// The schedules (EventBridge Scheduler invoking catalog-sync).
async fn scheduler(w: Arc<World>, from: DateTime<Utc>, until: DateTime<Utc>, resume_only: bool) {
    let inst: Mutex<Instance<Engine>> = Mutex::new(Instance::default());
    let f = Function {
        batch: 1,
        window: Duration::ZERO,
        ..w.design.sync.clone()
    };
    let view: Arc<dyn Queue> = Arc::new(w.sync_q.scheduler_view());
    let mut t = from;
    while t < until && !w.stop.load(Ordering::Relaxed) {
        w.clock.sleep_until(t).await;
        let minute = (t.timestamp() / 60).rem_euclid(1440);
        // Ticks fall on whole 5 minutes (EventBridge's), wherever `from` is.
        if minute % 5 != 0 {
            t += chrono::Duration::minutes(1);
            continue;
        }
        let mut kinds = Vec::new();
        if minute % 5 == 0 {
            kinds.push(ScheduleKind::Resume);
        }
        if resume_only {
            // Only the resume tick (onboarding).
        } else if w.design.spread {
            if minute % 15 == 0 {
                kinds.push(ScheduleKind::Tick);
            }
        } else {
            // 03:00 Kyiv (00:00 UTC in summer) and every 4 hours from 00:00 Kyiv.
            if minute == 0 {
                kinds.push(ScheduleKind::Full);
            }
            if minute % 240 == 60 {
                kinds.push(ScheduleKind::Prices);
            }
        }
        for kind in kinds {
            let view = view.clone();
            let out = w
                .pool
                .invoke(
                    &f,
                    &inst,
                    || w.engine(view),
                    vec![],
                    |h, _| async move { h.on_schedule_at(kind, t).await },
                )
                .await;
            if let Err(e) = out {
                eprintln!("schedule {kind:?} at {t} failed: {e}");
            }
        }
        t += chrono::Duration::minutes(5);
    }
}

/// The merchants' orders: each becomes a shop order and an `order.created` event.
async fn merchants(w: Arc<World>, from: DateTime<Utc>, hours: i64, seed: u64) -> u64 {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x0_5eed);
    let mut all: Vec<(DateTime<Utc>, usize)> = Vec::new();
    for s in w.shops.iter() {
        for t in fleet::order_times(&mut rng, s.orders_per_day, from, hours) {
            all.push((t, s.index));
        }
    }
    all.sort();
    let mut sent = 0;
    for (n, (t, i)) in all.into_iter().enumerate() {
        if w.stop.load(Ordering::Relaxed) {
            break;
        }
        w.clock.sleep_until(t).await;
        let s = &w.shops[i];
        let order_id = format!("{}", 100_000 + n);
        w.stores.shop.add_order(&s.shop_id, &order_id, "new");
        let body = fleet::order_created(&s.shop_id, &order_id, t, &mut rng);
        if let Ok(mut m) = w.watch.sent.lock() {
            m.insert((i, order_id), w.clock.now());
        }
        if w.order_q.send(Outgoing::new(body)).await.is_ok() {
            sent += 1;
        }
    }
    sent
}

/// KeyCRM's managers: status changes fall due and fire the trigger webhooks.
async fn managers(w: Arc<World>) {
    while !w.stop.load(Ordering::Relaxed) {
        let now = w.clock.now().timestamp_micros();
        let due: Vec<(usize, i64, i64, String)> = {
            let mut heap = match w.watch.due.lock() {
                Ok(h) => h,
                Err(_) => return,
            };
            let mut out = Vec::new();
            while heap.peek().is_some_and(|r| r.0 .0 <= now) {
                if let Some(std::cmp::Reverse((_, i, id, status, order))) = heap.pop() {
                    out.push((i, id, status, order));
                }
            }
            out
        };
        for (i, keycrm_id, status, order) in due {
            let s = &w.shops[i];
            let shop_status = if status == fleet::PAID.0 {
                fleet::PAID.1
            } else {
                fleet::DONE.1
            };
            if let Ok(mut m) = w.watch.changed.lock() {
                m.insert(
                    (s.shop_id.clone(), order, shop_status.to_string()),
                    w.clock.now(),
                );
            }
            if w.sim
                .change_order_status(&s.api_key, keycrm_id, status)
                .await
                .is_ok()
            {
                w.watch.statuses_changed.fetch_add(1, Ordering::Relaxed);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The webhook receiver behind API Gateway: each request a webhook invocation.
async fn webhook_server(w: Arc<World>, token_key: store::TokenKey) -> (String, Arc<AtomicU64>) {
    use axum::extract::{Request, State};
    use axum::middleware::{self, Next};
    use axum::response::{IntoResponse, Response};
    #[derive(Clone)]
    struct St {
        w: Arc<World>,
        f: Function,
        instances: Arc<Vec<Mutex<Instance<()>>>>,
        reserved: Option<Arc<tokio::sync::Semaphore>>,
        throttled: Arc<AtomicU64>,
    }
    async fn mw(State(st): State<St>, req: Request, next: Next) -> Response {
        let conn = req
            .uri()
            .path()
            .split('/')
            .nth(4)
            .unwrap_or_default()
            .to_string();
        let shop = st.w.ctx.index.conn(&conn);
        st.w.ctx.meter.http(shop);
        let _permit = match &st.reserved {
            Some(sem) => sem.clone().try_acquire_owned().ok(),
            None => None,
        };
        let throttled = match &st.reserved {
            Some(_) => _permit.is_none(),
            None => st.w.pool.account.available_permits() == 0,
        };
        if throttled {
            st.throttled.fetch_add(1, Ordering::Relaxed);
            st.w.ctx.meter.throttled("webhook");
            return axum::http::StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
        let slot = st
            .instances
            .iter()
            .find(|m| m.try_lock().is_ok())
            .unwrap_or(&st.instances[0]);
        st.w.pool
            .invoke(&st.f, slot, || (), vec![shop], |_, _| next.run(req))
            .await
    }
    let receiver = Arc::new(webhook::Receiver::new(
        w.stores.conns.clone(),
        w.status_q.clone(),
        w.stores.journal.clone(),
        token_key,
    ));
    let reserved = w.design.webhook_reserved;
    let st = St {
        w: w.clone(),
        f: Function {
            name: "webhook",
            memory_mb: 256,
            timeout: Duration::from_secs(10),
            batch: 1,
            window: Duration::ZERO,
            max_concurrency: reserved.unwrap_or(ACCOUNT_CONCURRENCY),
            reserved: reserved.is_some(),
            init_secret_reads: 1,
            fixed_margin: Duration::ZERO,
        },
        instances: Arc::new(
            (0..reserved.unwrap_or(50))
                .map(|_| Mutex::new(Instance::default()))
                .collect(),
        ),
        reserved: reserved.map(|n| Arc::new(tokio::sync::Semaphore::new(n))),
        throttled: Arc::new(AtomicU64::new(0)),
    };
    let throttled = st.throttled.clone();
    let app = webhook::router(receiver).layer(middleware::from_fn_with_state(st, mw));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the webhook receiver");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (base, throttled)
}

fn day_start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 6, 2, 12, 0, 0)
        .single()
        .expect("a valid date")
}

pub async fn run(params: Params) -> Outcome {
    crate::report::install_log_counter();
    let specs = fleet::fleet(params.shops, params.seed, params.product_scale);
    let start = day_start();
    // Onboarding (every shop's first full sync) runs before the day; the biggest catalog
    // (100,000 products) needs about 10 KeyCRM hours of its key's budget.
    let clock = Clock::new(
        start - chrono::Duration::hours(params.onboard_hours),
        params.scale,
    );
    let meter = Arc::new(Meter::new(specs.len()));
    eprintln!(
        "fleet-bench: {} shops, {} products, {:.0} orders/day, design {}, KeyCRM clock x{}",
        specs.len(),
        specs.iter().map(|s| s.products).sum::<usize>(),
        specs.iter().map(|s| s.orders_per_day).sum::<f64>(),
        params.design.name,
        params.scale
    );

    // KeyCRM: one account (API key) per shop.
    let sim = keycrm_sim::start(
        SimConfig {
            accounts: specs
                .iter()
                .map(|s| AccountSpec {
                    api_key: s.api_key.clone(),
                    seed: 1000 + s.index as u64,
                    products: s.products,
                    pipelines_enabled: false,
                })
                .collect(),
            rate_limit_per_minute: 60,
            time_scale: params.scale,
            public_base_url: None,
        },
        "127.0.0.1:0".parse().expect("address"),
    )
    .await
    .expect("the simulator starts");
    // KeyCRM answers in about 250 ms.
    sim.set_faults(Faults {
        latency_ms: (250.0 / params.scale).round().max(1.0) as u64,
        ..Faults::default()
    });
    eprintln!(
        "fleet-bench: simulator ready after {:?}",
        clock_real_elapsed(&clock)
    );

    let mut index = Index::default();
    for s in &specs {
        index.by_conn.insert(s.conn_id.clone(), s.index);
        index.by_shop.insert(s.shop_id.clone(), s.index);
        index
            .by_fingerprint
            .insert(ApiKey::new(s.api_key.clone()).fingerprint(), s.index);
        index.by_secret.insert(s.secret.clone(), s.index);
    }
    let ctx = Ctx {
        meter: meter.clone(),
        index: Arc::new(index),
    };
    let stores = Stores {
        conns: Arc::new(ports::Connections::new(
            Arc::new(store::MemoryConnections::default()),
            ctx.clone(),
        )),
        ledger: Arc::new(ports::Ledger::new(
            Arc::new(store::MemoryLedger::new()),
            ctx.clone(),
        )),
        links: Arc::new(ports::Links::new(
            Arc::new(store::MemoryLinks::new()),
            ctx.clone(),
        )),
        sync: Arc::new(ports::Sync::new(
            Arc::new(store::MemorySync::new()),
            ctx.clone(),
        )),
        journal: Arc::new(ports::Journal::new(
            Arc::new(store::MemoryJournal::default()),
            ctx.clone(),
        )),
        keys: Arc::new(ports::Keys {
            inner: Arc::new(store::MemorySecrets::default()),
            ctx: ctx.clone(),
            model: params.design.keys,
        }),
        gate: Arc::new(ports::Gate::new(
            RateBudget::keycrm_scaled(params.scale),
            ctx.clone(),
        )),
        shop: Arc::new(MemoryShop::new()),
    };
    let dlqs = [
        Arc::new(MemoryQueue::new("order-events-dlq")),
        Arc::new(MemoryQueue::new("status-updates-dlq")),
        Arc::new(MemoryQueue::new("sync-jobs-dlq")),
    ];
    let order_q = Arc::new(Scaled::new(
        "order-events",
        clock,
        ctx.clone(),
        Some((dlqs[0].clone(), 5)),
    ));
    let status_q = Arc::new(Scaled::new(
        "status-updates",
        clock,
        ctx.clone(),
        Some((dlqs[1].clone(), 10)),
    ));
    let sync_q = Arc::new(Scaled::new(
        "sync-jobs",
        clock,
        ctx.clone(),
        Some((dlqs[2].clone(), 5)),
    ));
    let reserved = params.design.webhook_reserved.unwrap_or(0)
        + params.design.webhook_reserved.map_or(0, |_| 10);
    let pool = Arc::new(Pool::new(
        clock,
        meter.clone(),
        ACCOUNT_CONCURRENCY - reserved,
    ));
    let shops = Arc::new(specs.clone());
    let w = Arc::new(World {
        clock,
        pool,
        ctx: ctx.clone(),
        stores,
        sim: sim.clone(),
        shops: shops.clone(),
        design: params.design.clone(),
        order_q,
        status_q,
        sync_q,
        dlqs: dlqs.clone(),
        watch: Arc::new(Watch::default()),
        stop: Arc::new(AtomicBool::new(false)),
    });

    // The webhook receiver and the URLs merchants paste into KeyCRM.
    let token_key = store::TokenKey::generate();
    let (webhook_base, webhook_throttled) = webhook_server(w.clone(), token_key.clone()).await;

    // Connecting every shop (what the admin API does): its key, its connection, its trigger.
    let before = meter.snapshot();
    for s in shops.iter() {
        let key = ApiKey::new(s.api_key.clone());
        w.stores
            .keys
            .put(&s.secret, &key)
            .await
            .expect("key stored");
        let mut c = catalog_sync::kit::connection(
            &s.conn_id,
            &s.shop_id,
            &sim.base_url(),
            &s.secret,
            &key,
            fleet::settings(),
        );
        c.webhook_generations = WebhookGenerations {
            orders: 1,
            cards: 1,
            stock: 1,
        };
        w.stores.conns.create(&c).await.expect("connection stored");
        w.stores.shop.set_reference(&s.shop_id, shop_reference());
        let token = store::tokens::derive(&token_key, &s.conn_id, store::WebhookKind::Orders, 1);
        sim.set_webhook_url(
            &s.api_key,
            "order.change_order_status",
            Some(format!(
                "{webhook_base}/v1/webhooks/keycrm/{}/{token}",
                s.conn_id
            )),
        );
    }

    // The consumers (event source mappings).
    for _ in 0..w.design.sync.max_concurrency {
        tokio::spawn(sync_poller(w.clone()));
    }
    for _ in 0..w.design.order.max_concurrency {
        tokio::spawn(order_poller(w.clone()));
    }
    for _ in 0..w.design.status.max_concurrency {
        tokio::spawn(status_poller(w.clone()));
    }

    // Onboarding: every shop's first full sync (turning the flows on starts one), all at
    // once. Runs paused after an error are resumed when the queue has run dry
    // (`wait_until_synced`), not by the 5-minute tick: with 2,000 runs queued at once their
    // continuations wait longer than a lease's grace, and the tick would queue them again.
    let onboard_started = clock.now();
    for s in shops.iter() {
        let job = JobMessage {
            job: SyncJob {
                connection_id: s.conn_id.clone(),
                kind: SyncKind::Full,
                dry_run: false,
                requested_by: store::RequestedBy::Merchant,
                run_id: Some(format!("onboard-{}", s.index)),
            },
            settings: None,
            handoff: None,
        };
        let _ = w
            .sync_q
            .send(Outgoing::new(serde_json::to_string(&job).expect("job")))
            .await;
    }
    wait_until_synced(&w).await;
    let onboarding_virtual = (clock.now() - onboard_started).to_std().unwrap_or_default();
    eprintln!(
        "fleet-bench: onboarding (first syncs) done in {:.0} KeyCRM minutes ({:?} real)",
        onboarding_virtual.as_secs_f64() / 60.0,
        clock_real_elapsed(&clock)
    );
    let onboarding = meter.snapshot().since(&before);
    if clock.now() > start {
        eprintln!(
            "fleet-bench: warning: onboarding ran past the day's start; raise FLEET_ONBOARD_HOURS"
        );
    }
    clock.sleep_until(start).await;
    sim.reset_stats();
    let day_begin = meter.snapshot();
    let logs_begin = crate::report::logged().0;
    let end = start + chrono::Duration::hours(params.hours);

    let sched = tokio::spawn(scheduler(w.clone(), start, end, false));
    let mgr = tokio::spawn(managers(w.clone()));
    let merch = tokio::spawn(merchants(w.clone(), start, params.hours, params.seed));
    let mut last = Instant::now();
    while clock.now() < end {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if last.elapsed() > Duration::from_secs(30) {
            last = Instant::now();
            eprintln!(
                "fleet-bench: {} (KeyCRM time), {:?} real, orders queue {}, sync queue {}",
                clock.now().format("%d %H:%M"),
                clock_real_elapsed(&clock),
                w.order_q.approximate_len().await.unwrap_or(0),
                w.sync_q.approximate_len().await.unwrap_or(0)
            );
        }
    }
    let orders_sent = merch.await.unwrap_or(0);
    let _ = sched.await;
    // Orders and statuses of the day's last minutes still land (up to two hours).
    let drain_until = end + chrono::Duration::hours(2);
    while clock.now() < drain_until {
        let pending = w.order_q.approximate_len().await.unwrap_or(0)
            + w.status_q.approximate_len().await.unwrap_or(0)
            + w.watch.due.lock().map(|d| d.len()).unwrap_or(0);
        if pending == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let day_end = clock.now();
    let day = meter.snapshot().since(&day_begin);
    let day_log_bytes = crate::report::logged().0 - logs_begin;
    w.stop.store(true, Ordering::Relaxed);
    mgr.abort();

    let night = night_runs(&w, start, end).await;
    let link_bytes = shops
        .iter()
        .map(|s| {
            w.stores.links.inner.product_count(&s.conn_id)
                * w.stores.links.average_bytes(&s.conn_id)
        })
        .collect();
    let dead_letters = [
        dlqs[0].approximate_len().await.unwrap_or(0),
        dlqs[1].approximate_len().await.unwrap_or(0),
        dlqs[2].approximate_len().await.unwrap_or(0),
    ];
    let outcome = Outcome {
        day_hours: (day_end - start).num_seconds() as f64 / 3600.0,
        params,
        shops: specs,
        onboarding,
        onboarding_virtual,
        day,
        night,
        order_latency: w
            .watch
            .order_latency
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default(),
        orders_sent,
        status_latency: w
            .watch
            .status_latency
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default(),
        statuses_changed: w.watch.statuses_changed.load(Ordering::Relaxed),
        sim: sim.stats(),
        link_bytes,
        dead_letters,
        webhook_throttled: webhook_throttled.load(Ordering::Relaxed),
        day_log_bytes,
    };
    outcome
}

fn clock_real_elapsed(clock: &Clock) -> Duration {
    clock.real((clock.now() - clock.t0()).to_std().unwrap_or_default())
}

fn shop_reference() -> ShopReference {
    let n = |id: &str, name: &str| shop::NamedItem {
        id: id.into(),
        name: name.into(),
    };
    ShopReference {
        order_statuses: vec![
            n("new", "Нове"),
            n("paid", "Оплачене"),
            n("done", "Виконане"),
        ],
        order_addons: vec![],
        payment_methods: vec![n("cod", "Накладений платіж")],
        delivery_methods: vec![n("nova_poshta", "Нова Пошта")],
        currency: "UAH".into(),
    }
}

/// Until every run is over: nothing queued, nothing checkpointed.
async fn wait_until_synced(w: &Arc<World>) {
    let mut quiet = 0;
    let mut last = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let queued = w.sync_q.approximate_len().await.unwrap_or(1);
        let unfinished = w
            .stores
            .sync
            .inner
            .unfinished(1)
            .await
            .map(|u| u.len())
            .unwrap_or(1);
        if queued == 0 && unfinished == 0 {
            quiet += 1;
            if quiet >= 5 {
                return;
            }
        } else {
            quiet = 0;
        }
        if queued == 0 && unfinished > 0 {
            // Paused runs: what the resume tick would do.
            let e = w.engine(w.sync_q.clone());
            let _ = e.on_schedule_at(ScheduleKind::Resume, w.clock.now()).await;
        }
        if last.elapsed() > Duration::from_secs(30) {
            last = Instant::now();
            eprintln!(
                "fleet-bench: onboarding… {} jobs queued, {} runs in progress, {} KeyCRM requests so far",
                queued,
                unfinished,
                w.sim.stats().total_requests
            );
        }
    }
}

/// The night's full runs: when they started and finished (KeyCRM time).
async fn night_runs(w: &Arc<World>, from: DateTime<Utc>, to: DateTime<Utc>) -> NightRuns {
    let mut out = NightRuns::default();
    let real_now = Utc::now();
    let virt_now = w.clock.now();
    // Report times are the machine's clock: map them onto the bench's.
    let to_virtual = |t: DateTime<Utc>| {
        let back = (real_now - t).to_std().unwrap_or_default();
        virt_now - chrono::Duration::from_std(w.clock.virt(back)).unwrap_or_default()
    };
    let window = if w.design.spread {
        // Tonight's window opens at 22:00 UTC.
        from.date_naive()
            .and_hms_opt(22, 0, 0)
            .map(|d| Utc.from_utc_datetime(&d))
    } else {
        // 03:00 Kyiv = 00:00 UTC.
        (from + chrono::Duration::days(1))
            .date_naive()
            .and_hms_opt(0, 0, 0)
            .map(|d| Utc.from_utc_datetime(&d))
    };
    out.window_start = window;
    let Some(window) = window else {
        return out;
    };
    for s in w.shops.iter() {
        let runs = w
            .stores
            .sync
            .inner
            .list_runs(&s.conn_id, 20)
            .await
            .unwrap_or_default();
        let night = runs.iter().find(|r| {
            r.kind == Some(SyncKind::Full)
                && r.started_at
                    .map(to_virtual)
                    .is_some_and(|t| t >= window - chrono::Duration::minutes(5) && t < to)
        });
        match night {
            None => out.unfinished += 1,
            Some(r) => {
                if r.state == "completed" {
                    out.completed += 1;
                } else if r.state == "running" {
                    out.unfinished += 1;
                    continue;
                } else {
                    out.other += 1;
                }
                if let (Some(a), Some(b)) = (r.started_at, r.finished_at) {
                    let (a, b) = (to_virtual(a), to_virtual(b));
                    out.durations_min.push((b - a).num_seconds() as f64 / 60.0);
                    if out.last_finish.is_none_or(|l| b > l) {
                        out.last_finish = Some(b);
                    }
                }
            }
        }
    }
    out
}
