//! Shop order -> KeyCRM order or pipeline card, through a connection's settings.
//!
//! Everything here is decided from the event, the settings and the cached dictionaries: no
//! lookups per order. What cannot be mapped cleanly is not guessed: it is written into the
//! manager comment and listed in `notes`, so the order still arrives and a person sees why.

use crate::events::{AddonValue, ShopOrder};
use crate::phone;
use crate::reference::KeycrmReference;
use crate::settings::Settings;
use crate::source_key;
use keycrm_model::models::{
    CardContact, CardProduct, CustomField, CustomFieldValue, Marketing, NewBuyer, NewCard,
    NewOrder, NewOrderProduct, NewPayment, NewShipping, Property,
};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A mapped order: the create body plus what still has to happen or be said.
#[derive(Clone, Debug, PartialEq)]
pub struct MappedOrder {
    pub body: NewOrder,
    /// Status to set right after creation; `None` when the default status is already right.
    pub status_after_create: Option<i64>,
    pub report: MappingReport,
}

#[derive(Clone, Debug, PartialEq)]
pub struct MappedCard {
    pub body: NewCard,
    pub status_after_create: Option<i64>,
    pub report: MappingReport,
}

/// What the merchant should know about how an order was mapped.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MappingReport {
    pub notes: Vec<String>,
    /// Set when the lines, delivery and discounts do not add up to the shop's total.
    pub total_mismatch: Option<TotalMismatch>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TotalMismatch {
    pub shop_total: Decimal,
    pub computed: Decimal,
}

/// Permanent reasons an order cannot be placed at all.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    #[error("no KeyCRM source is configured for this connection")]
    NoSource,
    #[error("shop status \"{0}\" has no pipeline mapping and no default pipeline is set")]
    NoPipeline(String),
    #[error("pipeline {0} no longer exists in KeyCRM; fix the mapping and re-push")]
    UnknownPipeline(i64),
    /// The contract bounds every amount, so a parsed event never gets here; the arithmetic
    /// is checked anyway so that no input can panic the consumer.
    #[error("the order's amounts are too large to add up")]
    AmountOutOfRange,
}

/// The sum KeyCRM will compute from what we send. Every step is checked: amounts come from
/// outside.
pub fn computed_total(o: &ShopOrder) -> Result<Decimal, MappingError> {
    let mut lines = Decimal::ZERO;
    for i in &o.items {
        let line = unit_price(i)?
            .checked_mul(i.quantity)
            .ok_or(MappingError::AmountOutOfRange)?;
        lines = lines
            .checked_add(line)
            .ok_or(MappingError::AmountOutOfRange)?;
    }
    let delivery = o.delivery.as_ref().map(|d| d.cost).unwrap_or_default();
    lines
        .checked_add(delivery)
        .and_then(|t| t.checked_sub(o.discount))
        .ok_or(MappingError::AmountOutOfRange)
}

/// A line's unit price after its discount.
fn unit_price(i: &crate::events::LineItem) -> Result<Decimal, MappingError> {
    i.price
        .checked_sub(i.discount)
        .ok_or(MappingError::AmountOutOfRange)
}

