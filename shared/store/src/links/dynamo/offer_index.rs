//! The offer index: `LINKS#{conn}` / `O#{keycrm offer id}` → `p` (the KeyCRM product whose
//! link holds the offer). KeyCRM's stock webhook and `GET /offers/stocks` name offers only,
//! while links are keyed by product; the index turns one into the other with a `BatchGetItem`.
//!
//! Written with every product link (`LinkStore::put_products`) and deleted with it. Links
//! written before the index existed are indexed once per links scope (a connection's KeyCRM
//! account) by [`backfill`], which then leaves a marker (`LINKS#{scope}` / `OFFER_INDEX`). A link written concurrently with the
//! backfill indexes itself, so the two never miss an offer; an entry left behind for a link
//! deleted meanwhile points at a link that is gone and reads as "not linked".

use crate::dynamo::links_pk;
use crate::dynamo::{self, DynamoTable, Item, SK};
use crate::links::{LinkStore, ProductLink};
use crate::StoreError;
use std::collections::BTreeMap;

const PREFIX: &str = "O#";
const MARKER: &str = "OFFER_INDEX";
/// Bumped if the index layout ever changes, so every connection is indexed again.
const VERSION: i64 = 1;

pub(crate) fn sort_key(offer: i64) -> String {
    format!("{PREFIX}{offer}")
}

/// Index items for these links (one per offer; the last link naming an offer wins, since a
/// batch may not hold one key twice).
pub(crate) fn items<'a>(pk: &str, links: impl Iterator<Item = &'a ProductLink>) -> Vec<Item> {
    let mut by_offer: BTreeMap<i64, i64> = BTreeMap::new();
    for l in links {
        for v in &l.variants {
            by_offer.insert(v.offer_id, l.keycrm_id);
        }
    }
    by_offer
        .into_iter()
        .map(|(offer, product)| {
            let mut item = dynamo::key(pk, sort_key(offer));
            item.insert("p".into(), dynamo::n(product));
            item
        })
        .collect()
}

/// Every per-offer item a link owns: its index entries and realtime stock's records.
pub(crate) fn sort_keys(link: &ProductLink) -> Vec<String> {
    link.variants
        .iter()
        .flat_map(|v| [sort_key(v.offer_id), crate::stock::written_sk(v.offer_id)])
        .collect()
}

/// `(offer, product)` of an index item.
pub(crate) fn entry(item: &Item) -> Option<(i64, i64)> {
    let offer = dynamo::get_s(item, SK)?
        .strip_prefix(PREFIX)?
        .parse()
        .ok()?;
    Some((offer, dynamo::get_n(item, "p")?))
}

/// Indexes the links of a scope written before the index existed, once.
pub(crate) async fn backfill(table: &DynamoTable, conn: &str) -> Result<(), StoreError> {
    let marker = dynamo::key(links_pk(conn), MARKER);
    let out = table
        .client
        .get_item()
        .table_name(&table.name)
        .set_key(Some(marker.clone()))
        .consistent_read(true)
        .send()
        .await
        .map_err(dynamo::sdk)?;
    if out
        .item
        .as_ref()
        .and_then(|i| dynamo::get_n::<i64>(i, "v"))
        .is_some_and(|v| v >= VERSION)
    {
        return Ok(());
    }
    let pk = links_pk(conn);
    let mut after = None;
    let mut indexed = 0usize;
    loop {
        let (page, next) = table.products_page(conn, after, 1000).await?;
        let items = items(&pk, page.iter());
        indexed += items.len();
        crate::dynamo::batch::put_items(table, items).await?;
        match next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    let mut item = marker;
    item.insert("v".into(), dynamo::n(VERSION));
    table.put_item(item).await?;
    tracing::info!(connection = %conn, offers = indexed, "offer index built for existing links");
    Ok(())
}
