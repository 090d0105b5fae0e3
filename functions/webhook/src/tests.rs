use super::*;
use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use jobs::StatusJob;
use mapping::{OrderSyncType, Settings};
use queue::{MemoryQueue, Message, Outgoing, Queue, QueueError};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use store::{
    tokens, Connection, ConnectionStore, MemoryConnections, MemoryJournal, StatusJournal,
    StoreError, Target, TokenKey, WebhookGenerations, WebhookKind, WebhookTokens,
};
use tower::ServiceExt;

const CONN: &str = "0f8e3c1d2b4a49c7a1e2d3c4b5a69788";

/// The webhook token key of these tests (in AWS: its own Secrets Manager secret).
fn key() -> TokenKey {
    TokenKey::new(b"webhook-unit-test-key-0123456789abcdef".to_vec()).unwrap()
}

struct Fixture {
    app: Router,
    conns: Arc<MemoryConnections>,
    queue: Arc<MemoryQueue>,
    journal: Arc<MemoryJournal>,
    orders_token: String,
    cards_token: String,
}

fn settings() -> Settings {
    Settings {
        // Pipelines: the connection has both URLs.
        order_sync: OrderSyncType::Pipelines,
        source_id: Some(7),
        order_statuses: mapping::settings::OrderStatusMap::from_legacy([(
            "processing".to_string(),
            3,
        )]),
        card_statuses: mapping::settings::CardStatusMap::from_legacy([(
            "processing".to_string(),
            1,
            1002,
        )]),
        ..Settings::default()
    }
}

async fn fixture_with(
    conns: Arc<dyn ConnectionStore>,
    queue: Arc<dyn Queue>,
) -> (Router, Arc<MemoryJournal>) {
    let journal = Arc::new(MemoryJournal::default());
    let rx = Receiver::new(conns, queue, journal.clone(), key());
    (router(Arc::new(rx)), journal)
}

async fn fixture(active: bool) -> Fixture {
    let orders_token = tokens::derive(&key(), CONN, WebhookKind::Orders, 1);
    let cards_token = tokens::derive(&key(), CONN, WebhookKind::Cards, 1);
    let conns = Arc::new(MemoryConnections::default());
    let now = chrono::Utc::now();
    conns
        .create(&Connection {
            id: CONN.into(),
            shop_id: "shop-1".into(),
            active,
            keycrm_base_url: "http://127.0.0.1:1/v1".into(),
            key_mask: "••••abcd".into(),
            key_fingerprint: "fp".into(),
            secret_name: "sec".into(),
            settings: settings(),
            webhook_tokens: WebhookTokens::default(),
            webhook_generations: WebhookGenerations {
                orders: 1,
                cards: 1,
                stock: 0,
            },
            account_epoch: 0,
            account_switched_at: None,
            version: 1,
            created_at: now,
            updated_at: now,
        })
        .await
        .unwrap();
    let queue = Arc::new(MemoryQueue::new("status"));
    let (app, journal) = fixture_with(conns.clone(), queue.clone()).await;
    Fixture {
        app,
        conns,
        queue,
        journal,
        orders_token,
        cards_token,
    }
}

fn order_body(id: i64, status: i64) -> String {
    json!({"event": "order.change_order_status", "context": {
        "id": id, "source_id": 7, "source_uuid": "A-1", "status_id": status, "status_group_id": 2,
        "grand_total": 45.22, "shipping_price": "2.00", "taxes": "4.00",
        "status_changed_at": "2026-03-19T10:00:00.000000Z", "closed_at": null,
        "created_at": "2026-03-19T09:00:00.000000Z", "updated_at": "2026-03-19T10:00:00.000000Z"}})
    .to_string()
}

fn card_body(id: i64, status: i64) -> String {
    json!({"event": "lead.change_lead_status", "context": {
        "id": id, "title": "Заявка", "pipeline_id": 1, "status_id": status, "source_id": 7,
        "contact_id": 5, "status_changed_at": "2026-03-19T10:00:00.000000Z",
        "updated_at": "2026-03-19T10:00:00.000000Z"}})
    .to_string()
}

