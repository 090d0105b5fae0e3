//! Router-level tests over the in-memory adapters and the KeyCRM simulator (the local-run
//! wiring). The same flows run against DynamoDB/SQS/Secrets Manager on the emulator in
//! `tests/tests/admin_api_*.rs`.

use super::*;
use axum::body::Body;
use axum::http::Request;
use keycrm::{ClientConfig, LocalRateGate, RateBudget};
use keycrm_sim::{AccountSpec, SimConfig, SimHandle};
use queue::MemoryQueue;
use runtime::KeycrmClients;
use serde_json::{json, Value};
use shop::{MemoryShop, NamedItem, ShopAddon, ShopReference};
use store::{
    MemoryConnections, MemoryJournal, MemoryLedger, MemoryReferenceCache, MemorySecrets,
    MemorySync, SecretStore,
};
use tower::ServiceExt;

const KEY: &str = "unit-key-0123456789abcdef0123456789abcdef";

struct H {
    router: Router,
    signer: TokenSigner,
    sim: SimHandle,
    sync_q: Arc<MemoryQueue>,
    secrets: Arc<MemorySecrets>,
    ledger: Arc<MemoryLedger>,
    sync: Arc<MemorySync>,
}

fn shop_reference() -> ShopReference {
    let n = |id: &str| NamedItem {
        id: id.into(),
        name: id.to_uppercase(),
    };
    ShopReference {
        order_statuses: vec![n("new"), n("paid"), n("done")],
        order_addons: vec![ShopAddon {
            id: "gift".into(),
            name: "Gift".into(),
            addon_type: "text".into(),
        }],
        payment_methods: vec![n("cod")],
        delivery_methods: vec![n("np")],
        currency: "UAH".into(),
    }
}

async fn harness() -> H {
    harness_cfg(|_| {}).await
}

async fn harness_with(public_base: Option<&str>) -> H {
    harness_cfg(|c| c.public_base_url = public_base.map(str::to_string)).await
}

async fn harness_cfg(tune: impl FnOnce(&mut AdminConfig)) -> H {
    harness_gate(RateBudget::keycrm_scaled(60.0), tune).await
}

async fn harness_gate(budget: RateBudget, tune: impl FnOnce(&mut AdminConfig)) -> H {
    let sim = keycrm_sim::start(
        SimConfig {
            accounts: vec![AccountSpec {
                api_key: KEY.into(),
                seed: 7,
                products: 3,
                pipelines_enabled: true,
            }],
            rate_limit_per_minute: 60,
            time_scale: 60.0,
            public_base_url: None,
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let secrets = Arc::new(MemorySecrets::default());
    let gate = Arc::new(LocalRateGate::new(budget));
    let clients = Arc::new(KeycrmClients::new(
        secrets.clone(),
        gate,
        ClientConfig::default(),
    ));
    let shop = Arc::new(MemoryShop::new());
    shop.set_reference("s1", shop_reference());
    let sync_q = Arc::new(MemoryQueue::new("sync"));
    let ledger = Arc::new(MemoryLedger::new());
    let sync = Arc::new(MemorySync::new());
    let signer = TokenSigner::new("unit-test-signing-key-0123456789abcdef").unwrap();
    let mut config = AdminConfig::new("test/keycrm/", sim.base_url());
    config.public_base_url = Some("https://hooks.example.com".into());
    tune(&mut config);
    let api = AdminApi {
        config,
        signer: signer.clone(),
        token_key: store::TokenKey::generate(),
        connections: Arc::new(MemoryConnections::default()),
        secrets: secrets.clone(),
        journal: Arc::new(MemoryJournal::default()),
        cache: Arc::new(MemoryReferenceCache::new()),
        ledger: ledger.clone(),
        sync: sync.clone(),
        links: Arc::new(store::MemoryLinks::new()),
        clients,
        shop,
        order_queue: Arc::new(MemoryQueue::new("orders")),
        sync_queue: sync_q.clone(),
    };
    H {
        router: router(api),
        signer,
        sim,
        sync_q,
        secrets,
        ledger,
        sync,
    }
}

impl H {
    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = req
            .body(
                body.map(|b| Body::from(b.to_string()))
                    .unwrap_or_else(Body::empty),
            )
            .unwrap();
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 22)
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&bytes).to_string();
        assert!(
            !text.contains(KEY),
            "the API key leaked into a response: {text}"
        );
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    fn token(&self, shop: &str) -> String {
        self.signer.mint(shop, 600)
    }
}

fn concrete(path: &str) -> String {
    path.replace("{shop_id}", "s1")
        .replace("{run_id}", "r1")
        .replace("{order_id}", "o1")
}

