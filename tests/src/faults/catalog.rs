//! [`Hooks`] around the shop's [`ShopCatalog`] port.

use super::{Hooks, Nth};
use async_trait::async_trait;
use shop::{
    CategoryStateChange, CategoryUpsert, ProductStateChange, ProductUpsert, ShopCatalog,
    ShopCategory, ShopError, ShopProduct, UpsertResult, VariantPriceChange,
};
use std::future::Future;
use std::sync::Arc;

/// The operations of [`ShopCatalog`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CatalogOp {
    ProductsPage,
    UpsertProducts,
    SetProductStates,
    SetVariantPrices,
    Categories,
    SetCategoryStates,
    UpsertCategories,
}

/// A [`ShopCatalog`] that passes every call to `inner`, with [`Hooks`] around them.
pub struct HookedCatalog {
    inner: Arc<dyn ShopCatalog>,
    hooks: Hooks<CatalogOp, ShopError>,
}

impl HookedCatalog {
    pub fn new(inner: Arc<dyn ShopCatalog>) -> Self {
        HookedCatalog {
            inner,
            hooks: Hooks::default(),
        }
    }

    /// Runs `f` before every call (see [`Hook`](super::Hook)).
    pub fn before<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(CatalogOp, u32) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), ShopError>> + Send + 'static,
    {
        self.hooks.before(f);
        self
    }

    /// Runs `f` after every call returned from `inner` (see [`Hook`](super::Hook)).
    pub fn after<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(CatalogOp, u32) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), ShopError>> + Send + 'static,
    {
        self.hooks.after(f);
        self
    }

    /// The `nth` calls of `op` fail with `error`.
    pub fn fail(mut self, op: CatalogOp, nth: Nth, error: ShopError) -> Self {
        self.hooks.fail(op, nth, error);
        self
    }

    pub fn calls(&self, op: CatalogOp) -> u32 {
        self.hooks.calls(op)
    }
}

#[async_trait]
impl ShopCatalog for HookedCatalog {
    async fn products_page(
        &self,
        shop_id: &str,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<(Vec<ShopProduct>, Option<String>), ShopError> {
        let call = self.inner.products_page(shop_id, cursor, limit);
        self.hooks.run(CatalogOp::ProductsPage, call).await
    }
    async fn upsert_products(
        &self,
        shop_id: &str,
        batch: &[ProductUpsert],
    ) -> Result<Vec<UpsertResult>, ShopError> {
        let call = self.inner.upsert_products(shop_id, batch);
        self.hooks.run(CatalogOp::UpsertProducts, call).await
    }
    async fn set_product_states(
        &self,
        shop_id: &str,
        changes: &[ProductStateChange],
    ) -> Result<(), ShopError> {
        let call = self.inner.set_product_states(shop_id, changes);
        self.hooks.run(CatalogOp::SetProductStates, call).await
    }
    async fn set_variant_prices(
        &self,
        shop_id: &str,
        changes: &[VariantPriceChange],
    ) -> Result<(), ShopError> {
        let call = self.inner.set_variant_prices(shop_id, changes);
        self.hooks.run(CatalogOp::SetVariantPrices, call).await
    }
    async fn categories(&self, shop_id: &str) -> Result<Vec<ShopCategory>, ShopError> {
        let call = self.inner.categories(shop_id);
        self.hooks.run(CatalogOp::Categories, call).await
    }
    async fn set_category_states(
        &self,
        shop_id: &str,
        changes: &[CategoryStateChange],
    ) -> Result<(), ShopError> {
        let call = self.inner.set_category_states(shop_id, changes);
        self.hooks.run(CatalogOp::SetCategoryStates, call).await
    }
    async fn upsert_categories(
        &self,
        shop_id: &str,
        batch: &[CategoryUpsert],
    ) -> Result<Vec<(String, String)>, ShopError> {
        let call = self.inner.upsert_categories(shop_id, batch);
        self.hooks.run(CatalogOp::UpsertCategories, call).await
    }
}