async fn send(
    app: &Router,
    method: &str,
    uri: &str,
    ct: Option<&str>,
    body: impl Into<Body>,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(ct) = ct {
        req = req.header("content-type", ct);
    }
    let resp = app
        .clone()
        .oneshot(req.body(body.into()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, v)
}

fn url(conn: &str, token: &str) -> String {
    format!("/v1/webhooks/keycrm/{conn}/{token}")
}

impl Fixture {
    async fn post(&self, token: &str, body: impl Into<Body>) -> (StatusCode, Value) {
        send(
            &self.app,
            "POST",
            &url(CONN, token),
            Some("application/json"),
            body,
        )
        .await
    }
    fn jobs(&self) -> Vec<StatusJob> {
        self.queue
            .bodies()
            .iter()
            .map(|b| StatusJob::parse(b).unwrap())
            .collect()
    }
    async fn ignored_count(&self) -> u64 {
        let st = self.journal.status(CONN).await.unwrap();
        st.counters.get("webhooks_ignored").copied().unwrap_or(0)
    }
}

#[tokio::test]
async fn an_order_status_change_is_enqueued_and_acknowledged() {
    let f = fixture(true).await;
    let (status, body) = f.post(&f.orders_token, order_body(67526, 3)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"status": "accepted"}));
    let jobs = f.jobs();
    assert_eq!(jobs.len(), 1);
    let j = &jobs[0];
    assert_eq!(
        (j.target, j.keycrm_id, j.status_id),
        (Target::Order, 67526, 3)
    );
    assert_eq!(j.connection_id, CONN);
    assert_eq!(j.source_uuid.as_deref(), Some("A-1"));
    assert_eq!(j.source_id, Some(7));
    assert_eq!(
        keycrm::time::format_live(j.changed_at),
        "2026-03-19T10:00:00.000000Z"
    );
    let raw = &f.queue.bodies()[0];
    assert!(
        !raw.contains(&f.orders_token),
        "the token is not in the job"
    );
}

#[tokio::test]
async fn a_card_status_change_on_the_cards_url_is_enqueued_as_a_card() {
    let f = fixture(true).await;
    let (status, body) = f.post(&f.cards_token, card_body(13898, 1002)).await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"status": "accepted"}))
    );
    let j = &f.jobs()[0];
    assert_eq!(
        (j.target, j.keycrm_id, j.pipeline_id),
        (Target::Card, 13898, Some(1))
    );
}

#[tokio::test]
async fn wrong_tokens_unknown_connections_and_odd_urls_get_the_same_404() {
    let f = fixture(true).await;
    let (other, _) = tokens::generate();
    let expected = (StatusCode::NOT_FOUND, json!({"error": "not found"}));
    let cases = [
        url(CONN, &other),
        url("ffffffffffffffffffffffffffffffff", &f.orders_token),
        url(CONN, "short"),
        url(CONN, &format!("{}%2F..", f.orders_token)),
        url("bad%20id", &f.orders_token),
        url(CONN, &"x".repeat(400)),
        format!("/v1/webhooks/keycrm/{CONN}"),
        format!("/v1/webhooks/keycrm/{CONN}/{}/extra", f.orders_token),
        "/v1/webhooks/keycrm".to_string(),
    ];
    for u in cases {
        let got = send(
            &f.app,
            "POST",
            &u,
            Some("application/json"),
            order_body(1, 3),
        )
        .await;
        assert_eq!(got, expected, "{u}");
    }
    // Authentication comes first: a bad body with a wrong token is still just 404.
    let got = send(
        &f.app,
        "POST",
        &url(CONN, &other),
        Some("text/plain"),
        "garbage",
    )
    .await;
    assert_eq!(got, expected);
    assert!(f.jobs().is_empty());
}