#[tokio::test]
async fn every_route_is_served_and_guarded() {
    let h = harness().await;
    let other = h.token("s2");
    for (method, path) in routes() {
        let p = concrete(&path);
        let (st, body) = h.call(&method, &p, None, None).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{method} {p}: {body}");
        let (st, body) = h.call(&method, &p, Some(&other), None).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{method} {p}: {body}");
        assert_eq!(body["error"]["code"], "forbidden");
        // With the right token the route exists (whatever the answer, it is not "no route").
        let (_, body) = h
            .call(&method, &p, Some(&h.token("s1")), Some(json!({})))
            .await;
        assert_ne!(body["error"]["code"], "route_not_found", "{method} {p}");
        assert_ne!(body["error"]["code"], "method_not_allowed", "{method} {p}");
    }
    let (st, body) = h
        .call("GET", "/v1/shops/s1/nothing", Some(&h.token("s1")), None)
        .await;
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("route_not_found"))
    );
    let (st, _) = h
        .call(
            "POST",
            "/v1/shops/s1/connection",
            Some(&h.token("s1")),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn connect_configure_sync_and_disconnect_in_memory() {
    let h = harness().await;
    let t = h.token("s1");
    let base = "/v1/shops/s1/connection";

    let (st, body) = h
        .call(
            "PUT",
            base,
            Some(&t),
            Some(json!({"api_key": "wrong-key-123456789"})),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["message"], "KeyCRM rejected this API key");

    let (st, body) = h
        .call("PUT", base, Some(&t), Some(json!({"api_key": KEY})))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    let conn_id = body["id"].as_str().unwrap().to_string();
    assert_eq!(body["key_mask"], "••••cdef");
    let url = body["webhooks"]["orders"]["url"].as_str().unwrap();
    assert!(url.starts_with(&format!(
        "https://hooks.example.com/v1/webhooks/keycrm/{conn_id}/"
    )));
    assert_eq!(
        h.secrets
            .get(&format!("test/keycrm/{conn_id}"))
            .await
            .unwrap()
            .unwrap()
            .expose(),
        KEY
    );

    let (st, opts) = h
        .call("GET", &format!("{base}/options"), Some(&t), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{opts}");
    assert_eq!(opts["cached"], false);
    assert!(opts["keycrm"]["pipelines_enabled"].as_bool().unwrap());
    assert_eq!(opts["shop"]["currency"], "UAH");
    let before = h.sim.stats().total_requests;
    let (_, again) = h
        .call("GET", &format!("{base}/options"), Some(&t), None)
        .await;
    assert_eq!(again["cached"], true);
    assert_eq!(
        h.sim.stats().total_requests,
        before,
        "the second read is served from the cache"
    );

    let settings = json!({
        "sync_products": true, "order_sync": "orders", "source_id": 1,
        "status_map": [{"shop_status": "new", "keycrm_status_id": 1}],
        "payment_map": [{"shop_method": "cod", "keycrm_method_id": 1}],
    });
    let (st, body) = h
        .call(
            "PUT",
            &format!("{base}/settings"),
            Some(&t),
            Some(json!({"version": 1, "settings": settings})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["version"], 2);
    // Turning product sync on started a full sync at once; the status says so.
    let started = body["sync_started"]["run_id"].as_str().unwrap().to_string();
    assert_eq!(body["status"]["running_sync"]["run_id"], started.as_str());
    let job: store::SyncJob = serde_json::from_str(&h.sync_q.bodies()[0]).unwrap();
    assert_eq!(job.run_id.as_deref(), Some(started.as_str()));

    // While that run is queued, "sync now" answers with it instead of queuing another.
    let (st, body) = h
        .call(
            "POST",
            &format!("{base}/sync"),
            Some(&t),
            Some(json!({"kind": "full"})),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{body}");
    assert_eq!(
        (body["run_id"].as_str(), body["already_queued"].as_bool()),
        (Some(started.as_str()), Some(true))
    );
    assert_eq!(h.sync_q.bodies().len(), 1, "no second job");
    // Once it has finished, a new one is queued.
    finish_run(&h, &conn_id, &started).await;
    let (st, body) = h
        .call(
            "POST",
            &format!("{base}/sync"),
            Some(&t),
            Some(json!({"kind": "full"})),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["already_queued"], false);
    assert_ne!(body["run_id"].as_str(), Some(started.as_str()));
    let job: store::SyncJob = serde_json::from_str(&h.sync_q.bodies()[1]).unwrap();
    assert_eq!(job.run_id.as_deref(), body["run_id"].as_str());
    assert_eq!(
        (job.connection_id.as_str(), job.requested_by.as_str()),
        (conn_id.as_str(), "merchant")
    );

    let (st, _) = h.call("DELETE", base, Some(&t), None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    // The answer comes at once; the key goes last, in the background cleanup the DELETE
    // queued (catalog-sync runs it; tests/tests/it/connection_delete.rs covers it end to end).
    assert!(h
        .secrets
        .get(&format!("test/keycrm/{conn_id}"))
        .await
        .unwrap()
        .is_some());
    let cleanup = h
        .sync_q
        .bodies()
        .iter()
        .find_map(|b| store::CleanupJob::parse(b))
        .expect("a cleanup job on the sync-jobs queue");
    assert_eq!(cleanup.connection_id, conn_id);
    let (st, body) = h.call("GET", base, Some(&t), None).await;
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_connected"))
    );
}

#[tokio::test]
async fn webhook_urls_use_the_address_the_request_came_in_on() {
    let h = harness_with(None).await;
    let req = Request::builder()
        .method("PUT")
        .uri("/v1/shops/s1/connection")
        .header("authorization", format!("Bearer {}", h.token("s1")))
        .header("host", "abc123.execute-api.eu-central-1.amazonaws.com")
        .header("x-forwarded-proto", "https")
        .body(Body::from(json!({ "api_key": KEY }).to_string()))
        .unwrap();
    let resp = h.router.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let body: Value = serde_json::from_slice(
        &axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap(),
    )
    .unwrap();
    let url = body["webhooks"]["orders"]["url"].as_str().unwrap();
    assert!(
        url.starts_with(
            "https://abc123.execute-api.eu-central-1.amazonaws.com/v1/webhooks/keycrm/"
        ),
        "{url}"
    );

    // A host header that is not a host is not turned into a URL.
    let req = Request::builder()
        .method("GET")
        .uri("/v1/shops/s1/connection")
        .header("authorization", format!("Bearer {}", h.token("s1")))
        .header("host", "evil.example/x?")
        .body(Body::empty())
        .unwrap();
    let (st, _, text) = raw(&h, req).await;
    // The caller's mistake, not ours: a 400 that says what is wrong, without the value.
    assert_eq!(st, StatusCode::BAD_REQUEST, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["error"]["code"], "invalid_host");
    assert!(v["error"]["message"].as_str().unwrap().contains("Host"));
    assert!(!text.contains("evil.example"), "{text}");

    // No Host at all (and no address in the URI): the same.
    let req = Request::builder()
        .method("GET")
        .uri("/v1/shops/s1/connection")
        .header("authorization", format!("Bearer {}", h.token("s1")))
        .body(Body::empty())
        .unwrap();
    let (st, _, text) = raw(&h, req).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.contains("invalid_host"), "{text}");
}

/// The raw answer of one request: status, headers, body.
async fn raw(h: &H, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, String) {
    let resp = h.router.clone().oneshot(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 22).await.unwrap();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&bytes).to_string(),
    )
}

#[tokio::test]
async fn a_save_checks_against_the_young_cache_and_goes_live_only_for_what_it_lacks() {
    let h = harness().await;
    let t = h.token("s1");
    let base = "/v1/shops/s1/connection";
    let (st, _) = h
        .call("PUT", base, Some(&t), Some(json!({"api_key": KEY})))
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let (_, opts) = h
        .call("GET", &format!("{base}/options"), Some(&t), None)
        .await;
    let category = opts["keycrm"]["categories"][0]["id"].clone();
    assert!(category.is_i64(), "{opts}");

    // Everything the settings name is in the cache the page was built from: no KeyCRM request.
    let before = h.sim.stats().total_requests;
    let settings = json!({
        "sync_products": true, "category_filter": [category],
        "payment_map": [{"shop_method": "cod", "keycrm_method_id": 1}],
    });
    let (st, body) = h
        .call(
            "PUT",
            &format!("{base}/settings"),
            Some(&t),
            Some(json!({"version": 1, "settings": settings})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(h.sim.stats().total_requests, before, "the save read KeyCRM");

    // Something the cache does not hold is looked up live, and only the live lists refuse.
    let (st, body) = h
        .call(
            "PUT",
            &format!("{base}/settings"),
            Some(&t),
            Some(json!({"version": 2, "settings": {"category_filter": [987654]}})),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["fields"][0]["field"], "category_filter[0]");
    assert!(
        h.sim.stats().total_requests > before,
        "the refusal was not checked live"
    );
}

#[tokio::test]
async fn a_keycrm_that_does_not_answer_in_time_gets_keycrm_busy_within_the_deadline() {
    let h = harness_cfg(|c| c.request_deadline = std::time::Duration::from_secs(6)).await;
    let t = h.token("s1");
    let base = "/v1/shops/s1/connection";
    let (st, before) = h
        .call("PUT", base, Some(&t), Some(json!({"api_key": KEY})))
        .await;
    assert_eq!(st, StatusCode::CREATED);
    // KeyCRM now takes 20 s to answer anything.
    h.sim.set_faults(keycrm_sim::Faults {
        latency_ms: 20_000,
        ..Default::default()
    });
    for (method, path, body) in [
        ("GET", format!("{base}/options?refresh=true"), None),
        (
            "PUT",
            base.to_string(),
            // (an unknown key is refused before the delay; the account's own key waits)
            Some(json!({ "api_key": KEY }).to_string()),
        ),
    ] {
        let started = std::time::Instant::now();
        let mut req = Request::builder()
            .method(method)
            .uri(&path)
            .header("authorization", format!("Bearer {t}"));
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let (st, headers, text) = raw(
            &h,
            req.body(body.map(Body::from).unwrap_or_else(Body::empty))
                .unwrap(),
        )
        .await;
        let took = started.elapsed();
        assert_eq!(
            st,
            StatusCode::SERVICE_UNAVAILABLE,
            "{method} {path} after {took:?}: {text}"
        );
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["error"]["code"], "keycrm_busy");
        assert!(v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("try again in 30 s"));
        assert_eq!(headers["retry-after"], "30");
        // Well before KeyCRM would have answered, and within the request's deadline.
        assert!(took < std::time::Duration::from_secs(10), "{took:?}");
    }
    // The key was not replaced.
    h.sim.set_faults(keycrm_sim::Faults::default());
    let (_, after) = h.call("GET", base, Some(&t), None).await;
    assert_eq!(after["key_mask"], before["key_mask"]);
    assert_eq!(after["version"], before["version"]);
}

#[tokio::test]
async fn the_settings_page_is_served_with_its_headers() {
    let h = harness().await;
    let page = "/v1/shops/s1/connection/page";
    let get = |uri: String, extra: Option<(&'static str, String)>| {
        let mut r = Request::builder().uri(uri);
        if let Some((k, v)) = extra {
            r = r.header(k, v);
        }
        r.body(Body::empty()).unwrap()
    };
    let (st, headers, html) = raw(&h, get(page.into(), None)).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert_eq!(headers["vary"], "Accept-Language");
    assert!(html.starts_with("<!doctype html>\n<html lang=\"uk\">"));
    let etag = headers["etag"].to_str().unwrap().to_string();
    let (st, _, body) = raw(&h, get(page.into(), Some(("if-none-match", etag)))).await;
    assert_eq!((st, body.as_str()), (StatusCode::NOT_MODIFIED, ""));
    let (_, _, html_en) = raw(&h, get(format!("{page}?lang=en"), None)).await;
    assert!(html_en.contains("<html lang=\"en\">"));

    let v = page::version();
    let (st, headers, js) = raw(&h, get(format!("{page}/{v}/app.js"), None)).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(headers["content-type"], "text/javascript; charset=utf-8");
    assert_eq!(
        headers["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert!(js.contains("boot()"));
    let (st, headers, _) = raw(&h, get(format!("{page}/0000/app.js"), None)).await;
    assert_eq!(
        (st, headers["cache-control"].to_str().unwrap()),
        (StatusCode::OK, "no-cache")
    );
    let (st, _, _) = raw(&h, get(format!("{page}/{v}/secrets.json"), None)).await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // The JSON API's answers are never stored by a browser or a proxy.
    let (_, headers, _) = raw(
        &h,
        get(
            "/v1/shops/s1/connection".into(),
            Some(("authorization", format!("Bearer {}", h.token("s1")))),
        ),
    )
    .await;
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers["x-content-type-options"], "nosniff");
}

#[tokio::test]
async fn a_key_with_no_slot_in_time_answers_at_once_with_when_to_try_again() {
    // Two requests a minute: after the connect, the options' ten reads cannot all get a slot
    // within the request's deadline.
    let budget = RateBudget {
        requests: 2,
        window: std::time::Duration::from_secs(60),
        background_share: 0.8,
        safety: 1.0,
    };
    let h = harness_gate(budget, |c| {
        c.request_deadline = std::time::Duration::from_secs(6)
    })
    .await;
    let t = h.token("s1");
    let (st, _) = h
        .call(
            "PUT",
            "/v1/shops/s1/connection",
            Some(&t),
            Some(json!({"api_key": KEY})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let started = std::time::Instant::now();
    let req = Request::builder()
        .uri("/v1/shops/s1/connection/options")
        .header("authorization", format!("Bearer {t}"))
        .body(Body::empty())
        .unwrap();
    let (st, headers, text) = raw(&h, req).await;
    let took = started.elapsed();
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{text}");
    assert!(text.contains("keycrm_busy"), "{text}");
    // The gate knows when its next slot is: that is the advice, not a guess.
    let after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((20..=61).contains(&after), "Retry-After {after}");
    // Told at once, not after waiting out the deadline.
    assert!(took < std::time::Duration::from_secs(3), "{took:?}");
}

#[tokio::test]
async fn errors_speak_the_merchants_language_with_stable_codes() {
    let h = harness().await;
    let ask = |lang: Option<&'static str>, path: &'static str, token: Option<String>| {
        let h = &h;
        async move {
            let mut req = Request::builder().method("GET").uri(path);
            if let Some(t) = token {
                req = req.header("authorization", format!("Bearer {t}"));
            }
            if let Some(l) = lang {
                req = req.header("accept-language", l);
            }
            let resp = h
                .router
                .clone()
                .oneshot(req.body(Body::empty()).unwrap())
                .await
                .unwrap();
            let lang = resp.headers()["content-language"]
                .to_str()
                .unwrap()
                .to_string();
            let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
                .await
                .unwrap();
            let v: Value = serde_json::from_slice(&bytes).unwrap();
            (
                lang,
                v["error"]["code"].as_str().unwrap().to_string(),
                v["error"]["message"].as_str().unwrap().to_string(),
            )
        }
    };
    let t = h.token("s1");
    let (lang, code, msg) = ask(
        Some("uk-UA,uk;q=0.9"),
        "/v1/shops/s1/connection",
        Some(t.clone()),
    )
    .await;
    assert_eq!((lang.as_str(), code.as_str()), ("uk", "not_connected"));
    assert_eq!(msg, "цей магазин не підключено до KeyCRM");
    let (lang, code, msg) = ask(None, "/v1/shops/s1/connection", Some(t)).await;
    assert_eq!((lang.as_str(), code.as_str()), ("en", "not_connected"));
    assert_eq!(msg, "this shop has no KeyCRM connection");
    // Refusals before any handler (authentication, unknown routes) too.
    let (_, code, msg) = ask(Some("uk"), "/v1/shops/s1/connection", None).await;
    assert_eq!(code, "unauthorized");
    assert!(msg.contains("токен"), "{msg}");
    let (_, code, msg) = ask(Some("uk"), "/v1/nowhere", None).await;
    assert_eq!(code, "route_not_found");
    assert!(msg.contains("маршруту"), "{msg}");
    let (lang, _, _) = ask(Some("en-GB, uk;q=0.5"), "/v1/nowhere", None).await;
    assert_eq!(lang, "en");
}

// The Lambda edge from JSON event fixtures, on this file's harness.
#[path = "../tests/lambda/fixtures.rs"]
mod lambda_fixtures;

/// A card the connector pushed proves, by its title, that a new key opens the same account,
/// also once the ledger has dropped the order's event (it keeps the order's number for
/// this); the proof wins over an order deleted in KeyCRM since.
#[tokio::test]
async fn a_pushed_card_still_proves_the_account_after_the_ledger_dropped_its_event() {
    use keycrm::models::{CardContact, NewCard};
    use store::ledger::Created;
    use store::{OrderLedger, Target};
    const KEY2: &str = "unit-key-2-0123456789abcdef0123456789abcdef";
    let h = harness().await;
    let t = h.token("s1");
    let base = "/v1/shops/s1/connection";
    let (st, body) = h
        .call("PUT", base, Some(&t), Some(json!({"api_key": KEY})))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    let conn = body["id"].as_str().unwrap().to_string();
    assert!(
        h.sim.add_api_key(KEY, KEY2),
        "a second key of the same account"
    );

    let crm = keycrm::KeycrmClient::new(
        ClientConfig {
            base_url: h.sim.base_url(),
            ..ClientConfig::default()
        },
        keycrm::ApiKey::new(KEY),
        Arc::new(LocalRateGate::new(RateBudget::keycrm_scaled(60.0))),
    )
    .unwrap();
    let card = crm
        .create_card(&NewCard {
            title: Some("Замовлення №A-77".into()),
            pipeline_id: 1,
            contact: CardContact {
                full_name: Some("Олена Коваленко".into()),
                ..CardContact::default()
            },
            ..NewCard::default()
        })
        .await
        .unwrap();
    let lease = std::time::Duration::from_secs(60);
    let pushed = |target: Target, keycrm_id: i64| Created {
        target,
        keycrm_id,
        report: Default::default(),
        shop_status: None,
        keycrm_status_id: None,
    };
    let event = json!({"type": "order.created", "order": {"id": "o1", "number": "A-77"}});
    h.ledger
        .claim(&conn, "o1", Target::Card, "h1", lease, &event.to_string())
        .await
        .unwrap();
    h.ledger
        .record_created(&conn, "o1", "h1", &pushed(Target::Card, card.id))
        .await
        .unwrap();
    let entry = h.ledger.get(&conn, "o1").await.unwrap().unwrap();
    assert!(entry.event_json.is_none(), "{entry:?}");
    // Pushed later, deleted in KeyCRM since: a reason, which the card's proof outweighs.
    h.ledger
        .claim(&conn, "o2", Target::Order, "h2", lease, "{}")
        .await
        .unwrap();
    h.ledger
        .record_created(&conn, "o2", "h2", &pushed(Target::Order, 987_654))
        .await
        .unwrap();

    let (st, body) = h
        .call("PUT", base, Some(&t), Some(json!({"api_key": KEY2})))
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert!(body.get("account_switched").is_none(), "{body}");
}

/// Marks a run finished, as catalog-sync would.
async fn finish_run(h: &H, conn_id: &str, run_id: &str) {
    set_run_state(h, conn_id, run_id, store::RunState::Completed).await;
}

async fn set_run_state(h: &H, conn_id: &str, run_id: &str, state: store::RunState) {
    use store::SyncStore;
    let mut run = h.sync.get_run(conn_id, run_id).await.unwrap().unwrap();
    run.state = state;
    h.sync.put_run(&run).await.unwrap();
}

/// One request with a raw body and an optional `Content-Type`: status, headers, JSON body.
async fn send(
    h: &H,
    method: &str,
    path: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: impl Into<Body>,
) -> (StatusCode, axum::http::HeaderMap, Value) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let (st, headers, text) = raw(h, req.body(body.into()).unwrap()).await;
    assert!(
        !text.contains(KEY),
        "the API key leaked into a response: {text}"
    );
    let v = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("{method} {path}: not JSON ({st}): {text:?}"));
    (st, headers, v)
}

/// A connected shop `s1`: its token and its connection's id.
async fn connected(h: &H) -> (String, String) {
    let t = h.token("s1");
    let (st, body) = h
        .call(
            "PUT",
            "/v1/shops/s1/connection",
            Some(&t),
            Some(json!({"api_key": KEY})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    (t, body["id"].as_str().unwrap().to_string())
}

#[tokio::test]
async fn anything_after_the_json_body_is_refused_and_nothing_changes() {
    let h = harness().await;
    let (t, _) = connected(&h).await;
    let base = "/v1/shops/s1/connection";
    let json = Some("application/json");
    for (method, path, body) in [
        (
            "PUT",
            format!("{base}/settings"),
            r#"{"version":1,"settings":{"sync_products":true}}x"#,
        ),
        ("PATCH", base.to_string(), r#"{"active":false}GARBAGE"#),
        (
            "PATCH",
            base.to_string(),
            r#"{"active":false}{"active":true}"#,
        ),
        ("PATCH", base.to_string(), r#"{"active":false} ,"#),
        ("POST", format!("{base}/sync"), r#"{"kind":"full"}]"#),
        (
            "POST",
            format!("{base}/webhook-tokens/rotate"),
            r#"{"kind":"orders"}x"#,
        ),
    ] {
        let (st, _, v) = send(&h, method, &path, Some(&t), json, body).await;
        assert_eq!(
            (st, v["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_json")),
            "{method} {path} {body}: {v}"
        );
    }
    let (_, now) = h.call("GET", base, Some(&t), None).await;
    assert_eq!(now["version"], 1, "{now}");
    assert_eq!(now["active"], true, "{now}");
    assert!(h.sync_q.bodies().is_empty(), "nothing was queued");

    // Whitespace after the value is no junk.
    let (st, _, v) = send(
        &h,
        "PATCH",
        base,
        Some(&t),
        json,
        "{\"active\":false} \r\n\t ",
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["active"], false);
}

#[tokio::test]
async fn a_body_declared_as_something_else_than_json_gets_415_and_nothing_changes() {
    let h = harness().await;
    let (t, _) = connected(&h).await;
    let base = "/v1/shops/s1/connection";
    for ct in [
        "text/plain",
        "text/plain; charset=utf-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/jsonx",
        "application/+json",
        "json",
        "",
    ] {
        let (st, _, v) = send(&h, "PATCH", base, Some(&t), Some(ct), r#"{"active":false}"#).await;
        assert_eq!(st, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{ct:?}: {v}");
        assert_eq!(v["error"]["code"], "unsupported_media_type");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("application/json"),
            "{v}"
        );
    }
    let (st, _, v) = send(
        &h,
        "POST",
        &format!("{base}/sync"),
        Some(&t),
        Some("text/plain"),
        r#"{"kind":"full","dry_run":true}"#,
    )
    .await;
    assert_eq!(st, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{v}");
    assert!(h.sync_q.bodies().is_empty(), "nothing was queued");
    let (_, now) = h.call("GET", base, Some(&t), None).await;
    assert_eq!(now["active"], true, "{now}");

    // Who is asking is settled first: a foreign token learns nothing more than 403.
    let (st, _, v) = send(
        &h,
        "PATCH",
        base,
        Some(&h.token("s2")),
        Some("text/plain"),
        r#"{"active":false}"#,
    )
    .await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );

    // JSON in any of its spellings, and no type at all, are read.
    for (ct, active) in [
        (Some("application/json; charset=utf-8"), false),
        (Some("APPLICATION/JSON"), true),
        (Some("Application/Merge-Patch+JSON ; charset=UTF-8"), false),
        (None, true),
    ] {
        let body = json!({ "active": active }).to_string();
        let (st, _, v) = send(&h, "PATCH", base, Some(&t), ct, body).await;
        assert_eq!(st, StatusCode::OK, "{ct:?}: {v}");
        assert_eq!(v["active"], active, "{ct:?}");
    }
    // No body at all is no body of another type (`curl -X POST -d ''` sends a form type).
    let (st, _, v) = send(
        &h,
        "POST",
        &format!("{base}/webhook-tokens/rotate"),
        Some(&t),
        Some("application/x-www-form-urlencoded"),
        "",
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
}

/// The settings page declares its bodies as JSON, so the 415 never meets it.
#[test]
fn the_settings_page_sends_its_bodies_as_application_json() {
    let api_js = include_str!("../page/api.js");
    assert!(
        api_js.contains("if (body !== undefined) headers['Content-Type'] = 'application/json';"),
        "page/api.js no longer declares its JSON bodies"
    );
}

#[tokio::test]
async fn a_body_over_the_limit_gets_413_body_too_large() {
    let h = harness().await;
    let (t, _) = connected(&h).await;
    let mut big = String::from(r#"{"version":1,"settings":{"category_filter":["#);
    while big.len() <= extract::BODY_LIMIT {
        big.push_str("1,");
    }
    big.push_str("1]}}");
    let (st, _, v) = send(
        &h,
        "PUT",
        "/v1/shops/s1/connection/settings",
        Some(&t),
        Some("application/json"),
        big,
    )
    .await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert_eq!(v["error"]["code"], "body_too_large");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("too large") && msg.contains("2 MB"), "{msg}");
    let (_, now) = h
        .call("GET", "/v1/shops/s1/connection", Some(&t), None)
        .await;
    assert_eq!(now["version"], 1, "nothing was saved");
}

#[tokio::test]
async fn both_forms_of_the_status_map_get_the_connectors_own_message() {
    let h = harness().await;
    let (t, _) = connected(&h).await;
    let settings = json!({
        "status_map": [{"shop_status": "sk_live_5f0c2e9d8b7a41f3", "keycrm_status_id": 1}],
        "order_statuses": {"to_keycrm": [], "from_keycrm": []},
    });
    let (st, body) = h
        .call(
            "PUT",
            "/v1/shops/s1/connection/settings",
            Some(&t),
            Some(json!({"version": 1, "settings": settings})),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let f = &body["error"]["fields"][0];
    assert_eq!(f["field"], "settings");
    assert_eq!(
        f["message"],
        "status_map is the old form of order_statuses; send only order_statuses"
    );
    assert!(!body.to_string().contains("sk_live"), "{body}");
}

#[tokio::test]
async fn an_undecodable_path_is_400_for_its_shop_and_the_usual_403_for_any_other() {
    let h = harness().await;
    let (t, _) = connected(&h).await;
    let other = h.token("s2");
    let (_, _, usual) = send(&h, "GET", "/v1/shops/s1/connection", Some(&other), None, "").await;
    for path in [
        "/v1/shops/s1/connection/runs/%00%ff",
        "/v1/shops/s1/connection/runs/%c3%28",
        "/v1/shops/s1/connection/orders/%ff/repush",
        "/v1/shops/s%31/connection/runs/%ff",
    ] {
        let method = if path.ends_with("repush") {
            "POST"
        } else {
            "GET"
        };
        let (st, _, v) = send(&h, method, path, Some(&t), None, "").await;
        assert_eq!(
            (st, v["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_path")),
            "{path}: {v}"
        );
        let (st, _, v) = send(&h, method, path, Some(&other), None, "").await;
        assert_eq!((st, &v), (StatusCode::FORBIDDEN, &usual), "{path}");
        let (st, _, _) = send(&h, method, path, None, None, "").await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{path}");
    }
    // A shop segment that is not text is never the token's shop.
    let (st, _, v) = send(
        &h,
        "GET",
        "/v1/shops/%ff/connection/runs/%ff",
        Some(&t),
        None,
        "",
    )
    .await;
    assert_eq!((st, &v), (StatusCode::FORBIDDEN, &usual));
    // A NUL is text: just a run that does not exist.
    let (st, _, v) = send(
        &h,
        "GET",
        "/v1/shops/s1/connection/runs/%00",
        Some(&t),
        None,
        "",
    )
    .await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("run_not_found"))
    );
}

#[tokio::test]
async fn the_page_routes_refuse_other_methods_with_a_json_405() {
    let h = harness().await;
    let page = "/v1/shops/s1/connection/page";
    let v = page::version();
    for (method, path) in [
        ("POST", page.to_string()),
        ("DELETE", page.to_string()),
        ("PUT", page.to_string()),
        ("POST", format!("{page}/{v}/app.js")),
        ("DELETE", format!("{page}/x/app.js")),
    ] {
        let (st, headers, body) = send(&h, method, &path, None, None, "").await;
        assert_eq!(st, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert_eq!(
            body["error"]["code"], "method_not_allowed",
            "{method} {path}"
        );
        assert_eq!(headers["content-type"], "application/json");
        let allow = headers["allow"].to_str().unwrap();
        assert!(allow.contains("GET") && allow.contains("HEAD"), "{allow}");
        assert_eq!(headers["cache-control"], "no-store");
    }
    // In the merchant's language, like every other error.
    let req = Request::builder()
        .method("POST")
        .uri(page)
        .header("accept-language", "uk")
        .body(Body::empty())
        .unwrap();
    let (_, headers, text) = raw(&h, req).await;
    assert_eq!(headers["content-language"], "uk");
    assert!(text.contains("метод"), "{text}");
    // The API's own 405s carry `Allow` too.
    let (st, headers, _) = send(&h, "POST", "/v1/shops/s1/connection", None, None, "").await;
    assert_eq!(st, StatusCode::METHOD_NOT_ALLOWED);
    assert!(headers.contains_key("allow"));
}

#[tokio::test]
async fn sync_now_answers_with_the_run_already_queued_or_running() {
    let h = harness().await;
    let (t, conn_id) = connected(&h).await;
    let base = "/v1/shops/s1/connection";
    let (st, body) = h
        .call(
            "PUT",
            &format!("{base}/settings"),
            Some(&t),
            Some(json!({"version": 1, "settings": {"sync_products": true}})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let auto = body["sync_started"]["run_id"].as_str().unwrap().to_string();
    assert_eq!(h.sync_q.bodies().len(), 1);
    let sync = |kind: &'static str, dry_run: bool| {
        let (h, t) = (&h, &t);
        async move {
            h.call(
                "POST",
                &format!("{base}/sync"),
                Some(t),
                Some(json!({"kind": kind, "dry_run": dry_run})),
            )
            .await
        }
    };

    // Ten clicks at once: one run, the one the save queued.
    let answers = futures::future::join_all((0..10).map(|_| sync("full", false))).await;
    for (st, body) in &answers {
        assert_eq!(*st, StatusCode::ACCEPTED, "{body}");
        assert_eq!(body["run_id"], auto.as_str());
        assert_eq!(body["already_queued"], true);
        assert_eq!(body["state"], "queued");
        assert_eq!(body["kind"], "full");
        assert_eq!(body["report"], format!("{base}/runs/{auto}"));
    }
    // A full run covers prices.
    let (st, body) = sync("prices", false).await;
    assert_eq!(st, StatusCode::ACCEPTED);
    assert_eq!(
        (body["run_id"].as_str(), body["kind"].as_str()),
        (Some(auto.as_str()), Some("full"))
    );
    assert_eq!(h.sync_q.bodies().len(), 1, "no job was added");
    // Dry runs are queued every time.
    let (st, body) = sync("full", true).await;
    assert_eq!(st, StatusCode::ACCEPTED);
    assert_eq!(body["already_queued"], false);
    assert_ne!(body["run_id"], auto.as_str());
    assert_eq!(h.sync_q.bodies().len(), 2);

    // Running: still that run, with its state.
    set_run_state(&h, &conn_id, &auto, store::RunState::Running).await;
    let (_, body) = sync("full", false).await;
    assert_eq!(
        (body["run_id"].as_str(), body["state"].as_str()),
        (Some(auto.as_str()), Some("running"))
    );

    // Finished: a new run. A prices run does not cover a full one.
    finish_run(&h, &conn_id, &auto).await;
    let (_, body) = sync("prices", false).await;
    assert_eq!(body["already_queued"], false);
    let prices = body["run_id"].as_str().unwrap().to_string();
    let (_, body) = sync("prices", false).await;
    assert_eq!(
        (body["run_id"].as_str(), body["already_queued"].as_bool()),
        (Some(prices.as_str()), Some(true))
    );
    let (_, body) = sync("full", false).await;
    assert_eq!(body["already_queued"], false);
    assert_ne!(body["run_id"], prices.as_str());
    assert_eq!(h.sync_q.bodies().len(), 4);
}
