//! The catalog as tests see and change it: the public snapshot types, the mutations tests apply
//! (`CatalogMutation`) and how they change the catalog.

use std::borrow::Cow;
use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::generate::new_stock;
use super::{Catalog, Category, Offer, Product, MAIN_WAREHOUSE};
use crate::rng::SplitMix64;
use crate::time::iso;
use crate::util::{cents_to_f64, to_cents};

/// A `{name, value}` offer property.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PropertyInfo {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategoryInfo {
    pub id: i64,
    pub name: String,
    pub parent_id: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProductInfo {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub category_id: i64,
    pub has_offers: bool,
    pub is_archived: bool,
    /// Only for `has_offers == false` (as in the API).
    pub sku: Option<String>,
    pub barcode: Option<String>,
    pub price: Option<f64>,
    pub purchased_price: Option<f64>,
    pub min_price: f64,
    pub max_price: f64,
    pub quantity: i64,
    pub in_reserve: i64,
    pub thumbnail_url: String,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OfferInfo {
    pub id: i64,
    pub product_id: i64,
    pub sku: String,
    pub barcode: Option<String>,
    pub price: f64,
    pub purchased_price: f64,
    /// Totals over warehouses.
    pub quantity: i64,
    pub in_reserve: i64,
    /// The balance per warehouse.
    #[serde(default)]
    pub stocks: Vec<StockInfo>,
    pub properties: Vec<PropertyInfo>,
    pub is_default: bool,
    pub is_archived: bool,
    pub created_at: String,
    pub updated_at: String,
}

/// One warehouse's balance of an offer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockInfo {
    pub warehouse_id: i64,
    pub quantity: i64,
    pub reserve: i64,
}

/// The whole catalog of one account as plain structs, for test assertions.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CatalogSnapshot {
    pub categories: Vec<CategoryInfo>,
    pub products: Vec<ProductInfo>,
    pub offers: Vec<OfferInfo>,
}

impl CatalogSnapshot {
    /// SKUs carried by offers of two or more *different* products (the seeded traps).
    pub fn duplicate_skus(&self) -> Vec<String> {
        let mut owners: HashMap<&str, Vec<i64>> = HashMap::new();
        for o in &self.offers {
            owners.entry(o.sku.as_str()).or_default().push(o.product_id);
        }
        let mut out: Vec<String> = owners
            .into_iter()
            .filter(|(_, pids)| {
                let first = pids[0];
                pids.iter().any(|p| *p != first)
            })
            .map(|(sku, _)| sku.to_string())
            .collect();
        out.sort();
        out
    }

    pub fn offers_of(&self, product_id: i64) -> Vec<&OfferInfo> {
        self.offers
            .iter()
            .filter(|o| o.product_id == product_id)
            .collect()
    }
}

/// A variant for [`CatalogMutation::AddProduct`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewVariant {
    pub sku: String,
    #[serde(default)]
    pub price: Option<f64>,
    #[serde(default)]
    pub barcode: Option<String>,
    #[serde(default)]
    pub quantity: i64,
    #[serde(default)]
    pub properties: Vec<PropertyInfo>,
}

/// Changes to the seeded catalog, as a shop manager would make them in KeyCRM.
/// Over HTTP (`POST /__sim/catalog`) the JSON form is tagged by `"kind"`, e.g.
/// `{"kind":"SetPrice","offer_id":1001,"price":499.0}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum CatalogMutation {
    /// Sets one offer's price (UAH).
    SetPrice { offer_id: i64, price: f64 },
    /// Changes the price of a `share` (0..=1) of all offers, picked deterministically from
    /// `seed`, by a random ±5..20 %.
    ChangePricesPercent { share: f64, seed: u64 },
    /// Archives a product and its offers.
    Archive { product_id: i64 },
    /// Un-archives a product and its offers.
    Unarchive { product_id: i64 },
    /// Deletes a product and its offers (`GET /products/{id}` then answers 404).
    Delete { product_id: i64 },
    /// Archives one offer (a variant taken off sale; its product stays active).
    ArchiveOffer { offer_id: i64 },
    /// Deletes one offer (a variant removed from its product).
    DeleteOffer { offer_id: i64 },
    /// Adds a product. Without `variants` it gets one default offer carrying `sku`/`price`.
    AddProduct {
        name: String,
        #[serde(default)]
        category_id: Option<i64>,
        #[serde(default)]
        sku: Option<String>,
        #[serde(default)]
        price: f64,
        #[serde(default)]
        barcode: Option<String>,
        #[serde(default)]
        quantity: i64,
        #[serde(default)]
        description: Option<String>,
        #[serde(default)]
        variants: Vec<NewVariant>,
    },
    /// Renames a product.
    Rename { product_id: i64, name: String },
    /// Moves a product to another category.
    MoveCategory { product_id: i64, category_id: i64 },
    /// Sets an offer's on-hand quantity in the main warehouse (1), like a manual edit; fires
    /// the stock webhooks.
    SetStock { offer_id: i64, quantity: i64 },
    /// Adds a category.
    AddCategory {
        name: String,
        #[serde(default)]
        parent_id: Option<i64>,
    },
    /// Deletes a category that holds no products and no subcategories (matches nothing
    /// otherwise): it is gone from `GET /products/categories`.
    DeleteCategory { category_id: i64 },
}

