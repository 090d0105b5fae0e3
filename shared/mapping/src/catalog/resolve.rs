//! Deciding an unlinked KeyCRM product once the whole KeyCRM pass is known: create it, adopt
//! a shop product, skip it, or report it as ambiguous.

use super::crm_product::CrmProduct;
use super::links::{ProductLink, VariantLink};
use super::matching::{pair_variants, CrmKeyCounts, Found, IndexedProduct, ShopIndex};
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

/// What resolving holds for one connection's run: the shop index (the one holder of the
/// match key), the KeyCRM-side key counts, and how many unlinked KeyCRM products claim each
/// shop product. Every unlinked product is [counted](Matcher::count) before any is resolved.
#[derive(Debug)]
pub struct Matcher {
    index: ShopIndex,
    counts: CrmKeyCounts,
    /// How many unlinked KeyCRM products match each shop product (index position).
    claims: HashMap<u32, u32>,
}

impl Matcher {
    pub fn new(index: ShopIndex) -> Self {
        Matcher {
            index,
            counts: CrmKeyCounts::default(),
            claims: HashMap::new(),
        }
    }

    pub fn index(&self) -> &ShopIndex {
        &self.index
    }

    pub fn key(&self) -> MatchKey {
        self.index.key()
    }

    /// Counts one unlinked KeyCRM product: its key values, and the shop product it claims.
    pub fn count(&mut self, p: &CrmProduct, creating: bool) {
        self.counts.add(p.id, &self.key().crm_keys(p));
        if let Some(c) = self.claim(p, creating) {
            *self.claims.entry(c).or_insert(0) += 1;
        }
    }

    /// The shop product an unlinked KeyCRM product would be linked to, if exactly one (see
    /// [`ShopIndex::find`] for the order it is looked for in).
    pub fn claim(&self, p: &CrmProduct, creating: bool) -> Option<u32> {
        self.index.find(p, creating).single()
    }

    fn claims_of(&self, i: u32) -> u32 {
        self.claims.get(&i).copied().unwrap_or(0)
    }
}

/// The context [`resolve`] decides in.
pub struct ResolveContext<'a> {
    pub matcher: &'a Matcher,
    pub new_products: NewProductPolicy,
    pub existing_products: ExistingProductPolicy,
    /// KeyCRM products whose create this run sent (see [`MatchKey::trusts_external_id`]).
    pub creating: &'a BTreeSet<i64>,
}

/// Decides an unlinked product once the whole KeyCRM pass is known. `linked_to` says which
/// KeyCRM product (if any) already owns a shop product.
pub fn resolve(
    p: &CrmProduct,
    cx: &ResolveContext<'_>,
    linked_to: &dyn Fn(&str) -> Option<i64>,
) -> Resolution {
    let m = cx.matcher;
    let update = cx.existing_products == ExistingProductPolicy::Update;
    let adopt = |i: u32, how: &str| -> Resolution {
        let shop = &m.index.product(i).id;
        if let Some(other) = linked_to(shop).filter(|o| *o != p.id) {
            return Resolution::Ambiguous {
                detail: format!(
                    "shop product {shop} ({how}) is already linked to KeyCRM product {other}"
                ),
            };
        }
        if m.claims_of(i) > 1 {
            return Resolution::Ambiguous {
                detail: format!(
                    "shop product {shop} ({how}) is matched by several KeyCRM products"
                ),
            };
        }
        Resolution::Adopt { index: i, update }
    };
    match m.index.find(p, cx.creating.contains(&p.id)) {
        Found::ByExternalId(shop) => {
            return match shop.as_slice() {
                [one] => adopt(*one, "external id"),
                _ => Resolution::Ambiguous {
                    detail: format!(
                        "{} shop products carry this KeyCRM id as their external id: {}",
                        shop.len(),
                        ids_of(&m.index, &shop)
                    ),
                },
            };
        }
        Found::ByKey { keys, shop } => {
            let label = m.key().label();
            // A value two KeyCRM products share cannot say which of them a shop product is.
            if let Some((k, other)) = m.counts.conflict(p.id, &keys) {
                return Resolution::Ambiguous {
                    detail: format!("{label} \"{k}\" is also on KeyCRM product {other}"),
                };
            }
            match shop.as_slice() {
                [] => {}
                [one] => return adopt(*one, &format!("by {label}")),
                _ => {
                    return Resolution::Ambiguous {
                        detail: format!(
                            "{label} matches {} shop products: {}",
                            shop.len(),
                            ids_of(&m.index, &shop)
                        ),
                    }
                }
            }
        }
        Found::NotLooked => {}
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
