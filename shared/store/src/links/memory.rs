//! The in-memory [`LinkStore`] (unit tests, the local run, benchmarks).

use crate::links::{dedup, CategoryLink, CrmProduct, LinkStore, ProductLink, SeenSet};
use crate::StoreError;
use async_trait::async_trait;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

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

    async fn owners_page(
        &self,
        conn: &str,
        after: Option<String>,
        limit: usize,
    ) -> Result<(Vec<(String, i64)>, Option<String>), StoreError> {
        let limit = limit.clamp(1, 1000);
        self.with(conn, |c| {
            let mut all: Vec<(&String, &i64)> = c
                .reverse
                .iter()
                .filter(|(s, _)| after.as_ref().is_none_or(|a| s.as_str() > a.as_str()))
                .collect();
            all.sort_unstable();
            let more = all.len() > limit;
            let page: Vec<(String, i64)> = all
                .into_iter()
                .take(limit)
                .map(|(s, k)| (s.clone(), *k))
                .collect();
            let next = if more {
                page.last().map(|(s, _)| s.clone())
            } else {
                None
            };
            (page, next)
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
