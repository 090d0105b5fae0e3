//! The figures: timing of the night and the peak, what was counted, and what it costs.

use crate::fleet::Profile;
use crate::meter::{Snapshot, Usage};
use crate::prices::{Prices, AWS_US_EAST_1};
use crate::world::Outcome;
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

static METER_LOGS: OnceLock<(
    Arc<std::sync::atomic::AtomicU64>,
    Arc<std::sync::atomic::AtomicU64>,
)> = OnceLock::new();

/// A log sink that only counts: the functions' INFO logs as CloudWatch would ingest them.
#[derive(Clone)]
struct Counting;

impl Write for Counting {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some((bytes, events)) = METER_LOGS.get() {
            bytes.fetch_add(buf.len() as u64, Ordering::Relaxed);
            if buf.ends_with(b"\n") {
                events.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Logs are formatted as on Lambda (JSON, `RUST_LOG=info`) and counted, not kept;
/// `FLEET_LOG` (an env filter) also prints them to stderr.
pub fn install_log_counter() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{fmt, EnvFilter, Layer};
    let bytes = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let events = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let _ = METER_LOGS.set((bytes, events));
    let counted = fmt::layer()
        .json()
        .with_writer(|| Counting)
        .with_filter(EnvFilter::new("info,keycrm_sim=off"));
    let shown = std::env::var("FLEET_LOG").ok().map(|f| {
        fmt::layer()
            .with_writer(std::io::stderr)
            .with_filter(EnvFilter::new(f))
    });
    let _ = tracing_subscriber::registry()
        .with(counted)
        .with(shown)
        .try_init();
}

/// Log bytes and events counted so far.
pub fn logged() -> (f64, f64) {
    METER_LOGS
        .get()
        .map(|(b, e)| {
            (
                b.load(Ordering::Relaxed) as f64,
                e.load(Ordering::Relaxed) as f64,
            )
        })
        .unwrap_or_default()
}

/// Dollars by service.
#[derive(Clone, Copy, Debug, Default)]
struct Bill {
    lambda: f64,
    dynamodb: f64,
    sqs: f64,
    http: f64,
    kms: f64,
    secrets: f64,
    logs: f64,
    xray: f64,
    storage: f64,
}

impl Bill {
    fn of(u: &Usage, p: &Prices) -> Bill {
        Bill {
            lambda: u.invocations * p.lambda_request + u.gb_s * p.lambda_gb_second,
            dynamodb: u.rru * p.dynamodb_rru + u.wru * p.dynamodb_wru,
            sqs: u.sqs * p.sqs_request,
            http: u.http * p.http_api_request,
            kms: u.kms * p.kms_request,
            secrets: u.sm_calls * p.secrets_manager_call,
            logs: u.log_bytes / 1e9 * p.logs_gb_ingested,
            xray: u.traces * p.xray_trace,
            storage: 0.0,
        }
    }
    fn scaled(self, k: f64) -> Bill {
        Bill {
            lambda: self.lambda * k,
            dynamodb: self.dynamodb * k,
            sqs: self.sqs * k,
            http: self.http * k,
            kms: self.kms * k,
            secrets: self.secrets * k,
            logs: self.logs * k,
            xray: self.xray * k,
            storage: self.storage * k,
        }
    }
    fn total(&self) -> f64 {
        self.lambda
            + self.dynamodb
            + self.sqs
            + self.http
            + self.kms
            + self.secrets
            + self.logs
            + self.xray
            + self.storage
    }
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() - 1) as f64 * p).round() as usize;
    v[i.min(v.len() - 1)]
}

/// Lambda's platform lines per invocation (START, END, REPORT) in bytes.
const PLATFORM_LOG_BYTES: f64 = 380.0;
/// What a year-old order keeps in the ledger, halved because the storage formula below counts
/// it twice (once for the item, once for its gsi1 entry): a created entry no longer holds the
/// order event (≈650 bytes with 32-character ids, plus DynamoDB's 100 bytes per item) and its
/// gsi1 entry is its keys (≈250 bytes with the index's 100), ≈1,000 bytes in all
/// (`shared/store/DATA_MODEL.md`, "Cost: the ledger and gsi1"). Before: 1,700 bytes, twice.
const LEDGER_ITEM_BYTES: f64 = 500.0;

