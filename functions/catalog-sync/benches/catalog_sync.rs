//! Catalog sync benchmark: KeyCRM requests against the floor, 429s, shop writes on unchanged
//! and price-only runs, CPU time and peak RSS of the sync process.
//!
//! `cargo bench -p catalog-sync --bench catalog_sync` (sizes and clock via
//! `BENCH_SIZES=1000,20000,100000`, `BENCH_TIME_SCALE=120`).
//!
//! Four processes per catalog size, all this binary in different roles: the KeyCRM
//! simulator (enforcing 60 requests a minute on a compressed clock), the demo shop (the
//! platform HTTP contract over an in-memory shop), the store (in-memory link and sync
//! stores over a small RPC, standing in for DynamoDB), and the sync worker (the engine with
//! the HTTP shop adapter and the remote stores) whose CPU and RSS are measured. The
//! orchestrator drives them over stdin/stdout and prints the figures.

#[path = "support/remote_store.rs"]
mod remote_store;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

const ROLE: &str = "CATALOG_SYNC_BENCH_ROLE";
const API_KEY: &str = "bench-key";
const SHOP_TOKEN: &str = "bench-shop-token";
const SHOP_ID: &str = "bench-shop";

fn main() {
    match std::env::var(ROLE).as_deref() {
        Ok("sim") => sim_role(),
        Ok("shop") => shop_role(),
        Ok("store") => store_role(),
        Ok("sync") => sync_role(),
        _ => orchestrate(),
    }
}

