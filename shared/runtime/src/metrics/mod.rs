//! Operational metrics in CloudWatch Embedded Metric Format.
//!
//! Each function wraps every invocation (an SQS batch, an HTTP request, a schedule tick; in
//! the local run, one step of a worker) in [`Emitter::run`]. Code inside records through
//! [`count`] and [`observe`], which add to the invocation's [`Recorder`] (a task-local, so
//! deep code such as the KeyCRM client's observer needs no handle passed down) and do
//! nothing outside an invocation. When the invocation ends, the emitter writes a handful of
//! EMF lines to stdout, one per combination of dimension values, never one per event, and
//! adds the per-connection KeyCRM usage to each connection's status (the journal).
//!
//! What may be recorded is fixed by [`catalog`]: metric names, units and dimension keys;
//! dimension values are `&'static str`, so no shop, order, key or token can become one.

pub mod catalog;
pub mod emf;
pub mod http;
mod keycrm;
mod shop;

pub use catalog::{Function, Metric, Unit, NAMESPACE};
pub use emf::{Sample, Values};
pub use keycrm::KeycrmMeter;
pub use shop::{shop_error_reason, MeteredCatalog, MeteredOrders};

use std::collections::BTreeMap;
use std::future::Future;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use store::{Counter, StatusJournal};

/// KeyCRM traffic of one connection within one invocation: the merchant-facing share of
/// "how much of its budget each key spends", written to the connection's status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub keycrm_requests: u64,
    pub keycrm_rate_limited: u64,
}

/// What one invocation recorded.
#[derive(Default, Debug)]
struct Registry {
    samples: BTreeMap<(&'static str, Vec<&'static str>), Sample>,
    usage: BTreeMap<String, Usage>,
}

impl Registry {
    fn add(&mut self, metric: &'static Metric, labels: &[&'static str], value: f64) {
        let mut labels = labels.to_vec();
        // A call site with the wrong number of labels still publishes a valid document.
        labels.resize(metric.labels.len(), "unknown");
        let s = self
            .samples
            .entry((metric.name, labels.clone()))
            .or_insert_with(|| Sample {
                metric,
                labels,
                values: metric.unit.empty(),
            });
        match &mut s.values {
            Values::Sum(sum) => *sum += value,
            Values::List(list) => list.push(value),
        }
    }
}

/// The accumulator of one invocation. Cheap to clone; clones share the figures.
#[derive(Clone, Debug)]
pub struct Recorder {
    function: Function,
    inner: Arc<Mutex<Registry>>,
}

impl Recorder {
    pub fn new(function: Function) -> Self {
        Recorder {
            function,
            inner: Arc::new(Mutex::new(Registry::default())),
        }
    }

    pub fn function(&self) -> Function {
        self.function
    }

    fn with<T>(&self, f: impl FnOnce(&mut Registry) -> T) -> T {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }

    pub fn count(&self, metric: &'static Metric, labels: &[&'static str], n: u64) {
        self.with(|r| r.add(metric, labels, n as f64));
    }

    pub fn observe(&self, metric: &'static Metric, labels: &[&'static str], d: Duration) {
        self.with(|r| r.add(metric, labels, d.as_secs_f64() * 1000.0));
    }

    pub fn keycrm_usage(&self, connection_id: &str, rate_limited: bool) {
        self.with(|r| {
            let u = r.usage.entry(connection_id.to_string()).or_default();
            u.keycrm_requests += 1;
            if rate_limited {
                u.keycrm_rate_limited += 1;
            }
        });
    }

    /// Takes everything recorded so far (the recorder starts empty again).
    pub fn take(&self) -> (Vec<Sample>, BTreeMap<String, Usage>) {
        self.with(|r| {
            let reg = std::mem::take(r);
            (reg.samples.into_values().collect(), reg.usage)
        })
    }
}

tokio::task_local! {
    static CURRENT: Recorder;
}

/// Runs `work` with `recorder` receiving what [`count`] and [`observe`] record inside it.
pub async fn scope<F: Future>(recorder: Recorder, work: F) -> F::Output {
    CURRENT.scope(recorder, work).await
}

