//! The categories phase: KeyCRM categories written to the shop parents first, and the sweep of
//! categories that vanished from KeyCRM.

use crate::checkpoint::Phase;
use crate::error::SyncError;
use crate::report;
use crate::run::{Run, Step};
use keycrm::models::Category;
use mapping::catalog::{
    category_hash, category_levels, category_upsert, descendants, missing_category_change,
    restore_category_change, vanish_guard, vanished_categories, with_ancestors, CategoryLink,
    GuardVerdict,
};
use std::collections::{BTreeSet, HashMap};

impl Run<'_> {
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
}
