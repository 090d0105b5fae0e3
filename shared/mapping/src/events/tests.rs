use super::*;

const CREATED: &str =
    include_str!("../../../../contracts/order-events/examples/order.created.json");
const STATUS: &str =
    include_str!("../../../../contracts/order-events/examples/order.status_changed.json");

fn created() -> serde_json::Value {
    serde_json::from_str(CREATED).unwrap()
}

fn parse_value(v: &serde_json::Value) -> Result<OrderEvent, EventError> {
    parse_event(&serde_json::to_vec(v).unwrap())
}

#[test]
fn the_documented_examples_parse() {
    let e = parse_event(CREATED.as_bytes()).unwrap();
    assert_eq!(e.event_type(), ORDER_CREATED);
    assert_eq!(e.order_id(), "10234");
    let EventBody::Created(o) = &e.body else {
        panic!()
    };
    assert_eq!(o.items.len(), 2);
    assert_eq!(o.items[1].price, Decimal::from_str("450.5").unwrap());
    assert_eq!(
        o.delivery.as_ref().unwrap().np_warehouse_ref.as_deref(),
        Some("1ec09d88-e1c2-11e3-8c4a-0050568002cf")
    );

    let s = parse_event(STATUS.as_bytes()).unwrap();
    assert_eq!(s.event_type(), ORDER_STATUS_CHANGED);
    assert_eq!(s.order_id(), "10234");
}

#[test]
fn not_json_and_not_an_object() {
    assert!(matches!(
        parse_event(b"{\"version\": 1,"),
        Err(EventError::NotJson(_))
    ));
    assert!(matches!(parse_event(b"[1,2]"), Err(EventError::NotJson(_))));
    assert!(matches!(
        parse_event(b"\xff\xfe"),
        Err(EventError::NotJson(_))
    ));
}

#[test]
fn oversized_events_are_refused_before_parsing() {
    let big = vec![b' '; MAX_EVENT_BYTES + 1];
    assert_eq!(
        parse_event(&big),
        Err(EventError::TooLarge {
            size: MAX_EVENT_BYTES + 1,
            max: MAX_EVENT_BYTES
        })
    );
}

#[test]
fn versions_are_checked() {
    let mut v = created();
    v["version"] = serde_json::json!(2);
    assert_eq!(parse_value(&v), Err(EventError::UnknownVersion("2".into())));
    v["version"] = serde_json::json!("1");
    assert_eq!(
        parse_value(&v),
        Err(EventError::UnknownVersion("\"1\"".into()))
    );
    v.as_object_mut().unwrap().remove("version");
    assert_eq!(parse_value(&v), Err(EventError::MissingVersion));
}

#[test]
fn unknown_types_are_named() {
    let mut v = created();
    v["type"] = serde_json::json!("order.deleted");
    assert_eq!(
        parse_value(&v),
        Err(EventError::UnknownType("order.deleted".into()))
    );
}

#[test]
fn wrong_types_name_the_path() {
    let mut v = created();
    v["order"]["items"][1]["price"] = serde_json::json!("450.50");
    let err = parse_value(&v).unwrap_err();
    assert!(
        matches!(&err, EventError::Invalid { path, .. } if path == "order.items[1].price"),
        "{err}"
    );
    assert!(err.to_string().contains("expected a number"), "{err}");
}

#[test]
fn missing_required_fields_name_the_field() {
    let mut v = created();
    v["order"].as_object_mut().unwrap().remove("total");
    assert_eq!(
        parse_value(&v),
        Err(EventError::Invalid {
            path: "order.total".into(),
            reason: "required but missing".into()
        })
    );
    let mut v = created();
    v.as_object_mut().unwrap().remove("shop_id");
    assert_eq!(
        parse_value(&v),
        Err(EventError::Invalid {
            path: "shop_id".into(),
            reason: "required but missing".into()
        })
    );
}

