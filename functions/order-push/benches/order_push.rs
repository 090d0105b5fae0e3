//! Order-push benchmarks (figures go to BENCHMARKS.md, section "Order push").
//!
//! `cargo bench -p order-push --bench order_push`
//!
//! 1. KeyCRM requests and reference lookups per order: the real handler and HTTP client
//!    against the simulator (rate limit off), in-memory stores.
//! 2. Consumer CPU time per order, excluding network waits: thread CPU time
//!    (`getrusage(RUSAGE_THREAD)`) of a single-threaded runtime running the handler, (a) with
//!    KeyCRM stubbed at the port (mapping, ledger, journal, queue, JSON serialisation of the
//!    request body), (b) with the real HTTP client talking to the simulator, which runs on
//!    other threads so its CPU is not counted; (c) like (a) with the DynamoDB ledger, journal
//!    and connection store on the emulator when `AWS_ENDPOINT_URL` is set (AWS SDK signing
//!    and serialisation included), and (d) the CPU of one bare SDK call there, to read (c) by.
//! 3. Sustained throughput with the simulator limiting each key to 60 requests a minute, on a
//!    compressed clock (a KeyCRM minute lasts one second): 60 orders a minute offered per
//!    connection, 1 and 4 connections, 4 concurrent pollers (like Lambda concurrency).
//!
//! Environment: `BENCH_ORDERS` (default 300) scales sections 1 and 3; `BENCH_SECTIONS`
//! (e.g. `1,2`) runs only some sections.

use chrono::Utc;
use keycrm::{ApiKey, ClientConfig, LocalRateGate, RateBudget, RateGate, UnlimitedGate};
use keycrm_sim::{AccountSpec, SimConfig, SimHandle};
use mapping::settings::{AddonLink, DeliveryLink, PaymentLink};
use mapping::{KeycrmReference, OrderSyncType, Settings};
use order_push::memory_crm::{MemoryCrm, MemoryCrmProvider};
use order_push::{CrmProvider, Dictionaries, OrderPush, Outcome, PushConfig};
use queue::{MemoryQueue, Message, Outgoing, Queue};
use runtime::KeycrmClients;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::{
    Connection, ConnectionStore, MemoryConnections, MemoryJournal, MemoryLedger, MemorySecrets,
    OrderLedger, SecretStore, StatusJournal, WebhookTokens,
};

const CREATED: &str = include_str!("../../../contracts/order-events/examples/order.created.json");

fn orders_from_env() -> usize {
    std::env::var("BENCH_ORDERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300)
}

fn thread_cpu() -> Duration {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut u) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec as u32) * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

fn settings() -> Settings {
    Settings {
        order_sync: OrderSyncType::Orders,
        source_id: Some(1),
        order_statuses: mapping::settings::OrderStatusMap::from_legacy([
            ("new".to_string(), 1),
            ("paid".to_string(), 4),
        ]),
        payment_map: vec![PaymentLink {
            shop_method: "cod".into(),
            keycrm_method_id: 1,
        }],
        delivery_map: vec![DeliveryLink {
            shop_method: "nova_poshta".into(),
            keycrm_service_id: 3,
        }],
        addon_fields: vec![
            AddonLink {
                addon_id: "gift_wrap".into(),
                field_uuid: "OR_1001".into(),
            },
            AddonLink {
                addon_id: "call_back".into(),
                field_uuid: "OR_1004".into(),
            },
        ],
        ..Settings::default()
    }
}

fn connection(i: usize, base_url: &str, key: &str) -> Connection {
    Connection {
        id: format!("conn-{i}"),
        shop_id: format!("shop-{i}"),
        active: true,
        keycrm_base_url: base_url.to_string(),
        key_mask: "••••".into(),
        key_fingerprint: ApiKey::new(key).fingerprint(),
        secret_name: format!("bench/{i}"),
        settings: settings(),
        webhook_tokens: WebhookTokens::default(),
        webhook_generations: Default::default(),
        account_epoch: 0,
        account_switched_at: None,
        version: 1,
        created_at: Utc::now(),
        updated_at: Utc::now(),
    }
}

fn event(shop: &str, order: usize) -> String {
    let mut v: Value = serde_json::from_str(CREATED).expect("example");
    v["shop_id"] = shop.into();
    v["event_id"] = format!("evt-{shop}-{order}").into();
    v["order"]["id"] = format!("{shop}-{order}").into();
    v["order"]["number"] = format!("{order}").into();
    v.to_string()
}

fn message(body: String, n: usize) -> Message {
    Message {
        id: format!("m{n}"),
        body,
        receipt: format!("r{n}"),
        receive_count: 1,
        attributes: Default::default(),
    }
}

