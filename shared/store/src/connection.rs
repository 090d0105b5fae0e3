//! Connections: one shop linked to one KeyCRM account, with its settings and what its
//! webhook URLs derive from.

use crate::StoreError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mapping::Settings;
use serde::{Deserialize, Serialize};
use std::time::Duration;

mod dynamo;
mod memory;

pub use crate::dynamo::{conn_pk, links_pk};
pub use dynamo::delete_some;
pub use memory::MemoryConnections;

/// How long a deleted connection's data is left alone before the background cleanup starts:
/// longer than any invocation that read the connection just before the deletion can still run
/// (order push 60 s, status apply 30 s, the webhook 10 s; a catalog sync notices within
/// seconds and stops), so nothing writes into what the cleanup removes, and nothing still
/// holds the key when it is deleted.
pub const CLEANUP_GRACE: Duration = Duration::from_secs(120);

/// The sync-jobs message that removes a deleted connection's data, its key and finally its
/// deletion mark (`{"job":"delete_connection","connection_id":"…"}`), handled by catalog-sync.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CleanupJob {
    pub job: CleanupKind,
    pub connection_id: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CleanupKind {
    DeleteConnection,
}

impl CleanupJob {
    pub fn new(connection_id: &str) -> Self {
        CleanupJob {
            job: CleanupKind::DeleteConnection,
            connection_id: connection_id.to_string(),
        }
    }

    pub fn to_body(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The job, if `body` is one (sync jobs have another shape).
    pub fn parse(body: &str) -> Option<Self> {
        serde_json::from_str(body).ok()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Connection {
    pub id: String,
    pub shop_id: String,
    pub active: bool,
    pub keycrm_base_url: String,
    /// `••••a1b2`: what the merchant is shown of the key.
    pub key_mask: String,
    /// Identifies the key's shared rate budget; not the key.
    pub key_fingerprint: String,
    /// Where the key itself lives in the secret store.
    pub secret_name: String,
    pub settings: Settings,
    /// Connections made before tokens were derived: SHA-256 hashes of their random tokens.
    /// A kind's hash goes when that kind is rotated (its URL then derives like any other).
    #[serde(default, skip_serializing_if = "WebhookTokens::is_empty")]
    pub webhook_tokens: WebhookTokens,
    /// The generation each webhook URL's token derives from (`store::tokens`); rotation
    /// bumps it. 0 = never issued. Neither a token nor a hash of one is stored.
    #[serde(default)]
    pub webhook_generations: WebhookGenerations,
    /// Which KeyCRM account the catalog links belong to: bumped when the merchant switches
    /// the connection to another account, so that account starts from a clean slate (links
    /// live under a scope per account, see [`Connection::links_scope`]).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub account_epoch: u32,
    /// When the connection last switched KeyCRM accounts. Orders pushed before it are in the
    /// previous account: their KeyCRM ids mean nothing in this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_switched_at: Option<DateTime<Utc>>,
    /// Bumped on every write; writes are conditional on it (no lost updates).
    pub version: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// SHA-256 hashes of webhook URL tokens, as connections made before derived tokens hold them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookTokens {
    #[serde(default)]
    pub orders: Option<String>,
    #[serde(default)]
    pub cards: Option<String>,
}

impl WebhookTokens {
    pub fn is_empty(&self) -> bool {
        self.orders.is_none() && self.cards.is_none()
    }
}

/// The generation of each webhook URL (0: never issued).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookGenerations {
    #[serde(default)]
    pub orders: u32,
    #[serde(default)]
    pub cards: u32,
    /// KeyCRM's stock webhook (realtime stock).
    #[serde(default)]
    pub stock: u32,
}

impl WebhookGenerations {
    pub fn get(&self, kind: WebhookKind) -> u32 {
        match kind {
            WebhookKind::Orders => self.orders,
            WebhookKind::Cards => self.cards,
            WebhookKind::Stock => self.stock,
        }
    }

    fn slot(&mut self, kind: WebhookKind) -> &mut u32 {
        match kind {
            WebhookKind::Orders => &mut self.orders,
            WebhookKind::Cards => &mut self.cards,
            WebhookKind::Stock => &mut self.stock,
        }
    }
}

/// Which webhook URL a call came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookKind {
    Orders,
    Cards,
    Stock,
}

impl WebhookKind {
    pub const ALL: [WebhookKind; 3] = [WebhookKind::Orders, WebhookKind::Cards, WebhookKind::Stock];

