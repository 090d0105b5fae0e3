//! Orders: create (`POST /order`), status changes, update (`PUT /order/{id}`) and the list
//! filters.

use rust_decimal::Decimal;
use serde_json::{Map, Value};

use super::parse::{parse_custom_fields, parse_shipping, range_filter};
use super::{next, Changed, Crm, Marketing, Order, UTM_KEYS};
use crate::catalog::Catalog;
use crate::dicts::{self, CfModel};
use crate::error::{attr, Invalid};
use crate::input::{objects, Fields};
use crate::query::ListQuery;

impl Crm {
    /// `POST /order`. Returns the index of the new order.
    pub(crate) fn create_order(
        &mut self,
        body: &Map<String, Value>,
        catalog: &Catalog,
        now: i64,
    ) -> Result<usize, Invalid> {
        let mut inv = Invalid::default();
        let f = Fields::new(body, "");

        let source_id = if f.required("source_id", &mut inv) {
            f.known_id("source_id", &mut inv, dicts::source_exists)
        } else {
            None
        };
        let buyer = if f.required("buyer", &mut inv) {
            f.object("buyer", &mut inv)
        } else {
            None
        };
        let (b_name, b_email, b_phone) = match buyer {
            Some(b) => {
                let bf = Fields::new(b, "buyer.");
                (
                    bf.string("full_name", &mut inv),
                    bf.string("email", &mut inv),
                    bf.string("phone", &mut inv),
                )
            }
            None => (None, None, None),
        };
        let source_uuid = f.string("source_uuid", &mut inv);
        let buyer_comment = f.string("buyer_comment", &mut inv);
        let manager_comment = f.string("manager_comment", &mut inv);
        let promocode = f.string("promocode", &mut inv);
        let gift_message = f.string("gift_message", &mut inv);
        let manager_id = f.known_id("manager_id", &mut inv, |id| dicts::user(id).is_some());
        let discount_percent = f.number("discount_percent", &mut inv);
        let discount_amount = f.number("discount_amount", &mut inv);
        let shipping_price = f.number("shipping_price", &mut inv);
        let wrap_price = f.number("wrap_price", &mut inv);
        let taxes = f.number("taxes", &mut inv);
        let is_gift = f.boolean("is_gift", &mut inv).unwrap_or(false);
        let gift_wrap = f.boolean("gift_wrap", &mut inv).unwrap_or(false);
        let ordered_at = f.datetime("ordered_at", &mut inv).unwrap_or(now);

        let shipping = f
            .object("shipping", &mut inv)
            .map(|s| parse_shipping(s, None, &mut inv));
        let marketing = f.object("marketing", &mut inv).map(|m| {
            let mf = Fields::new(m, "marketing.");
            let mut utm: [Option<String>; 5] = Default::default();
            for (i, k) in UTM_KEYS.iter().enumerate() {
                utm[i] = mf.string(k, &mut inv);
            }
            Marketing {
                utm,
                created_at: now,
                updated_at: now,
            }
        });
        let (lines, payments, custom_fields) =
            self.parse_contents(&f, catalog, now, &mut inv, true, CfModel::Order);

        let (Some(source_id), Some(_)) = (source_id, buyer) else {
            return Err(inv);
        };
        if !inv.is_empty() {
            return Err(inv);
        }
        let client_id = self.find_or_create_buyer(b_name, b_email, b_phone, now);
        let order = Order {
            id: next(&mut self.next_order_id),
            source_id,
            source_uuid,
            status_id: 1,
            status_group_id: 1,
            status_changed_at: now,
            client_id,
            manager_id,
            buyer_comment,
            manager_comment,
            promocode,
            gift_message,
            is_gift,
            gift_wrap,
            discount_percent,
            discount_amount,
            shipping_price,
            wrap_price,
            taxes,
            ordered_at,
            created_at: now,
            updated_at: now,
            closed_at: None,
            lines,
            payments,
            shipping,
            marketing,
            custom_fields,
            reserved: Vec::new(),
            written_off: false,
        };
        self.orders.push(order);
        Ok(self.orders.len() - 1)
    }

