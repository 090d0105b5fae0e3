//! The stock URL through the router, with in-memory adapters: accepted signals land in the
//! pending set with one flush scheduled per window; the status-code table; tokens never in
//! the logs.

use super::*;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use jobs::stock::{FlushConfig, FlushJob};
use mapping::Settings;
use queue::{MemoryQueue, Message, Outgoing, Queue, QueueError};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use store::tokens::TokenKey;
use store::{
    tokens, Connection, ConnectionStore, MemoryConnections, MemoryJournal, MemoryStock,
    StatusJournal, StockStore, WebhookGenerations, WebhookKind, WebhookTokens,
};
use tower::ServiceExt;

const CONN: &str = "5a1c3e7d9b2f4a6c8e0d1f3a5b7c9e11";

struct Fixture {
    app: Router,
    conns: Arc<MemoryConnections>,
    stock: Arc<MemoryStock>,
    flushes: Arc<MemoryQueue>,
    status_queue: Arc<MemoryQueue>,
    journal: Arc<MemoryJournal>,
    key: TokenKey,
    stock_token: String,
    orders_token: String,
}

fn settings() -> Settings {
    Settings {
        sync_products: true,
        realtime_stock: true,
        ..Settings::default()
    }
}

fn app(
    conns: Arc<dyn ConnectionStore>,
    stock: Arc<dyn StockStore>,
    flushes: Arc<dyn Queue>,
    status_queue: Arc<dyn Queue>,
    journal: Arc<MemoryJournal>,
    key: TokenKey,
) -> Router {
    let intake = StockIntake::new(stock, flushes, journal.clone(), FlushConfig::default());
    router(Arc::new(
        Receiver::new(conns, status_queue, journal, key).with_stock(intake),
    ))
}

async fn fixture_with(settings: Settings, active: bool) -> Fixture {
    let key = TokenKey::generate();
    let stock_token = tokens::derive(&key, CONN, WebhookKind::Stock, 1);
    let orders_token = tokens::derive(&key, CONN, WebhookKind::Orders, 1);
    let conns = Arc::new(MemoryConnections::default());
    let now = chrono::Utc::now();
    conns
        .create(&Connection {
            id: CONN.into(),
            shop_id: "shop-s".into(),
            active,
            keycrm_base_url: "http://127.0.0.1:1/v1".into(),
            key_mask: "••••abcd".into(),
            key_fingerprint: "fp".into(),
            secret_name: "sec".into(),
            settings,
            webhook_tokens: WebhookTokens::default(),
            webhook_generations: WebhookGenerations {
                orders: 1,
                cards: 0,
                stock: 1,
            },
            account_epoch: 0,
            account_switched_at: None,
            version: 1,
            created_at: now,
            updated_at: now,
        })
        .await
        .unwrap();
    let stock = Arc::new(MemoryStock::new());
    let flushes = Arc::new(MemoryQueue::new("stock-flushes"));
    let status_queue = Arc::new(MemoryQueue::new("status"));
    let journal = Arc::new(MemoryJournal::default());
    Fixture {
        app: app(
            conns.clone(),
            stock.clone(),
            flushes.clone(),
            status_queue.clone(),
            journal.clone(),
            key.clone(),
        ),
        conns,
        stock,
        flushes,
        status_queue,
        journal,
        key,
        stock_token,
        orders_token,
    }
}

async fn fixture() -> Fixture {
    fixture_with(settings(), true).await
}

