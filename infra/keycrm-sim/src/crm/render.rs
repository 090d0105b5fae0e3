//! The JSON KeyCRM answers with: orders, buyers, cards and contacts with their `include`s, and
//! the webhook contexts.

use serde_json::{json, Map, Value};

use super::{Buyer, Card, Contact, Crm, Line, Marketing, Order, Payment, Shipping, UTM_KEYS};
use crate::catalog::Catalog;
use crate::dicts::{self, CfModel};
use crate::time::{iso, space};
use crate::util::{dec, dec_str, opt_dec, opt_str};
use crate::CardInc;
use crate::OrderInc;

impl Crm {
    pub(crate) fn render_order(&self, o: &Order, inc: &OrderInc, catalog: &Catalog) -> Value {
        let t = o.totals();
        let mut m = Map::new();
        let base = json!({
            "id": o.id,
            "parent_id": null,
            "source_uuid": o.source_uuid,
            "global_source_uuid": null,
            "status_on_source": null,
            "source_id": o.source_id,
            "client_id": o.client_id,
            "grand_total": dec(t.grand_total),
            "total_discount": dec(t.total_discount),
            "margin_sum": dec(t.margin_sum),
            "expenses_sum": 0,
            "discount_amount": opt_dec(o.discount_amount),
            "discount_percent": opt_dec(o.discount_percent),
            "shipping_price": opt_dec(o.shipping_price),
            "wrap_price": opt_dec(o.wrap_price),
            "taxes": opt_dec(o.taxes),
            "register_id": null,
            "fiscal_result": [],
            "fiscal_status": null,
            "shipping_type_id": null,
            "manager_id": o.manager_id,
            "status_group_id": o.status_group_id,
            "status_id": o.status_id,
            "closed_from": null,
            "status_changed_at": iso(o.status_changed_at),
            "status_expired_at": null,
            "manager_comment": o.manager_comment,
            "client_comment": null,
            "buyer_comment": o.buyer_comment,
            "discount_data": null,
            "is_gift": o.is_gift,
            "promocode": o.promocode,
            "gift_message": o.gift_message,
            "gift_wrap": o.gift_wrap,
            "payment_status": t.payment_status,
            "last_synced_at": null,
            "created_at": iso(o.created_at),
            "updated_at": iso(o.updated_at),
            "closed_at": o.closed_at.map(space),
            "deleted_at": null,
            "ordered_at": iso(o.ordered_at),
            "source_updated_at": null,
            "payments_total": dec(t.payments_total),
            "products_total": dec(t.products_total),
            "is_expired": false,
            "has_reserves": !o.reserved.is_empty(),
        });
        if let Value::Object(b) = base {
            m = b;
        }
        if inc.buyer {
            m.insert(
                "buyer".into(),
                self.buyer(o.client_id)
                    .map(|b| self.render_buyer(b))
                    .unwrap_or(Value::Null),
            );
        }
        if inc.products {
            let lines = o.lines.iter();
            let products = lines.map(|l| render_order_line(l, inc.products_offer, catalog));
            m.insert("products".into(), Value::Array(products.collect()));
        }
        if inc.manager {
            m.insert("manager".into(), render_manager(o.manager_id));
        }
        if inc.tags {
            m.insert("tags".into(), json!([]));
        }
        if inc.status {
            m.insert(
                "status".into(),
                dicts::order_status(o.status_id)
                    .map(dicts::render_order_status)
                    .unwrap_or(Value::Null),
            );
        }
        if inc.marketing {
            m.insert(
                "marketing".into(),
                o.marketing
                    .as_ref()
                    .map(render_marketing)
                    .unwrap_or(Value::Null),
            );
        }
        if inc.payments {
            m.insert(
                "payments".into(),
                Value::Array(o.payments.iter().map(|p| render_payment(p, o.id)).collect()),
            );
        }
        if inc.shipping {
            m.insert(
                "shipping".into(),
                o.shipping
                    .as_ref()
                    .map(|s| render_shipping(s, inc.delivery_service, inc.last_history))
                    .unwrap_or(Value::Null),
            );
        }
        if inc.expenses {
            m.insert("expenses".into(), json!([]));
        }
        if inc.custom_fields {
            m.insert(
                "custom_fields".into(),
                render_cf_values(&o.custom_fields, CfModel::Order),
            );
        }
        if inc.assigned {
            m.insert("assigned".into(), json!([]));
        }
        Value::Object(m)
    }

