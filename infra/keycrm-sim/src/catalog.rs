//! Seeded product catalog: categories, products and offers (variants). The model and its
//! lookups are here; generation in `generate` (from the word lists in `words`), the JSON
//! answers in `render`, the snapshot and mutations tests use in `snapshot`.
//!
//! Everything is kept in compact structs (no `serde_json::Value` per item); JSON is rendered
//! only for the page being served.

use std::borrow::Cow;
use std::collections::HashMap;

mod generate;
mod render;
mod snapshot;
mod words;

pub use generate::ean13_is_valid;
pub use snapshot::{
    CatalogMutation, CatalogSnapshot, CategoryInfo, NewVariant, OfferInfo, ProductInfo,
    PropertyInfo, StockInfo,
};

/// Base URL of seeded thumbnails. `.invalid` never resolves, so nothing is ever fetched.
pub(crate) const THUMB_BASE: &str = "https://keycrm-sim.invalid/file-storage/thumbnails";

type Prop = (Cow<'static, str>, Cow<'static, str>);

#[derive(Debug, Clone)]
pub(crate) struct Category {
    pub id: i64,
    pub name: Cow<'static, str>,
    pub parent_id: Option<i64>,
}

#[derive(Debug, Clone)]
pub(crate) struct Product {
    pub id: i64,
    pub name: String,
    /// `None` means "derived from the name" (keeps 100k-product catalogs small).
    pub description: Option<String>,
    pub category_id: i64,
    pub has_offers: bool,
    pub is_archived: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone)]
pub(crate) struct Offer {
    pub id: i64,
    pub product_id: i64,
    pub sku: String,
    pub barcode: Option<String>,
    pub price: i64,
    pub purchased_price: i64,
    /// Balance per warehouse (rows only for warehouses the offer ever had stock in).
    pub stock: Vec<Stock>,
    pub properties: Vec<Prop>,
    pub is_default: bool,
    pub is_archived: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One warehouse's balance of an offer: on hand (reserved units included) and reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stock {
    pub warehouse_id: i64,
    pub quantity: i64,
    pub reserve: i64,
}

/// The account's warehouses (KeyCRM has no endpoint listing them; ids come from its UI).
pub(crate) const WAREHOUSES: &[(i64, &str)] =
    &[(1, "Основний склад"), (2, "Склад Київ"), (3, "Склад Львів")];

/// The warehouse seeded stock, `SetStock` and new products use.
pub(crate) const MAIN_WAREHOUSE: i64 = 1;

pub(crate) fn warehouse_name(id: i64) -> Option<&'static str> {
    WAREHOUSES.iter().find(|w| w.0 == id).map(|w| w.1)
}

impl Offer {
    /// On hand over all warehouses.
    pub(crate) fn quantity(&self) -> i64 {
        self.stock.iter().map(|s| s.quantity).sum()
    }

    /// Reserved over all warehouses.
    pub(crate) fn reserve(&self) -> i64 {
        self.stock.iter().map(|s| s.reserve).sum()
    }

    /// `(on hand, reserved)` summed over `warehouses` (empty = all), as a stock webhook
    /// configured with those warehouses reports it.
    pub(crate) fn stock_in(&self, warehouses: &[i64]) -> (i64, i64) {
        self.stock
            .iter()
            .filter(|s| warehouses.is_empty() || warehouses.contains(&s.warehouse_id))
            .fold((0, 0), |(q, r), s| (q + s.quantity, r + s.reserve))
    }

    pub(crate) fn stock_mut(&mut self, warehouse_id: i64) -> &mut Stock {
        // Rows stay sorted by warehouse id.
        let i = match self
            .stock
            .binary_search_by_key(&warehouse_id, |s| s.warehouse_id)
        {
            Ok(i) => i,
            Err(i) => {
                self.stock.insert(
                    i,
                    Stock {
                        warehouse_id,
                        quantity: 0,
                        reserve: 0,
                    },
                );
                i
            }
        };
        &mut self.stock[i]
    }

