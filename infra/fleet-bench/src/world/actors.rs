//! Everything around the functions: the schedules, the merchants' orders, KeyCRM's managers
//! and the webhook receiver behind API Gateway.

use super::*;

/// The schedules (EventBridge Scheduler invoking catalog-sync).
pub(super) async fn scheduler(
    w: Arc<World>,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
    resume_only: bool,
) {
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
pub(super) async fn merchants(w: Arc<World>, from: DateTime<Utc>, hours: i64, seed: u64) -> u64 {
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
pub(super) async fn managers(w: Arc<World>) {
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
pub(super) async fn webhook_server(
    w: Arc<World>,
    token_key: store::TokenKey,
) -> (String, Arc<AtomicU64>) {
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
            memory_mb: w.design.small_memory,
            timeout: Duration::from_secs(10),
            batch: 1,
            window: Duration::ZERO,
            max_concurrency: reserved.unwrap_or(ACCOUNT_CONCURRENCY),
            reserved: reserved.is_some(),
            init_secret_reads: 1,
            // The same `HighVolumeTracing` as status apply.
            traced: w.design.status.traced,
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
