//! Conformance of the KeyCRM simulator with KeyCRM's OpenAPI document.
//!
//! Starts `keycrm-sim`, calls every endpoint it implements (successes and the error
//! responses the spec documents), and validates each body against the spec's response schema
//! for that path/method/status. The spec is imperfect; where live KeyCRM is known (or, marked
//! [I], inferred) to differ, live wins and the deviation is listed in `EXCEPTIONS` below.
//! Anything else that violates the spec fails the test.
//!
//! The spec path can be overridden with the `KEYCRM_OPENAPI` environment variable.

use std::collections::BTreeMap;

use e2e_tests::openapi::{default_spec_path, Allow, Exception, OpenApi};
use keycrm_sim::{AccountSpec, SimConfig, SimHandle};
use serde_json::{json, Value};

const KEY: &str = "conformance-key";
const NO_LEADS_KEY: &str = "conformance-no-leads";

const NUMBERISH: &[&str] = &["array", "number", "integer", "boolean", "string"];

/// Named deviations of live KeyCRM from its OpenAPI document (see keycrm-api.md).
const EXCEPTIONS: &[Exception] = &[
    // ---- pagination ----
    Exception { at: "PaginatedResponse.next_page_url", allow: Allow::Null, reason: "live returns null on the last page (keycrm-api.md §4, DVP sample)" },
    // ---- catalog ----
    Exception { at: "*.barcode", allow: Allow::Null, reason: "live returns barcode null when unset (DVP offer sample)" },
    Exception { at: "*.weight", allow: Allow::Null, reason: "live returns null dimensions when unset (DVP sample)" },
    Exception { at: "*.length", allow: Allow::Null, reason: "live returns null dimensions when unset (DVP sample)" },
    Exception { at: "*.width", allow: Allow::Null, reason: "live returns null dimensions when unset (DVP sample)" },
    Exception { at: "*.height", allow: Allow::Null, reason: "live returns null dimensions when unset (DVP sample)" },
    Exception { at: "Category.parent_id", allow: Allow::Null, reason: "parent_id is null for root categories (keycrm-api.md §6.4)" },
    Exception { at: "ProductWithIncludes.custom_fields[].value", allow: Allow::Types(NUMBERISH), reason: "select values are arrays of strings, numbers stay numbers (keycrm-api.md §6.5)" },
    // ---- pipelines ----
    Exception { at: "Pipeline.target_id", allow: Allow::Null, reason: "request pipelines have no target entity [I]" },
    Exception { at: "GET /pipelines/cards/{cardId} 200", allow: Allow::Schema("#/components/schemas/PipelineCardWithIncludes"), reason: "live returns the bare card object, the spec labels it paginated (keycrm-api.md §6.3, ZEN)" },
    Exception { at: "PipelineCard.communicate_at", allow: Allow::Null, reason: "null until a next contact is planned (card row, keycrm-api.md §7.4)" },
    Exception { at: "PipelineCardWithIncludes.communicate_at", allow: Allow::Null, reason: "null until a next contact is planned (card row, keycrm-api.md §7.4)" },
    Exception { at: "PipelineCardWithIncludes.contact.social_name", allow: Allow::Null, reason: "contacts created via the API have no social profile [I]" },
    Exception { at: "PipelineCardWithIncludes.contact.social_id", allow: Allow::Null, reason: "contacts created via the API have no social profile [I]" },
    Exception { at: "PipelineCardWithIncludes.manager", allow: Allow::Null, reason: "no responsible manager assigned [I]" },
    Exception { at: "PipelineCardWithIncludes.products[].picture", allow: Allow::Types(&["array", "object"]), reason: "line picture reads back as [] or {thumbnail} (keycrm-api.md §9.6)" },
    Exception { at: "PipelineCardWithIncludes.products[].product_id", allow: Allow::Null, reason: "one-off lines not in the catalog have no product" },
    Exception { at: "PipelineCardWithIncludes.products[].sku", allow: Allow::Null, reason: "one-off lines may be sent without SKU" },
    Exception { at: "PipelineCardWithIncludes.products[].offer", allow: Allow::Null, reason: "one-off lines are not linked to an offer" },
    Exception { at: "PipelineCardWithIncludes.custom_fields[].value", allow: Allow::Types(NUMBERISH), reason: "select values are arrays of strings, numbers stay numbers (keycrm-api.md §6.5)" },
    // ---- orders (POST/PUT return Order, GETs return OrderWithIncludes) ----
    Exception { at: "Order.promocode", allow: Allow::Null, reason: "null when no promo code (ORDERSAMPLE)" },
    Exception { at: "Order.shipping_price", allow: Allow::Null, reason: "null when not sent (ORDERSAMPLE)" },
    Exception { at: "Order.wrap_price", allow: Allow::Null, reason: "null when not sent (ORDERSAMPLE)" },
    Exception { at: "Order.taxes", allow: Allow::Null, reason: "null when not sent (ORDERSAMPLE)" },
    Exception { at: "Order.closed_at", allow: Allow::Null, reason: "null until the order is closed (ORDERSAMPLE)" },
    Exception { at: "Order.last_synced_at", allow: Allow::Null, reason: "null for orders not synced from a marketplace [I]" },
    Exception { at: "OrderWithIncludes.promocode", allow: Allow::Null, reason: "null when no promo code (ORDERSAMPLE)" },
    Exception { at: "OrderWithIncludes.shipping_price", allow: Allow::Null, reason: "null when not sent (ORDERSAMPLE)" },
    Exception { at: "OrderWithIncludes.wrap_price", allow: Allow::Null, reason: "null when not sent (ORDERSAMPLE)" },
    Exception { at: "OrderWithIncludes.taxes", allow: Allow::Null, reason: "null when not sent (ORDERSAMPLE)" },
    Exception { at: "OrderWithIncludes.closed_at", allow: Allow::Null, reason: "null until the order is closed (ORDERSAMPLE)" },
    Exception { at: "OrderWithIncludes.last_synced_at", allow: Allow::Null, reason: "null for orders not synced from a marketplace [I]" },
    Exception { at: "OrderWithIncludes.products[].picture", allow: Allow::Types(&["array", "object"]), reason: "picture reads back as [] or {\"thumbnail\": url} (keycrm-api.md §9.6, JAVA, ORDERSAMPLE)" },
    Exception { at: "OrderWithIncludes.products[].comment", allow: Allow::Null, reason: "null when no line comment (ORDERSAMPLE)" },
    Exception { at: "OrderWithIncludes.products[].product_status_id", allow: Allow::Null, reason: "null when no line status (ORDERSAMPLE)" },
    Exception { at: "OrderWithIncludes.products[].sku", allow: Allow::Null, reason: "one-off lines may be sent without SKU" },
    Exception { at: "OrderWithIncludes.products[].offer", allow: Allow::Null, reason: "one-off lines (SKU not in the catalog) are not linked to an offer" },
    Exception { at: "OrderWithIncludes.manager", allow: Allow::Null, reason: "no responsible manager assigned [I]" },
    Exception { at: "OrderWithIncludes.marketing", allow: Allow::Null, reason: "no UTM data sent [I]" },
    Exception { at: "OrderWithIncludes.shipping", allow: Allow::Null, reason: "shipping is null when the order has none (ORDERSAMPLE)" },
    Exception { at: "OrderWithIncludes.shipping.shipping_secondary_line", allow: Allow::Null, reason: "null when not sent [I]" },
    Exception { at: "OrderWithIncludes.shipping.shipping_date_actual", allow: Allow::Null, reason: "null until a shipping date is known [I]" },
    Exception { at: "OrderWithIncludes.payments[].fiscal_result", allow: Allow::Types(&["array"]), reason: "live fiscal_result is [] (keycrm-api.md §6.1.4, WHDOC)" },
    Exception { at: "OrderWithIncludes.custom_fields[].value", allow: Allow::Types(NUMBERISH), reason: "select values are arrays of strings, numbers stay numbers (keycrm-api.md §6.5)" },
];

