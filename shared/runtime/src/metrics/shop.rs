//! The shop ports, metered: decorators around any `ShopCatalog` / `ShopOrders` adapter that
//! count what the shop accepted (catalog and stock writes) and every failed call by kind.
//! Functions wire them around the HTTP adapter once; callers stay unaware.

use super::catalog::{CATALOG_WRITES, SHOP_API_ERRORS, STOCK_WRITES};
use async_trait::async_trait;
use shop::{
    CategoryStateChange, CategoryUpsert, ProductStateChange, ProductUpsert, ShopCatalog,
    ShopCategory, ShopError, ShopOrders, ShopProduct, ShopReference, UpsertResult,
    VariantPriceChange,
};
use std::sync::Arc;

/// The `reason` of a failed shop call.
pub fn shop_error_reason(e: &ShopError) -> &'static str {
    match e {
        ShopError::NotFound(_) => "not_found",
        ShopError::Unauthorized => "unauthorized",
        ShopError::Rejected(_) => "rejected",
        ShopError::Unavailable(_) => "unavailable",
    }
}

fn metered<T>(r: Result<T, ShopError>) -> Result<T, ShopError> {
    if let Err(e) = &r {
        super::count(&SHOP_API_ERRORS, &[shop_error_reason(e)], 1);
    }
    r
}

fn writes(kind: &'static str, n: usize) {
    super::count(&CATALOG_WRITES, &[kind], n as u64);
}

/// A metered catalog port.
pub struct MeteredCatalog(pub Arc<dyn ShopCatalog>);

#[async_trait]
impl ShopCatalog for MeteredCatalog {
    async fn products_page(
        &self,
        shop_id: &str,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<(Vec<ShopProduct>, Option<String>), ShopError> {
        metered(self.0.products_page(shop_id, cursor, limit).await)
    }

    async fn upsert_products(
        &self,
        shop_id: &str,
        batch: &[ProductUpsert],
    ) -> Result<Vec<UpsertResult>, ShopError> {
        let r = metered(self.0.upsert_products(shop_id, batch).await)?;
        writes("products", r.len());
        Ok(r)
    }

    async fn set_product_states(
        &self,
        shop_id: &str,
        changes: &[ProductStateChange],
    ) -> Result<(), ShopError> {
        metered(self.0.set_product_states(shop_id, changes).await)?;
        writes("states", changes.len());
        Ok(())
    }

    async fn set_variant_prices(
        &self,
        shop_id: &str,
        changes: &[VariantPriceChange],
    ) -> Result<(), ShopError> {
        metered(self.0.set_variant_prices(shop_id, changes).await)?;
        super::count(&STOCK_WRITES, &[], changes.len() as u64);
        Ok(())
    }

    async fn categories(&self, shop_id: &str) -> Result<Vec<ShopCategory>, ShopError> {
        metered(self.0.categories(shop_id).await)
    }

    async fn set_category_states(
        &self,
        shop_id: &str,
        changes: &[CategoryStateChange],
    ) -> Result<(), ShopError> {
        metered(self.0.set_category_states(shop_id, changes).await)?;
        writes("category_states", changes.len());
        Ok(())
    }

    async fn upsert_categories(
        &self,
        shop_id: &str,
        batch: &[CategoryUpsert],
    ) -> Result<Vec<(String, String)>, ShopError> {
        let r = metered(self.0.upsert_categories(shop_id, batch).await)?;
        writes("categories", r.len());
        Ok(r)
    }
}

/// A metered orders port.
pub struct MeteredOrders(pub Arc<dyn ShopOrders>);

#[async_trait]
impl ShopOrders for MeteredOrders {
    async fn reference(&self, shop_id: &str) -> Result<ShopReference, ShopError> {
        metered(self.0.reference(shop_id).await)
    }

    async fn set_order_status(
        &self,
        shop_id: &str,
        order_id: &str,
        status: &str,
    ) -> Result<(), ShopError> {
        metered(self.0.set_order_status(shop_id, order_id, status).await)
    }
}
