//! Read-only views: every connection, one connection's health, one order's history, a shop's
//! sync reports. Nothing here prints a KeyCRM key, a webhook token or its hash, nor the
//! buyer data an order event holds.

use crate::error::OpsError;
use crate::{Ops, Output};
use chrono::{DateTime, SecondsFormat, Utc};
use futures::stream::{self, StreamExt};
use keycrm::{ClientConfig, RateBudget};
use runtime::KeycrmClients;
use serde_json::{json, Value};
use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;
use store::{
    Connection, ConnectionStatus, ConnectionStore, DynamoRateGate, LedgerEntry, OrderLedger,
    SecretsManager, StatusJournal, SyncRun, SyncStore, SyncSummary, Target, WebhookKind,
};

fn at(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_else(|| "-".into())
}

fn cut(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        return s.to_string();
    }
    let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
    t.push('…');
    t
}

fn counter(s: &ConnectionStatus, name: &str) -> u64 {
    s.counters.get(name).copied().unwrap_or(0)
}

fn sync_word(s: Option<&SyncSummary>) -> String {
    match s {
        None => "never".into(),
        Some(s) => format!(
            "{} {}",
            at(s.finished_at),
            if s.complete { "ok" } else { "INCOMPLETE" }
        ),
    }
}

/// A connection needs a look: open failures, an error, or a last sync that did not finish.
fn failing(s: &ConnectionStatus) -> bool {
    !s.failures.is_empty() || s.last_error.is_some() || s.last_sync.values().any(|x| !x.complete)
}

/// The connection of `shop`, or a clear not-found.
pub async fn require_connection(ops: &Ops, shop: &str) -> Result<Connection, OpsError> {
    let table = ops.table().await?;
    table.get_by_shop(shop).await?.ok_or_else(|| {
        OpsError::NotFound(format!(
            "shop {} has no KeyCRM connection in this deployment",
            crate::target::printable(shop)
        ))
    })
}

fn status_json(c: &Connection, s: &ConnectionStatus) -> Value {
    json!({
        "shop_id": c.shop_id, "connection_id": c.id, "active": c.active,
        "counters": s.counters, "open_failures": s.failures.len(),
        "last_error": s.last_error,
        "last_sync": s.last_sync,
    })
}

