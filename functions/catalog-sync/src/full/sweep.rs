//! The sweep phase: linked products and variants that vanished from KeyCRM, within the vanish
//! guard and after re-checking offers.

use super::SWEEP_PAGE;
use crate::checkpoint::{Listing, Phase, SweepState};
use crate::error::SyncError;
use crate::report;
use crate::run::{product_item, Run, Step};
use keycrm::models::Product;
use keycrm::{OfferFilter, ProductFilter};
use mapping::catalog::{
    self, missing_change, offers_guard, recheck_offer, vanish_guard, GuardVerdict, OfferCheck,
    ProductLink,
};
use mapping::settings::MissingProductPolicy;
use shop::VariantPriceChange;
use std::collections::{HashMap, HashSet};

impl Run<'_> {
    /// Mark and sweep, after a complete pass: count what vanished (the guard), then verify
    /// each candidate with KeyCRM and apply the missing-product policy.
    pub(crate) async fn sweep(&mut self) -> Result<Step, SyncError> {
        let policy = self.settings().missing_products;
        // Every link of a run that began without any was made from a product it saw.
        if policy == MissingProductPolicy::Nothing || self.cp.had_links == Some(false) {
            return self.sweep_done().await;
        }
        if self.seen.is_none() {
            self.seen = Some(self.links().seen(self.links_id(), self.cp.mark).await?);
        }
        let seen = self.seen.take().unwrap_or_default();
        let step = self.sweep_unit(policy, &seen).await;
        self.seen = Some(seen);
        step
    }

    async fn sweep_unit(
        &mut self,
        policy: MissingProductPolicy,
        seen: &store::SeenSet,
    ) -> Result<Step, SyncError> {
        if !self.cp.sweep.counted {
            // Products not listed, and offers not listed of products that were: both are
            // what an empty or shifted page mid-listing would hide, so both are guarded.
            let (mut linked, mut to_sweep) = (0u64, 0u64);
            let (mut linked_offers, mut missing_offers) = (0u64, 0u64);
            let mut after = None;
            loop {
                let (page, next) = self
                    .links()
                    .products_page(self.links_id(), after, 1000)
                    .await?;
                for l in &page {
                    linked += 1;
                    if l.swept.is_some() {
                        continue;
                    }
                    let live = l.variants.iter().filter(|v| !v.gone);
                    linked_offers += live.clone().count() as u64;
                    if !seen.products.contains(&l.keycrm_id) {
                        to_sweep += 1;
                    } else {
                        missing_offers +=
                            live.filter(|v| !seen.offers.contains(&v.offer_id)).count() as u64;
                    }
                }
                match next {
                    Some(n) => after = Some(n),
                    None => break,
                }
            }
            let share = self.settings().vanish_guard;
            let verdicts = [
                vanish_guard(to_sweep, linked, share),
                offers_guard(missing_offers, linked_offers, share),
            ];
            let messages: Vec<String> = verdicts
                .into_iter()
                .filter_map(|v| match v {
                    GuardVerdict::Allow => None,
                    GuardVerdict::Refuse { message } => Some(message),
                })
                .collect();
            let refused = if messages.is_empty() {
                None
            } else {
                tracing::warn!(connection = %self.conn.id, to_sweep, linked, missing_offers, linked_offers, "vanish guard refused the sweep");
                report::count(&mut self.report, "vanished", to_sweep);
                report::count(&mut self.report, "vanished_offers", missing_offers);
                Some(messages.join(" "))
            };
            self.cp.sweep = SweepState {
                counted: true,
                to_sweep,
                linked,
                missing_offers,
                linked_offers,
                refused,
            };
            return Ok(Step::Continue);
        }
        if self.cp.sweep.refused.is_some() {
            return self.sweep_done().await;
        }
        if !self.cp.links.is_done() {
            let after = match &self.cp.links {
                Listing::Next(c) => Some(c.clone()),
                _ => None,
            };
            let (page, next) = self
                .links()
                .products_page(self.links_id(), after, SWEEP_PAGE)
                .await?;
            for l in page {
                if !seen.products.contains(&l.keycrm_id) {
                    if l.swept.is_none() {
                        self.cp.queue.push((l.keycrm_id, l.shop_id.clone()));
                    }
                    continue;
                }
                // Offers not listed of a product that was: re-checked with KeyCRM before
                // any variant is made unavailable (the listing may have shifted).
                for v in l
                    .variants
                    .iter()
                    .filter(|v| !v.gone && !seen.offers.contains(&v.offer_id))
                {
                    self.cp.offer_queue.push((l.keycrm_id, v.offer_id));
                }
            }
            self.cp.links = Listing::from_cursor(next);
        }
        let page = catalog::PAGE as usize;
        let done = self.cp.links.is_done();
        // At most one KeyCRM request a step: a chunk of products, else a chunk of offers.
        if self.cp.queue.len() >= page || (done && !self.cp.queue.is_empty()) {
            let n = self.cp.queue.len().min(page);
            let chunk: Vec<(i64, String)> = self.cp.queue[..n].to_vec();
            self.sweep_chunk(policy, &chunk).await?;
            self.cp.queue.drain(..n);
        } else if self.cp.offer_queue.len() >= page || (done && !self.cp.offer_queue.is_empty()) {
            let n = self.cp.offer_queue.len().min(page);
            let chunk: Vec<(i64, i64)> = self.cp.offer_queue[..n].to_vec();
            self.recheck_offers(&chunk).await?;
            self.cp.offer_queue.drain(..n);
        }
        if done && self.cp.queue.is_empty() && self.cp.offer_queue.is_empty() {
            return self.sweep_done().await;
        }
        Ok(Step::Continue)
    }

    /// Verifies up to 50 candidates in one `/products` request (a paging shift or a product
    /// with no active offers must not be taken for a deletion), then sweeps the missing.
    async fn sweep_chunk(
        &mut self,
        policy: MissingProductPolicy,
        chunk: &[(i64, String)],
    ) -> Result<(), SyncError> {
        let ids: Vec<i64> = chunk.iter().map(|(k, _)| *k).collect();
        let found = self
            .client
            .products(&ProductFilter {
                product_ids: ids.clone(),
                ..ProductFilter::default()
            })
            .collect_all()
            .await?;
        self.units += 1;
        let found: HashMap<i64, Product> = found.into_iter().map(|p| (p.id, p)).collect();
        let links: HashMap<i64, ProductLink> = self
            .links()
            .get_products(self.links_id(), &ids)
            .await?
            .into_iter()
            .map(|l| (l.keycrm_id, l))
            .collect();
        let mut states = Vec::new();
        let mut swept = Vec::new();
        for (id, shop_id) in chunk {
            let p = found.get(id);
            let name = p.map(|p| p.name.clone()).unwrap_or_default();
            if let Some(p) = p.filter(|p| !p.is_archived && self.cp.in_scope(p.category_id)) {
                report::note(&mut self.report, "rechecked", || {
                    product_item(*id, Some(shop_id), &p.name, Some(
                    "still active in KeyCRM but not listed in this run (no active offers, or the catalog changed while paging); left as it is".into(),
                ))
                });
                continue;
            }
            let why = match p {
                None => "deleted in KeyCRM",
                Some(p) if p.is_archived => "archived in KeyCRM",
                Some(_) => "moved out of the selected categories",
            };
            let Some(mut link) = links.get(id).cloned() else {
                continue;
            };
            let Some((change, how)) = missing_change(policy, &link) else {
                continue;
            };
            let key = match how {
                mapping::catalog::Swept::Hidden => "hide",
                mapping::catalog::Swept::Unavailable => "make_unavailable",
            };
            report::note(&mut self.report, key, || {
                product_item(*id, Some(shop_id), &name, Some(why.into()))
            });
            link.swept = Some(how);
            states.push(change);
            swept.push(link);
        }
        if self.cp.dry_run {
            return Ok(());
        }
        let failed = self.write_states(&states).await?;
        swept.retain(|l| !failed.contains(&l.shop_id));
        if !swept.is_empty() {
            self.links().put_products(self.links_id(), &swept).await?;
        }
        Ok(())
    }

    /// Re-checks up to 50 offers the pass did not list, in one `/offers?filter[id]=…`
    /// request: only those KeyCRM no longer has active (deleted, archived, moved) make their
    /// variant unavailable; the others were hidden by a listing that shifted and are left as
    /// they are (`rechecked_offers`).
    async fn recheck_offers(&mut self, chunk: &[(i64, i64)]) -> Result<(), SyncError> {
        let offer_ids: Vec<i64> = chunk.iter().map(|(_, o)| *o).collect();
        let found = self
            .client
            .offers(&OfferFilter {
                offer_ids,
                ..OfferFilter::default()
            })
            .collect_all()
            .await?;
        self.units += 1;
        let found: HashMap<i64, (i64, bool, bool)> = found
            .into_iter()
            .map(|o| {
                let product_archived = o.product.as_ref().is_some_and(|p| p.is_archived);
                (o.id, (o.product_id, o.is_archived, product_archived))
            })
            .collect();
        let mut product_ids: Vec<i64> = chunk.iter().map(|(p, _)| *p).collect();
        product_ids.sort_unstable();
        product_ids.dedup();
        let mut links: HashMap<i64, ProductLink> = self
            .links()
            .get_products(self.links_id(), &product_ids)
            .await?
            .into_iter()
            .map(|l| (l.keycrm_id, l))
            .collect();
        let mut changes = Vec::new();
        let mut touched: HashSet<i64> = HashSet::new();
        for (pid, oid) in chunk {
            let Some(link) = links.get_mut(pid) else {
                continue;
            };
            let shop_id = link.shop_id.clone();
            match recheck_offer(*pid, found.get(oid).copied()) {
                OfferCheck::Active => report::note(&mut self.report, "rechecked_offers", || {
                    product_item(*pid, Some(&shop_id), "", Some(format!(
                        "offer {oid} is still active in KeyCRM but was not listed in this run (the catalog changed while paging); left as it is"
                    )))
                }),
                OfferCheck::Gone(why) => {
                    let Some(v) = link
                        .variants
                        .iter_mut()
                        .find(|v| v.offer_id == *oid && !v.gone)
                    else {
                        continue;
                    };
                    changes.push(VariantPriceChange {
                        product_id: shop_id.clone(),
                        variant_id: v.shop_id.clone(),
                        price: None,
                        available: Some(false),
                    });
                    v.gone = true;
                    v.available = Some(false);
                    touched.insert(*pid);
                    report::note(&mut self.report, "variants_unavailable", || {
                        product_item(
                            *pid,
                            Some(&shop_id),
                            "",
                            Some(format!("offer {oid}: {why}")),
                        )
                    });
                }
            }
        }
        if self.cp.dry_run || changes.is_empty() {
            return Ok(());
        }
        let failed = self.write_prices(&changes).await?;
        let changed: Vec<ProductLink> = touched
            .into_iter()
            .filter_map(|k| links.remove(&k))
            .filter(|l| !failed.contains(&l.shop_id))
            .collect();
        if !changed.is_empty() {
            self.links().put_products(self.links_id(), &changed).await?;
        }
        Ok(())
    }

    async fn sweep_done(&mut self) -> Result<Step, SyncError> {
        self.links()
            .clear_seen(self.links_id(), self.cp.mark)
            .await?;
        self.seen = None;
        self.cp.phase = Phase::CategorySweep;
        Ok(Step::Continue)
    }
}
