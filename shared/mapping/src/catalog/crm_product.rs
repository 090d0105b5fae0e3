//! The compact KeyCRM catalog the sync holds: one product with the offers seen for it, read
//! from `/offers?include=product` rows.

use super::{clean, is_false};
use keycrm_model::models::Property;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// A KeyCRM product with the offers seen for it: the only catalog state the sync holds.
/// (Stored field names are short: staged products and links are read on every run.)
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CrmProduct {
    pub id: i64,
    #[serde(default)]
    #[serde(rename = "n")]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "d")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "c")]
    pub category_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[serde(rename = "i")]
    pub images: Vec<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    #[serde(rename = "x")]
    pub archived: bool,
    #[serde(default)]
    #[serde(rename = "o")]
    pub offers: Vec<CrmOffer>,
}

/// One KeyCRM offer (a shop variant).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CrmOffer {
    pub id: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "s")]
    pub sku: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "b")]
    pub barcode: Option<String>,
    #[serde(rename = "p")]
    pub price: Decimal,
    /// From stock (on hand minus reserved); `None` when KeyCRM reports no stock for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "a")]
    pub available: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[serde(rename = "pr")]
    pub properties: Vec<(String, String)>,
}

/// An `/offers?include=product` row as the sync reads it: only the fields it uses are
/// decoded (the rest of KeyCRM's row is skipped while parsing, which matters at 50 rows a page
/// and thousands of pages).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ListedOffer {
    pub id: i64,
    #[serde(default)]
    pub product_id: i64,
    #[serde(default)]
    pub sku: Option<String>,
    #[serde(default)]
    pub barcode: Option<String>,
    #[serde(default, deserialize_with = "keycrm_model::money::req")]
    pub price: Decimal,
    #[serde(default, deserialize_with = "keycrm_model::money::opt")]
    pub quantity: Option<Decimal>,
    #[serde(default, deserialize_with = "keycrm_model::money::opt")]
    pub in_reserve: Option<Decimal>,
    #[serde(default)]
    pub properties: Vec<Property>,
    #[serde(default)]
    pub is_archived: bool,
    #[serde(default)]
    pub product: Option<ListedProduct>,
}

/// The product embedded in a [`ListedOffer`].
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ListedProduct {
    pub id: i64,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub thumbnail_url: Option<String>,
    #[serde(default)]
    pub attachments_data: Option<Vec<String>>,
    #[serde(default)]
    pub is_archived: bool,
    #[serde(default)]
    pub category_id: Option<i64>,
}

impl CrmOffer {
    pub fn from_listed(o: ListedOffer) -> Self {
        let available = o
            .quantity
            .map(|q| (q - o.in_reserve.unwrap_or_default()) > Decimal::ZERO);
        CrmOffer {
            id: o.id,
            sku: clean(o.sku.as_deref()),
            barcode: clean(o.barcode.as_deref()),
            price: o.price,
            available,
            properties: o
                .properties
                .into_iter()
                .filter(|p| !p.name.trim().is_empty())
                .map(|p| (p.name.trim().to_string(), p.value.trim().to_string()))
                .collect(),
        }
    }
}

impl CrmProduct {
    pub fn from_listed(p: ListedProduct) -> Self {
        let mut images: Vec<String> = p
            .attachments_data
            .into_iter()
            .flatten()
            .filter_map(|u| clean(Some(&u)))
            .collect();
        if images.is_empty() {
            images.extend(clean(p.thumbnail_url.as_deref()));
        }
        CrmProduct {
            id: p.id,
            name: p.name.trim().to_string(),
            description: clean(p.description.as_deref()),
            category_id: p.category_id.filter(|c| *c > 0),
            images,
            archived: p.is_archived,
            offers: Vec::new(),
        }
    }

    /// The product an offer belongs to (from `include=product`), with that offer.
    pub fn from_offer(mut o: ListedOffer) -> Self {
        let mut p = match o.product.take() {
            Some(p) => CrmProduct::from_listed(p),
            None => CrmProduct::default(),
        };
        p.id = o.product_id;
        p.archived |= o.is_archived;
        p.offers.push(CrmOffer::from_listed(o));
        p
    }

    /// Adds or replaces an offer, keeping offers ordered by id.
    pub fn add_offer(&mut self, o: CrmOffer) {
        match self.offers.binary_search_by_key(&o.id, |x| x.id) {
            Ok(i) => self.offers[i] = o,
            Err(i) => self.offers.insert(i, o),
        }
    }

    /// Merges a later sighting of the same product (its offers may straddle a page boundary,
    /// or not be contiguous at all): product fields from `other`, offers united by id.
    pub fn merge(&mut self, other: CrmProduct) {
        let offers = other.offers;
        self.name = other.name;
        self.description = other.description;
        self.category_id = other.category_id;
        self.images = other.images;
        self.archived = other.archived;
        for o in offers {
            self.add_offer(o);
        }
    }
}

/// Groups a page of offers by product, in page order. Offers of one product that are not
/// adjacent on the page are merged into the first group.
pub fn group_offers(offers: Vec<ListedOffer>) -> Vec<CrmProduct> {
    let mut out: Vec<CrmProduct> = Vec::new();
    let mut at: HashMap<i64, usize> = HashMap::new();
    for mut o in offers {
        match at.get(&o.product_id) {
            // Adjacent offers carry the same embedded product: only the offer is new.
            Some(&i) if i + 1 == out.len() => {
                o.product = None;
                out[i].add_offer(CrmOffer::from_listed(o));
            }
            Some(&i) => out[i].merge(CrmProduct::from_offer(o)),
            None => {
                at.insert(o.product_id, out.len());
                out.push(CrmProduct::from_offer(o));
            }
        }
    }
    out
}
