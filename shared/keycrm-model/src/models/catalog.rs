//! Categories, products, offers (variants) and stocks.

use super::Property;
use crate::{money, time};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Category {
    pub id: i64,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub parent_id: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Default, Deserialize)]
pub struct Product {
    pub id: i64,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub thumbnail_url: Option<String>,
    #[serde(default)]
    pub attachments_data: Option<Vec<String>>,
    #[serde(default, deserialize_with = "money::opt")]
    pub quantity: Option<Decimal>,
    #[serde(default)]
    pub unit_type: Option<String>,
    #[serde(default)]
    pub currency_code: Option<String>,
    #[serde(default, deserialize_with = "money::opt")]
    pub min_price: Option<Decimal>,
    #[serde(default, deserialize_with = "money::opt")]
    pub max_price: Option<Decimal>,
    #[serde(default)]
    pub has_offers: bool,
    #[serde(default)]
    pub is_archived: bool,
    #[serde(default)]
    pub category_id: Option<i64>,
    /// Only on products without variants.
    #[serde(default)]
    pub sku: Option<String>,
    #[serde(default)]
    pub barcode: Option<String>,
    #[serde(default, deserialize_with = "money::opt")]
    pub price: Option<Decimal>,
    #[serde(default, deserialize_with = "time::opt")]
    pub updated_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, PartialEq, Default, Deserialize)]
pub struct Offer {
    pub id: i64,
    #[serde(default)]
    pub product_id: i64,
    #[serde(default)]
    pub sku: Option<String>,
    #[serde(default)]
    pub barcode: Option<String>,
    #[serde(default, deserialize_with = "money::req")]
    pub price: Decimal,
    #[serde(default, deserialize_with = "money::opt")]
    pub purchased_price: Option<Decimal>,
    /// Total stock over warehouses.
    #[serde(default, deserialize_with = "money::opt")]
    pub quantity: Option<Decimal>,
    #[serde(default, deserialize_with = "money::opt")]
    pub in_reserve: Option<Decimal>,
    #[serde(default)]
    pub thumbnail_url: Option<String>,
    #[serde(default)]
    pub properties: Vec<Property>,
    #[serde(default)]
    pub is_default: bool,
    #[serde(default)]
    pub is_archived: bool,
    #[serde(default, deserialize_with = "time::opt")]
    pub updated_at: Option<DateTime<Utc>>,
    /// Present with `include=product`.
    #[serde(default)]
    pub product: Option<Product>,
}

impl Offer {
    /// Stock a customer can buy: on hand minus reserved, never negative.
    pub fn available(&self) -> Option<Decimal> {
        self.quantity
            .map(|q| (q - self.in_reserve.unwrap_or_default()).max(Decimal::ZERO))
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct OfferStock {
    /// The offer id.
    pub id: i64,
    #[serde(default)]
    pub sku: Option<String>,
    #[serde(default, deserialize_with = "money::opt")]
    pub price: Option<Decimal>,
    #[serde(default, deserialize_with = "money::req")]
    pub quantity: Decimal,
    #[serde(default, deserialize_with = "money::req")]
    pub reserve: Decimal,
}

impl OfferStock {
    pub fn available(&self) -> Decimal {
        (self.quantity - self.reserve).max(Decimal::ZERO)
    }
}
