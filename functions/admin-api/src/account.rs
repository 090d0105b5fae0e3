//! Does a new API key open the same KeyCRM account as the connection's current one?
//!
//! KeyCRM has no account id in its API, so the connector asks the new key about things only
//! the connection's own account has (`docs/admin-api.md`, "Replace the key"):
//!
//! 1. **Pushed orders** (up to 3, the newest): each KeyCRM order must exist under the new key
//!    with the shop order id as its `source_uuid`; a card must exist with the title the
//!    connector gave it. One that does proves the same account.
//! 2. **Linked products** (up to 3): the linked KeyCRM product must have, under the new key,
//!    an offer with the linked offer id and the same SKU, barcode and properties as last
//!    synced. One that does proves the same account.
//! 3. Only when nothing above proved it: **every KeyCRM id in the settings** (source,
//!    statuses, pipelines, custom fields, payment methods, delivery services, categories)
//!    must exist in the new account.
//!
//! Anything that does not resolve the same is recorded as a reason. A proof wins over
//! reasons (a deleted order or an edited product must not make the same account look
//! foreign); reasons without a proof mean another account. A connection with nothing to
//! compare (no settings ids, links or pushed orders) has nothing to lose: any key is fine.

use crate::error::{ApiResult, Msg};
use crate::options::fetch_keycrm_reference;
use crate::state::AdminApi;
use keycrm::{KeycrmClient, KeycrmError};
use mapping::catalog::{variant_hash, CrmOffer, ListedOffer};
use std::collections::HashMap;
use store::{Connection, Target};

/// How many orders and products are compared (each costs a KeyCRM request).
const SAMPLES: usize = 3;

/// Settings problems that mean "this id does not exist in KeyCRM".
const KEYCRM_ID_CODES: [&str; 8] = [
    "unknown_source",
    "unknown_keycrm_status",
    "unknown_pipeline",
    "unknown_pipeline_status",
    "unknown_order_field",
    "unknown_card_field",
    "unknown_keycrm_payment_method",
    "unknown_keycrm_delivery_service",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Something only this account has resolved the same.
    Same,
    /// Nothing proved it, and these did not resolve the same.
    Different(Vec<Msg>),
    /// The connection holds nothing that belongs to a KeyCRM account.
    NothingToCompare,
}

fn unexpected(e: KeycrmError) -> crate::error::ApiError {
    crate::error::ApiError::from_key_check(&e)
}