    /// The bare order row sent as webhook `context` (no relations; money strings for
    /// `shipping_price`/`taxes`).
    pub(crate) fn order_context(&self, o: &Order) -> Value {
        let t = o.totals();
        json!({
            "id": o.id,
            "source_uuid": o.source_uuid,
            "global_source_uuid": null,
            "status_on_source": null,
            "source_id": o.source_id,
            "client_id": o.client_id,
            "grand_total": dec(t.grand_total),
            "total_discount": dec(t.total_discount),
            "margin_sum": dec(t.margin_sum),
            "expenses_sum": 0,
            "discount_amount": opt_dec(o.discount_amount),
            "discount_percent": opt_dec(o.discount_percent),
            "shipping_price": o.shipping_price.map(dec_str),
            "wrap_price": o.wrap_price.map(dec_str),
            "taxes": o.taxes.map(dec_str),
            "register_id": null,
            "fiscal_result": [],
            "fiscal_status": null,
            "shipping_type_id": null,
            "manager_id": o.manager_id,
            "status_group_id": o.status_group_id,
            "status_id": o.status_id,
            "closed_from": null,
            "status_changed_at": iso(o.status_changed_at),
            "status_expired_at": null,
            "parent_id": null,
            "manager_comment": o.manager_comment,
            "client_comment": o.buyer_comment,
            "discount_data": null,
            "is_gift": o.is_gift,
            "promocode": o.promocode,
            "gift_message": o.gift_message,
            "gift_wrap": o.gift_wrap,
            "payment_status": t.payment_status,
            "last_synced_at": null,
            "created_at": iso(o.created_at),
            "updated_at": iso(o.updated_at),
            "closed_at": o.closed_at.map(space),
            "deleted_at": null,
            "ordered_at": iso(o.ordered_at),
            "source_updated_at": null,
            "payments_total": dec(t.payments_total),
            "products_total": dec(t.products_total),
            "is_expired": false,
            "has_reserves": !o.reserved.is_empty(),
        })
    }

    pub(crate) fn render_buyer(&self, b: &Buyer) -> Value {
        let (sum, count) = self.buyer_orders_sum(b.id);
        json!({
            "id": b.id,
            "full_name": b.full_name,
            "email": b.email,
            "phone": b.phone,
            "company_id": null,
            "manager_id": null,
            "birthday": null,
            "note": null,
            "picture": null,
            "image": null,
            "orders_sum": dec_str(sum),
            "discount": 0,
            "currency": "UAH",
            "orders_count": count,
            "has_duplicates": 0,
            "deleted_at": null,
            "created_at": iso(b.created_at),
            "updated_at": iso(b.updated_at),
        })
    }

