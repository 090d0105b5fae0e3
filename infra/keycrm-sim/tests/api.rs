//! HTTP behaviour of the `/v1` API: auth, envelope, filters, rate limit, validation,
//! orders, pipeline cards, faults and the `/__sim` controls.

mod common;

use std::time::Duration;

use common::*;
use keycrm_sim::{AccountSpec, CatalogMutation, Faults, SimConfig};
use reqwest::Method;
use serde_json::{json, Value};

#[tokio::test]
async fn auth_is_required_everywhere() {
    let sim = start(config(60)).await;
    let c = client();
    for path in [
        "/offers",
        "/order",
        "/order/source",
        "/pipelines",
        "/custom-fields",
    ] {
        let r = get_as(&c, &sim, path, None).await;
        assert_eq!(r.status, 401, "{path}");
        assert_eq!(r.body, json!({"message": "Unauthenticated."}));
        let r = get_as(&c, &sim, path, Some("wrong")).await;
        assert_eq!(r.status, 401, "{path}");
    }
    let s = sim.stats();
    assert_eq!(s.unauthorized_401, 10);
    assert_eq!(s.requests_by_api_key.get("wrong"), Some(&5));
    assert_eq!(s.endpoint("GET /offers"), 2);
    let ok = get(&c, &sim, "/offers").await;
    assert_eq!(ok.status, 200);
}

#[tokio::test]
async fn envelope_has_12_keys_and_keeps_query_in_urls() {
    let sim = start(config(60)).await;
    let c = client();
    let r = get(
        &c,
        &sim,
        "/offers?include=product&filter%5Bis_archived%5D=false&limit=7",
    )
    .await;
    assert_eq!(r.status, 200);
    assert_envelope(&r.body);
    let b = &r.body;
    assert_eq!(b["per_page"], 7);
    assert_eq!(b["current_page"], 1);
    assert_eq!(b["from"], 1);
    assert_eq!(b["to"], 7);
    assert_eq!(b["path"], format!("{}/offers", sim.base_url()));
    let next = b["next_page_url"].as_str().expect("next url");
    assert_eq!(
        next,
        format!(
            "{}/offers?include=product&filter%5Bis_archived%5D=false&limit=7&page=2",
            sim.base_url()
        )
    );
    assert!(b["prev_page_url"].is_null());
    assert!(
        b["data"][0]["product"].is_object(),
        "include=product embeds product"
    );

    // follow next_page_url to the end; every offer seen once
    let total = b["total"].as_u64().expect("total") as usize;
    let mut seen = Vec::new();
    let mut url = Some(format!("{}/offers?limit=50", sim.base_url()));
    while let Some(u) = url {
        let r: Value = c
            .get(&u)
            .bearer_auth(KEY)
            .send()
            .await
            .expect("req")
            .json()
            .await
            .expect("json");
        for o in r["data"].as_array().expect("data") {
            seen.push(o["id"].as_i64().expect("id"));
        }
        url = r["next_page_url"].as_str().map(str::to_string);
        if url.is_none() {
            assert_eq!(r["current_page"], r["last_page"]);
        }
    }
    assert_eq!(seen.len(), total);
    let mut dedup = seen.clone();
    dedup.dedup();
    assert_eq!(dedup.len(), total);

    // past the last page: empty data, from/to null
    let r = get(&c, &sim, "/offers?page=999").await;
    assert_envelope(&r.body);
    assert_eq!(r.body["data"], json!([]));
    assert!(r.body["from"].is_null() && r.body["to"].is_null());
    assert!(r.body["next_page_url"].is_null());
    assert!(r.body["prev_page_url"].is_string());
}

#[tokio::test]
async fn limit_is_clamped_silently() {
    let sim = start(config(60)).await;
    let c = client();
    let r = get(&c, &sim, "/offers?limit=100").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["per_page"], 50);
    assert_eq!(r.body["data"].as_array().map(Vec::len), Some(50));
    let r = get(&c, &sim, "/products?limit=0").await;
    assert_eq!(r.body["per_page"], 1);
    let r = get(&c, &sim, "/products").await;
    assert_eq!(r.body["per_page"], 15);
}