/// The recorder of the invocation in progress, if any.
pub fn current() -> Option<Recorder> {
    CURRENT.try_with(Recorder::clone).ok()
}

/// Adds `n` to a count metric of the current invocation (nothing outside one).
pub fn count(metric: &'static Metric, labels: &[&'static str], n: u64) {
    let _ = CURRENT.try_with(|r| r.count(metric, labels, n));
}

/// Records one duration of the current invocation (nothing outside one).
pub fn observe(metric: &'static Metric, labels: &[&'static str], d: Duration) {
    let _ = CURRENT.try_with(|r| r.observe(metric, labels, d));
}

/// One KeyCRM request of a connection (per-connection usage, for its status).
pub fn keycrm_usage(connection_id: &str, rate_limited: bool) {
    let _ = CURRENT.try_with(|r| r.keycrm_usage(connection_id, rate_limited));
}

/// Takes the KeyCRM usage of `connection_id` recorded so far in the current invocation, for a
/// caller that writes it with its own counters (one status write instead of two); the flush
/// then writes only what was not taken.
pub fn take_usage(connection_id: &str) -> Option<Usage> {
    CURRENT
        .try_with(|r| r.with(|reg| reg.usage.remove(connection_id)))
        .ok()
        .flatten()
}

/// Lines captured in memory (tests, benchmarks).
#[derive(Clone, Debug, Default)]
pub struct Captured(Arc<Mutex<Vec<String>>>);

impl Captured {
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Every captured line parsed as JSON (a line that is not JSON is a bug: it panics).
    pub fn documents(&self) -> Vec<serde_json::Value> {
        self.lines()
            .iter()
            .map(|l| serde_json::from_str(l).expect("an EMF line is JSON"))
            .collect()
    }

    pub fn clear(&self) {
        if let Ok(mut l) = self.0.lock() {
            l.clear();
        }
    }
}

/// Where EMF lines go.
#[derive(Clone, Debug, Default)]
pub enum Sink {
    /// Lambda: stdout, which CloudWatch Logs reads (one `write` per line, under stdout's
    /// lock, so a line never interleaves with a log line).
    #[default]
    Stdout,
    /// A file, one document per line (the local run's `--metrics FILE`).
    File(Arc<Mutex<std::fs::File>>),
    Memory(Captured),
    Discard,
}

impl Sink {
    /// A sink keeping its lines in memory, and the handle to read them.
    pub fn memory() -> (Sink, Captured) {
        let c = Captured::default();
        (Sink::Memory(c.clone()), c)
    }

    /// Appends to (or creates) the file at `path`.
    pub fn file(path: &std::path::Path) -> std::io::Result<Sink> {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Sink::File(Arc::new(Mutex::new(f))))
    }

    fn write(&self, lines: &[String]) {
        match self {
            Sink::Stdout => {
                let mut out = std::io::stdout().lock();
                for l in lines {
                    let _ = out.write_all(format!("{l}\n").as_bytes());
                }
                let _ = out.flush();
            }
            Sink::File(f) => {
                if let Ok(mut f) = f.lock() {
                    for l in lines {
                        let _ = f.write_all(format!("{l}\n").as_bytes());
                    }
                }
            }
            Sink::Memory(c) => {
                if let Ok(mut v) = c.0.lock() {
                    v.extend(lines.iter().cloned());
                }
            }
            Sink::Discard => {}
        }
    }
}

/// Wraps each invocation of one function: records, then flushes.
#[derive(Clone)]
pub struct Emitter {
    function: Function,
    sink: Sink,
    journal: Option<Arc<dyn StatusJournal>>,
}

impl std::fmt::Debug for Emitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emitter")
            .field("function", &self.function)
            .field("sink", &self.sink)
            .field("journal", &self.journal.is_some())
            .finish()
    }
}

impl Emitter {
    /// Writes to stdout; per-connection usage is dropped until [`Self::with_journal`].
    pub fn new(function: Function) -> Self {
        Emitter {
            function,
            sink: Sink::Stdout,
            journal: None,
        }
    }

