//! CRM entities created through the API: orders, buyers, pipeline cards and contacts.

use rust_decimal::Decimal;
use serde_json::{json, Map, Value};

use crate::catalog::{Catalog, Offer};
use crate::dicts::{self, CfModel};
use crate::error::{attr, Invalid};
use crate::input::{objects, Fields};
use crate::query::ListQuery;
use crate::time::{iso, space};
use crate::util::{cents_to_dec, dec, dec_str, opt_dec, opt_str};

#[derive(Debug, Clone)]
pub(crate) struct Buyer {
    pub id: i64,
    pub full_name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone)]
pub(crate) struct Line {
    pub id: i64,
    pub offer_id: Option<i64>,
    pub product_id: Option<i64>,
    pub sku: Option<String>,
    pub name: String,
    pub price: Decimal,
    pub purchased_price: Decimal,
    pub discount_percent: Option<Decimal>,
    pub discount_amount: Option<Decimal>,
    pub quantity: Decimal,
    pub unit_type: Option<String>,
    pub comment: Option<String>,
    pub picture: Option<String>,
    pub properties: Vec<(String, String)>,
    pub product_status_id: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Line {
    fn unit_discount(&self) -> Decimal {
        let pct = self.discount_percent.unwrap_or_default();
        self.discount_amount.unwrap_or_default()
            + (self.price * pct / Decimal::from(100)).round_dp(2)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Payment {
    pub id: i64,
    pub payment_method_id: i64,
    pub amount: Decimal,
    pub status: String,
    pub description: Option<String>,
    pub payment_date: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Shipping {
    pub delivery_service_id: Option<i64>,
    pub tracking_code: Option<String>,
    pub shipping_service: Option<String>,
    pub shipping_address_city: Option<String>,
    pub shipping_address_country: Option<String>,
    pub shipping_address_region: Option<String>,
    pub shipping_address_zip: Option<String>,
    pub shipping_secondary_line: Option<String>,
    pub shipping_receive_point: Option<String>,
    pub recipient_full_name: Option<String>,
    pub recipient_phone: Option<String>,
    pub warehouse_ref: Option<String>,
    pub shipping_date: Option<i64>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Marketing {
    pub utm: [Option<String>; 5],
    pub created_at: i64,
    pub updated_at: i64,
}

const UTM_KEYS: [&str; 5] = [
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
];

#[derive(Debug, Clone)]
pub(crate) struct Order {
    pub id: i64,
    pub source_id: i64,
    pub source_uuid: Option<String>,
    pub status_id: i64,
    pub status_group_id: i64,
    pub status_changed_at: i64,
    pub client_id: i64,
    pub manager_id: Option<i64>,
    pub buyer_comment: Option<String>,
    pub manager_comment: Option<String>,
    pub promocode: Option<String>,
    pub gift_message: Option<String>,
    pub is_gift: bool,
    pub gift_wrap: bool,
    pub discount_percent: Option<Decimal>,
    pub discount_amount: Option<Decimal>,
    pub shipping_price: Option<Decimal>,
    pub wrap_price: Option<Decimal>,
    pub taxes: Option<Decimal>,
    pub ordered_at: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub closed_at: Option<i64>,
    pub lines: Vec<Line>,
    pub payments: Vec<Payment>,
    pub shipping: Option<Shipping>,
    pub marketing: Option<Marketing>,
    pub custom_fields: Vec<(String, Value)>,
    /// Units the order holds in the warehouses (reserved on creation, see `stock.rs`).
    pub reserved: Vec<Reservation>,
    /// Completed: its units left the warehouse.
    pub written_off: bool,
}

/// Units of one offer an order holds in one warehouse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reservation {
    pub offer_id: i64,
    pub warehouse_id: i64,
    pub quantity: i64,
}

pub(crate) struct Totals {
    pub products_total: Decimal,
    pub total_discount: Decimal,
    pub grand_total: Decimal,
    pub payments_total: Decimal,
    pub payment_status: &'static str,
    pub margin_sum: Decimal,
}

fn payments_total(payments: &[Payment]) -> Decimal {
    payments
        .iter()
        .filter(|p| p.status == "paid")
        .map(|p| p.amount)
        .sum()
}

impl Order {
    pub(crate) fn totals(&self) -> Totals {
        let hundred = Decimal::from(100);
        let products_total: Decimal = self.lines.iter().map(|l| l.price * l.quantity).sum();
        let line_discounts: Decimal = self
            .lines
            .iter()
            .map(|l| l.unit_discount() * l.quantity)
            .sum();
        let subtotal = products_total - line_discounts;
        let order_discount = self.discount_amount.unwrap_or_default()
            + (subtotal * self.discount_percent.unwrap_or_default() / hundred).round_dp(2);
        let total_discount = (line_discounts + order_discount).round_dp(2);
        let grand_total = (products_total - total_discount
            + self.shipping_price.unwrap_or_default())
        .max(Decimal::ZERO)
        .round_dp(2);
        let paid = payments_total(&self.payments).round_dp(2);
        let payment_status = if paid <= Decimal::ZERO {
            "not_paid"
        } else if paid < grand_total {
            "part_paid"
        } else if paid == grand_total {
            "paid"
        } else {
            "overpaid"
        };
        let cost: Decimal = self
            .lines
            .iter()
            .map(|l| l.purchased_price * l.quantity)
            .sum();
        Totals {
            products_total: products_total.round_dp(2),
            total_discount,
            grand_total,
            payments_total: paid,
            payment_status,
            margin_sum: (grand_total - cost).round_dp(2),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Contact {
    pub id: i64,
    pub client_id: i64,
    pub full_name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone)]
pub(crate) struct Card {
    pub id: i64,
    pub title: Option<String>,
    pub pipeline_id: i64,
    pub status_id: i64,
    pub source_id: Option<i64>,
    pub contact_id: i64,
    pub manager_id: Option<i64>,
    pub manager_comment: Option<String>,
    pub note: Option<String>,
    pub communicate_at: Option<i64>,
    pub status_changed_at: i64,
    pub utm: [Option<String>; 5],
    pub lines: Vec<Line>,
    pub payments: Vec<Payment>,
    pub custom_fields: Vec<(String, Value)>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Which relations to embed in an order.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct OrderInc {
    pub buyer: bool,
    pub products: bool,
    pub products_offer: bool,
    pub manager: bool,
    pub tags: bool,
    pub status: bool,
    pub marketing: bool,
    pub payments: bool,
    pub shipping: bool,
    pub delivery_service: bool,
    pub last_history: bool,
    pub expenses: bool,
    pub custom_fields: bool,
    pub assigned: bool,
}

pub(crate) const ORDER_INCLUDES: &[&str] = &[
    "buyer",
    "products.offer",
    "manager",
    "tags",
    "status",
    "marketing",
    "payments",
    "shipping.lastHistory",
    "shipping.deliveryService",
    "expenses",
    "custom_fields",
    "customFields",
    "assigned",
    "attachments.file",
];

impl OrderInc {
    pub(crate) fn from_query(q: &ListQuery) -> Self {
        OrderInc {
            buyer: q.has_include("buyer"),
            products: q.has_include("products"),
            products_offer: q.has_include("products.offer"),
            manager: q.has_include("manager"),
            tags: q.has_include("tags"),
            status: q.has_include("status"),
            marketing: q.has_include("marketing"),
            payments: q.has_include("payments"),
            shipping: q.has_include("shipping"),
            delivery_service: q.has_include("shipping.deliveryService"),
            last_history: q.has_include("shipping.lastHistory"),
            expenses: q.has_include("expenses"),
            custom_fields: q.has_include("custom_fields") || q.has_include("customFields"),
            assigned: q.has_include("assigned"),
        }
    }

    pub(crate) fn all() -> Self {
        OrderInc {
            buyer: true,
            products: true,
            products_offer: true,
            manager: true,
            tags: true,
            status: true,
            marketing: true,
            payments: true,
            shipping: true,
            delivery_service: true,
            last_history: true,
            expenses: true,
            custom_fields: true,
            assigned: true,
        }
    }

    /// What live `POST /order` returned in the captured sample.
    pub(crate) fn create_response() -> Self {
        OrderInc {
            buyer: true,
            products: true,
            payments: true,
            shipping: true,
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CardInc {
    pub contact: bool,
    pub client: bool,
    pub products: bool,
    pub products_offer: bool,
    pub manager: bool,
    pub status: bool,
    pub payments: bool,
    pub custom_fields: bool,
}

pub(crate) const CARD_INCLUDES: &[&str] = &[
    "contact.client",
    "products.offer",
    "manager",
    "status",
    "payments",
    "custom_fields",
    "customFields",
];

impl CardInc {
    pub(crate) fn from_query(q: &ListQuery) -> Self {
        CardInc {
            contact: q.has_include("contact"),
            client: q.has_include("contact.client"),
            products: q.has_include("products"),
            products_offer: q.has_include("products.offer"),
            manager: q.has_include("manager"),
            status: q.has_include("status"),
            payments: q.has_include("payments"),
            custom_fields: q.has_include("custom_fields") || q.has_include("customFields"),
        }
    }

    pub(crate) fn all() -> Self {
        CardInc {
            contact: true,
            client: true,
            products: true,
            products_offer: true,
            manager: true,
            status: true,
            payments: true,
            custom_fields: true,
        }
    }
}

/// Per-account CRM storage.
#[derive(Debug)]
pub(crate) struct Crm {
    pub orders: Vec<Order>,
    pub cards: Vec<Card>,
    pub buyers: Vec<Buyer>,
    pub contacts: Vec<Contact>,
    next_order_id: i64,
    next_card_id: i64,
    next_buyer_id: i64,
    next_contact_id: i64,
    next_line_id: i64,
    next_payment_id: i64,
}

impl Default for Crm {
    fn default() -> Self {
        // Distinct id ranges per entity make id mix-ups in client code visible.
        Crm {
            orders: Vec::new(),
            cards: Vec::new(),
            buyers: Vec::new(),
            contacts: Vec::new(),
            next_order_id: 5001,
            next_card_id: 301,
            next_buyer_id: 1001,
            next_contact_id: 2001,
            next_line_id: 9001,
            next_payment_id: 7001,
        }
    }
}

fn next(id: &mut i64) -> i64 {
    let v = *id;
    *id += 1;
    v
}

/// Status change produced by an update, for the trigger webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Changed {
    pub status: bool,
    pub payment_status: bool,
}

impl Crm {
    pub(crate) fn order_index(&self, id: i64) -> Option<usize> {
        self.orders.binary_search_by_key(&id, |o| o.id).ok()
    }

    pub(crate) fn card_index(&self, id: i64) -> Option<usize> {
        self.cards.binary_search_by_key(&id, |c| c.id).ok()
    }

    pub(crate) fn buyer(&self, id: i64) -> Option<&Buyer> {
        self.buyers.iter().find(|b| b.id == id)
    }

    fn contact(&self, id: i64) -> Option<&Contact> {
        self.contacts.iter().find(|c| c.id == id)
    }

    fn find_or_create_buyer(
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

    // ---- shared input parsing ------------------------------------------------------------

    fn parse_lines(
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

    fn parse_payments(&mut self, arr: &[Value], now: i64, inv: &mut Invalid) -> Vec<Payment> {
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

    // ---- orders ----------------------------------------------------------------------------

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
            match f.int("source_id", &mut inv) {
                Some(id) if dicts::source_exists(id) => Some(id),
                Some(_) => {
                    f.invalid("source_id", &mut inv);
                    None
                }
                None => None,
            }
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
        let manager_id = match f.int("manager_id", &mut inv) {
            Some(id) if dicts::user(id).is_some() => Some(id),
            Some(_) => {
                f.invalid("manager_id", &mut inv);
                None
            }
            None => None,
        };
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
        let lines = match f.array("products", &mut inv) {
            Some(arr) => self.parse_lines(arr, catalog, now, &mut inv, true),
            None => Vec::new(),
        };
        let payments = match f.array("payments", &mut inv) {
            Some(arr) => self.parse_payments(arr, now, &mut inv),
            None => Vec::new(),
        };
        let custom_fields = match f.array("custom_fields", &mut inv) {
            Some(arr) => parse_custom_fields(arr, CfModel::Order, &mut inv),
            None => Vec::new(),
        };

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
        let status_id = match f.int("status_id", &mut inv) {
            Some(id) if dicts::order_status(id).is_some() => Some(id),
            Some(_) => {
                f.invalid("status_id", &mut inv);
                None
            }
            None => None,
        };
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
            m.insert(
                "products".into(),
                Value::Array(
                    o.lines
                        .iter()
                        .map(|l| render_order_line(l, inc.products_offer, catalog))
                        .collect(),
                ),
            );
        }
        if inc.manager {
            m.insert(
                "manager".into(),
                o.manager_id
                    .and_then(dicts::user)
                    .map(dicts::render_user)
                    .unwrap_or(Value::Null),
            );
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

    fn buyer_orders_sum(&self, buyer_id: i64) -> (Decimal, usize) {
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

    // ---- pipeline cards --------------------------------------------------------------------

    /// `POST /pipelines/cards`. Returns the index of the new card.
    pub(crate) fn create_card(
        &mut self,
        body: &Map<String, Value>,
        catalog: &Catalog,
        now: i64,
    ) -> Result<usize, Invalid> {
        let mut inv = Invalid::default();
        let f = Fields::new(body, "");
        let title = f.string("title", &mut inv);
        let source_id = match f.int("source_id", &mut inv) {
            Some(id) if dicts::source_exists(id) => Some(id),
            Some(_) => {
                f.invalid("source_id", &mut inv);
                None
            }
            None => None,
        };
        let manager_id = match f.int("manager_id", &mut inv) {
            Some(id) if dicts::user(id).is_some() => Some(id),
            Some(_) => {
                f.invalid("manager_id", &mut inv);
                None
            }
            None => None,
        };
        let manager_comment = f.string("manager_comment", &mut inv);
        let pipeline_id = match f.int("pipeline_id", &mut inv) {
            Some(id) if dicts::pipeline(id).is_some() => Some(id),
            Some(_) => {
                f.invalid("pipeline_id", &mut inv);
                None
            }
            None if f.has("pipeline_id") => None,
            None => dicts::PIPELINES.first().map(|p| p.id),
        };
        let communicate_at = f.datetime("communicate_at", &mut inv);
        let mut utm: [Option<String>; 5] = Default::default();
        for (i, k) in UTM_KEYS.iter().enumerate() {
            utm[i] = f.string(k, &mut inv);
        }
        // contact
        enum ContactIn {
            Client(i64),
            New(Option<String>, Option<String>, Option<String>),
        }
        let contact = if f.required("contact", &mut inv) {
            match f.object("contact", &mut inv) {
                Some(c) => {
                    let cf = Fields::new(c, "contact.");
                    match cf.int("client_id", &mut inv) {
                        Some(id) if self.buyer(id).is_some() => Some(ContactIn::Client(id)),
                        Some(_) => {
                            cf.invalid("client_id", &mut inv);
                            None
                        }
                        None => {
                            let name = cf.string("full_name", &mut inv);
                            let email = cf.string("email", &mut inv);
                            let phone = cf.string("phone", &mut inv);
                            if name.is_none() && email.is_none() && phone.is_none() {
                                inv.add(
                                    "contact.full_name",
                                    "The contact.full name field is required when none of contact.phone / contact.email / contact.client id are present.",
                                );
                                None
                            } else {
                                Some(ContactIn::New(name, email, phone))
                            }
                        }
                    }
                }
                None => None,
            }
        } else {
            None
        };
        let lines = match f.array("products", &mut inv) {
            Some(arr) => self.parse_lines(arr, catalog, now, &mut inv, false),
            None => Vec::new(),
        };
        let payments = match f.array("payments", &mut inv) {
            Some(arr) => self.parse_payments(arr, now, &mut inv),
            None => Vec::new(),
        };
        let custom_fields = match f.array("custom_fields", &mut inv) {
            Some(arr) => parse_custom_fields(arr, CfModel::Lead, &mut inv),
            None => Vec::new(),
        };
        let (Some(contact), Some(pipeline_id)) = (contact, pipeline_id) else {
            return Err(inv);
        };
        if !inv.is_empty() {
            return Err(inv);
        }
        let Some(status) = dicts::first_status_of(pipeline_id) else {
            f.invalid("pipeline_id", &mut inv);
            return Err(inv);
        };
        let (client_id, c_name, c_email, c_phone) = match contact {
            ContactIn::Client(id) => {
                let b = self.buyer(id);
                (
                    id,
                    b.and_then(|b| b.full_name.clone()),
                    b.and_then(|b| b.email.clone()),
                    b.and_then(|b| b.phone.clone()),
                )
            }
            ContactIn::New(n, e, p) => {
                let id = self.find_or_create_buyer(n.clone(), e.clone(), p.clone(), now);
                (id, n, e, p.map(|p| crate::input::normalize_phone(&p)))
            }
        };
        let contact_id = next(&mut self.next_contact_id);
        self.contacts.push(Contact {
            id: contact_id,
            client_id,
            full_name: c_name,
            email: c_email,
            phone: c_phone,
            created_at: now,
            updated_at: now,
        });
        let id = next(&mut self.next_card_id);
        self.cards.push(Card {
            id,
            title: Some(title.unwrap_or_else(|| id.to_string())),
            pipeline_id,
            status_id: status.id,
            source_id,
            contact_id,
            manager_id,
            manager_comment,
            note: None,
            communicate_at,
            status_changed_at: now,
            utm,
            lines,
            payments,
            custom_fields,
            created_at: now,
            updated_at: now,
        });
        Ok(self.cards.len() - 1)
    }

    pub(crate) fn set_card_status(&mut self, idx: usize, status_id: i64, now: i64) -> bool {
        let Some(st) = dicts::pipeline_status(status_id) else {
            return false;
        };
        let c = &mut self.cards[idx];
        if c.status_id == status_id {
            return false;
        }
        c.status_id = st.id;
        c.pipeline_id = st.pipeline_id;
        c.status_changed_at = now;
        c.updated_at = now;
        true
    }

    /// `PUT /pipelines/cards/{id}`; returns whether the status changed.
    pub(crate) fn update_card(
        &mut self,
        idx: usize,
        body: &Map<String, Value>,
        catalog: &Catalog,
        now: i64,
    ) -> Result<bool, Invalid> {
        let mut inv = Invalid::default();
        let f = Fields::new(body, "");
        let title = f.has("title").then(|| f.string("title", &mut inv));
        let source_id = match f.int("source_id", &mut inv) {
            Some(id) if dicts::source_exists(id) => Some(id),
            Some(_) => {
                f.invalid("source_id", &mut inv);
                None
            }
            None => None,
        };
        let manager_id = match f.int("manager_id", &mut inv) {
            Some(id) if dicts::user(id).is_some() => Some(id),
            Some(_) => {
                f.invalid("manager_id", &mut inv);
                None
            }
            None => None,
        };
        let client_id = match f.int("client_id", &mut inv) {
            Some(id) if self.buyer(id).is_some() => Some(id),
            Some(_) => {
                f.invalid("client_id", &mut inv);
                None
            }
            None => None,
        };
        let note = f.string("note", &mut inv);
        let communicate_at = f.datetime("communicate_at", &mut inv);
        let status_id = match f.int("status_id", &mut inv) {
            Some(id) if dicts::pipeline_status(id).is_some() => Some(id),
            Some(_) => {
                f.invalid("status_id", &mut inv);
                None
            }
            None => None,
        };
        let custom_fields = match f.array("custom_fields", &mut inv) {
            Some(arr) => parse_custom_fields(arr, CfModel::Lead, &mut inv),
            None => Vec::new(),
        };
        let lines = match f.array("products", &mut inv) {
            Some(arr) => self.parse_lines(arr, catalog, now, &mut inv, false),
            None => Vec::new(),
        };
        if !inv.is_empty() {
            return Err(inv);
        }
        if let Some(cid) = client_id {
            let contact_id = self.cards[idx].contact_id;
            let b = self.buyer(cid).cloned();
            if let (Some(c), Some(b)) = (self.contacts.iter_mut().find(|c| c.id == contact_id), b) {
                c.client_id = cid;
                c.full_name = b.full_name;
                c.email = b.email;
                c.phone = b.phone;
                c.updated_at = now;
            }
        }
        {
            let c = &mut self.cards[idx];
            if let Some(t) = title {
                c.title = t;
            }
            if source_id.is_some() {
                c.source_id = source_id;
            }
            if manager_id.is_some() {
                c.manager_id = manager_id;
            }
            if note.is_some() {
                c.note = note;
            }
            if communicate_at.is_some() {
                c.communicate_at = communicate_at;
            }
            for (uuid, value) in custom_fields {
                match c.custom_fields.iter_mut().find(|(u, _)| *u == uuid) {
                    Some(slot) => slot.1 = value,
                    None => c.custom_fields.push((uuid, value)),
                }
            }
            // products are always appended
            c.lines.extend(lines);
            c.updated_at = now;
        }
        Ok(match status_id {
            Some(s) => self.set_card_status(idx, s, now),
            None => false,
        })
    }

    fn card_base(&self, c: &Card) -> Map<String, Value> {
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

    fn render_contact(&self, c: &Contact, with_client: bool) -> Value {
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
            m.insert(
                "products".into(),
                Value::Array(
                    c.lines
                        .iter()
                        .map(|l| render_card_line(l, inc.products_offer, catalog))
                        .collect(),
                ),
            );
        }
        if inc.manager {
            m.insert(
                "manager".into(),
                c.manager_id
                    .and_then(dicts::user)
                    .map(dicts::render_user)
                    .unwrap_or(Value::Null),
            );
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

    pub(crate) fn filter_cards(&self, q: &ListQuery) -> Result<Vec<usize>, String> {
        let pipeline_ids = q.filter_ids("pipeline_id");
        let status_ids = q.filter_ids("status_id");
        let source_ids = q.filter_ids("source_id");
        let created = range_filter(q, "created_between")?;
        let updated = range_filter(q, "updated_between")?;
        Ok(self
            .cards
            .iter()
            .enumerate()
            .filter(|(_, c)| {
                pipeline_ids
                    .as_ref()
                    .is_none_or(|l| l.contains(&c.pipeline_id))
                    && status_ids.as_ref().is_none_or(|l| l.contains(&c.status_id))
                    && source_ids
                        .as_ref()
                        .is_none_or(|l| c.source_id.is_some_and(|s| l.contains(&s)))
                    && created.is_none_or(|(a, b)| c.created_at >= a && c.created_at <= b)
                    && updated.is_none_or(|(a, b)| c.updated_at >= a && c.updated_at <= b)
            })
            .map(|(i, _)| i)
            .collect())
    }

    pub(crate) fn cards_in_status(&self, status_id: i64) -> i64 {
        self.cards
            .iter()
            .filter(|c| c.status_id == status_id)
            .count() as i64
    }
}

struct LineUpdate {
    name: Option<String>,
    comment: Option<Option<String>>,
    price: Option<Decimal>,
    purchased_price: Option<Decimal>,
    discount_amount: Option<Option<Decimal>>,
    discount_percent: Option<Option<Decimal>>,
    quantity: Option<Decimal>,
    product_status_id: Option<i64>,
}

fn range_filter(q: &ListQuery, name: &str) -> Result<Option<(i64, i64)>, String> {
    match q.filter(name) {
        None => Ok(None),
        Some(v) => crate::time::parse_between(v).map(Some).ok_or_else(|| {
            format!(
                "Invalid value `{v}` for filter `{name}`: expected \"from,to\" dates (Y-m-d or Y-m-d H:i:s)."
            )
        }),
    }
}

fn parse_shipping(s: &Map<String, Value>, base: Option<&Shipping>, inv: &mut Invalid) -> Shipping {
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
        out.delivery_service_id = match f.int("delivery_service_id", inv) {
            Some(id) if dicts::delivery_service(id).is_some() => Some(id),
            Some(_) => {
                f.invalid("delivery_service_id", inv);
                None
            }
            None => None,
        };
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

fn parse_custom_fields(arr: &[Value], model: CfModel, inv: &mut Invalid) -> Vec<(String, Value)> {
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

fn render_cf_values(values: &[(String, Value)], model: CfModel) -> Value {
    Value::Array(
        values
            .iter()
            .filter_map(|(uuid, v)| {
                dicts::custom_field(uuid, model).map(|f| dicts::render_custom_field_value(f, v))
            })
            .collect(),
    )
}

fn picture_value(p: &Option<String>) -> Value {
    match p {
        Some(url) => json!({"thumbnail": url}),
        None => json!([]),
    }
}

fn render_order_line(l: &Line, with_offer: bool, catalog: &Catalog) -> Value {
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

fn render_card_line(l: &Line, with_offer: bool, catalog: &Catalog) -> Value {
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

fn render_payment(p: &Payment, destination_id: i64) -> Value {
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

fn render_marketing(m: &Marketing) -> Value {
    let mut v = json!({
        "created_at": iso(m.created_at),
        "updated_at": iso(m.updated_at),
    });
    for (i, k) in UTM_KEYS.iter().enumerate() {
        v[*k] = opt_str(&m.utm[i]);
    }
    v
}

fn render_shipping(s: &Shipping, with_service: bool, with_history: bool) -> Value {
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
