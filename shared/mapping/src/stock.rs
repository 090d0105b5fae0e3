//! Realtime stock: the pure rules behind KeyCRM's stock webhook. The webhook is only a signal
//! (no timestamp, retried and reordered); the connector reads the current stock of the
//! signalled offers and writes the shop only where availability changed.
//!
//! Two records say what the shop holds for a variant: the catalog link (written by the
//! catalog sync and by realtime stock) and realtime stock's own record of its last write.
//! The catalog sync may rewrite a link from a copy it read before a realtime write, so the
//! link alone can be stale; a variant is written when the current availability differs from
//! either record, which keeps the shop right whichever writer went last, and costs nothing
//! when both agree (the normal case).

use crate::catalog::ProductLink;
use crate::settings::Settings;
use crate::shop::VariantPriceChange;
use std::collections::HashMap;

/// Most offer ids one `GET /offers/stocks` request carries (KeyCRM's page size).
pub const OFFERS_PER_REQUEST: usize = 50;

impl Settings {
    /// Whether stock webhooks are acted on: realtime stock on, and products synced at all.
    pub fn realtime_stock_active(&self) -> bool {
        self.sync_products && self.realtime_stock
    }
}

/// Whether availability `now` must be written, given what the link records and what
/// realtime stock last wrote (`None`: never written / unknown).
pub fn needs_write(link: Option<bool>, last_written: Option<bool>, now: bool) -> bool {
    link != Some(now) || last_written.is_some_and(|w| w != now)
}

/// What happened to one signalled offer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OfferOutcome {
    /// Availability changed: written to the shop.
    Changed,
    /// Availability as the shop already has it.
    Unchanged,
    /// Not linked to a shop variant by this connection (other category, ambiguous, not yet
    /// synced, or not a KeyCRM offer at all).
    Unlinked,
    /// Linked, but the catalog sync owns it for now: its product was swept as missing or the
    /// variant vanished from KeyCRM.
    Skipped,
    /// Linked, but KeyCRM no longer lists the offer (deleted): the next full sync handles it.
    NotFound,
}

impl OfferOutcome {
    /// The journal counter / report key.
    pub fn label(self) -> &'static str {
        match self {
            OfferOutcome::Changed => "stock_changed",
            OfferOutcome::Unchanged => "stock_unchanged",
            OfferOutcome::Unlinked => "stock_unlinked",
            OfferOutcome::Skipped => "stock_skipped",
            OfferOutcome::NotFound => "stock_not_found",
        }
    }
}

/// Everything one chunk of signalled offers needs, read beforehand.
#[derive(Clone, Debug, Default)]
pub struct ChunkInput {
    /// Offer id → KeyCRM product id, for linked offers.
    pub products: HashMap<i64, i64>,
    /// The product links, by KeyCRM product id.
    pub links: HashMap<i64, ProductLink>,
    /// Offer id → availability realtime stock last wrote.
    pub last_written: HashMap<i64, bool>,
    /// Offer id → available now (`quantity - reserve > 0` over all warehouses); offers KeyCRM
    /// did not return are absent.
    pub available: HashMap<i64, bool>,
}

/// The writes of one chunk.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChunkPlan {
    /// Availability-only changes, grouped by nothing (one shop call carries them all).
    pub changes: Vec<VariantPriceChange>,
    /// `(offer id, KeyCRM product id, availability)` of every change, to record after the
    /// shop accepted it.
    pub written: Vec<(i64, i64, bool)>,
    /// `(offer id, outcome)` for every offer of the chunk, in order.
    pub outcomes: Vec<(i64, OfferOutcome)>,
}

impl ChunkPlan {
    pub fn count(&self, outcome: OfferOutcome) -> u64 {
        self.outcomes.iter().filter(|(_, o)| *o == outcome).count() as u64
    }
}

/// Plans the availability writes for a chunk of signalled offers (each offer once).
pub fn plan_chunk(offers: &[i64], input: &ChunkInput) -> ChunkPlan {
    let mut plan = ChunkPlan::default();
    for &offer in offers {
        let outcome = plan_offer(offer, input, &mut plan);
        plan.outcomes.push((offer, outcome));
    }
    plan
}

fn plan_offer(offer: i64, input: &ChunkInput, plan: &mut ChunkPlan) -> OfferOutcome {
    let Some(&product) = input.products.get(&offer) else {
        return OfferOutcome::Unlinked;
    };
    let Some(link) = input.links.get(&product) else {
        return OfferOutcome::Unlinked;
    };
    let Some(variant) = link.variants.iter().find(|v| v.offer_id == offer) else {
        return OfferOutcome::Unlinked;
    };
    if link.swept.is_some() || variant.gone {
        return OfferOutcome::Skipped;
    }
    let Some(&now) = input.available.get(&offer) else {
        return OfferOutcome::NotFound;
    };
    if !needs_write(
        variant.available,
        input.last_written.get(&offer).copied(),
        now,
    ) {
        return OfferOutcome::Unchanged;
    }
    plan.changes.push(VariantPriceChange {
        product_id: link.shop_id.clone(),
        variant_id: variant.shop_id.clone(),
        price: None,
        available: Some(now),
    });
    plan.written.push((offer, product, now));
    OfferOutcome::Changed
}

