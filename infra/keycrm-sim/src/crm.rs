//! CRM entities created through the API: orders, buyers, pipeline cards and contacts. The types
//! and their `include` sets are here; reading request bodies is in `parse`, the order and card
//! operations in `orders` and `cards`, the JSON answers in `render`.

use rust_decimal::Decimal;
use serde_json::Value;

use crate::query::ListQuery;

mod cards;
mod orders;
mod parse;
mod render;

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
}
