//! The price sync: price and availability (from stock) of linked variants, read 50 offers per
//! `/offers/stocks` request by id, written only where they changed.

use crate::checkpoint::{Listing, Phase};
use crate::error::SyncError;
use crate::report;
use crate::run::{Run, Step};
use mapping::catalog::{apply_price_change, price_change, ProductLink, PAGE};
use rust_decimal::Decimal;
use std::collections::HashMap;

impl Run<'_> {
    pub(crate) async fn prices(&mut self) -> Result<Step, SyncError> {
        let per_request = PAGE as usize;
        // Queue offer ids from the links until a full request's worth is waiting; leftovers
        // carry over to the next links page, so requests stay full.
        while self.cp.queue.len() < per_request && !self.cp.links.is_done() {
            let after = match &self.cp.links {
                Listing::Next(c) => Some(c.clone()),
                _ => None,
            };
            let (page, next) = self
                .links()
                .products_page(self.links_id(), after, self.cfg.links_page)
                .await?;
            for l in page.into_iter().filter(|l| l.swept.is_none()) {
                for v in l.variants.iter().filter(|v| !v.gone) {
                    self.cp.queue.push((l.keycrm_id, v.offer_id.to_string()));
                }
                self.price_links.insert(l.keycrm_id, l);
            }
            self.cp.links = Listing::from_cursor(next);
        }
        if self.cp.queue.is_empty() {
            self.cp.phase = if self.cp.drift {
                Phase::Drift
            } else {
                Phase::Done
            };
            return Ok(Step::Continue);
        }
        let n = self.cp.queue.len().min(per_request);
        let chunk: Vec<(i64, i64)> = self.cp.queue[..n]
            .iter()
            .filter_map(|(k, o)| o.parse().ok().map(|o| (*k, o)))
            .collect();
        self.price_chunk(&chunk).await?;
        self.cp.queue.drain(..n);
        // Keep only the links still waiting in the queue.
        let waiting: std::collections::HashSet<i64> =
            self.cp.queue.iter().map(|(k, _)| *k).collect();
        self.price_links.retain(|k, _| waiting.contains(k));
        Ok(Step::Continue)
    }

    async fn price_chunk(&mut self, chunk: &[(i64, i64)]) -> Result<(), SyncError> {
        let offer_ids: Vec<i64> = chunk.iter().map(|(_, o)| *o).collect();
        let mut stocks: HashMap<i64, (Option<Decimal>, bool)> = HashMap::new();
        let mut pages = self.client.offer_stocks(&offer_ids);
        while let Some(page) = pages.next_page().await? {
            self.units += 1;
            for s in page.data {
                stocks.insert(s.id, (s.price, s.available() > Decimal::ZERO));
            }
        }
        // Links come from this invocation's reads; after a resume, from the store.
        let mut links: HashMap<i64, ProductLink> = HashMap::new();
        let mut missing = Vec::new();
        for (k, _) in chunk {
            if links.contains_key(k) {
                continue;
            }
            match self.price_links.get(k) {
                Some(l) => {
                    links.insert(*k, l.clone());
                }
                None => missing.push(*k),
            }
        }
        if !missing.is_empty() {
            for l in self.links().get_products(self.links_id(), &missing).await? {
                links.insert(l.keycrm_id, l);
            }
        }
        let mut changes = Vec::new();
        let mut touched: Vec<i64> = Vec::new();
        for (kid, oid) in chunk {
            let Some(link) = links.get_mut(kid) else {
                continue;
            };
            let shop_product = link.shop_id.clone();
            let Some(v) = link.variants.iter_mut().find(|v| v.offer_id == *oid) else {
                continue;
            };
            let Some((price, available)) = stocks.get(oid).copied() else {
                // Deleted since the last full sync: the next one's sweep handles it.
                report::count(&mut self.report, "not_found", 1);
                continue;
            };
            match price_change(&shop_product, v, price, Some(available)) {
                Some(c) => {
                    report::count(&mut self.report, "price_changed", 1);
                    report::sample(
                        &mut self.report,
                        "price_changed",
                        report::item(
                            Some(*kid),
                            Some(&shop_product),
                            "",
                            Some(format!(
                                "offer {oid}: price {} → {}, available {:?} → {:?}",
                                v.price.map(|p| p.to_string()).unwrap_or_else(|| "—".into()),
                                c.price
                                    .or(v.price)
                                    .map(|p| p.to_string())
                                    .unwrap_or_else(|| "—".into()),
                                v.available,
                                c.available.or(v.available),
                            )),
                        ),
                    );
                    apply_price_change(v, &c);
                    changes.push(c);
                    if !touched.contains(kid) {
                        touched.push(*kid);
                    }
                }
                None => report::count(&mut self.report, "unchanged", 1),
            }
        }
        if self.cp.dry_run || changes.is_empty() {
            return Ok(());
        }
        let failed = self.write_prices(&changes).await?;
        for k in &touched {
            if let (Some(l), true) = (links.get(k), self.price_links.contains_key(k)) {
                if !failed.contains(&l.shop_id) {
                    self.price_links.insert(*k, l.clone());
                }
            }
        }
        let updated: Vec<ProductLink> = touched
            .iter()
            .filter_map(|k| links.remove(k))
            .filter(|l| !failed.contains(&l.shop_id))
            .collect();
        self.links().put_products(self.links_id(), &updated).await?;
        Ok(())
    }
}
