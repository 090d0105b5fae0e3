use super::*;
use crate::events::{parse_event, EventBody};
use crate::settings::{AddonLink, CardStatusMap, DeliveryLink, OrderStatusMap, PaymentLink};
use crate::testdata::crm_reference;
use crate::OrderSyncType;
use std::str::FromStr;

const CREATED: &str = include_str!("../../../contracts/order-events/examples/order.created.json");
const SHOP: &str = "shop-1001";

fn order() -> ShopOrder {
    match parse_event(CREATED.as_bytes()).unwrap().body {
        EventBody::Created(o) => *o,
        _ => unreachable!(),
    }
}

fn settings() -> Settings {
    Settings {
        order_sync: OrderSyncType::Orders,
        source_id: Some(1),
        order_statuses: OrderStatusMap::from_legacy([
            ("new".to_string(), 1),
            ("paid".to_string(), 3),
        ]),
        card_statuses: CardStatusMap::from_legacy([("new".to_string(), 1, 101)]),
        payment_map: vec![PaymentLink {
            shop_method: "cod".into(),
            keycrm_method_id: 1,
        }],
        delivery_map: vec![DeliveryLink {
            shop_method: "nova_poshta".into(),
            keycrm_service_id: 1,
        }],
        addon_fields: vec![
            AddonLink {
                addon_id: "gift_wrap".into(),
                field_uuid: "OR_1002".into(),
            },
            AddonLink {
                addon_id: "call_back".into(),
                field_uuid: "OR_1004".into(),
            },
        ],
        ..Settings::default()
    }
}

fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

#[test]
fn every_mapped_field_lands_in_the_order_body() {
    let m = map_order(SHOP, &order(), &settings(), &crm_reference()).unwrap();
    let b = &m.body;
    assert_eq!(b.source_id, 1);
    // Shop-scoped: another shop on the same KeyCRM account may have an order 10234 too.
    assert_eq!(b.source_uuid.as_deref(), Some("shop-1001:10234"));
    assert_eq!(b.ordered_at.as_deref(), Some("2026-11-28 10:14:52"));
    assert_eq!(b.buyer.phone.as_deref(), Some("+380501112233"));
    assert_eq!(b.buyer.full_name.as_deref(), Some("Олена Коваленко"));
    assert_eq!(b.buyer.email.as_deref(), Some("olena@example.com"));
    assert_eq!(
        b.buyer_comment.as_deref(),
        Some("Подзвоніть перед доставкою")
    );
    assert_eq!(b.promocode.as_deref(), Some("BF2026"));
    assert_eq!(b.discount_amount, Some(dec("50")));
    assert_eq!(b.shipping_price, Some(dec("70")));
    let s = b.shipping.as_ref().unwrap();
    assert_eq!(s.delivery_service_id, Some(1));
    assert_eq!(
        s.warehouse_ref.as_deref(),
        Some("1ec09d88-e1c2-11e3-8c4a-0050568002cf")
    );
    assert_eq!(s.shipping_address_city.as_deref(), Some("Київ"));
    assert_eq!(s.shipping_receive_point.as_deref(), Some("Відділення №12"));
    assert_eq!(s.recipient_phone.as_deref(), Some("+380501112233"));
    assert_eq!(s.shipping_service, None);
    let mk = b.marketing.as_ref().unwrap();
    assert_eq!(mk.utm_source.as_deref(), Some("instagram"));
    assert_eq!(mk.utm_campaign.as_deref(), Some("black-friday"));
    assert_eq!(b.products.len(), 2);
    assert_eq!(b.products[0].sku, "DRS-001-M");
    assert_eq!(b.products[0].discount_amount, Some(dec("90")));
    assert_eq!(b.products[0].properties[0].value, "M");
    assert_eq!(b.products[1].quantity, dec("2"));
    assert_eq!(b.payments.len(), 1);
    assert_eq!(
        (
            b.payments[0].payment_method_id,
            b.payments[0].status.as_str()
        ),
        (1, "not_paid")
    );
    assert_eq!(b.payments[0].amount, dec("2121"));
    assert_eq!(
        b.custom_fields,
        vec![
            CustomFieldValue {
                uuid: "OR_1002".into(),
                value: serde_json::json!(["Так"])
            },
            CustomFieldValue {
                uuid: "OR_1004".into(),
                value: serde_json::json!(true)
            },
        ]
    );
    assert_eq!(
        m.status_after_create, None,
        "new maps to KeyCRM's starting status"
    );
    assert_eq!(m.report, MappingReport::default());
}

