//! Catalog links: which shop product (and variant, and category) each KeyCRM one became, with
//! what was last written to it, so later syncs go by id and write only what changed. Also the
//! catalog sync's scratch space: products waiting for the end of a pass before they are
//! matched ("staged"), and the ids each run saw (for mark and sweep).
//!
//! Layout in partition `LINKS#{connection}`:
//! - `P#{keycrm product id}`: a [`ProductLink`] (`doc`, JSON) — variants with last price,
//!   availability and hashes;
//! - `R#{shop product id}`: the reverse pointer (`keycrm_id`), to find who owns a shop product;
//! - `C#{keycrm category id}`: a [`CategoryLink`];
//! - `N#{keycrm product id}`: a staged [`CrmProduct`] of the run in progress;
//! - `S#{run mark}#{seq}`: product and offer ids seen on one page of a run (TTL 3 days);
//! - `O#{keycrm offer id}`: the offer index (`p`: the KeyCRM product whose link holds the
//!   offer), written with every link, so realtime stock finds a link from an offer id
//!   (`offer_index.rs`).
//!
//! Deleting a connection deletes the whole partition.

use crate::connection::links_pk;
use crate::dynamo::{self, DynamoTable, Item, EXPIRES_AT, PK, SK};
use crate::StoreError;
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

pub use mapping::catalog::{CategoryLink, CrmOffer, CrmProduct, ProductLink, Swept, VariantLink};

/// Ids a run has seen so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SeenSet {
    pub products: HashSet<i64>,
    pub offers: HashSet<i64>,
}

#[async_trait]
pub trait LinkStore: Send + Sync {
    /// The links of these KeyCRM products (missing ones are simply absent).
    async fn get_products(&self, conn: &str, ids: &[i64]) -> Result<Vec<ProductLink>, StoreError>;
    /// Creates or replaces links (and their reverse pointers).
    async fn put_products(&self, conn: &str, links: &[ProductLink]) -> Result<(), StoreError>;
    async fn delete_products(&self, conn: &str, links: &[ProductLink]) -> Result<(), StoreError>;
    /// All product links, a page at a time (`after` = the previous page's cursor).
    async fn products_page(
        &self,
        conn: &str,
        after: Option<String>,
        limit: usize,
    ) -> Result<(Vec<ProductLink>, Option<String>), StoreError>;
    /// `(KeyCRM product id, swept)` of every link, a page at a time: what the vanish guard
    /// counts, without reading whole links.
    async fn product_states_page(
        &self,
        conn: &str,
        after: Option<String>,
        limit: usize,
    ) -> Result<(Vec<(i64, bool)>, Option<String>), StoreError>;
    /// `(shop product id, KeyCRM product id)` for those of `shop_ids` that are linked.
    async fn owners(
        &self,
        conn: &str,
        shop_ids: &[String],
    ) -> Result<Vec<(String, i64)>, StoreError>;

    async fn categories(&self, conn: &str) -> Result<Vec<CategoryLink>, StoreError>;
    async fn put_categories(&self, conn: &str, links: &[CategoryLink]) -> Result<(), StoreError>;

    async fn put_staged(&self, conn: &str, products: &[CrmProduct]) -> Result<(), StoreError>;
    async fn get_staged(&self, conn: &str, ids: &[i64]) -> Result<Vec<CrmProduct>, StoreError>;
    async fn staged_page(
        &self,
        conn: &str,
        after: Option<String>,
        limit: usize,
    ) -> Result<(Vec<CrmProduct>, Option<String>), StoreError>;
    async fn delete_staged(&self, conn: &str, ids: &[i64]) -> Result<(), StoreError>;

    /// Records what one page of run `mark` saw; `seq` numbers the pages of the run.
    async fn put_seen(
        &self,
        conn: &str,
        mark: i64,
        seq: u32,
        products: &[i64],
        offers: &[i64],
    ) -> Result<(), StoreError>;
    async fn seen(&self, conn: &str, mark: i64) -> Result<SeenSet, StoreError>;
    async fn clear_seen(&self, conn: &str, mark: i64) -> Result<(), StoreError>;