/// `ops connections`.
pub async fn connections(
    ops: &Ops,
    only_failing: bool,
    limit: Option<usize>,
) -> Result<Output, OpsError> {
    let table = ops.table().await?;
    let mut all: Vec<Connection> = Vec::new();
    let mut cursor = None;
    loop {
        let (page, next) = table.list(cursor, 200).await?;
        all.extend(page);
        if limit.is_some_and(|l| all.len() >= l) {
            all.truncate(limit.unwrap_or(usize::MAX));
            break;
        }
        match next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    let statuses: Vec<Result<ConnectionStatus, store::StoreError>> = stream::iter(all.iter())
        .map(|c| {
            let table = table.clone();
            async move { table.status(&c.id).await }
        })
        .buffered(16)
        .collect()
        .await;
    let mut rows = Vec::new();
    let mut json_rows = Vec::new();
    for (c, s) in all.iter().zip(statuses) {
        let s = s?;
        if only_failing && !failing(&s) {
            continue;
        }
        json_rows.push(status_json(c, &s));
        rows.push(format!(
            "{:<20} {:<34} {:<8} {:<26} {:<26} {:>7} {:>7} {:>6} {:>8} {:>5}  {}",
            cut(&c.shop_id, 20),
            c.id,
            if c.active { "active" } else { "inactive" },
            sync_word(s.last_sync.get("full")),
            sync_word(s.last_sync.get("prices")),
            counter(&s, "orders_pushed"),
            counter(&s, "orders_failed"),
            s.failures.len(),
            counter(&s, "keycrm_requests"),
            counter(&s, "keycrm_rate_limited"),
            s.last_error
                .as_ref()
                .map(|e| cut(&format!("{} {}", at(Some(e.at)), e.message), 70))
                .unwrap_or_default(),
        ));
    }
    let mut text = String::new();
    let _ = writeln!(
        text,
        "{:<20} {:<34} {:<8} {:<26} {:<26} {:>7} {:>7} {:>6} {:>8} {:>5}  LAST ERROR",
        "SHOP",
        "CONNECTION",
        "STATE",
        "LAST FULL SYNC",
        "LAST PRICE SYNC",
        "PUSHED",
        "FAILED",
        "OPEN",
        "KEYCRM",
        "429"
    );
    for r in &rows {
        let _ = writeln!(text, "{r}");
    }
    let _ = writeln!(
        text,
        "{} connection(s){}",
        rows.len(),
        if only_failing { " needing a look" } else { "" }
    );
    Ok(Output {
        text,
        json: json!({"connections": json_rows}),
    })
}

/// Whether the connection's KeyCRM key is in Secrets Manager (described, never read).
async fn key_stored(ops: &Ops, c: &Connection) -> String {
    match ops
        .target
        .secrets
        .describe_secret()
        .secret_id(&c.secret_name)
        .send()
        .await
    {
        Ok(d) => format!(
            "stored (changed {})",
            d.last_changed_date()
                .map(|t| t.to_string())
                .unwrap_or_else(|| "-".into())
        ),
        Err(e) => {
            let text = aws_sdk_secretsmanager::error::DisplayErrorContext(&e).to_string();
            if text.contains("ResourceNotFound") {
                "MISSING: orders of this shop fail until the merchant reconnects".into()
            } else if text.contains("AccessDenied") {
                "unknown (the operator may not describe secrets)".into()
            } else {
                format!("unknown ({})", cut(text.lines().next().unwrap_or(""), 80))
            }
        }
    }
}

/// `ops connection SHOP`.
pub async fn connection(ops: &Ops, shop: &str) -> Result<Output, OpsError> {
    let c = require_connection(ops, shop).await?;
    let table = ops.table().await?;
    let s = table.status(&c.id).await?;
    let runs = table.list_runs(&c.id, 1).await?;
    let key = key_stored(ops, &c).await;
    // Whether each URL was issued; never a token or a hash of one.
    let issued = |kind: WebhookKind| {
        let generation = c.webhook_generations.get(kind);
        let legacy = c.webhook_tokens.hash_for(kind).is_some();
        if legacy {
            "issued (legacy token)".to_string()
        } else if generation > 0 {
            format!("issued (generation {generation})")
        } else {
            "not issued".to_string()
        }
    };
    let mut t = String::new();
    let _ = writeln!(t, "shop            {}", c.shop_id);
    let _ = writeln!(t, "connection      {}", c.id);
    let _ = writeln!(
        t,
        "state           {}",
        if c.active { "active" } else { "INACTIVE" }
    );
    let _ = writeln!(t, "KeyCRM          {}", c.keycrm_base_url);
    let _ = writeln!(
        t,
        "KeyCRM key      {} {} (budget id {})",
        c.key_mask, key, c.key_fingerprint
    );
    let _ = writeln!(
        t,
        "webhook URLs    orders {}, cards {}, stock {}",
        issued(WebhookKind::Orders),
        issued(WebhookKind::Cards),
        issued(WebhookKind::Stock)
    );
    let _ = writeln!(t, "order sync      {:?}", c.settings.order_sync);
    let _ = writeln!(
        t,
        "catalog sync    products {}, categories {}, realtime stock {}",
        c.settings.sync_products, c.settings.sync_categories, c.settings.realtime_stock
    );
    let _ = writeln!(t, "connected       {}", at(Some(c.created_at)));
    let _ = writeln!(
        t,
        "settings saved  {} (version {})",
        at(Some(c.updated_at)),
        c.version
    );
    let _ = writeln!(t, "counters");
    for (k, v) in &s.counters {
        let _ = writeln!(t, "  {k:<22} {v}");
    }
    for kind in ["full", "prices"] {
        let _ = match s.last_sync.get(kind) {
            None => writeln!(t, "last {kind:<6} sync never"),
            Some(x) => writeln!(
                t,
                "last {kind:<6} sync {} {} ({} KeyCRM requests){}",
                at(x.finished_at),
                if x.complete { "complete" } else { "INCOMPLETE" },
                x.keycrm_requests,
                x.message
                    .as_ref()
                    .map(|m| format!(": {}", cut(m, 120)))
                    .unwrap_or_default()
            ),
        };
    }
    if let Some(r) = runs.first() {
        let _ = writeln!(
            t,
            "latest run      {} {} {} ({})",
            r.run_id,
            r.kind.map(|k| k.as_str()).unwrap_or("-"),
            r.state,
            at(r.started_at)
        );
    }
    let _ = match &s.last_error {
        Some(e) => writeln!(t, "last error      {} {}", at(Some(e.at)), e.message),
        None => writeln!(t, "last error      none"),
    };
    let _ = writeln!(t, "open failures   {}", s.failures.len());
    for f in s.failures.iter().take(10) {
        let _ = writeln!(
            t,
            "  {} order {}: {}",
            at(Some(f.at)),
            f.shop_order_id,
            cut(&f.reason, 160)
        );
    }
    let mut j = status_json(&c, &s);
    j["keycrm_base_url"] = json!(c.keycrm_base_url);
    j["key_mask"] = json!(c.key_mask);
    j["key_stored"] = json!(key);
    j["webhooks"] =
        json!({"orders": issued(WebhookKind::Orders), "cards": issued(WebhookKind::Cards)});
    j["failures"] = json!(s.failures);
    j["latest_run"] = json!(runs.first());
    Ok(Output { text: t, json: j })
}

fn entry_json(e: &LedgerEntry) -> Value {
    json!({
        "shop_order_id": e.shop_order_id, "state": e.state, "target": e.target,
        "keycrm_id": e.keycrm_id, "attempts": e.attempts, "maybe_committed": e.maybe_committed,
        "claim_holder": e.claim_holder.is_some(), "claim_until": e.claim_until,
        "attempt_started_at": e.attempt_started_at, "last_error": e.last_error,
        "field_errors": e.field_errors, "report": e.report,
        "stored_event": e.event_json.is_some(),
        "shop_status": e.shop_status, "shop_status_at": e.shop_status_at,
        "keycrm_status_id": e.keycrm_status_id,
        "keycrm_status_changed_at": e.keycrm_status_changed_at,
        "applied_from_keycrm": e.applied_from_keycrm,
        "status_push_in_flight": e.push_holder.is_some(),
        "created_at": e.created_at, "updated_at": e.updated_at,
    })
}

/// The order's life as far as the ledger recorded it, oldest first.
fn history(e: &LedgerEntry) -> Vec<(DateTime<Utc>, String)> {
    let mut h = vec![(e.created_at, "first taken for creation".to_string())];
    if let Some(t) = e.attempt_started_at {
        h.push((
            t,
            format!("create request sent (attempt {} in all)", e.attempts),
        ));
    }
    if let Some(t) = e.shop_status_at {
        h.push((
            t,
            format!(
                "shop status \"{}\" pushed to KeyCRM",
                e.shop_status.as_deref().unwrap_or("?")
            ),
        ));
    }
    if let Some(t) = e.keycrm_status_changed_at {
        h.push((
            t,
            format!(
                "KeyCRM status {} applied to the shop as \"{}\"",
                e.keycrm_status_id
                    .map(|i| i.to_string())
                    .unwrap_or_else(|| "?".into()),
                e.applied_from_keycrm.as_deref().unwrap_or("?")
            ),
        ));
    }
    h.push((e.updated_at, format!("last change: {:?}", e.state)));
    h.sort_by_key(|(t, _)| *t);
    h
}

/// `ops order SHOP ORDER_ID [--keycrm]`.
pub async fn order(ops: &Ops, shop: &str, order_id: &str, live: bool) -> Result<Output, OpsError> {
    let c = require_connection(ops, shop).await?;
    let table = ops.table().await?;
    let Some(e) = OrderLedger::get(&table, &c.id, order_id).await? else {
        return Err(OpsError::NotFound(format!(
            "order {} of shop {} is not in the ledger: the connector never received its \
             order.created (look in the order DLQ: ops dlq show orders --shop {})",
            crate::target::printable(order_id),
            c.shop_id,
            c.shop_id
        )));
    };
    let s = table.status(&c.id).await?;
    let failure = s
        .failures
        .iter()
        .find(|f| f.shop_order_id == e.shop_order_id);
    let mut t = String::new();
    let _ = writeln!(
        t,
        "order           {} of shop {}",
        e.shop_order_id, c.shop_id
    );
    let _ = writeln!(t, "state           {:?}", e.state);
    let _ = match e.keycrm_id {
        Some(id) => writeln!(t, "in KeyCRM       {} {id}", e.target.as_str()),
        None => writeln!(
            t,
            "in KeyCRM       not linked (would be an {})",
            e.target.as_str()
        ),
    };
    let _ = writeln!(t, "attempts        {}", e.attempts);
    if e.maybe_committed {
        let _ = writeln!(
            t,
            "                an attempt may have reached KeyCRM: the next one searches first"
        );
    }
    if e.claim_is_live(Utc::now()) {
        let _ = writeln!(
            t,
            "claimed until   {} (an attempt runs now)",
            at(e.claim_until)
        );
    }
    if e.push_holder.is_some() {
        let _ = writeln!(t, "status push     in flight until {}", at(e.push_until));
    }
    let _ = writeln!(
        t,
        "statuses        shop {} / KeyCRM {}",
        e.shop_status.as_deref().unwrap_or("-"),
        e.keycrm_status_id
            .map(|i| i.to_string())
            .unwrap_or_else(|| "-".into())
    );
    if let Some(err) = &e.last_error {
        let _ = writeln!(t, "last error      {err}");
    }
    for (field, msgs) in &e.field_errors {
        let _ = writeln!(t, "  {field}: {}", msgs.join("; "));
    }
    for n in &e.report.notes {
        let _ = writeln!(t, "mapping note    {n}");
    }
    if let Some(f) = failure {
        let _ = writeln!(t, "open failure    {} {}", at(Some(f.at)), f.reason);
    }
    let _ = writeln!(
        t,
        "stored event    {}",
        if e.event_json.is_some() {
            "yes (a re-push sends it again)"
        } else {
            "no"
        }
    );
    let _ = writeln!(t, "history");
    for (when, what) in history(&e) {
        let _ = writeln!(t, "  {}  {what}", at(Some(when)));
    }
    let mut j = json!({"shop_id": c.shop_id, "connection_id": c.id, "ledger": entry_json(&e),
                       "open_failure": failure});
    if live {
        let now = keycrm_now(ops, &c, &e).await;
        let _ = writeln!(t, "KeyCRM now      {}", now.0);
        j["keycrm_now"] = now.1;
    }
    Ok(Output { text: t, json: j })
}

/// Reads the order or card from KeyCRM with the shop's key, through the shared rate gate.
async fn keycrm_now(ops: &Ops, c: &Connection, e: &LedgerEntry) -> (String, Value) {
    let Some(id) = e.keycrm_id else {
        return ("not linked: nothing to read".into(), Value::Null);
    };
    let table = match ops.table().await {
        Ok(t) => t,
        Err(err) => return (format!("not read: {err}"), Value::Null),
    };
    let clients = KeycrmClients::new(
        Arc::new(SecretsManager::new(ops.target.secrets.clone())),
        Arc::new(DynamoRateGate::new(table, RateBudget::keycrm())),
        ClientConfig {
            timeout: Duration::from_secs(10),
            ..ClientConfig::default()
        },
    );
    let client = match clients.for_connection(c).await {
        Ok(cl) => cl,
        Err(err) => return (format!("not read: {err}"), Value::Null),
    };
    let mapped = |status: i64| match e.target {
        Target::Order => c.settings.shop_status_for(status).map(str::to_string),
        Target::Card => None,
    };
    match e.target {
        Target::Order => match client.get_order(id).await {
            Ok(o) => (
                format!(
                    "order {} status {}{} (changed {})",
                    o.id,
                    o.status_id,
                    mapped(o.status_id)
                        .map(|s| format!(" = shop \"{s}\""))
                        .unwrap_or_default(),
                    at(o.status_changed_at)
                ),
                json!({"id": o.id, "status_id": o.status_id, "status_changed_at": o.status_changed_at,
                       "source_uuid": o.source_uuid}),
            ),
            Err(err) => (
                format!("not read: {err}"),
                json!({"error": err.to_string()}),
            ),
        },
        Target::Card => match client.get_card(id).await {
            Ok(card) => {
                let shop = c
                    .settings
                    .shop_status_for_card(card.pipeline_id, card.status_id)
                    .map(|s| format!(" = shop \"{s}\""))
                    .unwrap_or_default();
                (
                    format!(
                        "card {} pipeline {} status {}{shop}",
                        card.id,
                        card.pipeline_id
                            .map(|p| p.to_string())
                            .unwrap_or_else(|| "-".into()),
                        card.status_id
                    ),
                    json!({"id": card.id, "pipeline_id": card.pipeline_id, "status_id": card.status_id}),
                )
            }
            Err(err) => (
                format!("not read: {err}"),
                json!({"error": err.to_string()}),
            ),
        },
    }
}

fn duration(r: &SyncRun) -> String {
    match (r.started_at, r.finished_at) {
        (Some(s), Some(f)) => {
            let secs = (f - s).num_seconds().max(0);
            format!("{}m{:02}s", secs / 60, secs % 60)
        }
        _ => "-".into(),
    }
}

/// `ops runs SHOP`.
pub async fn runs(ops: &Ops, shop: &str, limit: usize) -> Result<Output, OpsError> {
    let c = require_connection(ops, shop).await?;
    let table = ops.table().await?;
    let runs = table.list_runs(&c.id, limit.clamp(1, 100)).await?;
    let mut t = String::new();
    let _ = writeln!(
        t,
        "{:<34} {:<7} {:<4} {:<10} {:<21} {:<21} {:>8} {:>7}  COUNTS / MESSAGE",
        "RUN", "KIND", "DRY", "STATE", "STARTED", "FINISHED", "TOOK", "KEYCRM"
    );
    for r in &runs {
        let counts: Vec<String> = r
            .counts
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| format!("{k}={n}"))
            .collect();
        let _ = writeln!(
            t,
            "{:<34} {:<7} {:<4} {:<10} {:<21} {:<21} {:>8} {:>7}  {}{}",
            r.run_id,
            r.kind.map(|k| k.as_str()).unwrap_or("-"),
            if r.dry_run { "yes" } else { "no" },
            r.state,
            at(r.started_at),
            at(r.finished_at),
            duration(r),
            r.keycrm_requests,
            cut(&counts.join(" "), 80),
            r.message
                .as_ref()
                .map(|m| format!(" | {}", cut(m, 120)))
                .unwrap_or_default()
        );
        for e in r.errors.iter().take(3) {
            let _ = writeln!(
                t,
                "    error: {} {}",
                e.keycrm_id.map(|i| i.to_string()).unwrap_or_default(),
                e.detail.as_deref().unwrap_or(&e.name)
            );
        }
    }
    let _ = writeln!(t, "{} run(s) of shop {}", runs.len(), c.shop_id);
    Ok(Output {
        text: t,
        json: json!({"shop_id": c.shop_id, "connection_id": c.id, "runs": runs}),
    })
}
