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
            Err(e) if stops_the_run(&e) => Err(e.into()),
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
                        Err(e) if stops_the_run(&e) => return Err(e.into()),
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
        let (shop, id) = (self.deps.shop.clone(), self.shop_id().to_string());
        let (shop, id) = (&shop, &id);
        let mut failed = HashSet::new();
        let write = move |c| async move { shop.set_product_states(id, c).await };
        write_isolated(states, shop::MAX_UPSERT_BATCH, write, |c, e| {
            report::error(
                &mut self.report,
                report::item(None, Some(&c.id), "", Some(e.to_string())),
            );
            failed.insert(c.id.clone());
        })
        .await?;
        Ok(failed)
    }

    /// Writes price changes; returns the shop products with a refused change.
    pub(crate) async fn write_prices(
        &mut self,
        prices: &[VariantPriceChange],
    ) -> Result<HashSet<String>, SyncError> {
        let (shop, id) = (self.deps.shop.clone(), self.shop_id().to_string());
        let (shop, id) = (&shop, &id);
        let mut failed = HashSet::new();
        let write = move |c| async move { shop.set_variant_prices(id, c).await };
        write_isolated(prices, 500, write, |c, e| {
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
        })
        .await?;
        Ok(failed)
    }
}

/// Whether a shop error stops the run (it resumes later) rather than failing one item.
fn stops_the_run(e: &ShopError) -> bool {
    e.is_retryable() || *e == ShopError::Unauthorized
}

/// Writes `items` in chunks of `chunk`; a refused chunk is retried item by item so one bad
/// item only fails itself (`refused` hears of it, in order). Outages and auth failures stop
/// the run.
async fn write_isolated<'a, T, W, F>(
    items: &'a [T],
    chunk: usize,
    write: W,
    mut refused: impl FnMut(&'a T, ShopError),
) -> Result<(), SyncError>
where
    // One lifetime, not a higher-ranked closure: the run's future must stay `Send`.
    W: Fn(&'a [T]) -> F,
    F: std::future::Future<Output = Result<(), ShopError>>,
{
    for chunk in items.chunks(chunk.max(1)) {
        match write(chunk).await {
            Ok(()) => {}
            Err(e) if stops_the_run(&e) => return Err(e.into()),
            Err(_) => {
                for c in chunk {
                    if let Err(e) = write(std::slice::from_ref(c)).await {
                        if stops_the_run(&e) {
                            return Err(e.into());
                        }
                        refused(c, e);
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// A shop that refuses any write carrying a negative item, and is down for one carrying 99.
    async fn shop(calls: &RefCell<Vec<Vec<i32>>>, items: &[i32]) -> Result<(), ShopError> {
        calls.borrow_mut().push(items.to_vec());
        if items.iter().any(|i| *i < 0) {
            Err(ShopError::Rejected("bad".into()))
        } else if items.contains(&99) {
            Err(ShopError::Unavailable("down".into()))
        } else {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_refused_chunk_is_retried_item_by_item_and_only_bad_items_fail() {
        let calls = RefCell::new(Vec::new());
        let mut refused = Vec::new();
        write_isolated(
            &[1, -2, 3, 4, -5],
            3,
            |c| shop(&calls, c),
            |i, e| refused.push((*i, e)),
        )
        .await
        .unwrap();
        assert_eq!(
            refused,
            vec![
                (-2, ShopError::Rejected("bad".into())),
                (-5, ShopError::Rejected("bad".into()))
            ]
        );
        assert_eq!(
            calls.into_inner(),
            vec![
                vec![1, -2, 3],
                vec![1],
                vec![-2],
                vec![3],
                vec![4, -5],
                vec![4],
                vec![-5]
            ]
        );
    }

    #[tokio::test]
    async fn an_outage_stops_the_writes() {
        let calls = RefCell::new(Vec::new());
        let mut refused = Vec::new();
        let r = write_isolated(
            &[-1, 99, 2],
            3,
            |c| shop(&calls, c),
            |i, _| refused.push(*i),
        )
        .await;
        assert!(
            matches!(r, Err(SyncError::Shop(ShopError::Unavailable(_)))),
            "{r:?}"
        );
        assert_eq!(
            refused,
            vec![-1],
            "what was refused before the outage is reported"
        );
        assert_eq!(
            calls.into_inner(),
            vec![vec![-1, 99, 2], vec![-1], vec![99]]
        );
    }
}