    /// The KeyCRM product whose link holds each of `offers` (unlinked offers are absent).
    /// This default reads every link; the adapters keep an offer index instead.
    async fn products_of_offers(
        &self,
        conn: &str,
        offers: &[i64],
    ) -> Result<HashMap<i64, i64>, StoreError> {
        let wanted: HashSet<i64> = offers.iter().copied().collect();
        let mut out = HashMap::new();
        let mut after = None;
        loop {
            let (page, next) = self.products_page(conn, after, 1000).await?;
            for l in page {
                for v in l.variants.iter().filter(|v| wanted.contains(&v.offer_id)) {
                    out.insert(v.offer_id, l.keycrm_id);
                }
            }
            match next {
                Some(n) => after = Some(n),
                None => return Ok(out),
            }
        }
    }

    /// Makes sure the offer index covers links written before it existed (idempotent; the
    /// adapters without a stored index need nothing).
    async fn index_offers(&self, _conn: &str) -> Result<(), StoreError> {
        Ok(())
    }
}

// ------------------------------------------------------------------ DynamoDB

const SEEN_TTL_SECS: i64 = 3 * 24 * 3600;

fn product_sk(id: i64) -> String {
    format!("P#{id}")
}

fn reverse_sk(shop_id: &str) -> String {
    format!("R#{shop_id}")
}

fn category_sk(id: i64) -> String {
    format!("C#{id}")
}

fn staged_sk(id: i64) -> String {
    format!("N#{id}")
}

fn seen_prefix(mark: i64) -> String {
    format!("S#{mark}#")
}

fn join_ids(ids: &[i64]) -> String {
    ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
}

fn split_ids(s: &str) -> impl Iterator<Item = i64> + '_ {
    s.split(',').filter_map(|x| x.parse().ok())
}

fn doc_item<T: serde::Serialize>(pk: &str, sk: String, doc: &T) -> Result<Item, StoreError> {
    let mut item = dynamo::key(pk, sk);
    item.insert("doc".into(), dynamo::json(doc)?);
    Ok(item)
}

fn doc_of<T: serde::de::DeserializeOwned>(item: &Item) -> Result<T, StoreError> {
    dynamo::get_json(item, "doc")?
        .ok_or_else(|| StoreError::Corrupt("catalog link without document".into()))
}

/// BatchGetItem in chunks of 100 keys, retrying what DynamoDB leaves unprocessed.
pub(crate) async fn batch_get(
    table: &DynamoTable,
    keys: Vec<Item>,
) -> Result<Vec<Item>, StoreError> {
    let mut out = Vec::new();
    for chunk in keys.chunks(100) {
        let mut pending = Some(
            KeysAndAttributes::builder()
                .set_keys(Some(chunk.to_vec()))
                .build()
                .map_err(dynamo::unavailable)?,
        );
        let mut attempt = 0u32;
        while let Some(req) = pending.take() {
            let res = table
                .client
                .batch_get_item()
                .request_items(&table.name, req)
                .send()
                .await
                .map_err(dynamo::sdk)?;
            if let Some(mut r) = res.responses {
                out.extend(r.remove(&table.name).unwrap_or_default());
            }
            pending = res
                .unprocessed_keys
                .and_then(|mut m| m.remove(&table.name))
                .filter(|k| !k.keys.is_empty());
            if pending.is_some() {
                attempt += 1;
                if attempt > 8 {
                    return Err(StoreError::Unavailable(
                        "DynamoDB kept keys unprocessed".into(),
                    ));
                }
                tokio::time::sleep(Duration::from_millis(20 << attempt.min(6))).await;
            }
        }
    }
    Ok(out)
}

/// One page of a `begins_with(sk, prefix)` query.
async fn query_prefix(
    table: &DynamoTable,
    pk: &str,
    prefix: &str,
    after: Option<String>,
    limit: usize,
) -> Result<(Vec<Item>, Option<String>), StoreError> {
    let mut q = table
        .client
        .query()
        .table_name(&table.name)
        .key_condition_expression("#p = :p AND begins_with(#s, :f)")
        .expression_attribute_names("#p", PK)
        .expression_attribute_names("#s", SK)
        .expression_attribute_values(":p", dynamo::s(pk))
        .expression_attribute_values(":f", dynamo::s(prefix))
        .limit(limit.clamp(1, 1000) as i32);
    if let Some(sk) = after {
        q = q.set_exclusive_start_key(Some(dynamo::key(pk, sk)));
    }
    let out = q.send().await.map_err(dynamo::sdk)?;
    let next = out.last_evaluated_key.and_then(|k| dynamo::get_s(&k, SK));
    Ok((out.items.unwrap_or_default(), next))
}

