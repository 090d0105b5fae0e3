//! The shop index unlinked KeyCRM products are looked up in (and the one order the lookup
//! follows), the KeyCRM-side key counts that reveal a key shared by two products, and variant
//! pairing.

use super::clean;
use super::crm_product::{CrmOffer, CrmProduct};
use super::hashes::key_hash;
use crate::settings::MatchKey;
use crate::shop::ShopProduct;
use std::collections::{HashMap, HashSet};

/// A shop variant as the index keeps it, for pairing with KeyCRM offers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexedVariant {
    pub id: String,
    pub sku: Option<String>,
    pub barcode: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexedProduct {
    pub id: String,
    pub variants: Vec<IndexedVariant>,
}

/// The shop's products by match key: only ids, key hashes and variant identities.
#[derive(Debug)]
pub struct ShopIndex {
    key: MatchKey,
    products: Vec<IndexedProduct>,
    by_key: HashMap<u64, Vec<u32>>,
    by_external: HashMap<u64, Vec<u32>>,
}

impl ShopIndex {
    pub fn new(key: MatchKey) -> Self {
        ShopIndex {
            key,
            products: Vec::new(),
            by_key: HashMap::new(),
            by_external: HashMap::new(),
        }
    }

    /// The key this index was built by: the one holder of the connection's match key while
    /// unlinked products are resolved.
    pub fn key(&self) -> MatchKey {
        self.key
    }

    pub fn len(&self) -> usize {
        self.products.len()
    }

    pub fn is_empty(&self) -> bool {
        self.products.is_empty()
    }

    pub fn add(&mut self, s: &ShopProduct) {
        let i = self.products.len() as u32;
        for k in self.key.shop_keys(s) {
            let list = self.by_key.entry(key_hash(&k)).or_default();
            if !list.contains(&i) {
                list.push(i);
            }
        }
        if let Some(x) = clean(s.external_id.as_deref()) {
            self.by_external.entry(key_hash(&x)).or_default().push(i);
        }
        let mut variants: Vec<IndexedVariant> = s
            .variants
            .iter()
            .map(|v| IndexedVariant {
                id: v.id.clone(),
                sku: clean(v.sku.as_deref()),
                barcode: clean(v.barcode.as_deref()),
            })
            .collect();
        variants.shrink_to_fit();
        self.products.push(IndexedProduct {
            id: s.id.clone(),
            variants,
        });
    }

    pub fn product(&self, i: u32) -> &IndexedProduct {
        &self.products[i as usize]
    }

    /// Shop products matching any of the keys, without duplicates, in index order.
    pub fn candidates(&self, keys: &[String]) -> Vec<u32> {
        let mut out: Vec<u32> = keys
            .iter()
            .filter_map(|k| self.by_key.get(&key_hash(k)))
            .flatten()
            .copied()
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Stops trusting the external ids of these shop products: they were linked to another
    /// KeyCRM account before the connection switched accounts, so their external ids are
    /// that account's product ids and mean nothing in this one.
    pub fn forget_external_ids(&mut self, shop_ids: &HashSet<String>) {
        if shop_ids.is_empty() {
            return;
        }
        let products = &self.products;
        for list in self.by_external.values_mut() {
            list.retain(|i| !shop_ids.contains(&products[*i as usize].id));
        }
        self.by_external.retain(|_, l| !l.is_empty());
    }

    /// Shop ids of the products that carry an external id (those worth checking with
    /// [`ShopIndex::forget_external_ids`]).
    pub fn with_external_ids(&self) -> Vec<String> {
        let mut out: Vec<u32> = self.by_external.values().flatten().copied().collect();
        out.sort_unstable();
        out.dedup();
        out.into_iter()
            .map(|i| self.products[i as usize].id.clone())
            .collect()
    }

    /// Shop products whose external id is this KeyCRM product id.
    pub fn by_external_id(&self, keycrm_id: i64) -> Vec<u32> {
        self.by_external
            .get(&key_hash(&keycrm_id.to_string()))
            .cloned()
            .unwrap_or_default()
    }
}

/// Where an unlinked KeyCRM product's shop counterpart was looked for, and what was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Found {
    /// Shop products whose external id is this KeyCRM product's id (never empty). When any
    /// carries it, the match key is not consulted.
    ByExternalId(Vec<u32>),
    /// Shop products sharing one of the product's match-key values (`keys`); maybe none.
    ByKey { keys: Vec<String>, shop: Vec<u32> },
    /// Nothing was looked for: create-only, with no create of ours to recover.
    NotLooked,
}