async fn send(app: &Router, uri: &str, ct: Option<&str>, body: Body) -> (StatusCode, Value) {
    let mut req = Request::builder().method("POST").uri(uri);
    if let Some(ct) = ct {
        req = req.header("content-type", ct);
    }
    let resp = app.clone().oneshot(req.body(body).unwrap()).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn url(token: &str) -> String {
    format!("/v1/webhooks/keycrm/{CONN}/{token}")
}

impl Fixture {
    async fn post(&self, body: impl Into<String>) -> (StatusCode, Value) {
        send(
            &self.app,
            &url(&self.stock_token),
            Some("application/json"),
            Body::from(body.into()),
        )
        .await
    }
    async fn pending(&self) -> Vec<i64> {
        self.stock.pending(CONN).await.unwrap()
    }
    fn flush_jobs(&self) -> Vec<FlushJob> {
        self.flushes
            .bodies()
            .iter()
            .map(|b| FlushJob::parse(b).unwrap())
            .collect()
    }
    async fn counter(&self, name: &str) -> u64 {
        let st = self.journal.status(CONN).await.unwrap();
        st.counters.get(name).copied().unwrap_or(0)
    }
}

fn body(items: &[(i64, i64, i64)]) -> String {
    Value::Array(
        items
            .iter()
            .map(|(o, s, r)| json!({"offer_id": o, "sku": format!("SKU-{o}"), "in_stock": s, "in_reserve": r}))
            .collect(),
    )
    .to_string()
}

#[tokio::test]
async fn signals_are_recorded_and_one_flush_is_scheduled_per_window() {
    let f = fixture().await;
    let (status, reply) = f.post(body(&[(1001, 5, 1), (1002, 0, 0)])).await;
    assert_eq!(
        (status, reply),
        (StatusCode::OK, json!({"status": "accepted", "offers": 2}))
    );
    // a burst in the same window: more offers, a duplicate, no second flush
    for _ in 0..3 {
        let (status, _) = f.post(body(&[(1002, 1, 0), (1003, 4, 0)])).await;
        assert_eq!(status, StatusCode::OK);
    }
    assert_eq!(f.pending().await, vec![1001, 1002, 1003]);
    let jobs = f.flush_jobs();
    assert_eq!(jobs.len(), 1, "one flush for the window");
    assert_eq!(jobs[0].connection_id, CONN);
    let w = f
        .stock
        .window(CONN)
        .await
        .unwrap()
        .expect("window recorded");
    assert_eq!(w.id, jobs[0].window);
    assert!(w.holder.is_none());
    // the flush message waits for the window
    assert!(f
        .flushes
        .receive(10, Duration::ZERO, Duration::from_secs(1))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(f.counter("stock_signals").await, 8);
    assert!(f.status_queue.bodies().is_empty(), "no status jobs");
}

#[tokio::test]
async fn ignored_when_off_or_inactive_with_200() {
    let cases = [
        (settings(), false, "inactive_connection"),
        (
            Settings {
                sync_products: false,
                ..settings()
            },
            true,
            "product_sync_off",
        ),
        (
            Settings {
                realtime_stock: false,
                ..settings()
            },
            true,
            "realtime_stock_off",
        ),
    ];
    for (s, active, reason) in cases {
        let f = fixture_with(s, active).await;
        let (status, reply) = f.post(body(&[(1001, 1, 0)])).await;
        assert_eq!(
            (status, reply),
            (
                StatusCode::OK,
                json!({"status": "ignored", "reason": reason})
            )
        );
        assert!(f.pending().await.is_empty());
        assert!(f.flush_jobs().is_empty());
        assert_eq!(f.counter("webhooks_ignored").await, 1);
    }
    let f = fixture().await;
    let (status, reply) = f.post("[]").await;
    assert_eq!(
        (status, reply["reason"].as_str()),
        (StatusCode::OK, Some("no_items"))
    );
}

#[tokio::test]
async fn bad_bodies_are_refused_and_change_nothing() {
    let f = fixture().await;
    let cases: Vec<(Option<&str>, String, StatusCode, &str)> = vec![
        (
            Some("text/plain"),
            body(&[(1, 1, 0)]),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "not JSON",
        ),
        (
            Some("application/json"),
            "[{".into(),
            StatusCode::BAD_REQUEST,
            "not valid JSON",
        ),
        (
            Some("application/json"),
            r#"{"event":"order.change_order_status","context":{}}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "JSON array",
        ),
        (
            Some("application/json"),
            r#"[{"offer_id":1},{"offer_id":"x"}]"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "[1].offer_id is invalid",
        ),
        (
            Some("application/json"),
            r#"[{"offer_id":7,"in_stock":-2}]"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "[0].in_stock is invalid: negative",
        ),
        (
            None,
            r#"[{"sku":"A"}]"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "[0].offer_id is missing",
        ),
    ];
    for (ct, b, want, msg) in cases {
        let (status, reply) = send(&f.app, &url(&f.stock_token), ct, Body::from(b.clone())).await;
        assert_eq!(status, want, "{b}");
        let e = reply["error"].as_str().unwrap_or_default();
        assert!(e.contains(msg), "{b}: {e}");
    }
    // 5 MB: refused on its declared size before the token is even looked at
    let big = format!(
        "[{}]",
        vec![r#"{"offer_id":1001,"sku":"x","in_stock":1,"in_reserve":0}"#; 90_000].join(",")
    );
    assert!(big.len() > 5_000_000);
    let (status, _) = send(
        &f.app,
        &url(&f.stock_token),
        Some("application/json"),
        Body::from(big.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let declared = Request::builder()
        .method("POST")
        .uri(url("wrong-token-0123456789abcdef"))
        .header("content-length", big.len().to_string())
        .body(Body::from(big.clone()))
        .unwrap();
    let resp = f.app.clone().oneshot(declared).await.unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // streamed (no Content-Length): cut off at the limit
    let stream = futures::stream::iter(
        big.into_bytes()
            .chunks(64 * 1024)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    );
    let (status, _) = send(
        &f.app,
        &url(&f.stock_token),
        None,
        Body::from_stream(stream),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    // a wrong token is the same 404 as everywhere
    let (other, _) = tokens::generate();
    let (status, reply) = send(&f.app, &url(&other), None, Body::from(body(&[(1, 1, 0)]))).await;
    assert_eq!(
        (status, reply),
        (StatusCode::NOT_FOUND, json!({"error": "not found"}))
    );
    assert!(f.pending().await.is_empty());
    assert!(f.flush_jobs().is_empty());
    assert_eq!(f.counter("stock_signals").await, 0);
}

#[tokio::test]
async fn stock_bodies_on_the_status_url_and_triggers_on_the_stock_url_are_refused() {
    let f = fixture().await;
    // KeyCRM's stock webhook pointed at the orders URL: not a trigger body
    let (status, _) = send(
        &f.app,
        &url(&f.orders_token),
        Some("application/json"),
        Body::from(body(&[(1, 1, 0)])),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    // a status trigger pointed at the stock URL: not a stock array
    let (status, reply) = f
        .post(r#"{"event":"order.change_order_status","context":{"id":1}}"#)
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(reply["error"].as_str().unwrap().contains("JSON array"));
    assert!(f.pending().await.is_empty() && f.status_queue.bodies().is_empty());
}

/// A queue that is down: the signal is recorded but cannot be scheduled.
struct DownQueue;

#[async_trait::async_trait]
impl Queue for DownQueue {
    fn name(&self) -> &str {
        "down"
    }
    async fn send(&self, _: Outgoing) -> Result<String, QueueError> {
        Err(QueueError::Unavailable("down".into()))
    }
    async fn receive(
        &self,
        _: usize,
        _: Duration,
        _: Duration,
    ) -> Result<Vec<Message>, QueueError> {
        Err(QueueError::Unavailable("down".into()))
    }
    async fn delete(&self, _: &str) -> Result<(), QueueError> {
        Err(QueueError::Unavailable("down".into()))
    }
    async fn change_visibility(&self, _: &str, _: Duration) -> Result<(), QueueError> {
        Err(QueueError::Unavailable("down".into()))
    }
    async fn approximate_len(&self) -> Result<usize, QueueError> {
        Err(QueueError::Unavailable("down".into()))
    }
}

#[tokio::test]
async fn an_unavailable_queue_answers_503_so_keycrm_retries() {
    let f = fixture().await;
    let down = app(
        f.conns.clone(),
        f.stock.clone(),
        Arc::new(DownQueue),
        f.status_queue.clone(),
        f.journal.clone(),
        f.key.clone(),
    );
    let (status, _) = send(
        &down,
        &url(&f.stock_token),
        Some("application/json"),
        Body::from(body(&[(1001, 1, 0)])),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        f.stock.window(CONN).await.unwrap().is_none(),
        "no window without its message"
    );
    // KeyCRM's retry, with the queue back: the same signal, now scheduled
    let (status, _) = f.post(body(&[(1001, 1, 0)])).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(f.pending().await, vec![1001]);
    assert_eq!(f.flush_jobs().len(), 1);
}

#[tokio::test]
async fn a_receiver_without_stock_hand_off_answers_503() {
    let f = fixture().await;
    let bare = router(Arc::new(Receiver::new(
        f.conns.clone(),
        f.status_queue.clone(),
        f.journal.clone(),
        f.key.clone(),
    )));
    let (status, _) = send(
        &bare,
        &url(&f.stock_token),
        None,
        Body::from(body(&[(1001, 1, 0)])),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn the_stock_token_never_reaches_the_logs() {
    let logs = runtime::log_capture::LogCapture::trace();
    let f = fixture().await;
    f.post(body(&[(1001, 1, 0)])).await; // accepted
    f.post("[{").await; // 400
    f.post(r#"[{"offer_id":-1}]"#).await; // 422
    let off = fixture_with(Settings::default(), true).await;
    off.post(body(&[(1, 1, 0)])).await; // ignored
    let text = logs.text();
    assert!(
        text.contains("stock webhook accepted") && text.contains("refused"),
        "{text}"
    );
    for secret in [&f.stock_token, &off.stock_token] {
        assert!(!text.contains(secret.as_str()), "a token leaked:\n{text}");
    }
}

/// The EMF samples of one request: `(metric, label, value)`.
async fn emitted(app: &Router, uri: &str, body: &str) -> Vec<(String, String, f64)> {
    use runtime::metrics::{Emitter, Function, Sink};
    let (sink, captured) = Sink::memory();
    let emitter = Emitter::new(Function::Webhook).with_sink(sink);
    emitter
        .run(send(
            app,
            uri,
            Some("application/json"),
            Body::from(body.to_string()),
        ))
        .await;
    let mut out = Vec::new();
    for d in captured.documents() {
        assert_eq!(d["function"], "webhook");
        let label = d
            .get("reason")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        for m in d["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap()
        {
            let name = m["Name"].as_str().unwrap().to_string();
            let v = d[&name].as_f64().unwrap();
            out.push((name, label.clone(), v));
        }
    }
    out
}

#[tokio::test]
async fn stock_deliveries_are_counted_as_accepted_ignored_and_refused_by_reason() {
    let f = fixture().await;
    let uri = format!("/v1/webhooks/keycrm/{CONN}/{}", f.stock_token);
    let body = r#"[{"offer_id": 1, "sku": "a", "in_stock": 1, "in_reserve": 0},
                   {"offer_id": 2, "sku": "b", "in_stock": 0, "in_reserve": 0},
                   {"offer_id": 1, "sku": "a", "in_stock": 2, "in_reserve": 0}]"#;
    let got = emitted(&f.app, &uri, body).await;
    assert!(
        got.contains(&("StockWebhooksAccepted".into(), "".into(), 1.0)),
        "{got:?}"
    );
    assert!(
        got.contains(&("StockSignals".into(), "".into(), 2.0)),
        "{got:?}"
    );
    assert!(!got.iter().any(|g| g.0 == "WebhooksAccepted"), "{got:?}");

    let got = emitted(&f.app, &uri, r#"[{"offer_id": -1}]"#).await;
    assert!(
        got.contains(&("WebhooksRefused".into(), "invalid_body".into(), 1.0)),
        "{got:?}"
    );
    assert!(!got.iter().any(|g| g.0 == "StockSignals"), "{got:?}");

    let off = fixture_with(
        Settings {
            realtime_stock: false,
            ..settings()
        },
        true,
    )
    .await;
    let uri = format!("/v1/webhooks/keycrm/{CONN}/{}", off.stock_token);
    let got = emitted(&off.app, &uri, body).await;
    assert!(
        got.contains(&("WebhooksIgnored".into(), "realtime_stock_off".into(), 1.0)),
        "{got:?}"
    );
    assert!(
        !got.iter().any(|g| g.0 == "StockWebhooksAccepted"),
        "{got:?}"
    );
}