#[tokio::test]
async fn a_rotated_token_fails_at_once() {
    let f = fixture(true).await;
    let old = f.orders_token.clone();
    assert_eq!(f.post(&old, order_body(1, 3)).await.0, StatusCode::OK);
    let mut c = f.conns.get(CONN).await.unwrap().unwrap();
    let new = tokens::derive(
        &key(),
        CONN,
        WebhookKind::Orders,
        c.rotate_webhook(WebhookKind::Orders),
    );
    c.version += 1;
    f.conns.update(&c).await.unwrap();
    assert_eq!(
        f.post(&old, order_body(1, 3)).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(f.post(&new, order_body(1, 3)).await.0, StatusCode::OK);
    assert_eq!(f.jobs().len(), 2);
}

#[tokio::test]
async fn harmless_events_are_answered_200_and_ignored() {
    let f = fixture(true).await;
    let cases = [
        (
            f.orders_token.clone(),
            r#"{"event":"order.change_payment_status","context":{"id":1}}"#.to_string(),
            "unhandled_event",
        ),
        (
            f.orders_token.clone(),
            card_body(5, 1002),
            "event_on_wrong_url",
        ),
        (
            f.cards_token.clone(),
            order_body(5, 3),
            "event_on_wrong_url",
        ),
        (f.orders_token.clone(), order_body(5, 99), "unmapped_status"),
        (f.cards_token.clone(), card_body(5, 2001), "unmapped_status"),
    ];
    for (token, body, reason) in cases {
        let got = f.post(&token, body.clone()).await;
        assert_eq!(
            got,
            (
                StatusCode::OK,
                json!({"status": "ignored", "reason": reason})
            ),
            "{body}"
        );
    }
    assert!(f.jobs().is_empty());
    assert_eq!(f.ignored_count().await, 5);

    let off = fixture(false).await;
    let got = off.post(&off.orders_token, order_body(5, 3)).await;
    assert_eq!(
        got,
        (
            StatusCode::OK,
            json!({"status": "ignored", "reason": "inactive_connection"})
        )
    );
    assert!(off.jobs().is_empty());
}

#[tokio::test]
async fn bad_bodies_get_specific_4xx_and_change_nothing() {
    let f = fixture(true).await;
    let u = url(CONN, &f.orders_token);
    let big = format!("{{\"event\":\"{}\"}}", "x".repeat(MAX_BODY));
    let cases: Vec<(Option<&str>, String, StatusCode, &str)> = vec![
        (Some("application/json"), big.clone(), StatusCode::PAYLOAD_TOO_LARGE, "larger than"),
        (Some("application/x-www-form-urlencoded"), "event=x".into(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "not JSON"),
        (Some("text/plain"), order_body(1, 3), StatusCode::UNSUPPORTED_MEDIA_TYPE, "content type is not JSON"),
        (Some("application/json"), "{not json".into(), StatusCode::BAD_REQUEST, "not valid JSON"),
        (Some("application/json"), String::new(), StatusCode::BAD_REQUEST, "not valid JSON"),
        (Some("application/json"), "[]".into(), StatusCode::UNPROCESSABLE_ENTITY, "not a KeyCRM webhook"),
        (Some("application/json"), r#"{"context":{}}"#.into(), StatusCode::UNPROCESSABLE_ENTITY, "event is missing"),
        (Some("application/json"), r#"{"event":"order.change_order_status","context":{"status_id":3,"status_changed_at":"2026-03-19T10:00:00Z"}}"#.into(), StatusCode::UNPROCESSABLE_ENTITY, "context.id is missing"),
        (Some("application/json"), r#"{"event":"order.change_order_status","context":{"id":4,"status_changed_at":"2026-03-19T10:00:00Z"}}"#.into(), StatusCode::UNPROCESSABLE_ENTITY, "context.status_id is missing"),
        (None, r#"{"event":"order.change_order_status","context":{"id":4,"status_id":"x","status_changed_at":"2026-03-19T10:00:00Z"}}"#.into(), StatusCode::UNPROCESSABLE_ENTITY, "context.status_id is invalid"),
    ];
    for (ct, body, want, msg) in cases {
        let (status, v) = send(&f.app, "POST", &u, ct, body.clone()).await;
        assert_eq!(status, want, "{}", &body[..body.len().min(80)]);
        let err = v["error"].as_str().unwrap_or_default();
        assert!(err.contains(msg), "{err} should mention {msg}");
    }
    // Over the limit without a Content-Length (streamed).
    let stream = futures_stream(big);
    let (status, _) = send(&f.app, "POST", &u, Some("application/json"), stream).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(f.jobs().is_empty());
    assert_eq!(f.ignored_count().await, 0);
    // A missing content type is taken as JSON.
    let (status, _) = send(&f.app, "POST", &u, None, order_body(1, 3)).await;
    assert_eq!(status, StatusCode::OK);
}

fn futures_stream(s: String) -> Body {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = s
        .into_bytes()
        .chunks(4096)
        .map(|c| Ok(c.to_vec()))
        .collect();
    Body::from_stream(futures::stream::iter(chunks))
}

#[tokio::test]
async fn only_post_is_allowed() {
    let f = fixture(true).await;
    let (status, v) = send(
        &f.app,
        "GET",
        &url(CONN, &f.orders_token),
        None,
        Body::empty(),
    )
    .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(v["error"].as_str().unwrap().contains("POST"));
    assert!(f.jobs().is_empty());
}

struct DownQueue;

#[async_trait]
impl Queue for DownQueue {
    fn name(&self) -> &str {
        "down"
    }
    async fn send(&self, _: Outgoing) -> Result<String, QueueError> {
        Err(QueueError::Unavailable("SQS is down".into()))
    }
    async fn receive(
        &self,
        _: usize,
        _: Duration,
        _: Duration,
    ) -> Result<Vec<Message>, QueueError> {
        Ok(Vec::new())
    }
    async fn delete(&self, _: &str) -> Result<(), QueueError> {
        Ok(())
    }
    async fn change_visibility(&self, _: &str, _: Duration) -> Result<(), QueueError> {
        Ok(())
    }
    async fn approximate_len(&self) -> Result<usize, QueueError> {
        Ok(0)
    }
}

struct DownStore;

#[async_trait]
impl ConnectionStore for DownStore {
    async fn create(&self, _: &Connection) -> Result<(), StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn get(&self, _: &str) -> Result<Option<Connection>, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn get_by_shop(&self, _: &str) -> Result<Option<Connection>, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn update(&self, _: &Connection) -> Result<(), StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn mark_deleting(&self, _: &Connection) -> Result<(), StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn get_deleting(
        &self,
        _: &str,
    ) -> Result<Option<(Connection, chrono::DateTime<chrono::Utc>)>, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn list_deleting(
        &self,
        _: Option<String>,
        _: usize,
    ) -> Result<(Vec<String>, Option<String>), StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn purge(&self, _: &str, _: usize) -> Result<bool, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn remove(&self, _: &str) -> Result<(), StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn list(
        &self,
        _: Option<String>,
        _: usize,
    ) -> Result<(Vec<Connection>, Option<String>), StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
}

#[tokio::test]
async fn when_it_cannot_hand_off_it_answers_503_so_keycrm_retries() {
    let f = fixture(true).await;
    let (app, _) = fixture_with(f.conns.clone(), Arc::new(DownQueue)).await;
    let (status, _) = send(
        &app,
        "POST",
        &url(CONN, &f.orders_token),
        Some("application/json"),
        order_body(1, 3),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let (app, _) = fixture_with(Arc::new(DownStore), f.queue.clone()).await;
    let (status, _) = send(
        &app,
        "POST",
        &url(CONN, &f.orders_token),
        Some("application/json"),
        order_body(1, 3),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(f.jobs().is_empty());
}

#[tokio::test]
async fn the_token_never_reaches_the_logs() {
    let logs = runtime::log_capture::LogCapture::trace();

    let f = fixture(true).await;
    let (other, _) = tokens::generate();
    f.post(&f.orders_token, order_body(1, 3)).await; // accepted
    f.post(&f.cards_token, order_body(1, 3)).await; // ignored
    f.post(&f.orders_token, "{oops").await; // 400
    f.post(&other, order_body(1, 3)).await; // wrong token
                                            // A URL with token and id swapped: the "connection id" is a token.
    send(
        &f.app,
        "POST",
        &url(&f.orders_token, CONN),
        Some("application/json"),
        order_body(1, 3),
    )
    .await;
    let (app, _) = fixture_with(f.conns.clone(), Arc::new(DownQueue)).await;
    send(
        &app,
        "POST",
        &url(CONN, &f.orders_token),
        Some("application/json"),
        order_body(1, 3),
    )
    .await;

    let text = logs.text();
    assert!(
        text.contains(ROUTE),
        "logs name the route template:\n{text}"
    );
    assert!(
        text.contains("webhook accepted") && text.contains("wrong token"),
        "{text}"
    );
    for secret in [&f.orders_token, &f.cards_token, &other] {
        assert!(
            !text.contains(secret.as_str()),
            "a token leaked into the logs:\n{text}"
        );
    }
}

#[tokio::test]
async fn bad_bodies_are_refused_without_repeating_them_in_the_answer_or_the_log() {
    const V: &str = "kc-leaked-9f8e7d6c5b4a3f2e1d0c";
    let logs = runtime::log_capture::LogCapture::trace();

    let f = fixture(true).await;
    let target = url(CONN, &f.orders_token);
    let cases: Vec<(Option<String>, String, StatusCode)> = vec![
        (
            Some(format!("text/{V}")),
            order_body(1, 3),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            Some("application/json".into()),
            format!(r#"{{"event":"order.change_order_status","context":"{V}"}}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Some("application/json".into()),
            format!(
                r#"{{"event":"order.change_order_status","context":{{"id":"{V}","status_id":3,"status_changed_at":"2026-03-19T10:00:00Z"}}}}"#
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Some("application/json".into()),
            format!(r#"["{V}"]"#),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Some("application/json".into()),
            format!(r#"{{"event":"{V}"#),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (ct, body, want) in cases {
        let (status, reply) = send(&f.app, "POST", &target, ct.as_deref(), body.clone()).await;
        assert_eq!(status, want, "{body}");
        let text = reply.to_string();
        assert!(!text.contains(V), "the answer repeats the body: {text}");
        assert!(
            reply["error"].as_str().is_some_and(|m| !m.is_empty()),
            "{text}"
        );
    }
    let text = logs.text();
    assert!(text.contains("webhook refused: bad body"), "{text}");
    assert!(
        !text.contains(V),
        "a request value reached the log:\n{text}"
    );
    assert!(f.jobs().is_empty());
}

// The Lambda edge from JSON event fixtures, on this file's in-memory stores.
#[path = "../tests/lambda/fixtures.rs"]
mod lambda_fixtures;
