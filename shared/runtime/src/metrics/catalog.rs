//! Every metric the connector emits: its name, unit and dimension sets. This list is the
//! contract with `template.yaml` (dashboard and alarms); `tests/tests/it/template_consistency.rs`
//! checks both sides against it, so a renamed metric cannot leave an alarm watching nothing.
//!
//! Dimensions are low-cardinality only: `function` always, plus a fixed label (`reason`,
//! `outcome`, `kind`) whose values are `&'static str` at every call site. A shop, connection,
//! order id, key or token can never become a dimension; per-shop figures go to the
//! connection's status (the journal) instead.

/// CloudWatch namespace of every custom metric.
pub const NAMESPACE: &str = "ShopKeycrm";

/// The `function` dimension: which deployed function emitted it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Function {
    AdminApi,
    Webhook,
    StatusApply,
    OrderPush,
    CatalogSync,
    StockApply,
}

impl Function {
    pub const ALL: [Function; 6] = [
        Function::AdminApi,
        Function::Webhook,
        Function::StatusApply,
        Function::OrderPush,
        Function::CatalogSync,
        Function::StockApply,
    ];

    /// The dimension value (the crate name under `functions/`).
    pub fn as_str(self) -> &'static str {
        match self {
            Function::AdminApi => "admin-api",
            Function::Webhook => "webhook",
            Function::StatusApply => "status-apply",
            Function::OrderPush => "order-push",
            Function::CatalogSync => "catalog-sync",
            Function::StockApply => "stock-apply",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Summed per invocation and published as one value.
    Count,
    /// Every observation is kept (CloudWatch computes percentiles from them).
    Milliseconds,
}

impl Unit {
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
        }
    }
}

/// One metric. `labels` are the dimension keys a call site gives values for, in order;
/// `sets` are the dimension sets it is published under (each besides `function`), so an alarm
/// can watch the total (`&[]`) while the dashboard splits by reason.
#[derive(Debug, PartialEq, Eq)]
pub struct Metric {
    pub name: &'static str,
    pub unit: Unit,
    pub labels: &'static [&'static str],
    pub sets: &'static [&'static [&'static str]],
    /// What it counts, for docs/operations.md.
    pub help: &'static str,
}

impl Metric {
    /// The dimension sets as CloudWatch sees them (`function` first).
    pub fn dimension_sets(&self) -> Vec<Vec<&'static str>> {
        self.sets
            .iter()
            .map(|s| {
                let mut d = vec!["function"];
                d.extend_from_slice(s);
                d
            })
            .collect()
    }
}

const TOTAL: &[&[&str]] = &[&[]];
const BY_REASON: &[&[&str]] = &[&["reason"], &[]];
const BY_OUTCOME: &[&[&str]] = &[&["outcome"], &[]];

// ---------------------------------------------------------------- order push

pub const ORDERS_PUSHED: Metric = Metric {
    name: "OrdersPushed",
    unit: Unit::Count,
    labels: &[],
    sets: TOTAL,
    help: "shop orders that now exist in KeyCRM (created, or found where an earlier attempt created them)",
};
pub const ORDERS_DEFERRED: Metric = Metric {
    name: "OrdersDeferred",
    unit: Unit::Count,
    labels: &["reason"],
    sets: BY_REASON,
    help: "order events put back on the queue with a delay (rate_limited, keycrm_unavailable, store_unavailable, busy, deadline, not_known_yet, not_created_yet)",
};
pub const ORDERS_FAILED: Metric = Metric {
    name: "OrdersFailed",
    unit: Unit::Count,
    labels: &["reason"],
    sets: BY_REASON,
    help: "order events dead-lettered, by the dead letter's kind (validation, mapping, keycrm_rejected, retries_exhausted, malformed, internal_error, failed_earlier)",
};
pub const ORDER_EVENTS_SKIPPED: Metric = Metric {
    name: "OrderEventsSkipped",
    unit: Unit::Count,
    labels: &["reason"],
    sets: BY_REASON,
    help: "order events acknowledged without a KeyCRM write (duplicate, no_connection, inactive, echo, stale, unmapped_status, unknown_order, not_in_keycrm, keycrm_gone, previous_account)",
};
pub const STATUSES_PUSHED: Metric = Metric {
    name: "StatusesPushed",
    unit: Unit::Count,
    labels: &[],
    sets: TOTAL,
    help: "shop status changes written to KeyCRM",
};
pub const ORDER_EVENTS_UNSETTLED: Metric = Metric {
    name: "OrderEventsUnsettled",
    unit: Unit::Count,
    labels: &[],
    sets: TOTAL,
    help: "order events handed back to SQS because neither their delayed copy nor their dead letter could be sent (or the deadline came first)",
};

// ---------------------------------------------------------------- webhooks and statuses