#[test]
fn the_example_totals_add_up() {
    // 1290-90 + 2*450.5 + 70 - 50 = 2121
    assert_eq!(computed_total(&order()), Ok(dec("2121")));
}

#[test]
fn a_total_mismatch_is_flagged_not_hidden() {
    let mut o = order();
    o.total = dec("2000");
    let m = map_order(SHOP, &o, &settings(), &crm_reference()).unwrap();
    assert_eq!(
        m.report.total_mismatch,
        Some(TotalMismatch {
            shop_total: dec("2000"),
            computed: dec("2121")
        })
    );
}

#[test]
fn a_mapped_non_default_status_is_set_after_create() {
    let mut o = order();
    o.status = "paid".into();
    let m = map_order(SHOP, &o, &settings(), &crm_reference()).unwrap();
    assert_eq!(m.status_after_create, Some(3));
}

#[test]
fn unmapped_methods_still_create_the_order_and_say_so() {
    let mut s = settings();
    s.payment_map.clear();
    s.delivery_map.clear();
    let m = map_order(SHOP, &order(), &s, &crm_reference()).unwrap();
    assert!(m.body.payments.is_empty());
    let ship = m.body.shipping.unwrap();
    assert_eq!(ship.delivery_service_id, None);
    assert_eq!(ship.shipping_service.as_deref(), Some("nova_poshta"));
    assert_eq!(
        ship.warehouse_ref, None,
        "a warehouse ref needs the Nova Poshta service"
    );
    assert!(m.body.manager_comment.unwrap().contains("Оплата: cod"));
    assert_eq!(m.report.notes.len(), 3, "{:?}", m.report.notes);
}

#[test]
fn no_source_is_a_permanent_error() {
    let mut s = settings();
    s.source_id = None;
    assert_eq!(
        map_order(SHOP, &order(), &s, &crm_reference()),
        Err(MappingError::NoSource)
    );
}

#[test]
fn invalid_phones_are_kept_in_the_comment() {
    let mut o = order();
    o.customer.phone = Some("дзвоніть в дзвінок".into());
    let m = map_order(SHOP, &o, &settings(), &crm_reference()).unwrap();
    assert_eq!(m.body.buyer.phone, None);
    assert!(m
        .body
        .manager_comment
        .unwrap()
        .contains("дзвоніть в дзвінок"));
}

#[test]
fn addon_values_are_typed_for_their_field() {
    let crm = crm_reference();
    let f = |uuid: &str| crm.order_field(uuid).unwrap().clone();
    assert_eq!(
        field_value(&f("OR_1001"), &serde_json::json!(42)),
        Ok(serde_json::json!("42"))
    );
    assert_eq!(
        field_value(&f("OR_1002"), &serde_json::json!("так")),
        Ok(serde_json::json!(["Так"]))
    );
    assert!(field_value(&f("OR_1002"), &serde_json::json!("може")).is_err());
    assert!(
        field_value(&f("OR_1002"), &serde_json::json!(["Так", "Ні"])).is_err(),
        "single select"
    );
    assert_eq!(
        field_value(&f("OR_1003"), &serde_json::json!("12")),
        Ok(serde_json::json!(12))
    );
    assert!(field_value(&f("OR_1003"), &serde_json::json!(1.5)).is_err());
    assert_eq!(
        field_value(&f("OR_1004"), &serde_json::json!("ні")),
        Ok(serde_json::json!(false))
    );
    assert_eq!(
        field_value(&f("OR_1004"), &serde_json::json!(1)),
        Ok(serde_json::json!(true))
    );
    assert_eq!(
        field_value(&f("OR_1005"), &serde_json::json!("2026-12-24T10:00:00Z")),
        Ok(serde_json::json!("2026-12-24"))
    );
    assert!(field_value(&f("OR_1005"), &serde_json::json!("завтра")).is_err());
    assert_eq!(
        field_value(&f("OR_1006"), &serde_json::json!("2,5")),
        Ok(serde_json::json!(2.5))
    );
}

#[test]
fn an_addon_that_does_not_fit_goes_to_the_comment() {
    let mut o = order();
    o.addons[0].value = serde_json::json!("Можливо");
    let m = map_order(SHOP, &o, &settings(), &crm_reference()).unwrap();
    assert_eq!(m.body.custom_fields.len(), 1);
    assert!(m
        .body
        .manager_comment
        .unwrap()
        .contains("gift_wrap: Можливо"));
}