/// Local shapes for responses the spec documents without a body schema (401/404/422/429,
/// 400 on unknown filters): Laravel's JSON error bodies.
fn local_error_schema(status: u16) -> Value {
    if status == 422 {
        json!({"type": "object", "required": ["message", "errors"], "properties": {
            "message": {"type": "string"},
            "errors": {"type": "object"}
        }})
    } else {
        json!({"type": "object", "required": ["message"], "properties": {"message": {"type": "string"}}})
    }
}

const ENVELOPE_KEYS: [&str; 12] = [
    "current_page",
    "data",
    "first_page_url",
    "from",
    "last_page",
    "last_page_url",
    "next_page_url",
    "path",
    "per_page",
    "prev_page_url",
    "to",
    "total",
];

struct Checker {
    api: OpenApi,
    http: reqwest::Client,
    base: String,
    validated_spec: usize,
    validated_local: usize,
    per_operation: BTreeMap<String, usize>,
    violations: Vec<String>,
    used: BTreeMap<&'static str, usize>,
}

impl Checker {
    /// Calls the simulator and validates the body. `path` is relative to `/v1` (or an
    /// absolute URL from a page link); `template` is the spec's path template.
    async fn call(
        &mut self,
        key: &str,
        method: &str,
        template: &str,
        path: &str,
        body: Option<Value>,
        expect: u16,
    ) -> Value {
        let url = if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{}", self.base, path)
        };
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut rb = self
            .http
            .request(m, &url)
            .header("Accept", "application/json")
            .bearer_auth(key);
        if let Some(b) = &body {
            rb = rb.json(b);
        }
        let resp = rb.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        let value: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{method} {url}: non-JSON body ({e}): {text}"));
        assert_eq!(
            status, expect,
            "{method} {url}: unexpected status, body {text}"
        );

