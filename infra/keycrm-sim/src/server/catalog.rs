//! Catalog endpoints: categories, products, offers and their stocks (read, and `PUT` of
//! stocks).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{Extension, Json};
use serde_json::json;

use super::{apply_sort, ok, page_path, parse_id, Acc, ApiResult, Sh};
use crate::catalog::{Catalog, CatalogMutation};
use crate::error::{not_found_model, ApiError};
use crate::input::body_object;
use crate::query::ListQuery;
use crate::state::{read, write, Account, Shared};
use crate::stock;
use crate::time::now;

pub(super) async fn categories(
    State(sh): Sh,
    Extension(acc): Acc,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let q = ListQuery::parse(raw.as_deref());
    q.allow_filters(&["category_id", "parent_id"])?;
    let ids = q.filter_ids("category_id");
    let parents = q.filter_ids("parent_id");
    let cat = read(&acc.catalog);
    let items: Vec<&crate::catalog::Category> = cat
        .categories
        .iter()
        .filter(|c| ids.as_ref().is_none_or(|l| l.contains(&c.id)))
        .filter(|c| {
            parents
                .as_ref()
                .is_none_or(|l| c.parent_id.is_some_and(|p| l.contains(&p)))
        })
        .collect();
    ok(
        q.envelope(&page_path(&sh, "/products/categories"), items.len(), |r| {
            items[r]
                .iter()
                .map(|c| Catalog::render_category(c))
                .collect()
        }),
    )
}

pub(super) async fn list_products(
    State(sh): Sh,
    Extension(acc): Acc,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let q = ListQuery::parse(raw.as_deref());
    q.allow_filters(&["product_id", "category_id", "is_archived"])?;
    q.allow_includes(&["custom_fields", "customFields"])?;
    let with_cf = q.has_include("custom_fields") || q.has_include("customFields");
    let ids = q.filter_ids("product_id");
    let cats = q.filter_ids("category_id");
    let archived = q.filter_bool("is_archived");
    let cat = read(&acc.catalog);
    let idx: Vec<usize> = cat
        .products
        .iter()
        .enumerate()
        .filter(|(_, p)| ids.as_ref().is_none_or(|l| l.contains(&p.id)))
        .filter(|(_, p)| cats.as_ref().is_none_or(|l| l.contains(&p.category_id)))
        .filter(|(_, p)| archived.is_none_or(|a| p.is_archived == a))
        .map(|(i, _)| i)
        .collect();
    ok(q.envelope(&page_path(&sh, "/products"), idx.len(), |r| {
        idx[r]
            .iter()
            .map(|&i| cat.render_product(&cat.products[i], with_cf))
            .collect()
    }))
}

pub(super) async fn get_product(
    Extension(acc): Acc,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let q = ListQuery::parse(raw.as_deref());
    q.allow_includes(&["custom_fields", "customFields"])?;
    let with_cf = q.has_include("custom_fields") || q.has_include("customFields");
    let pid = parse_id(&id, "Product")?;
    let cat = read(&acc.catalog);
    let p = cat
        .product(pid)
        .ok_or_else(|| not_found_model("Product", &id))?;
    ok(cat.render_product(p, with_cf))
}

pub(super) async fn list_offers(
    State(sh): Sh,
    Extension(acc): Acc,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let q = ListQuery::parse(raw.as_deref());
    q.allow_filters(&["id", "product_id", "sku", "is_archived"])?;
    q.allow_includes(&["product"])?;
    let sorts = q.sorts(&["id", "product_id"])?;
    let with_product = q.has_include("product");
    let ids = q.filter_ids("id");
    let pids = q.filter_ids("product_id");
    let skus = q.filter_list("sku");
    let archived = q.filter_bool("is_archived");
    let cat = read(&acc.catalog);
    let keep = |o: &crate::catalog::Offer| {
        ids.as_ref().is_none_or(|l| l.contains(&o.id))
            && pids.as_ref().is_none_or(|l| l.contains(&o.product_id))
            && archived.is_none_or(|a| o.is_archived == a)
    };
    let mut idx: Vec<usize> = match &skus {
        Some(list) => {
            let mut v: Vec<usize> = list
                .iter()
                .filter_map(|s| cat.sku_index.get(s))
                .flatten()
                .filter_map(|id| cat.offers.binary_search_by_key(id, |o| o.id).ok())
                .filter(|&i| keep(&cat.offers[i]))
                .collect();
            v.sort_unstable();
            v.dedup();
            v
        }
        None => cat
            .offers
            .iter()
            .enumerate()
            .filter(|(_, o)| keep(o))
            .map(|(i, _)| i)
            .collect(),
    };
    apply_sort(&mut idx, &sorts, |i, f| match f {
        "product_id" => cat.offers[i].product_id,
        _ => cat.offers[i].id,
    });
    ok(q.envelope(&page_path(&sh, "/offers"), idx.len(), |r| {
        idx[r]
            .iter()
            .map(|&i| cat.render_offer(&cat.offers[i], with_product))
            .collect()
    }))
}

pub(super) async fn stocks(
    State(sh): Sh,
    Extension(acc): Acc,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    // Unknown filters are ignored here (live behaviour).
    let q = ListQuery::parse(raw.as_deref());
    let ids = q.filter_ids("offers_id");
    let skus = q.filter_list("offers_sku");
    let details = q.filter_bool("details").unwrap_or(false);
    let cat = read(&acc.catalog);
    let idx: Vec<usize> = cat
        .offers
        .iter()
        .enumerate()
        .filter(|(_, o)| ids.as_ref().is_none_or(|l| l.contains(&o.id)))
        .filter(|(_, o)| skus.as_ref().is_none_or(|l| l.contains(&o.sku)))
        .map(|(i, _)| i)
        .collect();
    ok(
        q.envelope(&page_path(&sh, "/offers/stocks"), idx.len(), |r| {
            idx[r]
                .iter()
                .map(|&i| cat.render_stock(&cat.offers[i], details))
                .collect()
        }),
    )
}

/// `PUT /offers/stocks`: absolute balances in one warehouse (a stock movement each), 202.
pub(super) async fn put_stocks(State(sh): Sh, Extension(acc): Acc, body: Bytes) -> ApiResult {
    let body = body_object(&body);
    let update = stock::parse_update(&body, &read(&acc.catalog)).map_err(ApiError::Validation)?;
    let ids: Vec<i64> = update.items.iter().map(|i| i.0).collect();
    stock::with_stock_events(&sh, &acc, &ids, |cat| {
        stock::apply_update(cat, &update, now())
    });
    Ok((StatusCode::ACCEPTED, Json(json!({"status": true}))).into_response())
}

/// A catalog mutation from the control API; a manual stock edit fires the stock webhooks.
pub(crate) fn mutate_catalog(sh: &Arc<Shared>, acc: &Account, m: &CatalogMutation) -> usize {
    match m {
        CatalogMutation::SetStock { offer_id, .. } => {
            stock::with_stock_events(sh, acc, &[*offer_id], |cat| cat.apply(m, now()))
        }
        _ => write(&acc.catalog).apply(m, now()),
    }
}
