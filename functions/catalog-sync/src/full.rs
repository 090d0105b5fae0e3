//! The full sync's phases: categories, the catalog pass, resolving unlinked products, and the
//! sweep of missing ones.

use crate::checkpoint::{Listing, Phase, SweepState};
use crate::engine::{product_item, Run, Step, SyncError};
use crate::report;
use keycrm::models::{Category, Product};
use keycrm::{OfferFilter, Pages, ProductFilter};
use mapping::catalog::{
    self, apply_upsert_result, category_hash, category_levels, category_upsert, descendants,
    group_offers, link_after_upsert, missing_category_change, missing_change, offers_guard,
    outcome_label, plan_adopt, plan_create, plan_linked, recheck_offer, resolve,
    restore_category_change, vanish_guard, vanished_categories, with_ancestors, CategoryLink,
    CrmProduct, GuardVerdict, LinkedPlan, ListedOffer, Matcher, OfferCheck, ProductLink, ReadPlan,
    Resolution, ResolveContext, ShopIndex, PRODUCTS_PER_BATCH,
};
use mapping::settings::MissingProductPolicy;
use shop::{ProductUpsert, ShopError, UpsertResult, VariantPriceChange};
use std::collections::{BTreeSet, HashMap, HashSet};

/// Links read per sweep step (few of them lead to writes).
const SWEEP_PAGE: usize = 1000;

/// A shop write that may be refused item by item.
type ItemResult = Result<UpsertResult, ShopError>;

