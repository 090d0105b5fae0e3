//! The article's «Налаштування синхронізації» and «Додаткові налаштування» blocks, against the
//! whole connector (admin API, catalog-sync, order-push; DynamoDB/SQS on the emulator; the
//! KeyCRM simulator; the demo shop):
//!
//! - switching «Синхронізувати товари / категорії» on (or activating the connection) starts a
//!   full sync at once; a dry run previews proposed settings; orders skipped while the
//!   connection was off are pushed on request, once;
//! - «Не оновлювати (тільки створювати нові)» never links an existing product; categories
//!   deleted in KeyCRM get the «Відсутні товари» policy under the vanish guard.

use axum::http::StatusCode;
use e2e_tests::api::assert_api_error;
use e2e_tests::article::{world, World, SHOP};
use keycrm_sim::CatalogMutation;
use serde_json::{json, Value};
use shop::ShopProduct;
use std::collections::BTreeSet;
use store::{LedgerState, OrderLedger};

const KEY: &str = "kc-article-flows-3c2b1a09f8e7d6c5b4a3928170f6e5d4";

fn order_settings() -> Value {
    json!({
        "order_sync": "orders",
        "source_id": 1,
        "order_statuses": {
            "from_keycrm": [{"keycrm_status_id": 1, "shop_status": "new"}],
            "to_keycrm": [{"shop_status": "new", "keycrm_status_id": 1}]
        },
        "payment_map": [{"shop_method": "cod", "keycrm_method_id": 1}],
        "delivery_map": [{"shop_method": "nova_poshta", "keycrm_service_id": 3}]
    })
}

fn with(mut base: Value, extra: Value) -> Value {
    if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    base
}

async fn state(w: &World, order: &str) -> LedgerState {
    OrderLedger::get(&w.table, &w.stored().await.id, order)
        .await
        .unwrap()
        .expect("ledger entry")
        .state
}

#[tokio::test]
async fn turning_catalog_sync_on_starts_a_full_sync_at_once() {
    let w = world(&[(KEY, 71)]).await;
    w.connect(KEY).await;

    // Saved with both switches off: nothing to start.
    let r = w.save(json!({"sync_products": false})).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.get("sync_started").is_none());
    assert!(w.take_sync_jobs().await.is_empty());

    // «Синхронізувати товари» on: the full sync starts now, not at night; the status says so.
    let r = w.save(json!({"sync_products": true})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let run_id = r.body["sync_started"]["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(r.body["sync_started"]["kind"], "full");
    let status = w.call("GET", "/status", None).await;
    assert_eq!(status.body["running_sync"]["run_id"], run_id.as_str());
    assert_eq!(status.body["running_sync"]["state"], "queued");
    assert!(status.body["message"].as_str().unwrap().contains("queued"));

    // Off and on again while that run is still queued: no second one.
    w.save(json!({"sync_products": false})).await;
    let r = w.save(json!({"sync_products": true})).await;
    assert!(r.body.get("sync_started").is_none(), "{}", r.body);
    let jobs = w.take_sync_jobs().await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].job.run_id.as_deref(), Some(run_id.as_str()));
    assert!(!jobs[0].job.dry_run);
    let run = w.run_sync(&jobs[0]).await;
    assert_eq!(
        (run.run_id.as_str(), run.state.as_str()),
        (run_id.as_str(), "completed")
    );
    assert!(
        !w.shop.products(SHOP).is_empty(),
        "the catalog is in the shop"
    );
    let status = w.call("GET", "/status", None).await;
    assert!(status.body["running_sync"].is_null());
    assert!(status.body["last_sync"]["full"].is_object());

    // Switched off, «Синхронізувати категорії» turned on meanwhile: nothing runs until the
    // connection is activated, which starts it.
    w.call("PATCH", "", Some(json!({"active": false}))).await;
    let r = w
        .save(json!({"sync_products": true, "sync_categories": true}))
        .await;
    assert!(r.body.get("sync_started").is_none());
    assert!(w.take_sync_jobs().await.is_empty());
    let r = w.call("PATCH", "", Some(json!({"active": true}))).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body["sync_started"]["run_id"].is_string(), "{}", r.body);
    let jobs = w.take_sync_jobs().await;
    assert_eq!(jobs.len(), 1);
    let run = w.run_sync(&jobs[0]).await;
    assert_eq!(run.state, "completed");
    assert!(
        !w.shop.category_list(SHOP).is_empty(),
        "categories came too"
    );
}

