//! Whether a flow is turned on: the one rule the schedule's fan-out, the sync engine, the admin
//! API and the order pipeline all ask, so a sync is never run by one and refused by another.

use crate::settings::{OrderSyncType, Settings};

/// A catalog sync's kind as the rule sees it (`store::SyncKind` carries the same two in jobs
/// and run reports; `mapping` cannot name the store's type).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CatalogSyncKind {
    /// Categories and products.
    Full,
    /// Prices and availability of linked products.
    Prices,
}

impl Settings {
    /// Whether a sync of `kind` has something to do under these settings: a full sync while
    /// product or category sync is on, a price run while product sync is on (prices ride on
    /// product links). A dry run may preview a sync that is off; that choice is the caller's.
    pub fn catalog_sync_enabled(&self, kind: CatalogSyncKind) -> bool {
        match kind {
            CatalogSyncKind::Full => self.sync_products || self.sync_categories,
            CatalogSyncKind::Prices => self.sync_products,
        }
    }

    /// Whether product or category sync is on (a full sync has something to do).
    pub fn catalog_sync_on(&self) -> bool {
        self.catalog_sync_enabled(CatalogSyncKind::Full)
    }

    /// Whether shop orders go to KeyCRM at all (as orders or as pipeline cards).
    pub fn order_sync_on(&self) -> bool {
        self.order_sync != OrderSyncType::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_syncs_follow_the_product_and_category_switches() {
        use CatalogSyncKind::{Full, Prices};
        // (products, categories) -> (full, prices)
        let table = [
            ((false, false), (false, false)),
            ((true, false), (true, true)),
            ((false, true), (true, false)),
            ((true, true), (true, true)),
        ];
        for ((products, categories), (full, prices)) in table {
            let s = Settings {
                sync_products: products,
                sync_categories: categories,
                ..Settings::default()
            };
            let case = format!("products={products} categories={categories}");
            assert_eq!(s.catalog_sync_enabled(Full), full, "{case}");
            assert_eq!(s.catalog_sync_enabled(Prices), prices, "{case}");
            assert_eq!(s.catalog_sync_on(), full, "{case}");
        }
    }

    #[test]
    fn orders_are_pushed_as_orders_or_cards_unless_off() {
        for (sync, on) in [
            (OrderSyncType::None, false),
            (OrderSyncType::Orders, true),
            (OrderSyncType::Pipelines, true),
        ] {
            let s = Settings {
                order_sync: sync,
                ..Settings::default()
            };
            assert_eq!(s.order_sync_on(), on, "{sync:?}");
        }
    }
}
