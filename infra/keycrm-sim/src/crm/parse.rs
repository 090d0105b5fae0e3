//! Reading request bodies into CRM entities: buyers (found or created), order and card lines,
//! payments, shipping, custom fields; and the `*_between` list filters.

use rust_decimal::Decimal;
use serde_json::{json, Map, Value};

use super::{next, Buyer, Crm, Line, Payment, Shipping};
use crate::catalog::{Catalog, Offer};
use crate::dicts::{self, CfModel};
use crate::error::{attr, Invalid};
use crate::input::{objects, Fields};
use crate::query::ListQuery;
use crate::util::{cents_to_dec, dec};

impl Crm {
    pub(super) fn find_or_create_buyer(
        &mut self,
        full_name: Option<String>,
        email: Option<String>,
        phone: Option<String>,
        now: i64,
    ) -> i64 {
        let phone = phone
            .filter(|p| !p.trim().is_empty())
            .map(|p| crate::input::normalize_phone(&p));
        let email = email
            .filter(|e| !e.trim().is_empty())
            .map(|e| e.trim().to_string());
        let found = phone
            .as_ref()
            .and_then(|p| self.buyers.iter().find(|b| b.phone.as_ref() == Some(p)))
            .or_else(|| {
                email.as_ref().and_then(|e| {
                    self.buyers.iter().find(|b| {
                        b.email
                            .as_ref()
                            .is_some_and(|be| be.eq_ignore_ascii_case(e))
                    })
                })
            })
            .map(|b| b.id);
        if let Some(id) = found {
            return id;
        }
        let id = next(&mut self.next_buyer_id);
        self.buyers.push(Buyer {
            id,
            full_name,
            email,
            phone,
            created_at: now,
            updated_at: now,
        });
        id
    }

    /// What a create body of an order and of a card hold alike: `products` (lines, with their
    /// purchase price on orders), `payments` and `custom_fields` of `model`; each empty when
    /// absent. Orders and cards read them in this order, so their errors come in one order.
    pub(super) fn parse_contents(
        &mut self,
        f: &Fields,
        catalog: &Catalog,
        now: i64,
        inv: &mut Invalid,
        with_purchase: bool,
        model: CfModel,
    ) -> (Vec<Line>, Vec<Payment>, Vec<(String, Value)>) {
        let lines = match f.array("products", inv) {
            Some(arr) => self.parse_lines(arr, catalog, now, inv, with_purchase),
            None => Vec::new(),
        };
        let payments = match f.array("payments", inv) {
            Some(arr) => self.parse_payments(arr, now, inv),
            None => Vec::new(),
        };
        let custom_fields = match f.array("custom_fields", inv) {
            Some(arr) => parse_custom_fields(arr, model, inv),
            None => Vec::new(),
        };
        (lines, payments, custom_fields)
    }

