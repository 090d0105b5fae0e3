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
//!   (`links/dynamo/offer_index.rs`).
//!
//! Deleting a connection deletes the whole partition.

use crate::StoreError;
use async_trait::async_trait;
use std::collections::{HashMap, HashSet};

pub use mapping::catalog::{CategoryLink, CrmOffer, CrmProduct, ProductLink, Swept, VariantLink};

mod dynamo;
mod memory;

pub use memory::MemoryLinks;

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
    /// `(shop product id, KeyCRM product id)` of every reverse pointer, in shop id order, a
    /// page at a time: one `Query` of small items instead of one read per shop product when
    /// a caller needs most of them (the drift repair compares every shop product).
    async fn owners_page(
        &self,
        conn: &str,
        after: Option<String>,
        limit: usize,
    ) -> Result<(Vec<(String, i64)>, Option<String>), StoreError>;
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

/// Each id once, in order (both adapters read and delete by id lists that may repeat).
fn dedup(ids: &[i64]) -> impl Iterator<Item = i64> {
    let mut v = ids.to_vec();
    v.sort_unstable();
    v.dedup();
    v.into_iter()
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
        let (a, next) = m.owners_page("c", None, 2).await.unwrap();
        assert_eq!(a, vec![("p1".into(), 1), ("p2".into(), 2)]);
        let (b, end) = m.owners_page("c", next, 2).await.unwrap();
        assert_eq!((b, end), (vec![("p3".into(), 3)], None));
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
