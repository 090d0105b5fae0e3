//! The writes for a KeyCRM product: a linked one (only what changed), a new one (created),
//! and the links after a successful upsert.

use super::clean;
use super::crm_product::{CrmOffer, CrmProduct};
use super::hashes::{content_hash, variant_hash};
use super::links::{ProductLink, Swept, VariantLink};
use crate::settings::ExistingProductPolicy;
use crate::shop::{
    ProductStateChange, ProductUpsert, UpsertResult, VariantPriceChange, VariantUpsert,
};

pub(super) fn variant_upsert(o: &CrmOffer, shop_id: Option<String>) -> VariantUpsert {
    VariantUpsert {
        id: shop_id,
        external_ref: o.id.to_string(),
        sku: o.sku.clone(),
        barcode: o.barcode.clone(),
        price: Some(o.price),
        available: o.available,
        properties: o.properties.clone(),
    }
}

pub(super) fn with_content(u: &mut ProductUpsert, p: &CrmProduct, shop_category: Option<&str>) {
    // KeyCRM's blanks stay `None`: the merchant's own text, images and category survive.
    u.name = clean(Some(&p.name));
    u.description = p.description.clone();
    u.category_id = shop_category.map(str::to_string);
    u.images = p.images.clone();
}

fn new_variant_link(o: &CrmOffer, shop_id: String) -> VariantLink {
    VariantLink {
        offer_id: o.id,
        shop_id,
        hash: variant_hash(o),
        price: Some(o.price),
        available: o.available,
        gone: false,
    }
}

