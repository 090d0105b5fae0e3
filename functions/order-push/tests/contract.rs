//! The documented contract (`contracts/order-events/`) and the parser agree: the examples
//! pass both, and each invalid event is refused by both.

use serde_json::{json, Value};

const SCHEMA: &str = include_str!("../../../contracts/order-events/v1.schema.json");
const CREATED: &str = include_str!("../../../contracts/order-events/examples/order.created.json");
const STATUS: &str =
    include_str!("../../../contracts/order-events/examples/order.status_changed.json");

fn validator() -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(SCHEMA).expect("the schema is JSON");
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("the schema compiles")
}

fn created() -> Value {
    serde_json::from_str(CREATED).unwrap()
}

fn status() -> Value {
    serde_json::from_str(STATUS).unwrap()
}

fn schema_errors(v: &jsonschema::Validator, event: &Value) -> Vec<String> {
    v.iter_errors(event)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

fn parser_accepts(event: &Value) -> Result<(), String> {
    mapping::parse_event(&serde_json::to_vec(event).unwrap())
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Applies `value` at the JSON pointer (`None` removes the field).
fn with(mut base: Value, pointer: &str, value: Option<Value>) -> Value {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let target = base
        .pointer_mut(parent)
        .unwrap_or_else(|| panic!("no {parent}"));
    match (target, value) {
        (Value::Object(m), Some(v)) => {
            m.insert(key.to_string(), v);
        }
        (Value::Object(m), None) => {
            m.remove(key);
        }
        (Value::Array(a), Some(v)) => a[key.parse::<usize>().unwrap()] = v,
        (other, _) => panic!("cannot set {pointer} in {other}"),
    }
    base
}

#[test]
fn the_examples_are_valid_for_schema_and_parser() {
    let v = validator();
    for (name, event) in [
        ("order.created", created()),
        ("order.status_changed", status()),
    ] {
        assert_eq!(schema_errors(&v, &event), Vec::<String>::new(), "{name}");
        assert_eq!(parser_accepts(&event), Ok(()), "{name}");
        assert_eq!(event["version"], json!(1), "{name} carries the version");
    }
}

#[test]
fn invalid_events_are_refused_by_both() {
    let v = validator();
    let long = |n: usize| Some(json!("x".repeat(n)));
    let cases: Vec<(&str, Value)> = vec![
        (
            "unknown version",
            with(created(), "/version", Some(json!(2))),
        ),
        (
            "version as text",
            with(created(), "/version", Some(json!("1"))),
        ),
        ("no version", with(created(), "/version", None)),
        (
            "unknown type",
            with(created(), "/type", Some(json!("order.deleted"))),
        ),
        ("no event id", with(created(), "/event_id", None)),
        (
            "blank event id",
            with(created(), "/event_id", Some(json!("   "))),
        ),
        ("shop id too long", with(created(), "/shop_id", long(129))),
        (
            "bad timestamp",
            with(created(), "/occurred_at", Some(json!("28.11.2026 10:15"))),
        ),
        ("no order", with(created(), "/order", None)),
        ("order id too long", with(created(), "/order/id", long(65))),
        ("no number", with(created(), "/order/number", None)),
        (
            "bad created_at",
            with(created(), "/order/created_at", Some(json!(1764324892))),
        ),
        (
            "currency not ISO",
            with(created(), "/order/currency", Some(json!("грн"))),
        ),
        ("no items", with(created(), "/order/items", Some(json!([])))),
        (
            "zero quantity",
            with(created(), "/order/items/0/quantity", Some(json!(0))),
        ),
        (
            "price as string",
            with(created(), "/order/items/1/price", Some(json!("450.50"))),
        ),
        (
            "negative price",
            with(created(), "/order/items/0/price", Some(json!(-1))),
        ),
        (
            "absurd price",
            with(created(), "/order/items/0/price", Some(json!(1e20))),
        ),
        (
            "price above the maximum",
            with(
                created(),
                "/order/items/0/price",
                Some(json!(1_000_000_000_001u64)),
            ),
        ),
        (
            "absurd quantity",
            with(created(), "/order/items/0/quantity", Some(json!(1e10))),
        ),
        (
            "quantity above the maximum",
            with(created(), "/order/items/0/quantity", Some(json!(1_000_001))),
        ),
        (
            "total above the maximum",
            with(created(), "/order/total", Some(json!(1e13))),
        ),
        (
            "delivery cost above the maximum",
            with(created(), "/order/delivery/cost", Some(json!(1e13))),
        ),
        (
            "blank sku",
            with(created(), "/order/items/0/sku", Some(json!(" "))),
        ),
        (
            "property without value",
            with(
                created(),
                "/order/items/0/properties/0",
                Some(json!({"name": "Розмір"})),
            ),
        ),
        (
            "empty customer",
            with(created(), "/order/customer", Some(json!({}))),
        ),
        (
            "customer all null",
            with(
                created(),
                "/order/customer",
                Some(json!({"name": null, "phone": null, "email": null})),
            ),
        ),
        (
            "customer only blank",
            with(created(), "/order/customer", Some(json!({"name": "  "}))),
        ),
        ("no total", with(created(), "/order/total", None)),
        (
            "negative total",
            with(created(), "/order/total", Some(json!(-5))),
        ),
        (
            "null discount",
            with(created(), "/order/discount", Some(Value::Null)),
        ),
        (
            "delivery without method",
            with(created(), "/order/delivery/method", None),
        ),
        (
            "negative delivery cost",
            with(created(), "/order/delivery/cost", Some(json!(-70))),
        ),
        (
            "paid as text",
            with(created(), "/order/payment/paid", Some(json!("yes"))),
        ),
        (
            "payment without amount",
            with(created(), "/order/payment/amount", None),
        ),
        (
            "addons not a list",
            with(
                created(),
                "/order/addons",
                Some(json!({"gift_wrap": "Так"})),
            ),
        ),
        (
            "addon without value",
            with(
                created(),
                "/order/addons/0",
                Some(json!({"id": "gift_wrap"})),
            ),
        ),
        (
            "utm not an object",
            with(created(), "/order/utm", Some(json!("instagram"))),
        ),
        (
            "status change without order",
            with(status(), "/order_id", None),
        ),
        ("blank status", with(status(), "/status", Some(json!("")))),
        (
            "changed_by not text",
            with(status(), "/changed_by", Some(json!(5))),
        ),
        ("not an object", json!([1, 2])),
    ];
    for (name, event) in cases {
        assert!(
            !schema_errors(&v, &event).is_empty(),
            "schema accepted: {name}"
        );
        assert!(parser_accepts(&event).is_err(), "parser accepted: {name}");
    }
}

#[test]
fn optional_and_extra_fields_are_accepted_by_both() {
    let v = validator();
    let cases: Vec<(&str, Value)> = vec![
        (
            "unknown field",
            with(created(), "/order/loyalty_points", Some(json!(12))),
        ),
        (
            "null delivery",
            with(created(), "/order/delivery", Some(Value::Null)),
        ),
        ("no payment", with(created(), "/order/payment", None)),
        ("null utm", with(created(), "/order/utm", Some(Value::Null))),
        (
            "only an email",
            with(
                created(),
                "/order/customer",
                Some(json!({"email": "a@b.c"})),
            ),
        ),
        (
            "object add-on value",
            with(created(), "/order/addons/0/value", Some(json!({"x": 1}))),
        ),
        (
            "fractional quantity",
            with(created(), "/order/items/0/quantity", Some(json!(0.5))),
        ),
        (
            "null recipient",
            with(created(), "/order/delivery/recipient", Some(Value::Null)),
        ),
        (
            "status without extras",
            with(
                with(status(), "/previous_status", None),
                "/changed_by",
                Some(Value::Null),
            ),
        ),
    ];
    for (name, event) in cases {
        assert_eq!(
            schema_errors(&v, &event),
            Vec::<String>::new(),
            "schema refused: {name}"
        );
        assert_eq!(parser_accepts(&event), Ok(()), "parser refused: {name}");
    }
}

/// The two rules the README lists under "Rules beyond the schema".
#[test]
fn rules_beyond_the_schema_are_the_parsers_alone() {
    let v = validator();
    let discount_above_price = with(created(), "/order/items/1/discount", Some(json!(500)));
    assert!(schema_errors(&v, &discount_above_price).is_empty());
    assert!(parser_accepts(&discount_above_price)
        .unwrap_err()
        .contains("larger than the unit price"));

    let huge = with(
        created(),
        "/order/comment",
        Some(json!("x".repeat(300 * 1024))),
    );
    assert!(schema_errors(&v, &huge).is_empty());
    assert!(parser_accepts(&huge).unwrap_err().contains("bytes"));
}
