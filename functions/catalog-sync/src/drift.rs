//! Drift repair: the shop's prices and availability brought back to KeyCRM's where they were
//! changed in the shop (a merchant's edit, an import, a restore, a write the platform
//! acknowledged and lost). Change detection elsewhere compares KeyCRM with what the connector
//! last wrote, so without this phase such an edit would stay until the offer changed in
//! KeyCRM.
//!
//! It runs at the end of a full run (after the catalog pass has brought every link up to date
//! with KeyCRM) and of a price run that is due ([`drift_due`]): the shop's product index is
//! read page by page (the position is checkpointed), each listed product's link is found by its
//! reverse pointer, and only variants whose price or availability differ from the link are
//! written ([`mapping::catalog::drift_changes`]). No KeyCRM request is made.
//!
//! The reverse pointers are read all at once per invocation (`LinkStore::owners_page`, a
//! `Query` of items of about 100 bytes) rather than per page by key: the repair compares every
//! shop product, and a read by key costs a whole read unit per pointer (in the fleet benchmark
//! half of a typical shop's drift cost). Only the catalog sync writes reverse pointers, and a
//! connection's runs never overlap, so the copy cannot go stale under the repair; the links
//! themselves, which realtime stock updates, are still read per page.

use crate::checkpoint::{Listing, Phase};
use crate::error::SyncError;
use crate::report;
use crate::run::{product_item, Run, Step};
use chrono::{DateTime, Utc};
use mapping::catalog::{drift_changes, ProductLink};
use std::collections::HashMap;
use store::ConnectionStatus;

/// A price run repairs drift when no run has done it for this long: with price runs every
/// 4 hours and the daily full run repairing too, the shop is compared at least once a day.
pub const DRIFT_EVERY: chrono::Duration = chrono::Duration::hours(20);

/// The count a run records once its drift repair is complete (shop products compared).
pub const DRIFT_CHECKED: &str = "drift_checked";

/// Whether a scheduled price run should repair drift: no full or price run of this
/// connection completed a drift repair within [`DRIFT_EVERY`] of `now`.
pub fn drift_due(status: &ConnectionStatus, now: DateTime<Utc>) -> bool {
    !status.last_sync.values().any(|s| {
        s.counts.contains_key(DRIFT_CHECKED) && s.finished_at.is_some_and(|t| now - t < DRIFT_EVERY)
    })
}

impl Run<'_> {
    /// One page of the shop's product index compared with the links, differences written.
    pub(crate) async fn drift(&mut self) -> Result<Step, SyncError> {
        let cursor = match &self.cp.shop {
            Listing::Start => None,
            Listing::Next(c) => Some(c.clone()),
            Listing::Done => return Ok(self.drift_done()),
        };
        let (page, next) = self
            .shop()
            .products_page(self.shop_id(), cursor, self.cfg.shop_page)
            .await?;
        let owners = self.owners_index().await?;
        let mut keycrm_ids: Vec<i64> = page
            .iter()
            .filter_map(|p| owners.get(&p.id).copied())
            .collect();
        keycrm_ids.sort_unstable();
        keycrm_ids.dedup();
        let links: HashMap<i64, ProductLink> = if keycrm_ids.is_empty() {
            HashMap::new()
        } else {
            self.links()
                .get_products(self.links_id(), &keycrm_ids)
                .await?
                .into_iter()
                .map(|l| (l.keycrm_id, l))
                .collect()
        };
        let mut changes = Vec::new();
        for p in &page {
            let Some(link) = owners.get(&p.id).and_then(|k| links.get(k)) else {
                continue;
            };
            for c in drift_changes(link, p) {
                report::note(&mut self.report, "drift_repaired", || {
                    let shop_v = p.variants.iter().find(|v| v.id == c.variant_id);
                    let mut what = Vec::new();
                    if let Some(price) = c.price {
                        let had = shop_v
                            .and_then(|v| v.price)
                            .map(|x| x.to_string())
                            .unwrap_or_else(|| "none".into());
                        what.push(format!("price {had} → {price}"));
                    }
                    if let Some(a) = c.available {
                        what.push(format!("available {} → {a}", !a));
                    }
                    product_item(
                        link.keycrm_id,
                        Some(&p.id),
                        &p.name,
                        Some(format!(
                            "variant {}: the shop held {}; KeyCRM's value written back",
                            c.variant_id,
                            what.join(", ")
                        )),
                    )
                });
                changes.push(c);
            }
        }
        self.cp.drift_checked += page.len() as u64;
        if !self.cp.dry_run && !changes.is_empty() {
            // Refusals are reported per variant; the links stay as they are (KeyCRM's values).
            self.write_prices(&changes).await?;
        }
        self.cp.shop = Listing::from_cursor(next);
        if self.cp.shop.is_done() {
            return Ok(self.drift_done());
        }
        Ok(Step::Continue)
    }

    /// Every reverse pointer of the connection, read once in this invocation.
    async fn owners_index(&mut self) -> Result<std::sync::Arc<HashMap<String, i64>>, SyncError> {
        if self.owners.is_none() {
            let mut all = HashMap::new();
            let mut after = None;
            loop {
                let (page, next) = self
                    .links()
                    .owners_page(self.links_id(), after, 1000)
                    .await?;
                all.extend(page);
                match next {
                    Some(n) => after = Some(n),
                    None => break,
                }
            }
            self.owners = Some(std::sync::Arc::new(all));
        }
        Ok(self.owners.clone().unwrap_or_default())
    }

    fn drift_done(&mut self) -> Step {
        // Recorded once, at the end: its presence in a run's counts means the repair finished.
        let checked = self.cp.drift_checked;
        self.report
            .counts
            .insert(DRIFT_CHECKED.to_string(), checked);
        self.cp.phase = Phase::Done;
        Step::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::SyncSummary;

    fn summary(at: DateTime<Utc>, repaired: bool) -> SyncSummary {
        let mut s = SyncSummary {
            run_id: "r".into(),
            finished_at: Some(at),
            complete: true,
            ..SyncSummary::default()
        };
        if repaired {
            s.counts.insert(DRIFT_CHECKED.into(), 10);
        }
        s
    }

    #[test]
    fn a_price_run_repairs_drift_once_nothing_did_for_twenty_hours() {
        let now = Utc::now();
        let mut st = ConnectionStatus::default();
        assert!(drift_due(&st, now), "never repaired");
        st.last_sync.insert(
            "prices".into(),
            summary(now - chrono::Duration::hours(1), false),
        );
        assert!(
            drift_due(&st, now),
            "a price run without the repair does not count"
        );
        st.last_sync.insert(
            "full".into(),
            summary(now - chrono::Duration::hours(3), true),
        );
        assert!(!drift_due(&st, now), "the night's full run repaired it");
        st.last_sync.insert(
            "full".into(),
            summary(now - chrono::Duration::hours(21), true),
        );
        assert!(drift_due(&st, now));
        st.last_sync.insert(
            "prices".into(),
            summary(now - chrono::Duration::hours(19), true),
        );
        assert!(!drift_due(&st, now));
    }
}