    pub(super) fn card_base(&self, c: &Card) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("id".into(), c.id.into());
        m.insert("title".into(), opt_str(&c.title));
        m.insert("pipeline_id".into(), c.pipeline_id.into());
        m.insert("source_id".into(), json!(c.source_id));
        m.insert("status_id".into(), c.status_id.into());
        m.insert("contact_id".into(), c.contact_id.into());
        m.insert("manager_id".into(), json!(c.manager_id));
        m.insert("manager_comment".into(), opt_str(&c.manager_comment));
        m.insert("is_finished".into(), Value::Null);
        m.insert("communicate_at".into(), json!(c.communicate_at.map(iso)));
        m.insert("status_changed_at".into(), iso(c.status_changed_at).into());
        m.insert("target_type".into(), Value::Null);
        m.insert("target_id".into(), Value::Null);
        for (i, k) in UTM_KEYS.iter().enumerate() {
            m.insert((*k).into(), opt_str(&c.utm[i]));
        }
        m.insert("created_at".into(), iso(c.created_at).into());
        m.insert("updated_at".into(), iso(c.updated_at).into());
        m
    }

    /// Webhook `context` for `lead.change_lead_status`.
    pub(crate) fn card_context(&self, c: &Card) -> Value {
        let mut m = self.card_base(c);
        m.insert("deleted_at".into(), Value::Null);
        Value::Object(m)
    }

    pub(super) fn render_contact(&self, c: &Contact, with_client: bool) -> Value {
        let mut v = json!({
            "id": c.id,
            "client_id": c.client_id,
            "full_name": c.full_name,
            "email": c.email,
            "phone": c.phone,
            "social_name": null,
            "social_id": null,
            "additional_details": null,
            "picture": null,
            "created_at": iso(c.created_at),
            "updated_at": iso(c.updated_at),
        });
        if with_client {
            v["client"] = self
                .buyer(c.client_id)
                .map(|b| {
                    let mut bv = self.render_buyer(b);
                    bv["formatted_phone"] = json!(b.phone);
                    bv["additional_phone"] = Value::Null;
                    // spec: client.full_name is a non-null string
                    if bv["full_name"].is_null() {
                        bv["full_name"] = json!("");
                    }
                    bv
                })
                .unwrap_or(Value::Null);
        }
        v
    }

    pub(crate) fn render_card(&self, c: &Card, inc: &CardInc, catalog: &Catalog) -> Value {
        let mut m = self.card_base(c);
        if inc.contact {
            m.insert(
                "contact".into(),
                self.contact(c.contact_id)
                    .map(|ct| self.render_contact(ct, inc.client))
                    .unwrap_or(Value::Null),
            );
        }
        if inc.products {
            let lines = c.lines.iter();
            let products = lines.map(|l| render_card_line(l, inc.products_offer, catalog));
            m.insert("products".into(), Value::Array(products.collect()));
        }
        if inc.manager {
            m.insert("manager".into(), render_manager(c.manager_id));
        }
        if inc.status {
            m.insert(
                "status".into(),
                dicts::pipeline_status(c.status_id)
                    .map(dicts::render_card_status)
                    .unwrap_or(Value::Null),
            );
        }
        if inc.payments {
            m.insert(
                "payments".into(),
                Value::Array(c.payments.iter().map(|p| render_payment(p, c.id)).collect()),
            );
        }
        if inc.custom_fields {
            m.insert(
                "custom_fields".into(),
                render_cf_values(&c.custom_fields, CfModel::Lead),
            );
        }
        Value::Object(m)
    }

    /// `POST /pipelines/cards` response: the card row plus its contact (clients read
    /// `contact.client_id` from it).
    pub(crate) fn render_card_created(&self, c: &Card) -> Value {
        let mut m = self.card_base(c);
        m.insert(
            "contact".into(),
            self.contact(c.contact_id)
                .map(|ct| self.render_contact(ct, false))
                .unwrap_or(Value::Null),
        );
        Value::Object(m)
    }
}

/// `include=manager`: the user, or `null` when none is assigned (or the id is unknown).
fn render_manager(id: Option<i64>) -> Value {
    id.and_then(dicts::user)
        .map(dicts::render_user)
        .unwrap_or(Value::Null)
}

pub(super) fn render_cf_values(values: &[(String, Value)], model: CfModel) -> Value {
    Value::Array(
        values
            .iter()
            .filter_map(|(uuid, v)| {
                dicts::custom_field(uuid, model).map(|f| dicts::render_custom_field_value(f, v))
            })
            .collect(),
    )
}

pub(super) fn picture_value(p: &Option<String>) -> Value {
    match p {
        Some(url) => json!({"thumbnail": url}),
        None => json!([]),
    }
}

