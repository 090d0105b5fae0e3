//! The simulated day: connecting the fleet, onboarding, the day itself, and what is left to
//! read afterwards (the night's runs).

use super::*;

/// The window's start: `hour` UTC of a summer day (Kyiv is UTC+3).
fn day_start(hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 6, 2, hour.min(23), 0, 0)
        .single()
        .expect("a valid date")
}

pub async fn run(params: Params) -> Outcome {
    crate::report::install_log_counter();
    let specs = fleet::fleet(params.shops, params.seed, params.product_scale);
    let start = day_start(params.start_hour);
    // Onboarding (every shop's first full sync) runs before the window; at full size the
    // biggest catalog (100,000 products) needs about 10 KeyCRM hours of its key's budget.
    let clock = Clock::new(
        start - chrono::Duration::minutes((params.onboard_hours * 60.0).round() as i64),
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
    // KeyCRM answers in about 250 ms (what the billing model charges per request, too).
    sim.set_faults(Faults {
        latency_ms: (crate::meter::latency::KEYCRM_US as f64 / 1000.0 / params.scale)
            .round()
            .max(1.0) as u64,
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
        scale: params.scale,
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
        keys: Arc::new(ports::Keys::new(
            Arc::new(store::MemorySecrets::default()),
            ctx.clone(),
            params.design.keys,
        )),
        gate: Arc::new(ports::Gate::new(
            RateBudget::keycrm_scaled(params.scale),
            ctx.clone(),
        )),
        dictionaries: Arc::new(ports::Dictionaries {
            inner: Arc::new(store::MemoryDictionaryCache::new()),
            ctx: ctx.clone(),
        }),
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
    // What the window started still lands (up to two hours): orders and status changes in
    // flight, and the syncs under way (the night's last runs). Status changes KeyCRM's
    // managers make later are the next window's.
    let drain_until = end + chrono::Duration::hours(2);
    while clock.now() < drain_until {
        let pending = w.order_q.approximate_len().await.unwrap_or(0)
            + w.status_q.approximate_len().await.unwrap_or(0)
            + w.sync_q.approximate_len().await.unwrap_or(0)
            + w.stores
                .sync
                .inner
                .unfinished(1)
                .await
                .map(|u| u.len())
                .unwrap_or(0)
            + w.pool.in_flight(w.design.sync.name) as usize;
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
            None => {
                out.unfinished += 1;
                out.unfinished_shops.push((s.index, "not started"));
            }
            Some(r) => {
                if r.state == "completed" {
                    out.completed += 1;
                } else if r.state == "running" {
                    out.unfinished += 1;
                    out.unfinished_shops.push((s.index, "running"));
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