#[test]
fn the_order_body_serialises_as_keycrm_expects() {
    let m = map_order(SHOP, &order(), &settings(), &crm_reference()).unwrap();
    let v = serde_json::to_value(&m.body).unwrap();
    assert_eq!(v["products"][1]["price"], serde_json::json!(450.5));
    assert_eq!(v["shipping_price"], serde_json::json!(70.0));
    assert!(v.get("status_id").is_none());
    assert_eq!(v["marketing"]["utm_medium"], "cpc");
    assert!(v["marketing"].get("utm_term").is_none());
}

#[test]
fn cards_go_to_the_mapped_pipeline_with_contact_utm_and_fields() {
    let mut s = settings();
    s.order_sync = OrderSyncType::Pipelines;
    s.addon_fields = vec![AddonLink {
        addon_id: "gift_wrap".into(),
        field_uuid: "LD_1001".into(),
    }];
    let m = map_card(SHOP, &order(), &s, &crm_reference()).unwrap();
    let b = &m.body;
    assert_eq!(b.pipeline_id, 1);
    assert_eq!(b.source_id, Some(1));
    assert_eq!(b.title.as_deref(), Some("Замовлення №10234"));
    assert_eq!(b.contact.phone.as_deref(), Some("+380501112233"));
    assert_eq!(b.utm_source.as_deref(), Some("instagram"));
    assert_eq!(b.products[0].price, dec("1200"));
    assert_eq!(
        b.custom_fields,
        vec![CustomFieldValue {
            uuid: "LD_1001".into(),
            value: serde_json::json!("Так")
        }]
    );
    let comment = b.manager_comment.as_deref().unwrap();
    assert!(
        comment.contains("Коментар покупця") && comment.contains("NP ref"),
        "{comment}"
    );
    // The exact marker recovery searches for, on a line of its own.
    assert_eq!(
        comment.lines().next(),
        Some("ID замовлення в магазині: shop-1001:10234")
    );
    assert!(crate::source_key::has_card_marker(
        Some(comment),
        SHOP,
        "10234"
    ));
    assert_eq!(
        m.status_after_create, None,
        "101 is the pipeline's first status"
    );
}

#[test]
fn cards_without_a_pipeline_are_refused() {
    let mut s = settings();
    s.card_statuses = CardStatusMap::default();
    assert_eq!(
        map_card(SHOP, &order(), &s, &crm_reference()),
        Err(MappingError::NoPipeline("new".into()))
    );
    s.default_pipeline_id = Some(2);
    let m = map_card(SHOP, &order(), &s, &crm_reference()).unwrap();
    assert_eq!(m.body.pipeline_id, 2);
    s.default_pipeline_id = Some(9);
    assert_eq!(
        map_card(SHOP, &order(), &s, &crm_reference()),
        Err(MappingError::UnknownPipeline(9))
    );
}

#[test]
fn a_later_pipeline_status_is_set_after_create() {
    let mut s = settings();
    s.card_statuses.to_keycrm[0].status_id = 102;
    let m = map_card(SHOP, &order(), &s, &crm_reference()).unwrap();
    assert_eq!(m.status_after_create, Some(102));
}

#[test]
fn absurd_amounts_are_an_error_never_a_panic() {
    // Built directly, past the contract's bounds (the parser refuses such events).
    let mut o = order();
    o.items[0].price = Decimal::MAX;
    o.items[0].discount = Decimal::ZERO;
    o.items[0].quantity = dec("10000000000");
    assert_eq!(computed_total(&o), Err(MappingError::AmountOutOfRange));
    let crm = crm_reference();
    assert_eq!(
        map_order(SHOP, &o, &settings(), &crm).map(|_| ()),
        Err(MappingError::AmountOutOfRange)
    );
    assert_eq!(
        map_card(SHOP, &o, &settings(), &crm).map(|_| ()),
        Err(MappingError::AmountOutOfRange)
    );
    // A discount that would push a line below Decimal's range.
    let mut o = order();
    o.items[0].price = Decimal::MIN;
    o.items[0].discount = Decimal::MAX;
    assert_eq!(computed_total(&o), Err(MappingError::AmountOutOfRange));
}
