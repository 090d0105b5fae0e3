//! What the settings page receives. Built from stored records; nothing secret goes in: the
//! key only as its mask. Webhook URLs are the shop's own and shown in full whenever the
//! connection issues them (their tokens derive from a key in Secrets Manager, never stored).

use chrono::{DateTime, Utc};
use mapping::settings::OrderSyncType;
use mapping::{KeycrmReference, Settings};
use serde::Serialize;
use shop::ShopReference;
use std::collections::BTreeMap;
use store::journal::JournalError;
use store::tokens::{self, Credential, TokenKey};
use store::{
    Connection, ConnectionStatus, OrderFailure, RunState, SyncKind, SyncRun, SyncSummary,
    WebhookKind,
};

/// KeyCRM trigger events each webhook URL is meant for; `stock` is KeyCRM's stock webhook
/// (Settings → Products → Stocks), not a trigger.
pub fn trigger_event(kind: WebhookKind) -> &'static str {
    match kind {
        WebhookKind::Orders => "order.change_order_status",
        WebhookKind::Cards => "lead.change_lead_status",
        WebhookKind::Stock => "stock",
    }
}

pub fn webhook_url(base: &str, connection_id: &str, token: &str) -> String {
    format!("{base}/v1/webhooks/keycrm/{connection_id}/{token}")
}

#[derive(Serialize, Debug)]
pub struct WebhookView {
    /// The KeyCRM trigger to paste the URL into.
    pub event: &'static str,
    /// The full URL, to copy into the KeyCRM trigger («Скопіювати»). `null` only for a
    /// connection made before URLs could be shown again: rotate to get one.
    pub url: Option<String>,
    /// The URL with its token hidden, to recognise it.
    pub url_masked: String,
    /// True when `url` cannot be shown (an old connection): a rotation issues a URL that can.
    pub rotate_to_show: bool,
}

#[derive(Serialize, Debug)]
pub struct WebhooksView {
    pub orders: Option<WebhookView>,
    /// Only while the order sync type is `pipelines`.
    pub cards: Option<WebhookView>,
    /// KeyCRM's stock webhook (realtime stock): every connection has one.
    pub stock: Option<WebhookView>,
}

impl WebhooksView {
    pub fn build(conn: &Connection, base: &str, key: &TokenKey) -> Self {
        let view = |kind: WebhookKind| {
            let cred = conn.webhook_credential(kind)?;
            let url = match cred {
                Credential::Derived(g) => Some(webhook_url(
                    base,
                    &conn.id,
                    &tokens::derive(key, &conn.id, kind, g),
                )),
                Credential::Legacy(_) => None,
            };
            Some(WebhookView {
                event: trigger_event(kind),
                rotate_to_show: url.is_none(),
                url,
                url_masked: webhook_url(base, &conn.id, "••••"),
            })
        };
        WebhooksView {
            orders: view(WebhookKind::Orders),
            cards: view(WebhookKind::Cards),
            stock: view(WebhookKind::Stock),
        }
    }
}

/// A real run (not a preview) that is running, or queued within the last hour: an older
/// queued report is a job that never started (lost with its message).
pub fn is_live(r: &SyncRun) -> bool {
    let stale_before = Utc::now() - chrono::Duration::hours(1);
    !r.dry_run
        && (r.state == RunState::Running
            || (r.state == RunState::Queued && r.started_at.is_none_or(|t| t > stale_before)))
}

/// A catalog sync queued or in progress, for the status page.
#[derive(Serialize, Debug, Clone)]
pub struct RunningSync {
    pub run_id: String,
    pub kind: Option<SyncKind>,
    pub dry_run: bool,
    /// `queued` or `running`.
    pub state: String,
    pub started_at: Option<DateTime<Utc>>,
}

/// A merchant-visible run still queued or running (not a preview), newest first. A queued
/// report older than an hour is a job that never started (lost with its message) and does
/// not count.
pub fn running_sync(runs: &[SyncRun]) -> Option<RunningSync> {
    runs.iter().find(|r| is_live(r)).map(|r| RunningSync {
        run_id: r.run_id.clone(),
        kind: r.kind,
        dry_run: r.dry_run,
        state: r.state.to_string(),
        started_at: r.started_at,
    })
}

#[derive(Serialize, Debug)]
pub struct StatusView {
    pub active: bool,
    /// `active` or `inactive`.
    pub state: &'static str,
    /// One sentence for the merchant.
    pub message: String,
    pub orders_pushed: u64,
    pub orders_failed: u64,
    pub webhooks_applied: u64,
    /// Every counter the journal keeps (orders_skipped, statuses_pushed, webhooks_ignored…).
    pub counters: BTreeMap<String, u64>,
    pub last_error: Option<JournalError>,
    /// Orders that could not be placed and wait for the merchant, newest first.
    pub failures: Vec<OrderFailure>,
    /// The last sync of each kind (`full`, `prices`).
    pub last_sync: BTreeMap<String, SyncSummary>,
    /// A catalog sync queued or running now (turning a sync on starts one at once).
    pub running_sync: Option<RunningSync>,
}