        let op = format!("{method} {template} {status}");
        let root_exception = EXCEPTIONS.iter().any(|e| e.at == op);
        let report =
            if root_exception || self.api.response_schema(template, method, status).is_some() {
                self.validated_spec += 1;
                self.api
                    .validate_response(template, method, status, &value, EXCEPTIONS)
                    .expect("validation runs")
            } else {
                assert!(
                    status >= 400,
                    "{op}: a success response must have a schema in the spec"
                );
                self.validated_local += 1;
                let r = self
                    .api
                    .validate(
                        &local_error_schema(status),
                        &format!("local {status}"),
                        &value,
                        &[],
                    )
                    .expect("validation runs");
                if status == 422 {
                    let errors = value["errors"].as_object().expect("errors object");
                    assert!(!errors.is_empty(), "{op}: empty errors");
                    for (k, v) in errors {
                        assert!(
                            v.as_array()
                                .is_some_and(|a| !a.is_empty() && a.iter().all(Value::is_string)),
                            "{op}: errors.{k} must be a non-empty array of strings"
                        );
                    }
                }
                r
            };
        *self.per_operation.entry(op.clone()).or_default() += 1;
        for (k, n) in report.exceptions_used {
            *self.used.entry(k).or_default() += n;
        }
        for v in report.violations {
            self.violations.push(format!("{op} [{url}]: {v}"));
        }
        if let Some(obj) = value.as_object().filter(|o| o.contains_key("current_page")) {
            let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
            keys.sort_unstable();
            if keys != ENVELOPE_KEYS.to_vec() {
                self.violations.push(format!(
                    "{op} [{url}]: envelope keys {keys:?} are not the 12 live keys"
                ));
            }
        }
        value
    }

    /// GETs every page of a paginated endpoint, validating each.
    async fn all_pages(&mut self, template: &str, first: &str) -> Vec<Value> {
        let mut items = Vec::new();
        let mut next = Some(first.to_string());
        let mut guard = 0;
        while let Some(url) = next {
            let page = self.call(KEY, "GET", template, &url, None, 200).await;
            items.extend(page["data"].as_array().cloned().unwrap_or_default());
            next = page["next_page_url"].as_str().map(str::to_string);
            guard += 1;
            assert!(guard < 100, "too many pages for {first}");
        }
        items
    }
}

async fn start(config: SimConfig) -> SimHandle {
    keycrm_sim::start(config, ([127, 0, 0, 1], 0).into())
        .await
        .expect("simulator starts")
}