/// Every key under a prefix (for deleting a run's scratch items).
async fn keys_with_prefix(
    table: &DynamoTable,
    pk: &str,
    prefix: &str,
) -> Result<Vec<Item>, StoreError> {
    let mut keys = Vec::new();
    let mut after = None;
    loop {
        let (items, next) = query_prefix(table, pk, prefix, after, 1000).await?;
        keys.extend(items.into_iter().map(|i| {
            i.into_iter()
                .filter(|(k, _)| k == PK || k == SK)
                .collect::<HashMap<String, AttributeValue>>()
        }));
        match next {
            Some(n) => after = Some(n),
            None => return Ok(keys),
        }
    }
}

#[async_trait]
impl LinkStore for DynamoTable {
    async fn get_products(&self, conn: &str, ids: &[i64]) -> Result<Vec<ProductLink>, StoreError> {
        let pk = links_pk(conn);
        let keys = dedup(ids)
            .map(|id| dynamo::key(&pk, product_sk(id)))
            .collect();
        batch_get(self, keys).await?.iter().map(doc_of).collect()
    }

    async fn put_products(&self, conn: &str, links: &[ProductLink]) -> Result<(), StoreError> {
        let pk = links_pk(conn);
        let mut items = Vec::with_capacity(links.len() * 2);
        // A batch may not hold one key twice: the last version of a link wins.
        let mut last: BTreeMap<i64, &ProductLink> = BTreeMap::new();
        for l in links {
            last.insert(l.keycrm_id, l);
        }
        let mut reverse: BTreeMap<&str, i64> = BTreeMap::new();
        for l in last.values() {
            let mut item = doc_item(&pk, product_sk(l.keycrm_id), l)?;
            item.insert("shop_id".into(), dynamo::s(&l.shop_id));
            item.insert("swept".into(), dynamo::b(l.swept.is_some()));
            items.push(item);
            reverse.insert(&l.shop_id, l.keycrm_id);
        }
        for (shop_id, keycrm_id) in reverse {
            let mut r = dynamo::key(&pk, reverse_sk(shop_id));
            r.insert("keycrm_id".into(), dynamo::n(keycrm_id));
            items.push(r);
        }
        items.extend(crate::offer_index::items(&pk, last.values().copied()));
        crate::batch::put_items(self, items).await
    }

    async fn delete_products(&self, conn: &str, links: &[ProductLink]) -> Result<(), StoreError> {
        let pk = links_pk(conn);
        let mut keys: BTreeMap<String, ()> = BTreeMap::new();
        for l in links {
            keys.insert(product_sk(l.keycrm_id), ());
            keys.insert(reverse_sk(&l.shop_id), ());
            for sk in crate::offer_index::sort_keys(l) {
                keys.insert(sk, ());
            }
        }
        let keys = keys.into_keys().map(|sk| dynamo::key(&pk, sk)).collect();
        crate::batch::delete_keys(self, keys).await
    }

    async fn products_page(
        &self,
        conn: &str,
        after: Option<String>,
        limit: usize,
    ) -> Result<(Vec<ProductLink>, Option<String>), StoreError> {
        let (items, next) = query_prefix(self, &links_pk(conn), "P#", after, limit).await?;
        let links = items.iter().map(doc_of).collect::<Result<Vec<_>, _>>()?;
        Ok((links, next))
    }

