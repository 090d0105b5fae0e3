//! Order status mapping in both directions.
//!
//! - **KeyCRM → shop** (`from_keycrm`): which shop status a KeyCRM status (or, for pipeline
//!   cards, a pipeline and status) stands for. KeyCRM accounts have many more statuses than
//!   shops, so any number of KeyCRM statuses may lead to one shop status; each KeyCRM status
//!   appears at most once.
//! - **shop → KeyCRM** (`to_keycrm`): the one KeyCRM status (or pipeline and status) a shop
//!   status becomes when an order is created or its status changes in the shop. Each shop
//!   status appears at most once.
//!
//! The two must agree: if shop status X becomes KeyCRM status K, K must not lead back to
//! another shop status Y, or the echo of every push would turn X into Y in the shop.

use crate::reference::KeycrmReference;
use crate::settings_limits::{id_issue, too_many, MAX_KEYCRM_STATUS_LINKS, MAX_SHOP_STATUS_LINKS};
use crate::settings_problem::{Issue, Problem};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// KeyCRM order status → shop status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderStatusFrom {
    pub keycrm_status_id: i64,
    pub shop_status: String,
}

/// Shop status → KeyCRM order status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderStatusTo {
    pub shop_status: String,
    pub keycrm_status_id: i64,
}

/// Both directions for KeyCRM orders (`order_sync: orders`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderStatusMap {
    #[serde(default)]
    pub from_keycrm: Vec<OrderStatusFrom>,
    #[serde(default)]
    pub to_keycrm: Vec<OrderStatusTo>,
}

/// KeyCRM pipeline card status (pipeline + status) → shop status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardStatusFrom {
    pub pipeline_id: i64,
    pub status_id: i64,
    pub shop_status: String,
}

/// Shop status → KeyCRM pipeline and status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardStatusTo {
    pub shop_status: String,
    pub pipeline_id: i64,
    pub status_id: i64,
}

/// Both directions for pipeline cards (`order_sync: pipelines`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardStatusMap {
    #[serde(default)]
    pub from_keycrm: Vec<CardStatusFrom>,
    #[serde(default)]
    pub to_keycrm: Vec<CardStatusTo>,
}

impl OrderStatusMap {
    pub fn is_empty(&self) -> bool {
        self.from_keycrm.is_empty() && self.to_keycrm.is_empty()
    }

    /// The shop status a KeyCRM order status stands for.
    pub fn shop_status_for(&self, keycrm_status_id: i64) -> Option<&str> {
        self.from_keycrm
            .iter()
            .find(|l| l.keycrm_status_id == keycrm_status_id)
            .map(|l| l.shop_status.as_str())
    }

    /// The KeyCRM order status a shop status becomes.
    pub fn keycrm_status_for(&self, shop_status: &str) -> Option<i64> {
        self.to_keycrm
            .iter()
            .find(|l| l.shop_status == shop_status)
            .map(|l| l.keycrm_status_id)
    }

    /// Builds the map from the single-direction list saved before both directions existed:
    /// every entry says where a shop status goes, and a KeyCRM status comes back as the
    /// first shop status listed for it (how that list was read).
    pub fn from_legacy(pairs: impl IntoIterator<Item = (String, i64)>) -> Self {
        let mut m = OrderStatusMap::default();
        let mut back = BTreeSet::new();
        // Shop statuses with a `to_keycrm` entry already: a set, not a scan of the list, so a
        // long legacy list from a request costs n log n, not n².
        let mut to = BTreeSet::new();
        for (shop_status, keycrm_status_id) in pairs {
            if back.insert(keycrm_status_id) {
                m.from_keycrm.push(OrderStatusFrom {
                    keycrm_status_id,
                    shop_status: shop_status.clone(),
                });
            }
            if to.insert(shop_status.clone()) {
                m.to_keycrm.push(OrderStatusTo {
                    shop_status,
                    keycrm_status_id,
                });
            }
        }
        m
    }