    /// Sets an order status like a manager would. Returns whether it changed.
    pub(crate) fn set_order_status(&mut self, idx: usize, status_id: i64, now: i64) -> Changed {
        let o = &mut self.orders[idx];
        if o.status_id == status_id {
            return Changed {
                status: false,
                payment_status: false,
            };
        }
        let Some(st) = dicts::order_status(status_id) else {
            return Changed {
                status: false,
                payment_status: false,
            };
        };
        o.status_id = st.id;
        o.status_group_id = st.group_id;
        o.status_changed_at = now;
        o.updated_at = now;
        o.closed_at = if st.is_closing_order { Some(now) } else { None };
        Changed {
            status: true,
            payment_status: false,
        }
    }

    /// `PUT /order/{id}`.
    pub(crate) fn update_order(
        &mut self,
        idx: usize,
        body: &Map<String, Value>,
        now: i64,
    ) -> Result<Changed, Invalid> {
        let mut inv = Invalid::default();
        let f = Fields::new(body, "");
        let status_id = f.known_id("status_id", &mut inv, |id| {
            dicts::order_status(id).is_some()
        });
        let buyer_comment = f
            .has("buyer_comment")
            .then(|| f.string("buyer_comment", &mut inv));
        let manager_comment = f
            .has("manager_comment")
            .then(|| f.string("manager_comment", &mut inv));
        let discount_percent = f
            .obj
            .contains_key("discount_percent")
            .then(|| f.number("discount_percent", &mut inv));
        let discount_amount = f
            .obj
            .contains_key("discount_amount")
            .then(|| f.number("discount_amount", &mut inv));
        let existing_shipping = self.orders[idx].shipping.clone();
        let shipping = f
            .object("shipping", &mut inv)
            .map(|s| parse_shipping(s, existing_shipping.as_ref(), &mut inv));
        let custom_fields = match f.array("custom_fields", &mut inv) {
            Some(arr) => parse_custom_fields(arr, CfModel::Order, &mut inv),
            None => Vec::new(),
        };
        // product line updates
        let mut line_updates: Vec<(usize, LineUpdate)> = Vec::new();
        if let Some(arr) = f.array("products", &mut inv) {
            let order = &self.orders[idx];
            for (_, pf) in objects(arr, "products", &mut inv) {
                let by_id = pf.int("id", &mut inv);
                let by_sku = pf.string("sku", &mut inv);
                let pos = order.lines.iter().position(|l| {
                    by_id.is_some_and(|id| l.id == id)
                        || (by_id.is_none() && by_sku.is_some() && l.sku == by_sku)
                });
                let upd = LineUpdate {
                    name: pf.string("name", &mut inv),
                    comment: pf.has("comment").then(|| pf.string("comment", &mut inv)),
                    price: pf.number("price", &mut inv),
                    purchased_price: pf.number("purchased_price", &mut inv),
                    discount_amount: pf
                        .obj
                        .contains_key("discount_amount")
                        .then(|| pf.number("discount_amount", &mut inv)),
                    discount_percent: pf
                        .obj
                        .contains_key("discount_percent")
                        .then(|| pf.number("discount_percent", &mut inv)),
                    quantity: pf.number("quantity", &mut inv),
                    product_status_id: pf.int("product_status_id", &mut inv),
                };
                if let Some(q) = upd.quantity {
                    if q <= Decimal::ZERO {
                        let p = pf.path("quantity");
                        inv.add(
                            p.clone(),
                            format!("The {} must be greater than 0.", attr(&p)),
                        );
                    }
                }
                // New lines cannot be added through PUT: unknown lines are ignored.
                if let Some(pos) = pos {
                    line_updates.push((pos, upd));
                }
            }
        }
        if !inv.is_empty() {
            return Err(inv);
        }
        let before = self.orders[idx].totals().payment_status;
        let mut changed = Changed {
            status: false,
            payment_status: false,
        };
        {
            let o = &mut self.orders[idx];
            if let Some(v) = buyer_comment {
                o.buyer_comment = v;
            }
            if let Some(v) = manager_comment {
                o.manager_comment = v;
            }
            if let Some(v) = discount_percent {
                o.discount_percent = v;
            }
            if let Some(v) = discount_amount {
                o.discount_amount = v;
            }
            if let Some(s) = shipping {
                o.shipping = Some(s);
            }
            for (uuid, value) in custom_fields {
                match o.custom_fields.iter_mut().find(|(u, _)| *u == uuid) {
                    Some(slot) => slot.1 = value,
                    None => o.custom_fields.push((uuid, value)),
                }
            }
            for (pos, u) in line_updates {
                let l = &mut o.lines[pos];
                if let Some(n) = u.name {
                    if l.offer_id.is_none() {
                        l.name = n;
                    }
                }
                if let Some(c) = u.comment {
                    l.comment = c;
                }
                if let Some(p) = u.price {
                    l.price = p;
                }
                if let Some(p) = u.purchased_price {
                    l.purchased_price = p;
                }
                if let Some(d) = u.discount_amount {
                    l.discount_amount = d;
                }
                if let Some(d) = u.discount_percent {
                    l.discount_percent = d;
                }
                if let Some(q) = u.quantity {
                    l.quantity = q;
                }
                if let Some(s) = u.product_status_id {
                    l.product_status_id = Some(s);
                }
                l.updated_at = now;
            }
            o.updated_at = now;
        }
        if let Some(sid) = status_id {
            changed.status = self.set_order_status(idx, sid, now).status;
        }
        changed.payment_status = self.orders[idx].totals().payment_status != before;
        Ok(changed)
    }