#[tokio::test]
async fn a_dry_run_previews_proposed_settings_without_saving_them() {
    let w = world(&[(KEY, 72)]).await;
    w.connect(KEY).await;
    let r = w
        .save(json!({"sync_products": true, "missing_products": "nothing"}))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let jobs = w.take_sync_jobs().await;
    w.run_sync(&jobs[0]).await;
    let gone = w.sim.catalog(KEY).products[0].id;
    w.sim
        .catalog_mutate(KEY, CatalogMutation::Archive { product_id: gone });
    let before: Vec<ShopProduct> = w.shop.products(SHOP);

    // What would «Відсутні товари: Приховувати» do? Previewed, not saved.
    let proposed = json!({"sync_products": true, "missing_products": "hide"});
    let r = w
        .call(
            "POST",
            "/sync",
            Some(json!({"kind": "full", "dry_run": true, "settings": proposed})),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let jobs = w.take_sync_jobs().await;
    assert_eq!(jobs.len(), 1);
    assert!(jobs[0].job.dry_run);
    assert_eq!(
        jobs[0].settings.as_ref().map(|s| s.missing_products),
        Some(mapping::settings::MissingProductPolicy::Hide)
    );
    let run = w.run_sync(&jobs[0]).await;
    assert_eq!(run.state, "completed", "{run:?}");
    assert!(run.dry_run);
    assert_eq!(run.counts.get("hide"), Some(&1), "{:?}", run.counts);
    assert_eq!(w.shop.products(SHOP), before, "nothing written");
    assert_eq!(
        w.stored().await.settings.missing_products,
        mapping::settings::MissingProductPolicy::Nothing,
        "nothing saved"
    );

    // Proposed settings are for dry runs, and must be settings a save would accept.
    let r = w
        .call(
            "POST",
            "/sync",
            Some(json!({"kind": "full", "settings": {"sync_products": true}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.fields()[0].0, "settings");
    assert_eq!(r.fields()[0].1, "dry_run_only");
    let r = w
        .call(
            "POST",
            "/sync",
            Some(json!({"kind": "full", "dry_run": true,
                        "settings": {"sync_products": true, "category_filter": [987654]}})),
        )
        .await;
    assert_api_error(
        r.status,
        &r.body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_settings",
        &[KEY],
    );
    assert_eq!(r.fields()[0].0, "category_filter[0]");
    assert!(w.take_sync_jobs().await.is_empty(), "nothing queued");
}

#[tokio::test]
async fn orders_skipped_while_the_connection_was_off_are_pushed_once_on_request() {
    let w = world(&[(KEY, 73)]).await;
    w.connect(KEY).await;

    // Orders placed while order sync is «Не синхронізувати», and while switched off.
    for o in ["K-1", "K-2", "K-3"] {
        w.place_order(o).await;
    }
    w.drain_orders().await;
    w.call("PATCH", "", Some(json!({"active": false}))).await;
    let r = w.save(order_settings()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = w.call("POST", "/orders/push-skipped", None).await;
    assert_api_error(
        r.status,
        &r.body,
        StatusCode::CONFLICT,
        "connection_inactive",
        &[KEY],
    );
    w.place_order("K-4").await;
    w.drain_orders().await;
    for o in ["K-1", "K-2", "K-3", "K-4"] {
        assert_eq!(state(&w, o).await, LedgerState::Skipped, "{o}");
    }
    w.call("PATCH", "", Some(json!({"active": true}))).await;

    // Two clicks at once: every skipped order is queued once between them.
    let (a, b) = tokio::join!(
        w.call("POST", "/orders/push-skipped", None),
        w.call("POST", "/orders/push-skipped", Some(json!({})))
    );
    assert_eq!(
        (a.status, b.status),
        (StatusCode::ACCEPTED, StatusCode::ACCEPTED)
    );
    // Each order is taken from the skipped list by one conditional write. DynamoDB serializes
    // two such writes on one item; the emulator (moto) does not, so a click racing another may
    // re-queue an order there. What must hold everywhere is below: every skipped order queued,
    // and each in KeyCRM once (order-push's ledger claim decides).
    let queued = a.body["queued"].as_u64().unwrap() + b.body["queued"].as_u64().unwrap();
    assert!((4..=8).contains(&queued), "{} / {}", a.body, b.body);
    w.drain_orders().await;
    for o in ["K-1", "K-2", "K-3", "K-4"] {
        assert_eq!(state(&w, o).await, LedgerState::Created, "{o}");
    }
    let in_keycrm: Vec<String> = w
        .sim
        .orders(KEY)
        .iter()
        .map(|o| o["source_uuid"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(in_keycrm.len(), 4, "each once: {in_keycrm:?}");
    let r = w.call("POST", "/orders/push-skipped", None).await;
    assert_eq!(
        (r.body["queued"].clone(), r.body["more"].clone()),
        (json!(0), json!(false))
    );

    // «since»: only orders the connector received from then on.
    let r = w
        .save(with(order_settings(), json!({"order_sync": "none"})))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = w.call("POST", "/orders/push-skipped", None).await;
    assert_api_error(
        r.status,
        &r.body,
        StatusCode::CONFLICT,
        "order_sync_off",
        &[KEY],
    );
    w.place_order("K-5").await;
    w.drain_orders().await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let since = chrono::Utc::now();
    w.place_order("K-6").await;
    w.drain_orders().await;
    w.save(order_settings()).await;
    let r = w
        .call(
            "POST",
            "/orders/push-skipped",
            Some(json!({"since": since.to_rfc3339()})),
        )
        .await;
    assert_eq!(r.body["queued"], 1, "{}", r.body);
    w.drain_orders().await;
    assert_eq!(state(&w, "K-6").await, LedgerState::Created);
    assert_eq!(state(&w, "K-5").await, LedgerState::Skipped);
    let r = w
        .call(
            "POST",
            "/orders/push-skipped",
            Some(json!({"since": "yesterday"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.fields()[0].0, "since");
}

#[tokio::test]
async fn create_only_never_links_an_existing_shop_product_not_even_by_external_id() {
    let w = world(&[(KEY, 74)]).await;
    w.connect(KEY).await;
    let cat = w.sim.catalog(KEY);
    let p = &cat.products[0];
    let offer = cat.offers.iter().find(|o| o.product_id == p.id).unwrap();
    // The merchant's own product, imported earlier with the KeyCRM id as its external id and
    // the same SKU.
    let mine = ShopProduct {
        id: "merchant-1".into(),
        name: "Моя власна картка товару".into(),
        sku: Some(offer.sku.clone()),
        external_id: Some(p.id.to_string()),
        visible: true,
        available: true,
        variants: vec![shop::ShopVariant {
            id: "merchant-1-v".into(),
            sku: Some(offer.sku.clone()),
            price: Some(rust_decimal::Decimal::from(1)),
            available: true,
            ..shop::ShopVariant::default()
        }],
        ..ShopProduct::default()
    };
    w.shop.add_product(SHOP, mine.clone());

    // «Оновлення товарів: Не оновлювати (тільки створювати нові)», «Нові товари: Опублікувати».
    let r = w
        .save(json!({"sync_products": true, "match_key": "create_only", "new_products": "publish"}))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let jobs = w.take_sync_jobs().await;
    let run = w.run_sync(&jobs[0]).await;
    assert_eq!(run.state, "completed");
    assert_eq!(w.shop.product(SHOP, "merchant-1"), Some(mine), "untouched");
    let copies: Vec<ShopProduct> = w
        .shop
        .products(SHOP)
        .into_iter()
        .filter(|s| s.external_id.as_deref() == Some(&p.id.to_string()))
        .collect();
    assert_eq!(
        copies.len(),
        2,
        "a new product was created next to the merchant's"
    );
    assert!(copies.iter().any(|s| s.id != "merchant-1" && s.visible));
    assert_eq!(run.counts.get("update"), None, "{:?}", run.counts);
    assert_eq!(run.counts.get("link"), None, "{:?}", run.counts);
}

#[tokio::test]
async fn categories_gone_from_keycrm_get_the_missing_products_policy_under_the_guard() {
    let w = world(&[(KEY, 75)]).await;
    w.connect(KEY).await;
    for name in ["Літній розпродаж", "Подарунки", "Новинки"] {
        w.sim.catalog_mutate(
            KEY,
            CatalogMutation::AddCategory {
                name: name.into(),
                parent_id: None,
            },
        );
    }
    let added: Vec<i64> = w
        .sim
        .catalog(KEY)
        .categories
        .iter()
        .rev()
        .take(3)
        .map(|c| c.id)
        .collect();
    let r = w
        .save(json!({"sync_categories": true, "missing_products": "hide", "vanish_guard": 0.5}))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let jobs = w.take_sync_jobs().await;
    w.run_sync(&jobs[0]).await;
    let shop_id_of = |w: &World, name: &str| {
        w.shop
            .category_list(SHOP)
            .into_iter()
            .find(|c| c.name == name)
            .map(|c| c.id)
            .unwrap()
    };
    let summer = shop_id_of(&w, "Літній розпродаж");
    assert!(!w.shop.category_hidden(SHOP, &summer));

    // Deleted in KeyCRM: hidden at the end of the next complete run.
    w.sim.catalog_mutate(
        KEY,
        CatalogMutation::DeleteCategory {
            category_id: added[2],
        },
    );
    let r = w.call("POST", "/sync", Some(json!({"kind": "full"}))).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let run = w.run_sync(&w.take_sync_jobs().await[0]).await;
    assert_eq!(run.state, "completed", "{run:?}");
    assert_eq!(
        run.counts.get("category_hide"),
        Some(&1),
        "{:?}",
        run.counts
    );
    assert!(w.shop.category_hidden(SHOP, &summer));
    let others: BTreeSet<bool> = w
        .shop
        .category_list(SHOP)
        .iter()
        .filter(|c| c.id != summer)
        .map(|c| w.shop.category_hidden(SHOP, &c.id))
        .collect();
    assert_eq!(others, BTreeSet::from([false]));

    // More vanishing than the guard allows: refused, nothing hidden.
    w.save(json!({"sync_categories": true, "missing_products": "hide", "vanish_guard": 0.0}))
        .await;
    w.take_sync_jobs().await;
    w.sim.catalog_mutate(
        KEY,
        CatalogMutation::DeleteCategory {
            category_id: added[1],
        },
    );
    w.call("POST", "/sync", Some(json!({"kind": "full"}))).await;
    let run = w.run_sync(&w.take_sync_jobs().await[0]).await;
    assert_eq!(run.state, "refused", "{run:?}");
    assert!(run.message.as_deref().unwrap_or("").contains("Categories"));
    assert!(!w.shop.category_hidden(SHOP, &shop_id_of(&w, "Подарунки")));

    // «Нічого не робити»: left as it is.
    w.save(json!({"sync_categories": true, "missing_products": "nothing"}))
        .await;
    w.take_sync_jobs().await;
    w.call("POST", "/sync", Some(json!({"kind": "full"}))).await;
    let run = w.run_sync(&w.take_sync_jobs().await[0]).await;
    assert_eq!(run.state, "completed");
    assert!(!w.shop.category_hidden(SHOP, &shop_id_of(&w, "Подарунки")));
}
