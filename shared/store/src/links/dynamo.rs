//! [`LinkStore`] on the shared table, partition `LINKS#{scope}` (layout in `links.rs`).

mod offer_index;

use crate::dynamo::batch;
use crate::dynamo::links_pk;
use crate::dynamo::{self, DynamoTable, Item, EXPIRES_AT, PK, SK};
use crate::links::{dedup, CategoryLink, CrmProduct, LinkStore, ProductLink, SeenSet};
use crate::StoreError;
use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::{BTreeMap, HashMap, HashSet};

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

/// One document item per id, under the sort key `sk` makes of it; the last document naming an
/// id wins, since a batch may not hold one key twice.
async fn put_docs<'a, T: serde::Serialize + 'a>(
    table: &DynamoTable,
    pk: &str,
    docs: impl Iterator<Item = (i64, &'a T)>,
    sk: fn(i64) -> String,
) -> Result<(), StoreError> {
    let last: BTreeMap<i64, &T> = docs.collect();
    let items = last
        .iter()
        .map(|(&id, doc)| doc_item(pk, sk(id), doc))
        .collect::<Result<Vec<_>, _>>()?;
    batch::put_items(table, items).await
}

/// One page of a `begins_with(sk, prefix)` query.
async fn query_prefix(
    table: &DynamoTable,
    pk: &str,
    prefix: &str,
    after: Option<String>,
    limit: usize,
) -> Result<(Vec<Item>, Option<String>), StoreError> {
    query_projected(table, pk, prefix, None, after, limit).await
}

/// One page of the items under a prefix, with only the attributes of `projection` if given
/// (`#s` is the sort key): the page's items and the sort key to continue after.
async fn query_projected(
    table: &DynamoTable,
    pk: &str,
    prefix: &str,
    projection: Option<&str>,
    after_sk: Option<String>,
    limit: usize,
) -> Result<(Vec<Item>, Option<String>), StoreError> {
    let mut q = table
        .client
        .query()
        .table_name(&table.name)
        .key_condition_expression("#p = :p AND begins_with(#s, :f)")
        .set_projection_expression(projection.map(str::to_string))
        .expression_attribute_names("#p", PK)
        .expression_attribute_names("#s", SK)
        .expression_attribute_values(":p", dynamo::s(pk))
        .expression_attribute_values(":f", dynamo::s(prefix))
        .limit(limit.clamp(1, 1000) as i32);
    if let Some(sk) = after_sk {
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
        batch::get_items(self, keys)
            .await?
            .iter()
            .map(doc_of)
            .collect()
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
        items.extend(offer_index::items(&pk, last.values().copied()));
        batch::put_items(self, items).await
    }

    async fn delete_products(&self, conn: &str, links: &[ProductLink]) -> Result<(), StoreError> {
        let pk = links_pk(conn);
        let mut keys: BTreeMap<String, ()> = BTreeMap::new();
        for l in links {
            keys.insert(product_sk(l.keycrm_id), ());
            keys.insert(reverse_sk(&l.shop_id), ());
            for sk in offer_index::sort_keys(l) {
                keys.insert(sk, ());
            }
        }
        let keys = keys.into_keys().map(|sk| dynamo::key(&pk, sk)).collect();
        batch::delete_keys(self, keys).await
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
        let (items, next) =
            query_projected(self, &links_pk(conn), "P#", Some("#s, swept"), after, limit).await?;
        let states = items
            .iter()
            .filter_map(|i| {
                let id = dynamo::get_s(i, SK)?.strip_prefix("P#")?.parse().ok()?;
                Some((id, dynamo::get_b(i, "swept").unwrap_or(false)))
            })
            .collect();
        Ok((states, next))
    }

    async fn owners_page(
        &self,
        conn: &str,
        after: Option<String>,
        limit: usize,
    ) -> Result<(Vec<(String, i64)>, Option<String>), StoreError> {
        let after = after.map(|shop_id| reverse_sk(&shop_id));
        let (items, next) = query_projected(
            self,
            &links_pk(conn),
            "R#",
            Some("#s, keycrm_id"),
            after,
            limit,
        )
        .await?;
        let owners = items
            .iter()
            .filter_map(|i| {
                let shop_id = dynamo::get_s(i, SK)?.strip_prefix("R#")?.to_string();
                Some((shop_id, dynamo::get_n::<i64>(i, "keycrm_id")?))
            })
            .collect();
        // The cursor is a shop id, as `after` is.
        let next = next.and_then(|sk| sk.strip_prefix("R#").map(str::to_string));
        Ok((owners, next))
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
        let items = batch::get_items(self, keys).await?;
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
        let docs = links.iter().map(|l| (l.keycrm_id, l));
        put_docs(self, &links_pk(conn), docs, category_sk).await
    }

    async fn put_staged(&self, conn: &str, products: &[CrmProduct]) -> Result<(), StoreError> {
        let docs = products.iter().map(|p| (p.id, p));
        put_docs(self, &links_pk(conn), docs, staged_sk).await
    }

    async fn get_staged(&self, conn: &str, ids: &[i64]) -> Result<Vec<CrmProduct>, StoreError> {
        let pk = links_pk(conn);
        let keys = dedup(ids)
            .map(|id| dynamo::key(&pk, staged_sk(id)))
            .collect();
        batch::get_items(self, keys)
            .await?
            .iter()
            .map(doc_of)
            .collect()
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
        batch::delete_keys(self, keys).await
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
        self.put_item(item).await?;
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
        batch::delete_keys(self, keys).await
    }

    async fn products_of_offers(
        &self,
        conn: &str,
        offers: &[i64],
    ) -> Result<HashMap<i64, i64>, StoreError> {
        let pk = links_pk(conn);
        let keys = dedup(offers)
            .map(|id| dynamo::key(&pk, offer_index::sort_key(id)))
            .collect();
        Ok(batch::get_items(self, keys)
            .await?
            .iter()
            .filter_map(offer_index::entry)
            .collect())
    }

    async fn index_offers(&self, conn: &str) -> Result<(), StoreError> {
        offer_index::backfill(self, conn).await
    }
}
