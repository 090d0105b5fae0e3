//! `ops dlq show|redrive QUEUE`: read dead letters with their reasons; send a filtered subset
//! back. Letters are read by receiving them with a long visibility timeout (so each is seen
//! once) and handed back (visibility 0) when the command ends, unless redriven.

use crate::cli::{FilterArgs, QueueArg};
use crate::error::OpsError;
use crate::letters::{self, Filter, Letter};
use crate::progress::Progress;
use crate::{Ops, Output};
use queue::{Outgoing, Queue, SqsQueue};
use serde_json::json;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write;
use std::time::Duration;
use store::{ConnectionStore, LedgerState, OrderLedger};

/// How long a read letter stays hidden while the command runs.
const HOLD: Duration = Duration::from_secs(900);
/// Empty receives in a row that mean the queue has been read through.
const EMPTY_RECEIVES: u32 = 2;

fn queue_label(q: QueueArg) -> &'static str {
    match q {
        QueueArg::Orders => "order events",
        QueueArg::Statuses => "status updates",
        QueueArg::Sync => "sync jobs",
        QueueArg::Stock => "stock flushes",
    }
}

/// Reads a dead-letter queue message by message, each once.
struct Scanner<'a> {
    dlq: &'a SqsQueue,
    seen: HashSet<String>,
    held: Vec<String>,
    read: usize,
    limit: usize,
    empty: u32,
}

impl<'a> Scanner<'a> {
    fn new(dlq: &'a SqsQueue, limit: Option<usize>) -> Self {
        Scanner {
            dlq,
            seen: HashSet::new(),
            held: Vec::new(),
            read: 0,
            limit: limit.unwrap_or(usize::MAX),
            empty: 0,
        }
    }

    /// The next few messages; `None` once the queue is read through or the limit is reached.
    async fn next(&mut self) -> Result<Option<Vec<queue::Message>>, OpsError> {
        while self.read < self.limit && self.empty < EMPTY_RECEIVES {
            let want = (self.limit - self.read).min(10);
            let got = self.dlq.receive(want, Duration::from_secs(1), HOLD).await?;
            let mut fresh = Vec::new();
            for m in got {
                if self.seen.insert(m.id.clone()) {
                    fresh.push(m);
                } else {
                    // Seen before (its hold ran out): hand it back, do not count it twice.
                    self.held.push(m.receipt);
                }
            }
            if fresh.is_empty() {
                self.empty += 1;
                continue;
            }
            self.empty = 0;
            self.read += fresh.len();
            return Ok(Some(fresh));
        }
        Ok(None)
    }

    fn hold(&mut self, receipt: String) {
        self.held.push(receipt);
    }

    /// Makes every letter not removed visible again.
    async fn release(self) {
        for r in self.held {
            if let Err(e) = self.dlq.change_visibility(&r, Duration::ZERO).await {
                eprintln!("warning: a letter stays hidden until its hold ends ({e})");
            }
        }
    }
}

async fn shop_connection(
    ops: &Ops,
    queue: QueueArg,
    filter: &FilterArgs,
) -> Result<Option<String>, OpsError> {
    let Some(shop) = &filter.shop else {
        return Ok(None);
    };
    if queue == QueueArg::Orders {
        return Ok(None);
    }
    // Status, sync and stock flush jobs name the connection, not the shop.
    let table = ops.table().await?;
    Ok(table.get_by_shop(shop).await?.map(|c| c.id))
}

fn describe(l: &Letter) -> String {
    let mut who = Vec::new();
    if let Some(s) = &l.shop_id {
        who.push(format!("shop {s}"));
    }
    if let Some(o) = &l.order_id {
        who.push(format!("order {o}"));
    }
    if who.is_empty() {
        if let Some(c) = &l.connection_id {
            who.push(format!("connection {c}"));
        }
    }
    let who = if who.is_empty() {
        "(unreadable message)".to_string()
    } else {
        who.join(" ")
    };
    format!(
        "{}  {:<18} {}: {}",
        l.failed_at.as_deref().unwrap_or("-"),
        l.kind,
        who,
        l.reason
    )
}

fn filter_words(f: &FilterArgs) -> String {
    let mut w = Vec::new();
    if let Some(k) = &f.kind {
        w.push(format!("kind={k}"));
    }
    if let Some(s) = &f.shop {
        w.push(format!("shop={s}"));
    }
    if let Some(r) = &f.reason {
        w.push(format!("reason~{r}"));
    }
    if w.is_empty() {
        String::new()
    } else {
        format!(" (filter: {})", w.join(", "))
    }
}