#[tokio::test]
async fn simulator_conforms_to_openapi() {
    let spec_path = default_spec_path();
    let api = OpenApi::load(&spec_path).unwrap_or_else(|e| {
        panic!(
            "cannot load {} ({e}); set KEYCRM_OPENAPI",
            spec_path.display()
        )
    });
    let sim = start(SimConfig {
        accounts: vec![
            AccountSpec {
                api_key: KEY.into(),
                seed: 42,
                products: 60,
                pipelines_enabled: true,
            },
            AccountSpec {
                api_key: NO_LEADS_KEY.into(),
                seed: 43,
                products: 10,
                pipelines_enabled: false,
            },
        ],
        rate_limit_per_minute: 0,
        time_scale: 1.0,
        public_base_url: None,
    })
    .await;
    let mut ck = Checker {
        api,
        http: reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client"),
        base: sim.base_url(),
        validated_spec: 0,
        validated_local: 0,
        per_operation: BTreeMap::new(),
        violations: Vec::new(),
        used: BTreeMap::new(),
    };

    // ---- dictionaries ----
    for p in [
        "/order/source",
        "/order/status",
        "/order/payment-method",
        "/order/delivery-service",
    ] {
        ck.all_pages(p, &format!("{p}?limit=4")).await;
        ck.call(KEY, "GET", p, &format!("{p}?sort=-id"), None, 200)
            .await;
    }
    ck.call(
        KEY,
        "GET",
        "/custom-fields",
        "/custom-fields?include=options",
        None,
        200,
    )
    .await;
    ck.call(
        KEY,
        "GET",
        "/custom-fields",
        "/custom-fields?filter%5Bmodel%5D=order",
        None,
        200,
    )
    .await;

    // ---- catalog ----
    ck.all_pages("/products/categories", "/products/categories")
        .await;
    ck.call(
        KEY,
        "GET",
        "/products/categories",
        "/products/categories?filter%5Bparent_id%5D=11",
        None,
        200,
    )
    .await;
    let products = ck
        .all_pages("/products", "/products?limit=50&include=custom_fields")
        .await;
    ck.call(
        KEY,
        "GET",
        "/products",
        "/products?filter%5Bis_archived%5D=false",
        None,
        200,
    )
    .await;
    let with_offers = products
        .iter()
        .find(|p| p["has_offers"] == true)
        .expect("variant product");
    let without = products
        .iter()
        .find(|p| p["has_offers"] == false)
        .expect("simple product");
    for p in [with_offers, without] {
        let id = p["id"].as_i64().expect("id");
        ck.call(
            KEY,
            "GET",
            "/products/{productId}",
            &format!("/products/{id}?include=custom_fields"),
            None,
            200,
        )
        .await;
        ck.call(
            KEY,
            "GET",
            "/products/{productId}",
            &format!("/products/{id}"),
            None,
            200,
        )
        .await;
    }
    let offers = ck
        .all_pages("/offers", "/offers?include=product&limit=50")
        .await;
    ck.call(KEY, "GET", "/offers", "/offers?sort=-id", None, 200)
        .await;
    ck.all_pages(
        "/offers/stocks",
        "/offers/stocks?limit=50&filter%5Bdetails%5D=true",
    )
    .await;
    ck.call(KEY, "GET", "/offers/stocks", "/offers/stocks", None, 200)
        .await;
    // absolute balances per warehouse, by id and by SKU; then the per-warehouse breakdown
    let stock_offer = offers[0]["id"].as_i64().expect("offer id");
    let stock_sku = offers[1]["sku"].as_str().expect("sku").to_string();
    ck.call(
        KEY,
        "PUT",
        "/offers/stocks",
        "/offers/stocks",
        Some(json!({"warehouse_id": 2, "stocks": [{"id": stock_offer, "quantity": 3}, {"sku": stock_sku, "quantity": 1}]})),
        202,
    )
    .await;
    let two = ck
        .call(
            KEY,
            "GET",
            "/offers/stocks",
            &format!("/offers/stocks?filter%5Boffers_id%5D={stock_offer}&filter%5Bdetails%5D=true"),
            None,
            200,
        )
        .await;
    assert_eq!(
        two["data"][0]["warehouse"].as_array().map(Vec::len),
        Some(2),
        "{two}"
    );
    ck.call(
        KEY,
        "PUT",
        "/offers/stocks",
        "/offers/stocks",
        Some(json!({"stocks": [{"quantity": -1}]})),
        422,
    )
    .await;
    let catalog_sku = |with_barcode: bool| -> String {
        offers
            .iter()
            .find(|o| o["barcode"].is_null() != with_barcode && o["is_archived"] == false)
            .and_then(|o| o["sku"].as_str())
            .expect("offer")
            .to_string()
    };

    // ---- orders ----
    let full = json!({
        "source_id": 1,
        "source_uuid": "shop-5001",
        "manager_id": 1,
        "promocode": "WELCOME",
        "ordered_at": "2026-11-20 10:00:00",
        "buyer": {"full_name": "Іван Петренко", "email": "ivan@example.com", "phone": "+380501112233"},
        "buyer_comment": "Зателефонуйте",
        "shipping_price": 70,
        "wrap_price": 15,
        "taxes": 0,
        "discount_percent": 5,
        "shipping": {"delivery_service_id": 3, "shipping_address_city": "Київ", "shipping_receive_point": "Відділення №5",
                     "shipping_secondary_line": "кв. 7", "warehouse_ref": "1ec09d2e-e1c2-11e3-8c4a-0050568002cf",
                     "shipping_date": "2026-11-22"},
        "marketing": {"utm_source": "google", "utm_medium": "cpc"},
        "products": [
            {"sku": catalog_sku(true), "quantity": 2, "comment": "без пакета"},
            {"sku": catalog_sku(false), "quantity": 1},
            {"sku": "GIFT-BOX", "name": "Подарункова коробка", "price": 50, "quantity": 1}
        ],
        "payments": [{"payment_method_id": 3, "amount": 100, "status": "paid", "description": "передплата"}],
        "custom_fields": [{"uuid": "OR_1001", "value": "крихке"}, {"uuid": "OR_1002", "value": ["Сайт"]}, {"uuid": "OR_1003", "value": 2}]
    });
    let created = ck
        .call(KEY, "POST", "/order", "/order", Some(full), 201)
        .await;
    let order_id = created["id"].as_i64().expect("order id");
    let minimal = json!({"source_id": 2, "buyer": {"full_name": "John Doe"}, "products": [{"sku": catalog_sku(true), "quantity": 1}]});
    let min_created = ck
        .call(KEY, "POST", "/order", "/order", Some(minimal), 201)
        .await;
    let min_id = min_created["id"].as_i64().expect("order id");
    let partial = json!({"source_id": 5, "buyer": {"phone": "+380931234567"},
                         "shipping": {"delivery_service_id": 2, "shipping_address_city": "Львів"},
                         "products": [{"name": "Послуга пакування", "price": 20, "quantity": 1}]});
    let partial_created = ck
        .call(KEY, "POST", "/order", "/order", Some(partial), 201)
        .await;
    let partial_id = partial_created["id"].as_i64().expect("order id");
    let all_inc = "buyer,products.offer,manager,tags,status,marketing,payments,shipping.lastHistory,shipping.deliveryService,expenses,custom_fields,assigned";
    for id in [order_id, min_id, partial_id] {
        ck.call(
            KEY,
            "GET",
            "/order/{orderId}",
            &format!("/order/{id}?include={all_inc}"),
            None,
            200,
        )
        .await;
        ck.call(
            KEY,
            "GET",
            "/order/{orderId}",
            &format!("/order/{id}"),
            None,
            200,
        )
        .await;
    }
    ck.all_pages("/order", &format!("/order?include={all_inc}&limit=1"))
        .await;
    ck.call(
        KEY,
        "GET",
        "/order",
        "/order?filter%5Bsource_uuid%5D=shop-5001&include=products,buyer",
        None,
        200,
    )
    .await;
    ck.call(
        KEY,
        "PUT",
        "/order/{orderId}",
        &format!("/order/{order_id}"),
        Some(json!({"status_id": 3, "manager_comment": "ok", "custom_fields": [{"uuid": "OR_1004", "value": true}],
                    "shipping": {"tracking_code": "20450000000001"}, "products": [{"sku": catalog_sku(false), "quantity": 3}]})),
        202,
    )
    .await;
    ck.call(
        KEY,
        "PUT",
        "/order/{orderId}",
        &format!("/order/{min_id}"),
        Some(json!({"status_id": 12})),
        202,
    )
    .await;
    ck.call(
        KEY,
        "GET",
        "/order/{orderId}",
        &format!("/order/{min_id}?include={all_inc}"),
        None,
        200,
    )
    .await;

    // ---- pipelines ----
    ck.call(KEY, "GET", "/pipelines", "/pipelines", None, 200)
        .await;
    for pid in [1, 2] {
        ck.call(
            KEY,
            "GET",
            "/pipelines/{pipelineId}/statuses",
            &format!("/pipelines/{pid}/statuses"),
            None,
            200,
        )
        .await;
    }
    let card = ck
        .call(
            KEY,
            "POST",
            "/pipelines/cards",
            "/pipelines/cards",
            Some(json!({
                "title": "Заявка з сайту", "source_id": 1, "manager_id": 2, "communicate_at": "2026-12-01 10:00:00",
                "contact": {"full_name": "Олег Коваленко", "phone": "+380671112233", "email": "oleg@example.com"},
                "utm_source": "instagram", "utm_campaign": "winter",
                "products": [{"sku": catalog_sku(true), "quantity": 1}, {"name": "Консультація", "price": 0, "quantity": 1}],
                "payments": [{"payment_method": "Готівка", "amount": 10, "status": "not_paid"}],
                "custom_fields": [{"uuid": "LD_1002", "value": ["Сайт"]}, {"uuid": "LD_1003", "value": 1500.5}]
            })),
            201,
        )
        .await;
    let card_id = card["id"].as_i64().expect("card id");
    let client_id = card["contact"]["client_id"].as_i64().expect("client id");
    let card2 = ck
        .call(
            KEY,
            "POST",
            "/pipelines/cards",
            "/pipelines/cards",
            Some(json!({"pipeline_id": 2, "contact": {"client_id": client_id}})),
            201,
        )
        .await;
    let card2_id = card2["id"].as_i64().expect("card id");
    let card_inc = "contact.client,products.offer,manager,status,payments,custom_fields";
    for id in [card_id, card2_id] {
        ck.call(
            KEY,
            "GET",
            "/pipelines/cards/{cardId}",
            &format!("/pipelines/cards/{id}?include={card_inc}"),
            None,
            200,
        )
        .await;
        ck.call(
            KEY,
            "GET",
            "/pipelines/cards/{cardId}",
            &format!("/pipelines/cards/{id}"),
            None,
            200,
        )
        .await;
    }
    ck.all_pages(
        "/pipelines/cards",
        &format!("/pipelines/cards?include={card_inc}&limit=1"),
    )
    .await;
    ck.call(
        KEY,
        "GET",
        "/pipelines/cards",
        "/pipelines/cards?filter%5Bpipeline_id%5D=2",
        None,
        200,
    )
    .await;
    ck.call(
        KEY,
        "PUT",
        "/pipelines/cards/{cardId}",
        &format!("/pipelines/cards/{card_id}"),
        Some(json!({"status_id": 2002, "note": "перевести в опт", "products": [{"name": "Додатково", "price": 5, "quantity": 2}]})),
        202,
    )
    .await;

    // ---- documented error responses ----
    for (template, path) in [
        ("/pipelines", "/pipelines".to_string()),
        (
            "/pipelines/{pipelineId}/statuses",
            "/pipelines/1/statuses".to_string(),
        ),
        ("/pipelines/cards", "/pipelines/cards".to_string()),
        (
            "/pipelines/cards/{cardId}",
            format!("/pipelines/cards/{card_id}"),
        ),
    ] {
        ck.call(NO_LEADS_KEY, "GET", template, &path, None, 400)
            .await;
    }
    ck.call(
        NO_LEADS_KEY,
        "POST",
        "/pipelines/cards",
        "/pipelines/cards",
        Some(json!({"contact": {"full_name": "X"}})),
        400,
    )
    .await;
    ck.call(
        NO_LEADS_KEY,
        "PUT",
        "/pipelines/cards/{cardId}",
        &format!("/pipelines/cards/{card_id}"),
        Some(json!({"status_id": 1002})),
        400,
    )
    .await;
    // no body schema in the spec: Laravel-shaped JSON errors
    ck.call("wrong-key", "GET", "/offers", "/offers", None, 401)
        .await;
    ck.call(KEY, "GET", "/order/{orderId}", "/order/999999", None, 404)
        .await;
    ck.call(
        KEY,
        "GET",
        "/products/{productId}",
        "/products/999999",
        None,
        404,
    )
    .await;
    ck.call(
        KEY,
        "GET",
        "/order",
        "/order?filter%5Bcreated_at_min%5D=2026-01-01",
        None,
        400,
    )
    .await;
    ck.call(KEY, "GET", "/offers", "/offers?include=variants", None, 400)
        .await;
    ck.call(
        KEY,
        "POST",
        "/order",
        "/order",
        Some(json!({"buyer": "x", "products": [{"quantity": -1}]})),
        422,
    )
    .await;
    ck.call(
        KEY,
        "POST",
        "/pipelines/cards",
        "/pipelines/cards",
        Some(json!({})),
        422,
    )
    .await;
    ck.call(KEY, "GET", "/warehouses", "/warehouses", None, 404)
        .await;

    // 429 from a rate-limited simulator
    let limited = start(SimConfig {
        accounts: vec![AccountSpec {
            api_key: KEY.into(),
            seed: 1,
            products: 5,
            pipelines_enabled: true,
        }],
        rate_limit_per_minute: 1,
        time_scale: 1.0,
        public_base_url: None,
    })
    .await;
    let saved_base = std::mem::replace(&mut ck.base, limited.base_url());
    ck.call(KEY, "GET", "/order/status", "/order/status", None, 200)
        .await;
    ck.call(KEY, "GET", "/order/status", "/order/status", None, 429)
        .await;
    ck.base = saved_base;

    // ---- the validator must catch violations outside the named exceptions ----
    let mut broken = ck
        .call(
            KEY,
            "GET",
            "/offers",
            "/offers?include=product&limit=1",
            None,
            200,
        )
        .await;
    broken["data"][0]["price"] = json!("12.00");
    broken["data"][0]["product"]["is_archived"] = json!(null);
    broken["total"] = json!(null);
    let r = ck
        .api
        .validate_response("/offers", "GET", 200, &broken, EXCEPTIONS)
        .expect("validation runs");
    let at: Vec<&str> = r.violations.iter().map(|v| v.at.as_str()).collect();
    assert!(
        at.contains(&"Offer.price")
            && at.contains(&"ProductOffer.is_archived")
            && at.contains(&"PaginatedResponse.total"),
        "validator missed injected violations: {at:?}"
    );

    // ---- report ----
    println!(
        "validated {} responses against {} ({} more against local error shapes) over {} operations",
        ck.validated_spec,
        spec_path.display(),
        ck.validated_local,
        ck.per_operation.len()
    );
    for (op, n) in &ck.per_operation {
        println!("  {n:>3} × {op}");
    }
    println!("exceptions applied ({} named):", EXCEPTIONS.len());
    for e in EXCEPTIONS {
        println!(
            "  {:>4} × {:<52} {}",
            ck.used.get(e.at).copied().unwrap_or(0),
            e.at,
            e.reason
        );
    }
    assert!(
        ck.violations.is_empty(),
        "{} spec violations outside the named exceptions:\n{}",
        ck.violations.len(),
        ck.violations.join("\n")
    );
    let unused: Vec<&str> = EXCEPTIONS
        .iter()
        .filter(|e| !ck.used.contains_key(e.at))
        .map(|e| e.at)
        .collect();
    assert!(
        unused.is_empty(),
        "exceptions never needed (remove them): {unused:?}"
    );
}