#[test]
fn semantic_checks() {
    let cases: Vec<(&str, serde_json::Value, &str)> = vec![
        ("/order/items", serde_json::json!([]), "order.items"),
        (
            "/order/items/0/quantity",
            serde_json::json!(0),
            "order.items[0].quantity",
        ),
        (
            "/order/items/0/price",
            serde_json::json!(-1),
            "order.items[0].price",
        ),
        (
            "/order/items/0/discount",
            serde_json::json!(5000),
            "order.items[0].discount",
        ),
        (
            "/order/items/0/sku",
            serde_json::json!("  "),
            "order.items[0].sku",
        ),
        (
            "/order/currency",
            serde_json::json!("грн"),
            "order.currency",
        ),
        ("/order/total", serde_json::json!(-5), "order.total"),
        ("/shop_id", serde_json::json!(""), "shop_id"),
        ("/order/customer", serde_json::json!({}), "order.customer"),
    ];
    for (pointer, value, path) in cases {
        let mut v = created();
        *v.pointer_mut(pointer).unwrap() = value;
        match parse_value(&v) {
            Err(EventError::Invalid { path: p, .. }) => assert_eq!(p, path, "{pointer}"),
            other => panic!("{pointer}: {other:?}"),
        }
    }
}

#[test]
fn bad_timestamps_are_refused() {
    let mut v = created();
    v["occurred_at"] = serde_json::json!("28.11.2026 10:15");
    assert!(
        matches!(parse_value(&v), Err(EventError::Invalid { path, .. }) if path == "occurred_at")
    );
}

#[test]
fn unknown_extra_fields_are_tolerated_within_a_version() {
    let mut v = created();
    v["order"]["loyalty_points"] = serde_json::json!(12);
    assert!(parse_value(&v).is_ok());
}

#[test]
fn absurd_amounts_and_quantities_are_refused_without_echoing_them() {
    // The probe's poison: price 1e20 × quantity 1e10 overflowed `Decimal` in the mapping.
    let mut v = created();
    v["order"]["items"][0]["price"] = serde_json::json!(1e20);
    v["order"]["items"][0]["quantity"] = serde_json::json!(1e10);
    let err = parse_value(&v).unwrap_err();
    assert_eq!(
        err,
        EventError::Invalid {
            path: "order.items[0].price".into(),
            reason: format!("must not exceed {MAX_AMOUNT}"),
        }
    );
    assert!(!err.to_string().contains("1000000000000000"), "{err}");

    let mut v = created();
    v["order"]["items"][1]["quantity"] = serde_json::json!(1e10);
    assert_eq!(
        parse_value(&v).unwrap_err(),
        EventError::Invalid {
            path: "order.items[1].quantity".into(),
            reason: format!("must not exceed {MAX_QUANTITY}"),
        }
    );
    for (pointer, field) in [
        ("/order/total", "order.total"),
        ("/order/discount", "order.discount"),
        ("/order/delivery/cost", "order.delivery.cost"),
        ("/order/payment/amount", "order.payment.amount"),
        ("/order/items/0/discount", "order.items[0].discount"),
    ] {
        let mut v = created();
        *v.pointer_mut(pointer).unwrap() = serde_json::json!(MAX_AMOUNT + 1);
        match parse_value(&v) {
            Err(EventError::Invalid { path, .. }) => assert_eq!(path, field),
            other => panic!("{pointer}: {other:?}"),
        }
    }
    // Numbers beyond Decimal's range are refused as such, without the value.
    let raw = CREATED.replacen("\"price\": 1290", "\"price\": 1e300", 1);
    assert_ne!(raw, CREATED, "the example still has that price");
    let err = parse_event(raw.as_bytes()).unwrap_err().to_string();
    assert!(
        err.contains("out of range") && !err.contains("1e300"),
        "{err}"
    );

    // The bounds themselves are accepted, and their sums stay far inside Decimal.
    let mut v = created();
    v["order"]["items"][0]["price"] = serde_json::json!(MAX_AMOUNT);
    v["order"]["items"][0]["quantity"] = serde_json::json!(MAX_QUANTITY);
    let e = parse_value(&v).unwrap();
    let EventBody::Created(o) = e.body else {
        panic!()
    };
    assert!(crate::order_map::computed_total(&o).is_ok());
}
