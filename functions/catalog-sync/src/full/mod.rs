//! The full sync's phases: categories, the catalog pass, resolving unlinked products, and the
//! sweep of missing ones.
//!
//! `categories`, `pass` (the catalog pass), `resolve`, `sweep`, and the shop `writes` they share;
//! the listings they read are here.

use crate::checkpoint::Listing;
use crate::error::SyncError;
use crate::run::Run;
use keycrm::models::Product;
use keycrm::Pages;
use mapping::catalog::{self, ListedOffer};
use shop::{ShopError, UpsertResult};

mod categories;
mod pass;
mod resolve;
mod sweep;
mod writes;

/// Links read per sweep step (few of them lead to writes).
pub(super) const SWEEP_PAGE: usize = 1000;

/// A shop write that may be refused item by item.
pub(super) type ItemResult = Result<UpsertResult, ShopError>;

impl Run<'_> {
    /// The shop category a product goes in: only while category sync is on (otherwise the
    /// merchant files products and the sync leaves the field alone).
    fn shop_category(&self, keycrm_category: Option<i64>) -> Option<&str> {
        if self.settings().sync_categories {
            catalog::shop_category(&self.cat_links, keycrm_category)
        } else {
            None
        }
    }

    fn offers_listing(&self, product_ids: &[i64]) -> Pages<ListedOffer> {
        let mut q = vec![
            ("include", "product".to_string()),
            // Archived products count as missing, so their offers are not needed at all.
            ("filter[is_archived]", "false".to_string()),
            // A stable order keeps offset paging consistent across pages and invocations.
            ("sort", "id".to_string()),
        ];
        if !product_ids.is_empty() {
            let ids: Vec<String> = product_ids.iter().map(i64::to_string).collect();
            q.push(("filter[product_id]", ids.join(",")));
        }
        self.client.list("offers", &q)
    }

    fn products_listing(&self) -> Pages<Product> {
        let scope = self.cp.scope.clone().unwrap_or_default();
        let ids: Vec<String> = scope.iter().map(i64::to_string).collect();
        self.client.list(
            "products",
            &[
                ("filter[category_id]", ids.join(",")),
                ("filter[is_archived]", "false".to_string()),
            ],
        )
    }

    fn resume<T: serde::de::DeserializeOwned>(
        &self,
        listing: &Listing,
        fresh: impl FnOnce() -> Pages<T>,
    ) -> Result<Option<Pages<T>>, SyncError> {
        Ok(match listing {
            Listing::Start => Some(fresh()),
            Listing::Next(url) => Some(Pages::resume(&self.client, url)?),
            Listing::Done => None,
        })
    }
}
