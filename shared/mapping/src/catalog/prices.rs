//! Price and availability writes: from stock rows, and back to what the link says when the
//! shop drifted.

use super::links::{ProductLink, VariantLink};
use crate::shop::{ShopProduct, VariantPriceChange};
use rust_decimal::Decimal;

/// The write for one variant from a stock row, or `None` when nothing changed.
pub fn price_change(
    product_shop_id: &str,
    v: &VariantLink,
    price: Option<Decimal>,
    available: Option<bool>,
) -> Option<VariantPriceChange> {
    let price = price.filter(|p| v.price != Some(*p));
    let available = available.filter(|a| v.available != Some(*a));
    (price.is_some() || available.is_some()).then(|| VariantPriceChange {
        product_id: product_shop_id.to_string(),
        variant_id: v.shop_id.clone(),
        price,
        available,
    })
}

/// Records a price write in the link.
pub fn apply_price_change(v: &mut VariantLink, c: &VariantPriceChange) {
    if c.price.is_some() {
        v.price = c.price;
    }
    if c.available.is_some() {
        v.available = c.available;
    }
}

/// The writes that bring a shop product back to what its link says the connector wrote —
/// KeyCRM's price and availability, once the run has brought the link up to date — for the
/// variants where the shop now holds something else (a merchant's edit, an import, a restore,
/// a write the platform acknowledged and lost). Only the differing fields; nothing for a
/// product the sweep took over, or a variant the shop no longer has.
pub fn drift_changes(link: &ProductLink, shop: &ShopProduct) -> Vec<VariantPriceChange> {
    if link.swept.is_some() || link.shop_id != shop.id {
        return Vec::new();
    }
    let mut out = Vec::new();
    for v in &link.variants {
        let Some(sv) = shop.variants.iter().find(|s| s.id == v.shop_id) else {
            continue;
        };
        let price = v.price.filter(|p| sv.price != Some(*p));
        let available = v.available.filter(|a| sv.available != *a);
        if price.is_some() || available.is_some() {
            out.push(VariantPriceChange {
                product_id: link.shop_id.clone(),
                variant_id: v.shop_id.clone(),
                price,
                available,
            });
        }
    }
    out
}
