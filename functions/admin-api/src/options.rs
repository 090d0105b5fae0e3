//! The dictionaries both sides offer, fetched live or from the per-connection cache.

use crate::error::{ApiError, ApiResult};
use crate::state::AdminApi;
use chrono::{DateTime, Utc};
use keycrm::models::FieldModel;
use keycrm::{KeycrmClient, KeycrmError};
use mapping::{KeycrmReference, PipelineWithStatuses, SettingsOptions};
use runtime::ClientsError;
use store::Connection;

/// Every KeyCRM dictionary the settings page and validation need. Requests go through the
/// connection's rate gate; pipelines are optional (accounts without the module answer 400).
pub async fn fetch_keycrm_reference(c: &KeycrmClient) -> Result<KeycrmReference, KeycrmError> {
    let (sources, order_statuses, payment_methods, delivery_services) = futures::try_join!(
        c.sources(),
        c.order_statuses(),
        c.payment_methods(),
        c.delivery_services()
    )?;
    let (order_fields, lead_fields, categories) = futures::try_join!(
        c.custom_fields(FieldModel::Order),
        c.custom_fields(FieldModel::Lead),
        c.categories()
    )?;
    let (pipelines, pipelines_enabled) = match c.pipelines().await {
        Ok(list) => {
            let statuses =
                futures::future::try_join_all(list.iter().map(|p| c.pipeline_statuses(p.id)))
                    .await?;
            let with = list
                .into_iter()
                .zip(statuses)
                .map(|(pipeline, statuses)| PipelineWithStatuses { pipeline, statuses })
                .collect();
            (with, true)
        }
        // The module is off for this account: the page offers order sync only.
        Err(KeycrmError::BadRequest { .. } | KeycrmError::Forbidden { .. }) => (Vec::new(), false),
        Err(e) => return Err(e),
    };
    Ok(KeycrmReference {
        sources,
        order_statuses,
        pipelines,
        pipelines_enabled,
        payment_methods,
        delivery_services,
        order_fields,
        lead_fields,
        categories,
    })
}

fn clients_error(conn: &Connection, e: ClientsError) -> ApiError {
    match e {
        ClientsError::MissingKey(_) => {
            tracing::error!(connection = %conn.id, "the connection's API key is missing from the secret store");
            ApiError::conflict(
                "key_missing",
                crate::error::Msg::new(
                    "the stored KeyCRM API key is missing; paste the key again to reconnect",
                    "збережений ключ API KeyCRM відсутній; вставте ключ ще раз, щоб підключитися",
                ),
            )
        }
        ClientsError::Store(e) => e.into(),
        ClientsError::Keycrm(e) => ApiError::from_keycrm(&e),
    }
}

/// Both sides' dictionaries fetched now (nothing cached is used), and written to the cache.
pub async fn fetch_live(
    api: &AdminApi,
    conn: &Connection,
) -> ApiResult<(SettingsOptions, DateTime<Utc>)> {
    let client = api
        .clients
        .for_connection(conn)
        .await
        .map_err(|e| clients_error(conn, e))?;
    let (crm, shop) = futures::join!(
        fetch_keycrm_reference(&client),
        api.shop.reference(&conn.shop_id)
    );
    let crm = match crm {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(connection = %conn.id, kind = e.kind(), error = %e, "fetching KeyCRM dictionaries failed");
            if matches!(e, KeycrmError::Unauthorized) {
                let _ = api
                    .journal
                    .record_error(&conn.id, "KeyCRM rejected the stored API key")
                    .await;
            }
            return Err(ApiError::from_keycrm(&e));
        }
    };
    let shop = shop.map_err(|e| {
        tracing::warn!(connection = %conn.id, error = %e, "fetching the shop's dictionaries failed");
        ApiError::from_shop(&e)
    })?;
    let opts = SettingsOptions { keycrm: crm, shop };
    let now = Utc::now();
    // The cache only saves KeyCRM budget; failing to fill it is not the merchant's problem.
    if let Err(e) = api.cache.put(&conn.id, &opts, api.config.options_ttl).await {
        tracing::warn!(connection = %conn.id, error = %e, "could not cache the settings options");
    }
    tracing::info!(
        connection = %conn.id,
        keycrm_requests = client.stats().requests,
        "fetched settings options"
    );
    Ok((opts, now))
}

/// Cached dictionaries when young enough (and `refresh` is not asked), live ones otherwise.
pub async fn load(
    api: &AdminApi,
    conn: &Connection,
    refresh: bool,
) -> ApiResult<(SettingsOptions, DateTime<Utc>, bool)> {
    if !refresh {
        match api.cache.get(&conn.id, api.config.options_ttl).await {
            Ok(Some((opts, at))) => return Ok((opts, at, true)),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(connection = %conn.id, error = %e, "reading the options cache failed")
            }
        }
    }
    let (opts, at) = fetch_live(api, conn).await?;
    Ok((opts, at, false))
}
