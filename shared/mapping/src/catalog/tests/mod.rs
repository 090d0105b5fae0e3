//! Unit tests of catalog planning, one file per module, over shared builders.

use super::*;
use crate::settings::{ExistingProductPolicy, MatchKey, MissingProductPolicy, NewProductPolicy};
use crate::shop::ShopVariant;
use crate::shop::{
    CategoryStateChange, ProductStateChange, ShopProduct, UpsertResult, VariantPriceChange,
};
use keycrm_model::models::Category;
use rust_decimal::Decimal;
use std::collections::{BTreeMap, BTreeSet, HashSet};

mod categories;
mod crm_product;
mod match_key;
mod matching;
mod missing;
mod plan;
mod prices;
mod read_plan;
mod resolve;
mod vanish_guard;

fn d(v: i64) -> Decimal {
    Decimal::from(v)
}

fn offer(id: i64, sku: &str, price: i64, qty: Option<i64>) -> CrmOffer {
    CrmOffer {
        id,
        sku: Some(sku.to_string()),
        barcode: Some(format!("482{id:010}")),
        price: d(price),
        available: qty.map(|q| q > 0),
        properties: vec![("Розмір".into(), "M".into())],
    }
}

fn product(id: i64, name: &str, offers: Vec<CrmOffer>) -> CrmProduct {
    CrmProduct {
        id,
        name: name.into(),
        description: Some("Льон".into()),
        category_id: Some(5),
        images: vec!["https://img/1.webp".into()],
        archived: false,
        offers,
    }
}

fn linked(p: &CrmProduct, shop_category: Option<&str>) -> ProductLink {
    ProductLink {
        keycrm_id: p.id,
        shop_id: format!("s{}", p.id),
        hash: content_hash(p, shop_category),
        swept: None,
        variants: p
            .offers
            .iter()
            .map(|o| VariantLink {
                offer_id: o.id,
                shop_id: format!("v{}", o.id),
                hash: variant_hash(o),
                price: Some(o.price),
                available: o.available,
                gone: false,
            })
            .collect(),
    }
}

fn shop_product(id: &str, name: &str, skus: &[&str]) -> ShopProduct {
    ShopProduct {
        id: id.into(),
        name: name.into(),
        sku: skus.first().map(|s| s.to_string()),
        barcode: None,
        external_id: None,
        visible: true,
        available: true,
        variants: skus
            .iter()
            .enumerate()
            .map(|(i, s)| ShopVariant {
                id: format!("{id}-v{i}"),
                sku: Some(s.to_string()),
                barcode: Some(format!("bc-{s}")),
                price: Some(d(1)),
                available: true,
            })
            .collect(),
    }
}