impl Run<'_> {
    /// The shop category a product goes in: only while category sync is on (otherwise the
    /// merchant files products and the sync leaves the field alone).
    fn shop_category(&self, keycrm_category: Option<i64>) -> Option<&str> {
        if self.settings().sync_categories {
            catalog::shop_category(&self.cat_links, keycrm_category)
        } else {
            None
        }
    }

    fn offers_listing(&self, product_ids: &[i64]) -> Pages<ListedOffer> {
        let mut q = vec![
            ("include", "product".to_string()),
            // Archived products count as missing, so their offers are not needed at all.
            ("filter[is_archived]", "false".to_string()),
            // A stable order keeps offset paging consistent across pages and invocations.
            ("sort", "id".to_string()),
        ];
        if !product_ids.is_empty() {
            let ids: Vec<String> = product_ids.iter().map(i64::to_string).collect();
            q.push(("filter[product_id]", ids.join(",")));
        }
        self.client.list("offers", &q)
    }

    fn products_listing(&self) -> Pages<Product> {
        let scope = self.cp.scope.clone().unwrap_or_default();
        let ids: Vec<String> = scope.iter().map(i64::to_string).collect();
        self.client.list(
            "products",
            &[
                ("filter[category_id]", ids.join(",")),
                ("filter[is_archived]", "false".to_string()),
            ],
        )
    }

    fn resume<T: serde::de::DeserializeOwned>(
        &self,
        listing: &Listing,
        fresh: impl FnOnce() -> Pages<T>,
    ) -> Result<Option<Pages<T>>, SyncError> {
        Ok(match listing {
            Listing::Start => Some(fresh()),
            Listing::Next(url) => Some(Pages::resume(&self.client, url)?),
            Listing::Done => None,
        })
    }

    // ------------------------------------------------------------------ categories

    pub(crate) async fn categories(&mut self) -> Result<Step, SyncError> {
        let s = self.settings().clone();
        if s.sync_categories || !s.category_filter.is_empty() {
            let cats = self.client.categories().await?;
            self.units += 1;
            if !s.category_filter.is_empty() {
                self.cp.scope = Some(descendants(&cats, &s.category_filter).into_iter().collect());
            }
            if s.sync_categories {
                self.write_categories(&cats).await?;
                self.cp.category_ids = Some(cats.iter().map(|c| c.id).collect());
            }
        }
        self.cp.phase = if s.sync_products {
            Phase::Products
        } else {
            Phase::CategorySweep
        };
        Ok(Step::Continue)
    }

    /// The end of a complete run: linked categories KeyCRM no longer has (as read at the
    /// start of this run) get the missing-products policy, under the same vanish guard as
    /// products; categories hidden that way and back in KeyCRM are shown again.
    pub(crate) async fn sweep_categories(&mut self) -> Result<Step, SyncError> {
        // Then the drift repair, when this run does one.
        self.cp.phase = if self.cp.drift {
            Phase::Drift
        } else {
            Phase::Done
        };
        let Some(ids) = self.cp.category_ids.take() else {
            return Ok(Step::Continue);
        };
        let in_keycrm: BTreeSet<i64> = ids.into_iter().collect();
        let policy = self.settings().missing_products;
        let mut changes = Vec::new();
        let mut updated: Vec<CategoryLink> = Vec::new();
        for l in self.cat_links.values() {
            if in_keycrm.contains(&l.keycrm_id) {
                if let Some(c) = restore_category_change(l) {
                    report::note(&mut self.report, "category_restore", || {
                        report::item(Some(l.keycrm_id), Some(&l.shop_id), "", None)
                    });
                    changes.push(c);
                    updated.push(CategoryLink {
                        hidden: false,
                        ..l.clone()
                    });
                }
            }
        }
        let vanished = vanished_categories(self.cat_links.values(), &in_keycrm);
        let linked = self.cat_links.values().filter(|l| !l.hidden).count() as u64;
        let acting = vanished
            .iter()
            .filter(|l| missing_category_change(policy, l).is_some())
            .count() as u64;
        match vanish_guard(acting, linked, self.settings().vanish_guard) {
            GuardVerdict::Refuse { message } => {
                tracing::warn!(connection = %self.conn.id, vanished = acting, linked, "vanish guard refused to hide categories");
                report::count(&mut self.report, "categories_vanished", acting);
                self.cp.categories_refused = Some(format!("Categories: {message}"));
            }
            GuardVerdict::Allow => {
                for l in vanished {
                    if let Some(c) = missing_category_change(policy, l) {
                        report::note(&mut self.report, "category_hide", || {
                            report::item(
                                Some(l.keycrm_id),
                                Some(&l.shop_id),
                                "",
                                Some("deleted in KeyCRM".into()),
                            )
                        });
                        changes.push(c);
                        updated.push(CategoryLink {
                            hidden: true,
                            ..l.clone()
                        });
                    }
                }
            }
        }
        if self.cp.dry_run || changes.is_empty() {
            return Ok(Step::Continue);
        }
        self.shop()
            .set_category_states(self.shop_id(), &changes)
            .await?;
        for l in &updated {
            self.cat_links.insert(l.keycrm_id, l.clone());
        }
        self.links()
            .put_categories(self.links_id(), &updated)
            .await?;
        Ok(Step::Continue)
    }

    async fn write_categories(&mut self, cats: &[Category]) -> Result<(), SyncError> {
        let chosen: Vec<Category> = match &self.cp.scope {
            Some(scope) => {
                let keep = with_ancestors(cats, &scope.iter().copied().collect::<BTreeSet<_>>());
                cats.iter()
                    .filter(|c| keep.contains(&c.id))
                    .cloned()
                    .collect()
            }
            None => cats.to_vec(),
        };
        let (levels, broken) = category_levels(&chosen);
        for id in broken {
            report::error(
                &mut self.report,
                report::item(
                    Some(id),
                    None,
                    "",
                    Some("the category is on a parent cycle in KeyCRM; not synced".into()),
                ),
            );
        }
        let dry = self.cp.dry_run;
        for level in levels {
            let mut writes: Vec<(Category, shop::CategoryUpsert, u64)> = Vec::new();
            for c in &level {
                let parent = c
                    .parent_id
                    .and_then(|p| self.cat_links.get(&p))
                    .map(|l| l.shop_id.clone());
                let link = self.cat_links.get(&c.id);
                match category_upsert(c, parent.as_deref(), link) {
                    None => report::count(&mut self.report, "category_unchanged", 1),
                    Some(u) => {
                        let key = if u.id.is_some() {
                            "category_update"
                        } else {
                            "category_create"
                        };
                        report::note(&mut self.report, key, || {
                            report::item(Some(c.id), u.id.as_deref(), &u.name, None)
                        });
                        let h = category_hash(c.name.trim(), parent.as_deref());
                        writes.push((c.clone(), u, h));
                    }
                }
            }
            if dry {
                // Children of categories a real run would create are previewed as updates
                // of a placeholder, which is close enough for counts.
                for (c, u, h) in writes {
                    let shop_id = u.id.unwrap_or_else(|| format!("new:{}", c.id));
                    self.cat_links.insert(
                        c.id,
                        CategoryLink {
                            keycrm_id: c.id,
                            shop_id,
                            hash: h,
                            hidden: false,
                        },
                    );
                }
                continue;
            }
            for chunk in writes.chunks(shop::MAX_UPSERT_BATCH) {
                let batch: Vec<shop::CategoryUpsert> =
                    chunk.iter().map(|(_, u, _)| u.clone()).collect();
                let res = self
                    .shop()
                    .upsert_categories(self.shop_id(), &batch)
                    .await?;
                let ids: HashMap<String, String> = res.into_iter().collect();
                let mut new_links = Vec::new();
                for (c, _, h) in chunk {
                    if let Some(id) = ids.get(&c.id.to_string()) {
                        // A hidden category keeps that mark until the end of the run shows it.
                        let hidden = self.cat_links.get(&c.id).is_some_and(|l| l.hidden);
                        let l = CategoryLink {
                            keycrm_id: c.id,
                            shop_id: id.clone(),
                            hash: *h,
                            hidden,
                        };
                        self.cat_links.insert(c.id, l.clone());
                        new_links.push(l);
                    }
                }
                self.links()
                    .put_categories(self.links_id(), &new_links)
                    .await?;
            }
        }
        Ok(())
    }

    // ------------------------------------------------------------------ catalog pass

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
            for chunk in upserts.chunks(self.e.cfg.shop_batch.max(1)) {
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

    /// Upserts a batch; if the shop refuses it, retries product by product so one bad item
    /// only fails itself. Outages and auth failures stop the run (it resumes later).
    async fn upsert_isolated(&self, batch: &[ProductUpsert]) -> Result<Vec<ItemResult>, SyncError> {
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

    // ------------------------------------------------------------------ resolve

    /// What resolving needs in memory: the shop's index (by the connection's match key) and
    /// the KeyCRM-side counts. Rebuilt in each invocation that resolves (it is derived data,
    /// never checkpointed).
    async fn build_resolver(&self) -> Result<Matcher, SyncError> {
        let mut index = ShopIndex::new(self.settings().match_key);
        let mut cursor = None;
        loop {
            let (page, next) = self
                .shop()
                .products_page(self.shop_id(), cursor, self.e.cfg.shop_page)
                .await?;
            page.iter().for_each(|p| index.add(p));
            match next {
                Some(n) => cursor = Some(n),
                None => break,
            }
        }
        self.forget_other_accounts_external_ids(&mut index).await?;
        let creating: BTreeSet<i64> = self.cp.creating.iter().copied().collect();
        let mut matcher = Matcher::new(index);
        let mut after = None;
        loop {
            let (page, next) = self
                .links()
                .staged_page(self.links_id(), after, 500)
                .await?;
            for p in &page {
                matcher.count(p, creating.contains(&p.id));
            }
            match next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        tracing::info!(connection = %self.conn.id, shop_products = matcher.index().len(), "shop index read for matching");
        Ok(matcher)
    }

    /// After the connection switched KeyCRM accounts, the shop products linked under an
    /// earlier account still carry that account's product ids as their external ids: they
    /// must not be taken for this account's products of the same id.
    async fn forget_other_accounts_external_ids(
        &self,
        index: &mut ShopIndex,
    ) -> Result<(), SyncError> {
        let previous = self.conn.previous_links_scopes();
        if previous.is_empty() {
            return Ok(());
        }
        let with_external = index.with_external_ids();
        let mut stale: HashSet<String> = HashSet::new();
        for scope in &previous {
            for chunk in with_external.chunks(100) {
                for (shop_id, _) in self.links().owners(scope, chunk).await? {
                    stale.insert(shop_id);
                }
            }
        }
        if !stale.is_empty() {
            tracing::info!(connection = %self.conn.id, products = stale.len(), "external ids from an earlier KeyCRM account are not matched");
        }
        index.forget_external_ids(&stale);
        Ok(())
    }

    /// Decides one page of staged products and writes the result.
    pub(crate) async fn resolve(&mut self) -> Result<Step, SyncError> {
        let after = match &self.cp.links {
            Listing::Start => None,
            Listing::Next(c) => Some(c.clone()),
            Listing::Done => return self.resolve_done().await,
        };
        let (page, next) = self
            .links()
            .staged_page(
                self.links_id(),
                after.clone(),
                2 * self.e.cfg.shop_batch.max(1),
            )
            .await?;
        if page.is_empty() {
            return self.resolve_done().await;
        }
        if self.resolver.is_none() {
            self.resolver = Some(self.build_resolver().await?);
        }
        let Some(res) = self.resolver.take() else {
            return Ok(Step::Continue);
        };
        let outcome = self.resolve_page(&res, page).await;
        self.resolver = Some(res);
        outcome?;
        self.cp.links = Listing::from_cursor(next);
        Ok(Step::Continue)
    }

    async fn resolve_done(&mut self) -> Result<Step, SyncError> {
        crate::engine::clear_staged(self.links(), self.links_id()).await?;
        self.resolver = None;
        self.cp.phase = Phase::Sweep;
        self.cp.links = Listing::Start;
        Ok(Step::Continue)
    }

    async fn resolve_page(&mut self, m: &Matcher, page: Vec<CrmProduct>) -> Result<(), SyncError> {
        let s = self.settings().clone();
        let creating: BTreeSet<i64> = self.cp.creating.iter().copied().collect();
        let candidate_ids: Vec<String> = page
            .iter()
            .filter_map(|p| m.claim(p, creating.contains(&p.id)))
            .map(|i| m.index().product(i).id.clone())
            .collect();
        let owners: HashMap<String, i64> = if candidate_ids.is_empty() {
            HashMap::new()
        } else {
            self.links()
                .owners(self.links_id(), &candidate_ids)
                .await?
                .into_iter()
                .collect()
        };
        let cx = ResolveContext {
            matcher: m,
            new_products: s.new_products,
            existing_products: s.existing_products,
            creating: &creating,
        };
        let dry = self.cp.dry_run;
        // (product, write, count key)
        let mut upserts: Vec<(&CrmProduct, ProductUpsert, &'static str)> = Vec::new();
        let mut adopted: Vec<(&CrmProduct, Vec<VariantPriceChange>, ProductLink)> = Vec::new();
        for p in &page {
            let cat = self.shop_category(p.category_id);
            match resolve(p, &cx, &|shop_id| owners.get(shop_id).copied()) {
                Resolution::Create { visible } => match plan_create(p, visible, cat) {
                    Ok(u) => upserts.push((p, u, "create")),
                    Err(why) => report::error(
                        &mut self.report,
                        product_item(p.id, None, &p.name, Some(why)),
                    ),
                },
                Resolution::Adopt { index, update } => {
                    let (u, prices, link) = plan_adopt(p, m.index().product(index), update, cat);
                    match u {
                        Some(u) => upserts.push((p, u, "update")),
                        None => adopted.push((p, prices, link)),
                    }
                }
                Resolution::Skip { reason } => {
                    report::note(&mut self.report, "skipped", || {
                        product_item(p.id, None, &p.name, Some(reason))
                    });
                }
                Resolution::Ambiguous { detail } => {
                    tracing::info!(connection = %self.conn.id, keycrm_product = p.id, detail = %detail, "ambiguous product skipped");
                    report::note(&mut self.report, "ambiguous", || {
                        product_item(p.id, None, &p.name, Some(detail))
                    });
                }
            }
        }
        if dry {
            for (p, u, key) in &upserts {
                report::note(&mut self.report, key, || {
                    product_item(p.id, u.id.as_deref(), &p.name, None)
                });
            }
            for (p, _, l) in &adopted {
                report::note(&mut self.report, "link", || {
                    product_item(p.id, Some(&l.shop_id), &p.name, None)
                });
            }
            return Ok(());
        }
        // Before any create is sent, the checkpoint says which products this step creates:
        // a crash after the shop stored them but before their links were saved is then
        // recovered by their external id (see `MatchKey::trusts_external_id`).
        let creates: Vec<i64> = upserts
            .iter()
            .filter(|(_, u, _)| u.id.is_none())
            .map(|(p, _, _)| p.id)
            .collect();
        if !creates.is_empty() {
            let mut all: BTreeSet<i64> = creating.clone();
            all.extend(creates);
            self.cp.creating = all.into_iter().collect();
            self.save().await?;
        }
        let mut new_links = Vec::new();
        let mut applied = Vec::new();
        let batch = self.e.cfg.shop_batch.max(1);
        for chunk in upserts.chunks(batch) {
            let writes: Vec<ProductUpsert> = chunk.iter().map(|(_, u, _)| u.clone()).collect();
            let results = self.upsert_isolated(&writes).await?;
            for ((p, u, key), res) in chunk.iter().zip(results) {
                match res {
                    Ok(r) => {
                        let cat = self.shop_category(p.category_id);
                        new_links.push(link_after_upsert(p, &r, cat));
                        applied.push(p.id);
                        report::note(&mut self.report, key, || {
                            product_item(p.id, Some(&r.id), &p.name, None)
                        });
                    }
                    Err(e) => report::error(
                        &mut self.report,
                        product_item(p.id, u.id.as_deref(), &p.name, Some(e.to_string())),
                    ),
                }
            }
        }
        let prices: Vec<VariantPriceChange> =
            adopted.iter().flat_map(|(_, c, _)| c.clone()).collect();
        let failed = self.write_prices(&prices).await?;
        for (p, _, l) in adopted {
            if failed.contains(&l.shop_id) {
                continue;
            }
            report::note(&mut self.report, "link", || {
                product_item(p.id, Some(&l.shop_id), &p.name, None)
            });
            applied.push(p.id);
            new_links.push(l);
        }
        if !new_links.is_empty() {
            self.links()
                .put_products(self.links_id(), &new_links)
                .await?;
        }
        if !applied.is_empty() {
            self.links()
                .delete_staged(self.links_id(), &applied)
                .await?;
        }
        // Linked now (or refused): nothing of this step is in flight any more.
        self.cp.creating.clear();
        Ok(())
    }

    // ------------------------------------------------------------------ sweep

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