impl StatusView {
    pub fn build(conn: &Connection, s: ConnectionStatus, running: Option<RunningSync>) -> Self {
        let count = |k: &str| s.counters.get(k).copied().unwrap_or(0);
        let message = if conn.active {
            let mut parts = Vec::new();
            if conn.settings.catalog_sync_on() {
                parts.push("catalog sync on");
            } else {
                parts.push("catalog sync off");
            }
            parts.push(match conn.settings.order_sync {
                OrderSyncType::None => "orders are not pushed",
                OrderSyncType::Orders => "orders are pushed as KeyCRM orders",
                OrderSyncType::Pipelines => "orders are pushed as pipeline cards",
            });
            let mut m = format!("Connection is active: {}.", parts.join(", "));
            if let Some(r) = &running {
                let kind = r.kind.map(|k| k.as_str()).unwrap_or("catalog");
                m.push_str(&format!(" A {kind} catalog sync is {} now.", r.state));
            }
            m
        } else {
            "Connection is inactive: no catalog sync runs, no orders are pushed and no KeyCRM webhooks are applied.".to_string()
        };
        StatusView {
            active: conn.active,
            state: if conn.active { "active" } else { "inactive" },
            message,
            orders_pushed: count("orders_pushed"),
            orders_failed: count("orders_failed"),
            webhooks_applied: count("webhooks_applied"),
            counters: s.counters,
            last_error: s.last_error,
            failures: s.failures,
            last_sync: s.last_sync,
            running_sync: running,
        }
    }
}

