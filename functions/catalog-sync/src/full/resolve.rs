//! The resolve phase: staged (unlinked) KeyCRM products matched against the shop's products
//! and created, adopted, skipped or reported as ambiguous.

use crate::checkpoint::{Listing, Phase};
use crate::error::SyncError;
use crate::report;
use crate::run::{product_item, Run, Step};
use mapping::catalog::{
    link_after_upsert, plan_adopt, plan_create, resolve, CrmProduct, Matcher, ProductLink,
    Resolution, ResolveContext, ShopIndex,
};
use shop::{ProductUpsert, VariantPriceChange};
use std::collections::{BTreeSet, HashMap, HashSet};

impl Run<'_> {
    /// What resolving needs in memory: the shop's index (by the connection's match key) and
    /// the KeyCRM-side counts. Rebuilt in each invocation that resolves (it is derived data,
    /// never checkpointed).
    async fn build_resolver(&self) -> Result<Matcher, SyncError> {
        let mut index = ShopIndex::new(self.settings().match_key);
        let mut cursor = None;
        loop {
            let (page, next) = self
                .shop()
                .products_page(self.shop_id(), cursor, self.cfg.shop_page)
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
                2 * self.cfg.shop_batch.max(1),
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
        crate::run::clear_staged(self.links(), self.links_id()).await?;
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
        let batch = self.cfg.shop_batch.max(1);
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
}
