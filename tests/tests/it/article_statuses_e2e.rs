//! The article's «Налаштування синхронізації замовлень» block, followed step by step against
//! the whole connector (admin API, webhook receiver, status-apply, order-push; DynamoDB/SQS on
//! the emulator; the KeyCRM simulator; the demo shop):
//!
//! - «Зіставлення статусів замовлення» with every KeyCRM status, and the trigger «Зміна
//!   статусу замовлення» with «всі наявні статуси»: several KeyCRM statuses lead to one shop
//!   status, each shop status becomes one KeyCRM status, contradictions are refused;
//! - settings saved before the mapping had two directions keep working;
//! - «Створювати в воронках» with «Зіставлення доповнень до замовлень»: an order field gets an
//!   error saying what to create instead, in the merchant's language.

use axum::http::StatusCode;
use e2e_tests::api::assert_api_error;
use e2e_tests::article::{next_second, token_of, world, World, SHOP};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use store::{tokens, ConnectionStore, OrderLedger, StatusJournal, Target};

const KEY: &str = "kc-article-statuses-6f1e0c2d9b8a47e5a3c1d2e4f6a8b0c2";

/// The shop status each KeyCRM status group stands for in this shop.
fn shop_status_of_group(group: i64) -> &'static str {
    match group {
        1 => "new",
        2 | 3 => "paid",
        4 => "shipped",
        5 => "done",
        _ => "cancelled",
    }
}

/// Both directions as the settings page builds them from the options: every KeyCRM status
/// (they all reach the webhook) leads to its group's shop status; each shop status becomes
/// the first KeyCRM status of its group.
fn order_statuses(options: &Value) -> Value {
    let statuses = options["keycrm"]["order_statuses"].as_array().unwrap();
    let from: Vec<Value> = statuses
        .iter()
        .map(|s| {
            json!({"keycrm_status_id": s["id"],
                   "shop_status": shop_status_of_group(s["group_id"].as_i64().unwrap())})
        })
        .collect();
    let first = |group: i64| {
        statuses
            .iter()
            .filter(|s| s["group_id"] == group)
            .map(|s| s["id"].as_i64().unwrap())
            .min()
            .unwrap()
    };
    let to: Vec<Value> = [
        (1, "new"),
        (2, "paid"),
        (4, "shipped"),
        (5, "done"),
        (6, "cancelled"),
    ]
    .iter()
    .map(|(g, shop)| json!({"shop_status": shop, "keycrm_status_id": first(*g)}))
    .collect();
    json!({"from_keycrm": from, "to_keycrm": to})
}

fn order_settings(options: &Value) -> Value {
    json!({
        "order_sync": "orders",
        "source_id": 1,
        "order_statuses": order_statuses(options),
        "payment_map": [{"shop_method": "cod", "keycrm_method_id": 1}],
        "delivery_map": [{"shop_method": "nova_poshta", "keycrm_service_id": 3}]
    })
}

async fn shop_status(w: &World, order: &str) -> Option<String> {
    w.shop.order_status(SHOP, order)
}

async fn wait_shop_status(w: &World, order: &str, want: &str) {
    w.eventually(&format!("shop order {order} to become {want}"), || async {
        shop_status(w, order).await.as_deref() == Some(want)
    })
    .await;
}

async fn pushed(w: &World, order: &str) -> i64 {
    let conn = w.stored().await;
    OrderLedger::get(&w.table, &conn.id, order)
        .await
        .unwrap()
        .and_then(|e| e.keycrm_id)
        .expect("the order is in KeyCRM")
}