pub(super) fn render_order_line(l: &Line, with_offer: bool, catalog: &Catalog) -> Value {
    let unit_disc = l.unit_discount();
    let mut v = json!({
        "id": l.id,
        "sku": l.sku,
        "name": l.name,
        "upsale": false,
        "price": dec(l.price),
        "price_sold": dec(l.price - unit_disc),
        "purchased_price": dec(l.purchased_price),
        "discount_percent": dec(l.discount_percent.unwrap_or_default()),
        "discount_amount": dec(l.discount_amount.unwrap_or_default()),
        "total_discount": dec((unit_disc * l.quantity).round_dp(2)),
        "quantity": dec(l.quantity),
        "unit_type": l.unit_type,
        "picture": picture_value(&l.picture),
        "comment": l.comment,
        "properties": l.properties.iter().map(|(n, v)| json!({"name": n, "value": v})).collect::<Vec<_>>(),
        "product_status_id": l.product_status_id,
        "created_at": iso(l.created_at),
        "updated_at": iso(l.updated_at),
    });
    if with_offer {
        v["offer"] = l
            .offer_id
            .and_then(|id| catalog.offer(id))
            .map(|o| catalog.render_offer(o, false))
            .unwrap_or(Value::Null);
    }
    v
}

pub(super) fn render_card_line(l: &Line, with_offer: bool, catalog: &Catalog) -> Value {
    let mut v = json!({
        "id": l.id,
        "product_id": l.product_id,
        "sku": l.sku,
        "name": l.name,
        "price": dec(l.price),
        "quantity": dec(l.quantity),
        "unit_type": l.unit_type,
        "picture": picture_value(&l.picture),
        "created_at": iso(l.created_at),
        "updated_at": iso(l.updated_at),
    });
    if with_offer {
        v["offer"] = l
            .offer_id
            .and_then(|id| catalog.offer(id))
            .map(|o| catalog.render_offer(o, false))
            .unwrap_or(Value::Null);
    }
    v
}

pub(super) fn render_payment(p: &Payment, destination_id: i64) -> Value {
    json!({
        "id": p.id,
        "destination_id": destination_id,
        "payment_method_id": p.payment_method_id,
        "amount": dec(p.amount),
        "actual_currency": "UAH",
        "transaction_uuid": null,
        "description": p.description,
        "status": p.status,
        "fiscal_result": [],
        "payment_date": iso(p.payment_date),
        "created_at": iso(p.created_at),
        "updated_at": iso(p.updated_at),
    })
}

pub(super) fn render_marketing(m: &Marketing) -> Value {
    let mut v = json!({
        "created_at": iso(m.created_at),
        "updated_at": iso(m.updated_at),
    });
    for (i, k) in UTM_KEYS.iter().enumerate() {
        v[*k] = opt_str(&m.utm[i]);
    }
    v
}

pub(super) fn render_shipping(s: &Shipping, with_service: bool, with_history: bool) -> Value {
    let full_address = [
        &s.shipping_address_country,
        &s.shipping_address_region,
        &s.shipping_address_city,
        &s.shipping_receive_point,
        &s.shipping_secondary_line,
    ]
    .iter()
    .filter_map(|x| x.as_deref())
    .filter(|x| !x.is_empty())
    .collect::<Vec<_>>()
    .join(", ");
    let mut v = json!({
        "delivery_service_id": s.delivery_service_id,
        "tracking_code": s.tracking_code,
        "shipping_status": null,
        "shipping_service": s.shipping_service,
        "shipping_address_city": s.shipping_address_city,
        "shipping_address_country": s.shipping_address_country,
        "shipping_address_country_code": null,
        "shipping_address_region": s.shipping_address_region,
        "shipping_address_zip": s.shipping_address_zip,
        "shipping_secondary_line": s.shipping_secondary_line,
        "shipping_receive_point": s.shipping_receive_point,
        "recipient_full_name": s.recipient_full_name,
        "recipient_phone": s.recipient_phone,
        "warehouse_ref": s.warehouse_ref,
        "shipping_date": s.shipping_date.map(iso),
        "shipping_date_actual": s.shipping_date.map(iso),
        "address_payload": match &s.warehouse_ref {
            Some(r) => json!({"warehouse_ref": r}),
            None => json!([]),
        },
        "full_address": if full_address.is_empty() { Value::Null } else { json!(full_address) },
    });
    if with_service {
        v["delivery_service"] = s
            .delivery_service_id
            .and_then(dicts::delivery_service)
            .map(dicts::render_delivery_service)
            .unwrap_or(Value::Null);
    }
    if with_history {
        v["last_history"] = Value::Null;
    }
    v
}