/// `ops dlq show QUEUE`.
pub async fn show(
    ops: &Ops,
    queue: QueueArg,
    args: &FilterArgs,
    body: bool,
) -> Result<Output, OpsError> {
    let dlq = ops.target.queue(queue, true).await?;
    let filter = Filter::new(args, shop_connection(ops, queue, args).await?);
    let total = dlq.approximate_len().await.ok().map(|n| n as u64);
    let mut progress = Progress::new("reading", total);
    let mut scan = Scanner::new(&dlq, args.limit);
    let mut shown: Vec<Letter> = Vec::new();
    let mut other = 0usize;
    let result = async {
        while let Some(batch) = scan.next().await? {
            for m in batch {
                progress.tick();
                let l = letters::parse(queue, &m);
                scan.hold(m.receipt.clone());
                if filter.matches(&l) {
                    shown.push(l);
                } else {
                    other += 1;
                }
            }
        }
        Ok::<(), OpsError>(())
    }
    .await;
    progress.finish();
    scan.release().await;
    result?;

    let mut by_kind: BTreeMap<&str, usize> = BTreeMap::new();
    for l in &shown {
        *by_kind.entry(l.kind.as_str()).or_default() += 1;
    }
    let mut text = String::new();
    let _ = writeln!(
        text,
        "{} dead letter(s) in the {} DLQ{}",
        shown.len(),
        queue_label(queue),
        filter_words(args)
    );
    for l in &shown {
        let _ = writeln!(text, "  {}", describe(l));
        if body {
            let _ = writeln!(text, "      {}", l.original);
        }
    }
    if !by_kind.is_empty() {
        let kinds: Vec<String> = by_kind.iter().map(|(k, n)| format!("{k} {n}")).collect();
        let _ = writeln!(text, "by kind: {}", kinds.join(", "));
    }
    if other > 0 {
        let _ = writeln!(text, "{other} other letter(s) did not match the filter");
    }
    let letters: Vec<serde_json::Value> = shown
        .iter()
        .map(|l| {
            let mut v = serde_json::to_value(l).unwrap_or_default();
            if body {
                v["original"] = json!(l.original);
            }
            v
        })
        .collect();
    Ok(Output {
        text,
        json: json!({"queue": queue_label(queue), "count": shown.len(), "by_kind": by_kind,
                     "not_matching": other, "letters": letters}),
    })
}

/// What a redrive does with one letter.
#[derive(Clone, Debug, PartialEq)]
enum Plan {
    /// A failed order: reset its ledger entry and queue its stored event (order-push's
    /// re-push), so it is created as for a new event.
    Repush { connection: String, order: String },
    /// Send the original back to its queue.
    Resend,
    /// The order is in KeyCRM already: the letter is only removed.
    AlreadyDone(String),
    /// Left in place, with the reason.
    Keep(String),
}

impl Plan {
    fn verb(&self) -> &'static str {
        match self {
            Plan::Repush { .. } => "re-push",
            Plan::Resend => "send back",
            Plan::AlreadyDone(_) => "remove (already in KeyCRM)",
            Plan::Keep(_) => "leave",
        }
    }
}

/// Decides what to do with an order letter: the ledger says whether the order failed (it is
/// re-pushed), is in KeyCRM already, or was never taken (the event goes back as it is).
async fn plan_order(
    ops: &Ops,
    l: &Letter,
    connections: &mut HashMap<String, Option<String>>,
) -> Result<Plan, OpsError> {
    let created = serde_json::from_str::<serde_json::Value>(&l.original)
        .ok()
        .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_string))
        .is_some_and(|t| t == "order.created");
    let (Some(shop), Some(order), true) = (&l.shop_id, &l.order_id, created) else {
        return Ok(Plan::Resend);
    };
    let table = ops.table().await?;
    if !connections.contains_key(shop) {
        let c = table.get_by_shop(shop).await?.map(|c| c.id);
        connections.insert(shop.clone(), c);
    }
    let Some(Some(conn)) = connections.get(shop).cloned() else {
        return Ok(Plan::Keep(format!(
            "shop {shop} has no KeyCRM connection any more"
        )));
    };
    Ok(match OrderLedger::get(&table, &conn, order).await? {
        Some(e) if e.state == LedgerState::Created => Plan::AlreadyDone(format!(
            "already in KeyCRM as {} {}",
            e.target.as_str(),
            e.keycrm_id.unwrap_or_default()
        )),
        Some(e) if matches!(e.state, LedgerState::Failed | LedgerState::Skipped) => {
            if e.event_json.is_some() {
                Plan::Repush {
                    connection: conn,
                    order: order.clone(),
                }
            } else {
                Plan::Resend
            }
        }
        _ => Plan::Resend,
    })
}