impl Catalog {
    // ---- snapshot -------------------------------------------------------------------------

    pub(crate) fn snapshot(&self) -> CatalogSnapshot {
        let categories = self
            .categories
            .iter()
            .map(|c| CategoryInfo {
                id: c.id,
                name: c.name.to_string(),
                parent_id: c.parent_id,
            })
            .collect();
        let products = self
            .products
            .iter()
            .map(|p| {
                let offers = self.offers_of(p.id);
                let first = offers.first().filter(|_| !p.has_offers);
                ProductInfo {
                    id: p.id,
                    name: p.name.clone(),
                    description: self.description_of(p),
                    category_id: p.category_id,
                    has_offers: p.has_offers,
                    is_archived: p.is_archived,
                    sku: first.map(|o| o.sku.clone()),
                    barcode: first.and_then(|o| o.barcode.clone()),
                    price: first.map(|o| cents_to_f64(o.price)),
                    purchased_price: first.map(|o| cents_to_f64(o.purchased_price)),
                    min_price: cents_to_f64(offers.iter().map(|o| o.price).min().unwrap_or(0)),
                    max_price: cents_to_f64(offers.iter().map(|o| o.price).max().unwrap_or(0)),
                    quantity: offers.iter().map(Offer::quantity).sum(),
                    in_reserve: offers.iter().map(Offer::reserve).sum(),
                    thumbnail_url: Self::thumbnail(p.id),
                    created_at: iso(p.created_at),
                    updated_at: iso(p.updated_at),
                }
            })
            .collect();
        let offers = self
            .offers
            .iter()
            .map(|o| OfferInfo {
                id: o.id,
                product_id: o.product_id,
                sku: o.sku.clone(),
                barcode: o.barcode.clone(),
                price: cents_to_f64(o.price),
                purchased_price: cents_to_f64(o.purchased_price),
                quantity: o.quantity(),
                in_reserve: o.reserve(),
                stocks: o
                    .stock
                    .iter()
                    .map(|s| StockInfo {
                        warehouse_id: s.warehouse_id,
                        quantity: s.quantity,
                        reserve: s.reserve,
                    })
                    .collect(),
                properties: o
                    .properties
                    .iter()
                    .map(|(n, v)| PropertyInfo {
                        name: n.to_string(),
                        value: v.to_string(),
                    })
                    .collect(),
                is_default: o.is_default,
                is_archived: o.is_archived,
                created_at: iso(o.created_at),
                updated_at: iso(o.updated_at),
            })
            .collect();
        CatalogSnapshot {
            categories,
            products,
            offers,
        }
    }

    // ---- mutations ------------------------------------------------------------------------

    pub(super) fn touch_product(&mut self, product_id: i64, now: i64) {
        if let Some(p) = self.product_mut(product_id) {
            p.updated_at = now;
        }
    }

