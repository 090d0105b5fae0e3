//! The shop platform's side of the world, as the connector sees it through the shop port.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// What the settings page needs from the shop to build its dropdowns.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ShopReference {
    pub order_statuses: Vec<NamedItem>,
    pub order_addons: Vec<ShopAddon>,
    pub payment_methods: Vec<NamedItem>,
    pub delivery_methods: Vec<NamedItem>,
    /// ISO 4217, e.g. `UAH`.
    pub currency: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedItem {
    pub id: String,
    pub name: String,
}

/// An order add-on field the buyer fills at checkout ("gift wrap", "call me back", …).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShopAddon {
    pub id: String,
    pub name: String,
    /// text, number, checkbox, select, date
    #[serde(rename = "type")]
    pub addon_type: String,
}

/// One shop product as listed in the shop's product index: only what matching and change
/// detection need.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ShopProduct {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub sku: Option<String>,
    #[serde(default)]
    pub barcode: Option<String>,
    /// The platform's "external id" field, free for integrations.
    #[serde(default)]
    pub external_id: Option<String>,
    #[serde(default)]
    pub visible: bool,
    #[serde(default)]
    pub available: bool,
    #[serde(default)]
    pub variants: Vec<ShopVariant>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ShopVariant {
    pub id: String,
    #[serde(default)]
    pub sku: Option<String>,
    #[serde(default)]
    pub barcode: Option<String>,
    #[serde(default)]
    pub price: Option<Decimal>,
    #[serde(default)]
    pub available: bool,
}

/// A product write. `None` means "leave as it is": fields KeyCRM does not have are never
/// blanked in the shop.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProductUpsert {
    /// Shop id when updating; absent when creating.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Our reference for the create result (the KeyCRM product id).
    pub external_ref: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<String>,
    /// Only on create: whether the new product is published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visible: Option<bool>,
    pub variants: Vec<VariantUpsert>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct VariantUpsert {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The KeyCRM offer id.
    pub external_ref: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub barcode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub properties: Vec<(String, String)>,
}

/// What an upsert created or touched, so links can be stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UpsertResult {
    pub external_ref: String,
    pub id: String,
    /// `(offer id, shop variant id)`
    pub variants: Vec<(String, String)>,
}

/// A visibility or availability change on an existing product.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductStateChange {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visible: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available: Option<bool>,
}

/// A price/availability write for one variant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VariantPriceChange {
    pub product_id: String,
    pub variant_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available: Option<bool>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShopCategory {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub parent_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CategoryUpsert {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The KeyCRM category id.
    pub external_ref: String,
    pub name: String,
    #[serde(default)]
    pub parent_id: Option<String>,
}

/// A visibility change on an existing category (a category KeyCRM no longer has, hidden by
/// the missing-products policy, or shown again when it comes back).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CategoryStateChange {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visible: Option<bool>,
}
