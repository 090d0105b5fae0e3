//! Dictionary endpoints: order sources and statuses, payment methods, delivery services,
//! custom fields.

use axum::extract::{RawQuery, State};
use serde_json::Value;

use super::{dictionary, ok, ApiResult, Sh};
use crate::dicts;
use crate::query::ListQuery;

pub(super) async fn order_sources(State(sh): Sh, RawQuery(raw): RawQuery) -> ApiResult {
    let items = dicts::SOURCES
        .iter()
        .map(|s| (s.id, dicts::render_source(s)))
        .collect();
    dictionary(&sh, raw.as_deref(), "/order/source", items)
}

pub(super) async fn order_statuses(State(sh): Sh, RawQuery(raw): RawQuery) -> ApiResult {
    let items = dicts::ORDER_STATUSES
        .iter()
        .map(|s| (s.id, dicts::render_order_status(s)))
        .collect();
    dictionary(&sh, raw.as_deref(), "/order/status", items)
}

pub(super) async fn payment_methods(State(sh): Sh, RawQuery(raw): RawQuery) -> ApiResult {
    let items = dicts::PAYMENT_METHODS
        .iter()
        .map(|m| (m.id, dicts::render_payment_method(m)))
        .collect();
    dictionary(&sh, raw.as_deref(), "/order/payment-method", items)
}

pub(super) async fn delivery_services(State(sh): Sh, RawQuery(raw): RawQuery) -> ApiResult {
    let items = dicts::DELIVERY_SERVICES
        .iter()
        .map(|d| (d.id, dicts::render_delivery_service(d)))
        .collect();
    dictionary(&sh, raw.as_deref(), "/order/delivery-service", items)
}

pub(super) async fn custom_fields(RawQuery(raw): RawQuery) -> ApiResult {
    let q = ListQuery::parse(raw.as_deref());
    q.allow_filters(&["model"])?;
    q.allow_includes(&["options"])?;
    let sorts = q.sorts(&["position", "id"])?;
    let models = q.filter_list("model");
    let mut fields: Vec<&dicts::CustomField> = dicts::CUSTOM_FIELDS
        .iter()
        .filter(|f| {
            models
                .as_ref()
                .is_none_or(|m| m.iter().any(|x| x == f.model.as_str()))
        })
        .collect();
    if let Some((field, desc)) = sorts.first() {
        if field == "position" {
            fields.sort_by_key(|f| (f.position, f.id));
        } else {
            fields.sort_by_key(|f| f.id);
        }
        if *desc {
            fields.reverse();
        }
    }
    let with_options = q.has_include("options");
    ok(Value::Array(
        fields
            .into_iter()
            .map(|f| dicts::render_custom_field(f, with_options))
            .collect(),
    ))
}