pub const WEBHOOKS_ACCEPTED: Metric = Metric {
    name: "WebhooksAccepted",
    unit: Unit::Count,
    labels: &[],
    sets: TOTAL,
    help: "KeyCRM status webhooks authenticated and queued for status-apply",
};
pub const WEBHOOKS_IGNORED: Metric = Metric {
    name: "WebhooksIgnored",
    unit: Unit::Count,
    labels: &["reason"],
    sets: BY_REASON,
    help: "status and stock webhooks that changed nothing, by reason (webhook: inactive_connection, unhandled_event, event_on_wrong_url, unmapped_status; stock URL: product_sync_off, realtime_stock_off, no_items; status-apply: unknown_order, duplicate, stale, ...)",
};
pub const WEBHOOKS_REFUSED: Metric = Metric {
    name: "WebhooksRefused",
    unit: Unit::Count,
    labels: &["reason"],
    sets: BY_REASON,
    help: "webhook calls answered 4xx (404: malformed_url, unknown_connection, wrong_token, unknown_route; method_not_allowed, too_large, unsupported_media_type, not_json, invalid_body, missing_context)",
};
pub const WEBHOOKS_UNAVAILABLE: Metric = Metric {
    name: "WebhooksUnavailable",
    unit: Unit::Count,
    labels: &["reason"],
    sets: BY_REASON,
    help: "webhook calls answered 503 so KeyCRM retries (store_unavailable, queue_unavailable; not_configured: a receiver without the stock hand-off)",
};
pub const WEBHOOKS_APPLIED: Metric = Metric {
    name: "WebhooksApplied",
    unit: Unit::Count,
    labels: &[],
    sets: TOTAL,
    help: "KeyCRM status changes applied to the shop order",
};
pub const STATUS_UPDATES_RETRIED: Metric = Metric {
    name: "StatusUpdatesRetried",
    unit: Unit::Count,
    labels: &[],
    sets: TOTAL,
    help: "status changes left on the queue to be tried again (shop or storage unavailable)",
};
pub const STATUS_UPDATES_FAILED: Metric = Metric {
    name: "StatusUpdatesFailed",
    unit: Unit::Count,
    labels: &["reason"],
    sets: BY_REASON,
    help: "status changes given up to the dead-letter queue (malformed, rejected, retries_exhausted, internal_error)",
};

// ---------------------------------------------------------------- catalog and stock

pub const CATALOG_WRITES: Metric = Metric {
    name: "CatalogWrites",
    unit: Unit::Count,
    labels: &["kind"],
    sets: &[&["kind"], &[]],
    help: "items the shop accepted from a catalog write (products, categories, states: product visibility, category_states)",
};
pub const STOCK_WRITES: Metric = Metric {
    name: "StockWrites",
    unit: Unit::Count,
    labels: &[],
    sets: TOTAL,
    help: "variant price and availability changes the shop accepted (catalog-sync's price runs, stock-apply's realtime stock)",
};
pub const STOCK_WEBHOOKS_ACCEPTED: Metric = Metric {
    name: "StockWebhooksAccepted",
    unit: Unit::Count,
    labels: &[],
    sets: TOTAL,
    help: "KeyCRM stock webhook deliveries validated and handed off (offers recorded as pending, a flush scheduled)",
};
pub const STOCK_SIGNALS: Metric = Metric {
    name: "StockSignals",
    unit: Unit::Count,
    labels: &[],
    sets: TOTAL,
    help: "offers the accepted stock webhook deliveries signalled (distinct within a delivery)",
};
pub const STOCK_FLUSHES: Metric = Metric {
    name: "StockFlushes",
    unit: Unit::Count,
    labels: &["outcome"],
    sets: BY_OUTCOME,
    help: "stock flush messages by how they ended (drained, out_of_time, lost_window, window_taken, realtime_stock_off, no_connection, retried, failed)",
};
pub const STOCK_OFFERS_IGNORED: Metric = Metric {
    name: "StockOffersIgnored",
    unit: Unit::Count,
    labels: &["reason"],
    sets: BY_REASON,
    help: "signalled offers a flush read and did not write, by reason (unlinked: no link of the connection holds it; skipped: the catalog sync owns it for now; not_found: KeyCRM no longer lists it; refused: the shop refused the change)",
};
pub const SYNC_RUNS: Metric = Metric {
    name: "SyncRuns",
    unit: Unit::Count,
    labels: &["outcome", "kind"],
    sets: &[&["outcome", "kind"], &["outcome"]],
    help: "catalog sync invocations of one connection, by how they ended (completed, paused, failed, refused, skipped, busy, lease_lost) and kind (full, prices)",
};
pub const SYNC_RUN_DURATION: Metric = Metric {
    name: "SyncRunDuration",
    unit: Unit::Milliseconds,
    labels: &["outcome"],
    sets: &[&["outcome"]],
    help: "wall time of a finished run from its start to its end, across invocations (completed, failed, refused)",
};
pub const SYNC_INVOCATION_TIME: Metric = Metric {
    name: "SyncInvocationTime",
    unit: Unit::Milliseconds,
    labels: &["outcome"],
    sets: &[&["outcome"]],
    help: "time one invocation worked on a connection's sync, by how it ended (a paused run's share of work, a completed run's last part, ...)",
};
pub const SYNC_JOBS_ENQUEUED: Metric = Metric {
    name: "SyncJobsEnqueued",
    unit: Unit::Count,
    labels: &["kind"],
    sets: &[&["kind"], &[]],
    help: "per-connection sync jobs a schedule tick queued (full, prices, resume)",
};
pub const SYNC_JOBS_FAILED: Metric = Metric {
    name: "SyncJobsFailed",
    unit: Unit::Count,
    labels: &["reason"],
    sets: BY_REASON,
    help: "sync jobs dead-lettered (malformed, internal_error), left to SQS after a transient failure (transient, deadline), or not queued by a schedule tick (enqueue_failed)",
};