    pub fn as_str(self) -> &'static str {
        match self {
            WebhookKind::Orders => "orders",
            WebhookKind::Cards => "cards",
            WebhookKind::Stock => "stock",
        }
    }
}

impl WebhookTokens {
    pub fn hash_for(&self, kind: WebhookKind) -> Option<&str> {
        match kind {
            WebhookKind::Orders => self.orders.as_deref(),
            WebhookKind::Cards => self.cards.as_deref(),
            // The stock URL came after derived tokens: it never had a stored hash.
            WebhookKind::Stock => None,
        }
    }

    fn clear(&mut self, kind: WebhookKind) {
        match kind {
            WebhookKind::Orders => self.orders = None,
            WebhookKind::Cards => self.cards = None,
            WebhookKind::Stock => {}
        }
    }
}

impl Connection {
    /// Whether the connection has a URL of this kind now: orders and stock always (the stock
    /// URL can be set up in KeyCRM before realtime stock is switched on; its deliveries are
    /// acknowledged and ignored while it is off), cards while the order sync type is
    /// pipelines.
    pub fn webhook_wanted(&self, kind: WebhookKind) -> bool {
        match kind {
            WebhookKind::Orders | WebhookKind::Stock => true,
            WebhookKind::Cards => self.settings.order_sync == mapping::OrderSyncType::Pipelines,
        }
    }

    /// How the URL of `kind` is checked, or `None` if the connection has no such URL now.
    pub fn webhook_credential(&self, kind: WebhookKind) -> Option<crate::tokens::Credential<'_>> {
        if !self.webhook_wanted(kind) {
            return None;
        }
        match self.webhook_generations.get(kind) {
            0 => self
                .webhook_tokens
                .hash_for(kind)
                .map(crate::tokens::Credential::Legacy),
            g => Some(crate::tokens::Credential::Derived(g)),
        }
    }

    /// Starts a new URL of `kind`: the generation goes up (the old URL stops matching) and a
    /// legacy hash of that kind is dropped. Returns the new generation.
    pub fn rotate_webhook(&mut self, kind: WebhookKind) -> u32 {
        let slot = self.webhook_generations.slot(kind);
        *slot = slot.saturating_add(1);
        let g = *slot;
        self.webhook_tokens.clear(kind);
        g
    }

    /// Issues a URL for every kind the connection wants and has none of. Returns the kinds
    /// issued.
    pub fn issue_missing_webhooks(&mut self) -> Vec<WebhookKind> {
        let mut issued = Vec::new();
        for kind in WebhookKind::ALL {
            if self.webhook_wanted(kind) && self.webhook_credential(kind).is_none() {
                self.rotate_webhook(kind);
                issued.push(kind);
            }
        }
        issued
    }

    /// The link-store scope of the KeyCRM account the connection uses now: the connection id
    /// for its first account, `{id}.{epoch}` after a switch.
    pub fn links_scope(&self) -> String {
        links_scope(&self.id, self.account_epoch)
    }

    /// Scopes of the accounts the connection used before the current one.
    pub fn previous_links_scopes(&self) -> Vec<String> {
        (0..self.account_epoch)
            .map(|e| links_scope(&self.id, e))
            .collect()
    }
}

fn links_scope(id: &str, epoch: u32) -> String {
    if epoch == 0 {
        id.to_string()
    } else {
        format!("{id}.{epoch}")
    }
}

