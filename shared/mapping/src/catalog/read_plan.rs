//! How a full sync reads the catalog, chosen by estimated request count.

use super::PAGE;
use serde::{Deserialize, Serialize};

/// How a full sync reads the catalog.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadPlan {
    /// Every active offer (`/offers?include=product`), filtered by category here.
    AllOffers,
    /// The filtered products (`/products?filter[category_id]=…`), then their offers by
    /// product id, [`PRODUCTS_PER_BATCH`] products at a time.
    ByProducts,
}

/// Product ids per `/offers?filter[product_id]=…` listing in the [`ReadPlan::ByProducts`] plan.
pub const PRODUCTS_PER_BATCH: usize = 100;

pub fn pages(items: u64) -> u64 {
    items.div_ceil(PAGE)
}

/// Estimated requests of each plan: `(all offers, by products)`.
pub fn read_plan_costs(
    offers_total: u64,
    filtered_products: u64,
    offers_per_product: f64,
) -> (u64, u64) {
    let opp = if offers_per_product.is_finite() && offers_per_product >= 1.0 {
        offers_per_product
    } else {
        1.0
    };
    let batch = PRODUCTS_PER_BATCH as u64;
    let full_batches = filtered_products / batch;
    let rest = filtered_products % batch;
    let per_batch = |n: u64| pages((n as f64 * opp).ceil() as u64).max(1);
    let mut by = pages(filtered_products) + full_batches * per_batch(batch);
    if rest > 0 {
        by += per_batch(rest);
    }
    (pages(offers_total), by)
}

/// The cheaper correct plan for a category filter.
pub fn choose_read_plan(
    offers_total: u64,
    filtered_products: u64,
    offers_per_product: f64,
) -> ReadPlan {
    let (all, by) = read_plan_costs(offers_total, filtered_products, offers_per_product);
    if by < all {
        ReadPlan::ByProducts
    } else {
        ReadPlan::AllOffers
    }
}