    async fn product_states_page(
        &self,
        conn: &str,
        after: Option<String>,
        limit: usize,
    ) -> Result<(Vec<(i64, bool)>, Option<String>), StoreError> {
        let pk = links_pk(conn);
        let mut q = self
            .client
            .query()
            .table_name(&self.name)
            .key_condition_expression("#p = :p AND begins_with(#s, :f)")
            .projection_expression("#s, swept")
            .expression_attribute_names("#p", PK)
            .expression_attribute_names("#s", SK)
            .expression_attribute_values(":p", dynamo::s(&pk))
            .expression_attribute_values(":f", dynamo::s("P#"))
            .limit(limit.clamp(1, 1000) as i32);
        if let Some(sk) = after {
            q = q.set_exclusive_start_key(Some(dynamo::key(&pk, sk)));
        }
        let out = q.send().await.map_err(dynamo::sdk)?;
        let next = out.last_evaluated_key.and_then(|k| dynamo::get_s(&k, SK));
        let states = out
            .items
            .unwrap_or_default()
            .iter()
            .filter_map(|i| {
                let id = dynamo::get_s(i, SK)?.strip_prefix("P#")?.parse().ok()?;
                Some((id, dynamo::get_b(i, "swept").unwrap_or(false)))
            })
            .collect();
        Ok((states, next))
    }

    async fn owners(
        &self,
        conn: &str,
        shop_ids: &[String],
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let pk = links_pk(conn);
        let unique: HashSet<&String> = shop_ids.iter().collect();
        let keys = unique
            .into_iter()
            .map(|s| dynamo::key(&pk, reverse_sk(s)))
            .collect();
        let items = batch_get(self, keys).await?;
        Ok(items
            .iter()
            .filter_map(|i| {
                let sk = dynamo::get_s(i, SK)?;
                let id = dynamo::get_n::<i64>(i, "keycrm_id")?;
                Some((sk.strip_prefix("R#")?.to_string(), id))
            })
            .collect())
    }

    async fn categories(&self, conn: &str) -> Result<Vec<CategoryLink>, StoreError> {
        let pk = links_pk(conn);
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let (items, next) = query_prefix(self, &pk, "C#", after, 1000).await?;
            for i in &items {
                out.push(doc_of(i)?);
            }
            match next {
                Some(n) => after = Some(n),
                None => return Ok(out),
            }
        }
    }

    async fn put_categories(&self, conn: &str, links: &[CategoryLink]) -> Result<(), StoreError> {
        let pk = links_pk(conn);
        let mut last: BTreeMap<i64, &CategoryLink> = BTreeMap::new();
        for l in links {
            last.insert(l.keycrm_id, l);
        }
        let items = last
            .values()
            .map(|l| doc_item(&pk, category_sk(l.keycrm_id), l))
            .collect::<Result<Vec<_>, _>>()?;
        crate::batch::put_items(self, items).await
    }

    async fn put_staged(&self, conn: &str, products: &[CrmProduct]) -> Result<(), StoreError> {
        let pk = links_pk(conn);
        let mut last: BTreeMap<i64, &CrmProduct> = BTreeMap::new();
        for p in products {
            last.insert(p.id, p);
        }
        let items = last
            .values()
            .map(|p| doc_item(&pk, staged_sk(p.id), p))
            .collect::<Result<Vec<_>, _>>()?;
        crate::batch::put_items(self, items).await
    }

    async fn get_staged(&self, conn: &str, ids: &[i64]) -> Result<Vec<CrmProduct>, StoreError> {
        let pk = links_pk(conn);
        let keys = dedup(ids)
            .map(|id| dynamo::key(&pk, staged_sk(id)))
            .collect();
        batch_get(self, keys).await?.iter().map(doc_of).collect()
    }

    async fn staged_page(
        &self,
        conn: &str,
        after: Option<String>,
        limit: usize,
    ) -> Result<(Vec<CrmProduct>, Option<String>), StoreError> {
        let (items, next) = query_prefix(self, &links_pk(conn), "N#", after, limit).await?;
        let staged = items.iter().map(doc_of).collect::<Result<Vec<_>, _>>()?;
        Ok((staged, next))
    }

    async fn delete_staged(&self, conn: &str, ids: &[i64]) -> Result<(), StoreError> {
        let pk = links_pk(conn);
        let keys = dedup(ids)
            .map(|id| dynamo::key(&pk, staged_sk(id)))
            .collect();
        crate::batch::delete_keys(self, keys).await
    }

    async fn put_seen(
        &self,
        conn: &str,
        mark: i64,
        seq: u32,
        products: &[i64],
        offers: &[i64],
    ) -> Result<(), StoreError> {
        let mut item = dynamo::key(links_pk(conn), format!("{}{seq:08}", seen_prefix(mark)));
        item.insert("p".into(), dynamo::s(join_ids(products)));
        item.insert("o".into(), dynamo::s(join_ids(offers)));
        item.insert(
            EXPIRES_AT.into(),
            dynamo::n(chrono::Utc::now().timestamp() + SEEN_TTL_SECS),
        );
        self.client
            .put_item()
            .table_name(&self.name)
            .set_item(Some(item))
            .send()
            .await
            .map_err(dynamo::sdk)?;
        Ok(())
    }

    async fn seen(&self, conn: &str, mark: i64) -> Result<SeenSet, StoreError> {
        let pk = links_pk(conn);
        let prefix = seen_prefix(mark);
        let mut set = SeenSet::default();
        let mut after = None;
        loop {
            let (items, next) = query_prefix(self, &pk, &prefix, after, 1000).await?;
            for i in &items {
                set.products
                    .extend(split_ids(&dynamo::get_s(i, "p").unwrap_or_default()));
                set.offers
                    .extend(split_ids(&dynamo::get_s(i, "o").unwrap_or_default()));
            }
            match next {
                Some(n) => after = Some(n),
                None => return Ok(set),
            }
        }
    }

    async fn clear_seen(&self, conn: &str, mark: i64) -> Result<(), StoreError> {
        let pk = links_pk(conn);
        let keys = keys_with_prefix(self, &pk, &seen_prefix(mark)).await?;
        crate::batch::delete_keys(self, keys).await
    }

    async fn products_of_offers(
        &self,
        conn: &str,
        offers: &[i64],
    ) -> Result<HashMap<i64, i64>, StoreError> {
        let pk = links_pk(conn);
        let keys = dedup(offers)
            .map(|id| dynamo::key(&pk, crate::offer_index::sort_key(id)))
            .collect();
        Ok(batch_get(self, keys)
            .await?
            .iter()
            .filter_map(crate::offer_index::entry)
            .collect())
    }

    async fn index_offers(&self, conn: &str) -> Result<(), StoreError> {
        crate::offer_index::backfill(self, conn).await
    }
}