fn opt(s: &Option<String>) -> Option<String> {
    s.as_ref()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

struct Common {
    buyer_phone: Option<String>,
    payments: Vec<NewPayment>,
    fields: Vec<CustomFieldValue>,
    report: MappingReport,
    comment_lines: Vec<String>,
}

fn common(
    o: &ShopOrder,
    settings: &Settings,
    fields_of: impl Fn(&str) -> Option<CustomField>,
) -> Result<Common, MappingError> {
    let mut report = MappingReport::default();
    let mut comment_lines = Vec::new();

    let buyer_phone = match opt(&o.customer.phone) {
        Some(raw) => match phone::normalize(&raw) {
            Some(p) => Some(p),
            None => {
                report.notes.push(format!(
                    "phone \"{raw}\" is not a valid number; kept in the comment"
                ));
                comment_lines.push(format!("Телефон покупця: {raw}"));
                None
            }
        },
        None => None,
    };

    let mut payments = Vec::new();
    if let Some(p) = &o.payment {
        match settings.payment_method_for(&p.method) {
            Some(id) => payments.push(NewPayment {
                payment_method_id: id,
                amount: p.amount,
                status: if p.paid { "paid" } else { "not_paid" }.to_string(),
                description: None,
            }),
            None => {
                report.notes.push(format!(
                    "payment method \"{}\" is not mapped; payment left out",
                    p.method
                ));
                comment_lines.push(format!(
                    "Оплата: {} ({}), {}",
                    p.method,
                    if p.paid {
                        "оплачено"
                    } else {
                        "не оплачено"
                    },
                    p.amount
                ));
            }
        }
    }

    let mut fields = Vec::new();
    for link in &settings.addon_fields {
        let Some(AddonValue { value, .. }) = o.addons.iter().find(|a| a.id == link.addon_id) else {
            continue;
        };
        if value.is_null() {
            continue;
        }
        let Some(field) = fields_of(&link.field_uuid) else {
            report.notes.push(format!(
                "custom field {} no longer exists; add-on \"{}\" left out",
                link.field_uuid, link.addon_id
            ));
            continue;
        };
        match field_value(&field, value) {
            Ok(v) => fields.push(CustomFieldValue {
                uuid: field.uuid.clone(),
                value: v,
            }),
            Err(why) => {
                report.notes.push(format!(
                    "add-on \"{}\" does not fit custom field {} ({}): {why}",
                    link.addon_id, field.uuid, field.field_type
                ));
                comment_lines.push(format!("{}: {}", link.addon_id, display(value)));
            }
        }
    }

    let computed = computed_total(o)?;
    if computed != o.total {
        report.total_mismatch = Some(TotalMismatch {
            shop_total: o.total,
            computed,
        });
        report.notes.push(format!(
            "shop total {} differs from the sum of lines, delivery and discounts {}",
            o.total, computed
        ));
    }

    Ok(Common {
        buyer_phone,
        payments,
        fields,
        report,
        comment_lines,
    })
}

fn display(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// An add-on value in the shape the KeyCRM field type takes.
pub fn field_value(field: &CustomField, v: &Value) -> Result<Value, String> {
    let as_text = || match v {
        Value::String(s) => Ok(s.trim().to_string()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(if *b { "Так" } else { "Ні" }.to_string()),
        _ => Err("expected text".to_string()),
    };
    match field.field_type.as_str() {
        "select" => {
            let wanted: Vec<String> = match v {
                Value::Array(items) => items
                    .iter()
                    .map(|i| {
                        i.as_str()
                            .map(str::to_string)
                            .ok_or("expected text options")
                    })
                    .collect::<Result<_, _>>()?,
                _ => vec![as_text()?],
            };
            let mut chosen = Vec::new();
            for w in wanted {
                let option = field
                    .options
                    .iter()
                    .find(|o| o.value.to_lowercase() == w.to_lowercase())
                    .ok_or_else(|| format!("\"{w}\" is not one of the field's options"))?;
                chosen.push(Value::String(option.value.clone()));
            }
            if chosen.len() > 1 && !field.is_multiple {
                return Err("the field takes one option".into());
            }
            Ok(Value::Array(chosen))
        }
        "switcher" => match v {
            Value::Bool(b) => Ok(Value::Bool(*b)),
            Value::Number(n) if n.as_i64() == Some(0) || n.as_i64() == Some(1) => {
                Ok(Value::Bool(n.as_i64() == Some(1)))
            }
            Value::String(s) => match s.trim().to_lowercase().as_str() {
                "1" | "true" | "yes" | "так" | "on" => Ok(Value::Bool(true)),
                "0" | "false" | "no" | "ні" | "off" | "" => Ok(Value::Bool(false)),
                _ => Err(format!("\"{s}\" is not yes or no")),
            },
            _ => Err("expected yes or no".into()),
        },
        "number" => {
            let n = number_of(v)?;
            if n.fract() != Decimal::ZERO {
                return Err(format!("{n} is not a whole number"));
            }
            let i: i64 = n
                .trunc()
                .try_into()
                .map_err(|_| format!("{n} is out of range"))?;
            Ok(Value::from(i))
        }
        "float" => {
            let n = number_of(v)?;
            let f: f64 = n.try_into().map_err(|_| format!("{n} is out of range"))?;
            Ok(Value::from(f))
        }
        "date" => {
            let t =
                keycrm_model::time::parse(&as_text()?).ok_or("expected a date like 2026-11-28")?;
            Ok(Value::String(t.format("%Y-%m-%d").to_string()))
        }
        "datetime" => {
            let t = keycrm_model::time::parse(&as_text()?).ok_or("expected a date and time")?;
            Ok(Value::String(keycrm_model::time::format_request(t)))
        }
        // text, textarea, link and anything newer: text is always accepted.
        _ => Ok(Value::String(as_text()?)),
    }
}

fn number_of(v: &Value) -> Result<Decimal, String> {
    use std::str::FromStr;
    match v {
        Value::Number(n) => Decimal::from_str(&n.to_string())
            .or_else(|_| Decimal::from_scientific(&n.to_string()))
            .map_err(|_| format!("{n} is not a number")),
        Value::String(s) => Decimal::from_str(s.trim().replace(',', ".").as_str())
            .map_err(|_| format!("\"{s}\" is not a number")),
        _ => Err("expected a number".into()),
    }
}

fn products(o: &ShopOrder) -> Vec<NewOrderProduct> {
    o.items
        .iter()
        .map(|i| NewOrderProduct {
            sku: i.sku.trim().to_string(),
            name: i.name.clone(),
            price: i.price,
            quantity: i.quantity,
            discount_amount: (!i.discount.is_zero()).then_some(i.discount),
            picture: opt(&i.picture),
            properties: i
                .properties
                .iter()
                .map(|p| Property {
                    name: p.name.clone(),
                    value: p.value.clone(),
                })
                .collect(),
        })
        .collect()
}

fn join_comment(base: Option<String>, lines: &[String]) -> Option<String> {
    let mut parts: Vec<String> = base.into_iter().collect();
    parts.extend(lines.iter().cloned());
    (!parts.is_empty()).then(|| parts.join("\n"))
}

/// The account's starting status: where KeyCRM puts a new order.
fn default_order_status(crm: &KeycrmReference) -> i64 {
    crm.order_statuses
        .iter()
        .filter(|s| s.group_id == 1)
        .map(|s| s.id)
        .min()
        .unwrap_or(1)
}

/// `POST /order` body for a shop order of shop `shop_id`.
pub fn map_order(
    shop_id: &str,
    o: &ShopOrder,
    settings: &Settings,
    crm: &KeycrmReference,
) -> Result<MappedOrder, MappingError> {
    let source_id = settings.source_id.ok_or(MappingError::NoSource)?;
    let mut c = common(o, settings, |uuid| crm.order_field(uuid).cloned())?;

    let shipping = o.delivery.as_ref().map(|d| {
        let service_id = settings.delivery_service_for(&d.method);
        if service_id.is_none() {
            c.report.notes.push(format!(
                "delivery method \"{}\" is not mapped; sent as text",
                d.method
            ));
        }
        let is_np = service_id
            .and_then(|id| crm.delivery_service(id))
            .is_some_and(|s| s.is_nova_poshta());
        let warehouse_ref = opt(&d.np_warehouse_ref);
        if warehouse_ref.is_some() && !is_np {
            c.report.notes.push(
                "Nova Poshta warehouse ref given, but the delivery is not mapped to Nova Poshta"
                    .into(),
            );
        }
        let addr = d.address.clone().unwrap_or(crate::events::Address {
            country: None,
            region: None,
            city: None,
            zip: None,
            line: None,
        });
        let recipient = d.recipient.as_ref();
        let recipient_phone = recipient
            .and_then(|r| opt(&r.phone))
            .map(|p| phone::normalize(&p).unwrap_or(p));
        NewShipping {
            delivery_service_id: service_id,
            shipping_service: service_id.is_none().then(|| d.method.clone()),
            shipping_address_city: opt(&addr.city),
            shipping_address_country: opt(&addr.country),
            shipping_address_region: opt(&addr.region),
            shipping_address_zip: opt(&addr.zip),
            shipping_secondary_line: opt(&addr.line),
            shipping_receive_point: opt(&d.receive_point),
            recipient_full_name: recipient.and_then(|r| opt(&r.name)),
            recipient_phone,
            warehouse_ref: if is_np { warehouse_ref } else { None },
        }
    });

    let marketing = o.utm.as_ref().map(|u| Marketing {
        utm_source: opt(&u.source),
        utm_medium: opt(&u.medium),
        utm_campaign: opt(&u.campaign),
        utm_term: opt(&u.term),
        utm_content: opt(&u.content),
    });

    let status_after_create = match settings.keycrm_status_for(&o.status) {
        Some(s) if s != default_order_status(crm) => Some(s),
        Some(_) => None,
        None => {
            c.report.notes.push(format!(
                "shop status \"{}\" is not mapped; the order keeps KeyCRM's starting status",
                o.status
            ));
            None
        }
    };

    let body = NewOrder {
        source_id,
        source_uuid: Some(source_key::source_uuid(shop_id, &o.id)),
        ordered_at: Some(keycrm_model::time::format_request(o.created_at)),
        buyer: NewBuyer {
            full_name: opt(&o.customer.name),
            email: opt(&o.customer.email),
            phone: c.buyer_phone.clone(),
        },
        buyer_comment: opt(&o.comment),
        manager_comment: join_comment(None, &c.comment_lines),
        promocode: opt(&o.promo_code),
        discount_amount: (!o.discount.is_zero()).then_some(o.discount),
        shipping_price: o.delivery.as_ref().map(|d| d.cost).filter(|c| !c.is_zero()),
        shipping,
        marketing: marketing.filter(|m| !m.is_empty()),
        products: products(o),
        payments: c.payments,
        custom_fields: c.fields,
    };
    Ok(MappedOrder {
        body,
        status_after_create,
        report: c.report,
    })
}

/// `POST /pipelines/cards` body for a shop order of shop `shop_id`. The manager comment opens
/// with the order's marker line ([`source_key::card_marker`]): cards have no `source_uuid`,
/// and recovery finds the card by that line.
pub fn map_card(
    shop_id: &str,
    o: &ShopOrder,
    settings: &Settings,
    crm: &KeycrmReference,
) -> Result<MappedCard, MappingError> {
    let (pipeline_id, status) = match settings.pipeline_status_for(&o.status) {
        Some((p, s)) => (p, Some(s)),
        None => (
            settings
                .default_pipeline_id
                .ok_or_else(|| MappingError::NoPipeline(o.status.clone()))?,
            None,
        ),
    };
    let pipeline = crm
        .pipeline(pipeline_id)
        .ok_or(MappingError::UnknownPipeline(pipeline_id))?;
    let first_status = pipeline.statuses.first().map(|s| s.id);
    let mut c = common(o, settings, |uuid| crm.lead_field(uuid).cloned())?;

    // Cards have no shipping block: the delivery goes into the comment a manager reads.
    if let Some(d) = &o.delivery {
        let mut parts = vec![format!("Доставка: {}", d.method)];
        if let Some(a) = &d.address {
            parts.extend(opt(&a.city));
            parts.extend(opt(&a.line));
        }
        parts.extend(opt(&d.receive_point));
        if let Some(r) = opt(&d.np_warehouse_ref) {
            parts.push(format!("NP ref {r}"));
        }
        if !d.cost.is_zero() {
            parts.push(format!("вартість {}", d.cost));
        }
        c.comment_lines.insert(0, parts.join(", "));
    }
    if let Some(comment) = opt(&o.comment) {
        c.comment_lines
            .insert(0, format!("Коментар покупця: {comment}"));
    }
    c.comment_lines
        .insert(0, source_key::card_marker(shop_id, &o.id));
    let utm = o.utm.clone().unwrap_or_default();
    let body = NewCard {
        title: Some(format!("Замовлення №{}", o.number)),
        pipeline_id,
        source_id: settings.source_id,
        manager_comment: join_comment(None, &c.comment_lines),
        contact: CardContact {
            full_name: opt(&o.customer.name),
            email: opt(&o.customer.email),
            phone: c.buyer_phone.clone(),
        },
        utm_source: opt(&utm.source),
        utm_medium: opt(&utm.medium),
        utm_campaign: opt(&utm.campaign),
        utm_term: opt(&utm.term),
        utm_content: opt(&utm.content),
        products: o
            .items
            .iter()
            .map(|i| {
                Ok(CardProduct {
                    sku: i.sku.trim().to_string(),
                    name: i.name.clone(),
                    price: unit_price(i)?,
                    quantity: i.quantity,
                    picture: opt(&i.picture),
                })
            })
            .collect::<Result<_, MappingError>>()?,
        payments: c.payments,
        custom_fields: c.fields,
    };
    Ok(MappedCard {
        body,
        status_after_create: status.filter(|s| Some(*s) != first_status),
        report: c.report,
    })
}

#[cfg(test)]
#[path = "order_map_tests.rs"]
mod tests;