#[derive(Serialize, Debug)]
pub struct ConnectionView {
    pub id: String,
    pub shop_id: String,
    pub active: bool,
    pub keycrm_base_url: String,
    /// `••••a1b2`: the last characters of the stored key.
    pub key_mask: String,
    /// Send it back with a settings save (optimistic concurrency).
    pub version: u64,
    pub settings: Settings,
    pub webhooks: WebhooksView,
    pub status: StatusView,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl ConnectionView {
    pub fn build(
        conn: &Connection,
        status: ConnectionStatus,
        running: Option<RunningSync>,
        base: &str,
        key: &TokenKey,
    ) -> Self {
        ConnectionView {
            id: conn.id.clone(),
            shop_id: conn.shop_id.clone(),
            active: conn.active,
            keycrm_base_url: conn.keycrm_base_url.clone(),
            key_mask: conn.key_mask.clone(),
            version: conn.version,
            settings: conn.settings.clone(),
            webhooks: WebhooksView::build(conn, base, key),
            status: StatusView::build(conn, status, running),
            created_at: conn.created_at,
            updated_at: conn.updated_at,
        }
    }
}

/// KeyCRM's order status groups. The API returns only `group_id`; the names are KeyCRM's
/// fixed set (the page shows statuses grouped under them).
pub const STATUS_GROUPS: [(i64, &str); 6] = [
    (1, "New"),
    (2, "Approval"),
    (3, "Production"),
    (4, "Delivery"),
    (5, "Completed"),
    (6, "Cancelled"),
];

#[derive(Serialize, Debug)]
pub struct StatusGroup {
    pub id: i64,
    pub name: &'static str,
    /// The account's statuses in this group, in KeyCRM's order (for the KeyCRM → shop
    /// mapping, which lists every status).
    pub status_ids: Vec<i64>,
}

#[derive(Serialize, Debug, PartialEq)]
pub struct CategoryNode {
    pub id: i64,
    pub name: String,
    pub children: Vec<CategoryNode>,
}

/// The flat category list as a forest. Categories whose parent is missing become roots;
/// cycles (which KeyCRM should never return) are cut where they close.
pub fn category_tree(cats: &[keycrm::models::Category]) -> Vec<CategoryNode> {
    let ids: std::collections::BTreeSet<i64> = cats.iter().map(|c| c.id).collect();
    let mut children: BTreeMap<Option<i64>, Vec<&keycrm::models::Category>> = BTreeMap::new();
    for c in cats {
        let parent = c.parent_id.filter(|p| ids.contains(p) && *p != c.id);
        children.entry(parent).or_default().push(c);
    }
    fn build(
        parent: Option<i64>,
        children: &BTreeMap<Option<i64>, Vec<&keycrm::models::Category>>,
        seen: &mut std::collections::BTreeSet<i64>,
    ) -> Vec<CategoryNode> {
        let mut out = Vec::new();
        for c in children.get(&parent).map(Vec::as_slice).unwrap_or(&[]) {
            if !seen.insert(c.id) {
                continue;
            }
            out.push(CategoryNode {
                id: c.id,
                name: c.name.clone(),
                children: build(Some(c.id), children, seen),
            });
        }
        out
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut roots = build(None, &children, &mut seen);
    // Members of a parent cycle are reachable from no root: list them as roots.
    for c in cats {
        if !seen.contains(&c.id) {
            seen.insert(c.id);
            roots.push(CategoryNode {
                id: c.id,
                name: c.name.clone(),
                children: build(Some(c.id), &children, &mut seen),
            });
        }
    }
    roots
}

#[derive(Serialize, Debug)]
pub struct KeycrmOptionsView {
    #[serde(flatten)]
    pub reference: KeycrmReference,
    pub order_status_groups: Vec<StatusGroup>,
    pub category_tree: Vec<CategoryNode>,
}

#[derive(Serialize, Debug)]
pub struct ShopOptionsView {
    #[serde(flatten)]
    pub reference: ShopReference,
    /// The status new shop orders start in (the first the shop lists): it must have a
    /// shop → KeyCRM mapping for orders to be pushed.
    pub initial_order_status: Option<String>,
}

#[derive(Serialize, Debug)]
pub struct OptionsView {
    pub keycrm: KeycrmOptionsView,
    pub shop: ShopOptionsView,
    pub fetched_at: DateTime<Utc>,
    /// Whether this answer came from the cache (no KeyCRM request was made).
    pub cached: bool,
}

impl OptionsView {
    pub fn build(opts: mapping::SettingsOptions, fetched_at: DateTime<Utc>, cached: bool) -> Self {
        let tree = category_tree(&opts.keycrm.categories);
        let groups = STATUS_GROUPS
            .iter()
            .map(|(id, name)| StatusGroup {
                id: *id,
                name,
                status_ids: opts
                    .keycrm
                    .order_statuses
                    .iter()
                    .filter(|s| s.group_id == *id)
                    .map(|s| s.id)
                    .collect(),
            })
            .collect();
        OptionsView {
            keycrm: KeycrmOptionsView {
                reference: opts.keycrm,
                order_status_groups: groups,
                category_tree: tree,
            },
            shop: ShopOptionsView {
                initial_order_status: opts.shop.order_statuses.first().map(|s| s.id.clone()),
                reference: opts.shop,
            },
            fetched_at,
            cached,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keycrm::models::Category;

    fn cat(id: i64, parent: Option<i64>) -> Category {
        Category {
            id,
            name: format!("c{id}"),
            parent_id: parent,
        }
    }

    fn run(id: &str, state: &str, dry_run: bool, minutes_ago: i64) -> SyncRun {
        SyncRun {
            run_id: id.into(),
            state: serde_json::from_value(state.into()).expect("a run state"),
            dry_run,
            kind: Some(SyncKind::Full),
            started_at: Some(Utc::now() - chrono::Duration::minutes(minutes_ago)),
            ..SyncRun::default()
        }
    }

    #[test]
    fn the_running_sync_is_a_real_run_still_queued_or_running() {
        assert!(running_sync(&[]).is_none());
        let runs = [
            run("preview", "queued", true, 1),
            run("done", "completed", false, 2),
            run("lost", "queued", false, 90),
        ];
        assert!(
            running_sync(&runs).is_none(),
            "previews, finished runs and jobs queued long ago do not count"
        );
        let runs = [
            run("preview", "running", true, 1),
            run("r1", "running", false, 300),
        ];
        assert_eq!(running_sync(&runs).map(|r| r.run_id), Some("r1".into()));
        let runs = [run("q1", "queued", false, 5)];
        assert_eq!(running_sync(&runs).map(|r| r.state), Some("queued".into()));
    }

    #[test]
    fn tree_nests_children_and_survives_orphans_and_cycles() {
        let t = category_tree(&[
            cat(1, None),
            cat(2, Some(1)),
            cat(3, Some(2)),
            cat(4, Some(99)),
            cat(5, Some(6)),
            cat(6, Some(5)),
        ]);
        let roots: Vec<i64> = t.iter().map(|n| n.id).collect();
        assert_eq!(roots, vec![1, 4, 5]);
        assert_eq!(t[0].children[0].id, 2);
        assert_eq!(t[0].children[0].children[0].id, 3);
        assert_eq!(t[2].children[0].id, 6);
        assert!(t[2].children[0].children.is_empty());
    }
}