fn dedup(ids: &[i64]) -> impl Iterator<Item = i64> {
    let mut v = ids.to_vec();
    v.sort_unstable();
    v.dedup();
    v.into_iter()
}

// ------------------------------------------------------------------ memory

#[derive(Default)]
struct ConnLinks {
    products: BTreeMap<i64, ProductLink>,
    reverse: HashMap<String, i64>,
    categories: BTreeMap<i64, CategoryLink>,
    /// Kept as JSON, as the table keeps it: staged products are many on a first sync.
    staged: BTreeMap<i64, Vec<u8>>,
    seen: HashMap<i64, SeenSet>,
    /// Offer id → KeyCRM product id (the offer index).
    offers: HashMap<i64, i64>,
}

/// The in-memory adapter (unit tests, the local run, benchmarks).
#[derive(Default)]
pub struct MemoryLinks {
    inner: Mutex<HashMap<String, ConnLinks>>,
}

impl MemoryLinks {
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, conn: &str, f: impl FnOnce(&mut ConnLinks) -> T) -> Result<T, StoreError> {
        let mut m = self
            .inner
            .lock()
            .map_err(|_| StoreError::Unavailable("link store poisoned".into()))?;
        Ok(f(m.entry(conn.to_string()).or_default()))
    }

    /// Number of product links (tests).
    pub fn product_count(&self, conn: &str) -> usize {
        self.with(conn, |c| c.products.len()).unwrap_or(0)
    }

    pub fn staged_count(&self, conn: &str) -> usize {
        self.with(conn, |c| c.staged.len()).unwrap_or(0)
    }
}

