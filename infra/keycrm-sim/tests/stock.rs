//! Stock per warehouse: `PUT /offers/stocks`, the stock webhook (summed over its warehouses,
//! retried), and order reservations (creation), releases (cancellation) and write-offs.

mod common;

use std::time::Duration;

use common::*;
use keycrm_sim::{CatalogMutation, StockWebhook, STOCK_EVENT};
use reqwest::Method;
use serde_json::{json, Value};

fn hook(url: &str, warehouses: &[i64]) -> StockWebhook {
    StockWebhook {
        name: "shop".into(),
        url: url.to_string(),
        warehouses: warehouses.to_vec(),
    }
}

/// An active offer with free stock in the main warehouse only.
fn plain_offer(sim: &keycrm_sim::SimHandle) -> keycrm_sim::OfferInfo {
    sim.catalog(KEY)
        .offers
        .into_iter()
        .find(|o| {
            !o.is_archived
                && o.stocks.len() == 1
                && o.quantity - o.in_reserve >= 2
                && o.in_reserve == 0
        })
        .expect("an offer with free stock")
}

async fn stock_row(c: &reqwest::Client, sim: &keycrm_sim::SimHandle, id: i64) -> Value {
    let r = get(
        c,
        sim,
        &format!("/offers/stocks?filter%5Boffers_id%5D={id}&filter%5Bdetails%5D=true"),
    )
    .await;
    assert_eq!(r.status, 200);
    r.body["data"][0].clone()
}

#[tokio::test]
async fn put_offers_stocks_sets_absolute_balances_per_warehouse_and_fires_the_webhook() {
    let sim = start(config(30)).await;
    let c = client();
    let rx = receiver(0).await;
    sim.set_stock_webhooks(KEY, vec![hook(&rx.url, &[])]);
    let o = plain_offer(&sim);

    let r = send(
        &c,
        &sim,
        Method::PUT,
        "/offers/stocks",
        &json!({"warehouse_id": 2, "stocks": [{"id": o.id, "quantity": 7}]}),
    )
    .await;
    assert_eq!((r.status, &r.body), (202, &json!({"status": true})));
    let row = stock_row(&c, &sim, o.id).await;
    assert_eq!(row["quantity"], o.quantity + 7, "summed over warehouses");
    let wh: Vec<(i64, i64)> = row["warehouse"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| (w["id"].as_i64().unwrap(), w["quantity"].as_i64().unwrap()))
        .collect();
    assert_eq!(wh, vec![(1, o.quantity), (2, 7)]);

    let hits = rx.wait_for(1, 5).await;
    assert_eq!(
        hits[0].0.as_deref(),
        Some("secret=s3cr3t"),
        "query string kept"
    );
    assert_eq!(
        hits[0].1,
        json!([{"offer_id": o.id, "sku": o.sku, "in_stock": o.quantity + 7, "in_reserve": 0}])
    );

    // by SKU, absolute (not a delta); the same value again changes nothing and sends nothing
    let body = json!({"warehouse_id": 2, "stocks": [{"sku": o.sku, "quantity": 3}]});
    assert_eq!(
        send(&c, &sim, Method::PUT, "/offers/stocks", &body)
            .await
            .status,
        202
    );
    assert_eq!(
        send(&c, &sim, Method::PUT, "/offers/stocks", &body)
            .await
            .status,
        202
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let hits = rx.hits.lock().unwrap().clone();
    assert_eq!(hits.len(), 2, "{hits:?}");
    assert_eq!(hits[1].1[0]["in_stock"], o.quantity + 3);
    let log = sim.stats().webhook_log;
    assert!(log
        .iter()
        .all(|a| a.event == STOCK_EVENT && a.entity_id == o.id));
}

#[tokio::test]
async fn put_offers_stocks_validates_like_laravel() {
    let sim = start(config(10)).await;
    let c = client();
    let o = plain_offer(&sim);
    let cases = [
        (json!({}), vec!["warehouse_id", "stocks"]),
        (
            json!({"warehouse_id": 99, "stocks": [{"id": o.id, "quantity": 1}]}),
            vec!["warehouse_id"],
        ),
        (
            json!({"warehouse_id": 1, "stocks": [{"quantity": 1}, {"id": 999999, "quantity": 1}, {"sku": "nope", "quantity": 1}, {"id": o.id}, {"id": o.id, "quantity": -1}, {"id": o.id, "quantity": 1.5}, "x"]}),
            vec![
                "stocks.0.id",
                "stocks.1.id",
                "stocks.2.sku",
                "stocks.3.quantity",
                "stocks.4.quantity",
                "stocks.5.quantity",
                "stocks.6",
            ],
        ),
    ];
    for (body, fields) in cases {
        let r = send(&c, &sim, Method::PUT, "/offers/stocks", &body).await;
        assert_eq!(r.status, 422, "{body}: {}", r.body);
        let errors = r.body["errors"].as_object().expect("errors");
        let mut got: Vec<&str> = errors.keys().map(String::as_str).collect();
        got.sort_unstable();
        let mut want = fields.clone();
        want.sort_unstable();
        assert_eq!(got, want, "{}", r.body);
    }
    let too_many: Vec<Value> = (0..10_001)
        .map(|_| json!({"id": o.id, "quantity": 1}))
        .collect();
    let r = send(
        &c,
        &sim,
        Method::PUT,
        "/offers/stocks",
        &json!({"warehouse_id": 1, "stocks": too_many}),
    )
    .await;
    assert_eq!(r.status, 422);
    assert!(r.body["errors"]["stocks"][0]
        .as_str()
        .unwrap()
        .contains("10000"));
    // nothing changed
    assert_eq!(
        stock_row(&c, &sim, o.id).await["quantity"],
        o.quantity,
        "a refused body changes nothing"
    );
}

#[tokio::test]
async fn webhook_reports_only_its_warehouses_and_is_retried() {
    let sim = start(config(30)).await;
    let c = client();
    let main = receiver(2).await; // answers 500 twice, then 200
    let kyiv = receiver(0).await;
    sim.set_stock_webhooks(KEY, vec![hook(&main.url, &[1]), hook(&kyiv.url, &[2, 3])]);
    let o = plain_offer(&sim);

    // a change in warehouse 2 is not a change for the warehouse-1 webhook
    let r = send(
        &c,
        &sim,
        Method::PUT,
        "/offers/stocks",
        &json!({"warehouse_id": 2, "stocks": [{"id": o.id, "quantity": 4}]}),
    )
    .await;
    assert_eq!(r.status, 202);
    let hits = kyiv.wait_for(1, 5).await;
    assert_eq!(hits[0].1[0]["in_stock"], 4);
    // a manual edit in the main warehouse reaches the warehouse-1 webhook after two failures
    sim.catalog_mutate(
        KEY,
        CatalogMutation::SetStock {
            offer_id: o.id,
            quantity: 0,
        },
    );
    let hits = main.wait_for(3, 10).await;
    assert!(hits
        .iter()
        .all(|h| h.1 == json!([{"offer_id": o.id, "sku": o.sku, "in_stock": 0, "in_reserve": 0}])));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        kyiv.hits.lock().unwrap().len(),
        1,
        "warehouse 1 is not theirs"
    );
    let stats = sim.stats();
    let attempts: Vec<u32> = stats
        .webhook_log
        .iter()
        .filter(|a| a.url == main.url)
        .map(|a| a.attempt)
        .collect();
    assert_eq!(attempts, vec![1, 2, 3]);
}

