//! In-process handler time of the webhook receiver: a request goes through the real router
//! (routing, token check, JSON parsing, mapping check, job serialization) with in-memory
//! adapters, so no network and no AWS round trips are measured. Prints p50/p90/p99/p99.9
//! per scenario and how far p99 is under the 2 ms target.
//!
//! Run: `cargo bench -p webhook --bench webhook` (optimised build).

use axum::body::Body;
use axum::http::Request;
use mapping::settings::OrderStatusMap;
use mapping::Settings;
use queue::MemoryQueue;
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::{tokens, Connection, ConnectionStore, MemoryConnections, MemoryJournal, WebhookTokens};
use tower::ServiceExt;

const CONN: &str = "0f8e3c1d2b4a49c7a1e2d3c4b5a69788";
const WARMUP: usize = 2_000;
const CALLS: usize = 50_000;

/// A realistic `order.change_order_status` body (~1.1 KiB, the documented key set).
fn order_body(id: i64, status: i64) -> String {
    format!(
        r#"{{"event":"order.change_order_status","context":{{"id":{id},"source_uuid":"A-{id}","global_source_uuid":null,"status_on_source":null,"source_id":1,"client_id":88282,"grand_total":45.22,"total_discount":1.8,"margin_sum":40.22,"expenses_sum":1,"discount_amount":1,"discount_percent":2,"shipping_price":"2.00","taxes":"4.00","register_id":null,"fiscal_result":[],"fiscal_status":"done","shipping_type_id":null,"manager_id":108,"status_group_id":2,"status_id":{status},"closed_from":null,"status_changed_at":"2026-05-28T09:34:10.000000Z","status_expired_at":null,"parent_id":null,"manager_comment":null,"client_comment":"Будь ласка, зателефонуйте перед доставкою","payment_status":"part_paid","created_at":"2026-05-28T09:24:01.000000Z","updated_at":"2026-05-28T09:34:20.000000Z","closed_at":null,"deleted_at":null,"ordered_at":"2026-05-28T09:24:01.000000Z","source_updated_at":null,"payments_total":40.02,"products_total":45.22,"is_gift":false,"promocode":null,"gift_message":null,"gift_wrap":false,"last_synced_at":null,"is_expired":false,"has_reserves":false}}}}"#
    )
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

async fn run(app: &axum::Router, label: &str, uri: &str, body: &str, want: u16) {
    let call = || async {
        let req = Request::builder()
            .method("POST")
            .uri(uri)
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .expect("request");
        let resp = app.clone().oneshot(req).await.expect("infallible");
        let status = resp.status().as_u16();
        let _ = axum::body::to_bytes(resp.into_body(), 1 << 16).await;
        status
    };
    for _ in 0..WARMUP {
        assert_eq!(call().await, want, "{label}");
    }
    let mut times = Vec::with_capacity(CALLS);
    let started = Instant::now();
    for _ in 0..CALLS {
        let t = Instant::now();
        let status = call().await;
        times.push(t.elapsed());
        assert_eq!(status, want, "{label}");
    }
    let wall = started.elapsed();
    times.sort();
    let p99 = percentile(&times, 0.99);
    println!(
        "{label:<34} n={CALLS:>6}  p50={:>7.1}µs  p90={:>7.1}µs  p99={:>7.1}µs  p99.9={:>7.1}µs  max={:>8.1}µs  \
         calls/s (1 thread)={:>8.0}  p99/target(2ms)={:.3}",
        us(percentile(&times, 0.50)),
        us(percentile(&times, 0.90)),
        us(p99),
        us(percentile(&times, 0.999)),
        us(*times.last().unwrap_or(&Duration::ZERO)),
        CALLS as f64 / wall.as_secs_f64(),
        p99.as_secs_f64() / 0.002,
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        // Derived tokens, as in production (the receiver recomputes an HMAC per kind).
        let token_key = store::TokenKey::generate();
        let token = tokens::derive(&token_key, CONN, store::WebhookKind::Orders, 1);
        let conns = Arc::new(MemoryConnections::default());
        let now = chrono::Utc::now();
        conns
            .create(&Connection {
                id: CONN.into(),
                shop_id: "shop-1".into(),
                active: true,
                keycrm_base_url: "https://openapi.keycrm.app/v1".into(),
                key_mask: "••••abcd".into(),
                key_fingerprint: "fp".into(),
                secret_name: "sec".into(),
                settings: Settings {
                    source_id: Some(1),
                    order_statuses: OrderStatusMap::from_legacy(
                        (1..=20).map(|i| (format!("status-{i}"), i)),
                    ),
                    ..Settings::default()
                },
                webhook_tokens: WebhookTokens::default(),
                webhook_generations: store::WebhookGenerations {
                    orders: 1,
                    cards: 0,
                    stock: 0,
                },
                account_epoch: 0,
                account_switched_at: None,
                version: 1,
                created_at: now,
                updated_at: now,
            })
            .await
            .expect("connection");
        let queue = Arc::new(MemoryQueue::new("status"));
        let journal = Arc::new(MemoryJournal::default());
        let app = webhook::router(Arc::new(webhook::Receiver::new(
            conns,
            queue.clone(),
            journal,
            token_key,
        )));
        let url = format!("/v1/webhooks/keycrm/{CONN}/{token}");
        let (wrong, _) = tokens::generate();
        let body = order_body(67526, 3);
        println!(
            "webhook handler time, in process (in-memory adapters), body {} bytes",
            body.len()
        );
        run(&app, "accepted (enqueued)", &url, &body, 200).await;
        run(
            &app,
            "ignored (unmapped status)",
            &url,
            &order_body(67526, 99),
            200,
        )
        .await;
        run(
            &app,
            "refused (wrong token, 404)",
            &format!("/v1/webhooks/keycrm/{CONN}/{wrong}"),
            &body,
            404,
        )
        .await;
        run(
            &app,
            "refused (missing fields, 422)",
            &url,
            r#"{"event":"order.change_order_status","context":{"id":1}}"#,
            422,
        )
        .await;
        println!("jobs enqueued: {}", queue.bodies().len());
    });
}
