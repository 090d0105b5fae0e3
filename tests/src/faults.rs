//! Fault injection around a port: a wrapper that passes every call through to the real adapter
//! and runs hooks before and after chosen calls — fail the Nth call (or every call) with a
//! given error, hold a call until the test releases it, hang after the write committed (a
//! Lambda killed at its timeout), or change the world mid-call (a merchant deleting the
//! connection). Tests write one closure instead of a hand-written copy of the whole trait.
//!
//! [`Hooks`] is the port-independent part (per-operation call counting, hook lists);
//! [`HookedCatalog`] applies it to the shop's [`ShopCatalog`] port.

use async_trait::async_trait;
use futures::future::BoxFuture;
use shop::{
    CategoryStateChange, CategoryUpsert, ProductStateChange, ProductUpsert, ShopCatalog,
    ShopCategory, ShopError, ShopProduct, UpsertResult, VariantPriceChange,
};
use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

/// Which calls of an operation a fault applies to. Calls are counted per operation from 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nth {
    Every,
    /// Only the call with this (0-based) index.
    Call(u32),
    /// This call and every later one.
    From(u32),
}

impl Nth {
    pub fn matches(self, n: u32) -> bool {
        match self {
            Nth::Every => true,
            Nth::Call(k) => n == k,
            Nth::From(k) => n >= k,
        }
    }
}

/// A hook: gets the operation and the index of this call of it; an `Err` becomes the call's
/// answer (before the call: the adapter is never reached; after: the write happened but the
/// caller sees the error, as when a process dies between the two).
pub type Hook<Op, E> = Arc<dyn Fn(Op, u32) -> BoxFuture<'static, Result<(), E>> + Send + Sync>;

/// The hooks of one wrapped port and its per-operation call counts.
pub struct Hooks<Op, E> {
    before: Vec<Hook<Op, E>>,
    after: Vec<Hook<Op, E>>,
    calls: Mutex<HashMap<Op, u32>>,
}

impl<Op, E> Default for Hooks<Op, E> {
    fn default() -> Self {
        Hooks {
            before: Vec::new(),
            after: Vec::new(),
            calls: Mutex::new(HashMap::new()),
        }
    }
}

fn hook<Op, E, F, Fut>(f: F) -> Hook<Op, E>
where
    F: Fn(Op, u32) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
{
    Arc::new(move |op, n| Box::pin(f(op, n)))
}

impl<Op, E> Hooks<Op, E>
where
    Op: Copy + Eq + Hash + Send + Sync + 'static,
    E: Clone + Send + Sync + 'static,
{
    pub fn before<F, Fut>(&mut self, f: F)
    where
        F: Fn(Op, u32) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
    {
        self.before.push(hook(f));
    }

    pub fn after<F, Fut>(&mut self, f: F)
    where
        F: Fn(Op, u32) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
    {
        self.after.push(hook(f));
    }

    /// The `nth` calls of `op` fail with `error`, without reaching the adapter.
    pub fn fail(&mut self, op: Op, nth: Nth, error: E) {
        self.before(move |o, n| {
            let r = if o == op && nth.matches(n) {
                Err(error.clone())
            } else {
                Ok(())
            };
            async move { r }
        });
    }

    /// How many times `op` was called so far.
    pub fn calls(&self, op: Op) -> u32 {
        let calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        calls.get(&op).copied().unwrap_or(0)
    }

    /// Runs `call` between the hooks, counting it.
    pub async fn run<T, Fut>(&self, op: Op, call: Fut) -> Result<T, E>
    where
        Fut: Future<Output = Result<T, E>>,
    {
        let n = {
            let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
            let c = calls.entry(op).or_insert(0);
            *c += 1;
            *c - 1
        };
        for h in &self.before {
            h(op, n).await?;
        }
        let out = call.await;
        for h in &self.after {
            h(op, n).await?;
        }
        out
    }
}

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

    /// Runs `f` before every call (see [`Hook`]).
    pub fn before<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(CatalogOp, u32) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), ShopError>> + Send + 'static,
    {
        self.hooks.before(f);
        self
    }

    /// Runs `f` after every call returned from `inner` (see [`Hook`]).
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