#[tokio::test]
async fn every_keycrm_status_leads_to_a_shop_status_and_each_shop_status_to_one_keycrm_status() {
    let w = world(&[(KEY, 31)]).await;
    w.connect(KEY).await;
    let options = w.options().await;

    // The page can render both directions: every KeyCRM status in its group, the shop's
    // statuses and the one new orders start in.
    let all: BTreeSet<i64> = options["keycrm"]["order_statuses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_i64().unwrap())
        .collect();
    let grouped: BTreeSet<i64> = options["keycrm"]["order_status_groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["status_ids"].as_array().unwrap().clone())
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert_eq!(grouped, all, "every KeyCRM status sits in its group");
    assert!(all.len() > 5, "more KeyCRM statuses than the shop has");
    assert_eq!(options["shop"]["initial_order_status"], "new");

    // A push whose echo would flip the shop status is refused, naming both entries, in
    // Ukrainian for a Ukrainian page.
    let mut bad = order_settings(&options);
    bad["order_statuses"]["to_keycrm"][1]["keycrm_status_id"] = json!(1);
    let v = w.version().await;
    let r = w
        .call_lang(
            "PUT",
            "/settings",
            Some(json!({"version": v, "settings": bad})),
            Some("uk-UA,uk;q=0.9,en;q=0.5"),
        )
        .await;
    assert_api_error(
        r.status,
        &r.body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_settings",
        &[KEY],
    );
    assert_eq!(r.content_language.as_deref(), Some("uk"));
    let (field, code, message) = r.fields().remove(0);
    assert_eq!(field, "order_statuses.to_keycrm[1].keycrm_status_id");
    assert_eq!(code, "contradicts_from_keycrm");
    assert!(
        message.contains("\"paid\"") && message.contains("\"new\"") && message.contains("магазин"),
        "{message}"
    );
    // The starting status must go somewhere, or no order could be pushed.
    let mut incomplete = order_settings(&options);
    incomplete["order_statuses"]["to_keycrm"]
        .as_array_mut()
        .unwrap()
        .remove(0);
    let r = w.save(incomplete).await;
    let fields = r.fields();
    assert!(
        fields
            .iter()
            .any(|(f, c, m)| f == "order_statuses.to_keycrm"
                && c == "initial_status_unmapped"
                && m.contains("\"new\"")),
        "{fields:?}"
    );
    assert_eq!(w.version().await, 1, "nothing saved");

    // The mapping as the article has it: saved.
    let r = w.save(order_settings(&options)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let url = r.body["webhooks"]["orders"]["url"]
        .as_str()
        .unwrap()
        .to_string();

    // The KeyCRM trigger «Зміна статусу замовлення» with every status, «Відправити Webhook».
    w.sim
        .set_webhook_url(KEY, "order.change_order_status", Some(url));
    w.place_order("A-1").await;
    w.drain_orders().await;
    let kc = pushed(&w, "A-1").await;
    let in_keycrm = w
        .sim
        .orders(KEY)
        .into_iter()
        .find(|o| o["id"] == kc)
        .unwrap();
    assert_eq!(in_keycrm["status_id"], 1, "\"new\" became KeyCRM status 1");

    // Two KeyCRM statuses of one group both reach the shop as "shipped" (before, only one
    // KeyCRM status could be mapped per shop status: the other arrived as unmapped).
    let conn_id = w.stored().await.id;
    for (status, want) in [
        (7, "shipped"),
        (8, "shipped"),
        (22, "shipped"),
        (21, "cancelled"),
    ] {
        next_second().await;
        w.sim.change_order_status(KEY, kc, status).await.unwrap();
        w.eventually(&format!("KeyCRM status {status} recorded"), || async {
            OrderLedger::get(&w.table, &conn_id, "A-1")
                .await
                .unwrap()
                .is_some_and(|e| e.keycrm_status_id == Some(status))
        })
        .await;
        wait_shop_status(&w, "A-1", want).await;
    }
    let status = StatusJournal::status(&w.table, &w.stored().await.id)
        .await
        .unwrap();
    assert_eq!(status.counters.get("webhooks_applied"), Some(&4));
    assert_eq!(
        status
            .counters
            .get("webhooks_ignored")
            .copied()
            .unwrap_or(0),
        0,
        "no status change arrived unmapped"
    );
}

#[tokio::test]
async fn settings_saved_before_both_directions_keep_working() {
    let w = world(&[(KEY, 32)]).await;
    w.connect(KEY).await;
    let conn = w.stored().await;

    // The connection document as the connector stored it before: a one-way status list and
    // a hash of a random webhook token.
    let (legacy_token, legacy_hash) = tokens::generate();
    let doc = format!(
        r#"{{"id":"{id}","shop_id":"{shop}","active":true,"keycrm_base_url":"{base}","key_mask":"{mask}","key_fingerprint":"{fp}","secret_name":"{secret}","settings":{{"sync_products":false,"sync_categories":false,"category_filter":[],"match_key":"sku","new_products":"hide","existing_products":"update","missing_products":"nothing","vanish_guard":0.3,"order_sync":"orders","source_id":1,"status_map":[{{"shop_status":"new","keycrm_status_id":1}},{{"shop_status":"paid","keycrm_status_id":3}},{{"shop_status":"shipped","keycrm_status_id":7}},{{"shop_status":"done","keycrm_status_id":7}}],"pipeline_status_map":[],"default_pipeline_id":null,"addon_fields":[],"payment_map":[{{"shop_method":"cod","keycrm_method_id":1}}],"delivery_map":[]}},"webhook_tokens":{{"orders":"{hash}","cards":null}},"version":7,"created_at":"2026-01-10T09:00:00Z","updated_at":"2026-02-01T12:30:00Z"}}"#,
        id = conn.id,
        shop = SHOP,
        base = conn.keycrm_base_url,
        mask = conn.key_mask,
        fp = conn.key_fingerprint,
        secret = conn.secret_name,
        hash = legacy_hash,
    );
    use aws_sdk_dynamodb::types::AttributeValue as A;
    w.table
        .client
        .update_item()
        .table_name(&w.table.name)
        .key("pk", A::S(format!("CONN#{}", conn.id)))
        .key("sk", A::S("META".into()))
        .update_expression("SET #d = :d, #v = :v")
        .expression_attribute_names("#d", "doc")
        .expression_attribute_names("#v", "version")
        .expression_attribute_values(":d", A::S(doc))
        .expression_attribute_values(":v", A::N("7".into()))
        .send()
        .await
        .unwrap();

    // It reads as the two directions; the URL cannot be shown, a rotation offers one.
    let r = w.call("GET", "", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let s = &r.body["settings"];
    assert!(s.get("status_map").is_none());
    assert_eq!(
        s["order_statuses"]["to_keycrm"],
        json!([{"shop_status": "new", "keycrm_status_id": 1},
               {"shop_status": "paid", "keycrm_status_id": 3},
               {"shop_status": "shipped", "keycrm_status_id": 7},
               {"shop_status": "done", "keycrm_status_id": 7}])
    );
    assert_eq!(
        s["order_statuses"]["from_keycrm"],
        json!([{"keycrm_status_id": 1, "shop_status": "new"},
               {"keycrm_status_id": 3, "shop_status": "paid"},
               {"keycrm_status_id": 7, "shop_status": "shipped"}]),
        "the first shop status listed per KeyCRM status, as before"
    );
    assert!(r.body["webhooks"]["orders"]["url"].is_null());
    assert_eq!(r.body["webhooks"]["orders"]["rotate_to_show"], true);

    // It behaves as before: the old URL still brings statuses back, and a KeyCRM status
    // listed for two shop statuses ("shipped" and "done" -> 7) comes back as the first.
    let legacy_url = format!(
        "{}/v1/webhooks/keycrm/{}/{legacy_token}",
        w.webhook_base, conn.id
    );
    w.sim
        .set_webhook_url(KEY, "order.change_order_status", Some(legacy_url));
    w.place_order("L-1").await;
    w.drain_orders().await;
    let kc = pushed(&w, "L-1").await;
    next_second().await;
    w.sim.change_order_status(KEY, kc, 3).await.unwrap();
    wait_shop_status(&w, "L-1", "paid").await;
    next_second().await;
    w.sim.change_order_status(KEY, kc, 7).await.unwrap();
    wait_shop_status(&w, "L-1", "shipped").await;

    // Saved again, it is written in the new shape only.
    let settings = r.body["settings"].clone();
    let saved = w.save(settings).await;
    // (The old many-to-one push list is contradictory under the two-direction rules: the
    // page shows what to fix.)
    assert_eq!(saved.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(saved.fields().iter().any(|(f, c, _)| f
        == "order_statuses.to_keycrm[3].keycrm_status_id"
        && c == "contradicts_from_keycrm"));
    let mut fixed = r.body["settings"].clone();
    fixed["order_statuses"]["to_keycrm"][3]["keycrm_status_id"] = json!(12);
    fixed["order_statuses"]["from_keycrm"]
        .as_array_mut()
        .unwrap()
        .push(json!({"keycrm_status_id": 12, "shop_status": "done"}));
    let saved = w.save(fixed).await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.body);
    let item = w
        .table
        .client
        .get_item()
        .table_name(&w.table.name)
        .key("pk", A::S(format!("CONN#{}", conn.id)))
        .key("sk", A::S("META".into()))
        .send()
        .await
        .unwrap();
    let raw = item.item().unwrap()["doc"].as_s().unwrap().to_string();
    assert!(!raw.contains("status_map") && raw.contains("\"order_statuses\""));

    // Rotating gives a URL that can be shown; the old one dies at once.
    let r = w.call("POST", "/webhook-tokens/rotate", None).await;
    let new_url = r.body["webhooks"]["orders"]["url"]
        .as_str()
        .unwrap()
        .to_string();
    let c = ConnectionStore::get(&w.table, &conn.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        tokens::authenticate(&w.token_key, &c, &token_of(&new_url)),
        Some(store::WebhookKind::Orders)
    );
    assert_eq!(tokens::authenticate(&w.token_key, &c, &legacy_token), None);
}

#[tokio::test]
async fn pipelines_name_the_card_field_to_create_in_the_merchants_language() {
    let w = world(&[(KEY, 33)]).await;
    w.connect(KEY).await;
    let options = w.options().await;
    let pipelines = options["keycrm"]["pipelines"].as_array().unwrap();
    // Every status of every pipeline leads to a shop status; the shop's statuses go to the
    // first pipeline.
    let mut from = Vec::new();
    for p in pipelines {
        for (i, s) in p["statuses"].as_array().unwrap().iter().enumerate() {
            let shop = ["new", "paid", "shipped", "done", "cancelled"][i.min(4)];
            from.push(json!({"pipeline_id": p["pipeline"]["id"], "status_id": s["id"], "shop_status": shop}));
        }
    }
    let p1 = &pipelines[0];
    let first_status = p1["statuses"][0]["id"].clone();
    let order_field = options["keycrm"]["order_fields"][0]["uuid"].clone();
    let card_field = options["keycrm"]["lead_fields"][0]["uuid"].clone();
    let mut settings = json!({
        "order_sync": "pipelines",
        "source_id": 1,
        "card_statuses": {
            "from_keycrm": from,
            "to_keycrm": [{"shop_status": "new", "pipeline_id": p1["pipeline"]["id"], "status_id": first_status}]
        },
        // The article says «Сутність: Замовлення»: right for orders, wrong for cards.
        "addon_fields": [{"addon_id": "gift_wrap", "field_uuid": order_field}],
        "payment_map": [{"shop_method": "cod", "keycrm_method_id": 1}]
    });
    let v = w.version().await;
    let body = json!({"version": v, "settings": settings.clone()});
    let uk = w
        .call_lang("PUT", "/settings", Some(body.clone()), Some("uk"))
        .await;
    assert_eq!(uk.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(uk.content_language.as_deref(), Some("uk"));
    let (field, code, message) = uk.fields().remove(0);
    assert_eq!(
        (field.as_str(), code.as_str()),
        ("addon_fields[0].field_uuid", "order_field_in_pipelines")
    );
    for words in [
        "Налаштування → Додатково",
        "Користувацькі поля",
        "Сутність",
        "картку воронки",
    ] {
        assert!(message.contains(words), "{words} in {message}");
    }
    assert!(
        uk.message().contains("нічого не збережено"),
        "{}",
        uk.message()
    );
    let en = w.call_lang("PUT", "/settings", Some(body), None).await;
    let (_, code, message) = en.fields().remove(0);
    assert_eq!(code, "order_field_in_pipelines");
    assert!(
        message.contains("card field") && message.contains("Entity"),
        "{message}"
    );
    assert_eq!(en.content_language.as_deref(), Some("en"));

    // With a card field it saves, and the card webhook URL is there to copy.
    settings["addon_fields"][0]["field_uuid"] = card_field;
    let r = w.save(settings).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let cards_url = r.body["webhooks"]["cards"]["url"]
        .as_str()
        .unwrap()
        .to_string();
    w.sim
        .set_webhook_url(KEY, "lead.change_lead_status", Some(cards_url));
    w.place_order("P-1").await;
    w.drain_orders().await;
    let conn = w.stored().await;
    let card = OrderLedger::get(&w.table, &conn.id, "P-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(card.target, Target::Card);
    // A status of the second pipeline maps too (any pipeline and status pair).
    let p2 = &pipelines[1];
    let s2 = p2["statuses"][1]["id"].as_i64().unwrap();
    next_second().await;
    w.sim
        .change_card_status(KEY, card.keycrm_id.unwrap(), s2)
        .await
        .unwrap();
    wait_shop_status(&w, "P-1", "paid").await;
}