/// Connections. A deleted connection is first *marked* (it counts as gone at once: `get`,
/// `get_by_shop` and `list` no longer return it, and the shop may connect again), then its data
/// is removed in the background ([`ConnectionStore::purge`], resumable), its key deleted, and
/// the mark removed last ([`ConnectionStore::remove`]).
#[async_trait]
pub trait ConnectionStore: Send + Sync {
    /// Stores a new connection; `AlreadyExists` if the shop already has one.
    async fn create(&self, conn: &Connection) -> Result<(), StoreError>;
    /// The connection, unless it does not exist or is being deleted.
    async fn get(&self, id: &str) -> Result<Option<Connection>, StoreError>;
    async fn get_by_shop(&self, shop_id: &str) -> Result<Option<Connection>, StoreError>;
    /// Replaces the connection if its stored version is `conn.version - 1`; `Conflict` otherwise.
    async fn update(&self, conn: &Connection) -> Result<(), StoreError>;
    /// Marks the connection as deleted and frees its shop, in one write, if it is still at
    /// `conn.version` (`Conflict` otherwise). From then on it counts as gone.
    async fn mark_deleting(&self, conn: &Connection) -> Result<(), StoreError>;
    /// A connection marked as deleted, and since when.
    async fn get_deleting(
        &self,
        id: &str,
    ) -> Result<Option<(Connection, DateTime<Utc>)>, StoreError>;
    /// Ids of connections marked as deleted whose cleanup has not finished, a page at a time.
    async fn list_deleting(
        &self,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<(Vec<String>, Option<String>), StoreError>;
    /// Deletes up to `max_items` of the items a deleted connection owns (catalog links,
    /// journal, failures, order ledger, sync state and reports, cached dictionaries), never
    /// the mark itself; `true` once none is left. Idempotent; `Conflict` unless marked.
    async fn purge(&self, id: &str, max_items: usize) -> Result<bool, StoreError>;
    /// Removes the deletion mark: the last trace of the connection. Only a marked (or already
    /// removed) connection.
    async fn remove(&self, id: &str) -> Result<(), StoreError>;
    /// All connections, a page at a time (for the schedulers' fan-out).
    async fn list(
        &self,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<(Vec<Connection>, Option<String>), StoreError>;
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn connection(id: &str) -> Connection {
        let now = Utc::now();
        Connection {
            id: id.into(),
            shop_id: format!("shop-{id}"),
            active: true,
            keycrm_base_url: "https://openapi.keycrm.app/v1".into(),
            key_mask: "••••abcd".into(),
            key_fingerprint: "fp".into(),
            secret_name: format!("keys/{id}"),
            settings: Settings::default(),
            webhook_tokens: WebhookTokens::default(),
            webhook_generations: WebhookGenerations::default(),
            account_epoch: 0,
            account_switched_at: None,
            version: 1,
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn urls_are_issued_for_the_kinds_in_use_and_rotation_moves_on() {
        let mut c = connection("c1");
        // Every connection has an orders URL and a stock URL (realtime stock, issue 13).
        assert_eq!(
            c.issue_missing_webhooks(),
            vec![WebhookKind::Orders, WebhookKind::Stock]
        );
        assert_eq!(c.issue_missing_webhooks(), vec![], "once");
        assert!(c.webhook_credential(WebhookKind::Cards).is_none());
        c.settings.order_sync = mapping::OrderSyncType::Pipelines;
        assert_eq!(c.issue_missing_webhooks(), vec![WebhookKind::Cards]);
        assert_eq!(c.rotate_webhook(WebhookKind::Cards), 2);
        // Leaving pipelines withdraws the card URL; coming back is a new generation.
        c.settings.order_sync = mapping::OrderSyncType::Orders;
        assert!(c.webhook_credential(WebhookKind::Cards).is_none());
        assert_eq!(c.webhook_generations.cards, 2);
    }

    #[test]
    fn documents_from_before_generations_and_epochs_still_load() {
        // As stored before: token hashes, no generations, no account epoch.
        let doc = r#"{"id":"c1","shop_id":"s1","active":true,"keycrm_base_url":"https://openapi.keycrm.app/v1","key_mask":"••••abcd","key_fingerprint":"fp","secret_name":"k/c1","settings":{"order_sync":"orders","source_id":1,"status_map":[{"shop_status":"new","keycrm_status_id":1}]},"webhook_tokens":{"orders":"ab12","cards":null},"version":3,"created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-02T00:00:00Z"}"#;
        let c: Connection = serde_json::from_str(doc).unwrap();
        assert_eq!(c.webhook_generations, WebhookGenerations::default());
        assert_eq!(
            c.webhook_credential(WebhookKind::Orders),
            Some(crate::tokens::Credential::Legacy("ab12"))
        );
        assert_eq!(c.links_scope(), "c1");
        assert_eq!(c.settings.keycrm_status_for("new"), Some(1));
        // The stock URL never had a hash: it is issued by the next save or a rotation.
        assert_eq!(c.webhook_credential(WebhookKind::Stock), None);
        let mut c = c;
        assert_eq!(c.issue_missing_webhooks(), vec![WebhookKind::Stock]);
        assert!(matches!(
            c.webhook_credential(WebhookKind::Orders),
            Some(crate::tokens::Credential::Legacy(_))
        ));
    }

    #[test]
    fn each_account_has_its_own_links_scope() {
        let mut c = connection("c1");
        assert!(c.previous_links_scopes().is_empty());
        c.account_epoch = 2;
        assert_eq!(c.links_scope(), "c1.2");
        assert_eq!(c.previous_links_scopes(), vec!["c1", "c1.1"]);
    }
}
