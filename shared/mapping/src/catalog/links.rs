//! The links between KeyCRM and shop products, variants and categories, with what was last
//! written through them.

use super::is_false;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// What the sweep did to a linked product, so it can be undone if the product comes back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Swept {
    Hidden,
    Unavailable,
}

/// A KeyCRM product linked to a shop product, with what was last written.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProductLink {
    #[serde(rename = "k")]
    pub keycrm_id: i64,
    #[serde(rename = "s")]
    pub shop_id: String,
    /// [`content_hash`](super::content_hash) of the last content write; 0 = the content was never written.
    #[serde(default)]
    #[serde(rename = "h")]
    pub hash: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "w")]
    pub swept: Option<Swept>,
    #[serde(default)]
    #[serde(rename = "v")]
    pub variants: Vec<VariantLink>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct VariantLink {
    #[serde(rename = "o")]
    pub offer_id: i64,
    #[serde(rename = "s")]
    pub shop_id: String,
    /// [`variant_hash`](super::variant_hash) of the last write; 0 = never written.
    #[serde(default)]
    #[serde(rename = "h")]
    pub hash: u64,
    /// Last price written (`None`: never written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "p")]
    pub price: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "a")]
    pub available: Option<bool>,
    /// The offer vanished from KeyCRM and the variant was made unavailable.
    #[serde(default, skip_serializing_if = "is_false")]
    #[serde(rename = "g")]
    pub gone: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CategoryLink {
    pub keycrm_id: i64,
    pub shop_id: String,
    #[serde(default)]
    pub hash: u64,
    /// The category vanished from KeyCRM and the missing-products policy hid it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub hidden: bool,
}