    /// Every problem with the references and the consistency of both directions. `shop`
    /// holds the shop's status ids; `field` is the settings key (`order_statuses`).
    pub fn check(
        &self,
        field: &str,
        crm: &KeycrmReference,
        shop: &BTreeSet<&str>,
        out: &mut Vec<Problem>,
    ) {
        // KeyCRM status -> (position, shop status), for the duplicate and consistency rules.
        let mut back: BTreeMap<i64, (usize, &str)> = BTreeMap::new();
        let (from, to) = bounded(field, &self.from_keycrm, &self.to_keycrm, out);
        for (i, l) in from.iter().enumerate() {
            let f = format!("{field}.from_keycrm[{i}]");
            if crm.order_status(l.keycrm_status_id).is_none() {
                out.push(Problem::new(
                    format!("{f}.keycrm_status_id"),
                    Issue::UnknownKeycrmStatus(l.keycrm_status_id),
                ));
            }
            known_shop_status(&f, &l.shop_status, shop, out);
            match back.get(&l.keycrm_status_id) {
                Some((first, _)) => out.push(Problem::new(
                    format!("{f}.keycrm_status_id"),
                    Issue::KeycrmStatusMappedTwice {
                        first: format!("{field}.from_keycrm[{first}]"),
                    },
                )),
                None => {
                    back.insert(l.keycrm_status_id, (i, l.shop_status.as_str()));
                }
            }
        }
        let mut seen = BTreeSet::new();
        for (i, l) in to.iter().enumerate() {
            let f = format!("{field}.to_keycrm[{i}]");
            let known_shop = known_shop_status(&f, &l.shop_status, shop, out);
            if known_shop && !seen.insert(l.shop_status.as_str()) {
                out.push(Problem::new(
                    format!("{f}.shop_status"),
                    Issue::ShopStatusMappedTwice {
                        shop_status: l.shop_status.clone(),
                    },
                ));
            }
            let status = crm.order_status(l.keycrm_status_id);
            if status.is_none() {
                out.push(Problem::new(
                    format!("{f}.keycrm_status_id"),
                    Issue::UnknownKeycrmStatus(l.keycrm_status_id),
                ));
            }
            if let (Some(status), Some((j, other))) = (status, back.get(&l.keycrm_status_id)) {
                if known_shop && shop.contains(other) && *other != l.shop_status {
                    out.push(Problem::new(
                        format!("{f}.keycrm_status_id"),
                        Issue::Contradiction {
                            shop_status: l.shop_status.clone(),
                            keycrm: status.name.clone(),
                            back_to: other.to_string(),
                            other_field: format!("{field}.from_keycrm[{j}]"),
                        },
                    ));
                }
            }
        }
    }
}

impl CardStatusMap {
    pub fn is_empty(&self) -> bool {
        self.from_keycrm.is_empty() && self.to_keycrm.is_empty()
    }

    /// The shop status a card status stands for. Status ids are unique across an account,
    /// so a delivery without its pipeline is matched by the status alone.
    pub fn shop_status_for(&self, pipeline_id: Option<i64>, status_id: i64) -> Option<&str> {
        self.from_keycrm
            .iter()
            .find(|l| l.status_id == status_id && pipeline_id.is_none_or(|p| p == l.pipeline_id))
            .map(|l| l.shop_status.as_str())
    }

    /// The pipeline and status a shop status becomes.
    pub fn keycrm_status_for(&self, shop_status: &str) -> Option<(i64, i64)> {
        self.to_keycrm
            .iter()
            .find(|l| l.shop_status == shop_status)
            .map(|l| (l.pipeline_id, l.status_id))
    }

    /// See [`OrderStatusMap::from_legacy`]; pairs are `(shop status, pipeline, status)`.
    pub fn from_legacy(entries: impl IntoIterator<Item = (String, i64, i64)>) -> Self {
        let mut m = CardStatusMap::default();
        let mut back = BTreeSet::new();
        let mut to = BTreeSet::new();
        for (shop_status, pipeline_id, status_id) in entries {
            if back.insert((pipeline_id, status_id)) {
                m.from_keycrm.push(CardStatusFrom {
                    pipeline_id,
                    status_id,
                    shop_status: shop_status.clone(),
                });
            }
            if to.insert(shop_status.clone()) {
                m.to_keycrm.push(CardStatusTo {
                    shop_status,
                    pipeline_id,
                    status_id,
                });
            }
        }
        m
    }