async fn simulator(keys: &[String], rate_limit: u32, time_scale: f64) -> SimHandle {
    keycrm_sim::start(
        SimConfig {
            accounts: keys
                .iter()
                .enumerate()
                .map(|(i, k)| AccountSpec {
                    api_key: k.clone(),
                    seed: 100 + i as u64,
                    products: 20,
                    pipelines_enabled: true,
                })
                .collect(),
            rate_limit_per_minute: rate_limit,
            time_scale,
            public_base_url: None,
        },
        "127.0.0.1:0".parse().expect("addr"),
    )
    .await
    .expect("simulator")
}

struct Stores {
    connections: Arc<dyn ConnectionStore>,
    ledger: Arc<dyn OrderLedger>,
    journal: Arc<dyn StatusJournal>,
}

fn memory_stores() -> Stores {
    Stores {
        connections: Arc::new(MemoryConnections::default()),
        ledger: Arc::new(MemoryLedger::new()),
        journal: Arc::new(MemoryJournal::default()),
    }
}

fn handler(stores: Stores, crm: Arc<dyn CrmProvider>, retry: Arc<dyn Queue>) -> OrderPush {
    OrderPush {
        connections: stores.connections,
        ledger: stores.ledger,
        journal: stores.journal,
        crm,
        retry_queue: retry,
        dead_letters: Arc::new(MemoryQueue::new("dlq")),
        dictionaries: Arc::new(Dictionaries::default()),
        config: PushConfig::default(),
    }
}

async fn http_provider(
    sim: &SimHandle,
    keys: &[String],
    gate: Arc<dyn RateGate>,
    conns: &dyn ConnectionStore,
) -> Arc<dyn CrmProvider> {
    let secrets = Arc::new(MemorySecrets::default());
    for (i, k) in keys.iter().enumerate() {
        let c = connection(i, &sim.base_url(), k);
        secrets
            .put(&c.secret_name, &ApiKey::new(k))
            .await
            .expect("secret");
        conns.create(&c).await.expect("connection");
    }
    Arc::new(KeycrmClients::new(
        secrets,
        gate,
        ClientConfig::with_base_url(sim.base_url()),
    ))
}

async fn run_batches(push: &OrderPush, shop: &str, from: usize, n: usize) -> usize {
    let mut created = 0;
    let mut i = from;
    while i < from + n {
        let batch: Vec<Message> = (i..(i + 10).min(from + n))
            .map(|k| message(event(shop, k), k))
            .collect();
        i += batch.len();
        let r = push.handle_batch(batch).await;
        created += r.count(|o| matches!(o, Outcome::Created { .. }));
    }
    created
}

/// Section 1.
async fn requests_per_order(n: usize) {
    let keys = vec!["bench-key-0".to_string()];
    let sim = simulator(&keys, 0, 1.0).await;
    let stores = memory_stores();
    let crm = http_provider(
        &sim,
        &keys,
        Arc::new(UnlimitedGate),
        stores.connections.as_ref(),
    )
    .await;
    let push = handler(stores, crm, Arc::new(MemoryQueue::new("orders")));

    let created = run_batches(&push, "shop-0", 0, n).await;
    let s = sim.stats();
    let posts = s.endpoint("POST /order");
    let lookups = s.total_requests - posts;
    println!(
        "## 1. KeyCRM requests per order (real client, simulator, {n} orders, one connection)"
    );
    println!("orders created:                 {created}");
    println!(
        "POST /order:                    {posts}  ({:.2} per order)",
        posts as f64 / n as f64
    );
    println!(
        "all KeyCRM requests:            {}  ({:.3} per order)",
        s.total_requests,
        s.total_requests as f64 / n as f64
    );
    println!(
        "reference lookups:              {lookups}  (once per connection per 10 min: {:?})",
        s.requests_by_endpoint
            .iter()
            .filter(|(k, _)| k.starts_with("GET"))
            .collect::<Vec<_>>()
    );
    sim.reset_stats();
    let warm = run_batches(&push, "shop-0", n, n).await;
    let s = sim.stats();
    println!(
        "warm cache, next {warm} orders:  {} requests = {:.2} per order, {} lookups",
        s.total_requests,
        s.total_requests as f64 / warm as f64,
        s.total_requests - s.endpoint("POST /order")
    );
    println!();
}

fn stub_reference() -> KeycrmReference {
    use keycrm::models::*;
    let field = |uuid: &str, ty: &str| CustomField {
        id: 0,
        uuid: uuid.into(),
        name: uuid.into(),
        model: None,
        field_type: ty.into(),
        is_multiple: false,
        required: false,
        options: vec![],
    };
    KeycrmReference {
        order_statuses: vec![OrderStatus {
            id: 1,
            name: "new".into(),
            alias: None,
            group_id: 1,
            is_active: true,
            is_closing_order: false,
        }],
        delivery_services: vec![DeliveryService {
            id: 3,
            name: "Нова Пошта".into(),
            alias: None,
            source_name: Some("novaposhta".into()),
        }],
        order_fields: vec![field("OR_1001", "text"), field("OR_1004", "switcher")],
        ..KeycrmReference::default()
    }
}

