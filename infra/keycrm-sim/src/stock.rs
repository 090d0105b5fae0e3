//! Stock per warehouse and KeyCRM's stock webhook (Settings → Products → Stocks →
//! "+ Add webhook": name, URL, warehouses). Unlike trigger webhooks it posts a bare JSON array
//! `[{"offer_id", "sku", "in_stock", "in_reserve"}]`, summed over the webhook's warehouses
//! (none = all), on every change of those balances: `PUT /offers/stocks`, manual edits
//! (`SetStock`), order reservations (creation), releases (cancellation) and write-offs
//! (completion). Delivery retries like the trigger webhooks.

use std::sync::Arc;

use rust_decimal::prelude::ToPrimitive;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::catalog::{warehouse_name, Catalog, Stock};
use crate::crm::{Crm, Reservation};
use crate::error::{attr, Invalid};
use crate::input::{objects, Fields};
use crate::state::{lock, read, write, Account, Shared};

/// `PUT /offers/stocks` takes at most this many items.
pub(crate) const MAX_STOCK_ITEMS: usize = 10_000;

/// Label of stock deliveries in [`crate::SimStats::webhook_log`].
pub const STOCK_EVENT: &str = "stock";

/// One stock webhook of an account, as configured in KeyCRM's form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockWebhook {
    #[serde(default)]
    pub name: String,
    pub url: String,
    /// Warehouses whose balances are summed; empty = all.
    #[serde(default)]
    pub warehouses: Vec<i64>,
}

/// Balances of some offers before a change: `(offer id, sku, rows)`.
pub(crate) type Before = Vec<(i64, String, Vec<Stock>)>;

/// Runs `change` on the catalog and fires the stock webhooks for the balances it changed.
/// `offer_ids` are the offers it may touch.
pub(crate) fn with_stock_events<T>(
    sh: &Arc<Shared>,
    acc: &Account,
    offer_ids: &[i64],
    change: impl FnOnce(&mut Catalog) -> T,
) -> T {
    let (out, before) = {
        let mut cat = write(&acc.catalog);
        let before = cat.stock_of(offer_ids);
        (change(&mut cat), before)
    };
    fire(sh, acc, before);
    out
}

/// Sends, per configured stock webhook, the offers whose balance in its warehouses differs
/// from `before`. Returns at once; deliveries run on their own tasks.
pub(crate) fn fire(sh: &Arc<Shared>, acc: &Account, before: Before) {
    let hooks = lock(&acc.stock_webhooks).clone();
    if hooks.is_empty() || before.is_empty() {
        return;
    }
    let cat = read(&acc.catalog);
    for hook in hooks {
        let items: Vec<Value> = before
            .iter()
            .filter_map(|(id, sku, rows)| {
                let old = sum(rows, &hook.warehouses);
                let new = cat.offer(*id).map(|o| o.stock_in(&hook.warehouses))?;
                (old != new).then(
                    || json!({"offer_id": id, "sku": sku, "in_stock": new.0, "in_reserve": new.1}),
                )
            })
            .collect();
        let Some(first) = items.first().and_then(|i| i["offer_id"].as_i64()) else {
            continue;
        };
        let sh = Arc::clone(sh);
        let url = hook.url.clone();
        tokio::spawn(async move {
            crate::webhook::deliver(sh, STOCK_EVENT.into(), url, first, Value::Array(items)).await;
        });
    }
}

fn sum(rows: &[Stock], warehouses: &[i64]) -> (i64, i64) {
    rows.iter()
        .filter(|s| warehouses.is_empty() || warehouses.contains(&s.warehouse_id))
        .fold((0, 0), |(q, r), s| (q + s.quantity, r + s.reserve))
}

/// A validated `PUT /offers/stocks` body: the warehouse and `(offer id, quantity)` pairs.
pub(crate) struct StockUpdate {
    pub warehouse_id: i64,
    pub items: Vec<(i64, i64)>,
}