    /// Like [`OrderStatusMap::check`], for pipelines.
    pub fn check(
        &self,
        field: &str,
        crm: &KeycrmReference,
        shop: &BTreeSet<&str>,
        out: &mut Vec<Problem>,
    ) {
        let check_pair = |f: &str, pipeline_id: i64, status_id: i64, out: &mut Vec<Problem>| {
            if crm.pipeline(pipeline_id).is_none() {
                out.push(Problem::new(
                    format!("{f}.pipeline_id"),
                    Issue::UnknownPipeline(pipeline_id),
                ));
                None
            } else if let Some(s) = crm.pipeline_status(pipeline_id, status_id) {
                Some(s.title.clone())
            } else {
                out.push(Problem::new(
                    format!("{f}.status_id"),
                    Issue::UnknownPipelineStatus {
                        pipeline: pipeline_id,
                        status: status_id,
                    },
                ));
                None
            }
        };
        let mut back: BTreeMap<(i64, i64), (usize, &str)> = BTreeMap::new();
        let (from, to) = bounded(field, &self.from_keycrm, &self.to_keycrm, out);
        for (i, l) in from.iter().enumerate() {
            let f = format!("{field}.from_keycrm[{i}]");
            check_pair(&f, l.pipeline_id, l.status_id, out);
            known_shop_status(&f, &l.shop_status, shop, out);
            match back.get(&(l.pipeline_id, l.status_id)) {
                Some((first, _)) => out.push(Problem::new(
                    format!("{f}.status_id"),
                    Issue::PipelineStatusMappedTwice {
                        first: format!("{field}.from_keycrm[{first}]"),
                    },
                )),
                None => {
                    back.insert((l.pipeline_id, l.status_id), (i, l.shop_status.as_str()));
                }
            }
        }
        let mut seen = BTreeSet::new();
        for (i, l) in to.iter().enumerate() {
            let f = format!("{field}.to_keycrm[{i}]");
            let known_shop = known_shop_status(&f, &l.shop_status, shop, out);
            if known_shop && !seen.insert(l.shop_status.as_str()) {
                out.push(Problem::new(
                    format!("{f}.shop_status"),
                    Issue::ShopStatusMappedTwice {
                        shop_status: l.shop_status.clone(),
                    },
                ));
            }
            let title = check_pair(&f, l.pipeline_id, l.status_id, out);
            if let (Some(title), Some((j, other))) =
                (title, back.get(&(l.pipeline_id, l.status_id)))
            {
                if known_shop && shop.contains(other) && *other != l.shop_status {
                    out.push(Problem::new(
                        format!("{f}.status_id"),
                        Issue::Contradiction {
                            shop_status: l.shop_status.clone(),
                            keycrm: title,
                            back_to: other.to_string(),
                            other_field: format!("{field}.from_keycrm[{j}]"),
                        },
                    ));
                }
            }
        }
    }
}

/// Both directions of a map, each emptied (with one problem at its path) when longer than
/// its maximum: its entries are then not checked one by one.
fn bounded<'a, F, T>(
    field: &str,
    from: &'a [F],
    to: &'a [T],
    out: &mut Vec<Problem>,
) -> (&'a [F], &'a [T]) {
    let mut keep =
        |list: &str, len: usize, max: usize| match too_many(&format!("{field}.{list}"), len, max) {
            Some(p) => {
                out.push(p);
                false
            }
            None => true,
        };
    let from = if keep("from_keycrm", from.len(), MAX_KEYCRM_STATUS_LINKS) {
        from
    } else {
        &[]
    };
    let to = if keep("to_keycrm", to.len(), MAX_SHOP_STATUS_LINKS) {
        to
    } else {
        &[]
    };
    (from, to)
}

