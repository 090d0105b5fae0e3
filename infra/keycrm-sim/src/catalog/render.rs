//! The JSON KeyCRM answers with for products, offers, stocks and categories.

use serde_json::{json, Map, Value};

use super::{warehouse_name, Catalog, Category, Offer, Product, Prop};
use crate::time::iso;
use crate::util::cents;

impl Catalog {
    // ---- rendering ----------------------------------------------------------------------

    pub(super) fn product_core(&self, p: &Product) -> Map<String, Value> {
        let offers = self.offers_of(p.id);
        let quantity: i64 = offers.iter().map(Offer::quantity).sum();
        let reserve: i64 = offers.iter().map(Offer::reserve).sum();
        let min = offers.iter().map(|o| o.price).min().unwrap_or(0);
        let max = offers.iter().map(|o| o.price).max().unwrap_or(0);
        let thumb = Self::thumbnail(p.id);
        let mut m = Map::new();
        m.insert("id".into(), p.id.into());
        m.insert("name".into(), p.name.clone().into());
        m.insert("description".into(), self.description_of(p).into());
        m.insert("thumbnail_url".into(), thumb.clone().into());
        m.insert("attachments_data".into(), json!([thumb]));
        m.insert("quantity".into(), quantity.into());
        m.insert("in_reserve".into(), reserve.into());
        m.insert("unit_type".into(), Value::Null);
        m.insert("currency_code".into(), "UAH".into());
        m.insert("min_price".into(), cents(min));
        m.insert("max_price".into(), cents(max));
        for k in ["weight", "length", "height", "width"] {
            m.insert(k.into(), Value::Null);
        }
        m.insert("has_offers".into(), p.has_offers.into());
        m.insert("is_archived".into(), p.is_archived.into());
        m.insert("category_id".into(), p.category_id.into());
        m.insert("created_at".into(), iso(p.created_at).into());
        m.insert("updated_at".into(), iso(p.updated_at).into());
        if !p.has_offers {
            if let Some(o) = offers.first() {
                m.insert("sku".into(), o.sku.clone().into());
                m.insert(
                    "barcode".into(),
                    o.barcode.clone().map(Value::from).unwrap_or(Value::Null),
                );
                m.insert("price".into(), cents(o.price));
                m.insert("purchased_price".into(), cents(o.purchased_price));
            }
        }
        m
    }

    /// `GET /products` item.
    pub(crate) fn render_product(&self, p: &Product, with_custom_fields: bool) -> Value {
        let mut m = self.product_core(p);
        if with_custom_fields {
            m.insert(
                "custom_fields".into(),
                Value::Array(crate::dicts::product_custom_field_values(p.id)),
            );
        }
        Value::Object(m)
    }

    /// Product embedded in an offer (`include=product`).
    pub(super) fn render_product_for_offer(&self, p: &Product) -> Value {
        let mut m = self.product_core(p);
        let mut agg: Vec<(String, Vec<String>)> = Vec::new();
        for o in self.offers_of(p.id) {
            for (k, v) in &o.properties {
                match agg.iter_mut().find(|(n, _)| n == k.as_ref()) {
                    Some((_, vals)) => {
                        if !vals.iter().any(|x| x == v.as_ref()) {
                            vals.push(v.to_string());
                        }
                    }
                    None => agg.push((k.to_string(), vec![v.to_string()])),
                }
            }
        }
        let mut aggm = Map::new();
        for (k, mut vals) in agg {
            vals.sort();
            aggm.insert(k, json!(vals));
        }
        m.insert("properties_agg".into(), Value::Object(aggm));
        m.insert("sources".into(), json!([]));
        Value::Object(m)
    }

    pub(crate) fn render_offer(&self, o: &Offer, with_product: bool) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), o.id.into());
        m.insert("product_id".into(), o.product_id.into());
        m.insert("sku".into(), o.sku.clone().into());
        m.insert(
            "barcode".into(),
            o.barcode.clone().map(Value::from).unwrap_or(Value::Null),
        );
        m.insert("thumbnail_url".into(), Self::thumbnail(o.product_id).into());
        m.insert("price".into(), cents(o.price));
        m.insert("purchased_price".into(), cents(o.purchased_price));
        m.insert("quantity".into(), o.quantity().into());
        m.insert("in_reserve".into(), o.reserve().into());
        for k in ["weight", "length", "height", "width"] {
            m.insert(k.into(), Value::Null);
        }
        m.insert("properties".into(), render_props(&o.properties));
        m.insert("is_default".into(), o.is_default.into());
        m.insert("is_archived".into(), o.is_archived.into());
        m.insert("created_at".into(), iso(o.created_at).into());
        m.insert("updated_at".into(), iso(o.updated_at).into());
        if with_product {
            let prod = self
                .product(o.product_id)
                .map(|p| self.render_product_for_offer(p))
                .unwrap_or(Value::Null);
            m.insert("product".into(), prod);
        }
        Value::Object(m)
    }

    /// `GET /offers/stocks` item.
    pub(crate) fn render_stock(&self, o: &Offer, details: bool) -> Value {
        let mut v = json!({
            "id": o.id,
            "sku": o.sku,
            "price": cents(o.price),
            "purchased_price": cents(o.purchased_price),
            "quantity": o.quantity(),
            "reserve": o.reserve(),
        });
        if details {
            v["warehouse"] = Value::Array(
                o.stock
                    .iter()
                    .map(|s| {
                        json!({
                            "id": s.warehouse_id,
                            "name": warehouse_name(s.warehouse_id).unwrap_or("Склад"),
                            "quantity": s.quantity,
                            "reserve": s.reserve,
                        })
                    })
                    .collect(),
            );
        }
        v
    }

    pub(crate) fn render_category(c: &Category) -> Value {
        json!({"id": c.id, "name": c.name, "parent_id": c.parent_id})
    }
}

pub(crate) fn render_props(props: &[Prop]) -> Value {
    Value::Array(
        props
            .iter()
            .map(|(n, v)| json!({"name": n, "value": v}))
            .collect(),
    )
}