// ---------------------------------------------------------------- KeyCRM and the shop API

pub const KEYCRM_REQUESTS: Metric = Metric {
    name: "KeycrmRequests",
    unit: Unit::Count,
    labels: &["outcome"],
    sets: BY_OUTCOME,
    help: "HTTP requests sent to KeyCRM, retries included (ok, rate_limited, client_error, server_error)",
};
pub const KEYCRM_RATE_LIMITED: Metric = Metric {
    name: "KeycrmRateLimited",
    unit: Unit::Count,
    labels: &[],
    sets: TOTAL,
    help: "429 answers from KeyCRM: the per-key budget was overrun (the rate gate should prevent every one)",
};
pub const KEYCRM_LATENCY: Metric = Metric {
    name: "KeycrmLatency",
    unit: Unit::Milliseconds,
    labels: &[],
    sets: TOTAL,
    help: "time KeyCRM took to answer one request",
};
pub const RATE_GATE_WAIT: Metric = Metric {
    name: "RateGateWait",
    unit: Unit::Milliseconds,
    labels: &[],
    sets: TOTAL,
    help: "time a request waited for its slot of the key's 60-a-minute budget",
};
pub const RATE_GATE_REFUSED: Metric = Metric {
    name: "RateGateRefused",
    unit: Unit::Count,
    labels: &[],
    sets: TOTAL,
    help: "requests not sent because the key's budget had no slot before the work's deadline (deferred instead)",
};
pub const SHOP_API_ERRORS: Metric = Metric {
    name: "ShopApiErrors",
    unit: Unit::Count,
    labels: &["reason"],
    sets: BY_REASON,
    help:
        "failed calls to the shop platform's API (unavailable, unauthorized, rejected, not_found)",
};

// ---------------------------------------------------------------- admin API

pub const ADMIN_REQUESTS: Metric = Metric {
    name: "AdminRequests",
    unit: Unit::Count,
    labels: &["outcome"],
    sets: BY_OUTCOME,
    help: "admin API requests by answer class (2xx, 4xx, 5xx)",
};

/// Every metric, for the template consistency test and the docs.
pub const ALL: &[&Metric] = &[
    &ORDERS_PUSHED,
    &ORDERS_DEFERRED,
    &ORDERS_FAILED,
    &ORDER_EVENTS_SKIPPED,
    &STATUSES_PUSHED,
    &ORDER_EVENTS_UNSETTLED,
    &WEBHOOKS_ACCEPTED,
    &WEBHOOKS_IGNORED,
    &WEBHOOKS_REFUSED,
    &WEBHOOKS_UNAVAILABLE,
    &WEBHOOKS_APPLIED,
    &STATUS_UPDATES_RETRIED,
    &STATUS_UPDATES_FAILED,
    &CATALOG_WRITES,
    &STOCK_WRITES,
    &STOCK_WEBHOOKS_ACCEPTED,
    &STOCK_SIGNALS,
    &STOCK_FLUSHES,
    &STOCK_OFFERS_IGNORED,
    &SYNC_RUNS,
    &SYNC_RUN_DURATION,
    &SYNC_INVOCATION_TIME,
    &SYNC_JOBS_ENQUEUED,
    &SYNC_JOBS_FAILED,
    &KEYCRM_REQUESTS,
    &KEYCRM_RATE_LIMITED,
    &KEYCRM_LATENCY,
    &RATE_GATE_WAIT,
    &RATE_GATE_REFUSED,
    &SHOP_API_ERRORS,
    &ADMIN_REQUESTS,
];

/// The metric of this name.
pub fn by_name(name: &str) -> Option<&'static Metric> {
    ALL.iter().copied().find(|m| m.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn names_are_unique_and_sets_use_only_declared_labels() {
        let mut names = BTreeSet::new();
        for m in ALL {
            assert!(names.insert(m.name), "duplicate metric {}", m.name);
            assert!(!m.sets.is_empty(), "{} has no dimension set", m.name);
            for set in m.sets {
                for d in *set {
                    assert!(m.labels.contains(d), "{}: set uses undeclared {d}", m.name);
                }
            }
            // Every label is in the fullest set, or its value would never be published.
            let widest: BTreeSet<_> = m.sets.iter().flat_map(|s| s.iter()).collect();
            for l in m.labels {
                assert!(
                    widest.contains(l),
                    "{}: label {l} is never published",
                    m.name
                );
            }
            assert!(m
                .name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_uppercase()));
            assert!(!m.labels.contains(&"function"));
        }
        assert_eq!(by_name("OrdersFailed"), Some(&ORDERS_FAILED));
        assert_eq!(by_name("nope"), None);
    }
}