    pub(super) fn parse_lines(
        &mut self,
        arr: &[Value],
        catalog: &Catalog,
        now: i64,
        inv: &mut Invalid,
        with_purchase: bool,
    ) -> Vec<Line> {
        let mut lines = Vec::new();
        for (_, f) in objects(arr, "products", inv) {
            let sku = f.string("sku", inv).filter(|s| !s.is_empty());
            let name = f.string("name", inv).filter(|s| !s.is_empty());
            let price = f.number("price", inv);
            let purchased = if with_purchase {
                f.number("purchased_price", inv)
            } else {
                None
            };
            let quantity = match f.number("quantity", inv) {
                Some(q) if q <= Decimal::ZERO => {
                    let p = f.path("quantity");
                    inv.add(
                        p.clone(),
                        format!("The {} must be greater than 0.", attr(&p)),
                    );
                    continue;
                }
                Some(q) => q,
                None if f.has("quantity") => continue,
                None => Decimal::ONE,
            };
            let discount_percent = f.number("discount_percent", inv);
            let discount_amount = f.number("discount_amount", inv);
            let unit_type = f.string("unit_type", inv);
            let comment = f.string("comment", inv);
            let picture = f.string("picture", inv);
            let mut properties = Vec::new();
            if let Some(props) = f.array("properties", inv) {
                for p in props {
                    // items missing name or value are ignored (SPEC)
                    if let (Some(n), Some(v)) = (
                        p.get("name").and_then(Value::as_str),
                        p.get("value").and_then(|v| match v {
                            Value::String(s) => Some(s.clone()),
                            Value::Number(n) => Some(n.to_string()),
                            _ => None,
                        }),
                    ) {
                        properties.push((n.to_string(), v));
                    }
                }
            }
            let offer: Option<&Offer> = sku.as_deref().and_then(|s| catalog.offer_by_sku(s));
            if sku.is_none() && name.is_none() {
                let p = f.path("name");
                inv.add(
                    p.clone(),
                    format!(
                        "The {} field is required when {} is not present.",
                        attr(&p),
                        attr(&f.path("sku"))
                    ),
                );
                continue;
            }
            let product = offer.and_then(|o| catalog.product(o.product_id));
            let line_name = name
                .or_else(|| product.map(|p| p.name.clone()))
                .or_else(|| sku.clone())
                .unwrap_or_default();
            if properties.is_empty() {
                if let Some(o) = offer {
                    properties = o
                        .properties
                        .iter()
                        .map(|(n, v)| (n.to_string(), v.to_string()))
                        .collect();
                }
            }
            lines.push(Line {
                id: next(&mut self.next_line_id),
                offer_id: offer.map(|o| o.id),
                product_id: offer.map(|o| o.product_id),
                sku,
                name: line_name,
                price: price
                    .or_else(|| offer.map(|o| cents_to_dec(o.price)))
                    .unwrap_or_default(),
                purchased_price: purchased
                    .or_else(|| offer.map(|o| cents_to_dec(o.purchased_price)))
                    .unwrap_or_default(),
                discount_percent,
                discount_amount,
                quantity,
                unit_type,
                comment,
                picture: picture.or_else(|| offer.map(|o| Catalog::thumbnail(o.product_id))),
                properties,
                product_status_id: None,
                created_at: now,
                updated_at: now,
            });
        }
        lines
    }

    pub(super) fn parse_payments(
        &mut self,
        arr: &[Value],
        now: i64,
        inv: &mut Invalid,
    ) -> Vec<Payment> {
        let mut out = Vec::new();
        for (_, f) in objects(arr, "payments", inv) {
            let amount = if f.required("amount", inv) {
                f.number("amount", inv)
            } else {
                None
            };
            let method_id = match f.int("payment_method_id", inv) {
                Some(id) if dicts::payment_method_exists(id) => Some(id),
                Some(_) => {
                    f.invalid("payment_method_id", inv);
                    None
                }
                None => match f.string("payment_method", inv) {
                    Some(name) => match dicts::payment_method_by_name(&name) {
                        Some(m) => Some(m.id),
                        None => {
                            f.invalid("payment_method", inv);
                            None
                        }
                    },
                    None => {
                        let p = f.path("payment_method_id");
                        inv.add(
                            p.clone(),
                            format!(
                                "The {} field is required when {} is not present.",
                                attr(&p),
                                attr(&f.path("payment_method"))
                            ),
                        );
                        None
                    }
                },
            };
            let status = match f.string("status", inv) {
                None => "paid".to_string(),
                Some(s) if ["paid", "not_paid", "canceled"].contains(&s.as_str()) => s,
                Some(_) => {
                    f.invalid("status", inv);
                    continue;
                }
            };
            let description = f.string("description", inv);
            let payment_date = f.datetime("payment_date", inv).unwrap_or(now);
            if let (Some(amount), Some(method)) = (amount, method_id) {
                out.push(Payment {
                    id: next(&mut self.next_payment_id),
                    payment_method_id: method,
                    amount,
                    status,
                    description,
                    payment_date,
                    created_at: now,
                    updated_at: now,
                });
            }
        }
        out
    }
}

pub(super) fn range_filter(q: &ListQuery, name: &str) -> Result<Option<(i64, i64)>, String> {
    match q.filter(name) {
        None => Ok(None),
        Some(v) => crate::time::parse_between(v).map(Some).ok_or_else(|| {
            format!(
                "Invalid value `{v}` for filter `{name}`: expected \"from,to\" dates (Y-m-d or Y-m-d H:i:s)."
            )
        }),
    }
}