    /// Sets the on-hand balance of one warehouse (an absolute value, like a stock movement
    /// document); the reserve there never exceeds it.
    pub(crate) fn set_quantity(&mut self, warehouse_id: i64, quantity: i64) {
        let s = self.stock_mut(warehouse_id);
        s.quantity = quantity;
        s.reserve = s.reserve.min(quantity.max(0));
    }
}

#[derive(Debug, Default)]
pub(crate) struct Catalog {
    pub categories: Vec<Category>,
    /// Sorted by id.
    pub products: Vec<Product>,
    /// Sorted by id, and therefore also by product id (new products get higher ids).
    pub offers: Vec<Offer>,
    pub sku_index: HashMap<String, Vec<i64>>,
    pub next_product_id: i64,
    pub next_offer_id: i64,
    pub next_category_id: i64,
}

impl Catalog {
    /// Stock of every offer whose balance is about to change, for the stock webhooks.
    pub(crate) fn stock_of(&self, offer_ids: &[i64]) -> Vec<(i64, String, Vec<Stock>)> {
        offer_ids
            .iter()
            .filter_map(|id| self.offer(*id))
            .map(|o| (o.id, o.sku.clone(), o.stock.clone()))
            .collect()
    }

    pub(crate) fn offer_mut(&mut self, id: i64) -> Option<&mut Offer> {
        let i = self.offer_index(id)?;
        Some(&mut self.offers[i])
    }

    fn alloc_category_id(&mut self) -> i64 {
        let id = self.next_category_id;
        self.next_category_id += 1;
        id
    }

    pub(crate) fn rebuild_sku_index(&mut self) {
        let mut idx: HashMap<String, Vec<i64>> = HashMap::with_capacity(self.offers.len());
        for o in &self.offers {
            idx.entry(o.sku.clone()).or_default().push(o.id);
        }
        self.sku_index = idx;
    }

    fn first_offer_index(&self, product_id: i64) -> Option<usize> {
        let i = self.offers.partition_point(|o| o.product_id < product_id);
        (i < self.offers.len() && self.offers[i].product_id == product_id).then_some(i)
    }

    pub(crate) fn offers_of(&self, product_id: i64) -> &[Offer] {
        let lo = self.offers.partition_point(|o| o.product_id < product_id);
        let hi = self.offers.partition_point(|o| o.product_id <= product_id);
        &self.offers[lo..hi]
    }

    pub(crate) fn product(&self, id: i64) -> Option<&Product> {
        self.products
            .binary_search_by_key(&id, |p| p.id)
            .ok()
            .map(|i| &self.products[i])
    }

    fn product_mut(&mut self, id: i64) -> Option<&mut Product> {
        match self.products.binary_search_by_key(&id, |p| p.id) {
            Ok(i) => Some(&mut self.products[i]),
            Err(_) => None,
        }
    }

    pub(crate) fn offer(&self, id: i64) -> Option<&Offer> {
        self.offers
            .binary_search_by_key(&id, |o| o.id)
            .ok()
            .map(|i| &self.offers[i])
    }

    fn offer_index(&self, id: i64) -> Option<usize> {
        self.offers.binary_search_by_key(&id, |o| o.id).ok()
    }

    /// The offer an order line with this SKU links to (lowest id on duplicates).
    pub(crate) fn offer_by_sku(&self, sku: &str) -> Option<&Offer> {
        let ids = self.sku_index.get(sku)?;
        ids.iter().filter_map(|id| self.offer(*id)).next()
    }

    pub(crate) fn category_exists(&self, id: i64) -> bool {
        self.categories.iter().any(|c| c.id == id)
    }

    pub(crate) fn description_of(&self, p: &Product) -> String {
        match &p.description {
            Some(d) => d.clone(),
            None => format!(
                "{}. Доглядайте згідно з етикеткою; колір може трохи відрізнятися від фото.",
                p.name
            ),
        }
    }

    pub(crate) fn thumbnail(product_id: i64) -> String {
        format!("{THUMB_BASE}/p{product_id}.webp")
    }
}