/// Adds the variants an upsert created to the link (the shop assigned their ids).
pub fn apply_upsert_result(link: &mut ProductLink, p: &CrmProduct, result: &UpsertResult) {
    link.shop_id.clone_from(&result.id);
    for (offer_ref, shop_variant) in &result.variants {
        let Some(o) = p.offers.iter().find(|o| o.id.to_string() == *offer_ref) else {
            continue;
        };
        match link.variants.iter_mut().find(|v| v.offer_id == o.id) {
            Some(v) => v.shop_id.clone_from(shop_variant),
            None => link
                .variants
                .push(new_variant_link(o, shop_variant.clone())),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkedOutcome {
    /// Content or variant fields written.
    Updated,
    /// Only prices or availability written.
    PriceChanged,
    /// Brought back after a sweep (and maybe updated).
    Restored,
    Unchanged,
}

/// The writes for one linked product, and its link as it will be after them.
#[derive(Clone, Debug, PartialEq)]
pub struct LinkedPlan {
    pub upsert: Option<ProductUpsert>,
    pub state: Option<ProductStateChange>,
    pub prices: Vec<VariantPriceChange>,
    /// Apply [`apply_upsert_result`] to it once the upsert succeeded.
    pub link: ProductLink,
    pub outcome: LinkedOutcome,
}

impl LinkedPlan {
    pub fn writes(&self) -> bool {
        self.upsert.is_some() || self.state.is_some() || !self.prices.is_empty()
    }
}

/// Plans a linked product from the offers seen for it. Offers not in `p` are left alone (the
/// sweep handles vanished ones), so a product seen in two pieces is planned piece by piece.
///
/// `Update` writes changed content, new and changed variants, and prices; `DontUpdate`
/// writes only prices and availability of variants already linked.
pub fn plan_linked(
    p: &CrmProduct,
    link: &ProductLink,
    policy: ExistingProductPolicy,
    shop_category: Option<&str>,
) -> LinkedPlan {
    let update = policy == ExistingProductPolicy::Update;
    let mut next = link.clone();
    let mut variants: Vec<VariantUpsert> = Vec::new();
    // (offer id, change) so a price-only change can ride along with an upsert.
    let mut prices: Vec<(i64, VariantPriceChange)> = Vec::new();
    let hash = content_hash(p, shop_category);
    let content_changed = update && hash != link.hash;

    for o in &p.offers {
        let Some(v) = next.variants.iter_mut().find(|v| v.offer_id == o.id) else {
            if update {
                variants.push(variant_upsert(o, None));
            }
            continue;
        };
        // A variant the sweep made unavailable is back: available unless stock says otherwise.
        let available = o.available.or(v.gone.then_some(true));
        let price_changed = v.price != Some(o.price);
        let avail_changed = available.is_some() && v.available != available;
        let vh = variant_hash(o);
        if update && vh != v.hash {
            let mut u = variant_upsert(o, Some(v.shop_id.clone()));
            u.available = available;
            variants.push(u);
            v.hash = vh;
        } else if price_changed || avail_changed {
            prices.push((
                o.id,
                VariantPriceChange {
                    product_id: link.shop_id.clone(),
                    variant_id: v.shop_id.clone(),
                    price: price_changed.then_some(o.price),
                    available: if avail_changed { available } else { None },
                },
            ));
        } else if !v.gone {
            continue;
        }
        v.price = Some(o.price);
        if available.is_some() {
            v.available = available;
        }
        v.gone = false;
    }

    let mut upsert = None;
    if content_changed || !variants.is_empty() {
        let mut u = ProductUpsert {
            id: Some(link.shop_id.clone()),
            external_ref: p.id.to_string(),
            ..ProductUpsert::default()
        };
        if content_changed {
            with_content(&mut u, p, shop_category);
            next.hash = hash;
        }
        // One write per product: price-only changes ride along with the upsert.
        for (offer, c) in prices.drain(..) {
            variants.push(VariantUpsert {
                id: Some(c.variant_id),
                external_ref: offer.to_string(),
                price: c.price,
                available: c.available,
                ..VariantUpsert::default()
            });
        }
        u.variants = variants;
        upsert = Some(u);
    }
    let prices: Vec<VariantPriceChange> = prices.into_iter().map(|(_, c)| c).collect();

    let state = restore_change(link);
    next.swept = None;
    let outcome = if state.is_some() {
        LinkedOutcome::Restored
    } else if upsert.is_some() {
        LinkedOutcome::Updated
    } else if !prices.is_empty() {
        LinkedOutcome::PriceChanged
    } else {
        LinkedOutcome::Unchanged
    };
    LinkedPlan {
        upsert,
        state,
        prices,
        link: next,
        outcome,
    }
}

/// Undoes what the sweep did, once the product is back in KeyCRM.
pub fn restore_change(link: &ProductLink) -> Option<ProductStateChange> {
    match link.swept? {
        Swept::Hidden => Some(ProductStateChange {
            id: link.shop_id.clone(),
            visible: Some(true),
            available: None,
        }),
        Swept::Unavailable => Some(ProductStateChange {
            id: link.shop_id.clone(),
            visible: None,
            available: Some(true),
        }),
    }
}

/// The create write for a new product; `Err` names why it cannot be created.
pub fn plan_create(
    p: &CrmProduct,
    visible: bool,
    shop_category: Option<&str>,
) -> Result<ProductUpsert, String> {
    if p.name.trim().is_empty() {
        return Err("the KeyCRM product has no name".into());
    }
    if p.offers.is_empty() {
        return Err("the KeyCRM product has no active offers".into());
    }
    let mut u = ProductUpsert {
        external_ref: p.id.to_string(),
        visible: Some(visible),
        variants: p.offers.iter().map(|o| variant_upsert(o, None)).collect(),
        ..ProductUpsert::default()
    };
    with_content(&mut u, p, shop_category);
    Ok(u)
}

/// The link of a product just created (or adopted and fully written) by an upsert.
pub fn link_after_upsert(
    p: &CrmProduct,
    result: &UpsertResult,
    shop_category: Option<&str>,
) -> ProductLink {
    let mut link = ProductLink {
        keycrm_id: p.id,
        shop_id: result.id.clone(),
        hash: content_hash(p, shop_category),
        swept: None,
        variants: Vec::new(),
    };
    apply_upsert_result(&mut link, p, result);
    link
}

/// Counts by outcome for run reports, in the report's vocabulary.
pub fn outcome_label(o: LinkedOutcome) -> &'static str {
    match o {
        LinkedOutcome::Updated => "update",
        LinkedOutcome::PriceChanged => "price_changed",
        LinkedOutcome::Restored => "restored",
        LinkedOutcome::Unchanged => "unchanged",
    }
}
