//! Many shops on one deployment: the spread schedule's tick, time slices handed to delayed
//! continuations, far rate-gate slots handed off instead of slept through, and the jobs of
//! one batch running side by side.

use crate::engine::{Config, Deps, Engine, JobOutcome};
use crate::handler::{JobMessage, ScheduleKind};
use crate::kit;
use async_trait::async_trait;
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use keycrm::{ApiKey, ClientConfig, LocalRateGate, RateBudget, RateGate};
use keycrm_sim::{AccountSpec, SimConfig, SimHandle};
use mapping::schedule::{SlotKind, Spread};
use mapping::Settings;
use queue::{MemoryQueue, Message, Outgoing, Queue, QueueError};
use runtime::KeycrmClients;
use shop::MemoryShop;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use store::{
    Connection, ConnectionStore, MemoryConnections, MemoryJournal, MemoryLinks, MemorySecrets,
    MemorySync, SecretStore, StoreError, SyncJob, SyncKind, SyncStore,
};

const SCALE: f64 = 600.0;

/// A queue that records what was sent (with its delay) and hands it out like SQS would.
#[derive(Default)]
struct Recorder {
    sent: Mutex<Vec<Outgoing>>,
    inner: Option<MemoryQueue>,
}

impl Recorder {
    fn new() -> Self {
        Recorder {
            sent: Mutex::new(Vec::new()),
            inner: Some(MemoryQueue::new("sync-jobs")),
        }
    }
    fn take(&self) -> Vec<Outgoing> {
        std::mem::take(&mut *self.sent.lock().unwrap())
    }
}

#[async_trait]
impl Queue for Recorder {
    fn name(&self) -> &str {
        "sync-jobs"
    }
    async fn send(&self, msg: Outgoing) -> Result<String, QueueError> {
        self.sent.lock().unwrap().push(msg.clone());
        match &self.inner {
            Some(q) => q.send(msg).await,
            None => Ok("m".into()),
        }
    }
    async fn receive(
        &self,
        max: usize,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<Message>, QueueError> {
        match &self.inner {
            Some(q) => q.receive(max, wait, visibility).await,
            None => Ok(Vec::new()),
        }
    }
    async fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        match &self.inner {
            Some(q) => q.delete(receipt).await,
            None => Ok(()),
        }
    }
    async fn change_visibility(&self, receipt: &str, timeout: Duration) -> Result<(), QueueError> {
        match &self.inner {
            Some(q) => q.change_visibility(receipt, timeout).await,
            None => Ok(()),
        }
    }
    async fn approximate_len(&self) -> Result<usize, QueueError> {
        Ok(self.sent.lock().unwrap().len())
    }
}

struct H {
    _sim: SimHandle,
    conns: Arc<MemoryConnections>,
    sync: Arc<MemorySync>,
    gate: Arc<LocalRateGate>,
    jobs: Arc<Recorder>,
    deps: Deps,
}

fn on() -> Settings {
    Settings {
        sync_products: true,
        sync_categories: true,
        ..Settings::default()
    }
}