#[tokio::test]
async fn unknown_filters_and_includes_are_rejected() {
    let sim = start(config(60)).await;
    let c = client();
    let r = get(&c, &sim, "/order?filter%5Bcreated_at_min%5D=2024-01-01").await;
    assert_eq!(r.status, 400);
    let msg = r.body["message"].as_str().expect("message");
    assert!(
        msg.starts_with(
            "Requested filter(s) `created_at_min` are not allowed. Allowed filter(s) are `"
        ),
        "{msg}"
    );
    assert!(msg.contains("created_between"));
    let r = get(&c, &sim, "/offers?include=variants").await;
    assert_eq!(r.status, 400);
    assert!(r.body["message"]
        .as_str()
        .is_some_and(|m| m.contains("include(s) `variants` are not allowed")));
    let r = get(&c, &sim, "/products?filter%5Bsku%5D=x").await;
    assert_eq!(r.status, 400);
    let r = get(&c, &sim, "/offers?sort=-price").await;
    assert_eq!(r.status, 400);
    // /offers/stocks ignores unknown filters
    let r = get(&c, &sim, "/offers/stocks?filter%5Bwarehouse_id%5D=1").await;
    assert_eq!(r.status, 200);
    // live include forms are accepted
    let r = get(
        &c,
        &sim,
        "/order?include=products,shipping,customFields,productsCount",
    )
    .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn unknown_routes_are_json_404() {
    let sim = start(config(60)).await;
    let c = client();
    let r = get(&c, &sim, "/warehouses").await;
    assert_eq!(r.status, 404);
    assert!(r.body["message"].is_string());
    let r = get(&c, &sim, "/products/999999").await;
    assert_eq!(r.status, 404);
    assert!(r.body["message"].is_string());
    let r = get(&c, &sim, "/order/abc").await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn rate_limit_returns_429_with_retry_after() {
    let mut cfg = config(60);
    cfg.rate_limit_per_minute = 5;
    cfg.time_scale = 30.0; // window = 2 real seconds
    let sim = start(cfg).await;
    let c = client();
    for i in 0..5 {
        let r = get(&c, &sim, "/order/status").await;
        assert_eq!(r.status, 200, "request {i}");
        assert_eq!(r.header("x-ratelimit-limit").as_deref(), Some("5"));
        assert_eq!(r.header("x-ratelimit-remaining"), Some((4 - i).to_string()));
    }
    let r = get(&c, &sim, "/order/status").await;
    assert_eq!(r.status, 429);
    assert_eq!(r.body, json!({"message": "Too Many Attempts."}));
    let retry: u64 = r
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("integer Retry-After");
    assert!(retry >= 1);
    assert_eq!(sim.stats().rate_limited_429, 1);
    assert!(
        retry <= 2,
        "Retry-After is in real (scaled) seconds: {retry}"
    );
    tokio::time::sleep(Duration::from_millis(retry * 1000 + 100)).await;
    let r = get(&c, &sim, "/order/status").await;
    assert_eq!(r.status, 200, "window reset after the scaled minute");
}

#[tokio::test]
async fn rate_limit_is_per_api_key() {
    let cfg = SimConfig {
        accounts: vec![
            AccountSpec {
                api_key: "a".into(),
                seed: 1,
                products: 10,
                pipelines_enabled: true,
            },
            AccountSpec {
                api_key: "b".into(),
                seed: 2,
                products: 10,
                pipelines_enabled: false,
            },
        ],
        rate_limit_per_minute: 2,
        time_scale: 1.0,
        public_base_url: Some("https://openapi.keycrm.app/v1".into()),
    };
    let sim = start(cfg).await;
    let c = client();
    for _ in 0..2 {
        assert_eq!(get_as(&c, &sim, "/offers", Some("a")).await.status, 200);
    }
    assert_eq!(get_as(&c, &sim, "/offers", Some("a")).await.status, 429);
    let r = get_as(&c, &sim, "/offers", Some("b")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["path"], "https://openapi.keycrm.app/v1/offers");
    // account b has pipelines disabled
    let r = get_as(&c, &sim, "/pipelines", Some("b")).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body, json!({"message": "Leads are not enabled"}));
    assert_eq!(sim.stats().requests_by_api_key.get("a"), Some(&3));
}

#[tokio::test]
async fn pipelines_disabled_answers_400_everywhere() {
    let mut cfg = config(20);
    cfg.accounts[0].pipelines_enabled = false;
    let sim = start(cfg).await;
    let c = client();
    for path in [
        "/pipelines",
        "/pipelines/1/statuses",
        "/pipelines/cards",
        "/pipelines/cards/301",
    ] {
        let r = get(&c, &sim, path).await;
        assert_eq!(r.status, 400, "{path}");
        assert_eq!(r.body["message"], "Leads are not enabled");
    }
    let r = send(
        &c,
        &sim,
        Method::POST,
        "/pipelines/cards",
        &json!({"contact": {"full_name": "X"}}),
    )
    .await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn order_validation_errors_are_laravel_shaped() {
    let sim = start(config(60)).await;
    let c = client();
    let r = send(&c, &sim, Method::POST, "/order", &json!({})).await;
    assert_eq!(r.status, 422);
    assert_eq!(r.body["message"], "The given data was invalid.");
    assert_eq!(
        r.body["errors"]["source_id"],
        json!(["The source id field is required."])
    );
    assert_eq!(
        r.body["errors"]["buyer"],
        json!(["The buyer field is required."])
    );

    let r = send(
        &c,
        &sim,
        Method::POST,
        "/order",
        &json!({
            "source_id": 999,
            "buyer": {"full_name": "A"},
            "shipping": {"delivery_service_id": 77},
            "products": [{"sku": "x", "quantity": 0}],
            "payments": [{"payment_method_id": 999, "amount": 5}, {"payment_method_id": 1}],
            "custom_fields": [{"uuid": "LD_1001", "value": "x"}]
        }),
    )
    .await;
    assert_eq!(r.status, 422);
    let e = r.body["errors"].as_object().expect("errors");
    for k in [
        "source_id",
        "shipping.delivery_service_id",
        "products.0.quantity",
        "payments.0.payment_method_id",
        "payments.1.amount",
        "custom_fields.0.uuid",
    ] {
        assert!(e.contains_key(k), "missing error for {k}: {e:?}");
        assert!(e[k]
            .as_array()
            .is_some_and(|a| a.iter().all(Value::is_string)));
    }
    // nothing stored
    assert!(sim.orders(KEY).is_empty());
    // a non-JSON body behaves like an empty form
    let r = c
        .post(format!("{}/order", sim.base_url()))
        .bearer_auth(KEY)
        .body("not json")
        .send()
        .await
        .expect("req");
    assert_eq!(r.status().as_u16(), 422);
}

fn order_body(catalog_sku: &str) -> Value {
    json!({
        "source_id": 1,
        "source_uuid": "shop-1001",
        "ordered_at": "2026-11-20 10:00:00",
        "buyer": {"full_name": "Іван Петренко", "email": "ivan@example.com", "phone": "+380 50 111 22 33"},
        "buyer_comment": "Зателефонуйте перед доставкою",
        "shipping_price": 70,
        "discount_amount": 10,
        "shipping": {
            "delivery_service_id": 3,
            "shipping_receive_point": "Відділення №5",
            "shipping_address_city": "Київ",
            "warehouse_ref": "1ec09d2e-e1c2-11e3-8c4a-0050568002cf",
            "recipient_full_name": "Ганна Петренко"
        },
        "marketing": {"utm_source": "google", "utm_campaign": "black-friday"},
        "products": [
            {"sku": catalog_sku, "quantity": 2},
            {"sku": "GIFT-BOX", "name": "Подарункова коробка", "price": 50.5, "quantity": 1}
        ],
        "payments": [{"payment_method_id": 3, "amount": 100, "status": "paid"}],
        "custom_fields": [
            {"uuid": "OR_1002", "value": "Сайт"},
            {"uuid": "OR_1003", "value": 2},
            {"uuid": "OR_1006", "value": "1001"}
        ]
    })
}

#[tokio::test]
async fn order_create_read_update() {
    let sim = start(config(60)).await;
    let c = client();
    let snap = sim.catalog(KEY);
    let offer = snap
        .offers
        .iter()
        .find(|o| !o.is_archived && snap.duplicate_skus().iter().all(|d| *d != o.sku))
        .expect("an offer");

    let r = send(&c, &sim, Method::POST, "/order", &order_body(&offer.sku)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let o = &r.body;
    let id = o["id"].as_i64().expect("id");
    assert_eq!(o["status_id"], 1);
    assert_eq!(o["status_group_id"], 1);
    assert_eq!(o["source_uuid"], "shop-1001");
    assert_eq!(o["ordered_at"], "2026-11-20T10:00:00.000000Z");
    assert!(o["created_at"]
        .as_str()
        .is_some_and(|s| s.ends_with(".000000Z")));
    assert_eq!(o["buyer"]["orders_sum"], "0.00");
    assert_eq!(o["buyer"]["phone"], "+380501112233");
    assert!(o["shipping"].is_object());
    assert_eq!(o["payments"][0]["amount"], 100);
    let line = &o["products"][0];
    assert_eq!(
        line["name"],
        json!(snap
            .products
            .iter()
            .find(|p| p.id == offer.product_id)
            .map(|p| p.name.clone()))
    );
    assert_eq!(line["price"].as_f64(), Some(offer.price));
    assert!(line["picture"]["thumbnail"].is_string());
    assert_eq!(o["products"][1]["picture"], json!([]));
    // totals
    let products_total = offer.price * 2.0 + 50.5;
    assert!((o["products_total"].as_f64().unwrap_or(0.0) - products_total).abs() < 0.001);
    let grand = products_total - 10.0 + 70.0;
    assert!((o["grand_total"].as_f64().unwrap_or(0.0) - grand).abs() < 0.001);
    assert_eq!(o["total_discount"], 10);
    assert_eq!(o["payments_total"], 100);
    assert_eq!(o["payment_status"], "part_paid");
    assert!(o["shipping_price"].is_number());

    // read back with includes
    let r = get(
        &c,
        &sim,
        &format!("/order/{id}?include=buyer,products.offer,shipping.deliveryService,payments,custom_fields,marketing,status,manager"),
    )
    .await;
    assert_eq!(r.status, 200);
    let g = &r.body;
    assert_eq!(g["id"], id);
    assert_eq!(g["products"][0]["offer"]["id"], offer.id);
    assert!(g["products"][1]["offer"].is_null());
    assert_eq!(
        g["shipping"]["warehouse_ref"],
        "1ec09d2e-e1c2-11e3-8c4a-0050568002cf"
    );
    assert_eq!(g["shipping"]["delivery_service_id"], 3);
    assert_eq!(
        g["shipping"]["delivery_service"]["source_name"],
        "novaposhta"
    );
    assert_eq!(g["marketing"]["utm_campaign"], "black-friday");
    assert_eq!(g["status"]["id"], 1);
    assert!(g["manager"].is_null());
    let cf = g["custom_fields"].as_array().expect("custom fields");
    assert_eq!(cf.len(), 3);
    assert_eq!(cf[0]["uuid"], "OR_1002");
    assert_eq!(cf[0]["value"], json!(["Сайт"]), "select values are arrays");

    // list + filters
    let r = get(
        &c,
        &sim,
        "/order?filter%5Bsource_uuid%5D=shop-1001&include=buyer",
    )
    .await;
    assert_envelope(&r.body);
    assert_eq!(r.body["total"], 1);
    let r = get(&c, &sim, "/order?filter%5Bsource_uuid%5D=nope").await;
    assert_eq!(r.body["total"], 0);
    let r = get(
        &c,
        &sim,
        "/order?filter%5Bcreated_between%5D=2026-11-20,2026-11-21",
    )
    .await;
    assert_eq!(r.body["total"], 1, "created_between filters by ordered_at");
    let r = get(&c, &sim, "/order?filter%5Bbuyer_phone%5D=%2B380501112233").await;
    assert_eq!(r.body["total"], 1);
    let r = get(&c, &sim, "/order?filter%5Bstatus_id%5D=12").await;
    assert_eq!(r.body["total"], 0);

    // update: status + comment + custom field + tracking code
    let r = send(
        &c,
        &sim,
        Method::PUT,
        &format!("/order/{id}"),
        &json!({"status_id": 12, "manager_comment": "ok", "custom_fields": [{"uuid": "OR_1001", "value": "крихке"}],
                "shipping": {"tracking_code": "20450000000001"}}),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.body["status_id"], 12);
    assert_eq!(r.body["status_group_id"], 5);
    assert!(
        r.body["closed_at"]
            .as_str()
            .is_some_and(|s| !s.contains('T')),
        "closed_at uses the space form"
    );
    // second different tracking code is an error
    let r = send(
        &c,
        &sim,
        Method::PUT,
        &format!("/order/{id}"),
        &json!({"shipping": {"tracking_code": "20450000000002"}}),
    )
    .await;
    assert_eq!(r.status, 422);
    let r = send(
        &c,
        &sim,
        Method::PUT,
        &format!("/order/{id}"),
        &json!({"status_id": 4242}),
    )
    .await;
    assert_eq!(r.status, 422);
    let r = send(
        &c,
        &sim,
        Method::PUT,
        "/order/999999",
        &json!({"status_id": 1}),
    )
    .await;
    assert_eq!(r.status, 404);

    let stored = sim.orders(KEY);
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["status_id"], 12);
    assert_eq!(stored[0]["manager_comment"], "ok");
    assert_eq!(stored[0]["shipping"]["tracking_code"], "20450000000001");
    assert_eq!(stored[0]["custom_fields"].as_array().map(Vec::len), Some(4));
    let r = get(&c, &sim, "/order?filter%5Bhas_tracking_code%5D=true").await;
    assert_eq!(r.body["total"], 1);
}

#[tokio::test]
async fn pipeline_cards_create_read_update() {
    let sim = start(config(60)).await;
    let c = client();
    let sku = sim.catalog(KEY).offers[0].sku.clone();
    let r = send(&c, &sim, Method::POST, "/pipelines/cards", &json!({})).await;
    assert_eq!(r.status, 422);
    assert!(r.body["errors"]["contact"].is_array());
    let r = send(
        &c,
        &sim,
        Method::POST,
        "/pipelines/cards",
        &json!({
            "title": "Заявка з сайту",
            "source_id": 1,
            "contact": {"full_name": "Олег Коваленко", "phone": "+380671112233", "email": "oleg@example.com"},
            "utm_source": "instagram",
            "products": [{"sku": sku, "quantity": 1}],
            "custom_fields": [{"uuid": "LD_1002", "value": ["Сайт"]}, {"uuid": "LD_1003", "value": 1500.5}]
        }),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.body["id"].as_i64().expect("id");
    assert_eq!(r.body["pipeline_id"], 1);
    assert_eq!(r.body["status_id"], 1001);
    assert!(r.body["contact"]["client_id"].is_i64());
    let r = send(&c, &sim, Method::POST, "/pipelines/cards", &json!({"contact": {"full_name": "X"}, "custom_fields": [{"uuid": "OR_1001", "value": "x"}]})).await;
    assert_eq!(r.status, 422, "order fields are not lead fields");

    let r = get(
        &c,
        &sim,
        &format!("/pipelines/cards/{id}?include=contact.client,products,status,custom_fields"),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["utm_source"], "instagram");
    assert_eq!(r.body["contact"]["client"]["orders_sum"], "0.00");
    assert_eq!(r.body["products"][0]["sku"], json!(sku));
    assert_eq!(r.body["status"]["pipeline_id"], 1);
    assert_eq!(r.body["custom_fields"][1]["value"], 1500.5);

    // move to a status of pipeline 2
    let r = send(&c, &sim, Method::PUT, &format!("/pipelines/cards/{id}"), &json!({"status_id": 2002, "products": [{"name": "Разовий товар", "price": 10, "quantity": 1}]})).await;
    assert_eq!(r.status, 202);
    assert_eq!(r.body, json!({"status": true}));
    let r = get(
        &c,
        &sim,
        "/pipelines/cards?filter%5Bpipeline_id%5D=2&include=products",
    )
    .await;
    assert_envelope(&r.body);
    assert_eq!(r.body["total"], 1);
    assert_eq!(r.body["data"][0]["status_id"], 2002);
    assert_eq!(
        r.body["data"][0]["products"].as_array().map(Vec::len),
        Some(2),
        "products are appended"
    );
    let r = get(&c, &sim, "/pipelines/2/statuses").await;
    assert_eq!(r.body["data"][1]["leads_count"], 1);
    let r = get(&c, &sim, "/pipelines/cards/99999").await;
    assert_eq!(r.status, 404);
    assert_eq!(sim.cards(KEY).len(), 1);
}

#[tokio::test]
async fn commit_then_timeout_stores_the_order() {
    let sim = start(config(60)).await;
    sim.set_faults(Faults {
        commit_then_timeout: 1,
        hang_ms: 3000,
        ..Default::default()
    });
    let fast = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(400))
        .build()
        .expect("client");
    let body = order_body("NO-SUCH-SKU");
    let res = fast
        .post(format!("{}/order", sim.base_url()))
        .bearer_auth(KEY)
        .json(&body)
        .send()
        .await;
    assert!(res.is_err_and(|e| e.is_timeout()), "client must time out");
    assert_eq!(
        sim.orders(KEY).len(),
        1,
        "entity stored although the response hung"
    );
    // the next create answers normally
    let r = client()
        .post(format!("{}/order", sim.base_url()))
        .bearer_auth(KEY)
        .json(&body)
        .send()
        .await
        .expect("second create answers");
    assert_eq!(r.status().as_u16(), 201);
    assert_eq!(
        sim.orders(KEY).len(),
        2,
        "no server-side dedupe of source_uuid"
    );
    assert_eq!(sim.stats().commit_then_timeout, 1);
}

#[tokio::test]
async fn injected_5xx_and_drops() {
    let sim = start(config(20)).await;
    let c = client();
    sim.set_faults(Faults {
        error_rate_5xx: 1.0,
        seed: 7,
        ..Default::default()
    });
    for _ in 0..5 {
        let r = get(&c, &sim, "/offers").await;
        assert!([500, 502, 503].contains(&r.status), "{}", r.status);
        assert!(r.body["message"].is_string());
    }
    assert_eq!(sim.stats().injected_5xx, 5);
    sim.set_faults(Faults {
        drop_rate: 1.0,
        ..Default::default()
    });
    let res = c
        .get(format!("{}/offers", sim.base_url()))
        .bearer_auth(KEY)
        .send()
        .await;
    let failed = match res {
        Err(_) => true,
        Ok(r) => r.bytes().await.is_err(),
    };
    assert!(
        failed,
        "a dropped connection must surface as a transport error"
    );
    assert_eq!(sim.stats().dropped_connections, 1);
    sim.set_faults(Faults {
        latency_ms: 150,
        ..Default::default()
    });
    let t = std::time::Instant::now();
    assert_eq!(get(&c, &sim, "/offers").await.status, 200);
    assert!(t.elapsed() >= Duration::from_millis(150));
    sim.set_faults(Faults::default());
    assert_eq!(get(&c, &sim, "/offers").await.status, 200);
}

#[tokio::test]
async fn sim_control_routes() {
    let sim = start(config(30)).await;
    let c = client();
    let root = format!("http://{}", sim.addr());
    let h: Value = c
        .get(format!("{root}/__sim/health"))
        .send()
        .await
        .expect("req")
        .json()
        .await
        .expect("json");
    assert_eq!(h["status"], "ok");

    // catalog mutation over HTTP
    let offer = sim.catalog(KEY).offers[0].clone();
    let r = c
        .post(format!("{root}/__sim/catalog?api_key={KEY}"))
        .json(&json!({"kind": "SetPrice", "offer_id": offer.id, "price": 1234.5}))
        .send()
        .await
        .expect("req");
    assert_eq!(r.status().as_u16(), 200);
    let r = get(&c, &sim, &format!("/offers?filter%5Bid%5D={}", offer.id)).await;
    assert_eq!(r.body["data"][0]["price"], 1234.5);
    let r = c
        .post(format!("{root}/__sim/catalog"))
        .json(&json!({"kind": "Nope"}))
        .send()
        .await
        .expect("req");
    assert_eq!(r.status().as_u16(), 400);

    // faults over HTTP
    let r = c
        .put(format!("{root}/__sim/faults"))
        .json(&json!({"error_rate_5xx": 1.0}))
        .send()
        .await
        .expect("req");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(get(&c, &sim, "/offers").await.status / 100, 5);
    c.put(format!("{root}/__sim/faults"))
        .json(&json!({}))
        .send()
        .await
        .expect("req");
    assert_eq!(get(&c, &sim, "/offers").await.status, 200);

    // orders + status change over HTTP
    let r = send(&c, &sim, Method::POST, "/order", &order_body("X")).await;
    let id = r.body["id"].as_i64().expect("id");
    let r = c
        .post(format!("{root}/__sim/orders/{id}/status"))
        .json(&json!({"api_key": KEY, "status_id": 3}))
        .send()
        .await
        .expect("req");
    assert_eq!(r.status().as_u16(), 200);
    let list: Value = c
        .get(format!("{root}/__sim/orders?api_key={KEY}"))
        .send()
        .await
        .expect("req")
        .json()
        .await
        .expect("json");
    assert_eq!(list[0]["status_id"], 3);
    assert_eq!(list[0]["status_group_id"], 2);
    let r = c
        .post(format!("{root}/__sim/orders/{id}/status"))
        .json(&json!({"api_key": KEY, "status_id": 999}))
        .send()
        .await
        .expect("req");
    assert_eq!(r.status().as_u16(), 422);
    let r = c
        .put(format!("{root}/__sim/webhooks"))
        .json(&json!({"api_key": KEY, "event": "order.change_order_status", "url": "http://127.0.0.1:9/x"}))
        .send()
        .await
        .expect("req");
    assert_eq!(r.status().as_u16(), 200);

    // stats over HTTP
    let s: Value = c
        .get(format!("{root}/__sim/stats"))
        .send()
        .await
        .expect("req")
        .json()
        .await
        .expect("json");
    assert!(
        s["requests_by_endpoint"]["GET /offers"]
            .as_u64()
            .unwrap_or(0)
            >= 3
    );
    assert!(s["injected_5xx"].as_u64().unwrap_or(0) >= 1);
    c.post(format!("{root}/__sim/stats/reset"))
        .send()
        .await
        .expect("req");
    assert_eq!(sim.stats().total_requests, 0);
}

#[tokio::test]
async fn catalog_mutations_show_up_in_the_api() {
    let sim = start(config(60)).await;
    let c = client();
    let snap = sim.catalog(KEY);
    let p = snap
        .products
        .iter()
        .find(|p| !p.is_archived)
        .expect("product")
        .clone();
    sim.catalog_mutate(
        KEY,
        CatalogMutation::Rename {
            product_id: p.id,
            name: "Нова назва".into(),
        },
    );
    sim.catalog_mutate(KEY, CatalogMutation::Archive { product_id: p.id });
    let r = get(&c, &sim, &format!("/products/{}", p.id)).await;
    assert_eq!(r.body["name"], "Нова назва");
    assert_eq!(r.body["is_archived"], true);
    let r = get(
        &c,
        &sim,
        &format!("/offers?filter%5Bproduct_id%5D={}", p.id),
    )
    .await;
    assert!(r.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .all(|o| o["is_archived"] == true));
    sim.catalog_mutate(KEY, CatalogMutation::Delete { product_id: p.id });
    assert_eq!(
        get(&c, &sim, &format!("/products/{}", p.id)).await.status,
        404
    );
    sim.catalog_mutate(
        KEY,
        CatalogMutation::AddProduct {
            name: "Новинка".into(),
            category_id: None,
            sku: Some("NEW-SKU-1".into()),
            price: 999.0,
            barcode: None,
            quantity: 5,
            description: None,
            variants: Vec::new(),
        },
    );
    let r = get(
        &c,
        &sim,
        "/offers?filter%5Bsku%5D=NEW-SKU-1&include=product",
    )
    .await;
    assert_eq!(r.body["total"], 1);
    assert_eq!(r.body["data"][0]["price"], 999);
    assert_eq!(r.body["data"][0]["product"]["name"], "Новинка");
    let oid = r.body["data"][0]["id"].as_i64().expect("id");
    sim.catalog_mutate(
        KEY,
        CatalogMutation::SetStock {
            offer_id: oid,
            quantity: 42,
        },
    );
    let r = get(
        &c,
        &sim,
        &format!("/offers/stocks?filter%5Boffers_id%5D={oid}"),
    )
    .await;
    assert_eq!(r.body["data"][0]["quantity"], 42);
    let before = sim.catalog(KEY);
    sim.catalog_mutate(
        KEY,
        CatalogMutation::ChangePricesPercent {
            share: 0.5,
            seed: 3,
        },
    );
    let after = sim.catalog(KEY);
    let changed = before
        .offers
        .iter()
        .zip(after.offers.iter())
        .filter(|(a, b)| a.price != b.price)
        .count();
    assert!(
        changed > before.offers.len() / 4 && changed < before.offers.len() * 3 / 4,
        "{changed}"
    );
}