    pub fn with_sink(mut self, sink: Sink) -> Self {
        self.sink = sink;
        self
    }

    /// Where per-connection KeyCRM usage is added up (the connections' status).
    pub fn with_journal(mut self, journal: Arc<dyn StatusJournal>) -> Self {
        self.journal = Some(journal);
        self
    }

    pub fn function(&self) -> Function {
        self.function
    }

    /// Runs one invocation's `work`, then flushes what it recorded.
    pub async fn run<F: Future>(&self, work: F) -> F::Output {
        self.run_until(None, work).await
    }

    /// [`Self::run`] for an invocation that must answer by `flush_by`: the journal writes of
    /// the flush give up then (the EMF lines are written regardless; they take no time).
    pub async fn run_until<F: Future>(&self, flush_by: Option<Instant>, work: F) -> F::Output {
        let recorder = Recorder::new(self.function);
        let out = scope(recorder.clone(), work).await;
        self.flush(&recorder, flush_by).await;
        out
    }

    /// Writes what `recorder` holds: EMF lines to the sink, usage to the journal (until
    /// `flush_by`). Never fails the invocation: a journal error is logged.
    pub async fn flush(&self, recorder: &Recorder, flush_by: Option<Instant>) {
        let (samples, usage) = recorder.take();
        self.write_lines(&samples);
        let Some(journal) = &self.journal else {
            return;
        };
        if usage.is_empty() {
            return;
        }
        let writes = async {
            for (conn, u) in &usage {
                let mut counts = vec![(Counter::KeycrmRequests, u.keycrm_requests)];
                if u.keycrm_rate_limited > 0 {
                    counts.push((Counter::KeycrmRateLimited, u.keycrm_rate_limited));
                }
                if let Err(e) = journal.count_many(conn, &counts).await {
                    tracing::warn!(connection = %conn, error = %e, "could not add KeyCRM usage to the connection's status");
                }
            }
        };
        match flush_by {
            None => writes.await,
            Some(by) => {
                if tokio::time::timeout_at(by.into(), writes).await.is_err() {
                    tracing::warn!("KeyCRM usage not added to the connections' status: the invocation's time ran out");
                }
            }
        }
    }

    fn write_lines(&self, samples: &[Sample]) {
        if samples.is_empty() {
            return;
        }
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        let lines: Vec<String> = emf::documents(self.function, now_ms, samples)
            .iter()
            .map(serde_json::Value::to_string)
            .collect();
        self.sink.write(&lines);
    }
}

#[cfg(test)]
mod tests {
    use super::catalog::*;
    use super::*;
    use store::MemoryJournal;

    #[tokio::test]
    async fn an_invocation_flushes_once_and_only_what_it_recorded() {
        let (sink, lines) = Sink::memory();
        let journal = Arc::new(MemoryJournal::default());
        let e = Emitter::new(Function::OrderPush)
            .with_sink(sink)
            .with_journal(journal.clone());
        let out = e
            .run(async {
                count(&ORDERS_PUSHED, &[], 1);
                count(&ORDERS_PUSHED, &[], 2);
                count(&ORDERS_FAILED, &["mapping"], 1);
                observe(&RATE_GATE_WAIT, &[], Duration::from_millis(40));
                keycrm_usage("c1", false);
                keycrm_usage("c1", true);
                7
            })
            .await;
        assert_eq!(out, 7);
        let docs = lines.documents();
        assert_eq!(docs.len(), 2);
        for d in &docs {
            emf::validate(d).unwrap();
        }
        let plain = docs
            .iter()
            .find(|d| d.get("OrdersPushed").is_some())
            .unwrap();
        assert_eq!(plain["OrdersPushed"], 3.0);
        assert_eq!(plain["RateGateWait"], 40.0);
        let status = journal.status("c1").await.unwrap();
        // The figures went out once.
        assert_eq!(lines.documents().len(), 2);
        assert_eq!(status.counters["keycrm_requests"], 2);
        assert_eq!(status.counters["keycrm_rate_limited"], 1);

        // A caller may take a connection's usage to write it with its own counters.
        let taken = e
            .run(async {
                keycrm_usage("c2", true);
                take_usage("c2")
            })
            .await;
        assert_eq!(
            taken,
            Some(Usage {
                keycrm_requests: 1,
                keycrm_rate_limited: 1
            })
        );
        assert!(journal.status("c2").await.unwrap().counters["keycrm_requests"] == 0);
        assert_eq!(take_usage("c1"), None, "outside an invocation");

        // Nothing recorded: nothing written. Outside an invocation: nothing recorded.
        lines.clear();
        e.run(async {}).await;
        count(&ORDERS_PUSHED, &[], 1);
        assert!(lines.lines().is_empty());
        assert!(current().is_none());
    }