fn page_after<T: Clone>(
    map: &BTreeMap<i64, T>,
    after: Option<String>,
    limit: usize,
) -> (Vec<T>, Option<String>) {
    let start = after.and_then(|a| a.parse::<i64>().ok());
    let range = match start {
        Some(s) => map.range((std::ops::Bound::Excluded(s), std::ops::Bound::Unbounded)),
        None => map.range(..),
    };
    let mut out: Vec<(i64, T)> = range
        .take(limit.max(1) + 1)
        .map(|(k, v)| (*k, v.clone()))
        .collect();
    let next = if out.len() > limit.max(1) {
        out.pop();
        out.last().map(|(k, _)| k.to_string())
    } else {
        None
    };
    (out.into_iter().map(|(_, v)| v).collect(), next)
}

fn encode<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(|e| StoreError::Corrupt(format!("cannot encode: {e}")))
}

fn decode<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(b).map_err(|e| StoreError::Corrupt(format!("cannot decode: {e}")))
}

#[async_trait]
impl LinkStore for MemoryLinks {
    async fn get_products(&self, conn: &str, ids: &[i64]) -> Result<Vec<ProductLink>, StoreError> {
        self.with(conn, |c| {
            dedup(ids)
                .filter_map(|id| c.products.get(&id).cloned())
                .collect()
        })
    }

    async fn put_products(&self, conn: &str, links: &[ProductLink]) -> Result<(), StoreError> {
        self.with(conn, |c| {
            for l in links {
                c.reverse.insert(l.shop_id.clone(), l.keycrm_id);
                for v in &l.variants {
                    c.offers.insert(v.offer_id, l.keycrm_id);
                }
                c.products.insert(l.keycrm_id, l.clone());
            }
        })
    }

    async fn delete_products(&self, conn: &str, links: &[ProductLink]) -> Result<(), StoreError> {
        self.with(conn, |c| {
            for l in links {
                c.products.remove(&l.keycrm_id);
                c.reverse.remove(&l.shop_id);
                for v in &l.variants {
                    if c.offers.get(&v.offer_id) == Some(&l.keycrm_id) {
                        c.offers.remove(&v.offer_id);
                    }
                }
            }
        })
    }

    async fn products_of_offers(
        &self,
        conn: &str,
        offers: &[i64],
    ) -> Result<HashMap<i64, i64>, StoreError> {
        self.with(conn, |c| {
            offers
                .iter()
                .filter_map(|o| c.offers.get(o).map(|p| (*o, *p)))
                .collect()
        })
    }

    async fn products_page(
        &self,
        conn: &str,
        after: Option<String>,
        limit: usize,
    ) -> Result<(Vec<ProductLink>, Option<String>), StoreError> {
        self.with(conn, |c| page_after(&c.products, after, limit))
    }

    async fn product_states_page(
        &self,
        conn: &str,
        after: Option<String>,
        limit: usize,
    ) -> Result<(Vec<(i64, bool)>, Option<String>), StoreError> {
        self.with(conn, |c| {
            let (page, next) = page_after(&c.products, after, limit);
            (
                page.iter()
                    .map(|l| (l.keycrm_id, l.swept.is_some()))
                    .collect(),
                next,
            )
        })
    }

    async fn owners(
        &self,
        conn: &str,
        shop_ids: &[String],
    ) -> Result<Vec<(String, i64)>, StoreError> {
        self.with(conn, |c| {
            let unique: HashSet<&String> = shop_ids.iter().collect();
            unique
                .into_iter()
                .filter_map(|s| c.reverse.get(s).map(|k| (s.clone(), *k)))
                .collect()
        })
    }

    async fn categories(&self, conn: &str) -> Result<Vec<CategoryLink>, StoreError> {
        self.with(conn, |c| c.categories.values().cloned().collect())
    }

    async fn put_categories(&self, conn: &str, links: &[CategoryLink]) -> Result<(), StoreError> {
        self.with(conn, |c| {
            for l in links {
                c.categories.insert(l.keycrm_id, l.clone());
            }
        })
    }