pub(super) fn parse_shipping(
    s: &Map<String, Value>,
    base: Option<&Shipping>,
    inv: &mut Invalid,
) -> Shipping {
    let f = Fields::new(s, "shipping.");
    let mut out = base.cloned().unwrap_or_default();
    let str_field = |key: &str, slot: &mut Option<String>, inv: &mut Invalid| {
        if f.obj.contains_key(key) {
            *slot = f.string(key, inv);
        }
    };
    str_field("shipping_service", &mut out.shipping_service, inv);
    str_field("shipping_address_city", &mut out.shipping_address_city, inv);
    str_field(
        "shipping_address_country",
        &mut out.shipping_address_country,
        inv,
    );
    str_field(
        "shipping_address_region",
        &mut out.shipping_address_region,
        inv,
    );
    str_field("shipping_address_zip", &mut out.shipping_address_zip, inv);
    str_field(
        "shipping_secondary_line",
        &mut out.shipping_secondary_line,
        inv,
    );
    str_field(
        "shipping_receive_point",
        &mut out.shipping_receive_point,
        inv,
    );
    str_field("recipient_full_name", &mut out.recipient_full_name, inv);
    str_field("recipient_phone", &mut out.recipient_phone, inv);
    str_field("warehouse_ref", &mut out.warehouse_ref, inv);
    if f.obj.contains_key("delivery_service_id") {
        out.delivery_service_id = f.known_id("delivery_service_id", inv, |id| {
            dicts::delivery_service(id).is_some()
        });
    }
    if f.obj.contains_key("tracking_code") {
        let new = f.string("tracking_code", inv).filter(|t| !t.is_empty());
        let existing = base
            .and_then(|b| b.tracking_code.clone())
            .filter(|t| !t.is_empty());
        match (&existing, &new) {
            (Some(old), Some(n)) if old != n => inv.add(
                "shipping.tracking_code",
                "The order already has a tracking code; it cannot be replaced.",
            ),
            _ => out.tracking_code = new.or(existing),
        }
    }
    if f.obj.contains_key("shipping_date") {
        out.shipping_date = f.date("shipping_date", inv);
    }
    if out.warehouse_ref.is_some() && out.delivery_service_id.is_none() {
        inv.add(
            "shipping.delivery_service_id",
            "The shipping.delivery service id field is required when shipping.warehouse ref is present.",
        );
    }
    out
}

pub(super) fn parse_custom_fields(
    arr: &[Value],
    model: CfModel,
    inv: &mut Invalid,
) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for (_, f) in objects(arr, "custom_fields", inv) {
        if !f.required("uuid", inv) {
            continue;
        }
        let Some(uuid) = f.string("uuid", inv) else {
            continue;
        };
        let Some(def) = dicts::custom_field(&uuid, model) else {
            f.invalid("uuid", inv);
            continue;
        };
        let raw = f.obj.get("value").cloned().unwrap_or(Value::Null);
        let value = match def.kind {
            "select" => match raw {
                Value::Array(a) => Value::Array(
                    a.into_iter()
                        .map(|v| match v {
                            Value::String(s) => Value::String(s),
                            other => Value::String(other.to_string()),
                        })
                        .collect(),
                ),
                Value::Null => Value::Array(Vec::new()),
                Value::String(s) => json!([s]),
                other => json!([other.to_string()]),
            },
            "number" | "float" => match crate::input::decimal_of(&raw) {
                Some(d) => dec(d),
                None if raw.is_null() => Value::Null,
                None => {
                    let p = f.path("value");
                    inv.add(p.clone(), format!("The {} must be a number.", attr(&p)));
                    continue;
                }
            },
            "switcher" => match raw {
                Value::Bool(b) => Value::Bool(b),
                Value::Number(n) => Value::Bool(n.as_i64().unwrap_or(0) != 0),
                Value::String(s) => Value::Bool(matches!(s.as_str(), "1" | "true" | "Так")),
                _ => Value::Bool(false),
            },
            _ => match raw {
                Value::Number(n) => Value::String(n.to_string()),
                other => other,
            },
        };
        out.push((uuid, value));
    }
    out
}