    /// Applies a mutation. Returns the number of entities changed (0 when ids are unknown).
    pub(crate) fn apply(&mut self, m: &CatalogMutation, now: i64) -> usize {
        match m {
            CatalogMutation::SetPrice { offer_id, price } => {
                let Some(i) = self.offer_index(*offer_id) else {
                    return 0;
                };
                self.offers[i].price = to_cents(*price);
                self.offers[i].updated_at = now;
                let pid = self.offers[i].product_id;
                self.touch_product(pid, now);
                1
            }
            CatalogMutation::ChangePricesPercent { share, seed } => {
                let mut changed = Vec::new();
                for o in self.offers.iter_mut() {
                    let mut r = SplitMix64::derive(*seed, o.id as u64);
                    if !r.chance(*share) {
                        continue;
                    }
                    let pct = r.range(5, 20) * if r.chance(0.5) { 1 } else { -1 };
                    let mut np = o.price * (100 + pct) / 100;
                    if o.price % 100 == 0 {
                        np = (np / 100).max(1) * 100;
                    }
                    if np == o.price {
                        np += if pct > 0 { 100 } else { -100 };
                    }
                    o.price = np.max(100);
                    o.updated_at = now;
                    changed.push(o.product_id);
                }
                changed.dedup();
                let n = changed.len();
                for pid in changed {
                    self.touch_product(pid, now);
                }
                n
            }
            CatalogMutation::Archive { product_id } | CatalogMutation::Unarchive { product_id } => {
                let flag = matches!(m, CatalogMutation::Archive { .. });
                let Some(p) = self.product_mut(*product_id) else {
                    return 0;
                };
                p.is_archived = flag;
                p.updated_at = now;
                let lo = self.offers.partition_point(|o| o.product_id < *product_id);
                for o in self.offers[lo..]
                    .iter_mut()
                    .take_while(|o| o.product_id == *product_id)
                {
                    o.is_archived = flag;
                    o.updated_at = now;
                }
                1
            }
            CatalogMutation::ArchiveOffer { offer_id } => {
                let Some(i) = self.offer_index(*offer_id) else {
                    return 0;
                };
                self.offers[i].is_archived = true;
                self.offers[i].updated_at = now;
                let pid = self.offers[i].product_id;
                self.touch_product(pid, now);
                1
            }
            CatalogMutation::DeleteOffer { offer_id } => {
                let Some(i) = self.offer_index(*offer_id) else {
                    return 0;
                };
                let pid = self.offers.remove(i).product_id;
                self.rebuild_sku_index();
                self.touch_product(pid, now);
                1
            }
            CatalogMutation::Delete { product_id } => {
                let Ok(i) = self.products.binary_search_by_key(product_id, |p| p.id) else {
                    return 0;
                };
                self.products.remove(i);
                self.offers.retain(|o| o.product_id != *product_id);
                self.rebuild_sku_index();
                1
            }
            CatalogMutation::AddProduct {
                name,
                category_id,
                sku,
                price,
                barcode,
                quantity,
                description,
                variants,
            } => {
                let pid = self.next_product_id;
                self.next_product_id += 1;
                let category_id = category_id
                    .filter(|c| self.category_exists(*c))
                    .or_else(|| self.categories.last().map(|c| c.id))
                    .unwrap_or(0);
                let mut new_offers = Vec::new();
                if variants.is_empty() {
                    new_offers.push(Offer {
                        id: 0,
                        product_id: pid,
                        sku: sku.clone().unwrap_or_else(|| format!("NEW-{pid}")),
                        barcode: barcode.clone(),
                        price: to_cents(*price),
                        purchased_price: to_cents(*price) * 55 / 100,
                        stock: new_stock(*quantity),
                        properties: Vec::new(),
                        is_default: true,
                        is_archived: false,
                        created_at: now,
                        updated_at: now,
                    });
                } else {
                    for v in variants {
                        let p = to_cents(v.price.unwrap_or(*price));
                        new_offers.push(Offer {
                            id: 0,
                            product_id: pid,
                            sku: v.sku.clone(),
                            barcode: v.barcode.clone(),
                            price: p,
                            purchased_price: p * 55 / 100,
                            stock: new_stock(v.quantity),
                            properties: v
                                .properties
                                .iter()
                                .map(|pi| {
                                    (Cow::Owned(pi.name.clone()), Cow::Owned(pi.value.clone()))
                                })
                                .collect(),
                            is_default: false,
                            is_archived: false,
                            created_at: now,
                            updated_at: now,
                        });
                    }
                }
                for mut o in new_offers {
                    o.id = self.next_offer_id;
                    self.next_offer_id += 1;
                    self.sku_index.entry(o.sku.clone()).or_default().push(o.id);
                    self.offers.push(o);
                }
                self.products.push(Product {
                    id: pid,
                    name: name.clone(),
                    description: description.clone(),
                    category_id,
                    has_offers: !variants.is_empty(),
                    is_archived: false,
                    created_at: now,
                    updated_at: now,
                });
                1
            }
            CatalogMutation::Rename { product_id, name } => {
                let Some(p) = self.product_mut(*product_id) else {
                    return 0;
                };
                p.name = name.clone();
                p.updated_at = now;
                1
            }
            CatalogMutation::MoveCategory {
                product_id,
                category_id,
            } => {
                if !self.category_exists(*category_id) {
                    return 0;
                }
                let Some(p) = self.product_mut(*product_id) else {
                    return 0;
                };
                p.category_id = *category_id;
                p.updated_at = now;
                1
            }
            CatalogMutation::SetStock { offer_id, quantity } => {
                let Some(i) = self.offer_index(*offer_id) else {
                    return 0;
                };
                let o = &mut self.offers[i];
                o.set_quantity(MAIN_WAREHOUSE, *quantity);
                o.updated_at = now;
                1
            }
            CatalogMutation::AddCategory { name, parent_id } => {
                if let Some(pid) = parent_id {
                    if !self.category_exists(*pid) {
                        return 0;
                    }
                }
                let id = self.alloc_category_id();
                self.categories.push(Category {
                    id,
                    name: Cow::Owned(name.clone()),
                    parent_id: *parent_id,
                });
                1
            }
            CatalogMutation::DeleteCategory { category_id } => {
                let used = self.products.iter().any(|p| p.category_id == *category_id)
                    || self
                        .categories
                        .iter()
                        .any(|c| c.parent_id == Some(*category_id));
                let before = self.categories.len();
                if !used {
                    self.categories.retain(|c| c.id != *category_id);
                }
                before - self.categories.len()
            }
        }
    }
}