/// Whether the `shop_status` of the entry at path `f` is a status the shop has; says what
/// is wrong with it when not (its shape first: a malformed id is not looked up).
fn known_shop_status(f: &str, status: &str, shop: &BTreeSet<&str>, out: &mut Vec<Problem>) -> bool {
    let issue = match id_issue(status) {
        Some(issue) => issue,
        None if shop.contains(status) => return true,
        None => Issue::UnknownShopStatus,
    };
    out.push(Problem::new(format!("{f}.shop_status"), issue));
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings_limits::MAX_ID_LEN;
    use crate::testdata::crm_reference;

    fn shop() -> BTreeSet<&'static str> {
        ["new", "paid", "done", "canceled"].into_iter().collect()
    }

    fn from(k: i64, s: &str) -> OrderStatusFrom {
        OrderStatusFrom {
            keycrm_status_id: k,
            shop_status: s.into(),
        }
    }

    fn to(s: &str, k: i64) -> OrderStatusTo {
        OrderStatusTo {
            shop_status: s.into(),
            keycrm_status_id: k,
        }
    }

    fn codes(m: &OrderStatusMap) -> Vec<(String, &'static str)> {
        let mut out = Vec::new();
        m.check("order_statuses", &crm_reference(), &shop(), &mut out);
        out.into_iter()
            .map(|p| (p.field.clone(), p.code()))
            .collect()
    }

    #[test]
    fn many_keycrm_statuses_lead_to_one_shop_status() {
        // KeyCRM 1 (new) and 3 (approval) both mean "new" in the shop; 12 and 19 close.
        let m = OrderStatusMap {
            from_keycrm: vec![
                from(1, "new"),
                from(3, "new"),
                from(12, "done"),
                from(19, "canceled"),
            ],
            to_keycrm: vec![to("new", 1), to("done", 12), to("canceled", 19)],
        };
        assert_eq!(codes(&m), vec![]);
        assert_eq!(m.shop_status_for(1), Some("new"));
        assert_eq!(m.shop_status_for(3), Some("new"));
        assert_eq!(m.shop_status_for(12), Some("done"));
        assert_eq!(m.shop_status_for(7), None);
        assert_eq!(m.keycrm_status_for("new"), Some(1));
        assert_eq!(m.keycrm_status_for("paid"), None);
    }

    #[test]
    fn each_keycrm_status_and_each_shop_status_once() {
        let m = OrderStatusMap {
            from_keycrm: vec![from(1, "new"), from(1, "paid")],
            to_keycrm: vec![to("new", 1), to("new", 3)],
        };
        assert_eq!(
            codes(&m),
            vec![
                (
                    "order_statuses.from_keycrm[1].keycrm_status_id".into(),
                    "keycrm_status_mapped_twice"
                ),
                (
                    "order_statuses.to_keycrm[1].shop_status".into(),
                    "shop_status_mapped_twice"
                ),
            ]
        );
    }

    #[test]
    fn a_push_whose_echo_would_flip_the_shop_status_is_contradictory() {
        // "paid" goes to KeyCRM 3, but 3 comes back as "new".
        let m = OrderStatusMap {
            from_keycrm: vec![from(1, "new"), from(3, "new")],
            to_keycrm: vec![to("new", 1), to("paid", 3)],
        };
        let mut out = Vec::new();
        m.check("order_statuses", &crm_reference(), &shop(), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].field, "order_statuses.to_keycrm[1].keycrm_status_id");
        assert_eq!(out[0].code(), "contradicts_from_keycrm");
        let msg = out[0].message(crate::Lang::En);
        assert!(
            msg.contains("\"paid\"") && msg.contains("\"new\"") && msg.contains("from_keycrm[1]"),
            "{msg}"
        );
        // A KeyCRM status the shop never hears about is no contradiction: its echo is ignored.
        let m = OrderStatusMap {
            from_keycrm: vec![from(1, "new")],
            to_keycrm: vec![to("new", 1), to("paid", 3)],
        };
        assert_eq!(codes(&m), vec![]);
    }

    #[test]
    fn dangling_references_on_both_sides_are_named() {
        let m = OrderStatusMap {
            from_keycrm: vec![from(777, "new"), from(1, "ghost")],
            to_keycrm: vec![to("ghost", 1), to("new", 778)],
        };
        assert_eq!(
            codes(&m),
            vec![
                (
                    "order_statuses.from_keycrm[0].keycrm_status_id".into(),
                    "unknown_keycrm_status"
                ),
                (
                    "order_statuses.from_keycrm[1].shop_status".into(),
                    "unknown_shop_status"
                ),
                (
                    "order_statuses.to_keycrm[0].shop_status".into(),
                    "unknown_shop_status"
                ),
                (
                    "order_statuses.to_keycrm[1].keycrm_status_id".into(),
                    "unknown_keycrm_status"
                ),
            ]
        );
    }

    #[test]
    fn a_direction_past_its_maximum_is_one_problem_and_the_other_is_still_checked() {
        let m = OrderStatusMap {
            from_keycrm: vec![from(1, "new"); MAX_KEYCRM_STATUS_LINKS + 1],
            to_keycrm: vec![to("ghost", 1), to("paid", 1)],
        };
        // "paid" -> 1 would contradict 1 -> "new", but that direction is not read.
        assert_eq!(
            codes(&m),
            vec![
                ("order_statuses.from_keycrm".into(), "too_many_entries"),
                (
                    "order_statuses.to_keycrm[0].shop_status".into(),
                    "unknown_shop_status"
                ),
            ]
        );
        let m = CardStatusMap {
            from_keycrm: vec![cfrom(1, 101, &"n".repeat(MAX_ID_LEN + 1))],
            to_keycrm: vec![cto("new", 1, 101); MAX_SHOP_STATUS_LINKS + 1],
        };
        assert_eq!(
            card_codes(&m),
            vec![
                ("card_statuses.to_keycrm".into(), "too_many_entries"),
                (
                    "card_statuses.from_keycrm[0].shop_status".into(),
                    "too_long"
                ),
            ]
        );
        // At the maxima, entries are checked one by one again.
        let m = OrderStatusMap {
            from_keycrm: vec![from(1, "new"); MAX_KEYCRM_STATUS_LINKS],
            to_keycrm: vec![to("new\n", 1)],
        };
        let c = codes(&m);
        assert_eq!(c.len(), MAX_KEYCRM_STATUS_LINKS);
        assert_eq!(
            c.last(),
            Some(&(
                "order_statuses.to_keycrm[0].shop_status".into(),
                "invalid_characters"
            ))
        );
    }

    #[test]
    fn legacy_lists_become_both_directions_first_listed_wins_back() {
        let m = OrderStatusMap::from_legacy([
            ("new".to_string(), 1),
            ("paid".to_string(), 3),
            ("packed".to_string(), 3),
            ("done".to_string(), 12),
        ]);
        assert_eq!(
            m.to_keycrm,
            vec![to("new", 1), to("paid", 3), to("packed", 3), to("done", 12)]
        );
        assert_eq!(
            m.from_keycrm,
            vec![from(1, "new"), from(3, "paid"), from(12, "done")]
        );
    }

    fn cfrom(p: i64, s: i64, shop: &str) -> CardStatusFrom {
        CardStatusFrom {
            pipeline_id: p,
            status_id: s,
            shop_status: shop.into(),
        }
    }

    fn cto(shop: &str, p: i64, s: i64) -> CardStatusTo {
        CardStatusTo {
            shop_status: shop.into(),
            pipeline_id: p,
            status_id: s,
        }
    }

    fn card_codes(m: &CardStatusMap) -> Vec<(String, &'static str)> {
        let mut out = Vec::new();
        m.check("card_statuses", &crm_reference(), &shop(), &mut out);
        out.into_iter()
            .map(|p| (p.field.clone(), p.code()))
            .collect()
    }

    #[test]
    fn card_statuses_of_any_pipeline_lead_to_shop_statuses() {
        let m = CardStatusMap {
            from_keycrm: vec![
                cfrom(1, 101, "new"),
                cfrom(1, 102, "paid"),
                cfrom(2, 201, "canceled"),
            ],
            to_keycrm: vec![cto("new", 1, 101), cto("paid", 1, 102)],
        };
        assert_eq!(card_codes(&m), vec![]);
        assert_eq!(m.shop_status_for(Some(2), 201), Some("canceled"));
        assert_eq!(m.shop_status_for(None, 201), Some("canceled"));
        assert_eq!(m.shop_status_for(Some(1), 201), None, "wrong pipeline");
        assert_eq!(m.keycrm_status_for("paid"), Some((1, 102)));
    }

    #[test]
    fn card_mapping_problems() {
        let m = CardStatusMap {
            from_keycrm: vec![
                cfrom(1, 101, "new"),
                cfrom(1, 101, "paid"),
                cfrom(9, 901, "new"),
                cfrom(1, 999, "new"),
            ],
            to_keycrm: vec![
                cto("paid", 1, 101),
                cto("paid", 2, 201),
                cto("ghost", 1, 102),
            ],
        };
        assert_eq!(
            card_codes(&m),
            vec![
                (
                    "card_statuses.from_keycrm[1].status_id".into(),
                    "pipeline_status_mapped_twice"
                ),
                (
                    "card_statuses.from_keycrm[2].pipeline_id".into(),
                    "unknown_pipeline"
                ),
                (
                    "card_statuses.from_keycrm[3].status_id".into(),
                    "unknown_pipeline_status"
                ),
                (
                    "card_statuses.to_keycrm[0].status_id".into(),
                    "contradicts_from_keycrm"
                ),
                (
                    "card_statuses.to_keycrm[1].shop_status".into(),
                    "shop_status_mapped_twice"
                ),
                (
                    "card_statuses.to_keycrm[2].shop_status".into(),
                    "unknown_shop_status"
                ),
            ]
        );
    }

    #[test]
    fn legacy_pipeline_lists_migrate_too() {
        let m = CardStatusMap::from_legacy([
            ("new".to_string(), 1, 101),
            ("paid".to_string(), 1, 101),
            ("done".to_string(), 1, 102),
        ]);
        assert_eq!(
            m.to_keycrm,
            vec![cto("new", 1, 101), cto("paid", 1, 101), cto("done", 1, 102)]
        );
        assert_eq!(
            m.from_keycrm,
            vec![cfrom(1, 101, "new"), cfrom(1, 102, "done")]
        );
    }
}
