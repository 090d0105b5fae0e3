//! The order event contract (version 1): what the shop publishes to the order queue.
//! The JSON Schema and examples live in `contracts/order-events/`; this module is the
//! authoritative parser, and it refuses anything it would have to guess about.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

pub const CONTRACT_VERSION: u64 = 1;
/// Far above any real order; SQS itself stops at 1 MiB.
pub const MAX_EVENT_BYTES: usize = 256 * 1024;
/// The largest money amount the contract accepts (a price, discount, cost, payment or total):
/// far above any real order in any currency, and small enough that every sum and product the
/// mapping computes from a valid event stays far inside `Decimal`'s range.
pub const MAX_AMOUNT: u64 = 1_000_000_000_000;
/// The largest quantity of one line item the contract accepts.
pub const MAX_QUANTITY: u64 = 1_000_000;

pub const ORDER_CREATED: &str = "order.created";
pub const ORDER_STATUS_CHANGED: &str = "order.status_changed";

/// Why an event was refused. The text is written for a person reading the dead-letter queue.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("event is {size} bytes, over the {max}-byte limit")]
    TooLarge { size: usize, max: usize },
    #[error("event is not valid JSON: {0}")]
    NotJson(String),
    #[error("event has no \"version\" field (expected {CONTRACT_VERSION})")]
    MissingVersion,
    #[error("event version {0} is not supported (this consumer reads version {CONTRACT_VERSION})")]
    UnknownVersion(String),
    #[error(
        "event type \"{0}\" is not supported (expected order.created or order.status_changed)"
    )]
    UnknownType(String),
    #[error("field {path}: {reason}")]
    Invalid { path: String, reason: String },
    /// Reading the event failed in an unforeseen way (a bug met by this input).
    #[error("event could not be read: {0}")]
    Internal(String),
}