/// Spreads what the meter could not attribute to a shop (logs, traces) by invocations:
/// every shop's usage, the fleet's own, and every shop's nightly full run (part of the first).
fn with_shared(day: &Snapshot, logs_bytes: f64) -> (Vec<Usage>, Usage, Vec<Usage>) {
    let total = day.total();
    let traces: f64 = day
        .functions
        .values()
        .filter(|f| !f.untraced)
        .map(|f| {
            let first = f.seconds.len() as f64;
            first.min(f.invocations as f64) + 0.05 * (f.invocations as f64 - first).max(0.0)
        })
        .sum();
    let logs = logs_bytes + PLATFORM_LOG_BYTES * total.invocations;
    let share = |u: &Usage| {
        let k = if total.invocations > 0.0 {
            u.invocations / total.invocations
        } else {
            0.0
        };
        Usage {
            log_bytes: logs * k,
            traces: traces * k,
            ..*u
        }
    };
    (
        day.shops.iter().map(share).collect(),
        share(&day.fleet),
        day.once.iter().map(share).collect(),
    )
}

pub fn print(o: &Outcome, real: Duration) {
    let p = &AWS_US_EAST_1;
    let d = &o.params.design;
    let days = o.day_hours / 24.0;
    let per_day = 1.0 / days.max(1e-9);
    // A window that holds every shop's nightly full run counts it once a day, the rest of its
    // work `per_day` times: a day's figure is `window × per_day − night × (per_day − 1)`.
    let whole_night = o.night.completed + o.night.other + o.night.unfinished >= o.shops.len();
    let night_k = if whole_night {
        (per_day - 1.0).max(0.0)
    } else {
        0.0
    };
    println!("# Fleet benchmark ({} design)\n", d.name);
    println!(
        "{} shops, {} products ({} offers pages a full pass), {:.0} orders/day offered; KeyCRM clock x{}; ran {:.1} real minutes.\n",
        o.shops.len(),
        o.shops.iter().map(|s| s.products).sum::<usize>(),
        o.sim.endpoint("GET /offers"),
        o.shops.iter().map(|s| s.orders_per_day).sum::<f64>(),
        o.params.scale,
        real.as_secs_f64() / 60.0
    );
    println!(
        "Simulated window: {:02}:00 UTC ({:02}:00 Kyiv) for {} KeyCRM hours, plus {:.1} hours for what it started to finish; every count below is per day ({:.2} times the window's{}{}). Catalogs of all but the probe shops at {} of their size.\n",
        o.params.start_hour,
        (o.params.start_hour + 3) % 24,
        o.params.hours,
        (o.day_hours - o.params.hours as f64).max(0.0),
        per_day,
        if o.params.start_hour == 15 && o.params.hours == 12 {
            ": it holds the evening peak, the whole night's full syncs and three of the six price periods"
        } else {
            ""
        },
        if night_k > 0.0 {
            "; the nightly full runs, which the window holds whole, once"
        } else {
            ""
        },
        o.params.product_scale
    );

    // ---- timing
    let n = &o.night;
    let mut durs = n.durations_min.clone();
    println!("## Timing\n");
    println!("| Figure | Value |\n|---|---|");
    if let (Some(w), Some(l)) = (n.window_start, n.last_finish) {
        let m = (l - w).num_seconds() as f64 / 60.0;
        println!(
            "| nightly full sync: last run finished | {:.0} KeyCRM minutes after the window opened ({:.1}% of the day) |",
            m,
            m / 14.4
        );
    }
    println!(
        "| nightly full runs completed / other / unfinished | {} / {} / {} |",
        n.completed, n.other, n.unfinished
    );
    if !n.unfinished_shops.is_empty() {
        let named: Vec<String> = n
            .unfinished_shops
            .iter()
            .take(10)
            .filter_map(|(i, why)| {
                let s = o.shops.get(*i)?;
                let probe = if s.probe.is_some() { ", a probe" } else { "" };
                Some(format!("shop {i} ({} products{probe}, {why})", s.products))
            })
            .collect();
        println!("| unfinished night runs | {} |", named.join("; "));
    }
    println!(
        "| nightly run duration p50 / p99 / max | {:.1} / {:.1} / {:.1} KeyCRM minutes |",
        pct(&mut durs, 0.5),
        pct(&mut durs, 0.99),
        pct(&mut durs, 1.0)
    );
    let mut peak: Vec<f64> = o
        .order_latency
        .iter()
        .filter(|(p, _)| *p)
        .map(|(_, l)| *l)
        .collect();
    let mut all: Vec<f64> = o.order_latency.iter().map(|(_, l)| *l).collect();
    println!(
        "| order event → KeyCRM order at the evening peak, p50 / p99 (n = {}) | {:.1} s / {:.1} s |",
        peak.len(),
        pct(&mut peak, 0.5),
        pct(&mut peak, 0.99)
    );
    println!(
        "| same, whole day, p50 / p99 / max (n = {} of {} sent) | {:.1} s / {:.1} s / {:.1} s |",
        all.len(),
        o.orders_sent,
        pct(&mut all, 0.5),
        pct(&mut all, 0.99),
        pct(&mut all, 1.0)
    );
    let mut st = o.status_latency.clone();
    println!(
        "| KeyCRM status change → shop, p50 / p99 (n = {} of {} changes) | {:.1} s / {:.1} s |",
        st.len(),
        o.statuses_changed,
        pct(&mut st, 0.5),
        pct(&mut st, 0.99)
    );
    println!(
        "| KeyCRM requests / 429s | {} / **{}** |",
        o.sim.total_requests, o.sim.rate_limited_429
    );
    println!(
        "| webhooks delivered / failed after KeyCRM's 3 attempts / throttled answers | {} / {} / {} |",
        o.sim.webhooks_delivered, o.sim.webhooks_failed, o.webhook_throttled
    );
    println!(
        "| dead letters (orders / statuses / sync jobs) | {} / {} / {} |",
        o.dead_letters[0], o.dead_letters[1], o.dead_letters[2]
    );
    println!(
        "| onboarding: first full sync of every shop | {:.0} KeyCRM minutes |",
        o.onboarding_virtual.as_secs_f64() / 60.0
    );

    let mut endpoints: Vec<_> = o.sim.requests_by_endpoint.iter().collect();
    endpoints.sort_by(|a, b| b.1.cmp(a.1));
    println!(
        "\nKeyCRM requests by endpoint, in the window: {}.",
        endpoints
            .iter()
            .take(10)
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );

    // ---- counts
    let (shops, fleet, once) = with_shared(&o.day, o.day_log_bytes);
    let night_total = once.iter().fold(Usage::default(), |a, u| a + *u);
    let total = shops.iter().fold(fleet, |a, u| a + *u) * per_day - night_total * night_k;
    let daily = |i: usize| shops[i] * per_day - once[i] * night_k;
    let daily_op = |v: &crate::meter::OpStat, night: Option<&crate::meter::OpStat>| {
        let n = night.copied().unwrap_or_default();
        (
            v.calls as f64 * per_day - n.calls as f64 * night_k,
            v.rru * per_day - n.rru * night_k,
            v.wru * per_day - n.wru * night_k,
        )
    };
    println!("\n## What one day counted (per day)\n");
    println!("| Function | invocations | cold starts | billed ms / invocation | CPU ms / invocation | GB-s | GB-s at the bench's wall clock | peak concurrency | throttled |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (name, f) in &o.day.functions {
        let per_inv = |x: f64| 1000.0 * x / (f.invocations.max(1) as f64);
        println!(
            "| {} | {:.0} | {} | {:.0} | {:.1} | {:.0} | {:.0} | {} | {} |",
            name,
            f.invocations as f64 * per_day - f.once_invocations * night_k,
            f.cold_starts,
            per_inv(f.billed_s),
            per_inv(f.cpu_s),
            f.gb_s * per_day - f.once_gb_s * night_k,
            f.wall_gb_s * per_day,
            f.peak_concurrency,
            f.throttled
        );
    }
    println!("\n| Service | units a day |\n|---|---:|");
    println!("| Lambda invocations | {:.0} |", total.invocations);
    println!("| Lambda GB-seconds | {:.0} |", total.gb_s);
    println!("| DynamoDB read units | {:.0} |", total.rru);
    println!("| DynamoDB write units | {:.0} |", total.wru);
    println!("| SQS requests | {:.0} |", total.sqs);
    println!("| API Gateway requests | {:.0} |", total.http);
    println!("| KMS requests | {:.0} |", total.kms);
    println!("| Secrets Manager calls | {:.0} |", total.sm_calls);
    println!("| log bytes (app + platform) | {:.0} |", total.log_bytes);
    println!("| X-Ray traces | {:.0} |", total.traces);
    println!("\nDynamoDB by operation (per day, largest first):\n");
    println!("| Operation | calls | RRU | WRU |\n|---|---:|---:|---:|");
    let mut ops: Vec<_> = o
        .day
        .ops
        .iter()
        .map(|(k, v)| (k, daily_op(v, o.day.once_ops.get(k))))
        .collect();
    ops.sort_by(|a, b| (b.1 .2 + b.1 .1 / 5.0).total_cmp(&(a.1 .2 + a.1 .1 / 5.0)));
    for (k, (calls, rru, wru)) in ops.iter().take(14) {
        println!("| {k} | {calls:.0} | {rru:.0} | {wru:.0} |");
    }

    // ---- cost
    let month = p.days_per_month;
    let key_month = match d.keys {
        crate::ports::KeyStore::SecretsManager => p.secret_month,
        crate::ports::KeyStore::Envelope | crate::ports::KeyStore::Keyring => 0.0,
    };
    let storage = |i: usize| -> f64 {
        let s = &o.shops[i];
        let links = o.link_bytes.get(i).copied().unwrap_or(0) as f64;
        let ledger = s.orders_per_day * 365.0 * LEDGER_ITEM_BYTES * 2.0;
        (links + ledger) / 1e9 * (p.dynamodb_gb_month + p.dynamodb_pitr_gb_month)
    };
    let shop_bill = |i: usize| -> Bill {
        let mut b = Bill::of(&daily(i), p).scaled(month);
        b.secrets += key_month;
        b.storage = storage(i);
        b
    };
    // What the typical probe's DynamoDB line is made of.
    let typical: Vec<usize> = o
        .shops
        .iter()
        .filter(|s| s.probe == Some(Profile::Typical))
        .map(|s| s.index)
        .collect();
    if !typical.is_empty() {
        // (calls, RRU, WRU) a day, summed over the typical probes.
        let mut by_op: BTreeMap<&str, (f64, f64, f64)> = BTreeMap::new();
        for ((i, op), v) in &o.day.shop_ops {
            if typical.contains(i) {
                let (c, r, w) = daily_op(v, o.day.once_shop_ops.get(&(*i, *op)));
                let e = by_op.entry(op).or_default();
                *e = (e.0 + c, e.1 + r, e.2 + w);
            }
        }
        let n = typical.len() as f64;
        let dollars =
            |v: &(f64, f64, f64)| (v.1 * p.dynamodb_rru + v.2 * p.dynamodb_wru) * month / n;
        let mut rows: Vec<_> = by_op.iter().collect();
        rows.sort_by(|a, b| dollars(b.1).total_cmp(&dollars(a.1)));
        println!("\nThe typical shop's DynamoDB by operation (a month, largest first):\n");
        println!("| Operation | calls | RRU | WRU | $ |\n|---|---:|---:|---:|---:|");
        for (k, v) in rows.iter().take(12) {
            println!(
                "| {} | {:.0} | {:.0} | {:.0} | {:.4} |",
                k,
                v.0 * month / n,
                v.1 * month / n,
                v.2 * month / n,
                dollars(v)
            );
        }
    }
    println!(
        "\n## Cost per shop per month ({} design, prices of `infra/fleet-bench/src/prices.rs`)\n",
        d.name
    );
    println!("| Shop | Lambda | DynamoDB | SQS | HTTP API | KMS | Secrets Manager | logs | X-Ray | storage (1 year of orders) | **total** |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for profile in [Profile::Small, Profile::Typical, Profile::Large] {
        let idx: Vec<usize> = o
            .shops
            .iter()
            .filter(|s| s.probe == Some(profile))
            .map(|s| s.index)
            .collect();
        if idx.is_empty() {
            continue;
        }
        let mut sum = Bill::default();
        for i in &idx {
            let b = shop_bill(*i);
            sum = Bill {
                lambda: sum.lambda + b.lambda,
                dynamodb: sum.dynamodb + b.dynamodb,
                sqs: sum.sqs + b.sqs,
                http: sum.http + b.http,
                kms: sum.kms + b.kms,
                secrets: sum.secrets + b.secrets,
                logs: sum.logs + b.logs,
                xray: sum.xray + b.xray,
                storage: sum.storage + b.storage,
            };
        }
        let b = sum.scaled(1.0 / idx.len() as f64);
        println!(
            "| {} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} | **${:.4}** |",
            profile.label(),
            b.lambda,
            b.dynamodb,
            b.sqs,
            b.http,
            b.kms,
            b.secrets,
            b.logs,
            b.xray,
            b.storage,
            b.total()
        );
    }
    let fleet_total: f64 = (0..o.shops.len()).map(|i| shop_bill(i).total()).sum();
    println!(
        "| every shop of this fleet, average | | | | | | | | | | ${:.4} |",
        fleet_total / o.shops.len().max(1) as f64
    );
    if night_k > 0.0 {
        // The accounting before this session: the window's nightly runs doubled like the rest.
        let doubled = |profile: Profile| {
            let idx: Vec<usize> = o
                .shops
                .iter()
                .filter(|s| s.probe == Some(profile))
                .map(|s| s.index)
                .collect();
            let extra: f64 = idx
                .iter()
                .map(|i| Bill::of(&(once[*i] * night_k), p).scaled(month).total())
                .sum();
            extra / idx.len().max(1) as f64
        };
        println!(
            "\nCounting the nightly full run twice a day, as the bench did before: + ${:.4} / ${:.4} / ${:.4} (small / typical / large).",
            doubled(Profile::Small),
            doubled(Profile::Typical),
            doubled(Profile::Large)
        );
    }

    // One-time: the first sync of a shop.
    let (onb, _, _) = with_shared(&o.onboarding, 0.0);
    println!("\nOnce per shop, its first full sync (onboarding):\n");
    println!("| Shop | Lambda | DynamoDB | other | **total** |\n|---|---:|---:|---:|---:|");
    for profile in [Profile::Small, Profile::Typical, Profile::Large] {
        if let Some(s) = o.shops.iter().find(|s| s.probe == Some(profile)) {
            let b = Bill::of(&onb[s.index], p);
            println!(
                "| {} | {:.4} | {:.4} | {:.4} | **${:.4}** |",
                profile.label(),
                b.lambda,
                b.dynamodb,
                b.total() - b.lambda - b.dynamodb,
                b.total()
            );
        }
    }

    // The deployment's own monthly base.
    let own = Bill::of(&(fleet * per_day), p).scaled(month);
    let kms_key = if d.keys.uses_kms_key() {
        p.kms_key_month
    } else {
        0.0
    };
    let secrets = 3.0 * p.secret_month;
    let alarms = 8.0 * p.alarm_month;
    // Three event source mappings, five pollers each, a 20 s long poll when idle.
    let polling = 3.0 * 5.0 * 3.0 * 60.0 * 24.0 * month * p.sqs_request;
    println!("\nFixed monthly base of one deployment:\n");
    println!("| Item | $ / month |\n|---|---:|");
    println!(
        "| the fleet's own work: schedule ticks (tick, resume), keyring unwraps | {:.4} |",
        own.total()
    );
    println!("| event source mappings' idle long polls (3 queues x 5 pollers, modelled) | {polling:.4} |");
    println!("| platform secrets (3) | {secrets:.4} |");
    if kms_key > 0.0 {
        println!("| KMS key for the KeyCRM keys (+$1 after each of its first two yearly rotations) | {kms_key:.4} |");
    }
    println!("| CloudWatch alarms (8) | {alarms:.4} |");
    println!(
        "| **total** | **{:.2}** |",
        own.total() + polling + secrets + kms_key + alarms
    );
    println!(
        "\nThe whole fleet: ${:.2} a month for {} shops plus the base.",
        fleet_total,
        o.shops.len()
    );
}
