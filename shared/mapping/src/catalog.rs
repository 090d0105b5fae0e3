//! Catalog planning: what a catalog sync writes to the shop, decided without I/O.
//!
//! The sync streams KeyCRM offers page by page and keeps, per product, only the compact
//! [`CrmProduct`]. Everything here is a pure function of that, the stored links and the
//! settings: the orchestration (paging, leases, writes) lives in `catalog-sync`.
//!
//! - Linked products (a [`ProductLink`] exists) are planned at once, by id: only what changed
//!   since the last write (content hash, per-variant hash, price, availability) is written.
//! - Unlinked products are decided only after the whole KeyCRM pass ([`resolve`]), because a
//!   key shared by two KeyCRM products, or a shop product claimed twice, can only be seen then.
//! - Missing products are swept only after a complete pass, within the vanish guard.

use crate::settings::{ExistingProductPolicy, MatchKey, MissingProductPolicy, NewProductPolicy};
use crate::shop::{
    CategoryStateChange, CategoryUpsert, ProductStateChange, ProductUpsert, ShopProduct,
    UpsertResult, VariantPriceChange, VariantUpsert,
};
use keycrm_model::models::{Category, Property};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// KeyCRM's page size: the unit every request estimate is counted in.
pub const PAGE: u64 = 50;

fn is_false(b: &bool) -> bool {
    !*b
}

