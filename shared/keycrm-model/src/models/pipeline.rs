//! Pipeline cards ("leads").

use super::{CustomFieldValue, NewPayment};
use crate::time;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Body of `POST /pipelines/cards`. UTM tags are top-level here, unlike orders.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct NewCard {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    pub pipeline_id: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manager_comment: Option<String>,
    pub contact: CardContact,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub utm_source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub utm_medium: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub utm_campaign: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub utm_term: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub utm_content: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub products: Vec<CardProduct>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub payments: Vec<NewPayment>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub custom_fields: Vec<CustomFieldValue>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CardContact {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub full_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CardProduct {
    pub sku: String,
    pub name: String,
    #[serde(with = "rust_decimal::serde::float")]
    pub price: Decimal,
    #[serde(with = "rust_decimal::serde::float")]
    pub quantity: Decimal,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub picture: Option<String>,
}

/// Body of `PUT /pipelines/cards/{id}`. A status of another pipeline moves the card there.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CardUpdate {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub custom_fields: Vec<CustomFieldValue>,
}

#[derive(Clone, Debug, PartialEq, Default, Deserialize)]
pub struct Card {
    pub id: i64,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub pipeline_id: Option<i64>,
    #[serde(default)]
    pub source_id: Option<i64>,
    #[serde(default)]
    pub status_id: i64,
    #[serde(default)]
    pub contact_id: Option<i64>,
    #[serde(default)]
    pub manager_comment: Option<String>,
    #[serde(default)]
    pub utm_source: Option<String>,
    #[serde(default)]
    pub utm_campaign: Option<String>,
    #[serde(default)]
    pub custom_fields: Vec<CustomFieldValue>,
    #[serde(default)]
    pub products: Vec<CardLine>,
    #[serde(default, deserialize_with = "time::opt")]
    pub status_changed_at: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "time::opt")]
    pub created_at: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "time::opt")]
    pub updated_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, PartialEq, Default, Deserialize)]
pub struct CardLine {
    #[serde(default)]
    pub sku: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "crate::money::req")]
    pub price: Decimal,
    #[serde(default, deserialize_with = "crate::money::req")]
    pub quantity: Decimal,
}