impl Found {
    /// The shop product, when exactly one was found.
    pub fn single(&self) -> Option<u32> {
        match self {
            Found::ByExternalId(shop) | Found::ByKey { shop, .. } => match shop.as_slice() {
                [one] => Some(*one),
                _ => None,
            },
            Found::NotLooked => None,
        }
    }
}

impl ShopIndex {
    /// Looks an unlinked KeyCRM product up, in the one order there is: by its KeyCRM id in
    /// the shop's external id first (also how an interrupted create is recovered; `creating`
    /// says this run sent its create), then by the match key's values.
    pub fn find(&self, p: &CrmProduct, creating: bool) -> Found {
        if self.key.trusts_external_id(creating) {
            let by_ext = self.by_external_id(p.id);
            if !by_ext.is_empty() {
                return Found::ByExternalId(by_ext);
            }
        }
        if !self.key.matches_existing() {
            return Found::NotLooked;
        }
        let keys = self.key.crm_keys(p);
        let shop = self.candidates(&keys);
        Found::ByKey { keys, shop }
    }
}

/// How many unlinked KeyCRM products carry each key (counted once per product).
#[derive(Debug, Default)]
pub struct CrmKeyCounts {
    map: HashMap<u64, (u32, i64, i64)>,
}

impl CrmKeyCounts {
    pub fn add(&mut self, product_id: i64, keys: &[String]) {
        for k in keys {
            let e = self.map.entry(key_hash(k)).or_insert((0, product_id, 0));
            if e.1 == product_id && e.0 > 0 {
                continue;
            }
            if e.0 == 1 {
                e.2 = product_id;
            }
            e.0 += 1;
        }
    }

    /// The first of `keys` another product also carries, with that other product's id.
    pub fn conflict(&self, product_id: i64, keys: &[String]) -> Option<(String, i64)> {
        keys.iter().find_map(|k| {
            let (n, a, b) = *self.map.get(&key_hash(k))?;
            (n > 1).then(|| (k.clone(), if a == product_id { b } else { a }))
        })
    }
}

/// Pairs KeyCRM offers with a shop product's variants: by SKU, then barcode, then a single
/// offer with a single variant. Returns the shop variant id per offer (same order).
pub fn pair_variants(offers: &[CrmOffer], variants: &[IndexedVariant]) -> Vec<Option<String>> {
    let mut used = vec![false; variants.len()];
    let mut out: Vec<Option<String>> = vec![None; offers.len()];
    type Field = fn(&IndexedVariant) -> Option<&str>;
    type OfferField = fn(&CrmOffer) -> Option<&str>;
    let passes: [(OfferField, Field); 2] = [
        (|o| o.sku.as_deref(), |v| v.sku.as_deref()),
        (|o| o.barcode.as_deref(), |v| v.barcode.as_deref()),
    ];
    for (of, vf) in passes {
        for (i, o) in offers.iter().enumerate() {
            if out[i].is_some() {
                continue;
            }
            let Some(val) = of(o) else { continue };
            if let Some(j) =
                (0..variants.len()).find(|&j| !used[j] && vf(&variants[j]) == Some(val))
            {
                used[j] = true;
                out[i] = Some(variants[j].id.clone());
            }
        }
    }
    if offers.len() == 1 && variants.len() == 1 && out[0].is_none() && !used[0] {
        out[0] = Some(variants[0].id.clone());
    }
    out
}