/// Records written availabilities in the links; returns the KeyCRM ids of the links changed.
pub fn record_in_links(
    links: &mut HashMap<i64, ProductLink>,
    written: &[(i64, i64, bool)],
) -> Vec<i64> {
    let mut touched = Vec::new();
    for &(offer, product, available) in written {
        let Some(link) = links.get_mut(&product) else {
            continue;
        };
        if let Some(v) = link.variants.iter_mut().find(|v| v.offer_id == offer) {
            if v.available != Some(available) {
                v.available = Some(available);
                if !touched.contains(&product) {
                    touched.push(product);
                }
            }
        }
    }
    touched
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Swept, VariantLink};

    #[test]
    fn the_active_switch_needs_product_sync() {
        let mut s = Settings {
            realtime_stock: true,
            ..Settings::default()
        };
        assert!(!s.realtime_stock_active());
        s.sync_products = true;
        assert!(s.realtime_stock_active());
        s.realtime_stock = false;
        assert!(!s.realtime_stock_active());
    }

    #[test]
    fn the_switch_is_saved_and_defaults_off_for_older_documents() {
        let on = Settings {
            sync_products: true,
            realtime_stock: true,
            ..Settings::default()
        };
        let text = serde_json::to_string(&on).unwrap();
        assert!(text.contains("\"realtime_stock\":true"), "{text}");
        let back: Settings = serde_json::from_str(&text).unwrap();
        assert!(back.realtime_stock_active());
        let old: Settings = serde_json::from_str(r#"{"sync_products":true}"#).unwrap();
        assert!(!old.realtime_stock);
    }

    #[test]
    fn writes_when_either_record_differs() {
        // every combination of link, last write and the current availability
        for link in [None, Some(false), Some(true)] {
            for written in [None, Some(false), Some(true)] {
                for now in [false, true] {
                    let want = link != Some(now) || written == Some(!now);
                    assert_eq!(
                        needs_write(link, written, now),
                        want,
                        "{link:?} {written:?} {now}"
                    );
                }
            }
        }
        assert!(!needs_write(Some(true), Some(true), true));
        assert!(!needs_write(Some(true), None, true), "never written by us");
        assert!(
            needs_write(Some(true), Some(false), true),
            "the link was rewritten from a stale copy; our last write says otherwise"
        );
    }

    fn link(k: i64, variants: &[(i64, Option<bool>)]) -> ProductLink {
        ProductLink {
            keycrm_id: k,
            shop_id: format!("p{k}"),
            hash: 1,
            swept: None,
            variants: variants
                .iter()
                .map(|(o, a)| VariantLink {
                    offer_id: *o,
                    shop_id: format!("v{o}"),
                    hash: 1,
                    price: None,
                    available: *a,
                    gone: false,
                })
                .collect(),
        }
    }

    fn input() -> ChunkInput {
        let mut links = HashMap::new();
        links.insert(
            10,
            link(
                10,
                &[(1, Some(true)), (2, Some(true)), (3, None), (8, Some(true))],
            ),
        );
        let mut swept = link(20, &[(4, Some(true))]);
        swept.swept = Some(Swept::Hidden);
        links.insert(20, swept);
        let mut gone = link(30, &[(5, Some(true))]);
        gone.variants[0].gone = true;
        links.insert(30, gone);
        ChunkInput {
            products: [
                (1, 10),
                (2, 10),
                (3, 10),
                (4, 20),
                (5, 30),
                (6, 10),
                (7, 99),
                (8, 10),
            ]
            .into_iter()
            .collect(),
            links,
            last_written: [(2, true)].into_iter().collect(),
            available: [(1, false), (2, true), (3, true), (4, false), (5, false)]
                .into_iter()
                .collect(),
        }
    }

    #[test]
    fn plans_one_outcome_per_offer_and_writes_only_changes() {
        let offers = [1, 2, 3, 4, 5, 6, 7, 8, 9];
        let p = plan_chunk(&offers, &input());
        use OfferOutcome::*;
        assert_eq!(
            p.outcomes,
            vec![
                (1, Changed),
                (2, Unchanged),
                (3, Changed),
                (4, Skipped),
                (5, Skipped),
                (6, Unlinked),
                (7, Unlinked),
                (8, NotFound),
                (9, Unlinked),
            ]
        );
        assert_eq!(
            p.changes,
            vec![
                VariantPriceChange {
                    product_id: "p10".into(),
                    variant_id: "v1".into(),
                    price: None,
                    available: Some(false)
                },
                VariantPriceChange {
                    product_id: "p10".into(),
                    variant_id: "v3".into(),
                    price: None,
                    available: Some(true)
                },
            ]
        );
        assert_eq!(p.written, vec![(1, 10, false), (3, 10, true)]);
        assert_eq!((p.count(Changed), p.count(Unlinked)), (2, 3));
        assert_eq!(OfferOutcome::Unlinked.label(), "stock_unlinked");
    }

    #[test]
    fn records_written_availability_in_the_links() {
        let mut i = input();
        let touched = record_in_links(
            &mut i.links,
            &[(1, 10, false), (3, 10, true), (7, 99, true)],
        );
        assert_eq!(touched, vec![10]);
        let v = &i.links[&10].variants;
        assert_eq!((v[0].available, v[2].available), (Some(false), Some(true)));
        assert!(
            record_in_links(&mut i.links, &[(1, 10, false)]).is_empty(),
            "already so"
        );
    }
}