/// `ops dlq redrive QUEUE`.
pub async fn redrive(
    ops: &Ops,
    queue: QueueArg,
    args: &FilterArgs,
    dry_run: bool,
) -> Result<Output, OpsError> {
    let dlq = ops.target.queue(queue, true).await?;
    let target = ops.target.queue(queue, false).await?;
    let filter = Filter::new(args, shop_connection(ops, queue, args).await?);
    let total = dlq.approximate_len().await.ok().map(|n| n as u64);
    let mut progress = Progress::new(if dry_run { "checking" } else { "redrive" }, total);
    let mut scan = Scanner::new(&dlq, args.limit);
    let mut connections: HashMap<String, Option<String>> = HashMap::new();
    let mut lines: Vec<String> = Vec::new();
    let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut other = 0usize;
    let mut failures: Vec<String> = Vec::new();
    let result = async {
        while let Some(batch) = scan.next().await? {
            for m in batch {
                progress.tick();
                let l = letters::parse(queue, &m);
                if !filter.matches(&l) {
                    other += 1;
                    scan.hold(m.receipt);
                    continue;
                }
                let plan = match queue {
                    QueueArg::Orders => plan_order(ops, &l, &mut connections).await?,
                    _ => Plan::Resend,
                };
                let key = match &plan {
                    Plan::Repush { .. } => "re-pushed",
                    Plan::Resend => "sent back",
                    Plan::AlreadyDone(_) => "already in KeyCRM (removed)",
                    Plan::Keep(_) => "left in place",
                };
                if dry_run || matches!(plan, Plan::Keep(_)) {
                    let why = match &plan {
                        Plan::AlreadyDone(w) | Plan::Keep(w) => format!(" ({w})"),
                        _ => String::new(),
                    };
                    lines.push(format!("would {}{why}: {}", plan.verb(), describe(&l)));
                    *counts.entry(key).or_default() += 1;
                    scan.hold(m.receipt);
                    continue;
                }
                let done = match &plan {
                    Plan::Repush { connection, order } => {
                        jobs::repush(&ops.table().await?, &target, connection, order)
                            .await
                            .map(|_| ())
                            .map_err(|e| e.to_string())
                    }
                    Plan::Resend => target
                        .send(Outgoing::new(l.original.clone()))
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string()),
                    Plan::AlreadyDone(_) | Plan::Keep(_) => Ok(()),
                };
                match done {
                    Ok(()) => {
                        if let Err(e) = dlq.delete(&m.receipt).await {
                            // Sent, but still in the DLQ: a later redrive sends it again,
                            // which the consumers absorb (ledger, dedupe).
                            failures.push(format!(
                                "{}: sent, but not removed from the DLQ ({e})",
                                describe(&l)
                            ));
                        }
                        *counts.entry(key).or_default() += 1;
                    }
                    Err(e) => {
                        failures.push(format!("{}: not redriven ({e})", describe(&l)));
                        scan.hold(m.receipt);
                    }
                }
            }
        }
        Ok::<(), OpsError>(())
    }
    .await;
    progress.finish();
    scan.release().await;
    result?;

    let matched: usize = counts.values().sum::<usize>() + failures.len();
    let mut text = String::new();
    let _ = writeln!(
        text,
        "{} the {} DLQ{}: {matched} letter(s) matched",
        if dry_run {
            "dry run of a redrive of"
        } else {
            "redrive of"
        },
        queue_label(queue),
        filter_words(args)
    );
    for l in &lines {
        let _ = writeln!(text, "  {l}");
    }
    for (k, n) in &counts {
        let _ = writeln!(text, "  {}{k}: {n}", if dry_run { "would be " } else { "" });
    }
    for f in &failures {
        let _ = writeln!(text, "  FAILED {f}");
    }
    if other > 0 {
        let _ = writeln!(text, "{other} other letter(s) did not match and stay");
    }
    let out = Output {
        text,
        json: json!({"queue": queue_label(queue), "dry_run": dry_run, "matched": matched,
                     "counts": counts, "failed": failures, "not_matching": other}),
    };
    if failures.is_empty() {
        Ok(out)
    } else {
        Err(OpsError::Failed(format!(
            "{}{} letter(s) could not be redriven",
            out.text,
            failures.len()
        )))
    }
}