    pub(super) fn buyer_orders_sum(&self, buyer_id: i64) -> (Decimal, usize) {
        let mut sum = Decimal::ZERO;
        let mut count = 0;
        for o in self.orders.iter().filter(|o| o.client_id == buyer_id) {
            if o.status_group_id == 5 {
                sum += o.totals().grand_total;
                count += 1;
            }
        }
        (sum, count)
    }

    /// Filters for `GET /order`; returns matching indices in id order.
    pub(crate) fn filter_orders(&self, q: &ListQuery) -> Result<Vec<usize>, String> {
        let status_ids = q.filter_ids("status_id");
        let source_ids = q.filter_ids("source_id");
        let source_uuids = q.filter_list("source_uuid");
        let phones: Option<Vec<String>> = q
            .filter_list("buyer_phone")
            .map(|l| l.iter().map(|p| crate::input::normalize_phone(p)).collect());
        let emails: Option<Vec<String>> = q
            .filter_list("buyer_email")
            .map(|l| l.iter().map(|e| e.to_lowercase()).collect());
        let created = range_filter(q, "created_between")?;
        let updated = range_filter(q, "updated_between")?;
        let shipping = range_filter(q, "shipping_between")?;
        let pay = q.filter_list("payment_status");
        let tracking = q.filter_bool("has_tracking_code");
        let mut out = Vec::new();
        for (i, o) in self.orders.iter().enumerate() {
            if status_ids
                .as_ref()
                .is_some_and(|l| !l.contains(&o.status_id))
            {
                continue;
            }
            if source_ids
                .as_ref()
                .is_some_and(|l| !l.contains(&o.source_id))
            {
                continue;
            }
            if let Some(l) = &source_uuids {
                if !o.source_uuid.as_ref().is_some_and(|u| l.contains(u)) {
                    continue;
                }
            }
            if phones.is_some() || emails.is_some() {
                let b = self.buyer(o.client_id);
                if let Some(l) = &phones {
                    if !b
                        .and_then(|b| b.phone.as_ref())
                        .is_some_and(|p| l.contains(p))
                    {
                        continue;
                    }
                }
                if let Some(l) = &emails {
                    if !b
                        .and_then(|b| b.email.as_ref())
                        .is_some_and(|e| l.contains(&e.to_lowercase()))
                    {
                        continue;
                    }
                }
            }
            if created.is_some_and(|(a, b)| o.ordered_at < a || o.ordered_at > b) {
                continue;
            }
            if updated.is_some_and(|(a, b)| o.updated_at < a || o.updated_at > b) {
                continue;
            }
            if let Some((a, b)) = shipping {
                let d = o.shipping.as_ref().and_then(|s| s.shipping_date);
                if !d.is_some_and(|d| d >= a && d <= b) {
                    continue;
                }
            }
            if let Some(l) = &pay {
                if !l.iter().any(|s| s == o.totals().payment_status) {
                    continue;
                }
            }
            if let Some(want) = tracking {
                let has = o
                    .shipping
                    .as_ref()
                    .and_then(|s| s.tracking_code.as_ref())
                    .is_some_and(|t| !t.is_empty());
                if has != want {
                    continue;
                }
            }
            out.push(i);
        }
        Ok(out)
    }
}

pub(super) struct LineUpdate {
    name: Option<String>,
    comment: Option<Option<String>>,
    price: Option<Decimal>,
    purchased_price: Option<Decimal>,
    discount_amount: Option<Option<Decimal>>,
    discount_percent: Option<Option<Decimal>>,
    quantity: Option<Decimal>,
    product_status_id: Option<i64>,
}
