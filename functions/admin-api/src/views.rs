//! What the settings page receives. Built from stored records; nothing secret goes in: the
//! key only as its mask, webhook tokens only in the answer that issued them.

use chrono::{DateTime, Utc};
use mapping::settings::OrderSyncType;
use mapping::{KeycrmReference, Settings};
use serde::Serialize;
use shop::ShopReference;
use std::collections::{BTreeMap, HashMap};
use store::journal::JournalError;
use store::{Connection, ConnectionStatus, OrderFailure, SyncSummary, WebhookKind};

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

/// Freshly issued tokens, held only for the response that shows them.
#[derive(Default)]
pub struct IssuedTokens(pub HashMap<&'static str, String>);

impl IssuedTokens {
    pub fn insert(&mut self, kind: WebhookKind, token: String) {
        self.0.insert(kind.as_str(), token);
    }
    fn get(&self, kind: WebhookKind) -> Option<&str> {
        self.0.get(kind.as_str()).map(String::as_str)
    }
}

#[derive(Serialize, Debug)]
pub struct WebhookView {
    /// The KeyCRM trigger to paste the URL into.
    pub event: &'static str,
    /// The full URL, present only in the answer that issued its token (create, rotate, or a
    /// settings save that switched to pipelines). Copy it then; it cannot be shown again.
    pub url: Option<String>,
    /// The URL with its token hidden, to recognise it.
    pub url_masked: String,
}

#[derive(Serialize, Debug)]
pub struct WebhooksView {
    pub orders: Option<WebhookView>,
    /// Only while the order sync type is `pipelines`.
    pub cards: Option<WebhookView>,
    /// KeyCRM's stock webhook (realtime stock); issued when realtime stock is switched on.
    pub stock: Option<WebhookView>,
}

impl WebhooksView {
    pub fn build(conn: &Connection, base: &str, issued: &IssuedTokens) -> Self {
        let view = |kind: WebhookKind| {
            conn.webhook_tokens.hash_for(kind).map(|_| WebhookView {
                event: trigger_event(kind),
                url: issued.get(kind).map(|t| webhook_url(base, &conn.id, t)),
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
}

impl StatusView {
    pub fn build(conn: &Connection, s: ConnectionStatus) -> Self {
        let count = |k: &str| s.counters.get(k).copied().unwrap_or(0);
        let message = if conn.active {
            let mut parts = Vec::new();
            if conn.settings.sync_products || conn.settings.sync_categories {
                parts.push("catalog sync on");
            } else {
                parts.push("catalog sync off");
            }
            parts.push(match conn.settings.order_sync {
                OrderSyncType::None => "orders are not pushed",
                OrderSyncType::Orders => "orders are pushed as KeyCRM orders",
                OrderSyncType::Pipelines => "orders are pushed as pipeline cards",
            });
            format!("Connection is active: {}.", parts.join(", "))
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
        base: &str,
        issued: &IssuedTokens,
    ) -> Self {
        ConnectionView {
            id: conn.id.clone(),
            shop_id: conn.shop_id.clone(),
            active: conn.active,
            keycrm_base_url: conn.keycrm_base_url.clone(),
            key_mask: conn.key_mask.clone(),
            version: conn.version,
            settings: conn.settings.clone(),
            webhooks: WebhooksView::build(conn, base, issued),
            status: StatusView::build(conn, status),
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
pub struct OptionsView {
    pub keycrm: KeycrmOptionsView,
    pub shop: ShopReference,
    pub fetched_at: DateTime<Utc>,
    /// Whether this answer came from the cache (no KeyCRM request was made).
    pub cached: bool,
}

impl OptionsView {
    pub fn build(opts: mapping::SettingsOptions, fetched_at: DateTime<Utc>, cached: bool) -> Self {
        let tree = category_tree(&opts.keycrm.categories);
        OptionsView {
            keycrm: KeycrmOptionsView {
                reference: opts.keycrm,
                order_status_groups: STATUS_GROUPS
                    .iter()
                    .map(|(id, name)| StatusGroup { id: *id, name })
                    .collect(),
                category_tree: tree,
            },
            shop: opts.shop,
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