/// The sync worker runs on one thread, as the Lambda does (`current_thread`).
fn rt_single() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn scale() -> f64 {
    std::env::var("BENCH_TIME_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(120.0)
}

// ------------------------------------------------------------------ orchestrator

struct Proc {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
}

impl Proc {
    fn spawn(role: &str, args: &[String]) -> Proc {
        let exe = std::env::current_exe().expect("own path");
        // `BENCH_SYNC_WRAPPER="perf record -g -o /tmp/perf.data --"` profiles the sync worker.
        let wrapper = std::env::var("BENCH_SYNC_WRAPPER")
            .ok()
            .filter(|_| role == "sync");
        let mut cmd = match &wrapper {
            Some(w) => {
                let mut parts = w.split_whitespace();
                let mut c = Command::new(parts.next().expect("wrapper program"));
                c.args(parts).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        let mut child = cmd
            .env(ROLE, role)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn role");
        let input = child.stdin.take().expect("stdin");
        let output = BufReader::new(child.stdout.take().expect("stdout"));
        Proc {
            child,
            input,
            output,
        }
    }

    /// Sends a command and returns the reply line (after its tag).
    fn ask(&mut self, cmd: &str, tag: &str) -> String {
        if !cmd.is_empty() {
            writeln!(self.input, "{cmd}").expect("write command");
            self.input.flush().expect("flush");
        }
        let mut line = String::new();
        loop {
            line.clear();
            let n = self.output.read_line(&mut line).expect("read reply");
            assert!(n > 0, "role process exited while waiting for {tag}");
            if let Some(rest) = line.trim().strip_prefix(tag) {
                return rest.trim().to_string();
            }
        }
    }

    fn stop(self) {
        let Proc {
            mut child,
            input,
            output,
        } = self;
        // Closing stdin ends the role; a child still running after a while is killed (only
        // our own children, by handle).
        drop(input);
        drop(output);
        let until = Instant::now() + Duration::from_secs(20);
        while Instant::now() < until {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn shop_stats(shop_url: &str) -> serde_json::Value {
    let base = shop_url.trim_end_matches("/v1");
    rt().block_on(async {
        reqwest::Client::new()
            .get(format!("{base}/__demo/shops/{SHOP_ID}/stats"))
            .bearer_auth(SHOP_TOKEN)
            .send()
            .await
            .expect("shop stats")
            .json()
            .await
            .expect("stats json")
    })
}

fn shop_reset(shop_url: &str) {
    let base = shop_url.trim_end_matches("/v1");
    rt().block_on(async {
        reqwest::Client::new()
            .post(format!("{base}/__demo/shops/{SHOP_ID}/stats/reset"))
            .bearer_auth(SHOP_TOKEN)
            .send()
            .await
            .expect("reset shop stats");
    });
}

fn get(v: &serde_json::Value, k: &str) -> u64 {
    v.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0)
}

fn orchestrate() {
    let sizes: Vec<usize> = std::env::var("BENCH_SIZES")
        .unwrap_or_else(|_| "1000,20000,100000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let scale = scale();
    println!("catalog-sync benchmark: sizes {sizes:?}, simulator clock x{scale} (60 requests per simulated minute)");
    let mut rows = Vec::new();
    for n in sizes {
        let started = Instant::now();
        let mut sim = Proc::spawn("sim", &[n.to_string(), scale.to_string()]);
        let ready: serde_json::Value =
            serde_json::from_str(&sim.ask("", "READY")).expect("sim ready");
        let sim_url = ready["base_url"].as_str().expect("url").to_string();
        let mut shop = Proc::spawn("shop", &[]);
        let shop_url = shop.ask("", "READY");
        let mut store = Proc::spawn("store", &[]);
        let store_url = store.ask("", "READY");
        let mut sync = Proc::spawn(
            "sync",
            &[
                sim_url.clone(),
                shop_url.clone(),
                scale.to_string(),
                store_url,
            ],
        );
        sync.ask("", "READY");

        // Full sync #1 (first sync: everything created).
        sim.ask("RESET", "OK");
        let full1: serde_json::Value =
            serde_json::from_str(&sync.ask("full", "DONE")).expect("full1");
        let sim1: serde_json::Value =
            serde_json::from_str(&sim.ask("STATS", "STATS")).expect("stats");
        let created = get(&shop_stats(&shop_url), "products_created");

        // Full sync #2, nothing changed.
        shop_reset(&shop_url);
        sim.ask("RESET", "OK");
        let full2: serde_json::Value =
            serde_json::from_str(&sync.ask("full", "DONE")).expect("full2");
        let sim2: serde_json::Value =
            serde_json::from_str(&sim.ask("STATS", "STATS")).expect("stats");
        let w2 = shop_stats(&shop_url);
        let writes2 = [
            "products_created",
            "products_updated",
            "state_changes",
            "price_changes",
            "category_writes",
        ]
        .iter()
        .map(|k| get(&w2, k))
        .sum::<u64>();

        // 1% of prices change; a price sync.
        let changed: u64 = sim.ask("CHANGE 0.01", "CHANGED").parse().expect("changed");
        shop_reset(&shop_url);
        sim.ask("RESET", "OK");
        let prices: serde_json::Value =
            serde_json::from_str(&sync.ask("prices", "DONE")).expect("prices");
        let sim3: serde_json::Value =
            serde_json::from_str(&sim.ask("STATS", "STATS")).expect("stats");
        let w3 = shop_stats(&shop_url);
        let peak: serde_json::Value =
            serde_json::from_str(&sync.ask("exit", "PEAK")).expect("peak");

        let floor = get(&ready, "floor");
        let price_floor = get(&full1, "linked_offers").div_ceil(50);
        let row = serde_json::json!({
            "products": n,
            "offers": get(&ready, "offers"),
            "active_offers": get(&ready, "active_offers"),
            "categories": get(&ready, "categories"),
            "floor": floor,
            "full1_requests": get(&full1, "requests"),
            "full1_ratio": get(&full1, "requests") as f64 / floor.max(1) as f64,
            "full1_429": get(&sim1, "rate_limited_429"),
            "created": created,
            "full2_requests": get(&full2, "requests"),
            "full2_429": get(&sim2, "rate_limited_429"),
            "full2_writes": writes2,
            "price_changed_offers": changed,
            "price_writes": get(&w3, "price_changes"),
            "price_other_writes": get(&w3, "products_created") + get(&w3, "products_updated") + get(&w3, "state_changes"),
            "price_requests": get(&prices, "requests"),
            "price_floor": price_floor,
            "price_429": get(&sim3, "rate_limited_429"),
            "cpu_full1_s": full1["cpu_s"],
            "cpu_full2_s": full2["cpu_s"],
            "cpu_prices_s": prices["cpu_s"],
            "wall_full1_s": full1["wall_s"],
            "gate_wait_full1_s": full1["gate_wait_s"],
            "peak_rss_mb": peak["peak_rss_mb"],
            "bench_wall_s": started.elapsed().as_secs_f64(),
        });
        println!("{}", serde_json::to_string_pretty(&row).expect("json"));
        rows.push(row);
        sync.stop();
        store.stop();
        shop.stop();
        sim.stop();
    }
    println!();
    println!("| products | offers (active) | floor | requests, full #1 | ratio | 429s (all runs) | writes, unchanged full #2 | prices changed / written (other writes) | price sync requests / floor | CPU full #1 (per 20k) | CPU full #2 (per 20k) | CPU price sync | peak RSS |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        let n = r["products"].as_u64().unwrap_or(0);
        let per20k = |k: &str| r[k].as_f64().unwrap_or(0.0) * 20_000.0 / n.max(1) as f64;
        println!(
            "| {} | {} ({}) | {} | {} | {:.3} | {} | {} | {} / {} ({}) | {} / {} | {:.2} s ({:.2} s) | {:.2} s ({:.2} s) | {:.2} s | {:.1} MB |",
            n,
            r["offers"],
            r["active_offers"],
            r["floor"],
            r["full1_requests"],
            r["full1_ratio"].as_f64().unwrap_or(0.0),
            get(r, "full1_429") + get(r, "full2_429") + get(r, "price_429"),
            r["full2_writes"],
            r["price_changed_offers"],
            r["price_writes"],
            r["price_other_writes"],
            r["price_requests"],
            r["price_floor"],
            r["cpu_full1_s"].as_f64().unwrap_or(0.0),
            per20k("cpu_full1_s"),
            r["cpu_full2_s"].as_f64().unwrap_or(0.0),
            per20k("cpu_full2_s"),
            r["cpu_prices_s"].as_f64().unwrap_or(0.0),
            r["peak_rss_mb"].as_f64().unwrap_or(0.0),
        );
    }
}

// ------------------------------------------------------------------ simulator role

fn sim_role() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let n: usize = args.first().and_then(|a| a.parse().ok()).expect("products");
    let scale: f64 = args.get(1).and_then(|a| a.parse().ok()).expect("scale");
    rt().block_on(async move {
        let sim = keycrm_sim::start(
            keycrm_sim::SimConfig {
                accounts: vec![keycrm_sim::AccountSpec { api_key: API_KEY.into(), seed: 42, products: n, pipelines_enabled: false }],
                rate_limit_per_minute: 60,
                time_scale: scale,
                public_base_url: None,
            },
            "127.0.0.1:0".parse().expect("addr"),
        )
        .await
        .expect("start simulator");
        let snap = sim.catalog(API_KEY);
        let active = snap.offers.iter().filter(|o| !o.is_archived).count() as u64;
        let cats = snap.categories.len() as u64;
        let info = serde_json::json!({
            "base_url": sim.base_url(),
            "offers": snap.offers.len(),
            "active_offers": active,
            "categories": cats,
            // The fewest list pages carrying the data: active offers (with their product) and
            // the categories, 50 a page.
            "floor": active.div_ceil(50) + cats.div_ceil(50),
        });
        drop(snap);
        println!("READY {info}");
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            let Ok(line) = line else { break };
            let mut parts = line.split_whitespace();
            match parts.next() {
                Some("RESET") => {
                    sim.reset_stats();
                    println!("OK");
                }
                Some("STATS") => {
                    let s = sim.stats();
                    println!(
                        "STATS {}",
                        serde_json::json!({"rate_limited_429": s.rate_limited_429, "total": s.total_requests, "by_endpoint": s.requests_by_endpoint})
                    );
                }
                Some("CHANGE") => {
                    let share: f64 = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0.01);
                    let before = sim.catalog(API_KEY);
                    // Linked = active offers of products that are not duplicate-SKU traps.
                    let dup: std::collections::HashSet<String> = before.duplicate_skus().into_iter().collect();
                    let traps: std::collections::HashSet<i64> =
                        before.offers.iter().filter(|o| dup.contains(&o.sku)).map(|o| o.product_id).collect();
                    let old: std::collections::HashMap<i64, f64> = before
                        .offers
                        .iter()
                        .filter(|o| !o.is_archived && !traps.contains(&o.product_id))
                        .map(|o| (o.id, o.price))
                        .collect();
                    drop(before);
                    sim.catalog_mutate(API_KEY, keycrm_sim::CatalogMutation::ChangePricesPercent { share, seed: 7 });
                    let after = sim.catalog(API_KEY);
                    let changed = after.offers.iter().filter(|o| old.get(&o.id).is_some_and(|p| *p != o.price)).count();
                    println!("CHANGED {changed}");
                }
                _ => println!("ERR unknown command"),
            }
            let _ = std::io::stdout().flush();
        }
    });
}

// ------------------------------------------------------------------ shop role

fn shop_role() {
    rt().block_on(async {
        let shop = std::sync::Arc::new(shop::MemoryShop::new());
        let (addr, _h) = shop::demo_server::serve(
            shop,
            SHOP_TOKEN.into(),
            "127.0.0.1:0".parse().expect("addr"),
        )
        .await
        .expect("serve demo shop");
        println!("READY http://{addr}/v1");
        let _ = std::io::stdout().flush();
        // Until the orchestrator closes our stdin (or kills us).
        tokio::task::spawn_blocking(|| {
            let mut s = String::new();
            while std::io::stdin()
                .read_line(&mut s)
                .map(|n| n > 0)
                .unwrap_or(false)
            {
                s.clear();
            }
        })
        .await
        .ok();
    });
}

// ------------------------------------------------------------------ store role

fn store_role() {
    rt().block_on(async {
        let url = remote_store::serve().await;
        println!("READY {url}");
        let _ = std::io::stdout().flush();
        tokio::task::spawn_blocking(|| {
            let mut s = String::new();
            while std::io::stdin()
                .read_line(&mut s)
                .map(|n| n > 0)
                .unwrap_or(false)
            {
                s.clear();
            }
        })
        .await
        .ok();
    });
}

// ------------------------------------------------------------------ sync worker role

fn rusage() -> (f64, f64) {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    // ru_maxrss is in KiB on Linux.
    (
        secs(u.ru_utime) + secs(u.ru_stime),
        u.ru_maxrss as f64 / 1024.0,
    )
}

fn sync_role() {
    use catalog_sync::{kit, Config, Deps, Engine, JobOutcome};
    use keycrm::{ApiKey, ClientConfig, LocalRateGate, RateBudget};
    use mapping::settings::MissingProductPolicy;
    use mapping::Settings;
    use std::sync::Arc;
    use store::{
        ConnectionStore, MemoryConnections, MemoryJournal, MemorySecrets, SecretStore, SyncKind,
    };

    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let (sim_url, shop_url) = (args[0].clone(), args[1].clone());
    let scale: f64 = args[2].parse().expect("scale");
    let store_url = args[3].clone();
    rt_single().block_on(async move {
        let secrets = Arc::new(MemorySecrets::default());
        let key = ApiKey::new(API_KEY);
        secrets.put("bench/keycrm", &key).await.expect("secret");
        let gate = Arc::new(LocalRateGate::new(RateBudget::keycrm_scaled(scale)));
        let clients = Arc::new(runtime::KeycrmClients::new(
            secrets,
            gate,
            ClientConfig::with_base_url(&sim_url),
        ));
        let conns = Arc::new(MemoryConnections::default());
        let settings = Settings {
            sync_products: true,
            sync_categories: true,
            missing_products: MissingProductPolicy::Hide,
            ..Settings::default()
        };
        conns
            .create(&kit::connection(
                "bench",
                SHOP_ID,
                &sim_url,
                "bench/keycrm",
                &key,
                settings,
            ))
            .await
            .expect("connection");
        let remote = Arc::new(remote_store::Remote::new(store_url));
        let links = remote.clone();
        let deps = Deps {
            connections: conns,
            sync: remote,
            links: links.clone(),
            shop: Arc::new(shop::HttpShop::new(&shop_url, SHOP_TOKEN).expect("shop")),
            clients: clients.clone(),
            journal: Arc::new(MemoryJournal::default()),
            jobs: Arc::new(queue::MemoryQueue::new("jobs")),
        };
        let engine = Engine::new(
            deps,
            Config {
                safety: Duration::from_secs(1),
                ..Config::default()
            },
        );
        println!("READY");
        let _ = std::io::stdout().flush();
        let mut lines = BufReader::new(std::io::stdin()).lines();
        while let Some(Ok(cmd)) = lines.next() {
            let kind = match cmd.trim() {
                "full" => SyncKind::Full,
                "prices" => SyncKind::Prices,
                "exit" => break,
                _ => continue,
            };
            let (cpu0, _) = rusage();
            let wait0 = clients_wait(&engine).await;
            let t0 = Instant::now();
            let (out, invocations) = kit::run_to_end(
                &engine,
                &kit::job("bench", kind, false),
                None,
                Duration::from_secs(6 * 3600),
                10,
            )
            .await
            .expect("sync");
            let wall = t0.elapsed().as_secs_f64();
            let (cpu1, _) = rusage();
            let wait1 = clients_wait(&engine).await;
            let run_id = match &out {
                JobOutcome::Finished { run_id, .. } => run_id.clone(),
                other => panic!("sync did not finish: {other:?}"),
            };
            let run = store::SyncStore::get_run(engine.deps.sync.as_ref(), "bench", &run_id)
                .await
                .expect("run")
                .expect("report");
            let linked_offers: usize = {
                let mut n = 0;
                let mut after = None;
                loop {
                    let (page, next) =
                        store::LinkStore::products_page(links.as_ref(), "bench", after, 1000)
                            .await
                            .expect("links");
                    n += page.iter().map(|l| l.variants.len()).sum::<usize>();
                    match next {
                        Some(c) => after = Some(c),
                        None => break,
                    }
                }
                n
            };
            println!(
                "DONE {}",
                serde_json::json!({
                    "requests": run.keycrm_requests,
                    "counts": run.counts,
                    "invocations": invocations,
                    "cpu_s": cpu1 - cpu0,
                    "wall_s": wall,
                    "gate_wait_s": wait1 - wait0,
                    "linked_offers": linked_offers,
                })
            );
            let _ = std::io::stdout().flush();
        }
        let (_, peak) = rusage();
        println!("PEAK {}", serde_json::json!({"peak_rss_mb": peak}));
        let _ = std::io::stdout().flush();
    });
}

/// Time the connection's client spent waiting for the rate gate so far.
async fn clients_wait(engine: &catalog_sync::Engine) -> f64 {
    let conn = store::ConnectionStore::get(engine.deps.connections.as_ref(), "bench")
        .await
        .ok()
        .flatten()
        .expect("connection");
    engine
        .deps
        .clients
        .for_connection(&conn)
        .await
        .map(|c| c.stats().gate_wait.as_secs_f64())
        .unwrap_or(0.0)
}