    async fn put_staged(&self, conn: &str, products: &[CrmProduct]) -> Result<(), StoreError> {
        let encoded = products
            .iter()
            .map(|p| Ok((p.id, encode(p)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.with(conn, |c| c.staged.extend(encoded))
    }

    async fn get_staged(&self, conn: &str, ids: &[i64]) -> Result<Vec<CrmProduct>, StoreError> {
        let raw: Vec<Vec<u8>> = self.with(conn, |c| {
            dedup(ids)
                .filter_map(|id| c.staged.get(&id).cloned())
                .collect()
        })?;
        raw.iter().map(|b| decode(b)).collect()
    }

    async fn staged_page(
        &self,
        conn: &str,
        after: Option<String>,
        limit: usize,
    ) -> Result<(Vec<CrmProduct>, Option<String>), StoreError> {
        let (raw, next) = self.with(conn, |c| page_after(&c.staged, after, limit))?;
        let products = raw
            .iter()
            .map(|b| decode(b))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((products, next))
    }

    async fn delete_staged(&self, conn: &str, ids: &[i64]) -> Result<(), StoreError> {
        self.with(conn, |c| {
            for id in ids {
                c.staged.remove(id);
            }
        })
    }

    async fn put_seen(
        &self,
        conn: &str,
        mark: i64,
        _seq: u32,
        products: &[i64],
        offers: &[i64],
    ) -> Result<(), StoreError> {
        self.with(conn, |c| {
            let s = c.seen.entry(mark).or_default();
            s.products.extend(products);
            s.offers.extend(offers);
        })
    }

    async fn seen(&self, conn: &str, mark: i64) -> Result<SeenSet, StoreError> {
        self.with(conn, |c| c.seen.get(&mark).cloned().unwrap_or_default())
    }

    async fn clear_seen(&self, conn: &str, mark: i64) -> Result<(), StoreError> {
        self.with(conn, |c| {
            c.seen.remove(&mark);
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(id: i64, shop: &str) -> ProductLink {
        ProductLink {
            keycrm_id: id,
            shop_id: shop.into(),
            hash: 7,
            swept: None,
            variants: vec![VariantLink {
                offer_id: id * 10,
                shop_id: format!("{shop}-v1"),
                hash: 3,
                price: Some("19.99".parse().unwrap()),
                available: Some(true),
                gone: false,
            }],
        }
    }

    #[tokio::test]
    async fn memory_links_round_trip_and_page() {
        let m = MemoryLinks::new();
        m.put_products("c", &[link(1, "p1"), link(2, "p2"), link(3, "p3")])
            .await
            .unwrap();
        assert_eq!(
            m.get_products("c", &[2, 9, 2]).await.unwrap(),
            vec![link(2, "p2")]
        );
        let (a, next) = m.products_page("c", None, 2).await.unwrap();
        assert_eq!(a.len(), 2);
        let (b, end) = m.products_page("c", next, 2).await.unwrap();
        assert_eq!((b.len(), end), (1, None));
        let mut owners = m
            .owners("c", &["p1".into(), "zz".into(), "p3".into()])
            .await
            .unwrap();
        owners.sort();
        assert_eq!(owners, vec![("p1".into(), 1), ("p3".into(), 3)]);
        m.delete_products("c", &[link(1, "p1")]).await.unwrap();
        assert!(m.owners("c", &["p1".into()]).await.unwrap().is_empty());
        assert_eq!(m.product_count("other"), 0);

        let staged = CrmProduct {
            id: 5,
            name: "A".into(),
            ..CrmProduct::default()
        };
        m.put_staged("c", std::slice::from_ref(&staged))
            .await
            .unwrap();
        assert_eq!(m.get_staged("c", &[5]).await.unwrap(), vec![staged.clone()]);
        assert_eq!(m.staged_page("c", None, 10).await.unwrap().0, vec![staged]);
        m.delete_staged("c", &[5]).await.unwrap();
        assert_eq!(m.staged_count("c"), 0);

        m.put_seen("c", 9, 0, &[1, 2], &[10]).await.unwrap();
        m.put_seen("c", 9, 1, &[3], &[30]).await.unwrap();
        let s = m.seen("c", 9).await.unwrap();
        assert_eq!((s.products.len(), s.offers.len()), (3, 2));
        m.clear_seen("c", 9).await.unwrap();
        assert!(m.seen("c", 9).await.unwrap().products.is_empty());
    }
}
