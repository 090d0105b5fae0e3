//! Orders: what we send on create/update and what KeyCRM returns.

use super::{CustomFieldValue, Property};
use crate::{money, time};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Body of `POST /order`. Money goes out as JSON numbers; absent values are not sent at all.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct NewOrder {
    pub source_id: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_uuid: Option<String>,
    /// `YYYY-MM-DD HH:MM:SS`, UTC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ordered_at: Option<String>,
    pub buyer: NewBuyer,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub buyer_comment: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manager_comment: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub promocode: Option<String>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        with = "rust_decimal::serde::float_option"
    )]
    pub discount_amount: Option<Decimal>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        with = "rust_decimal::serde::float_option"
    )]
    pub shipping_price: Option<Decimal>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shipping: Option<NewShipping>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub marketing: Option<Marketing>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub products: Vec<NewOrderProduct>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub payments: Vec<NewPayment>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub custom_fields: Vec<CustomFieldValue>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct NewBuyer {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub full_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct NewShipping {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery_service_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shipping_service: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shipping_address_city: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shipping_address_country: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shipping_address_region: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shipping_address_zip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shipping_secondary_line: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shipping_receive_point: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipient_full_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipient_phone: Option<String>,
    /// Nova Poshta warehouse ref; only meaningful with the Nova Poshta delivery service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warehouse_ref: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Marketing {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utm_source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utm_medium: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utm_campaign: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utm_term: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utm_content: Option<String>,
}

impl Marketing {
    pub fn is_empty(&self) -> bool {
        self == &Marketing::default()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct NewOrderProduct {
    pub sku: String,
    pub name: String,
    #[serde(with = "rust_decimal::serde::float")]
    pub price: Decimal,
    #[serde(with = "rust_decimal::serde::float")]
    pub quantity: Decimal,
    #[serde(
        skip_serializing_if = "Option::is_none",
        with = "rust_decimal::serde::float_option"
    )]
    pub discount_amount: Option<Decimal>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub picture: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub properties: Vec<Property>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct NewPayment {
    pub payment_method_id: i64,
    #[serde(with = "rust_decimal::serde::float")]
    pub amount: Decimal,
    /// `paid`, `not_paid` or `canceled`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// Body of `PUT /order/{id}`: only what the connector changes.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct OrderUpdate {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manager_comment: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub custom_fields: Vec<CustomFieldValue>,
}

/// An order as read back (`GET /order/{id}`, list rows, the create response).
#[derive(Clone, Debug, PartialEq, Default, Deserialize)]
pub struct Order {
    pub id: i64,
    #[serde(default)]
    pub source_id: Option<i64>,
    #[serde(default)]
    pub source_uuid: Option<String>,
    #[serde(default)]
    pub status_id: i64,
    #[serde(default)]
    pub status_group_id: Option<i64>,
    #[serde(default, deserialize_with = "time::opt")]
    pub status_changed_at: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "money::req")]
    pub grand_total: Decimal,
    #[serde(default, deserialize_with = "money::opt")]
    pub shipping_price: Option<Decimal>,
    #[serde(default)]
    pub payment_status: Option<String>,
    #[serde(default)]
    pub client_id: Option<i64>,
    #[serde(default)]
    pub buyer: Option<OrderBuyer>,
    #[serde(default)]
    pub products: Vec<OrderProduct>,
    #[serde(default)]
    pub marketing: Option<Marketing>,
    #[serde(default)]
    pub custom_fields: Vec<CustomFieldValue>,
    #[serde(default, deserialize_with = "time::opt")]
    pub ordered_at: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "time::opt")]
    pub created_at: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "time::opt")]
    pub updated_at: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "time::opt")]
    pub closed_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, PartialEq, Default, Deserialize)]
pub struct OrderBuyer {
    #[serde(default)]
    pub id: Option<i64>,
    #[serde(default)]
    pub full_name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub phone: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Default, Deserialize)]
pub struct OrderProduct {
    #[serde(default)]
    pub sku: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "money::req")]
    pub price: Decimal,
    #[serde(default, deserialize_with = "money::req")]
    pub quantity: Decimal,
    /// `[]` when unset or `{"thumbnail": url}` on read, although it is a URL string on write.
    #[serde(default)]
    pub picture: serde_json::Value,
    #[serde(default)]
    pub properties: Vec<Property>,
}