/// Validates `{"warehouse_id": 1, "stocks": [{"id"|"sku", "quantity"}]}` against the catalog.
/// Quantities are whole, non-negative units; an item names its offer by `id` or `sku` (the
/// lowest offer id wins on a duplicated SKU, as order lines do).
pub(crate) fn parse_update(
    body: &Map<String, Value>,
    cat: &Catalog,
) -> Result<StockUpdate, Invalid> {
    let mut inv = Invalid::default();
    let f = Fields::new(body, "");
    let warehouse_id = if f.required("warehouse_id", &mut inv) {
        f.known_id("warehouse_id", &mut inv, |id| warehouse_name(id).is_some())
    } else {
        None
    };
    let mut items = Vec::new();
    if f.required("stocks", &mut inv) {
        if let Some(arr) = f.array("stocks", &mut inv) {
            if arr.len() > MAX_STOCK_ITEMS {
                inv.add(
                    "stocks",
                    format!("The stocks must not have more than {MAX_STOCK_ITEMS} items."),
                );
            } else {
                for (_, item) in objects(arr, "stocks", &mut inv) {
                    if let Some(pair) = parse_item(&item, cat, &mut inv) {
                        items.push(pair);
                    }
                }
            }
        }
    }
    match warehouse_id {
        Some(warehouse_id) if inv.is_empty() => Ok(StockUpdate {
            warehouse_id,
            items,
        }),
        _ => Err(inv),
    }
}

fn parse_item(item: &Fields<'_>, cat: &Catalog, inv: &mut Invalid) -> Option<(i64, i64)> {
    let quantity = if item.required("quantity", inv) {
        match item.number("quantity", inv) {
            Some(q) if q.is_sign_negative() => {
                let p = item.path("quantity");
                inv.add(p.clone(), format!("The {} must be at least 0.", attr(&p)));
                None
            }
            Some(q) if !q.fract().is_zero() => {
                let p = item.path("quantity");
                inv.add(p.clone(), format!("The {} must be an integer.", attr(&p)));
                None
            }
            Some(q) => q.to_i64(),
            None => None,
        }
    } else {
        None
    };
    let offer = if item.has("id") {
        item.known_id("id", inv, |id| cat.offer(id).is_some())
    } else if item.has("sku") {
        match item.string("sku", inv) {
            Some(sku) => match cat.offer_by_sku(&sku) {
                Some(o) => Some(o.id),
                None => {
                    item.invalid("sku", inv);
                    None
                }
            },
            None => None,
        }
    } else {
        let (id, sku) = (item.path("id"), item.path("sku"));
        inv.add(
            id.clone(),
            format!(
                "The {} field is required when {} is not present.",
                attr(&id),
                attr(&sku)
            ),
        );
        None
    };
    Some((offer?, quantity?))
}

/// Applies a validated update: absolute balances in one warehouse.
pub(crate) fn apply_update(cat: &mut Catalog, u: &StockUpdate, now: i64) {
    for (id, quantity) in &u.items {
        if let Some(o) = cat.offer_mut(*id) {
            o.set_quantity(u.warehouse_id, *quantity);
            o.updated_at = now;
        }
    }
}

// ---- orders: reserve on creation, release on cancellation, write off on completion -----------

/// Whole units an order line holds (fractional quantities reserve the next whole unit).
fn units(q: rust_decimal::Decimal) -> i64 {
    q.ceil().to_i64().unwrap_or(0).max(0)
}

/// Reserves the order's catalog lines from what is free, warehouse by warehouse. Lines with
/// more than is free are reserved in part (KeyCRM accepts orders beyond stock).
fn reserve(cat: &mut Catalog, lines: &[(i64, i64)]) -> Vec<Reservation> {
    let mut held = Vec::new();
    for (offer_id, mut need) in lines.iter().copied() {
        let Some(o) = cat.offer_mut(offer_id) else {
            continue;
        };
        for s in o.stock.iter_mut() {
            let free = (s.quantity - s.reserve).max(0);
            let take = need.min(free);
            if take > 0 {
                s.reserve += take;
                need -= take;
                held.push(Reservation {
                    offer_id,
                    warehouse_id: s.warehouse_id,
                    quantity: take,
                });
            }
            if need == 0 {
                break;
            }
        }
    }
    held
}

/// Gives reserved units back (`write_off`: they leave the warehouse as sold).
fn release(cat: &mut Catalog, held: &[Reservation], write_off: bool) {
    for r in held {
        if let Some(o) = cat.offer_mut(r.offer_id) {
            let s = o.stock_mut(r.warehouse_id);
            s.reserve = (s.reserve - r.quantity).max(0);
            if write_off {
                s.quantity -= r.quantity;
            }
        }
    }
}

