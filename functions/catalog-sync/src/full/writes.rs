//! Shop writes shared by the phases: upserts isolated item by item, state and price changes.

use super::ItemResult;
use crate::error::SyncError;
use crate::report;
use crate::run::Run;
use shop::{ProductUpsert, ShopError, UpsertResult, VariantPriceChange};
use std::collections::{HashMap, HashSet};

impl Run<'_> {
    /// Upserts a batch; if the shop refuses it, retries product by product so one bad item
    /// only fails itself. Outages and auth failures stop the run (it resumes later).
    pub(super) async fn upsert_isolated(
        &self,
        batch: &[ProductUpsert],
    ) -> Result<Vec<ItemResult>, SyncError> {
        match self.shop().upsert_products(self.shop_id(), batch).await {
            Ok(results) => {
                let mut by_ref: HashMap<String, UpsertResult> = results
                    .into_iter()
                    .map(|r| (r.external_ref.clone(), r))
                    .collect();
                Ok(batch
                    .iter()
                    .map(|u| {
                        by_ref.remove(&u.external_ref).ok_or_else(|| {
                            ShopError::Rejected("the shop did not confirm this product".into())
                        })
                    })
                    .collect())
            }
            Err(e) if e.is_retryable() || e == ShopError::Unauthorized => Err(e.into()),
            Err(e) if batch.len() == 1 => Ok(vec![Err(e)]),
            Err(_) => {
                let mut out = Vec::with_capacity(batch.len());
                for u in batch {
                    match self
                        .shop()
                        .upsert_products(self.shop_id(), std::slice::from_ref(u))
                        .await
                    {
                        Ok(mut r) if !r.is_empty() => out.push(Ok(r.remove(0))),
                        Ok(_) => out.push(Err(ShopError::Rejected(
                            "the shop did not confirm this product".into(),
                        ))),
                        Err(e) if e.is_retryable() || e == ShopError::Unauthorized => {
                            return Err(e.into())
                        }
                        Err(e) => out.push(Err(e)),
                    }
                }
                Ok(out)
            }
        }
    }

    /// Writes state changes; returns the shop products whose change was refused.
    pub(crate) async fn write_states(
        &mut self,
        states: &[shop::ProductStateChange],
    ) -> Result<HashSet<String>, SyncError> {
        let mut failed = HashSet::new();
        for chunk in states.chunks(shop::MAX_UPSERT_BATCH) {
            match self.shop().set_product_states(self.shop_id(), chunk).await {
                Ok(()) => {}
                Err(e) if e.is_retryable() || e == ShopError::Unauthorized => return Err(e.into()),
                Err(_) => {
                    for c in chunk {
                        if let Err(e) = self
                            .shop()
                            .set_product_states(self.shop_id(), std::slice::from_ref(c))
                            .await
                        {
                            if e.is_retryable() || e == ShopError::Unauthorized {
                                return Err(e.into());
                            }
                            report::error(
                                &mut self.report,
                                report::item(None, Some(&c.id), "", Some(e.to_string())),
                            );
                            failed.insert(c.id.clone());
                        }
                    }
                }
            }
        }
        Ok(failed)
    }

    /// Writes price changes; returns the shop products with a refused change.
    pub(crate) async fn write_prices(
        &mut self,
        prices: &[VariantPriceChange],
    ) -> Result<HashSet<String>, SyncError> {
        let mut failed = HashSet::new();
        for chunk in prices.chunks(500) {
            match self.shop().set_variant_prices(self.shop_id(), chunk).await {
                Ok(()) => {}
                Err(e) if e.is_retryable() || e == ShopError::Unauthorized => return Err(e.into()),
                Err(_) => {
                    for c in chunk {
                        if let Err(e) = self
                            .shop()
                            .set_variant_prices(self.shop_id(), std::slice::from_ref(c))
                            .await
                        {
                            if e.is_retryable() || e == ShopError::Unauthorized {
                                return Err(e.into());
                            }
                            report::error(
                                &mut self.report,
                                report::item(
                                    None,
                                    Some(&c.product_id),
                                    "",
                                    Some(format!("variant {}: {e}", c.variant_id)),
                                ),
                            );
                            failed.insert(c.product_id.clone());
                        }
                    }
                }
            }
        }
        Ok(failed)
    }
}
