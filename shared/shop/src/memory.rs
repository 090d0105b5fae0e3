//! An in-memory shop: the contract's behaviour without a network, with write counters so
//! tests can assert how much a sync wrote, and an outage switch.

use crate::*;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ShopStats {
    pub products_created: u64,
    pub products_updated: u64,
    pub state_changes: u64,
    pub price_changes: u64,
    pub category_writes: u64,
    pub status_changes: u64,
}

#[derive(Default)]
struct ShopData {
    products: BTreeMap<String, ShopProduct>,
    /// Extra fields the index does not carry, kept to check "never blanked".
    details: BTreeMap<String, ProductUpsert>,
    categories: BTreeMap<String, ShopCategory>,
    hidden_categories: std::collections::BTreeSet<String>,
    category_refs: BTreeMap<String, String>,
    orders: BTreeMap<String, String>,
    status_history: Vec<(String, String)>,
    reference: ShopReference,
}

#[derive(Default)]
pub struct MemoryShop {
    shops: Mutex<BTreeMap<String, ShopData>>,
    stats: Mutex<BTreeMap<String, ShopStats>>,
    down: AtomicBool,
    seq: AtomicU64,
}

impl MemoryShop {
    pub fn new() -> Self {
        Self::default()
    }

    /// While down, every call fails with `Unavailable` (for outage tests and the demo).
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    pub fn set_reference(&self, shop_id: &str, reference: ShopReference) {
        self.with(shop_id, |d| d.reference = reference);
    }

    pub fn add_product(&self, shop_id: &str, p: ShopProduct) {
        self.with(shop_id, |d| {
            d.products.insert(p.id.clone(), p);
        });
    }

    pub fn add_order(&self, shop_id: &str, order_id: &str, status: &str) {
        self.with(shop_id, |d| {
            d.orders.insert(order_id.to_string(), status.to_string());
        });
    }

    pub fn order_status(&self, shop_id: &str, order_id: &str) -> Option<String> {
        self.with(shop_id, |d| d.orders.get(order_id).cloned())
    }

    /// Every status change applied, in order: `(order id, status)`.
    pub fn status_history(&self, shop_id: &str) -> Vec<(String, String)> {
        self.with(shop_id, |d| d.status_history.clone())
    }

    pub fn products(&self, shop_id: &str) -> Vec<ShopProduct> {
        self.with(shop_id, |d| d.products.values().cloned().collect())
    }

    pub fn product(&self, shop_id: &str, id: &str) -> Option<ShopProduct> {
        self.with(shop_id, |d| d.products.get(id).cloned())
    }

    /// The last write's full field set for a product (description, category, images…).
    pub fn product_details(&self, shop_id: &str, id: &str) -> Option<ProductUpsert> {
        self.with(shop_id, |d| d.details.get(id).cloned())
    }

    pub fn category_list(&self, shop_id: &str) -> Vec<ShopCategory> {
        self.with(shop_id, |d| d.categories.values().cloned().collect())
    }

    /// Whether a category is hidden from buyers.
    pub fn category_hidden(&self, shop_id: &str, id: &str) -> bool {
        self.with(shop_id, |d| d.hidden_categories.contains(id))
    }

    pub fn stats(&self, shop_id: &str) -> ShopStats {
        self.stats
            .lock()
            .map(|s| s.get(shop_id).cloned().unwrap_or_default())
            .unwrap_or_default()
    }

    pub fn reset_stats(&self, shop_id: &str) {
        if let Ok(mut s) = self.stats.lock() {
            s.remove(shop_id);
        }
    }

    fn with<T>(&self, shop_id: &str, f: impl FnOnce(&mut ShopData) -> T) -> T {
        let mut shops = self.shops.lock().unwrap_or_else(|p| p.into_inner());
        f(shops.entry(shop_id.to_string()).or_default())
    }

    fn bump(&self, shop_id: &str, f: impl FnOnce(&mut ShopStats)) {
        let mut s = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        f(s.entry(shop_id.to_string()).or_default());
    }

    fn up(&self) -> Result<(), ShopError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(ShopError::Unavailable("shop API is down".into()));
        }
        Ok(())
    }

    fn next_id(&self, prefix: &str) -> String {
        format!("{prefix}{}", self.seq.fetch_add(1, Ordering::Relaxed) + 1)
    }
}

fn merge_variant(existing: &mut ShopVariant, v: &VariantUpsert) {
    if v.sku.is_some() {
        existing.sku = v.sku.clone();
    }
    if v.barcode.is_some() {
        existing.barcode = v.barcode.clone();
    }
    if v.price.is_some() {
        existing.price = v.price;
    }
    if let Some(a) = v.available {
        existing.available = a;
    }
}

