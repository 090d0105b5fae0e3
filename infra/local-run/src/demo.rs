//! The local main job: start every part, walk the merchant's flow through the admin API (as
//! the settings page would), sync the catalog, push the shop's pending orders, let KeyCRM
//! change some statuses so its trigger webhooks come back, print a summary, keep serving.

use crate::cli::Args;
use crate::demo_data::{self, CatalogItem};
use crate::ports::Ports;
use crate::workers;
use admin_api::{AdminApi, AdminConfig, TokenSigner};
use anyhow::{anyhow, bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use keycrm::{ClientConfig, OfferFilter, RateBudget};
use keycrm_sim::{AccountSpec, SimConfig, SimHandle};
use order_push::{Dictionaries, KeycrmProvider, OrderPush, PushConfig};
use queue::Outgoing;
use rand::RngCore;
use runtime::metrics::catalog::ADMIN_REQUESTS;
use runtime::metrics::http as metrics_http;
use runtime::metrics::{Emitter, Function, MeteredCatalog, MeteredOrders};
use runtime::KeycrmClients;
use serde_json::{json, Value};
use shop::{HttpShop, MemoryShop, ShopCatalog, ShopOrders};
use status_apply::StatusApplier;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

const SECRET_PREFIX: &str = "shop-keycrm/local/keycrm/";

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Where KeyCRM is: the embedded simulator or a real account.
struct Keycrm {
    base_url: String,
    api_key: String,
    sim: Option<SimHandle>,
}

async fn start_keycrm(args: &Args) -> anyhow::Result<Keycrm> {
    if let Some((base_url, api_key)) = args.real_keycrm() {
        return Ok(Keycrm {
            base_url,
            api_key,
            sim: None,
        });
    }
    let api_key = format!("demo-key-{}", args.seed);
    let sim = keycrm_sim::start(
        SimConfig {
            accounts: vec![AccountSpec {
                api_key: api_key.clone(),
                seed: args.seed,
                products: args.products,
                pipelines_enabled: true,
            }],
            rate_limit_per_minute: 60,
            time_scale: args.speed,
            public_base_url: None,
        },
        SocketAddr::from(([127, 0, 0, 1], args.sim_port)),
    )
    .await
    .with_context(|| {
        format!(
            "starting the KeyCRM simulator on port {} (try --sim-port 0)",
            args.sim_port
        )
    })?;
    Ok(Keycrm {
        base_url: sim.base_url(),
        api_key,
        sim: Some(sim),
    })
}

/// The admin API as the settings page uses it.
struct Page {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Page {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!("{method} {path} answered {status}: {text}");
        }
        if text.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).with_context(|| format!("{method} {path}: not JSON"))
    }
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let started = Instant::now();
    let keycrm = start_keycrm(&args).await?;
    let budget = if keycrm.sim.is_some() {
        RateBudget::keycrm_scaled(args.speed)
    } else {
        RateBudget::keycrm()
    };
    let ports = if args.use_aws() {
        Ports::aws(&args.aws_prefix, budget).await?
    } else {
        Ports::memory(budget)
    };

    // The shop: the platform's API, or the demo shop served over the same HTTP contract.
    let demo_shop = Arc::new(MemoryShop::new());
    let (shop_api, shop_desc): (Arc<HttpShop>, String) = match args.real_shop() {
        Some((url, token)) => (
            Arc::new(HttpShop::new(&url, token)?),
            format!("shop API at {url}"),
        ),
        None => {
            demo_shop.set_reference(&args.shop_id, demo_data::shop_reference());
            // A second shop with nothing connected, for walking the settings page from the start.
            demo_shop.set_reference(&walkthrough_shop(&args), demo_data::shop_reference());
            let token = random_hex(16);
            let (addr, _server) = shop::demo_server::serve(
                demo_shop.clone(),
                token.clone(),
                SocketAddr::from(([127, 0, 0, 1], 0)),
            )
            .await
            .context("starting the demo shop")?;
            let url = format!("http://{addr}/v1");
            (
                Arc::new(HttpShop::new(&url, token)?),
                format!("demo shop at {url}"),
            )
        }
    };
    // Metered, as the functions wire them.
    let shop_catalog: Arc<dyn ShopCatalog> = Arc::new(MeteredCatalog(shop_api.clone()));
    let shop_orders: Arc<dyn ShopOrders> = Arc::new(MeteredOrders(shop_api.clone()));
    // Each function's metrics, flushed after every step (to --metrics FILE, if given); the
    // KeyCRM usage per connection goes to its status as on Lambda.
    let sink = args
        .metrics_sink()
        .with_context(|| "opening the --metrics file")?;
    let emitter = |f: Function| {
        Emitter::new(f)
            .with_sink(sink.clone())
            .with_journal(ports.journal.clone())
    };

    let clients = Arc::new(KeycrmClients::new(
        ports.secrets.clone(),
        ports.gate.clone(),
        ClientConfig::with_base_url(&keycrm.base_url),
    ));

    // HTTP: the admin API and the webhook receiver on one port.
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], args.port)))
        .await
        .with_context(|| format!("port {} is taken (try --port)", args.port))?;
    let public = format!("http://{}", listener.local_addr()?);
    let signer =
        TokenSigner::new(random_hex(32).as_bytes()).map_err(|e| anyhow!("signing key: {e:?}"))?;
    // Admin tokens live at most a day; the one printed in the summary is for trying the API by hand.
    let admin_token = signer.mint(&args.shop_id, 12 * 3600);
    let walkthrough_token = signer.mint(&walkthrough_shop(&args), 12 * 3600);
    let mut admin_cfg = AdminConfig::new(SECRET_PREFIX, keycrm.base_url.clone());
    admin_cfg.public_base_url = Some(public.clone());
    // The webhook token key: WEBHOOK_TOKEN_KEY when set (at least 32 bytes, e.g. to keep
    // URLs across runs against a persistent store), otherwise a fresh one for this run.
    let token_key = match std::env::var("WEBHOOK_TOKEN_KEY") {
        Ok(k) if !k.trim().is_empty() => {
            store::TokenKey::from_secret_text(&k).map_err(|e| anyhow!("WEBHOOK_TOKEN_KEY: {e}"))?
        }
        _ => store::TokenKey::generate(),
    };
    let admin = AdminApi {
        config: admin_cfg,
        signer,
        token_key: token_key.clone(),
        connections: ports.connections.clone(),
        secrets: ports.secrets.clone(),
        journal: ports.journal.clone(),
        cache: ports.cache.clone(),
        ledger: ports.ledger.clone(),
        sync: ports.sync.clone(),
        links: ports.links.clone(),
        clients: clients.clone(),
        shop: shop_orders.clone(),
        order_queue: ports.order_queue.clone(),
        sync_queue: ports.sync_queue.clone(),
    };
    // The coalescing window follows the demo's clock (10 s at real speed).
    let stock_config = stock_apply::FlushConfig {
        window: Duration::from_secs_f64((10.0 / args.speed.max(1.0)).max(0.2)),
        ..stock_apply::FlushConfig::default()
    };
    let receiver = Arc::new(
        webhook::Receiver::new(
            ports.connections.clone(),
            ports.status_queue.clone(),
            ports.journal.clone(),
            token_key,
        )
        .with_stock(webhook::StockIntake::new(
            ports.stock.clone(),
            ports.stock_queue.clone(),
            ports.journal.clone(),
            stock_config,
        )),
    );
    // Both routers answer their own 404s, so requests are dispatched by path prefix (as the
    // HTTP API's routes do in AWS) rather than merged.
    let webhook_router =
        metrics_http::layer(webhook::router(receiver), emitter(Function::Webhook), None);
    let admin_router = metrics_http::layer(
        admin_api::router(admin),
        emitter(Function::AdminApi),
        Some(&ADMIN_REQUESTS),
    );
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let target = if req.uri().path().starts_with("/v1/webhooks/") {
            webhook_router.clone()
        } else {
            admin_router.clone()
        };
        // API Gateway gives up on a request after 30 s; the local server does the same, so a
        // client that announces a body and never sends it does not hold a task forever.
        answer_within(REQUEST_TIMEOUT, async move {
            match tower::ServiceExt::oneshot(target, req).await {
                Ok(resp) => resp,
                Err(never) => match never {},
            }
        })
    });
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "HTTP server stopped");
        }
    });

    // The consumers and schedules.
    let (stop_tx, stop_rx) = watch::channel(false);
    let push = Arc::new(OrderPush {
        connections: ports.connections.clone(),
        ledger: ports.ledger.clone(),
        journal: ports.journal.clone(),
        crm: Arc::new(KeycrmProvider {
            clients: clients.clone(),
            secret_prefix: Some(SECRET_PREFIX.into()),
        }),
        retry_queue: ports.order_queue.clone(),
        dead_letters: ports.order_dlq.clone(),
        dictionaries: Arc::new(Dictionaries::default()),
        config: PushConfig {
            source_queue: "order-events".into(),
            ..PushConfig::default()
        },
    });
    tokio::spawn(workers::order_consumer(
        push,
        ports.order_queue.clone(),
        emitter(Function::OrderPush),
        stop_rx.clone(),
    ));
    let applier = Arc::new(
        StatusApplier::new(
            ports.connections.clone(),
            ports.ledger.clone(),
            shop_orders.clone(),
            ports.journal.clone(),
            status_apply::RetryPolicy::default(),
        )
        .with_keycrm(Arc::new(status_apply::KeycrmOrigins {
            clients: clients.clone(),
            secret_prefix: Some(SECRET_PREFIX.into()),
        })),
    );
    tokio::spawn(workers::status_consumer(
        applier,
        ports.status_queue.clone(),
        ports.status_dlq.clone(),
        emitter(Function::StatusApply),
        stop_rx.clone(),
    ));
    let stock_applier = Arc::new(stock_apply::StockApplier::new(
        stock_apply::Flusher::new(
            ports.connections.clone(),
            ports.stock.clone(),
            ports.links.clone(),
            shop_catalog.clone(),
            Arc::new(stock_apply::KeycrmStock {
                clients: clients.clone(),
            }),
            ports.journal.clone(),
            ports.stock_queue.clone(),
            stock_config,
        ),
        stock_apply::RetryPolicy::default(),
    ));
    tokio::spawn(workers::stock_consumer(
        stock_applier,
        ports.stock_queue.clone(),
        ports.stock_dlq.clone(),
        emitter(Function::StockApply),
        stop_rx.clone(),
    ));
    let engine = Arc::new(catalog_sync::Engine::new(
        catalog_sync::Deps {
            connections: ports.connections.clone(),
            sync: ports.sync.clone(),
            links: ports.links.clone(),
            shop: shop_catalog.clone(),
            clients: clients.clone(),
            journal: ports.journal.clone(),
            jobs: ports.sync_queue.clone(),
        },
        catalog_sync::Config::default(),
    ));
    tokio::spawn(workers::sync_consumer(
        engine.clone(),
        ports.sync_queue.clone(),
        emitter(Function::CatalogSync),
        stop_rx.clone(),
    ));
    tokio::spawn(workers::schedules(
        engine,
        args.price_interval(),
        emitter(Function::CatalogSync),
        stop_rx.clone(),
    ));

    // 1. Connect, as the merchant does on the settings page.
    let page = Page {
        http: reqwest::Client::new(),
        base: format!("{public}/v1/shops/{}/connection", args.shop_id),
        token: admin_token.clone(),
    };
    let conn = page
        .call(
            reqwest::Method::PUT,
            "",
            Some(json!({ "api_key": keycrm.api_key })),
        )
        .await?;
    let connection_id = conn["id"].as_str().unwrap_or_default().to_string();
    let webhook_url = conn["webhooks"]["orders"]["url"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let options = page.call(reqwest::Method::GET, "/options", None).await?;
    let crm: mapping::KeycrmReference =
        serde_json::from_value(options["keycrm"].clone()).context("reading the options")?;
    let settings = demo_data::settings_for(&crm);
    let saved = page
        .call(
            reqwest::Method::PUT,
            "/settings",
            Some(json!({"version": conn["version"], "settings": settings})),
        )
        .await?;
    let stock_url = saved["webhooks"]["stock"]["url"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if let Some(sim) = &keycrm.sim {
        // What the merchant does in KeyCRM: a trigger "order status changed" → "Send webhook",
        // and Settings → Products → Stocks → "+ Add webhook" with the stock URL.
        sim.set_webhook_url(
            &keycrm.api_key,
            "order.change_order_status",
            Some(webhook_url.clone()),
        );
        sim.set_stock_webhooks(
            &keycrm.api_key,
            vec![keycrm_sim::StockWebhook {
                name: "shop".into(),
                url: stock_url.clone(),
                warehouses: Vec::new(),
            }],
        );
    }

    // 2. A full catalog sync, with a progress bar over KeyCRM pages. Turning product sync on
    // in the settings started it already; ask for one only if it did not.
    let run_id = match saved["sync_started"]["run_id"].as_str() {
        Some(id) => id.to_string(),
        None => {
            let sync = page
                .call(
                    reqwest::Method::POST,
                    "/sync",
                    Some(json!({"kind": "full"})),
                )
                .await?;
            sync["run_id"].as_str().unwrap_or_default().to_string()
        }
    };
    let floor = keycrm.sim.as_ref().map(|s| {
        let cat = s.catalog(&keycrm.api_key);
        (cat.offers.len().div_ceil(50) + cat.categories.len().div_ceil(50)) as u64
    });
    let run = follow_run(&page, &run_id, floor).await?;

    // 3. Push the shop's pending orders (the shop publishes order.created events).
    let items = catalog_items(&clients, &keycrm).await?;
    let orders = demo_data::pending_orders(&args.shop_id, &items, args.orders, args.seed);
    for (id, body) in &orders {
        demo_shop.add_order(&args.shop_id, id, "new");
        ports.order_queue.send(Outgoing::new(body.clone())).await?;
    }
    let pushed = wait_for(Duration::from_secs(300), || async {
        let mut done = Vec::new();
        for (id, _) in &orders {
            match ports.ledger.get(&connection_id, id).await {
                Ok(Some(e)) if e.keycrm_id.is_some() => {
                    done.push((id.clone(), e.keycrm_id.unwrap_or_default()))
                }
                Ok(Some(e)) if e.state == store::LedgerState::Failed => done.push((id.clone(), -1)),
                _ => return None,
            }
        }
        Some(done)
    })
    .await
    .context("orders were not all pushed within 5 minutes")?;

    // 4. KeyCRM changes some statuses; its trigger webhooks bring them back to the shop.
    let mut changes = Vec::new();
    if let Some(sim) = &keycrm.sim {
        let targets = ["processing", "shipped", "completed", "canceled"];
        for ((shop_order, keycrm_id), shop_status) in
            pushed.iter().filter(|(_, k)| *k > 0).zip(targets)
        {
            let Some(status) = settings.keycrm_status_for(shop_status) else {
                continue;
            };
            sim.change_order_status(&keycrm.api_key, *keycrm_id, status)
                .await?;
            changes.push((shop_order.clone(), shop_status.to_string(), status));
        }
        let shop = demo_shop.clone();
        let shop_id = args.shop_id.clone();
        let expect = changes.clone();
        wait_for(Duration::from_secs(60), || {
            let shop = shop.clone();
            let shop_id = shop_id.clone();
            let expect = expect.clone();
            async move {
                expect
                    .iter()
                    .all(|(o, s, _)| shop.order_status(&shop_id, o).as_deref() == Some(s.as_str()))
                    .then_some(())
            }
        })
        .await
        .with_context(|| {
            let log: Vec<String> = sim
                .stats()
                .webhook_log
                .iter()
                .rev()
                .take(3)
                .map(|a| format!("{a:?}"))
                .collect();
            format!(
                "status webhooks did not reach the shop within a minute; last deliveries: {log:?}"
            )
        })?;
    }

    // 5. An offer sells out in KeyCRM; the stock webhook brings it to the shop.
    let sell_out = match &keycrm.sim {
        Some(sim) => Some(
            sell_out(
                sim,
                &keycrm.api_key,
                &ports,
                &demo_shop,
                &args.shop_id,
                &connection_id,
            )
            .await?,
        ),
        None => None,
    };

    let status = page.call(reqwest::Method::GET, "/status", None).await?;
    let dead = [
        (
            "orders",
            ports.order_dlq.approximate_len().await.unwrap_or(0),
        ),
        (
            "statuses",
            ports.status_dlq.approximate_len().await.unwrap_or(0),
        ),
        (
            "sync jobs",
            ports.sync_dlq.approximate_len().await.unwrap_or(0),
        ),
        (
            "stock flushes",
            ports.stock_dlq.approximate_len().await.unwrap_or(0),
        ),
    ];
    print_summary(
        &args,
        &keycrm,
        &shop_desc,
        &ports,
        &run,
        &pushed,
        &changes,
        &status,
        &saved,
        &public,
        &admin_token,
        &webhook_url,
        &stock_url,
        sell_out,
        started,
    );
    let dead: Vec<String> = dead.iter().map(|(k, n)| format!("{k} {n}")).collect();
    println!("  Dead letters  {}", dead.join(", "));
    print_page_urls(&args, &keycrm, &public, &admin_token, &walkthrough_token);

    if !args.once {
        println!("Serving until Ctrl-C.");
        tokio::signal::ctrl_c()
            .await
            .context("waiting for Ctrl-C")?;
    }
    let _ = stop_tx.send(true);
    Ok(())
}

/// Sells out one linked offer that the shop shows as available (a stock document in KeyCRM)
/// and waits for the shop to follow. Returns the offer and how long it took.
async fn sell_out(
    sim: &SimHandle,
    api_key: &str,
    ports: &Ports,
    shop: &MemoryShop,
    shop_id: &str,
    connection_id: &str,
) -> anyhow::Result<(i64, Duration)> {
    let catalog = sim.catalog(api_key);
    let ids: Vec<i64> = catalog.offers.iter().map(|o| o.id).collect();
    let linked = ports.links.products_of_offers(connection_id, &ids).await?;
    let shop_variant = |offer: i64, product: i64| {
        let links = ports.links.clone();
        let shop_id = shop_id.to_string();
        async move {
            let link = links
                .get_products(connection_id, &[product])
                .await
                .ok()?
                .pop()?;
            let v = link
                .variants
                .iter()
                .find(|v| v.offer_id == offer)?
                .shop_id
                .clone();
            shop.product(&shop_id, &link.shop_id)?
                .variants
                .into_iter()
                .find(|x| x.id == v)
                .map(|x| x.available)
        }
    };
    let mut target = None;
    for o in catalog
        .offers
        .iter()
        .filter(|o| !o.is_archived && o.stocks.len() == 1 && o.quantity - o.in_reserve > 0)
    {
        if let Some(p) = linked.get(&o.id) {
            if shop_variant(o.id, *p).await == Some(true) {
                target = Some((o.id, *p));
                break;
            }
        }
    }
    let (offer, product) = target.ok_or_else(|| anyhow!("no linked offer in stock to sell out"))?;
    let t = Instant::now();
    sim.put_stocks(api_key, 1, &[(offer, 0)])?;
    wait_for(Duration::from_secs(60), || async {
        (shop_variant(offer, product).await == Some(false)).then_some(())
    })
    .await
    .context("the sold-out offer did not reach the shop within a minute")?;
    Ok((offer, t.elapsed()))
}

/// The shop the summary offers for walking the settings page from an empty start.
fn walkthrough_shop(args: &Args) -> String {
    format!("{}-walkthrough", args.shop_id)
}

/// The settings page's address: the page, with the shop token in the fragment (never sent to
/// the server; the page takes it out of the address bar at once).
fn page_url(public: &str, shop_id: &str, token: &str) -> String {
    format!("{public}/v1/shops/{shop_id}/connection/page#token={token}")
}

fn print_page_urls(args: &Args, keycrm: &Keycrm, public: &str, admin: &str, walkthrough: &str) {
    println!();
    println!("Settings page (open in a browser):");
    println!(
        "  connected demo shop  {}",
        page_url(public, &args.shop_id, admin)
    );
    if args.real_shop().is_none() {
        println!(
            "  empty shop           {}",
            page_url(public, &walkthrough_shop(args), walkthrough)
        );
        if keycrm.sim.is_some() {
            println!(
                "                       follow the article from \"Ключ API\": paste the simulator's key {}",
                keycrm.api_key
            );
        } else {
            println!(
                "                       follow the article from \"Ключ API\" with your KeyCRM key"
            );
        }
    }
}

/// SKUs the KeyCRM catalog has (first page is plenty for demo orders).
async fn catalog_items(
    clients: &KeycrmClients,
    keycrm: &Keycrm,
) -> anyhow::Result<Vec<CatalogItem>> {
    let client = clients.for_key(
        &keycrm.base_url,
        keycrm::ApiKey::new(keycrm.api_key.clone()),
    )?;
    let page = client
        .offers(&OfferFilter {
            archived: Some(false),
            ..OfferFilter::default()
        })
        .next_page()
        .await?
        .ok_or_else(|| anyhow!("the KeyCRM catalog is empty"))?;
    let items: Vec<CatalogItem> = page
        .data
        .into_iter()
        .filter_map(|o| {
            let sku = o.sku.clone()?;
            let name = o
                .product
                .as_ref()
                .map(|p| p.name.clone())
                .unwrap_or_else(|| sku.clone());
            Some(CatalogItem {
                sku,
                name,
                price: o.price.try_into().unwrap_or(100.0),
            })
        })
        .filter(|i| i.price > 0.0)
        .collect();
    if items.is_empty() {
        bail!("no priced offers in the KeyCRM catalog");
    }
    Ok(items)
}

async fn wait_for<T, F, Fut>(limit: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Polls the run report until the run ends, drawing progress over KeyCRM pages.
async fn follow_run(page: &Page, run_id: &str, floor: Option<u64>) -> anyhow::Result<Value> {
    let bar = match floor {
        Some(n) => ProgressBar::new(n).with_style(
            ProgressStyle::with_template(
                "  catalog sync [{bar:40}] {pos}/{len} KeyCRM pages {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("  catalog sync {spinner} {pos} KeyCRM requests {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        ),
    };
    let deadline = Instant::now() + Duration::from_secs(3600);
    loop {
        let run = page
            .call(reqwest::Method::GET, &format!("/runs/{run_id}"), None)
            .await?;
        let requests = run["keycrm_requests"].as_u64().unwrap_or(0);
        bar.set_position(floor.map_or(requests, |f| requests.min(f)));
        let counts = &run["counts"];
        bar.set_message(format!(
            "created {} updated {} unchanged {}",
            counts["create"].as_u64().unwrap_or(0),
            counts["update"].as_u64().unwrap_or(0),
            counts["unchanged"].as_u64().unwrap_or(0)
        ));
        let state = run["state"].as_str().unwrap_or_default();
        if !matches!(state, "queued" | "running" | "paused" | "") {
            bar.finish();
            return Ok(run);
        }
        if Instant::now() > deadline {
            bar.abandon();
            bail!("the catalog sync did not finish within an hour");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[allow(clippy::too_many_arguments)]
fn print_summary(
    args: &Args,
    keycrm: &Keycrm,
    shop_desc: &str,
    ports: &Ports,
    run: &Value,
    pushed: &[(String, i64)],
    changes: &[(String, String, i64)],
    status: &Value,
    saved: &Value,
    public: &str,
    admin_token: &str,
    webhook_url: &str,
    stock_url: &str,
    sell_out: Option<(i64, Duration)>,
    started: Instant,
) {
    let counts = &run["counts"];
    let c = |k: &str| counts[k].as_u64().unwrap_or(0);
    let ok: Vec<&(String, i64)> = pushed.iter().filter(|(_, k)| *k > 0).collect();
    println!();
    println!(
        "shop-keycrm local run: ready in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    match &keycrm.sim {
        Some(sim) => println!(
            "  KeyCRM     simulator at {} ({} products, 60 requests/min per key at {}x speed)",
            sim.base_url(),
            args.products,
            args.speed
        ),
        None => println!("  KeyCRM     {}", keycrm.base_url),
    }
    println!("  Shop       {shop_desc} (shop \"{}\")", args.shop_id);
    println!("  State      {}", ports.description);
    println!(
        "  Catalog    full sync {}: {} categories, {} products created, {} updated, {} unchanged, {} ambiguous; {} KeyCRM requests",
        run["state"].as_str().unwrap_or("?"),
        c("category_create") + c("category_update"),
        c("create"),
        c("update"),
        c("unchanged"),
        c("ambiguous"),
        run["keycrm_requests"].as_u64().unwrap_or(0)
    );
    println!(
        "  Orders     {} of {} pushed to KeyCRM{}; {} failed",
        ok.len(),
        pushed.len(),
        match (ok.first(), ok.last()) {
            (Some(a), Some(b)) => format!(" (KeyCRM ids {}..{})", a.1, b.1),
            _ => String::new(),
        },
        pushed.len() - ok.len()
    );
    if changes.is_empty() {
        println!("  Statuses   change an order's status in KeyCRM to see it come back through the webhook");
    } else {
        let list: Vec<String> = changes
            .iter()
            .map(|(o, s, k)| format!("order {o} -> {s} (KeyCRM status {k})"))
            .collect();
        println!(
            "  Statuses   back from KeyCRM via trigger webhooks: {}",
            list.join(", ")
        );
    }
    match sell_out {
        Some((offer, took)) => println!(
            "  Stock      offer {offer} sold out in KeyCRM -> unavailable in the shop after {:.1} s (stock webhook, realtime stock)",
            took.as_secs_f64()
        ),
        None => println!("  Stock      change a stock in KeyCRM to see it reach the shop through the stock webhook"),
    }
    println!(
        "  Journal    orders pushed {}, failed {}, webhooks applied {}, stock signals {}, availability changes {}",
        status["orders_pushed"],
        status["orders_failed"],
        status["webhooks_applied"],
        status["counters"]["stock_signals"].as_u64().unwrap_or(0),
        status["counters"]["stock_changed"].as_u64().unwrap_or(0)
    );
    println!("  Admin API  {public}/v1/shops/{}/connection", args.shop_id);
    println!("             Authorization: Bearer {admin_token}");
    println!("  Webhooks   order statuses: {webhook_url}");
    println!("             stock: {stock_url}");
    println!(
        "  Settings   version {} saved (GET /connection shows them)",
        saved["version"]
    );
}

/// How long the local server lets one request take, body included (API Gateway's limit).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// `answer`, or 408 with a JSON error if it takes longer than `limit` (reading a body that
/// never comes included).
async fn answer_within(
    limit: Duration,
    answer: impl std::future::Future<Output = axum::response::Response>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match tokio::time::timeout(limit, answer).await {
        Ok(resp) => resp,
        Err(_) => (
            axum::http::StatusCode::REQUEST_TIMEOUT,
            axum::Json(serde_json::json!({
                "error": format!(
                    "the request did not complete within {} s",
                    limit.as_secs_f64()
                )
            })),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A client announces 100 bytes of body and sends 2: the server answers 408 at the limit
    /// instead of waiting for the rest forever.
    #[tokio::test]
    async fn a_body_that_never_comes_is_answered_408_at_the_limit() {
        let app = axum::Router::new().fallback(|req: axum::extract::Request| {
            answer_within(Duration::from_millis(300), async move {
                use axum::response::IntoResponse;
                match axum::body::to_bytes(req.into_body(), 1024).await {
                    Ok(b) => format!("read {} bytes", b.len()).into_response(),
                    Err(_) => axum::http::StatusCode::BAD_REQUEST.into_response(),
                }
            })
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"PUT /v1/x HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{}")
            .await
            .unwrap();
        let started = Instant::now();
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while !String::from_utf8_lossy(&got).contains("\r\n\r\n{") {
            let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
                .await
                .expect("an answer, not a wait")
                .unwrap();
            assert!(n > 0, "closed without an answer");
            got.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 408"), "{text}");
        assert!(text.contains("did not complete within 0.3 s"), "{text}");
        assert!(started.elapsed() >= Duration::from_millis(250));
    }
}
