//! Deciding an unlinked KeyCRM product once the whole KeyCRM pass is known: create it, adopt
//! a shop product, skip it, or report it as ambiguous.

use super::crm_product::CrmProduct;
use super::links::{ProductLink, VariantLink};
use super::matching::{
    crm_keys, key_label, pair_variants, CrmKeyCounts, IndexedProduct, ShopIndex,
};
use super::plan::{variant_upsert, with_content};
use crate::settings::{ExistingProductPolicy, MatchKey, NewProductPolicy};
use crate::shop::{ProductUpsert, VariantPriceChange};
use std::collections::{BTreeSet, HashMap};

/// What to do with a KeyCRM product that has no link yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolution {
    Create {
        visible: bool,
    },
    /// Link to this shop product (index position); `update` writes KeyCRM's data into it.
    Adopt {
        index: u32,
        update: bool,
    },
    /// The new-product policy says not to create it.
    Skip {
        reason: String,
    },
    /// Reported, never guessed.
    Ambiguous {
        detail: String,
    },
}

/// The context [`resolve`] decides in.
pub struct ResolveContext<'a> {
    pub key: MatchKey,
    pub new_products: NewProductPolicy,
    pub existing_products: ExistingProductPolicy,
    pub index: &'a ShopIndex,
    pub crm_keys: &'a CrmKeyCounts,
    /// How many unlinked KeyCRM products match each shop product (index position).
    pub claims: &'a HashMap<u32, u32>,
    /// KeyCRM products whose create this run sent (see [`external_id_links`]).
    pub creating: &'a BTreeSet<i64>,
}

/// Whether a shop product carrying this KeyCRM product's id as its external id is its
/// counterpart. Under create-only («Не оновлювати (тільки створювати нові)») existing shop
/// products are never linked, whatever their external id says; the one exception is this
/// connector's own create of the product whose link was lost in a crash (`creating`: the
/// create was sent in the run in progress), which must be recovered, not created twice.
pub fn external_id_links(key: MatchKey, creating: bool) -> bool {
    key != MatchKey::CreateOnly || creating
}

/// The shop product an unlinked KeyCRM product would be linked to, if exactly one: by the
/// KeyCRM id in the shop's external id first (also how an interrupted create is recovered),
/// then by the match key. Counted for every unlinked product before any is resolved.
pub fn claim(key: MatchKey, index: &ShopIndex, p: &CrmProduct, creating: bool) -> Option<u32> {
    if external_id_links(key, creating) {
        let by_ext = index.by_external_id(p.id);
        if !by_ext.is_empty() {
            return (by_ext.len() == 1).then(|| by_ext[0]);
        }
    }
    if key == MatchKey::CreateOnly {
        return None;
    }
    let c = index.candidates(&crm_keys(key, p));
    (c.len() == 1).then(|| c[0])
}

/// Decides an unlinked product once the whole KeyCRM pass is known. `linked_to` says which
/// KeyCRM product (if any) already owns a shop product.
pub fn resolve(
    p: &CrmProduct,
    cx: &ResolveContext<'_>,
    linked_to: &dyn Fn(&str) -> Option<i64>,
) -> Resolution {
    let update = cx.existing_products == ExistingProductPolicy::Update;
    let adopt = |i: u32, how: &str| -> Resolution {
        let shop = &cx.index.product(i).id;
        if let Some(other) = linked_to(shop).filter(|o| *o != p.id) {
            return Resolution::Ambiguous {
                detail: format!(
                    "shop product {shop} ({how}) is already linked to KeyCRM product {other}"
                ),
            };
        }
        if cx.claims.get(&i).copied().unwrap_or(0) > 1 {
            return Resolution::Ambiguous {
                detail: format!(
                    "shop product {shop} ({how}) is matched by several KeyCRM products"
                ),
            };
        }
        Resolution::Adopt { index: i, update }
    };
    let by_ext = if external_id_links(cx.key, cx.creating.contains(&p.id)) {
        cx.index.by_external_id(p.id)
    } else {
        Vec::new()
    };
    match by_ext.len() {
        0 => {}
        1 => return adopt(by_ext[0], "external id"),
        _ => {
            return Resolution::Ambiguous {
                detail: format!(
                    "{} shop products carry this KeyCRM id as their external id: {}",
                    by_ext.len(),
                    ids_of(cx.index, &by_ext)
                ),
            }
        }
    }
    if cx.key != MatchKey::CreateOnly {
        let keys = crm_keys(cx.key, p);
        let label = key_label(cx.key);
        if let Some((k, other)) = cx.crm_keys.conflict(p.id, &keys) {
            return Resolution::Ambiguous {
                detail: format!("{label} \"{k}\" is also on KeyCRM product {other}"),
            };
        }
        let c = cx.index.candidates(&keys);
        match c.len() {
            0 => {}
            1 => return adopt(c[0], &format!("by {label}")),
            n => {
                return Resolution::Ambiguous {
                    detail: format!(
                        "{label} matches {n} shop products: {}",
                        ids_of(cx.index, &c)
                    ),
                }
            }
        }
    }
    match cx.new_products {
        NewProductPolicy::Hide => Resolution::Create { visible: false },
        NewProductPolicy::Publish => Resolution::Create { visible: true },
        NewProductPolicy::DontCreate => Resolution::Skip {
            reason: "new products are not created (settings)".into(),
        },
    }
}

fn ids_of(index: &ShopIndex, list: &[u32]) -> String {
    let mut ids: Vec<&str> = list
        .iter()
        .take(5)
        .map(|i| index.product(*i).id.as_str())
        .collect();
    if list.len() > 5 {
        ids.push("…");
    }
    ids.join(", ")
}

/// The writes for linking to an existing shop product. With `update`, KeyCRM's content and
/// every variant are written (unpaired offers become new variants); without, only prices and
/// availability of the paired variants.
pub fn plan_adopt(
    p: &CrmProduct,
    shop: &IndexedProduct,
    update: bool,
    shop_category: Option<&str>,
) -> (Option<ProductUpsert>, Vec<VariantPriceChange>, ProductLink) {
    let pairs = pair_variants(&p.offers, &shop.variants);
    let mut link = ProductLink {
        keycrm_id: p.id,
        shop_id: shop.id.clone(),
        hash: 0,
        swept: None,
        variants: Vec::new(),
    };
    if update {
        let mut u = ProductUpsert {
            id: Some(shop.id.clone()),
            external_ref: p.id.to_string(),
            ..ProductUpsert::default()
        };
        with_content(&mut u, p, shop_category);
        u.variants = p
            .offers
            .iter()
            .zip(&pairs)
            .map(|(o, id)| variant_upsert(o, id.clone()))
            .collect();
        // The hash is set once the write succeeded (see `link_after_upsert`).
        return (Some(u), Vec::new(), link);
    }
    let mut prices = Vec::new();
    for (o, id) in p.offers.iter().zip(pairs) {
        let Some(id) = id else { continue };
        prices.push(VariantPriceChange {
            product_id: shop.id.clone(),
            variant_id: id.clone(),
            price: Some(o.price),
            available: o.available,
        });
        link.variants.push(VariantLink {
            offer_id: o.id,
            shop_id: id,
            hash: 0,
            price: Some(o.price),
            available: o.available,
            gone: false,
        });
    }
    (None, prices, link)
}