#[tokio::test]
async fn orders_reserve_on_creation_release_on_cancellation_and_write_off_on_completion() {
    let sim = start(config(30)).await;
    let c = client();
    let rx = receiver(0).await;
    sim.set_stock_webhooks(KEY, vec![hook(&rx.url, &[])]);
    let o = plain_offer(&sim);
    let create = |qty: i64| {
        json!({
            "source_id": 1,
            "buyer": {"full_name": "Олена", "phone": "+380671112233"},
            "products": [{"sku": o.sku, "quantity": qty}, {"name": "Послуга", "price": 10, "quantity": 1}]
        })
    };
    let r = send(&c, &sim, Method::POST, "/order", &create(2)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let a = r.body["id"].as_i64().unwrap();
    assert_eq!(r.body["has_reserves"], true);
    let row = stock_row(&c, &sim, o.id).await;
    assert_eq!(
        (row["quantity"].as_i64(), row["reserve"].as_i64()),
        (Some(o.quantity), Some(2))
    );
    let hits = rx.wait_for(1, 5).await;
    assert_eq!(
        hits[0].1,
        json!([{"offer_id": o.id, "sku": o.sku, "in_stock": o.quantity, "in_reserve": 2}])
    );

    // cancelled: released
    sim.change_order_status(KEY, a, 19).await.unwrap();
    let hits = rx.wait_for(2, 5).await;
    assert_eq!(hits[1].1[0]["in_reserve"], 0);

    // another order, completed through the API: written off
    let r = send(&c, &sim, Method::POST, "/order", &create(1)).await;
    let b = r.body["id"].as_i64().unwrap();
    rx.wait_for(3, 5).await;
    let r = send(
        &c,
        &sim,
        Method::PUT,
        &format!("/order/{b}"),
        &json!({"status_id": 12}),
    )
    .await;
    assert_eq!(r.status, 202);
    let hits = rx.wait_for(4, 5).await;
    assert_eq!(
        hits[3].1,
        json!([{"offer_id": o.id, "sku": o.sku, "in_stock": o.quantity - 1, "in_reserve": 0}])
    );
    // a status inside the open groups moves nothing
    let r = send(&c, &sim, Method::POST, "/order", &create(o.quantity + 50)).await;
    let big = r.body["id"].as_i64().unwrap();
    let hits = rx.wait_for(5, 5).await;
    assert_eq!(
        hits[4].1[0]["in_reserve"],
        o.quantity - 1,
        "an order beyond stock reserves what is free"
    );
    sim.change_order_status(KEY, big, 3).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.hits.lock().unwrap().len(), 5);
}

#[tokio::test]
async fn stock_webhooks_are_configurable_over_http() {
    let sim = start(config(5)).await;
    let c = client();
    let base = sim.base_url().replace("/v1", "");
    let r = c
        .put(format!("{base}/__sim/stock-webhooks"))
        .json(&json!({"webhooks": [{"name": "shop", "url": "http://127.0.0.1:9/x", "warehouses": [1]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = c
        .get(format!("{base}/__sim/stock-webhooks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["webhooks"][0]["warehouses"], json!([1]));
    let r = c
        .put(format!("{base}/__sim/stock-webhooks"))
        .json(&json!({"webhooks": [{"url": "http://x", "warehouses": [42]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
}