/// Compares what the connection knows of its KeyCRM account with what `client` (the new
/// key) sees.
pub async fn compare(
    api: &AdminApi,
    conn: &Connection,
    client: &KeycrmClient,
) -> ApiResult<Verdict> {
    let mut reasons = Vec::new();
    let mut compared = false;

    let pushed: Vec<_> = api
        .ledger
        .sample_created(&conn.id, SAMPLES * 2)
        .await?
        .into_iter()
        .filter(|e| e.in_current_account(conn.account_switched_at))
        .take(SAMPLES)
        .collect();
    for e in pushed {
        let Some(id) = e.keycrm_id else { continue };
        compared = true;
        match e.target {
            Target::Order => match client.get_order(id).await {
                Ok(o) if o.source_uuid.as_deref() == Some(e.shop_order_id.as_str()) => {
                    return Ok(Verdict::Same)
                }
                Ok(_) => reasons.push(Msg::new(
                    format!(
                        "KeyCRM order {id} is not the order the connector pushed for shop order {}",
                        e.shop_order_id
                    ),
                    format!(
                        "замовлення KeyCRM {id} — не те, яке конектор передав для замовлення магазину {}",
                        e.shop_order_id
                    ),
                )),
                Err(KeycrmError::NotFound { .. }) => reasons.push(Msg::new(
                    format!(
                        "KeyCRM order {id} (shop order {}) does not exist",
                        e.shop_order_id
                    ),
                    format!(
                        "замовлення KeyCRM {id} (замовлення магазину {}) не існує",
                        e.shop_order_id
                    ),
                )),
                Err(other) => return Err(unexpected(other)),
            },
            Target::Card => {
                // The ledger keeps the number after it drops the event (order created).
                let number = e.shop_order_number();
                match client.get_card(id).await {
                    Ok(c) => match &number {
                        Some(n) if c.title.as_deref() == Some(format!("Замовлення №{n}").as_str()) => {
                            return Ok(Verdict::Same)
                        }
                        Some(_) => reasons.push(Msg::new(
                            format!(
                                "KeyCRM card {id} is not the card the connector made for shop order {}",
                                e.shop_order_id
                            ),
                            format!(
                                "картка KeyCRM {id} — не та, яку конектор створив для замовлення магазину {}",
                                e.shop_order_id
                            ),
                        )),
                        None => {}
                    },
                    Err(KeycrmError::NotFound { .. }) => reasons.push(Msg::new(
                        format!(
                            "KeyCRM card {id} (shop order {}) does not exist",
                            e.shop_order_id
                        ),
                        format!(
                            "картки KeyCRM {id} (замовлення магазину {}) не існує",
                            e.shop_order_id
                        ),
                    )),
                    Err(other) => return Err(unexpected(other)),
                }
            }
        }
    }

    let (links, _) = api
        .links
        .products_page(&conn.links_scope(), None, SAMPLES)
        .await?;
    let links: Vec<_> = links
        .into_iter()
        .filter(|l| l.variants.iter().any(|v| v.hash != 0))
        .collect();
    if !links.is_empty() {
        compared = true;
        let ids: Vec<String> = links.iter().map(|l| l.keycrm_id.to_string()).collect();
        let offers: Vec<ListedOffer> = client
            .list("offers", &[("filter[product_id]", ids.join(","))])
            .collect_all()
            .await
            .map_err(unexpected)?;
        let seen: HashMap<i64, (i64, u64)> = offers
            .into_iter()
            .map(|o| {
                let product = o.product_id;
                let offer = CrmOffer::from_listed(o);
                (offer.id, (product, variant_hash(&offer)))
            })
            .collect();
        for l in &links {
            let same = l
                .variants
                .iter()
                .any(|v| v.hash != 0 && seen.get(&v.offer_id) == Some(&(l.keycrm_id, v.hash)));
            if same {
                return Ok(Verdict::Same);
            }
            reasons.push(Msg::new(
                format!(
                    "KeyCRM product {} (linked to shop product {}) is not the same product under this key",
                    l.keycrm_id, l.shop_id
                ),
                format!(
                    "товар KeyCRM {} (пов'язаний з товаром магазину {}) з цим ключем — інший товар",
                    l.keycrm_id, l.shop_id
                ),
            ));
        }
    }

    let s = &conn.settings;
    let has_ids = s.source_id.is_some()
        || !s.order_statuses.is_empty()
        || !s.card_statuses.is_empty()
        || s.default_pipeline_id.is_some()
        || !s.addon_fields.is_empty()
        || !s.payment_map.is_empty()
        || !s.delivery_map.is_empty()
        || !s.category_filter.is_empty();
    if has_ids {
        compared = true;
        let crm = fetch_keycrm_reference(client).await.map_err(unexpected)?;
        // Only the KeyCRM side matters here: the shop side is checked against itself.
        let shop = api
            .shop
            .reference(&conn.shop_id)
            .await
            .map_err(|e| crate::error::ApiError::from_shop(&e))?;
        let missing: Vec<Msg> = s
            .problems(&crm, &shop)
            .into_iter()
            .filter(|p| KEYCRM_ID_CODES.contains(&p.code()) || p.code() == "unknown_category")
            .map(|p| {
                Msg::new(
                    format!("settings {}: {}", p.field, p.message(mapping::Lang::En)),
                    format!("налаштування {}: {}", p.field, p.message(mapping::Lang::Uk)),
                )
            })
            .collect();
        reasons.extend(missing);
    }

    Ok(if !compared {
        Verdict::NothingToCompare
    } else if reasons.is_empty() {
        Verdict::Same
    } else {
        Verdict::Different(reasons)
    })
}