/// Section 2a / 2c: CPU per order with KeyCRM stubbed at the port.
async fn cpu_with_stub(stores: Stores, label: &str, n: usize) {
    let stub = Arc::new(MemoryCrm::forgetful(stub_reference()));
    stores
        .connections
        .create(&connection(0, "http://stub.invalid/v1", "stub-key"))
        .await
        .expect("connection");
    let push = handler(
        stores,
        Arc::new(MemoryCrmProvider(stub.clone())),
        Arc::new(MemoryQueue::new("orders")),
    );
    // Warm up (dictionaries, allocator, lazy statics).
    run_batches(&push, "shop-0", 0, 20).await;
    let bodies: Vec<Vec<Message>> = (20..20 + n)
        .collect::<Vec<_>>()
        .chunks(10)
        .map(|c| c.iter().map(|k| message(event("shop-0", *k), *k)).collect())
        .collect();
    let (cpu0, wall0) = (thread_cpu(), Instant::now());
    let mut created = 0;
    for b in bodies {
        created += push
            .handle_batch(b)
            .await
            .count(|o| matches!(o, Outcome::Created { .. }));
    }
    let (cpu, wall) = (thread_cpu() - cpu0, wall0.elapsed());
    println!(
        "{label}: {created} orders, CPU {:.1} µs/order, wall {:.1} µs/order, request body {:.0} bytes/order",
        cpu.as_secs_f64() * 1e6 / created as f64,
        wall.as_secs_f64() * 1e6 / created as f64,
        stub.bytes_sent() as f64 / (created + 20) as f64,
    );
}

/// Section 2b: CPU per order of the consumer thread with the real HTTP client.
fn cpu_with_http(n: usize) {
    let keys = vec!["cpu-key".to_string()];
    let sim_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let sim = sim_rt.block_on(simulator(&keys, 0, 1.0));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let stores = memory_stores();
        let crm = http_provider(&sim, &keys, Arc::new(UnlimitedGate), stores.connections.as_ref()).await;
        let push = handler(stores, crm, Arc::new(MemoryQueue::new("orders")));
        run_batches(&push, "shop-0", 0, 20).await;
        let (cpu0, wall0) = (thread_cpu(), Instant::now());
        let created = run_batches(&push, "shop-0", 20, n).await;
        let (cpu, wall) = (thread_cpu() - cpu0, wall0.elapsed());
        println!(
            "(b) handler + real HTTP client, simulator on other threads: {created} orders, CPU {:.1} µs/order, wall {:.1} µs/order",
            cpu.as_secs_f64() * 1e6 / created as f64,
            wall.as_secs_f64() * 1e6 / created as f64
        );
    });
    drop(sim_rt);
}

