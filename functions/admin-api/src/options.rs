//! The dictionaries both sides offer, fetched live or from the per-connection cache.
//!
//! Opening the settings page reads about ten KeyCRM lists. They are independent, so they are
//! all asked for at once: on an idle key the rate gate's interactive burst sends them together
//! and the page's data takes one KeyCRM round trip (plus pagination), not ten spaced slots.

use crate::deadline::Deadline;
use crate::error::{ApiError, ApiResult};
use crate::state::AdminApi;
use chrono::{DateTime, Utc};
use keycrm::models::FieldModel;
use keycrm::{KeycrmClient, KeycrmError};
use mapping::{KeycrmReference, PipelineWithStatuses, SettingsOptions};
use runtime::ClientsError;
use store::Connection;

/// Pipelines with their statuses, or none when the account has the module off.
async fn pipelines(c: &KeycrmClient) -> Result<(Vec<PipelineWithStatuses>, bool), KeycrmError> {
    match c.pipelines().await {
        Ok(list) => {
            let statuses =
                futures::future::try_join_all(list.iter().map(|p| c.pipeline_statuses(p.id)))
                    .await?;
            let with = list
                .into_iter()
                .zip(statuses)
                .map(|(pipeline, statuses)| PipelineWithStatuses { pipeline, statuses })
                .collect();
            Ok((with, true))
        }
        // The module is off for this account: the page offers order sync only.
        Err(KeycrmError::BadRequest { .. } | KeycrmError::Forbidden { .. }) => {
            Ok((Vec::new(), false))
        }
        Err(e) => Err(e),
    }
}

/// Every KeyCRM dictionary the settings page and validation need, all asked for at once.
/// Requests go through the connection's rate gate; pipelines are optional (accounts without
/// the module answer 400).
pub async fn fetch_keycrm_reference(c: &KeycrmClient) -> Result<KeycrmReference, KeycrmError> {
    let (
        sources,
        order_statuses,
        payment_methods,
        delivery_services,
        order_fields,
        lead_fields,
        categories,
        (pipelines, pipelines_enabled),
    ) = futures::try_join!(
        c.sources(),
        c.order_statuses(),
        c.payment_methods(),
        c.delivery_services(),
        c.custom_fields(FieldModel::Order),
        c.custom_fields(FieldModel::Lead),
        c.categories(),
        pipelines(c),
    )?;
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
/// The reads run under the request's deadline.
pub async fn fetch_live(
    api: &AdminApi,
    conn: &Connection,
    deadline: &Deadline,
) -> ApiResult<(SettingsOptions, DateTime<Utc>)> {
    let client = api
        .clients
        .for_connection(conn)
        .await
        .map_err(|e| clients_error(conn, e))?;
    // The KeyCRM error becomes the answer inside the deadline's step, so that a request the
    // deadline cut short reads as "busy", not "unreachable".
    let fetched = deadline
        .upstream(async {
            let (crm, shop) = futures::join!(
                fetch_keycrm_reference(&client),
                api.shop.reference(&conn.shop_id)
            );
            match crm {
                Ok(crm) => Ok((crm, shop)),
                Err(e) => {
                    tracing::warn!(connection = %conn.id, kind = e.kind(), error = %e, "fetching KeyCRM dictionaries failed");
                    Err(ApiError::from_keycrm(&e))
                }
            }
        })
        .await;
    let (crm, shop) = match fetched {
        Ok(v) => v,
        Err(e) => {
            if e.code == "keycrm_key_rejected" {
                let _ = api
                    .journal
                    .record_error(&conn.id, "KeyCRM rejected the stored API key")
                    .await;
            }
            return Err(e);
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

/// The cached dictionaries, if young enough. A cache that cannot be read is a miss: the
/// cache only saves KeyCRM budget.
async fn cached(api: &AdminApi, conn: &Connection) -> Option<(SettingsOptions, DateTime<Utc>)> {
    match api.cache.get(&conn.id, api.config.options_ttl).await {
        Ok(hit) => hit,
        Err(e) => {
            tracing::warn!(connection = %conn.id, error = %e, "reading the options cache failed");
            None
        }
    }
}

/// Cached dictionaries when young enough (and `refresh` is not asked), live ones otherwise.
pub async fn load(
    api: &AdminApi,
    conn: &Connection,
    refresh: bool,
    deadline: &Deadline,
) -> ApiResult<(SettingsOptions, DateTime<Utc>, bool)> {
    if !refresh {
        if let Some((opts, at)) = cached(api, conn).await {
            return Ok((opts, at, true));
        }
    }
    let (opts, at) = fetch_live(api, conn, deadline).await?;
    Ok((opts, at, false))
}

/// How a settings save was checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckedAgainst {
    /// The cached dictionaries (younger than the options TTL) held every reference.
    Cache,
    /// Lists read from both sides just now.
    Live,
}

/// Checks settings against both sides' dictionaries and returns the problems found.
///
/// The page was built from the cached dictionaries moments ago, so they are tried first: when
/// every reference the settings make is in a cache younger than the options TTL, the save
/// costs no KeyCRM request. That is as safe as the page the merchant looked at, and is never
/// the reason for a refusal: anything the cache does not hold (a status created in KeyCRM
/// since, a dictionary changed under the merchant) is checked again against live lists, and
/// only their answer can refuse the save. Replacing the API key drops the cache, so another
/// account's dictionaries are never used.
pub async fn check_settings<P>(
    api: &AdminApi,
    conn: &Connection,
    deadline: &Deadline,
    check: impl Fn(&SettingsOptions) -> Vec<P>,
) -> ApiResult<(Vec<P>, CheckedAgainst)> {
    if let Some((opts, _)) = cached(api, conn).await {
        if check(&opts).is_empty() {
            return Ok((Vec::new(), CheckedAgainst::Cache));
        }
    }
    let (opts, _) = fetch_live(api, conn, deadline).await?;
    Ok((check(&opts), CheckedAgainst::Live))
}
