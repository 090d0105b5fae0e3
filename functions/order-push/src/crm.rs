//! The KeyCRM calls order push makes, as a small port. The adapter is [`KeycrmClient`]; the
//! benchmark puts a transport-free stub behind the same trait to measure the consumer's own
//! CPU time.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use keycrm::models::{CardUpdate, FieldModel, NewCard, NewOrder, Order, OrderUpdate};
use keycrm::{KeycrmClient, KeycrmError};
use mapping::{KeycrmReference, OrderSyncType, PipelineWithStatuses};
use runtime::{ClientsError, KeycrmClients};
use serde::Deserialize;
use std::sync::Arc;
use store::Connection;

/// A card as the recovery search sees it: enough to recognise one we created.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct CardCandidate {
    pub id: i64,
    #[serde(default)]
    pub title: Option<String>,
    /// Carries the shop order's marker line (`mapping::source_key::card_marker`).
    #[serde(default)]
    pub manager_comment: Option<String>,
    /// When KeyCRM created it (UTC, as its answers say).
    #[serde(default, deserialize_with = "keycrm::time::opt")]
    pub created_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub pipeline_id: Option<i64>,
    #[serde(default)]
    pub source_id: Option<i64>,
    #[serde(default)]
    pub status_id: i64,
    #[serde(default)]
    pub contact: Option<CardCandidateContact>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct CardCandidateContact {
    #[serde(default)]
    pub full_name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub phone: Option<String>,
}

/// One page of `GET /pipelines/cards`, in the listing's own order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CardPage {
    pub cards: Vec<CardCandidate>,
    /// How many pages the listing has (as of this answer).
    pub last_page: u32,
}

#[async_trait]
pub trait CrmApi: Send + Sync {
    /// `POST /order`; the created order (at least its id and status).
    async fn create_order(&self, body: &NewOrder) -> Result<Order, KeycrmError>;
    /// Orders with this `source_uuid` in this source.
    async fn find_orders(
        &self,
        source_uuid: &str,
        source_id: Option<i64>,
    ) -> Result<Vec<Order>, KeycrmError>;
    async fn set_order_status(&self, order_id: i64, status_id: i64) -> Result<(), KeycrmError>;
    /// `POST /pipelines/cards`; the new card's id and status.
    async fn create_card(&self, body: &NewCard) -> Result<(i64, i64), KeycrmError>;
    /// Page `page` (from 1) of the cards created in a window (`filter[created_between]`, the
    /// only time filter KeyCRM has for cards), 50 a page; with their contact if asked.
    async fn cards_page(
        &self,
        created_between: (DateTime<Utc>, DateTime<Utc>),
        with_contact: bool,
        page: u32,
    ) -> Result<CardPage, KeycrmError>;
    async fn set_card_status(&self, card_id: i64, status_id: i64) -> Result<(), KeycrmError>;
    /// The dictionaries mapping needs for this sync type (see [`crate::dictionaries`]).
    async fn load_reference(&self, sync: OrderSyncType) -> Result<KeycrmReference, KeycrmError>;
}

/// Hands out the KeyCRM port of a connection.
#[async_trait]
pub trait CrmProvider: Send + Sync {
    async fn crm_for(&self, conn: &Connection) -> Result<Arc<dyn CrmApi>, ClientsError>;
}

#[async_trait]
impl CrmProvider for KeycrmClients {
    async fn crm_for(&self, conn: &Connection) -> Result<Arc<dyn CrmApi>, ClientsError> {
        Ok(Arc::new(self.for_connection(conn).await?))
    }
}

#[async_trait]
impl CrmApi for KeycrmClient {
    async fn create_order(&self, body: &NewOrder) -> Result<Order, KeycrmError> {
        KeycrmClient::create_order(self, body).await
    }

    async fn find_orders(
        &self,
        source_uuid: &str,
        source_id: Option<i64>,
    ) -> Result<Vec<Order>, KeycrmError> {
        self.find_orders_by_source_uuid(source_uuid, source_id)
            .await
    }

    async fn set_order_status(&self, order_id: i64, status_id: i64) -> Result<(), KeycrmError> {
        let update = OrderUpdate {
            status_id: Some(status_id),
            ..OrderUpdate::default()
        };
        self.update_order(order_id, &update).await.map(|_| ())
    }

    async fn create_card(&self, body: &NewCard) -> Result<(i64, i64), KeycrmError> {
        let card = KeycrmClient::create_card(self, body).await?;
        Ok((card.id, card.status_id))
    }

    async fn cards_page(
        &self,
        (from, to): (DateTime<Utc>, DateTime<Utc>),
        with_contact: bool,
        page: u32,
    ) -> Result<CardPage, KeycrmError> {
        let mut q = vec![(
            "filter[created_between]",
            format!(
                "{},{}",
                keycrm::time::format_request(from),
                keycrm::time::format_request(to)
            ),
        )];
        if with_contact {
            q.push(("include", "contact".to_string()));
        }
        let p = self
            .page::<CardCandidate>("pipelines/cards", &q, page)
            .await?;
        Ok(CardPage {
            cards: p.data,
            last_page: p.last_page,
        })
    }

    async fn set_card_status(&self, card_id: i64, status_id: i64) -> Result<(), KeycrmError> {
        let update = CardUpdate {
            status_id: Some(status_id),
            ..CardUpdate::default()
        };
        self.update_card(card_id, &update).await
    }

    async fn load_reference(&self, sync: OrderSyncType) -> Result<KeycrmReference, KeycrmError> {
        let mut r = KeycrmReference::default();
        match sync {
            OrderSyncType::None => {}
            OrderSyncType::Orders => {
                r.order_statuses = self.order_statuses().await?;
                r.delivery_services = self.delivery_services().await?;
                r.order_fields = self.custom_fields(FieldModel::Order).await?;
            }
            OrderSyncType::Pipelines => {
                let pipelines = self.pipelines().await?;
                r.pipelines_enabled = true;
                for p in pipelines {
                    let statuses = self.pipeline_statuses(p.id).await?;
                    r.pipelines.push(PipelineWithStatuses {
                        pipeline: p,
                        statuses,
                    });
                }
                r.lead_fields = self.custom_fields(FieldModel::Lead).await?;
            }
        }
        Ok(r)
    }
}

/// The production provider: per-connection clients from the secret store, refusing any
/// connection whose secret lies outside this deployment's prefix (`SECRET_PREFIX`).
pub struct KeycrmProvider {
    pub clients: Arc<KeycrmClients>,
    pub secret_prefix: Option<String>,
}

#[async_trait]
impl CrmProvider for KeycrmProvider {
    async fn crm_for(&self, conn: &Connection) -> Result<Arc<dyn CrmApi>, ClientsError> {
        if let Some(prefix) = &self.secret_prefix {
            if !conn.secret_name.starts_with(prefix.as_str()) {
                // Treated like a missing key: permanent until the connection is fixed.
                tracing::error!(connection = %conn.id, "connection secret is outside this deployment's prefix");
                return Err(ClientsError::MissingKey(conn.id.clone()));
            }
        }
        self.clients.crm_for(conn).await
    }
}