impl EventError {
    fn invalid(path: impl Into<String>, reason: impl Into<String>) -> Self {
        EventError::Invalid {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OrderEvent {
    pub event_id: String,
    pub shop_id: String,
    pub occurred_at: DateTime<Utc>,
    pub body: EventBody,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum EventBody {
    Created(Box<ShopOrder>),
    StatusChanged(StatusChange),
}

impl OrderEvent {
    pub fn event_type(&self) -> &'static str {
        match self.body {
            EventBody::Created(_) => ORDER_CREATED,
            EventBody::StatusChanged(_) => ORDER_STATUS_CHANGED,
        }
    }

    /// The shop's order id, whatever the event.
    pub fn order_id(&self) -> &str {
        match &self.body {
            EventBody::Created(o) => &o.id,
            EventBody::StatusChanged(s) => &s.order_id,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShopOrder {
    /// The shop's order id; sent to KeyCRM as `source_uuid`.
    pub id: String,
    /// The number the buyer sees.
    pub number: String,
    pub created_at: DateTime<Utc>,
    pub status: String,
    pub currency: String,
    pub customer: Customer,
    pub items: Vec<LineItem>,
    #[serde(default)]
    pub delivery: Option<Delivery>,
    #[serde(default)]
    pub payment: Option<Payment>,
    #[serde(default)]
    pub addons: Vec<AddonValue>,
    #[serde(default)]
    pub utm: Option<Utm>,
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default)]
    pub promo_code: Option<String>,
    /// Order-level discount in currency (promo codes, coupons).
    #[serde(default, deserialize_with = "amount")]
    pub discount: Decimal,
    /// What the buyer pays: items after discounts, plus delivery, minus order discount.
    #[serde(deserialize_with = "amount")]
    pub total: Decimal,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Customer {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LineItem {
    pub sku: String,
    pub name: String,
    /// Unit price before discount.
    #[serde(deserialize_with = "amount")]
    pub price: Decimal,
    #[serde(deserialize_with = "amount")]
    pub quantity: Decimal,
    /// Discount per unit, in currency.
    #[serde(default, deserialize_with = "amount")]
    pub discount: Decimal,
    #[serde(default)]
    pub properties: Vec<VariantProperty>,
    #[serde(default)]
    pub picture: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VariantProperty {
    pub name: String,
    pub value: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// Shop delivery method id (mapped to a KeyCRM delivery service in settings).
    pub method: String,
    #[serde(default, deserialize_with = "amount")]
    pub cost: Decimal,
    #[serde(default)]
    pub address: Option<Address>,
    /// Nova Poshta warehouse (branch) ref, when the buyer picked one.
    #[serde(default)]
    pub np_warehouse_ref: Option<String>,
    /// Branch or pick-up point as text ("Відділення №12").
    #[serde(default)]
    pub receive_point: Option<String>,
    #[serde(default)]
    pub recipient: Option<Recipient>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    #[serde(default)]
    pub country: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub city: Option<String>,
    #[serde(default)]
    pub zip: Option<String>,
    #[serde(default)]
    pub line: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub phone: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Payment {
    /// Shop payment method id (mapped to a KeyCRM payment method in settings).
    pub method: String,
    pub paid: bool,
    #[serde(deserialize_with = "amount")]
    pub amount: Decimal,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AddonValue {
    pub id: String,
    pub value: serde_json::Value,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Utm {
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub medium: Option<String>,
    #[serde(default)]
    pub campaign: Option<String>,
    #[serde(default)]
    pub term: Option<String>,
    #[serde(default)]
    pub content: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusChange {
    pub order_id: String,
    pub status: String,
    #[serde(default)]
    pub previous_status: Option<String>,
    /// Who changed it, when the shop knows: `merchant`, `buyer`, `system`, or `keycrm`
    /// when the change came from this connector (it is then never echoed back).
    #[serde(default)]
    pub changed_by: Option<String>,
}

// Flat per-type envelopes: `#[serde(flatten)]` would hide field paths from error messages.
#[derive(Deserialize)]
struct CreatedEnvelope {
    event_id: String,
    shop_id: String,
    occurred_at: DateTime<Utc>,
    order: ShopOrder,
}

#[derive(Deserialize)]
struct StatusEnvelope {
    event_id: String,
    shop_id: String,
    occurred_at: DateTime<Utc>,
    order_id: String,
    status: String,
    #[serde(default)]
    previous_status: Option<String>,
    #[serde(default)]
    changed_by: Option<String>,
}

/// Parses and checks one event. Every refusal says which field and why.
pub fn parse_event(raw: &[u8]) -> Result<OrderEvent, EventError> {
    if raw.len() > MAX_EVENT_BYTES {
        return Err(EventError::TooLarge {
            size: raw.len(),
            max: MAX_EVENT_BYTES,
        });
    }
    let value: serde_json::Value =
        serde_json::from_slice(raw).map_err(|e| EventError::NotJson(e.to_string()))?;
    let obj = value
        .as_object()
        .ok_or_else(|| EventError::NotJson("the top level is not an object".into()))?;
    match obj.get("version") {
        None => return Err(EventError::MissingVersion),
        Some(v) if v.as_u64() == Some(CONTRACT_VERSION) => {}
        Some(v) => return Err(EventError::UnknownVersion(v.to_string())),
    }
    let event_type = obj
        .get("type")
        .and_then(|t| t.as_str())
        .ok_or_else(|| EventError::invalid("type", "missing or not a string"))?
        .to_string();
    let event = match event_type.as_str() {
        ORDER_CREATED => {
            let env: CreatedEnvelope = typed(&value)?;
            OrderEvent {
                event_id: env.event_id,
                shop_id: env.shop_id,
                occurred_at: env.occurred_at,
                body: EventBody::Created(Box::new(env.order)),
            }
        }
        ORDER_STATUS_CHANGED => {
            let env: StatusEnvelope = typed(&value)?;
            OrderEvent {
                event_id: env.event_id,
                shop_id: env.shop_id,
                occurred_at: env.occurred_at,
                body: EventBody::StatusChanged(StatusChange {
                    order_id: env.order_id,
                    status: env.status,
                    previous_status: env.previous_status,
                    changed_by: env.changed_by,
                }),
            }
        }
        other => return Err(EventError::UnknownType(other.to_string())),
    };
    check(&event)?;
    Ok(event)
}

fn typed<T: serde::de::DeserializeOwned>(value: &serde_json::Value) -> Result<T, EventError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let reason = e.inner().to_string();
        // serde reports a missing field at its parent; name the field itself.
        if let Some(field) = reason
            .strip_prefix("missing field `")
            .and_then(|r| r.strip_suffix('`'))
        {
            let full = if path == "." {
                field.to_string()
            } else {
                format!("{path}.{field}")
            };
            return EventError::invalid(full, "required but missing");
        }
        EventError::invalid(if path == "." { "(root)".into() } else { path }, reason)
    })
}

fn non_empty(path: &str, v: &str, max: usize) -> Result<(), EventError> {
    if v.trim().is_empty() {
        return Err(EventError::invalid(path, "must not be empty"));
    }
    if v.chars().count() > max {
        return Err(EventError::invalid(
            path,
            format!("longer than {max} characters"),
        ));
    }
    Ok(())
}

fn not_negative(path: &str, v: Decimal) -> Result<(), EventError> {
    if v.is_sign_negative() && !v.is_zero() {
        return Err(EventError::invalid(path, "must not be negative"));
    }
    Ok(())
}

/// A money amount: not negative and at most [`MAX_AMOUNT`]. The refusal names the limit,
/// never the value sent.
fn amount_in_range(path: &str, v: Decimal) -> Result<(), EventError> {
    not_negative(path, v)?;
    if v > Decimal::from(MAX_AMOUNT) {
        return Err(EventError::invalid(
            path,
            format!("must not exceed {MAX_AMOUNT}"),
        ));
    }
    Ok(())
}

fn check(e: &OrderEvent) -> Result<(), EventError> {
    non_empty("event_id", &e.event_id, 128)?;
    non_empty("shop_id", &e.shop_id, 128)?;
    match &e.body {
        EventBody::StatusChanged(s) => {
            non_empty("order_id", &s.order_id, 64)?;
            non_empty("status", &s.status, 128)
        }
        EventBody::Created(o) => check_order(o),
    }
}

fn check_order(o: &ShopOrder) -> Result<(), EventError> {
    non_empty("order.id", &o.id, 64)?;
    non_empty("order.number", &o.number, 64)?;
    non_empty("order.status", &o.status, 128)?;
    if o.currency.len() != 3 || !o.currency.chars().all(|c| c.is_ascii_uppercase()) {
        return Err(EventError::invalid(
            "order.currency",
            format!("\"{}\" is not an ISO 4217 code like UAH", o.currency),
        ));
    }
    let c = &o.customer;
    let blank = |v: &Option<String>| v.as_deref().is_none_or(|s| s.trim().is_empty());
    if blank(&c.name) && blank(&c.phone) && blank(&c.email) {
        return Err(EventError::invalid(
            "order.customer",
            "needs at least a name, a phone or an email",
        ));
    }
    if o.items.is_empty() {
        return Err(EventError::invalid(
            "order.items",
            "an order needs at least one item",
        ));
    }
    for (i, it) in o.items.iter().enumerate() {
        let p = format!("order.items[{i}]");
        non_empty(&format!("{p}.sku"), &it.sku, 128)?;
        non_empty(&format!("{p}.name"), &it.name, 512)?;
        amount_in_range(&format!("{p}.price"), it.price)?;
        amount_in_range(&format!("{p}.discount"), it.discount)?;
        if it.quantity <= Decimal::ZERO {
            return Err(EventError::invalid(
                format!("{p}.quantity"),
                "must be greater than 0",
            ));
        }
        if it.quantity > Decimal::from(MAX_QUANTITY) {
            return Err(EventError::invalid(
                format!("{p}.quantity"),
                format!("must not exceed {MAX_QUANTITY}"),
            ));
        }
        if it.discount > it.price {
            return Err(EventError::invalid(
                format!("{p}.discount"),
                "is larger than the unit price",
            ));
        }
    }
    if let Some(d) = &o.delivery {
        non_empty("order.delivery.method", &d.method, 128)?;
        amount_in_range("order.delivery.cost", d.cost)?;
    }
    if let Some(p) = &o.payment {
        non_empty("order.payment.method", &p.method, 128)?;
        amount_in_range("order.payment.amount", p.amount)?;
    }
    amount_in_range("order.discount", o.discount)?;
    amount_in_range("order.total", o.total)?;
    Ok(())
}

/// Amounts are JSON numbers in this contract; a string is a producer bug, not a format.
fn amount<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Decimal;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a number")
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Decimal, E> {
            Ok(Decimal::from(v))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Decimal, E> {
            Ok(Decimal::from(v))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Decimal, E> {
            if !v.is_finite() {
                return Err(E::custom("not a finite number"));
            }
            Decimal::from_str(&v.to_string())
                .or_else(|_| Decimal::from_scientific(&v.to_string()))
                .map_err(|_| E::custom("the number is out of range"))
        }
    }
    d.deserialize_any(V)
}

#[cfg(test)]
mod tests;