/// What a status change does to the order's stock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StockStep {
    Reserve,
    Release,
    WriteOff,
}

/// Status groups: 1–4 open, 5 completed (write-off), 6 cancelled/returned (release).
fn step(held: bool, written_off: bool, to_group: i64) -> Option<StockStep> {
    match to_group {
        5 if held => Some(StockStep::WriteOff),
        6 if held => Some(StockStep::Release),
        1..=4 if !held && !written_off => Some(StockStep::Reserve),
        _ => None,
    }
}

/// Reserves a new order's lines and fires the stock webhooks.
pub(crate) fn on_order_created(sh: &Arc<Shared>, acc: &Account, order_id: i64) {
    on_order_status(sh, acc, order_id);
}

/// Brings the order's reservation in line with its (new) status group and fires the stock
/// webhooks for what moved. Lock order: catalog, then CRM (as everywhere).
pub(crate) fn on_order_status(sh: &Arc<Shared>, acc: &Account, order_id: i64) {
    let before = {
        let mut cat = write(&acc.catalog);
        let mut crm = lock(&acc.crm);
        let Some(i) = crm.order_index(order_id) else {
            return;
        };
        let o = &crm.orders[i];
        let Some(step) = step(!o.reserved.is_empty(), o.written_off, o.status_group_id) else {
            return;
        };
        let lines = order_lines(&crm, i);
        let ids: Vec<i64> = lines.iter().map(|l| l.0).collect();
        let before = cat.stock_of(&ids);
        let o = &mut crm.orders[i];
        match step {
            StockStep::Reserve => o.reserved = reserve(&mut cat, &lines),
            StockStep::Release | StockStep::WriteOff => {
                release(&mut cat, &o.reserved, step == StockStep::WriteOff);
                o.reserved.clear();
                o.written_off = step == StockStep::WriteOff;
            }
        }
        before
    };
    fire(sh, acc, before);
}

fn order_lines(crm: &Crm, i: usize) -> Vec<(i64, i64)> {
    crm.orders[i]
        .lines
        .iter()
        .filter_map(|l| Some((l.offer_id?, units(l.quantity))))
        .filter(|(_, n)| *n > 0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_groups_drive_the_reservation() {
        assert_eq!(step(false, false, 1), Some(StockStep::Reserve));
        assert_eq!(step(true, false, 2), None);
        assert_eq!(step(true, false, 6), Some(StockStep::Release));
        assert_eq!(step(true, false, 5), Some(StockStep::WriteOff));
        assert_eq!(step(false, false, 6), None);
        assert_eq!(
            step(false, true, 1),
            None,
            "a completed order is not reserved again"
        );
        assert_eq!(step(false, false, 3), Some(StockStep::Reserve), "reopened");
    }

    #[test]
    fn reservation_takes_what_is_free_warehouse_by_warehouse() {
        let mut cat = Catalog::generate(3, 5);
        let id = cat.offers[0].id;
        let o = cat.offer_mut(id).unwrap();
        o.stock = vec![
            Stock {
                warehouse_id: 1,
                quantity: 2,
                reserve: 1,
            },
            Stock {
                warehouse_id: 2,
                quantity: 3,
                reserve: 0,
            },
        ];
        let held = reserve(&mut cat, &[(id, 5)]);
        assert_eq!(
            held.iter().map(|r| r.quantity).sum::<i64>(),
            4,
            "1 free in warehouse 1, 3 in 2"
        );
        let o = cat.offer(id).unwrap();
        assert_eq!((o.quantity(), o.reserve()), (5, 5));
        release(&mut cat, &held, true);
        let o = cat.offer(id).unwrap();
        assert_eq!((o.quantity(), o.reserve()), (1, 1));
    }

    #[test]
    fn webhook_sums_follow_the_warehouses() {
        let rows = [
            Stock {
                warehouse_id: 1,
                quantity: 5,
                reserve: 1,
            },
            Stock {
                warehouse_id: 2,
                quantity: 2,
                reserve: 0,
            },
        ];
        assert_eq!(sum(&rows, &[]), (7, 1));
        assert_eq!(sum(&rows, &[2]), (2, 0));
        assert_eq!(sum(&rows, &[3]), (0, 0));
    }
}