#[async_trait]
impl ShopCatalog for MemoryShop {
    async fn products_page(
        &self,
        shop_id: &str,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<(Vec<ShopProduct>, Option<String>), ShopError> {
        self.up()?;
        Ok(self.with(shop_id, |d| {
            let mut page: Vec<ShopProduct> = d
                .products
                .range::<String, _>((
                    cursor
                        .map(std::ops::Bound::Excluded)
                        .unwrap_or(std::ops::Bound::Unbounded),
                    std::ops::Bound::Unbounded,
                ))
                .take(limit.max(1) + 1)
                .map(|(_, p)| p.clone())
                .collect();
            let next = if page.len() > limit.max(1) {
                page.pop();
                page.last().map(|p| p.id.clone())
            } else {
                None
            };
            (page, next)
        }))
    }

    async fn upsert_products(
        &self,
        shop_id: &str,
        batch: &[ProductUpsert],
    ) -> Result<Vec<UpsertResult>, ShopError> {
        self.up()?;
        if batch.len() > MAX_UPSERT_BATCH {
            return Err(ShopError::Rejected(format!(
                "batch of {} is over the limit of {MAX_UPSERT_BATCH}",
                batch.len()
            )));
        }
        // A refused batch writes nothing (the platform contract): check before writing.
        let missing = self.with(shop_id, |d| {
            batch
                .iter()
                .filter_map(|u| u.id.as_ref())
                .find(|id| !d.products.contains_key(*id))
                .cloned()
        });
        if let Some(id) = missing {
            return Err(ShopError::NotFound(format!("product {id}")));
        }
        let mut results = Vec::new();
        let (mut created, mut updated) = (0, 0);
        for u in batch {
            let id = match &u.id {
                Some(id) => {
                    updated += 1;
                    id.clone()
                }
                None => {
                    created += 1;
                    self.next_id("p")
                }
            };
            let mut variant_ids = Vec::new();
            self.with(shop_id, |d| {
                // The platform keeps a create's reference as the product's external id, so an
                // integration can recognise what it created.
                let p = d.products.entry(id.clone()).or_insert_with(|| ShopProduct {
                    id: id.clone(),
                    external_id: Some(u.external_ref.clone()).filter(|r| !r.is_empty()),
                    visible: u.visible.unwrap_or(false),
                    available: true,
                    ..ShopProduct::default()
                });
                if let Some(n) = &u.name {
                    p.name = n.clone();
                }
                for v in &u.variants {
                    let vid = match v.id.clone() {
                        Some(vid) => vid,
                        None => format!("{id}-v{}", p.variants.len() + 1),
                    };
                    match p.variants.iter_mut().find(|x| x.id == vid) {
                        Some(existing) => merge_variant(existing, v),
                        None => {
                            let mut nv = ShopVariant {
                                id: vid.clone(),
                                ..ShopVariant::default()
                            };
                            merge_variant(&mut nv, v);
                            p.variants.push(nv);
                        }
                    }
                    variant_ids.push((v.external_ref.clone(), vid));
                }
                if p.sku.is_none() {
                    p.sku = p.variants.first().and_then(|v| v.sku.clone());
                }
                let details = d.details.entry(id.clone()).or_default();
                let prev = details.clone();
                *details = ProductUpsert {
                    id: Some(id.clone()),
                    external_ref: u.external_ref.clone(),
                    name: u.name.clone().or(prev.name),
                    description: u.description.clone().or(prev.description),
                    category_id: u.category_id.clone().or(prev.category_id),
                    images: if u.images.is_empty() {
                        prev.images
                    } else {
                        u.images.clone()
                    },
                    visible: u.visible.or(prev.visible),
                    variants: u.variants.clone(),
                };
            });
            results.push(UpsertResult {
                external_ref: u.external_ref.clone(),
                id,
                variants: variant_ids,
            });
        }
        self.bump(shop_id, |s| {
            s.products_created += created;
            s.products_updated += updated;
        });
        Ok(results)
    }

    async fn set_product_states(
        &self,
        shop_id: &str,
        changes: &[ProductStateChange],
    ) -> Result<(), ShopError> {
        self.up()?;
        self.with(shop_id, |d| {
            for c in changes {
                if let Some(p) = d.products.get_mut(&c.id) {
                    if let Some(v) = c.visible {
                        p.visible = v;
                    }
                    if let Some(a) = c.available {
                        p.available = a;
                        for v in &mut p.variants {
                            v.available = a;
                        }
                    }
                }
            }
        });
        self.bump(shop_id, |s| s.state_changes += changes.len() as u64);
        Ok(())
    }

    async fn set_variant_prices(
        &self,
        shop_id: &str,
        changes: &[VariantPriceChange],
    ) -> Result<(), ShopError> {
        self.up()?;
        self.with(shop_id, |d| {
            for c in changes {
                if let Some(v) = d
                    .products
                    .get_mut(&c.product_id)
                    .and_then(|p| p.variants.iter_mut().find(|v| v.id == c.variant_id))
                {
                    if c.price.is_some() {
                        v.price = c.price;
                    }
                    if let Some(a) = c.available {
                        v.available = a;
                    }
                }
            }
        });
        self.bump(shop_id, |s| s.price_changes += changes.len() as u64);
        Ok(())
    }

    async fn categories(&self, shop_id: &str) -> Result<Vec<ShopCategory>, ShopError> {
        self.up()?;
        Ok(self.category_list(shop_id))
    }

    async fn set_category_states(
        &self,
        shop_id: &str,
        changes: &[CategoryStateChange],
    ) -> Result<(), ShopError> {
        self.up()?;
        self.with(shop_id, |d| {
            for c in changes {
                if !d.categories.contains_key(&c.id) {
                    continue;
                }
                match c.visible {
                    Some(false) => {
                        d.hidden_categories.insert(c.id.clone());
                    }
                    Some(true) => {
                        d.hidden_categories.remove(&c.id);
                    }
                    None => {}
                }
            }
        });
        self.bump(shop_id, |s| s.category_writes += changes.len() as u64);
        Ok(())
    }

    async fn upsert_categories(
        &self,
        shop_id: &str,
        batch: &[CategoryUpsert],
    ) -> Result<Vec<(String, String)>, ShopError> {
        self.up()?;
        let mut out = Vec::new();
        for c in batch {
            let id = c.id.clone().unwrap_or_else(|| self.next_id("c"));
            self.with(shop_id, |d| {
                d.categories.insert(
                    id.clone(),
                    ShopCategory {
                        id: id.clone(),
                        name: c.name.clone(),
                        parent_id: c.parent_id.clone(),
                    },
                );
                d.category_refs.insert(c.external_ref.clone(), id.clone());
            });
            out.push((c.external_ref.clone(), id));
        }
        self.bump(shop_id, |s| s.category_writes += batch.len() as u64);
        Ok(out)
    }
}

#[async_trait]
impl ShopOrders for MemoryShop {
    async fn reference(&self, shop_id: &str) -> Result<ShopReference, ShopError> {
        self.up()?;
        Ok(self.with(shop_id, |d| d.reference.clone()))
    }

