//! The shop platform as the connector sees it: two small ports (catalog, orders), an in-memory
//! shop for unit tests and the local run, and (in `http`) the adapter for the platform's API.

#[cfg(feature = "demo-server")]
pub mod demo_server;
pub mod http;
mod memory;

pub use http::HttpShop;
pub use mapping::shop::*;
pub use memory::{MemoryShop, ShopStats};

use async_trait::async_trait;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShopError {
    #[error("not found in the shop: {0}")]
    NotFound(String),
    #[error("the shop API rejected the credentials")]
    Unauthorized,
    /// A 4xx that will not succeed if repeated.
    #[error("the shop refused the request: {0}")]
    Rejected(String),
    /// 5xx, timeouts, connection failures: worth retrying later.
    #[error("the shop API is unavailable: {0}")]
    Unavailable(String),
}

impl ShopError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, ShopError::Unavailable(_))
    }
}

/// The most products one upsert call may carry.
pub const MAX_UPSERT_BATCH: usize = 100;

/// The catalog side: read the product index, write products, categories, prices, visibility.
#[async_trait]
pub trait ShopCatalog: Send + Sync {
    /// One page of the product index (ids plus the fields matching and change detection need).
    async fn products_page(
        &self,
        shop_id: &str,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<(Vec<ShopProduct>, Option<String>), ShopError>;
    /// Creates (no `id`) or updates (with `id`) up to [`MAX_UPSERT_BATCH`] products. Fields
    /// left `None` are not touched.
    async fn upsert_products(
        &self,
        shop_id: &str,
        batch: &[ProductUpsert],
    ) -> Result<Vec<UpsertResult>, ShopError>;
    async fn set_product_states(
        &self,
        shop_id: &str,
        changes: &[ProductStateChange],
    ) -> Result<(), ShopError>;
    async fn set_variant_prices(
        &self,
        shop_id: &str,
        changes: &[VariantPriceChange],
    ) -> Result<(), ShopError>;
    async fn categories(&self, shop_id: &str) -> Result<Vec<ShopCategory>, ShopError>;
    /// Hides or shows existing categories (categories KeyCRM no longer has, under the
    /// missing-products policy, and their return).
    async fn set_category_states(
        &self,
        shop_id: &str,
        changes: &[CategoryStateChange],
    ) -> Result<(), ShopError>;
    /// Returns `(external_ref, shop category id)` for each upserted category.
    async fn upsert_categories(
        &self,
        shop_id: &str,
        batch: &[CategoryUpsert],
    ) -> Result<Vec<(String, String)>, ShopError>;
}

/// The order side: dictionaries for the settings page, and order status updates.
#[async_trait]
pub trait ShopOrders: Send + Sync {
    async fn reference(&self, shop_id: &str) -> Result<ShopReference, ShopError>;
    /// Sets an order's status. Setting the status it already has is a no-op success.
    async fn set_order_status(
        &self,
        shop_id: &str,
        order_id: &str,
        status: &str,
    ) -> Result<(), ShopError>;
}