    #[tokio::test]
    async fn invocations_do_not_share_figures() {
        let (sink, lines) = Sink::memory();
        let a = Emitter::new(Function::Webhook).with_sink(sink.clone());
        let b = Emitter::new(Function::StatusApply).with_sink(sink);
        let (x, y) = tokio::join!(
            a.run(async {
                count(&WEBHOOKS_ACCEPTED, &[], 1);
                tokio::task::yield_now().await;
                count(&WEBHOOKS_ACCEPTED, &[], 1);
            }),
            b.run(async {
                count(&WEBHOOKS_APPLIED, &[], 5);
            })
        );
        let _ = (x, y);
        let docs = lines.documents();
        assert_eq!(docs.len(), 2);
        let w = docs.iter().find(|d| d["function"] == "webhook").unwrap();
        assert_eq!(w["WebhooksAccepted"], 2.0);
        assert!(w.get("WebhooksApplied").is_none());
        let s = docs
            .iter()
            .find(|d| d["function"] == "status-apply")
            .unwrap();
        assert_eq!(s["WebhooksApplied"], 5.0);
    }

    /// A journal whose writes hang (a stalled DynamoDB).
    struct Stalled;

    #[async_trait::async_trait]
    impl StatusJournal for Stalled {
        async fn count(&self, _: &str, _: Counter, _: u64) -> Result<(), store::StoreError> {
            std::future::pending().await
        }
        async fn record_error(&self, _: &str, _: &str) -> Result<(), store::StoreError> {
            Ok(())
        }
        async fn record_failure(
            &self,
            _: &str,
            _: &store::OrderFailure,
        ) -> Result<(), store::StoreError> {
            Ok(())
        }
        async fn clear_failure(&self, _: &str, _: &str) -> Result<(), store::StoreError> {
            Ok(())
        }
        async fn record_sync(
            &self,
            _: &str,
            _: &str,
            _: &store::SyncSummary,
        ) -> Result<(), store::StoreError> {
            Ok(())
        }
        async fn status(&self, _: &str) -> Result<store::ConnectionStatus, store::StoreError> {
            Ok(Default::default())
        }
    }

    #[tokio::test]
    async fn a_stalled_journal_never_holds_the_answer_past_its_time() {
        let (sink, lines) = Sink::memory();
        let e = Emitter::new(Function::OrderPush)
            .with_sink(sink)
            .with_journal(Arc::new(Stalled));
        let started = Instant::now();
        e.run_until(Some(Instant::now() + Duration::from_millis(100)), async {
            count(&ORDERS_PUSHED, &[], 1);
            keycrm_usage("c1", false);
        })
        .await;
        assert!(started.elapsed() < Duration::from_secs(5));
        // The metrics went out before the journal was tried.
        assert_eq!(lines.documents().len(), 1);
    }

    #[test]
    fn wrong_label_counts_still_make_valid_documents() {
        let r = Recorder::new(Function::OrderPush);
        r.count(&ORDERS_FAILED, &["a", "b"], 1);
        r.count(&ORDERS_PUSHED, &["x"], 1);
        let (samples, _) = r.take();
        for d in emf::documents(Function::OrderPush, 1, &samples) {
            emf::validate(&d).unwrap();
        }
    }
}