    async fn set_order_status(
        &self,
        shop_id: &str,
        order_id: &str,
        status: &str,
    ) -> Result<(), ShopError> {
        self.up()?;
        let known = self.with(shop_id, |d| {
            d.reference.order_statuses.is_empty()
                || d.reference.order_statuses.iter().any(|s| s.id == status)
        });
        if !known {
            return Err(ShopError::Rejected(format!(
                "unknown order status \"{status}\""
            )));
        }
        let changed = self.with(shop_id, |d| match d.orders.get_mut(order_id) {
            None => Err(ShopError::NotFound(format!("order {order_id}"))),
            Some(s) if s == status => Ok(false),
            Some(s) => {
                *s = status.to_string();
                d.status_history
                    .push((order_id.to_string(), status.to_string()));
                Ok(true)
            }
        })?;
        if changed {
            self.bump(shop_id, |s| s.status_changes += 1);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::Decimal;

    #[tokio::test]
    async fn upsert_creates_then_updates_without_blanking() {
        let shop = MemoryShop::new();
        let created = shop
            .upsert_products(
                "s",
                &[ProductUpsert {
                    external_ref: "kc-1".into(),
                    name: Some("Сукня".into()),
                    description: Some("Льон".into()),
                    visible: Some(false),
                    variants: vec![VariantUpsert {
                        external_ref: "o-1".into(),
                        sku: Some("A-1".into()),
                        price: Some(Decimal::from(100)),
                        available: Some(true),
                        ..VariantUpsert::default()
                    }],
                    ..ProductUpsert::default()
                }],
            )
            .await
            .unwrap();
        let id = created[0].id.clone();
        let vid = created[0].variants[0].1.clone();
        shop.upsert_products(
            "s",
            &[ProductUpsert {
                id: Some(id.clone()),
                external_ref: "kc-1".into(),
                name: Some("Сукня лляна".into()),
                variants: vec![VariantUpsert {
                    id: Some(vid),
                    external_ref: "o-1".into(),
                    price: Some(Decimal::from(120)),
                    ..VariantUpsert::default()
                }],
                ..ProductUpsert::default()
            }],
        )
        .await
        .unwrap();
        let p = shop.product("s", &id).unwrap();
        assert_eq!(p.name, "Сукня лляна");
        assert!(!p.visible);
        assert_eq!(p.variants.len(), 1);
        assert_eq!(p.variants[0].price, Some(Decimal::from(120)));
        assert_eq!(p.variants[0].sku.as_deref(), Some("A-1"));
        assert_eq!(
            shop.product_details("s", &id)
                .unwrap()
                .description
                .as_deref(),
            Some("Льон")
        );
        assert_eq!(
            shop.stats("s"),
            ShopStats {
                products_created: 1,
                products_updated: 1,
                ..ShopStats::default()
            }
        );
    }

    #[tokio::test]
    async fn order_status_changes_are_idempotent_and_outages_fail() {
        let shop = MemoryShop::new();
        shop.add_order("s", "o1", "new");
        shop.set_order_status("s", "o1", "paid").await.unwrap();
        shop.set_order_status("s", "o1", "paid").await.unwrap();
        assert_eq!(
            shop.status_history("s"),
            vec![("o1".to_string(), "paid".to_string())]
        );
        assert!(matches!(
            shop.set_order_status("s", "nope", "paid").await,
            Err(ShopError::NotFound(_))
        ));
        shop.set_down(true);
        assert!(shop
            .set_order_status("s", "o1", "new")
            .await
            .unwrap_err()
            .is_retryable());
    }
}
