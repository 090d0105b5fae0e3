//! Trigger webhooks: payload shape, query string kept, retries, card events.

mod common;

use std::time::Duration;

use common::*;
use reqwest::Method;
use serde_json::json;

async fn create_order(c: &reqwest::Client, sim: &keycrm_sim::SimHandle) -> i64 {
    let r = send(
        c,
        sim,
        Method::POST,
        "/order",
        &json!({
            "source_id": 1,
            "source_uuid": "shop-77",
            "buyer": {"full_name": "Марія", "phone": "+380931234567"},
            "shipping_price": 2,
            "taxes": 4,
            "products": [{"name": "Товар", "price": 100, "quantity": 1}]
        }),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.body["id"].as_i64().expect("id")
}

#[tokio::test]
async fn put_status_fires_order_webhook() {
    let sim = start(config(20)).await;
    let c = client();
    let rx = receiver(0).await;
    sim.set_webhook_url(KEY, "order.change_order_status", Some(rx.url.clone()));
    let id = create_order(&c, &sim).await;

    // a PUT without a status change fires nothing
    let r = send(
        &c,
        &sim,
        Method::PUT,
        &format!("/order/{id}"),
        &json!({"manager_comment": "x"}),
    )
    .await;
    assert_eq!(r.status, 202);
    let r = send(
        &c,
        &sim,
        Method::PUT,
        &format!("/order/{id}"),
        &json!({"status_id": 3}),
    )
    .await;
    assert_eq!(r.status, 202);
    let hits = rx.wait_for(1, 5).await;
    let (q, body) = &hits[0];
    assert_eq!(q.as_deref(), Some("secret=s3cr3t"), "query string kept");
    assert_eq!(body["event"], "order.change_order_status");
    let ctx = &body["context"];
    assert_eq!(ctx["id"], id);
    assert_eq!(ctx["source_uuid"], "shop-77");
    assert_eq!(ctx["status_id"], 3);
    assert_eq!(ctx["status_group_id"], 2);
    assert_eq!(ctx["shipping_price"], "2.00");
    assert_eq!(ctx["taxes"], "4.00");
    assert_eq!(ctx["grand_total"], 102);
    assert!(ctx["client_id"].is_i64());
    assert!(
        ctx.get("products").is_none() && ctx.get("buyer").is_none(),
        "no relations"
    );
    assert!(ctx["status_changed_at"]
        .as_str()
        .is_some_and(|s| s.ends_with(".000000Z")));

    // programmatic change (manager in the UI) fires too; closing status sets closed_at
    sim.change_order_status(KEY, id, 19)
        .await
        .expect("status change");
    let hits = rx.wait_for(2, 5).await;
    let ctx = &hits[1].1["context"];
    assert_eq!(ctx["status_id"], 19);
    assert_eq!(ctx["status_group_id"], 6);
    assert!(ctx["closed_at"]
        .as_str()
        .is_some_and(|s| s.len() == 19 && s.contains(' ')));
    let stats = sim.stats();
    assert_eq!(stats.webhooks_delivered, 2);
    assert_eq!(stats.webhook_log.len(), 2);

    assert!(sim.change_order_status(KEY, 424242, 3).await.is_err());
    assert!(sim.change_order_status(KEY, id, 424242).await.is_err());
    assert!(sim.change_order_status("nope", id, 3).await.is_err());
}

#[tokio::test]
async fn webhook_is_retried_up_to_three_times() {
    let mut cfg = config(20);
    cfg.time_scale = 100.0; // retry delays become a few milliseconds
    let sim = start(cfg).await;
    let c = client();
    let rx = receiver(2).await; // 500, 500, then 200
    sim.set_webhook_url(KEY, "order.change_order_status", Some(rx.url.clone()));
    let id = create_order(&c, &sim).await;
    sim.change_order_status(KEY, id, 12).await.expect("status");
    let hits = rx.wait_for(3, 5).await;
    assert!(hits.iter().all(|(_, b)| b["context"]["id"] == id));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let s = sim.stats();
    assert_eq!(s.webhook_attempts, 3);
    assert_eq!(s.webhooks_delivered, 1);
    assert_eq!(s.webhooks_failed, 0);

    // always failing receiver: exactly 3 attempts, then gives up
    let bad = receiver(100).await;
    sim.set_webhook_url(KEY, "order.change_order_status", Some(bad.url.clone()));
    sim.change_order_status(KEY, id, 19).await.expect("status");
    bad.wait_for(3, 5).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(bad.hits.lock().expect("lock").len(), 3);
    assert_eq!(sim.stats().webhooks_failed, 1);

    // unreachable URL: connection errors are retried as well
    sim.set_webhook_url(
        KEY,
        "order.change_order_status",
        Some("http://127.0.0.1:9/hook".into()),
    );
    sim.change_order_status(KEY, id, 12).await.expect("status");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let s = sim.stats();
    assert_eq!(s.webhooks_failed, 2);
    assert!(s
        .webhook_log
        .iter()
        .any(|a| a.status.is_none() && a.error.is_some()));

    // removing the URL stops deliveries
    sim.set_webhook_url(KEY, "order.change_order_status", None);
    sim.change_order_status(KEY, id, 3).await.expect("status");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(sim.stats().webhook_attempts, s.webhook_attempts);
}

#[tokio::test]
async fn card_status_change_fires_lead_webhook() {
    let sim = start(config(20)).await;
    let c = client();
    let rx = receiver(0).await;
    sim.set_webhook_url(KEY, "lead.change_lead_status", Some(rx.url.clone()));
    let r = send(
        &c,
        &sim,
        Method::POST,
        "/pipelines/cards",
        &json!({"title": "Заявка", "source_id": 2, "contact": {"full_name": "Олег", "phone": "+380671112233"}}),
    )
    .await;
    assert_eq!(r.status, 201);
    let id = r.body["id"].as_i64().expect("id");
    let r = send(
        &c,
        &sim,
        Method::PUT,
        &format!("/pipelines/cards/{id}"),
        &json!({"status_id": 1002}),
    )
    .await;
    assert_eq!(r.status, 202);
    let hits = rx.wait_for(1, 5).await;
    let b = &hits[0].1;
    assert_eq!(b["event"], "lead.change_lead_status");
    let ctx = &b["context"];
    for k in [
        "id",
        "title",
        "pipeline_id",
        "status_id",
        "source_id",
        "contact_id",
        "manager_id",
        "status_changed_at",
        "created_at",
        "updated_at",
    ] {
        assert!(ctx.get(k).is_some(), "context lacks {k}");
    }
    assert_eq!(ctx["status_id"], 1002);
    assert!(ctx.get("contact").is_none(), "no relations in context");
    sim.change_card_status(KEY, id, 2003).await.expect("move");
    let hits = rx.wait_for(2, 5).await;
    assert_eq!(hits[1].1["context"]["pipeline_id"], 2);
    assert_eq!(hits[1].1["context"]["status_id"], 2003);
    assert!(
        sim.change_card_status(KEY, id, 1).await.is_err(),
        "order status is not a card status"
    );
}