fn clean(s: Option<&str>) -> Option<String> {
    s.map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

// ------------------------------------------------------------------ compact KeyCRM catalog

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

// ------------------------------------------------------------------ hashes

/// A hash that stays the same across builds and platforms (it is stored in the links).
fn stable_hash(parts: &[&str]) -> u64 {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    // 0 means "never written" in a link, so a real hash never is 0.
    u64::from_le_bytes(b).max(1)
}

/// Hash of the product-level fields as they would be written (category as the shop's id).
pub fn content_hash(p: &CrmProduct, shop_category: Option<&str>) -> u64 {
    let mut parts: Vec<&str> = vec![
        "v1",
        &p.name,
        p.description.as_deref().unwrap_or("\u{0}"),
        shop_category.unwrap_or("\u{0}"),
    ];
    parts.extend(p.images.iter().map(String::as_str));
    stable_hash(&parts)
}

/// Hash of a variant's descriptive fields (price and availability are compared apart).
pub fn variant_hash(o: &CrmOffer) -> u64 {
    let mut parts: Vec<&str> = vec![
        "v1",
        o.sku.as_deref().unwrap_or("\u{0}"),
        o.barcode.as_deref().unwrap_or("\u{0}"),
    ];
    for (k, v) in &o.properties {
        parts.push(k);
        parts.push(v);
    }
    stable_hash(&parts)
}

/// Hash of a category as written (name and the shop id of its parent).
pub fn category_hash(name: &str, parent_shop_id: Option<&str>) -> u64 {
    stable_hash(&["v1", name.trim(), parent_shop_id.unwrap_or("\u{0}")])
}

/// FNV-1a: a cheap in-process hash for match-key indexes (never stored).
fn key_hash(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

// ------------------------------------------------------------------ links

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
    /// [`content_hash`] of the last content write; 0 = the content was never written.
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
    /// [`variant_hash`] of the last write; 0 = never written.
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

// ------------------------------------------------------------------ writes

fn variant_upsert(o: &CrmOffer, shop_id: Option<String>) -> VariantUpsert {
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

fn with_content(u: &mut ProductUpsert, p: &CrmProduct, shop_category: Option<&str>) {
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

// ------------------------------------------------------------------ matching

/// Names compare ignoring case and runs of white space.
pub fn normalize_name(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

fn push_unique(out: &mut Vec<String>, v: Option<&str>) {
    if let Some(v) = clean(v) {
        if !out.contains(&v) {
            out.push(v);
        }
    }
}

/// The values a KeyCRM product is matched by (empty for `CreateOnly`, or when it has none).
pub fn crm_keys(key: MatchKey, p: &CrmProduct) -> Vec<String> {
    let mut out = Vec::new();
    match key {
        MatchKey::Id | MatchKey::ExternalId => out.push(p.id.to_string()),
        MatchKey::Sku => p
            .offers
            .iter()
            .for_each(|o| push_unique(&mut out, o.sku.as_deref())),
        MatchKey::Barcode => p
            .offers
            .iter()
            .for_each(|o| push_unique(&mut out, o.barcode.as_deref())),
        MatchKey::Name => {
            let n = normalize_name(&p.name);
            if !n.is_empty() {
                out.push(n);
            }
        }
        MatchKey::CreateOnly => {}
    }
    out
}

/// The values a shop product is found by.
pub fn shop_keys(key: MatchKey, s: &ShopProduct) -> Vec<String> {
    let mut out = Vec::new();
    match key {
        MatchKey::Id => push_unique(&mut out, Some(&s.id)),
        MatchKey::ExternalId => push_unique(&mut out, s.external_id.as_deref()),
        MatchKey::Sku => {
            push_unique(&mut out, s.sku.as_deref());
            s.variants
                .iter()
                .for_each(|v| push_unique(&mut out, v.sku.as_deref()));
        }
        MatchKey::Barcode => {
            push_unique(&mut out, s.barcode.as_deref());
            s.variants
                .iter()
                .for_each(|v| push_unique(&mut out, v.barcode.as_deref()));
        }
        MatchKey::Name => {
            let n = normalize_name(&s.name);
            if !n.is_empty() {
                out.push(n);
            }
        }
        MatchKey::CreateOnly => {}
    }
    out
}

pub fn key_label(key: MatchKey) -> &'static str {
    match key {
        MatchKey::Id => "id",
        MatchKey::Sku => "SKU",
        MatchKey::Name => "name",
        MatchKey::Barcode => "barcode",
        MatchKey::ExternalId => "external id",
        MatchKey::CreateOnly => "nothing",
    }
}

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

    pub fn len(&self) -> usize {
        self.products.len()
    }

    pub fn is_empty(&self) -> bool {
        self.products.is_empty()
    }

    pub fn add(&mut self, s: &ShopProduct) {
        let i = self.products.len() as u32;
        for k in shop_keys(self.key, s) {
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

// ------------------------------------------------------------------ prices

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

// ------------------------------------------------------------------ missing products

/// What the missing-product policy does to a linked product that vanished from KeyCRM.
pub fn missing_change(
    policy: MissingProductPolicy,
    link: &ProductLink,
) -> Option<(ProductStateChange, Swept)> {
    if link.swept.is_some() {
        return None;
    }
    match policy {
        MissingProductPolicy::Nothing => None,
        MissingProductPolicy::Hide => Some((
            ProductStateChange {
                id: link.shop_id.clone(),
                visible: Some(false),
                available: None,
            },
            Swept::Hidden,
        )),
        MissingProductPolicy::MakeUnavailable => Some((
            ProductStateChange {
                id: link.shop_id.clone(),
                visible: None,
                available: Some(false),
            },
            Swept::Unavailable,
        )),
    }
}

/// What the missing-products policy does to a linked category that vanished from KeyCRM:
/// `hide` hides it; `nothing` leaves it; `make_unavailable` leaves it visible too (a category
/// cannot be bought, and its vanished products are made unavailable one by one).
pub fn missing_category_change(
    policy: MissingProductPolicy,
    link: &CategoryLink,
) -> Option<CategoryStateChange> {
    match policy {
        MissingProductPolicy::Hide if !link.hidden => Some(CategoryStateChange {
            id: link.shop_id.clone(),
            visible: Some(false),
        }),
        _ => None,
    }
}

/// A category the policy hid that is back in KeyCRM is shown again.
pub fn restore_category_change(link: &CategoryLink) -> Option<CategoryStateChange> {
    link.hidden.then(|| CategoryStateChange {
        id: link.shop_id.clone(),
        visible: Some(true),
    })
}

/// Linked categories KeyCRM no longer has (not hidden already), in id order.
pub fn vanished_categories<'a>(
    links: impl IntoIterator<Item = &'a CategoryLink>,
    in_keycrm: &BTreeSet<i64>,
) -> Vec<&'a CategoryLink> {
    let mut out: Vec<&CategoryLink> = links
        .into_iter()
        .filter(|l| !l.hidden && !in_keycrm.contains(&l.keycrm_id))
        .collect();
    out.sort_by_key(|l| l.keycrm_id);
    out
}

#[derive(Clone, Debug, PartialEq)]
pub enum GuardVerdict {
    Allow,
    Refuse { message: String },
}

/// Refuses a sweep that would hide or disable more than `share` of the linked catalog.
pub fn vanish_guard(to_sweep: u64, linked: u64, share: f64) -> GuardVerdict {
    if to_sweep == 0 {
        return GuardVerdict::Allow;
    }
    let share = if share.is_finite() {
        share.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let allowed = (linked as f64 * share).floor() as u64;
    if to_sweep <= allowed {
        GuardVerdict::Allow
    } else {
        GuardVerdict::Refuse {
            message: format!(
                "{to_sweep} of {linked} linked products vanished from KeyCRM ({:.1}%), more than \
                 the vanish guard allows ({:.0}%, at most {allowed}); nothing was hidden or made \
                 unavailable. Check the KeyCRM catalog and the category filter, or raise the guard.",
                if linked == 0 { 100.0 } else { to_sweep as f64 * 100.0 / linked as f64 },
                share * 100.0
            ),
        }
    }
}

/// The same guard for offers that vanished from products still listed: an empty or shifted
/// page in the middle of the listing looks exactly like that, so more than `share` of the
/// linked variants going at once is refused rather than made unavailable.
pub fn offers_guard(missing: u64, linked: u64, share: f64) -> GuardVerdict {
    if missing == 0 {
        return GuardVerdict::Allow;
    }
    let share = if share.is_finite() {
        share.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let allowed = (linked as f64 * share).floor() as u64;
    if missing <= allowed {
        GuardVerdict::Allow
    } else {
        GuardVerdict::Refuse {
            message: format!(
                "{missing} of {linked} linked variants vanished from KeyCRM products that are \
                 still listed ({:.1}%), more than the vanish guard allows ({:.0}%, at most \
                 {allowed}); no variant was made unavailable. Check the KeyCRM catalog, or \
                 raise the guard.",
                if linked == 0 {
                    100.0
                } else {
                    missing as f64 * 100.0 / linked as f64
                },
                share * 100.0
            ),
        }
    }
}

/// What KeyCRM says of an offer a complete listing did not show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OfferCheck {
    /// Still active: the listing shifted under the pass; the variant is left as it is.
    Active,
    /// Deleted, archived, or moved to another product: the variant may be made unavailable.
    Gone(&'static str),
}

/// Decides a re-checked offer from what `GET /offers?filter[id]=…` answered for it:
/// `(its product, offer archived, product archived)`, or `None` when it was not returned.
pub fn recheck_offer(expected_product: i64, found: Option<(i64, bool, bool)>) -> OfferCheck {
    match found {
        None => OfferCheck::Gone("deleted in KeyCRM"),
        Some((_, true, _)) => OfferCheck::Gone("archived in KeyCRM"),
        Some((_, _, true)) => OfferCheck::Gone("its product is archived in KeyCRM"),
        Some((p, _, _)) if p != expected_product => {
            OfferCheck::Gone("moved to another KeyCRM product")
        }
        Some(_) => OfferCheck::Active,
    }
}

// ------------------------------------------------------------------ categories

/// Categories in writing order: each level's parents are all in earlier levels. Categories on a
/// parent cycle are returned apart (they cannot be ordered and are reported).
pub fn category_levels(cats: &[Category]) -> (Vec<Vec<Category>>, Vec<i64>) {
    let by_id: HashMap<i64, &Category> = cats.iter().map(|c| (c.id, c)).collect();
    let mut depth: HashMap<i64, Option<usize>> = HashMap::new();
    for c in cats {
        let mut path: Vec<i64> = Vec::new();
        let mut cur = c.id;
        let base = loop {
            if let Some(d) = depth.get(&cur) {
                break *d;
            }
            if path.contains(&cur) {
                // A cycle: every category on the path is unorderable.
                break None;
            }
            path.push(cur);
            match by_id.get(&cur).and_then(|x| x.parent_id) {
                Some(parent) if by_id.contains_key(&parent) && parent != cur => cur = parent,
                Some(parent) if parent == cur => break None,
                // A root, or a parent KeyCRM did not list: written as a root.
                _ => {
                    let last = path.pop().unwrap_or(cur);
                    depth.insert(last, Some(0));
                    break Some(0);
                }
            }
        };
        let mut d = base;
        while let Some(id) = path.pop() {
            d = d.map(|x| x + 1);
            depth.insert(id, d);
        }
    }
    let mut levels: Vec<Vec<Category>> = Vec::new();
    let mut broken = Vec::new();
    for c in cats {
        match depth.get(&c.id).copied().flatten() {
            Some(d) => {
                if levels.len() <= d {
                    levels.resize(d + 1, Vec::new());
                }
                levels[d].push(c.clone());
            }
            None => broken.push(c.id),
        }
    }
    broken.sort_unstable();
    broken.dedup();
    (levels, broken)
}

/// The categories `roots` and all their descendants.
pub fn descendants(cats: &[Category], roots: &[i64]) -> BTreeSet<i64> {
    let mut children: HashMap<i64, Vec<i64>> = HashMap::new();
    for c in cats {
        if let Some(p) = c.parent_id {
            children.entry(p).or_default().push(c.id);
        }
    }
    let mut out = BTreeSet::new();
    let mut stack: Vec<i64> = roots.to_vec();
    while let Some(id) = stack.pop() {
        if out.insert(id) {
            stack.extend(children.get(&id).into_iter().flatten().copied());
        }
    }
    out
}

/// `set` plus every ancestor of its members (so a filtered tree keeps its path to the root).
pub fn with_ancestors(cats: &[Category], set: &BTreeSet<i64>) -> BTreeSet<i64> {
    let parent: HashMap<i64, Option<i64>> = cats.iter().map(|c| (c.id, c.parent_id)).collect();
    let mut out = set.clone();
    for id in set {
        let mut cur = parent.get(id).copied().flatten();
        while let Some(p) = cur {
            if !out.insert(p) {
                break;
            }
            cur = parent.get(&p).copied().flatten();
        }
    }
    out
}

/// The write for one category, or `None` when the shop already has it as it is.
pub fn category_upsert(
    c: &Category,
    parent_shop_id: Option<&str>,
    link: Option<&CategoryLink>,
) -> Option<CategoryUpsert> {
    let name = c.name.trim();
    let hash = category_hash(name, parent_shop_id);
    if link.is_some_and(|l| l.hash == hash) {
        return None;
    }
    Some(CategoryUpsert {
        id: link.map(|l| l.shop_id.clone()),
        external_ref: c.id.to_string(),
        name: if name.is_empty() {
            format!("KeyCRM category {}", c.id)
        } else {
            name.to_string()
        },
        parent_id: parent_shop_id.map(str::to_string),
    })
}

// ------------------------------------------------------------------ read plan

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

/// Counts by outcome for run reports, in the report's vocabulary.
pub fn outcome_label(o: LinkedOutcome) -> &'static str {
    match o {
        LinkedOutcome::Updated => "update",
        LinkedOutcome::PriceChanged => "price_changed",
        LinkedOutcome::Restored => "restored",
        LinkedOutcome::Unchanged => "unchanged",
    }
}

/// Which KeyCRM category ids a product filter lets through (`None`: no filter).
pub fn category_scope(cats: &[Category], filter: &[i64]) -> Option<BTreeSet<i64>> {
    (!filter.is_empty()).then(|| descendants(cats, filter))
}

/// The shop category for a KeyCRM category, from the category links.
pub fn shop_category(
    links: &BTreeMap<i64, CategoryLink>,
    keycrm_category: Option<i64>,
) -> Option<&str> {
    keycrm_category
        .and_then(|c| links.get(&c))
        .map(|l| l.shop_id.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shop::ShopVariant;

    fn d(v: i64) -> Decimal {
        Decimal::from(v)
    }

    fn offer(id: i64, sku: &str, price: i64, qty: Option<i64>) -> CrmOffer {
        CrmOffer {
            id,
            sku: Some(sku.to_string()),
            barcode: Some(format!("482{id:010}")),
            price: d(price),
            available: qty.map(|q| q > 0),
            properties: vec![("Розмір".into(), "M".into())],
        }
    }

    fn product(id: i64, name: &str, offers: Vec<CrmOffer>) -> CrmProduct {
        CrmProduct {
            id,
            name: name.into(),
            description: Some("Льон".into()),
            category_id: Some(5),
            images: vec!["https://img/1.webp".into()],
            archived: false,
            offers,
        }
    }

    fn linked(p: &CrmProduct, shop_category: Option<&str>) -> ProductLink {
        ProductLink {
            keycrm_id: p.id,
            shop_id: format!("s{}", p.id),
            hash: content_hash(p, shop_category),
            swept: None,
            variants: p
                .offers
                .iter()
                .map(|o| VariantLink {
                    offer_id: o.id,
                    shop_id: format!("v{}", o.id),
                    hash: variant_hash(o),
                    price: Some(o.price),
                    available: o.available,
                    gone: false,
                })
                .collect(),
        }
    }

    fn shop_product(id: &str, name: &str, skus: &[&str]) -> ShopProduct {
        ShopProduct {
            id: id.into(),
            name: name.into(),
            sku: skus.first().map(|s| s.to_string()),
            barcode: None,
            external_id: None,
            visible: true,
            available: true,
            variants: skus
                .iter()
                .enumerate()
                .map(|(i, s)| ShopVariant {
                    id: format!("{id}-v{i}"),
                    sku: Some(s.to_string()),
                    barcode: Some(format!("bc-{s}")),
                    price: Some(d(1)),
                    available: true,
                })
                .collect(),
        }
    }

    // ---------------------------------------------------------------- compact model

    #[test]
    fn offers_group_by_product_and_keep_blanks_out() {
        // A live-shaped row: unused fields (purchased price, timestamps, aggregates) are
        // skipped while parsing; money may be a number or a string.
        let mk = |id: i64, pid: i64, sku: &str| -> ListedOffer {
            serde_json::from_value(serde_json::json!({
                "id": id, "product_id": pid, "sku": sku, "barcode": "  ",
                "price": 100, "purchased_price": "37.5", "quantity": 3, "in_reserve": "3",
                "weight": null, "is_default": false, "is_archived": false,
                "created_at": "2023-06-20T12:27:55.000000Z",
                "properties": [{"name": "Колір", "value": "білий"}, {"name": " ", "value": "x"}],
                "product": {
                    "id": pid, "name": format!("  Товар {pid} "), "description": "   ",
                    "thumbnail_url": "https://t/p.webp", "category_id": 0, "min_price": 100,
                    "properties_agg": {"Колір": ["білий"]}, "sources": [], "has_offers": true
                }
            }))
            .unwrap()
        };
        let groups = group_offers(vec![
            mk(2, 10, "A"),
            mk(1, 10, "B"),
            mk(3, 11, "C"),
            mk(4, 10, "D"),
        ]);
        assert_eq!(groups.len(), 2);
        let g = &groups[0];
        assert_eq!(g.id, 10);
        assert_eq!(g.name, "Товар 10");
        assert_eq!(
            g.description, None,
            "blank description is absent, not empty"
        );
        assert_eq!(g.category_id, None, "category 0 means none");
        assert_eq!(g.images, vec!["https://t/p.webp".to_string()]);
        assert_eq!(
            g.offers.iter().map(|o| o.id).collect::<Vec<_>>(),
            vec![1, 2, 4]
        );
        assert_eq!(g.offers[0].barcode, None);
        assert_eq!(
            g.offers[0].available,
            Some(false),
            "3 on hand, 3 reserved: nothing to sell"
        );
        assert_eq!(
            g.offers[0].properties,
            vec![("Колір".to_string(), "білий".to_string())]
        );
    }

    #[test]
    fn merge_unites_offers_of_a_product_seen_twice() {
        let mut a = product(1, "A", vec![offer(1, "a1", 10, Some(1))]);
        let mut later = product(
            1,
            "A2",
            vec![offer(3, "a3", 30, Some(1)), offer(1, "a1", 11, Some(1))],
        );
        later.description = None;
        a.merge(later);
        assert_eq!(a.name, "A2");
        assert_eq!(a.offers.len(), 2);
        assert_eq!(a.offers[0].price, d(11), "the later sighting wins");
    }

    #[test]
    fn hashes_are_stable_and_field_sensitive() {
        let p = product(1, "Сукня", vec![offer(1, "A-1", 100, Some(2))]);
        let h = content_hash(&p, Some("c1"));
        assert_eq!(h, content_hash(&p.clone(), Some("c1")));
        assert_ne!(h, content_hash(&p, Some("c2")));
        assert_ne!(h, content_hash(&p, None));
        let mut q = p.clone();
        q.offers[0].price = d(5);
        assert_eq!(h, content_hash(&q, Some("c1")), "prices are not content");
        q.name = "Сукня лляна".into();
        assert_ne!(h, content_hash(&q, Some("c1")));
        let mut o = p.offers[0].clone();
        let vh = variant_hash(&o);
        o.price = d(1);
        o.available = Some(false);
        assert_eq!(vh, variant_hash(&o), "price and stock are compared apart");
        o.sku = Some("A-2".into());
        assert_ne!(vh, variant_hash(&o));
        assert_ne!(category_hash("a", None), category_hash("a", Some("p")));
        assert_ne!(content_hash(&p, None), 0);
    }

    // ---------------------------------------------------------------- linked products

    #[test]
    fn unchanged_linked_product_writes_nothing() {
        let p = product(
            1,
            "A",
            vec![offer(1, "a1", 10, Some(1)), offer(2, "a2", 10, Some(0))],
        );
        let link = linked(&p, Some("c5"));
        for policy in [
            ExistingProductPolicy::Update,
            ExistingProductPolicy::DontUpdate,
        ] {
            let plan = plan_linked(&p, &link, policy, Some("c5"));
            assert!(!plan.writes(), "{policy:?}");
            assert_eq!(plan.outcome, LinkedOutcome::Unchanged);
            assert_eq!(plan.link, link);
        }
    }

    #[test]
    fn update_policy_writes_changed_content_without_blanks() {
        let p = product(1, "A", vec![offer(1, "a1", 10, Some(1))]);
        let link = linked(&p, None);
        let mut q = p.clone();
        q.name = "A new".into();
        q.description = None;
        q.images.clear();
        let plan = plan_linked(&q, &link, ExistingProductPolicy::Update, None);
        let u = plan.upsert.expect("content changed");
        assert_eq!(u.id.as_deref(), Some("s1"));
        assert_eq!(u.name.as_deref(), Some("A new"));
        assert_eq!(u.description, None, "KeyCRM has none: leave the shop's");
        assert!(u.images.is_empty());
        assert_eq!(u.category_id, None);
        assert!(
            u.visible.is_none(),
            "visibility of existing products is the merchant's"
        );
        assert!(u.variants.is_empty(), "variants unchanged");
        assert_eq!(plan.outcome, LinkedOutcome::Updated);
        assert_eq!(plan.link.hash, content_hash(&q, None));
    }

    #[test]
    fn dont_update_policy_writes_only_prices_and_availability() {
        let p = product(
            1,
            "A",
            vec![offer(1, "a1", 10, Some(1)), offer(2, "a2", 10, Some(1))],
        );
        let link = linked(&p, None);
        let mut q = p.clone();
        q.name = "Renamed".into();
        q.offers[0].price = d(12);
        q.offers[1].available = Some(false);
        q.offers[1].sku = Some("changed".into());
        q.offers.push(offer(3, "a3", 10, Some(1)));
        let plan = plan_linked(&q, &link, ExistingProductPolicy::DontUpdate, None);
        assert!(plan.upsert.is_none(), "no content, no new variants");
        assert_eq!(
            plan.prices,
            vec![
                VariantPriceChange {
                    product_id: "s1".into(),
                    variant_id: "v1".into(),
                    price: Some(d(12)),
                    available: None
                },
                VariantPriceChange {
                    product_id: "s1".into(),
                    variant_id: "v2".into(),
                    price: None,
                    available: Some(false)
                },
            ]
        );
        assert_eq!(plan.outcome, LinkedOutcome::PriceChanged);
        assert_eq!(plan.link.hash, link.hash);
        assert_eq!(plan.link.variants.len(), 2, "the new offer is not linked");
        assert_eq!(plan.link.variants[0].price, Some(d(12)));
    }

    #[test]
    fn update_policy_adds_new_variants_and_folds_prices_into_one_write() {
        let p = product(
            1,
            "A",
            vec![offer(1, "a1", 10, Some(1)), offer(2, "a2", 10, Some(1))],
        );
        let link = linked(&p, None);
        let mut q = p.clone();
        q.offers[0].price = d(15);
        q.offers.push(offer(3, "a3", 20, None));
        let plan = plan_linked(&q, &link, ExistingProductPolicy::Update, None);
        let u = plan.upsert.clone().expect("new variant");
        assert!(u.name.is_none(), "content unchanged");
        assert!(plan.prices.is_empty(), "the price rides along");
        assert_eq!(u.variants.len(), 2);
        let new = u.variants.iter().find(|v| v.id.is_none()).unwrap();
        assert_eq!(new.external_ref, "3");
        assert_eq!(new.sku.as_deref(), Some("a3"));
        assert_eq!(new.available, None, "no stock known: leave availability");
        let price = u
            .variants
            .iter()
            .find(|v| v.id.as_deref() == Some("v1"))
            .unwrap();
        assert_eq!(
            (
                price.external_ref.as_str(),
                price.price,
                price.sku.as_deref()
            ),
            ("1", Some(d(15)), None)
        );
        let mut next = plan.link.clone();
        apply_upsert_result(
            &mut next,
            &q,
            &UpsertResult {
                external_ref: "1".into(),
                id: "s1".into(),
                variants: vec![("1".into(), "v1".into()), ("3".into(), "v9".into())],
            },
        );
        assert_eq!(next.variants.len(), 3);
        assert_eq!(next.variants[2].shop_id, "v9");
        assert_eq!(next.variants[2].hash, variant_hash(&q.offers[2]));
        // Planning again from the new link: nothing left to write.
        assert!(!plan_linked(&q, &next, ExistingProductPolicy::Update, None).writes());
    }

    #[test]
    fn changed_variant_fields_are_rewritten_in_full() {
        let p = product(1, "A", vec![offer(1, "a1", 10, Some(1))]);
        let link = linked(&p, None);
        let mut q = p.clone();
        q.offers[0].barcode = Some("4829999999999".into());
        let u = plan_linked(&q, &link, ExistingProductPolicy::Update, None)
            .upsert
            .unwrap();
        assert_eq!(u.variants.len(), 1);
        assert_eq!(u.variants[0].id.as_deref(), Some("v1"));
        assert_eq!(u.variants[0].barcode.as_deref(), Some("4829999999999"));
        assert_eq!(u.variants[0].sku.as_deref(), Some("a1"));
    }

    #[test]
    fn a_product_seen_in_pieces_is_planned_piece_by_piece() {
        let p = product(
            1,
            "A",
            vec![offer(1, "a1", 10, Some(1)), offer(2, "a2", 10, Some(1))],
        );
        let link = linked(&p, None);
        let mut piece = p.clone();
        piece.offers.truncate(1);
        let plan = plan_linked(&piece, &link, ExistingProductPolicy::Update, None);
        assert!(!plan.writes(), "the absent offer is the sweep's business");
        assert_eq!(plan.link.variants.len(), 2);
    }

    #[test]
    fn swept_products_are_restored_when_they_come_back() {
        let p = product(1, "A", vec![offer(1, "a1", 10, Some(1))]);
        let mut link = linked(&p, None);
        link.swept = Some(Swept::Hidden);
        let plan = plan_linked(&p, &link, ExistingProductPolicy::DontUpdate, None);
        assert_eq!(
            plan.state,
            Some(ProductStateChange {
                id: "s1".into(),
                visible: Some(true),
                available: None
            })
        );
        assert_eq!(plan.outcome, LinkedOutcome::Restored);
        assert_eq!(plan.link.swept, None);
        link.swept = Some(Swept::Unavailable);
        let plan = plan_linked(&p, &link, ExistingProductPolicy::Update, None);
        assert_eq!(plan.state.unwrap().available, Some(true));
    }

    #[test]
    fn gone_variants_come_back_available() {
        let p = product(1, "A", vec![offer(1, "a1", 10, None)]);
        let mut link = linked(&p, None);
        link.variants[0].gone = true;
        link.variants[0].available = Some(false);
        let plan = plan_linked(&p, &link, ExistingProductPolicy::Update, None);
        assert_eq!(
            plan.prices,
            vec![VariantPriceChange {
                product_id: "s1".into(),
                variant_id: "v1".into(),
                price: None,
                available: Some(true)
            }]
        );
        assert!(!plan.link.variants[0].gone);
    }

    // ---------------------------------------------------------------- creates

    #[test]
    fn create_carries_everything_and_the_visibility_policy() {
        let p = product(7, "Сукня", vec![offer(1, "a1", 10, Some(1))]);
        let u = plan_create(&p, false, Some("c5")).unwrap();
        assert_eq!(u.id, None);
        assert_eq!(u.external_ref, "7");
        assert_eq!(u.visible, Some(false));
        assert_eq!(u.category_id.as_deref(), Some("c5"));
        assert_eq!(u.variants[0].external_ref, "1");
        assert_eq!(plan_create(&p, true, None).unwrap().visible, Some(true));
        let mut nameless = p.clone();
        nameless.name = " ".into();
        assert!(plan_create(&nameless, true, None)
            .unwrap_err()
            .contains("no name"));
        let mut empty = p.clone();
        empty.offers.clear();
        assert!(plan_create(&empty, true, None).is_err());
        let link = link_after_upsert(
            &p,
            &UpsertResult {
                external_ref: "7".into(),
                id: "p1".into(),
                variants: vec![("1".into(), "p1-v1".into())],
            },
            Some("c5"),
        );
        assert_eq!(link.shop_id, "p1");
        assert_eq!(link.hash, content_hash(&p, Some("c5")));
        assert!(!plan_linked(&p, &link, ExistingProductPolicy::Update, Some("c5")).writes());
    }

    // ---------------------------------------------------------------- matching keys

    #[test]
    fn keys_for_every_match_key() {
        let mut p = product(
            42,
            "  Сукня   ЛЛЯНА ",
            vec![
                offer(1, "A-1", 1, None),
                offer(2, "A-1", 1, None),
                offer(3, " ", 1, None),
            ],
        );
        p.offers[2].sku = None;
        assert_eq!(crm_keys(MatchKey::Id, &p), vec!["42"]);
        assert_eq!(crm_keys(MatchKey::ExternalId, &p), vec!["42"]);
        assert_eq!(
            crm_keys(MatchKey::Sku, &p),
            vec!["A-1"],
            "deduplicated, blanks skipped"
        );
        assert_eq!(crm_keys(MatchKey::Barcode, &p).len(), 3);
        assert_eq!(crm_keys(MatchKey::Name, &p), vec!["сукня лляна"]);
        assert!(crm_keys(MatchKey::CreateOnly, &p).is_empty());

        let mut s = shop_product("p9", "Сукня лляна", &["A-1", "A-2"]);
        s.external_id = Some(" 42 ".into());
        s.barcode = Some("b0".into());
        assert_eq!(shop_keys(MatchKey::Id, &s), vec!["p9"]);
        assert_eq!(shop_keys(MatchKey::ExternalId, &s), vec!["42"]);
        assert_eq!(shop_keys(MatchKey::Sku, &s), vec!["A-1", "A-2"]);
        assert_eq!(
            shop_keys(MatchKey::Barcode, &s),
            vec!["b0", "bc-A-1", "bc-A-2"]
        );
        assert_eq!(shop_keys(MatchKey::Name, &s), vec!["сукня лляна"]);
        assert!(shop_keys(MatchKey::CreateOnly, &s).is_empty());
    }

    struct World {
        index: ShopIndex,
        counts: CrmKeyCounts,
        claims: HashMap<u32, u32>,
    }

    fn world(key: MatchKey, shop: &[ShopProduct], unlinked: &[&CrmProduct]) -> World {
        let mut index = ShopIndex::new(key);
        shop.iter().for_each(|s| index.add(s));
        let mut counts = CrmKeyCounts::default();
        let mut claims = HashMap::new();
        for p in unlinked {
            counts.add(p.id, &crm_keys(key, p));
            if let Some(c) = claim(key, &index, p, false) {
                *claims.entry(c).or_insert(0) += 1;
            }
        }
        World {
            index,
            counts,
            claims,
        }
    }

    fn decide(
        w: &World,
        key: MatchKey,
        new: NewProductPolicy,
        existing: ExistingProductPolicy,
        p: &CrmProduct,
        linked: &[(&str, i64)],
    ) -> Resolution {
        let creating = BTreeSet::new();
        let cx = ResolveContext {
            key,
            new_products: new,
            existing_products: existing,
            index: &w.index,
            crm_keys: &w.counts,
            claims: &w.claims,
            creating: &creating,
        };
        let linked: Vec<(String, i64)> = linked.iter().map(|(s, k)| (s.to_string(), *k)).collect();
        resolve(p, &cx, &|s| {
            linked.iter().find(|(x, _)| x == s).map(|(_, k)| *k)
        })
    }

    #[test]
    fn each_match_key_finds_its_shop_product() {
        let p = product(42, "Сукня лляна", vec![offer(1, "A-1", 1, None)]);
        let mut by_id = shop_product("42", "x", &["zz"]);
        by_id.variants.clear();
        let mut by_ext = shop_product("p2", "x", &["yy"]);
        by_ext.external_id = Some("42".into());
        let by_sku = shop_product("p3", "x", &["A-1"]);
        let mut by_barcode = shop_product("p4", "x", &["q"]);
        by_barcode.variants[0].barcode = p.offers[0].barcode.clone();
        let by_name = shop_product("p5", "СУКНЯ  лляна", &["w"]);
        let cases = [
            (MatchKey::Id, by_id),
            (MatchKey::Sku, by_sku),
            (MatchKey::Barcode, by_barcode),
            (MatchKey::Name, by_name),
        ];
        for (key, s) in cases {
            let w = world(key, std::slice::from_ref(&s), &[&p]);
            let r = decide(
                &w,
                key,
                NewProductPolicy::Hide,
                ExistingProductPolicy::Update,
                &p,
                &[],
            );
            assert_eq!(
                r,
                Resolution::Adopt {
                    index: 0,
                    update: true
                },
                "{key:?}"
            );
        }
        // (Create-only never links an existing product, not even by external id: see
        // `create_only_never_links_an_existing_product`.)
        for key in [MatchKey::ExternalId, MatchKey::Sku] {
            let w = world(key, std::slice::from_ref(&by_ext), &[&p]);
            let r = decide(
                &w,
                key,
                NewProductPolicy::Hide,
                ExistingProductPolicy::DontUpdate,
                &p,
                &[],
            );
            assert_eq!(
                r,
                Resolution::Adopt {
                    index: 0,
                    update: false
                },
                "external id adopts under {key:?}"
            );
        }
    }

    #[test]
    fn create_only_never_links_an_existing_product() {
        // The merchant's own product carries the KeyCRM id as its external id (say, from an
        // earlier import): «Не оновлювати (тільки створювати нові)» still creates a new one.
        let p = product(42, "A", vec![offer(1, "A-1", 1, None)]);
        let mut theirs = shop_product("p1", "A", &["A-1"]);
        theirs.external_id = Some("42".into());
        let w = world(MatchKey::CreateOnly, &[theirs], &[&p]);
        assert_eq!(claim(MatchKey::CreateOnly, &w.index, &p, false), None);
        let r = decide(
            &w,
            MatchKey::CreateOnly,
            NewProductPolicy::Hide,
            ExistingProductPolicy::Update,
            &p,
            &[],
        );
        assert_eq!(r, Resolution::Create { visible: false });
        // Except this run's own create whose link a crash lost: recovered, not duplicated.
        assert_eq!(claim(MatchKey::CreateOnly, &w.index, &p, true), Some(0));
        let creating: BTreeSet<i64> = [42].into_iter().collect();
        let cx = ResolveContext {
            key: MatchKey::CreateOnly,
            new_products: NewProductPolicy::Hide,
            existing_products: ExistingProductPolicy::Update,
            index: &w.index,
            crm_keys: &w.counts,
            claims: &w.claims,
            creating: &creating,
        };
        assert_eq!(
            resolve(&p, &cx, &|_| None),
            Resolution::Adopt {
                index: 0,
                update: true
            }
        );
        assert!(external_id_links(MatchKey::Sku, false));
        assert!(!external_id_links(MatchKey::CreateOnly, false));
    }

    #[test]
    fn external_ids_of_another_accounts_products_are_forgotten() {
        let p = product(42, "A", vec![offer(1, "A-1", 1, None)]);
        let mut old = shop_product("p1", "Old", &["OLD-1"]);
        old.external_id = Some("42".into());
        let mut w = world(MatchKey::Sku, &[old], &[&p]);
        assert_eq!(w.index.with_external_ids(), vec!["p1".to_string()]);
        w.index
            .forget_external_ids(&["p1".to_string()].into_iter().collect());
        assert!(w.index.by_external_id(42).is_empty());
        assert!(w.index.with_external_ids().is_empty());
        assert_eq!(claim(MatchKey::Sku, &w.index, &p, false), None);
    }

    #[test]
    fn vanished_categories_follow_the_missing_products_policy() {
        let link = |id: i64, hidden: bool| CategoryLink {
            keycrm_id: id,
            shop_id: format!("c{id}"),
            hash: 1,
            hidden,
        };
        let links = [link(1, false), link(2, false), link(3, true)];
        let in_keycrm: BTreeSet<i64> = [1].into_iter().collect();
        let gone: Vec<i64> = vanished_categories(&links, &in_keycrm)
            .iter()
            .map(|l| l.keycrm_id)
            .collect();
        assert_eq!(gone, vec![2], "hidden already: not counted again");
        assert_eq!(
            missing_category_change(MissingProductPolicy::Hide, &links[1]),
            Some(CategoryStateChange {
                id: "c2".into(),
                visible: Some(false)
            })
        );
        assert_eq!(
            missing_category_change(MissingProductPolicy::Nothing, &links[1]),
            None
        );
        assert_eq!(
            missing_category_change(MissingProductPolicy::MakeUnavailable, &links[1]),
            None
        );
        assert_eq!(
            missing_category_change(MissingProductPolicy::Hide, &links[2]),
            None
        );
        assert_eq!(
            restore_category_change(&links[2]),
            Some(CategoryStateChange {
                id: "c3".into(),
                visible: Some(true)
            })
        );
        assert_eq!(restore_category_change(&links[0]), None);
    }

    #[test]
    fn create_only_never_matches_by_key() {
        let p = product(42, "A", vec![offer(1, "A-1", 1, None)]);
        let w = world(
            MatchKey::CreateOnly,
            &[shop_product("p1", "A", &["A-1"])],
            &[&p],
        );
        let r = decide(
            &w,
            MatchKey::CreateOnly,
            NewProductPolicy::Publish,
            ExistingProductPolicy::Update,
            &p,
            &[],
        );
        assert_eq!(r, Resolution::Create { visible: true });
    }

    #[test]
    fn new_product_policies() {
        let p = product(42, "A", vec![offer(1, "new", 1, None)]);
        let w = world(MatchKey::Sku, &[shop_product("p1", "A", &["other"])], &[&p]);
        let go = |n| decide(&w, MatchKey::Sku, n, ExistingProductPolicy::Update, &p, &[]);
        assert_eq!(
            go(NewProductPolicy::Hide),
            Resolution::Create { visible: false }
        );
        assert_eq!(
            go(NewProductPolicy::Publish),
            Resolution::Create { visible: true }
        );
        assert!(matches!(
            go(NewProductPolicy::DontCreate),
            Resolution::Skip { .. }
        ));
    }

    #[test]
    fn ambiguity_is_reported_never_guessed() {
        let a = product(1, "A", vec![offer(1, "X", 1, None)]);
        let b = product(2, "B", vec![offer(2, "X", 1, None)]);
        // Two KeyCRM products with one SKU: both ambiguous, even with no shop match.
        let w = world(MatchKey::Sku, &[], &[&a, &b]);
        for (p, other) in [(&a, 2), (&b, 1)] {
            match decide(
                &w,
                MatchKey::Sku,
                NewProductPolicy::Publish,
                ExistingProductPolicy::Update,
                p,
                &[],
            ) {
                Resolution::Ambiguous { detail } => assert!(
                    detail.contains(&format!("KeyCRM product {other}")),
                    "{detail}"
                ),
                r => panic!("{r:?}"),
            }
        }
        // A key matching two shop products.
        let c = product(3, "C", vec![offer(3, "Y", 1, None)]);
        let w = world(
            MatchKey::Sku,
            &[
                shop_product("p1", "1", &["Y"]),
                shop_product("p2", "2", &["Y"]),
            ],
            &[&c],
        );
        match decide(
            &w,
            MatchKey::Sku,
            NewProductPolicy::Hide,
            ExistingProductPolicy::Update,
            &c,
            &[],
        ) {
            Resolution::Ambiguous { detail } => assert!(detail.contains("p1, p2"), "{detail}"),
            r => panic!("{r:?}"),
        }
        // Two offers matching two different shop products.
        let d2 = product(
            4,
            "D",
            vec![offer(4, "K1", 1, None), offer(5, "K2", 1, None)],
        );
        let w = world(
            MatchKey::Sku,
            &[
                shop_product("p1", "1", &["K1"]),
                shop_product("p2", "2", &["K2"]),
            ],
            &[&d2],
        );
        assert!(matches!(
            decide(
                &w,
                MatchKey::Sku,
                NewProductPolicy::Hide,
                ExistingProductPolicy::Update,
                &d2,
                &[]
            ),
            Resolution::Ambiguous { .. }
        ));
        // One shop product claimed by two KeyCRM products through different keys.
        let e = product(5, "E", vec![offer(6, "M1", 1, None)]);
        let f = product(6, "F", vec![offer(7, "M2", 1, None)]);
        let w = world(
            MatchKey::Sku,
            &[shop_product("p1", "1", &["M1", "M2"])],
            &[&e, &f],
        );
        for p in [&e, &f] {
            assert!(matches!(
                decide(
                    &w,
                    MatchKey::Sku,
                    NewProductPolicy::Hide,
                    ExistingProductPolicy::Update,
                    p,
                    &[]
                ),
                Resolution::Ambiguous { .. }
            ));
        }
        // A shop product already linked to another KeyCRM product.
        let g = product(7, "G", vec![offer(8, "L", 1, None)]);
        let w = world(MatchKey::Sku, &[shop_product("p1", "1", &["L"])], &[&g]);
        match decide(
            &w,
            MatchKey::Sku,
            NewProductPolicy::Hide,
            ExistingProductPolicy::Update,
            &g,
            &[("p1", 99)],
        ) {
            Resolution::Ambiguous { detail } => assert!(
                detail.contains("already linked to KeyCRM product 99"),
                "{detail}"
            ),
            r => panic!("{r:?}"),
        }
        // Two shop products carrying one KeyCRM id as external id.
        let mut s1 = shop_product("p1", "1", &["a"]);
        s1.external_id = Some("7".into());
        let mut s2 = shop_product("p2", "2", &["b"]);
        s2.external_id = Some("7".into());
        let w = world(MatchKey::Name, &[s1, s2], &[&g]);
        assert!(matches!(
            decide(
                &w,
                MatchKey::Name,
                NewProductPolicy::Hide,
                ExistingProductPolicy::Update,
                &g,
                &[]
            ),
            Resolution::Ambiguous { .. }
        ));
    }

    #[test]
    fn adopting_pairs_variants_by_sku_barcode_or_the_only_one() {
        let p = product(
            1,
            "A",
            vec![
                offer(1, "A-1", 10, Some(1)),
                offer(2, "A-2", 20, Some(0)),
                offer(3, "A-3", 30, None),
            ],
        );
        let mut s = shop_product("p1", "A", &["A-2", "zzz"]);
        s.variants[1].barcode = p.offers[0].barcode.clone();
        let mut index = ShopIndex::new(MatchKey::Sku);
        index.add(&s);
        let pairs = pair_variants(&p.offers, &index.product(0).variants);
        assert_eq!(
            pairs,
            vec![Some("p1-v1".to_string()), Some("p1-v0".to_string()), None]
        );

        let (u, prices, link) = plan_adopt(&p, index.product(0), false, None);
        assert!(u.is_none());
        assert_eq!(prices.len(), 2);
        assert_eq!(link.variants.len(), 2);
        assert_eq!(link.hash, 0, "content never written");
        let (u, prices, _) = plan_adopt(&p, index.product(0), true, Some("c1"));
        let u = u.unwrap();
        assert!(prices.is_empty());
        assert_eq!(u.id.as_deref(), Some("p1"));
        assert_eq!(u.category_id.as_deref(), Some("c1"));
        assert_eq!(
            u.variants.iter().map(|v| v.id.clone()).collect::<Vec<_>>(),
            vec![Some("p1-v1".into()), Some("p1-v0".into()), None]
        );

        let one = product(2, "B", vec![offer(9, "x", 1, None)]);
        let only = [IndexedVariant {
            id: "only".into(),
            sku: Some("y".into()),
            barcode: None,
        }];
        assert_eq!(
            pair_variants(&one.offers, &only),
            vec![Some("only".to_string())]
        );
    }

    // ---------------------------------------------------------------- prices

    #[test]
    fn price_changes_only_for_what_changed() {
        let v = VariantLink {
            offer_id: 1,
            shop_id: "v1".into(),
            hash: 1,
            price: Some(d(10)),
            available: Some(true),
            gone: false,
        };
        assert_eq!(
            price_change("p", &v, Some(Decimal::new(1000, 2)), Some(true)),
            None,
            "10.00 == 10"
        );
        let c = price_change("p", &v, Some(d(11)), Some(true)).unwrap();
        assert_eq!((c.price, c.available), (Some(d(11)), None));
        let c = price_change("p", &v, Some(d(10)), Some(false)).unwrap();
        assert_eq!((c.price, c.available), (None, Some(false)));
        assert_eq!(price_change("p", &v, None, None), None);
        let mut v2 = v.clone();
        apply_price_change(&mut v2, &c);
        assert_eq!((v2.price, v2.available), (Some(d(10)), Some(false)));
    }

    // ---------------------------------------------------------------- missing + guard

    #[test]
    fn missing_policies() {
        let link = ProductLink {
            keycrm_id: 1,
            shop_id: "p1".into(),
            ..ProductLink::default()
        };
        assert_eq!(missing_change(MissingProductPolicy::Nothing, &link), None);
        let (c, s) = missing_change(MissingProductPolicy::Hide, &link).unwrap();
        assert_eq!(
            (c.visible, c.available, s),
            (Some(false), None, Swept::Hidden)
        );
        let (c, s) = missing_change(MissingProductPolicy::MakeUnavailable, &link).unwrap();
        assert_eq!(
            (c.visible, c.available, s),
            (None, Some(false), Swept::Unavailable)
        );
        let swept = ProductLink {
            swept: Some(Swept::Hidden),
            ..link
        };
        assert_eq!(
            missing_change(MissingProductPolicy::Hide, &swept),
            None,
            "never twice"
        );
    }

    #[test]
    fn vanish_guard_limits_the_share() {
        assert_eq!(vanish_guard(0, 0, 0.3), GuardVerdict::Allow);
        assert_eq!(vanish_guard(30, 100, 0.3), GuardVerdict::Allow);
        match vanish_guard(31, 100, 0.3) {
            GuardVerdict::Refuse { message } => assert!(
                message.contains("31 of 100") && message.contains("30%"),
                "{message}"
            ),
            v => panic!("{v:?}"),
        }
        assert!(matches!(
            vanish_guard(1, 0, 0.3),
            GuardVerdict::Refuse { .. }
        ));
        assert_eq!(vanish_guard(100, 100, 1.0), GuardVerdict::Allow);
        assert!(matches!(
            vanish_guard(1, 100, 0.0),
            GuardVerdict::Refuse { .. }
        ));
        assert!(matches!(
            vanish_guard(1, 100, f64::NAN),
            GuardVerdict::Refuse { .. }
        ));
    }

    // ---------------------------------------------------------------- categories

    fn cat(id: i64, parent: Option<i64>) -> Category {
        Category {
            id,
            name: format!("C{id}"),
            parent_id: parent,
        }
    }

    #[test]
    fn categories_are_ordered_parents_first_and_cycles_reported() {
        let cats = vec![
            cat(5, Some(3)),
            cat(3, Some(1)),
            cat(1, None),
            cat(2, None),
            cat(9, Some(77)),
            cat(10, Some(11)),
            cat(11, Some(10)),
            cat(12, Some(12)),
            cat(13, Some(10)),
        ];
        let (levels, broken) = category_levels(&cats);
        let ids: Vec<Vec<i64>> = levels
            .iter()
            .map(|l| l.iter().map(|c| c.id).collect())
            .collect();
        assert_eq!(
            ids,
            vec![vec![1, 2, 9], vec![3], vec![5]],
            "a dangling parent makes a root"
        );
        assert_eq!(broken, vec![10, 11, 12, 13]);
    }

    #[test]
    fn category_filter_includes_descendants_and_ancestors_for_the_tree() {
        let cats = vec![
            cat(1, None),
            cat(2, Some(1)),
            cat(3, Some(2)),
            cat(4, Some(1)),
            cat(5, None),
            cat(6, Some(6)),
        ];
        assert_eq!(descendants(&cats, &[2]), BTreeSet::from([2, 3]));
        assert_eq!(descendants(&cats, &[1]), BTreeSet::from([1, 2, 3, 4]));
        assert_eq!(
            descendants(&cats, &[6]),
            BTreeSet::from([6]),
            "a self-parent does not loop"
        );
        assert_eq!(
            with_ancestors(&cats, &BTreeSet::from([3])),
            BTreeSet::from([1, 2, 3])
        );
        assert_eq!(category_scope(&cats, &[]), None);
        assert_eq!(
            category_scope(&cats, &[2, 5]),
            Some(BTreeSet::from([2, 3, 5]))
        );
    }

    #[test]
    fn category_writes_only_when_name_or_parent_changed() {
        let c = cat(3, Some(1));
        let u = category_upsert(&c, Some("s1"), None).unwrap();
        assert_eq!(
            (u.id, u.external_ref.as_str(), u.parent_id.as_deref()),
            (None, "3", Some("s1"))
        );
        let link = CategoryLink {
            keycrm_id: 3,
            shop_id: "s3".into(),
            hash: category_hash("C3", Some("s1")),
            hidden: false,
        };
        assert_eq!(category_upsert(&c, Some("s1"), Some(&link)), None);
        let moved = category_upsert(&c, Some("s2"), Some(&link)).unwrap();
        assert_eq!(
            (moved.id.as_deref(), moved.parent_id.as_deref()),
            (Some("s3"), Some("s2"))
        );
        let renamed = Category {
            name: "Нова".into(),
            ..c
        };
        assert_eq!(
            category_upsert(&renamed, Some("s1"), Some(&link))
                .unwrap()
                .name,
            "Нова"
        );
        let mut links = BTreeMap::new();
        links.insert(3, link);
        assert_eq!(shop_category(&links, Some(3)), Some("s3"));
        assert_eq!(shop_category(&links, Some(4)), None);
    }

    // ---------------------------------------------------------------- read plan

    #[test]
    fn read_plan_picks_the_cheaper_listing() {
        // 20 000 offers; a filter keeping 500 products (750 offers): products + offers by id.
        assert_eq!(read_plan_costs(20_000, 500, 1.5), (400, 10 + 5 * 3));
        assert_eq!(choose_read_plan(20_000, 500, 1.5), ReadPlan::ByProducts);
        // A filter keeping most of the catalog: reading every offer is cheaper.
        assert_eq!(choose_read_plan(20_000, 12_000, 1.5), ReadPlan::AllOffers);
        assert_eq!(choose_read_plan(100, 0, 1.5), ReadPlan::ByProducts);
        assert_eq!(read_plan_costs(10, 0, f64::NAN), (1, 0));
        assert_eq!(pages(0), 0);
        assert_eq!(pages(51), 2);
    }

    #[test]
    fn key_counts_name_the_other_product() {
        let mut c = CrmKeyCounts::default();
        c.add(1, &["A".into(), "B".into()]);
        c.add(2, &["B".into()]);
        c.add(3, &["B".into()]);
        assert_eq!(c.conflict(1, &["A".into()]), None);
        assert_eq!(
            c.conflict(1, &["A".into(), "B".into()]),
            Some(("B".into(), 2))
        );
        assert_eq!(c.conflict(2, &["B".into()]), Some(("B".into(), 1)));
        assert_eq!(normalize_name("  A\t b  "), "a b");
        assert_eq!(outcome_label(LinkedOutcome::Updated), "update");
    }

    #[test]
    fn drift_is_what_the_shop_holds_against_what_was_written() {
        let p = product(
            7,
            "Сукня",
            vec![
                offer(71, "S-71", 100, Some(3)),
                offer(72, "S-72", 120, Some(0)),
            ],
        );
        let link = linked(&p, None);
        let shop = |p71: Option<&str>, a71: bool, p72: Option<&str>, a72: bool| ShopProduct {
            id: "s7".into(),
            name: "Сукня".into(),
            variants: vec![
                ShopVariant {
                    id: "v71".into(),
                    price: p71.map(|x| x.parse().unwrap()),
                    available: a71,
                    ..ShopVariant::default()
                },
                ShopVariant {
                    id: "v72".into(),
                    price: p72.map(|x| x.parse().unwrap()),
                    available: a72,
                    ..ShopVariant::default()
                },
            ],
            ..ShopProduct::default()
        };
        // In step (100 and 100.0 are the same price): nothing to write.
        assert!(drift_changes(&link, &shop(Some("100"), true, Some("120.0"), false)).is_empty());
        // A merchant's edit of one price and another variant's availability: only those fields.
        let c = drift_changes(&link, &shop(Some("90"), true, Some("120"), true));
        assert_eq!(
            c,
            vec![
                VariantPriceChange {
                    product_id: "s7".into(),
                    variant_id: "v71".into(),
                    price: Some(d(100)),
                    available: None,
                },
                VariantPriceChange {
                    product_id: "s7".into(),
                    variant_id: "v72".into(),
                    price: None,
                    available: Some(false),
                },
            ]
        );
        // A price the shop lost altogether is written again.
        assert_eq!(
            drift_changes(&link, &shop(None, true, Some("120"), false)).len(),
            1
        );
        // Unknown availability (no stock in KeyCRM) is not enforced.
        let mut no_stock = link.clone();
        no_stock.variants[1].available = None;
        assert!(drift_changes(&no_stock, &shop(Some("100"), true, Some("120"), true)).is_empty());
        // A swept product, another shop product, a variant the shop removed: nothing.
        let mut swept = link.clone();
        swept.swept = Some(Swept::Hidden);
        assert!(drift_changes(&swept, &shop(Some("1"), false, Some("1"), true)).is_empty());
        let mut other = shop(Some("1"), false, Some("1"), true);
        other.id = "s8".into();
        assert!(drift_changes(&link, &other).is_empty());
        let mut fewer = shop(Some("100"), true, Some("1"), true);
        fewer.variants.pop();
        assert!(drift_changes(&link, &fewer).is_empty());
    }

    #[test]
    fn the_offers_guard_counts_variants_that_vanished_from_listed_products() {
        assert_eq!(offers_guard(0, 0, 0.3), GuardVerdict::Allow);
        assert_eq!(offers_guard(3, 10, 0.3), GuardVerdict::Allow);
        let GuardVerdict::Refuse { message } = offers_guard(4, 10, 0.3) else {
            panic!("4 of 10 is over 30%");
        };
        assert!(message.contains("4 of 10 linked variants"), "{message}");
        assert!(matches!(
            offers_guard(1, 10, f64::NAN),
            GuardVerdict::Refuse { .. }
        ));
        assert_eq!(offers_guard(10, 10, 1.0), GuardVerdict::Allow);
    }

    #[test]
    fn a_rechecked_offer_is_gone_only_when_keycrm_says_so() {
        assert_eq!(
            recheck_offer(5, Some((5, false, false))),
            OfferCheck::Active
        );
        assert_eq!(
            recheck_offer(5, None),
            OfferCheck::Gone("deleted in KeyCRM")
        );
        assert_eq!(
            recheck_offer(5, Some((5, true, false))),
            OfferCheck::Gone("archived in KeyCRM")
        );
        assert!(matches!(
            recheck_offer(5, Some((5, false, true))),
            OfferCheck::Gone(_)
        ));
        assert!(matches!(
            recheck_offer(5, Some((6, false, false))),
            OfferCheck::Gone(_)
        ));
    }
}