/// One simulator account (own key) per connection `c1`, `c2`, …; `max_gate_wait` for the
/// client as catalog-sync's Lambda sets it.
async fn harness(connections: usize, products: usize, max_gate_wait: Option<Duration>) -> H {
    let accounts = (1..=connections)
        .map(|i| AccountSpec {
            api_key: format!("k{i}"),
            seed: 7 + i as u64,
            products,
            pipelines_enabled: false,
        })
        .collect();
    let sim = keycrm_sim::start(
        SimConfig {
            accounts,
            rate_limit_per_minute: 60,
            time_scale: SCALE,
            public_base_url: None,
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let secrets = Arc::new(MemorySecrets::default());
    let conns = Arc::new(MemoryConnections::default());
    for i in 1..=connections {
        let key = ApiKey::new(format!("k{i}"));
        secrets.put(&format!("sec/c{i}"), &key).await.unwrap();
        conns
            .create(&kit::connection(
                &format!("c{i}"),
                &format!("s{i}"),
                &sim.base_url(),
                &format!("sec/c{i}"),
                &key,
                on(),
            ))
            .await
            .unwrap();
    }
    let gate = Arc::new(LocalRateGate::new(RateBudget::keycrm_scaled(SCALE)));
    let cc = ClientConfig {
        max_gate_wait,
        ..ClientConfig::with_base_url(sim.base_url())
    };
    let clients = Arc::new(KeycrmClients::new(secrets, gate.clone(), cc));
    let sync = Arc::new(MemorySync::new());
    let jobs = Arc::new(Recorder::new());
    let deps = Deps {
        connections: conns.clone(),
        sync: sync.clone(),
        links: Arc::new(MemoryLinks::new()),
        shop: Arc::new(MemoryShop::new()),
        clients,
        journal: Arc::new(MemoryJournal::default()),
        jobs: jobs.clone(),
    };
    H {
        _sim: sim,
        conns,
        sync,
        gate,
        jobs,
        deps,
    }
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn jobs_of(sent: &[Outgoing]) -> Vec<(JobMessage, Duration)> {
    sent.iter()
        .map(|o| (serde_json::from_str(&o.body).unwrap(), o.delay))
        .collect()
}

#[tokio::test]
async fn the_tick_starts_only_the_connections_whose_slot_falls_in_it() {
    let h = harness(1, 10, None).await;
    // Many connections (one account is enough: nothing runs here), one inactive, one with
    // product sync off (full runs for its categories, no price runs).
    for i in 0..120 {
        let mut c = kit::connection(
            &format!("{i:032x}"),
            &format!("shop-{i}"),
            "http://127.0.0.1:9/v1",
            "sec/none",
            &ApiKey::new("unused"),
            on(),
        );
        if i == 7 {
            c.active = false;
        }
        if i == 8 {
            c.settings.sync_products = false;
        }
        h.conns.create(&c).await.unwrap();
    }
    let engine = Engine::new(h.deps.clone(), Config::default());
    let spread = Spread::default();
    let mut fulls: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut prices: BTreeMap<String, Vec<String>> = BTreeMap::new();
    // One whole UTC day of ticks.
    let day = at("2025-06-01T00:00:00Z");
    for i in 0..96 {
        let tick = day + ChronoDuration::minutes(15 * i);
        engine
            .on_schedule_at(ScheduleKind::Tick, tick)
            .await
            .unwrap();
        for (m, delay) in jobs_of(&h.jobs.take()) {
            let SyncJob {
                connection_id,
                kind,
                requested_by,
                run_id,
                ..
            } = m.job;
            assert_eq!(requested_by, "schedule");
            assert!(delay < Duration::from_secs(900));
            // Exactly the slot the pure rule gives this connection, at its minute.
            let due = spread.due(&connection_id, tick);
            let slot = match kind {
                SyncKind::Full => SlotKind::Full,
                SyncKind::Prices => SlotKind::Prices,
            };
            let d = due
                .iter()
                .find(|d| d.kind == slot)
                .expect("due in this tick");
            assert_eq!(d.delay, delay);
            assert_eq!(Some(d.run_id.clone()), run_id);
            let into = match kind {
                SyncKind::Full => &mut fulls,
                SyncKind::Prices => &mut prices,
            };
            into.entry(connection_id).or_default().push(run_id.unwrap());
        }
    }
    let id = |i: usize| format!("{i:032x}");
    // c1 of the harness plus 120, less the inactive one.
    assert_eq!(fulls.len(), 120);
    assert!(!fulls.contains_key(&id(7)) && !prices.contains_key(&id(7)));
    assert!(fulls.contains_key(&id(8)) && !prices.contains_key(&id(8)));
    for (conn, runs) in &fulls {
        assert_eq!(runs.len(), 1, "{conn}: one full run a UTC day");
    }
    for (conn, runs) in &prices {
        let distinct: BTreeSet<_> = runs.iter().collect();
        assert_eq!((runs.len(), distinct.len()), (6, 6), "{conn}: {runs:?}");
    }
    // Starts are spread: no tick of the night starts more than a fifth of the shops.
    let mut per_tick: BTreeMap<i64, usize> = BTreeMap::new();
    for conn in fulls.keys() {
        *per_tick
            .entry(spread.full_offset_s(conn) / 900)
            .or_default() += 1;
    }
    assert!(per_tick.len() >= 15, "{per_tick:?}");
    assert!(per_tick.values().all(|n| *n <= 24), "{per_tick:?}");

    // A tick retried late (the scheduled time in its input) starts the same jobs again; the
    // run ids make the second start a no-op when it runs.
    let late = crate::handler::ScheduleInput {
        kind: ScheduleKind::Tick,
        at: Some("2025-06-01T22:30:00Z".into()),
    };
    engine.on_schedule_input(&late).await.unwrap();
    let first = h.jobs.take();
    engine.on_schedule_input(&late).await.unwrap();
    let second = h.jobs.take();
    assert!(!first.is_empty());
    assert_eq!(first, second);
}

/// Follows a run's continuations to its end, like the sync-jobs queue would deliver them.
async fn follow(engine: &Engine, h: &H, first: &JobMessage) -> (JobOutcome, Vec<Duration>) {
    let mut msg = first.clone();
    let mut delays = Vec::new();
    for _ in 0..200 {
        let out = engine
            .on_job(msg.clone(), Instant::now() + Duration::from_secs(60))
            .await
            .unwrap();
        let sent = jobs_of(&h.jobs.take());
        match out {
            JobOutcome::Paused { .. } => {
                assert_eq!(sent.len(), 1, "one continuation per hand-off: {sent:?}");
                let (next, delay) = sent.into_iter().next().unwrap();
                delays.push(delay);
                msg = next;
            }
            other => {
                assert!(sent.is_empty(), "{sent:?}");
                return (other, delays);
            }
        }
    }
    panic!("the run did not end");
}

#[tokio::test]
async fn a_run_works_in_slices_and_hands_its_lease_to_its_continuation() {
    let h = harness(1, 160, None).await;
    let engine = Engine::new(
        h.deps.clone(),
        Config {
            safety: Duration::from_millis(50),
            // Two units per invocation stand for a time slice running out.
            max_units: Some(2),
            hand_off: true,
            ..Config::default()
        },
    );
    let job = JobMessage {
        job: kit::job("c1", SyncKind::Full, false),
        settings: None,
        handoff: None,
    };
    let out = engine
        .on_job(job.clone(), Instant::now() + Duration::from_secs(60))
        .await
        .unwrap();
    assert!(matches!(out, JobOutcome::Paused { .. }), "{out:?}");
    let sent = jobs_of(&h.jobs.take());
    assert_eq!(sent.len(), 1);
    let (cont, delay) = sent[0].clone();
    assert_eq!(delay, Duration::ZERO, "a slice's end continues at once");
    assert_eq!(cont.job.requested_by, "resume");
    let holder = cont
        .handoff
        .clone()
        .expect("the continuation carries the lease");

    // The lease stays reserved for the continuation: nothing else starts, and the resume
    // tick does not send a second copy.
    assert!(h
        .sync
        .acquire(
            "c1",
            SyncKind::Full,
            "someone-else",
            Duration::from_secs(60)
        )
        .await
        .unwrap()
        .is_none());
    assert!(h.sync.unfinished(10).await.unwrap().is_empty());
    let busy = engine
        .run_job(
            &kit::job("c1", SyncKind::Prices, false),
            None,
            Instant::now() + Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert_eq!(busy, JobOutcome::Busy);
    assert!(h.jobs.take().is_empty());

    // The continuation takes the lease over and the run goes on, slice by slice, to its end.
    assert_eq!(
        h.sync
            .get_run("c1", &run_id(&out))
            .await
            .unwrap()
            .unwrap()
            .state,
        "running"
    );
    let (end, delays) = follow(&engine, &h, &cont).await;
    assert!(
        matches!(end, JobOutcome::Finished { ref state, .. } if state == "completed"),
        "{end:?}"
    );
    assert!(delays.len() >= 2, "{delays:?}");
    let report = h.sync.get_run("c1", &run_id(&out)).await.unwrap().unwrap();
    assert!(report.invocations as usize >= delays.len() + 2);
    assert!(!holder.is_empty());
    // Free again once the run is over.
    assert!(h
        .sync
        .acquire("c1", SyncKind::Full, "someone-else", Duration::from_secs(1))
        .await
        .unwrap()
        .is_some());
}

/// A backlog keeps continuations queued longer than the lease's grace: the resume tick must
/// not queue those runs again on every tick (the queue would grow without bound), yet must
/// still continue a run whose continuation was lost.
#[tokio::test]
async fn the_resume_tick_skips_runs_whose_continuation_is_queued_and_requeues_lost_ones() {
    let h = harness(2, 160, None).await;
    let config = Config {
        safety: Duration::from_millis(50),
        max_units: Some(2),
        hand_off: true,
        // The handed-off lease's grace is over at once, as in a long backlog.
        hand_off_grace: Duration::ZERO,
        ..Config::default()
    };
    let engine = Engine::new(h.deps.clone(), config.clone());
    // c2's continuation is lost (dead-lettered): its mark has passed.
    let lost_engine = Engine::new(
        h.deps.clone(),
        Config {
            continuation_mark: Duration::ZERO,
            ..config
        },
    );
    let deadline = || Instant::now() + Duration::from_secs(60);
    let c1 = engine
        .run_job(&kit::job("c1", SyncKind::Full, false), None, deadline())
        .await
        .unwrap();
    assert!(matches!(c1, JobOutcome::Paused { .. }), "{c1:?}");
    let c2 = lost_engine
        .run_job(&kit::job("c2", SyncKind::Full, false), None, deadline())
        .await
        .unwrap();
    assert!(matches!(c2, JobOutcome::Paused { .. }), "{c2:?}");
    let handed = jobs_of(&h.jobs.take());
    assert_eq!(handed.len(), 2, "{handed:?}");
    // Both leases expire (no grace): the old tick queued both runs again, every 5 minutes.
    tokio::time::sleep(Duration::from_millis(20)).await;

    // The tick queues only the run whose continuation is gone.
    let fan = engine.on_schedule(ScheduleKind::Resume).await.unwrap();
    assert_eq!(fan.enqueued, 1, "{fan:?}");
    let queued = jobs_of(&h.jobs.take());
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].0.job.connection_id, "c2");
    assert_eq!(queued[0].0.job.requested_by, "resume");
    // The next tick queues nothing: c1's continuation and the tick's job for c2 both wait.
    let fan = engine.on_schedule(ScheduleKind::Resume).await.unwrap();
    assert_eq!(fan.enqueued, 0, "{fan:?}");
    assert!(h.jobs.take().is_empty());

    // c1's continuation, however late, takes the run over and hands off again (marked anew).
    let c1_cont = handed
        .iter()
        .find(|(m, _)| m.job.connection_id == "c1")
        .map(|(m, _)| m.clone())
        .unwrap();
    let out = engine.on_job(c1_cont, deadline()).await.unwrap();
    assert!(matches!(out, JobOutcome::Paused { .. }), "{out:?}");
    assert_eq!(jobs_of(&h.jobs.take()).len(), 1);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let fan = engine.on_schedule(ScheduleKind::Resume).await.unwrap();
    assert_eq!(fan.enqueued, 0, "{fan:?}");

    // A paused run (no continuation sent) is the tick's at once.
    let lease = h
        .sync
        .acquire("c1", SyncKind::Full, "pauser", Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    h.sync.pause(&lease).await.unwrap();
    let fan = engine.on_schedule(ScheduleKind::Resume).await.unwrap();
    assert_eq!(fan.enqueued, 1, "{fan:?}");
    let queued = jobs_of(&h.jobs.take());
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].0.job.connection_id, "c1");
}

fn run_id(out: &JobOutcome) -> String {
    match out {
        JobOutcome::Paused { run_id } | JobOutcome::Finished { run_id, .. } => run_id.clone(),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_far_slot_is_handed_to_a_delayed_continuation_not_slept_through() {
    // The sync waits at most 1 s (real) for a slot, like catalog-sync's MAX_GATE_WAIT.
    let h = harness(1, 60, Some(Duration::from_secs(1))).await;
    let engine = Engine::new(
        h.deps.clone(),
        Config {
            safety: Duration::from_millis(50),
            hand_off: true,
            ..Config::default()
        },
    );
    // A 429 put the key on hold for 30 s (real): every caller must wait that long.
    let fingerprint = ApiKey::new("k1").fingerprint();
    h.gate
        .penalize(&fingerprint, Duration::from_secs(30))
        .await
        .unwrap();
    let started = Instant::now();
    let out = engine
        .run_job(
            &kit::job("c1", SyncKind::Full, false),
            None,
            Instant::now() + Duration::from_secs(120),
        )
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "slept on the gate: {:?}",
        started.elapsed()
    );
    assert!(matches!(out, JobOutcome::Paused { .. }), "{out:?}");
    let sent = jobs_of(&h.jobs.take());
    assert_eq!(sent.len(), 1);
    let (cont, delay) = &sent[0];
    assert!(
        delay >= &Duration::from_secs(25) && delay <= &Duration::from_secs(31),
        "continues when the key has a slot again: {delay:?}"
    );
    assert!(cont.handoff.is_some());
    // Waiting for the budget is not a failure of the run.
    let lease = h
        .sync
        .acquire(
            "c1",
            SyncKind::Full,
            cont.handoff.as_deref().unwrap(),
            Duration::from_secs(5),
        )
        .await
        .unwrap()
        .unwrap();
    let cp: crate::checkpoint::Checkpoint =
        serde_json::from_str(lease.checkpoint.as_deref().unwrap()).unwrap();
    assert_eq!((cp.failures, cp.waits), (0, 1));
    let report = lease.run.unwrap();
    assert_eq!(report.state, "running");
    assert!(report
        .message
        .unwrap_or_default()
        .contains("waiting for the KeyCRM key's request budget"));
}

/// A connection store whose first read of each of two connections waits until both jobs are
/// in progress: jobs run one after the other never get there.
struct Rendezvous {
    inner: Arc<MemoryConnections>,
    barrier: tokio::sync::Barrier,
    met: Mutex<BTreeSet<String>>,
}

#[async_trait]
impl ConnectionStore for Rendezvous {
    async fn create(&self, conn: &Connection) -> Result<(), StoreError> {
        self.inner.create(conn).await
    }
    async fn get(&self, id: &str) -> Result<Option<Connection>, StoreError> {
        let first = self.met.lock().unwrap().insert(id.to_string());
        if first {
            self.barrier.wait().await;
        }
        self.inner.get(id).await
    }
    async fn get_by_shop(&self, shop_id: &str) -> Result<Option<Connection>, StoreError> {
        self.inner.get_by_shop(shop_id).await
    }
    async fn update(&self, conn: &Connection) -> Result<(), StoreError> {
        self.inner.update(conn).await
    }
    async fn mark_deleting(&self, conn: &Connection) -> Result<(), StoreError> {
        self.inner.mark_deleting(conn).await
    }
    async fn get_deleting(
        &self,
        id: &str,
    ) -> Result<Option<(Connection, DateTime<Utc>)>, StoreError> {
        self.inner.get_deleting(id).await
    }
    async fn list_deleting(
        &self,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<(Vec<String>, Option<String>), StoreError> {
        self.inner.list_deleting(cursor, limit).await
    }
    async fn purge(&self, id: &str, max_items: usize) -> Result<bool, StoreError> {
        self.inner.purge(id, max_items).await
    }
    async fn remove(&self, id: &str) -> Result<(), StoreError> {
        self.inner.remove(id).await
    }
    async fn list(
        &self,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<(Vec<Connection>, Option<String>), StoreError> {
        self.inner.list(cursor, limit).await
    }
}

#[tokio::test]
async fn the_jobs_of_one_batch_run_side_by_side() {
    use crate::lambda::handle_sqs;
    let h = harness(2, 30, None).await;
    let mut deps = h.deps.clone();
    deps.connections = Arc::new(Rendezvous {
        inner: h.conns.clone(),
        barrier: tokio::sync::Barrier::new(2),
        met: Mutex::new(BTreeSet::new()),
    });
    let engine = Engine::new(
        deps,
        Config {
            safety: Duration::from_millis(50),
            jobs_at_once: 10,
            ..Config::default()
        },
    );
    let records: Vec<serde_json::Value> = ["c1", "c2"]
        .iter()
        .map(|c| {
            let body = serde_json::to_string(&kit::job(c, SyncKind::Prices, false)).unwrap();
            serde_json::json!({"messageId": c, "receiptHandle": c, "body": body})
        })
        .collect();
    let event: aws_lambda_events::event::sqs::SqsEvent =
        serde_json::from_value(serde_json::json!({ "Records": records })).unwrap();
    let resp = tokio::time::timeout(
        Duration::from_secs(60),
        handle_sqs(
            &engine,
            event,
            Some(Instant::now() + Duration::from_secs(90)),
            None,
        ),
    )
    .await
    .expect("both jobs were in progress at once");
    assert!(resp.batch_item_failures.is_empty(), "{resp:?}");
    for c in ["c1", "c2"] {
        let runs = h.sync.list_runs(c, 5).await.unwrap();
        assert_eq!(runs.len(), 1, "{c}");
        assert_eq!(runs[0].state, "completed", "{c}: {:?}", runs[0]);
    }
}

/// One connection, `c1`, whose lease another run (its price run) holds.
async fn busy_harness() -> H {
    let h = harness(1, 10, None).await;
    assert!(h
        .sync
        .acquire("c1", SyncKind::Full, "price-run", Duration::from_secs(600))
        .await
        .unwrap()
        .is_some());
    h
}

#[tokio::test]
async fn a_scheduled_full_run_finding_its_connection_busy_tries_again_later_tonight() {
    let h = busy_harness().await;
    let engine = Engine::new(h.deps.clone(), Config::default());
    let full = |run_id: &str, by: store::RequestedBy| store::SyncJob {
        run_id: Some(run_id.to_string()),
        requested_by: by,
        ..kit::job("c1", SyncKind::Full, false)
    };
    // Tonight's window (named after the day it opens) has not closed yet.
    let tonight = format!("full-{}", Utc::now().format("%Y%m%d"));
    let deadline = Instant::now() + Duration::from_secs(60);
    let job = full(&tonight, store::RequestedBy::Schedule);
    assert_eq!(
        engine.run_job(&job, None, deadline).await.unwrap(),
        JobOutcome::Busy
    );
    let sent = jobs_of(&h.jobs.take());
    assert_eq!(sent.len(), 1, "{sent:?}");
    let (again, delay) = &sent[0];
    assert_eq!(*delay, crate::engine::BUSY_RETRY);
    assert_eq!(
        again.job, job,
        "the same job, with its run id: it still runs once"
    );
    assert!(again.handoff.is_none());

    // A window closed longer ago than it was open: dropped, as every other busy job is.
    let long_ago = format!(
        "full-{}",
        (Utc::now() - ChronoDuration::days(2)).format("%Y%m%d")
    );
    for job in [
        full(&long_ago, store::RequestedBy::Schedule),
        full(&tonight, store::RequestedBy::Operator),
        store::SyncJob {
            run_id: Some(tonight.clone()),
            ..kit::job("c1", SyncKind::Prices, false)
        },
        kit::job("c1", SyncKind::Full, false),
    ] {
        assert_eq!(
            engine.run_job(&job, None, deadline).await.unwrap(),
            JobOutcome::Busy
        );
        assert!(h.jobs.take().is_empty(), "{job:?}");
    }
}

#[tokio::test]
async fn whether_a_busy_full_run_may_try_again_is_decided_by_the_configured_clock() {
    let h = busy_harness().await;
    // A night ten days ago, seen from a clock that stands in that night's window.
    let run_id = format!(
        "full-{}",
        (Utc::now() - ChronoDuration::days(10)).format("%Y%m%d")
    );
    let night = Config::default()
        .spread
        .full_window_end(&run_id)
        .expect("a scheduled run id")
        - ChronoDuration::minutes(1);
    let job = store::SyncJob {
        run_id: Some(run_id),
        requested_by: store::RequestedBy::Schedule,
        ..kit::job("c1", SyncKind::Full, false)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let engine_at = |now: chrono::DateTime<Utc>| {
        Engine::new(
            h.deps.clone(),
            Config {
                now: crate::Now::from_fn(move || now),
                ..Config::default()
            },
        )
    };
    let then = engine_at(night);
    assert_eq!(
        then.run_job(&job, None, deadline).await.unwrap(),
        JobOutcome::Busy
    );
    assert_eq!(jobs_of(&h.jobs.take()).len(), 1, "tried again that night");
    // The same job, by the wall clock: its window closed long ago.
    let today = engine_at(Utc::now());
    assert_eq!(
        today.run_job(&job, None, deadline).await.unwrap(),
        JobOutcome::Busy
    );
    assert!(h.jobs.take().is_empty());
}
