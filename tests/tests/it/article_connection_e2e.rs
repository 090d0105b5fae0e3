//! The article's «Webhook» block and «Ключ API» step, against the whole connector:
//!
//! - «Посилання на Webhook…» is shown permanently with «Скопіювати»: the URL is readable at
//!   any time, rotation kills the old one at once, no token is stored or logged;
//! - pasting another key: a key of the same KeyCRM account keeps everything; a key of another
//!   account is refused until the merchant confirms a switch, which starts from a clean slate.

use axum::http::StatusCode;
use e2e_tests::api::assert_api_error;
use e2e_tests::article::{logs, next_second, token_of, world, World, SHOP};
use queue::Queue;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use store::{ConnectionStore, LedgerState, OrderLedger, SecretStore, SecretsManager};

const KEY_A: &str = "kc-article-conn-a-0a1b2c3d4e5f60718293a4b5c6d7e8f9";
const KEY_A2: &str = "kc-article-conn-a2-9f8e7d6c5b4a39281706f5e4d3c2b1a0";
const KEY_B: &str = "kc-article-conn-b-1234567890abcdef1234567890abcdef";

async fn post_webhook(url: &str) -> u16 {
    // A well-formed trigger delivery for an order the connector does not know.
    let body = r#"{"event":"order.change_order_status","context":{"id":999999,"status_id":3,"status_changed_at":"2026-01-01T00:00:00.000000Z"}}"#;
    reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn raw_connection_items(w: &World, conn_id: &str) -> String {
    use aws_sdk_dynamodb::types::AttributeValue as A;
    let out = w
        .table
        .client
        .query()
        .table_name(&w.table.name)
        .key_condition_expression("pk = :p")
        .expression_attribute_values(":p", A::S(format!("CONN#{conn_id}")))
        .send()
        .await
        .unwrap();
    format!("{:?}", out.items())
}

#[tokio::test]
async fn webhook_urls_stay_visible_and_rotation_kills_the_old_one_at_once() {
    let w = world(&[(KEY_A, 51)]).await;
    let connected = w.connect(KEY_A).await;
    let id = connected["id"].as_str().unwrap().to_string();
    let url = connected["webhooks"]["orders"]["url"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(url.starts_with(&format!("{}/v1/webhooks/keycrm/{id}/", w.webhook_base)));

    // Any later page view shows the same URL to copy.
    for _ in 0..2 {
        let r = w.call("GET", "", None).await;
        assert_eq!(r.body["webhooks"]["orders"]["url"], url.as_str());
        assert_eq!(r.body["webhooks"]["orders"]["rotate_to_show"], false);
    }
    assert_eq!(post_webhook(&url).await, 200, "the URL is KeyCRM's to call");

    // «Створювати в воронках»: two URLs, for orders and for pipelines, both always shown.
    let options = w.options().await;
    let p = &options["keycrm"]["pipelines"][0];
    let r = w
        .save(json!({
            "order_sync": "pipelines", "source_id": 1,
            "default_pipeline_id": p["pipeline"]["id"],
            "payment_map": [{"shop_method": "cod", "keycrm_method_id": 1}]
        }))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let cards = r.body["webhooks"]["cards"]["url"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(token_of(&cards), token_of(&url));
    let r = w.call("GET", "", None).await;
    assert_eq!(r.body["webhooks"]["orders"]["url"], url.as_str());
    assert_eq!(r.body["webhooks"]["cards"]["url"], cards.as_str());
    assert_eq!(
        r.body["webhooks"]["cards"]["event"],
        "lead.change_lead_status"
    );

    // Rotating the order URL: the new one is shown from then on, the old one is dead at once,
    // the card URL stays.
    let r = w
        .call(
            "POST",
            "/webhook-tokens/rotate",
            Some(json!({"kind": "orders"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let rotated = r.body["webhooks"]["orders"]["url"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(rotated, url);
    assert_eq!(r.body["webhooks"]["cards"]["url"], cards.as_str());
    assert_eq!(post_webhook(&url).await, 404);
    assert_eq!(post_webhook(&rotated).await, 200);
    let r = w.call("GET", "", None).await;
    assert_eq!(r.body["webhooks"]["orders"]["url"], rotated.as_str());

    // No token is stored (only generations) and none reaches a log line.
    let raw = raw_connection_items(&w, &id).await;
    let log = logs();
    assert!(!log.is_empty(), "the log capture works");
    for u in [&url, &cards, &rotated] {
        let t = token_of(u);
        assert!(!raw.contains(&t), "a token is stored");
        assert!(!log.contains(&t), "a token reached the logs");
    }
    let stored = w.stored().await;
    assert_eq!(
        (
            stored.webhook_generations.orders,
            stored.webhook_generations.cards
        ),
        (2, 1)
    );
}

fn order_settings(extra: Value) -> Value {
    let mut s = json!({
        "sync_products": true,
        "order_sync": "orders",
        "source_id": 1,
        "order_statuses": {
            "from_keycrm": [{"keycrm_status_id": 1, "shop_status": "new"},
                            {"keycrm_status_id": 3, "shop_status": "paid"},
                            {"keycrm_status_id": 7, "shop_status": "shipped"}],
            "to_keycrm": [{"shop_status": "new", "keycrm_status_id": 1},
                          {"shop_status": "paid", "keycrm_status_id": 3},
                          {"shop_status": "shipped", "keycrm_status_id": 7}]
        },
        "payment_map": [{"shop_method": "cod", "keycrm_method_id": 1}],
        "delivery_map": [{"shop_method": "nova_poshta", "keycrm_service_id": 3}]
    });
    if let (Some(s), Some(e)) = (s.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            s.insert(k.clone(), v.clone());
        }
    }
    s
}

/// The full sync that saving with product sync on started, run to its end.
async fn run_started_sync(w: &World) {
    let jobs = w.take_sync_jobs().await;
    assert_eq!(jobs.len(), 1, "one full sync started");
    let run = w.run_sync(&jobs[0]).await;
    assert_eq!(run.state, "completed", "{run:?}");
}

async fn status_changed(w: &World, order: &str, status: &str) {
    let ev = json!({
        "version": 1, "type": "order.status_changed",
        "event_id": format!("st-{order}-{status}"), "shop_id": SHOP,
        "occurred_at": chrono::Utc::now().to_rfc3339(), "order_id": order,
        "status": status, "previous_status": "new", "changed_by": "merchant"
    });
    w.order_q
        .send(queue::Outgoing::new(ev.to_string()))
        .await
        .unwrap();
    w.drain_orders().await;
}

#[tokio::test]
async fn another_accounts_key_is_refused_until_the_merchant_switches_to_a_clean_slate() {
    let w = world(&[(KEY_A, 61), (KEY_B, 62)]).await;
    assert!(w.sim.add_api_key(KEY_A, KEY_A2));
    w.connect(KEY_A).await;

    // The article's setup on account A: catalog synced, an order pushed, statuses back.
    let r = w.save(order_settings(json!({}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    run_started_sync(&w).await;
    let url = w.call("GET", "", None).await.body["webhooks"]["orders"]["url"]
        .as_str()
        .unwrap()
        .to_string();
    w.sim
        .set_webhook_url(KEY_A, "order.change_order_status", Some(url.clone()));
    w.place_order("S-1").await;
    w.drain_orders().await;
    let conn = w.stored().await;
    let s1 = OrderLedger::get(&w.table, &conn.id, "S-1")
        .await
        .unwrap()
        .unwrap();
    let kc_a = s1.keycrm_id.unwrap();
    // Shop products made from A, by id: name and the KeyCRM id they carry (external id).
    let b_skus: BTreeSet<String> = w
        .sim
        .catalog(KEY_B)
        .offers
        .iter()
        .map(|o| o.sku.clone())
        .collect();
    let b_ids: BTreeSet<String> = w
        .sim
        .catalog(KEY_B)
        .products
        .iter()
        .map(|p| p.id.to_string())
        .collect();
    // Products B has under the same SKU are the merchant's match key at work (they are
    // linked by SKU, as chosen); every other one must stay as A made it.
    let from_a: BTreeMap<String, String> = w
        .shop
        .products(SHOP)
        .into_iter()
        .filter(|p| {
            !p.variants
                .iter()
                .filter_map(|v| v.sku.clone())
                .any(|s| b_skus.contains(&s))
        })
        .map(|p| (p.id, p.name))
        .collect();
    let colliding = w
        .shop
        .products(SHOP)
        .into_iter()
        .filter(|p| from_a.contains_key(&p.id))
        .filter(|p| p.external_id.as_ref().is_some_and(|x| b_ids.contains(x)))
        .count();
    assert!(
        colliding > 0,
        "some of A's products carry ids B's products have too"
    );

    // A new key of the same account (the owner generated another): everything stays.
    let r = w.call("PUT", "", Some(json!({"api_key": KEY_A2}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.get("account_switched").is_none());
    assert_eq!(r.body["settings"]["source_id"], 1);
    assert_eq!(r.body["webhooks"]["orders"]["url"], url.as_str());
    assert_eq!(w.stored().await.account_epoch, 0);

    // A key of another account: refused, in the merchant's language, nothing changes.
    let before = w.stored().await;
    let r = w
        .call_lang("PUT", "", Some(json!({"api_key": KEY_B})), Some("uk"))
        .await;
    assert_api_error(
        r.status,
        &r.body,
        StatusCode::CONFLICT,
        "account_mismatch",
        &[KEY_A, KEY_B],
    );
    assert!(
        r.message().contains("інший обліковий запис KeyCRM")
            && r.message().contains("switch_account")
            && r.message().contains(&kc_a.to_string()),
        "{}",
        r.message()
    );
    assert_eq!(w.stored().await, before, "nothing changed");
    let secrets = SecretsManager::from_env().await;
    assert_eq!(
        secrets
            .get(&before.secret_name)
            .await
            .unwrap()
            .unwrap()
            .expose(),
        KEY_A2,
        "the stored key is the old account's"
    );

    // The merchant confirms: a clean slate for account B.
    let r = w
        .call(
            "PUT",
            "",
            Some(json!({"api_key": KEY_B, "switch_account": true})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["account_switched"], true);
    assert!(r.body["notice"]
        .as_str()
        .unwrap()
        .contains("another KeyCRM account"));
    let s = &r.body["settings"];
    assert!(s["source_id"].is_null() && s["order_sync"] == "none");
    assert_eq!(
        s["order_statuses"],
        json!({"from_keycrm": [], "to_keycrm": []})
    );
    assert_eq!(s["sync_products"], false, "flows wait for the new set-up");
    let new_url = r.body["webhooks"]["orders"]["url"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(
        new_url, url,
        "account A's trigger no longer reaches the shop"
    );
    assert_eq!(post_webhook(&url).await, 404);
    let after = w.stored().await;
    assert_eq!(after.account_epoch, 1);
    assert_eq!(
        secrets
            .get(&after.secret_name)
            .await
            .unwrap()
            .unwrap()
            .expose(),
        KEY_B
    );

    // Set up for B and sync: B's products (whose ids repeat A's) never overwrite the shop
    // products made from A, even though those carry A's ids as their external ids.
    let count_before = w.shop.products(SHOP).len();
    let r = w.save(order_settings(json!({}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    run_started_sync(&w).await;
    let shop_now: BTreeMap<String, String> = w
        .shop
        .products(SHOP)
        .into_iter()
        .map(|p| (p.id, p.name))
        .collect();
    for (id, name) in &from_a {
        assert_eq!(
            shop_now.get(id),
            Some(name),
            "shop product {id} was overwritten"
        );
    }
    assert!(shop_now.len() > count_before, "B's products were created");

    // Orders: B's first order gets the same KeyCRM id as A's did. B's status changes reach
    // B's order only; a shop status change of A's order is not pushed into B.
    w.sim
        .set_webhook_url(KEY_B, "order.change_order_status", Some(new_url));
    w.place_order("S-2").await;
    w.drain_orders().await;
    let s2 = OrderLedger::get(&w.table, &after.id, "S-2")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s2.state, LedgerState::Created);
    assert_eq!(s2.keycrm_id, Some(kc_a), "ids repeat across accounts");
    next_second().await;
    w.sim.change_order_status(KEY_B, kc_a, 3).await.unwrap();
    w.eventually("B's order to become paid", || async {
        w.shop.order_status(SHOP, "S-2").as_deref() == Some("paid")
    })
    .await;
    assert_eq!(w.shop.order_status(SHOP, "S-1").as_deref(), Some("new"));
    status_changed(&w, "S-1", "shipped").await;
    let b_order = w
        .sim
        .orders(KEY_B)
        .into_iter()
        .find(|o| o["id"] == kc_a)
        .unwrap();
    assert_eq!(b_order["status_id"], 3, "A's order was not pushed into B");
    assert_eq!(w.order_q.approximate_len().await.unwrap(), 0);
    assert!(ConnectionStore::get(&w.table, &after.id)
        .await
        .unwrap()
        .is_some());
}
