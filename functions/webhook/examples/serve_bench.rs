//! Serves the webhook router on loopback with in-memory adapters (as the local runner does)
//! for load tools, and writes a `wrk` script that posts a realistic KeyCRM body to it.
//!
//! ```text
//! cargo run --release -p webhook --example serve_bench -- 127.0.0.1:18080 /tmp/webhook.lua
//! wrk -t1 -c32 -d10s -s /tmp/webhook.lua http://127.0.0.1:18080
//! ```
//! On exit (Ctrl-C) it prints how many jobs were enqueued, to compare with wrk's count.

use mapping::Settings;
use queue::MemoryQueue;
use std::sync::Arc;
use store::{tokens, Connection, ConnectionStore, MemoryConnections, MemoryJournal, WebhookTokens};

const CONN: &str = "0f8e3c1d2b4a49c7a1e2d3c4b5a69788";

const BODY: &str = r#"{"event":"order.change_order_status","context":{"id":67526,"source_uuid":"A-67526","global_source_uuid":null,"status_on_source":null,"source_id":1,"client_id":88282,"grand_total":45.22,"total_discount":1.8,"margin_sum":40.22,"expenses_sum":1,"discount_amount":1,"discount_percent":2,"shipping_price":"2.00","taxes":"4.00","register_id":null,"fiscal_result":[],"fiscal_status":"done","shipping_type_id":null,"manager_id":108,"status_group_id":2,"status_id":3,"closed_from":null,"status_changed_at":"2026-05-28T09:34:10.000000Z","status_expired_at":null,"parent_id":null,"manager_comment":null,"client_comment":null,"payment_status":"part_paid","created_at":"2026-05-28T09:24:01.000000Z","updated_at":"2026-05-28T09:34:20.000000Z","closed_at":null,"deleted_at":null,"ordered_at":"2026-05-28T09:24:01.000000Z","source_updated_at":null,"payments_total":40.02,"is_expired":false,"has_reserves":false}}"#;

fn lua_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:18080".into());
    let script = args.next().unwrap_or_else(|| "/tmp/webhook.lua".into());

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
                order_statuses: mapping::settings::OrderStatusMap::from_legacy([(
                    "processing".to_string(),
                    3,
                )]),
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
        .await?;
    let queue = Arc::new(MemoryQueue::new("status"));
    let app = webhook::router(Arc::new(webhook::Receiver::new(
        conns,
        queue.clone(),
        Arc::new(MemoryJournal::default()),
        token_key,
    )));

    // The token is a throwaway made for this run; it only goes into the load script.
    let path = format!("/v1/webhooks/keycrm/{CONN}/{token}");
    std::fs::write(
        &script,
        format!(
            "wrk.method = \"POST\"\nwrk.path = {}\nwrk.body = {}\nwrk.headers[\"Content-Type\"] = \"application/json\"\n",
            lua_string(&path),
            lua_string(BODY)
        ),
    )?;
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("serving the webhook router on http://{addr} (wrk script: {script})");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    println!("jobs enqueued: {}", queue.bodies().len());
    Ok(())
}