/// Section 3: one run of the sustained-throughput benchmark.
async fn sustained(connections: usize, per_conn: usize, budget: RateBudget, label: &str) {
    const TIME_SCALE: f64 = 60.0;
    let keys: Vec<String> = (0..connections).map(|i| format!("load-key-{i}")).collect();
    let sim = simulator(&keys, 60, TIME_SCALE).await;
    let stores = memory_stores();
    let gate: Arc<dyn RateGate> = Arc::new(LocalRateGate::new(budget));
    let crm = http_provider(&sim, &keys, gate, stores.connections.as_ref()).await;
    let queue = Arc::new(MemoryQueue::new("orders"));
    let mut push = handler(stores, crm, queue.clone());
    // The deferral schedule on the same compressed clock as the simulator.
    let policy = &mut push.config.retry;
    policy.base = policy.base.div_f64(TIME_SCALE);
    policy.max_delay = policy.max_delay.div_f64(TIME_SCALE);
    policy.busy_delay = policy.busy_delay.div_f64(TIME_SCALE);
    let push = Arc::new(push);
    // Warm the dictionaries outside the measured window (a warm Lambda has them).
    for i in 0..connections {
        let warm = message(event(&format!("shop-{i}"), 999_999), 0);
        push.handle_batch(vec![warm]).await;
    }
    sim.reset_stats();

    let created = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut pollers = Vec::new();
    for _ in 0..4 {
        let (push, queue, created, stop) =
            (push.clone(), queue.clone(), created.clone(), stop.clone());
        pollers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(r) = push
                    .poll_once(
                        queue.as_ref(),
                        10,
                        Duration::from_millis(20),
                        Duration::from_secs(60),
                    )
                    .await
                {
                    created.fetch_add(
                        r.count(|o| matches!(o, Outcome::Created { .. })) as u64,
                        Ordering::Relaxed,
                    );
                }
            }
        }));
    }
    // Offer 60 orders per (simulated) minute per connection.
    let start = Instant::now();
    const OFFERED_PER_MINUTE: f64 = 60.0;
    let interval = Duration::from_secs_f64(60.0 / OFFERED_PER_MINUTE / TIME_SCALE);
    let producer = {
        let queue = queue.clone();
        tokio::spawn(async move {
            for k in 0..per_conn {
                let due = start + interval * k as u32;
                tokio::time::sleep_until(due.into()).await;
                for i in 0..connections {
                    let _ = queue
                        .send(Outgoing::new(event(&format!("shop-{i}"), k)))
                        .await;
                }
            }
        })
    };
    let total = (per_conn * connections) as u64;
    let limit = start + Duration::from_secs_f64(per_conn as f64 * 3.0 / TIME_SCALE + 30.0);
    while created.load(Ordering::Relaxed) < total && Instant::now() < limit {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    let _ = producer.await;
    for p in pollers {
        let _ = p.await;
    }
    let done = created.load(Ordering::Relaxed);
    let sim_minutes = elapsed.as_secs_f64() * TIME_SCALE / 60.0;
    let stats = sim.stats();
    let mut per_key_ok = Vec::new();
    for k in &keys {
        let orders = sim.orders(k);
        let mut uuids: Vec<String> = orders
            .iter()
            .filter_map(|o| o["source_uuid"].as_str().map(str::to_string))
            .collect();
        let n = uuids.len();
        uuids.sort();
        uuids.dedup();
        per_key_ok.push((n, uuids.len()));
    }
    println!(
        "{label}: {connections} connection(s), offered 60/min each for {per_conn} orders: created {done}/{total} in {sim_minutes:.2} KeyCRM-minutes = {:.1} orders/min in total, {:.1} per connection; 429s: {}; duplicates: {}",
        done as f64 / sim_minutes,
        done as f64 / sim_minutes / connections as f64,
        stats.rate_limited_429,
        per_key_ok.iter().map(|(n, u)| n - u).sum::<usize>(),
    );
}

fn section(n: u8) -> bool {
    std::env::var("BENCH_SECTIONS")
        .map_or(true, |v| v.split(',').any(|s| s.trim() == n.to_string()))
}

fn main() {
    let n = orders_from_env();
    println!("# order-push benchmarks\n");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    if section(1) {
        rt.block_on(requests_per_order(n));
    }
    if section(2) {
        cpu_section();
    }
    if section(3) {
        throughput_section(&rt, n);
    }
}

fn cpu_section() {
    println!("## 2. Consumer CPU per order (thread CPU time, network waits excluded)");
    let cpu_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    cpu_rt.block_on(cpu_with_stub(
        memory_stores(),
        "(a) handler, KeyCRM stubbed at the port, in-memory stores",
        5000,
    ));
    cpu_with_http(1000);
    if std::env::var("AWS_ENDPOINT_URL").is_ok() {
        cpu_rt.block_on(async {
            let client = store::DynamoTable::client_from_env().await;
            let name = format!("bench-{}", std::process::id());
            let table = store::DynamoTable::create(&client, &name)
                .await
                .expect("table on the emulator");
            let stores = Stores {
                connections: Arc::new(table.clone()),
                ledger: Arc::new(table.clone()),
                journal: Arc::new(table),
            };
            cpu_with_stub(
                stores,
                "(c) handler, KeyCRM stubbed, DynamoDB stores on the emulator",
                500,
            )
            .await;
            // What one SDK call costs on this emulator, to read (c) by.
            let ledger: Arc<dyn OrderLedger> = Arc::new(store::DynamoTable::new(client, name));
            let calls = 300;
            let cpu0 = thread_cpu();
            for i in 0..calls {
                let _ = ledger.get("conn-0", &format!("shop-0-{i}")).await;
            }
            let per_call = (thread_cpu() - cpu0).as_secs_f64() * 1e6 / calls as f64;
            println!(
                "(d) one DynamoDB GetItem through the AWS SDK on the emulator (which closes every connection): CPU {per_call:.1} µs/call"
            );
        });
    } else {
        println!(
            "(c) skipped: set AWS_ENDPOINT_URL to a DynamoDB emulator to include the AWS SDK's CPU"
        );
    }
    println!();
}

fn throughput_section(rt: &tokio::runtime::Runtime, n: usize) {
    println!("## 3. Sustained throughput, simulator at 60 requests/min per key (time scale 60)");
    rt.block_on(async {
        sustained(1, n, RateBudget::keycrm_scaled(60.0), "production budget").await;
        sustained(4, n, RateBudget::keycrm_scaled(60.0), "production budget").await;
        let mut exact = RateBudget::keycrm_scaled(60.0);
        exact.safety = 1.0;
        sustained(1, n, exact, "no safety margin (for comparison)").await;
    });
}
