//! Pipeline endpoints: pipelines, their statuses and cards (list, read, create, update).

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{Extension, Json};
use serde_json::{json, Value};

use super::{apply_sort, hang_if_faulted, leads, ok, page_path, parse_id, Acc, ApiResult, Sh};
use crate::crm::{CardInc, CARD_INCLUDES};
use crate::dicts;
use crate::error::{not_found_model, ApiError};
use crate::input::body_object;
use crate::query::ListQuery;
use crate::state::{lock, read};
use crate::time::now;
use crate::webhook::fire;

const CARD_FILTERS: &[&str] = &[
    "pipeline_id",
    "status_id",
    "source_id",
    "created_between",
    "updated_between",
];

pub(super) async fn pipelines(
    State(sh): Sh,
    Extension(acc): Acc,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    leads(&acc)?;
    let q = ListQuery::parse(raw.as_deref());
    let items: Vec<Value> = dicts::PIPELINES
        .iter()
        .map(dicts::render_pipeline)
        .collect();
    ok(q.envelope(&page_path(&sh, "/pipelines"), items.len(), |r| {
        items[r].to_vec()
    }))
}

pub(super) async fn pipeline_statuses(
    State(sh): Sh,
    Extension(acc): Acc,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    leads(&acc)?;
    let pid = parse_id(&id, "Pipeline")?;
    if dicts::pipeline(pid).is_none() {
        return Err(not_found_model("Pipeline", &id));
    }
    let q = ListQuery::parse(raw.as_deref());
    let items: Vec<Value> = {
        let crm = lock(&acc.crm);
        dicts::PIPELINE_STATUSES
            .iter()
            .filter(|s| s.pipeline_id == pid)
            .map(|s| dicts::render_pipeline_status(s, crm.cards_in_status(s.id)))
            .collect()
    };
    ok(q.envelope(
        &page_path(&sh, &format!("/pipelines/{id}/statuses")),
        items.len(),
        |r| items[r].to_vec(),
    ))
}

pub(super) async fn list_cards(
    State(sh): Sh,
    Extension(acc): Acc,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    leads(&acc)?;
    let q = ListQuery::parse(raw.as_deref());
    q.allow_filters(CARD_FILTERS)?;
    q.allow_includes(CARD_INCLUDES)?;
    let sorts = q.sorts(&["id", "created_at", "updated_at"])?;
    let inc = CardInc::from_query(&q);
    let cat = read(&acc.catalog);
    let crm = lock(&acc.crm);
    let mut idx = crm.filter_cards(&q).map_err(ApiError::BadRequest)?;
    apply_sort(&mut idx, &sorts, |i, f| match f {
        "created_at" => crm.cards[i].created_at,
        "updated_at" => crm.cards[i].updated_at,
        _ => crm.cards[i].id,
    });
    ok(
        q.envelope(&page_path(&sh, "/pipelines/cards"), idx.len(), |r| {
            idx[r]
                .iter()
                .map(|&i| crm.render_card(&crm.cards[i], &inc, &cat))
                .collect()
        }),
    )
}

pub(super) async fn get_card(
    Extension(acc): Acc,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    leads(&acc)?;
    let q = ListQuery::parse(raw.as_deref());
    q.allow_includes(CARD_INCLUDES)?;
    let cid = parse_id(&id, "Lead")?;
    let inc = CardInc::from_query(&q);
    let cat = read(&acc.catalog);
    let crm = lock(&acc.crm);
    let i = crm
        .card_index(cid)
        .ok_or_else(|| not_found_model("Lead", &id))?;
    ok(crm.render_card(&crm.cards[i], &inc, &cat))
}

pub(super) async fn create_card(State(sh): Sh, Extension(acc): Acc, body: Bytes) -> ApiResult {
    leads(&acc)?;
    let body = body_object(&body);
    let v = {
        let cat = read(&acc.catalog);
        let mut crm = lock(&acc.crm);
        let i = crm
            .create_card(&body, &cat, now())
            .map_err(ApiError::Validation)?;
        crm.render_card_created(&crm.cards[i])
    };
    hang_if_faulted(&sh).await;
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

pub(super) async fn update_card(
    State(sh): Sh,
    Extension(acc): Acc,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    leads(&acc)?;
    let cid = parse_id(&id, "Lead")?;
    let body = body_object(&body);
    let ctx = {
        let cat = read(&acc.catalog);
        let mut crm = lock(&acc.crm);
        let i = crm
            .card_index(cid)
            .ok_or_else(|| not_found_model("Lead", &id))?;
        let changed = crm
            .update_card(i, &body, &cat, now())
            .map_err(ApiError::Validation)?;
        changed.then(|| crm.card_context(&crm.cards[i]))
    };
    if let Some(ctx) = ctx {
        fire(&sh, &acc, "lead.change_lead_status", cid, ctx);
    }
    Ok((StatusCode::ACCEPTED, Json(json!({"status": true}))).into_response())
}
