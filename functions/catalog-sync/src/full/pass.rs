//! The catalog pass: KeyCRM offers read page by page (or by product for a narrow category
//! filter), linked products written at once, unlinked ones staged for resolving.

use super::ItemResult;
use crate::checkpoint::{Listing, Phase};
use crate::error::SyncError;
use crate::report;
use crate::run::{product_item, Run, Step};
use mapping::catalog::{
    self, apply_upsert_result, group_offers, outcome_label, plan_linked, CrmProduct, LinkedPlan,
    ProductLink, ReadPlan, PRODUCTS_PER_BATCH,
};
use shop::{ProductUpsert, ShopError, VariantPriceChange};
use std::collections::{HashMap, HashSet};

impl Run<'_> {
    pub(crate) async fn products(&mut self) -> Result<Step, SyncError> {
        if self.cp.had_links.is_none() {
            let (any, _) = self
                .links()
                .product_states_page(self.links_id(), None, 1)
                .await?;
            self.cp.had_links = Some(!any.is_empty());
        }
        if self.cp.plan.is_none() {
            if self.cp.scope.is_none() {
                self.cp.plan = Some(ReadPlan::AllOffers);
            } else {
                return self.choose_plan().await;
            }
        }
        match self.cp.plan {
            Some(ReadPlan::ByProducts) => self.products_batch().await,
            _ => self.offers_page().await,
        }
    }

    /// With a category filter: one page of each listing gives the sizes (filtered products,
    /// all offers); the cheaper plan goes on and the other page is the only one wasted.
    async fn choose_plan(&mut self) -> Result<Step, SyncError> {
        let mut products = self.products_listing();
        let p_page = products.next_page().await?;
        let mut offers = self.offers_listing(&[]);
        let o_page = offers.next_page().await?;
        self.units += 2;
        let filtered = p_page.as_ref().map_or(0, |p| p.total);
        let (offers_total, opp) = match &o_page {
            Some(p) if !p.data.is_empty() => {
                let distinct: HashSet<i64> = p.data.iter().map(|o| o.product_id).collect();
                (p.total, p.data.len() as f64 / distinct.len().max(1) as f64)
            }
            Some(p) => (p.total, 1.0),
            None => (0, 1.0),
        };
        let plan = catalog::choose_read_plan(offers_total, filtered, opp);
        let (all, by) = catalog::read_plan_costs(offers_total, filtered, opp);
        tracing::info!(
            connection = %self.conn.id,
            filtered_products = filtered,
            offers_total,
            estimate_all_offers = all,
            estimate_by_products = by,
            plan = ?plan,
            "category filter: read plan chosen"
        );
        self.cp.plan = Some(plan);
        match plan {
            ReadPlan::ByProducts => {
                self.cp.pending = p_page
                    .map(|p| {
                        p.data
                            .iter()
                            .filter(|x| !x.is_archived)
                            .map(|x| x.id)
                            .collect()
                    })
                    .unwrap_or_default();
                self.cp.products = Listing::from_cursor(products.cursor());
            }
            ReadPlan::AllOffers => {
                self.cp.offers = Listing::from_cursor(offers.cursor());
                if let Some(page) = o_page {
                    let last = page.data.last().map(|o| o.product_id);
                    let mut groups = group_offers(page.data);
                    if !self.cp.offers.is_done() && last == groups.last().map(|g| g.id) {
                        self.cp.carry = groups.pop();
                    }
                    self.process(groups).await?;
                }
            }
        }
        Ok(Step::Continue)
    }

    /// One `/offers` page: groups by product, the last product carried to the next page.
    async fn offers_page(&mut self) -> Result<Step, SyncError> {
        let offers = self.cp.offers.clone();
        let Some(mut pages) = self.resume(&offers, || self.offers_listing(&[]))? else {
            if let Some(c) = self.cp.carry.take() {
                self.process(vec![c]).await?;
            }
            self.cp.phase = Phase::Resolve;
            self.cp.links = Listing::Start;
            return Ok(Step::Continue);
        };
        let page = pages.next_page().await?;
        self.units += 1;
        self.cp.offers = Listing::from_cursor(pages.cursor());
        let Some(page) = page else {
            self.cp.offers = Listing::Done;
            return Ok(Step::Continue);
        };
        let last = page.data.last().map(|o| o.product_id);
        let mut groups = group_offers(page.data);
        if let Some(mut c) = self.cp.carry.take() {
            if groups.first().map(|g| g.id) == Some(c.id) {
                c.merge(groups.remove(0));
            }
            groups.insert(0, c);
        }
        if !self.cp.offers.is_done() && last == groups.last().map(|g| g.id) {
            self.cp.carry = groups.pop();
        }
        self.process(groups).await?;
        Ok(Step::Continue)
    }

    /// Category-filtered plan: the next [`PRODUCTS_PER_BATCH`] filtered products, then all
    /// their offers by product id.
    async fn products_batch(&mut self) -> Result<Step, SyncError> {
        while self.cp.pending.len() < PRODUCTS_PER_BATCH && !self.cp.products.is_done() {
            let listing = self.cp.products.clone();
            let Some(mut pages) = self.resume(&listing, || self.products_listing())? else {
                break;
            };
            let page = pages.next_page().await?;
            self.units += 1;
            self.cp.products = Listing::from_cursor(pages.cursor());
            if let Some(p) = page {
                self.cp
                    .pending
                    .extend(p.data.iter().filter(|x| !x.is_archived).map(|x| x.id));
            }
        }
        if self.cp.pending.is_empty() {
            self.cp.phase = Phase::Resolve;
            self.cp.links = Listing::Start;
            return Ok(Step::Continue);
        }
        let n = self.cp.pending.len().min(PRODUCTS_PER_BATCH);
        let batch: Vec<i64> = self.cp.pending[..n].to_vec();
        let mut pages = self.offers_listing(&batch);
        let mut by_id: HashMap<i64, CrmProduct> = HashMap::new();
        let mut order = Vec::new();
        while let Some(page) = pages.next_page().await? {
            self.units += 1;
            for g in group_offers(page.data) {
                match by_id.get_mut(&g.id) {
                    Some(p) => p.merge(g),
                    None => {
                        order.push(g.id);
                        by_id.insert(g.id, g);
                    }
                }
            }
        }
        let groups: Vec<CrmProduct> = order.iter().filter_map(|id| by_id.remove(id)).collect();
        self.process(groups).await?;
        self.cp.pending.drain(..n);
        Ok(Step::Continue)
    }

    /// Plans and writes one page's products: linked ones now, unlinked ones staged.
    async fn process(&mut self, groups: Vec<CrmProduct>) -> Result<(), SyncError> {
        let groups: Vec<CrmProduct> = groups
            .into_iter()
            .filter(|g| self.cp.in_scope(g.category_id))
            .collect();
        if groups.is_empty() {
            return Ok(());
        }
        let ids: Vec<i64> = groups.iter().map(|g| g.id).collect();
        let had_links = self.cp.had_links != Some(false);
        let links: HashMap<i64, ProductLink> = if had_links {
            self.links()
                .get_products(self.links_id(), &ids)
                .await?
                .into_iter()
                .map(|l| (l.keycrm_id, l))
                .collect()
        } else {
            HashMap::new()
        };
        let mut linked = Vec::new();
        let mut unlinked = Vec::new();
        for g in &groups {
            match links.get(&g.id) {
                Some(l) => {
                    let cat = self.shop_category(g.category_id);
                    linked.push((
                        g,
                        plan_linked(g, l, self.settings().existing_products, cat),
                        l,
                    ));
                }
                None => unlinked.push(g.clone()),
            }
        }
        self.apply_linked(linked).await?;
        if !unlinked.is_empty() {
            // Offers are listed by id, and a product's offers are created after the product,
            // so a product already staged has an id at or below the highest staged so far.
            let maybe: Vec<i64> = unlinked
                .iter()
                .map(|p| p.id)
                .filter(|id| *id <= self.cp.staged_max)
                .collect();
            let mut earlier: HashMap<i64, CrmProduct> = if maybe.is_empty() {
                HashMap::new()
            } else {
                self.links()
                    .get_staged(self.links_id(), &maybe)
                    .await?
                    .into_iter()
                    .map(|p| (p.id, p))
                    .collect()
            };
            self.cp.staged_max = unlinked
                .iter()
                .map(|p| p.id)
                .fold(self.cp.staged_max, i64::max);
            // A product already staged in this run (offers spread over pages) is merged.
            let merged: Vec<CrmProduct> = unlinked
                .into_iter()
                .map(|p| match earlier.remove(&p.id) {
                    Some(mut e) => {
                        e.merge(p);
                        e
                    }
                    None => p,
                })
                .collect();
            self.links().put_staged(self.links_id(), &merged).await?;
        }
        let offers: Vec<i64> = groups
            .iter()
            .flat_map(|g| g.offers.iter().map(|o| o.id))
            .collect();
        if had_links {
            self.cp.seen_seq += 1;
            self.links()
                .put_seen(
                    self.links_id(),
                    self.cp.mark,
                    self.cp.seen_seq,
                    &ids,
                    &offers,
                )
                .await?;
        }
        Ok(())
    }

    /// Writes linked products' plans: upserts (refusals isolated per product), restores,
    /// price changes; then stores the links that changed.
    async fn apply_linked(
        &mut self,
        plans: Vec<(&CrmProduct, LinkedPlan, &ProductLink)>,
    ) -> Result<(), SyncError> {
        let dry = self.cp.dry_run;
        let mut upserts: Vec<ProductUpsert> = Vec::new();
        for (_, plan, _) in &plans {
            if let Some(u) = &plan.upsert {
                upserts.push(u.clone());
            }
        }
        let mut results: HashMap<String, ItemResult> = HashMap::new();
        if !dry {
            for chunk in upserts.chunks(self.cfg.shop_batch.max(1)) {
                for (u, r) in chunk.iter().zip(self.upsert_isolated(chunk).await?) {
                    results.insert(u.external_ref.clone(), r);
                }
            }
        }
        let mut states = Vec::new();
        let mut prices: Vec<VariantPriceChange> = Vec::new();
        let mut changed: Vec<ProductLink> = Vec::new();
        let mut gone: Vec<ProductLink> = Vec::new();
        for (p, mut plan, old) in plans {
            let label = outcome_label(plan.outcome);
            if plan.upsert.is_some() && !dry {
                match results.remove(&p.id.to_string()) {
                    Some(Ok(r)) => apply_upsert_result(&mut plan.link, p, &r),
                    Some(Err(ShopError::NotFound(_))) => {
                        report::error(&mut self.report, product_item(p.id, Some(&old.shop_id), &p.name, Some(
                            "the linked shop product no longer exists; the link was removed and the product is matched or created again on the next run".into(),
                        )));
                        gone.push(old.clone());
                        continue;
                    }
                    Some(Err(e)) => {
                        report::error(
                            &mut self.report,
                            product_item(p.id, Some(&old.shop_id), &p.name, Some(e.to_string())),
                        );
                        continue;
                    }
                    None => continue,
                }
            }
            states.extend(plan.state.clone());
            prices.extend(plan.prices.clone());
            report::note(&mut self.report, label, || {
                product_item(p.id, Some(&old.shop_id), &p.name, None)
            });
            if plan.link != *old {
                changed.push(plan.link);
            }
        }
        if dry {
            return Ok(());
        }
        let mut failed = self.write_states(&states).await?;
        failed.extend(self.write_prices(&prices).await?);
        // A refused write keeps the old link, so the next run tries again.
        changed.retain(|l| !failed.contains(&l.shop_id));
        if !changed.is_empty() {
            self.links().put_products(self.links_id(), &changed).await?;
        }
        if !gone.is_empty() {
            self.links().delete_products(self.links_id(), &gone).await?;
        }
        Ok(())
    }
}
