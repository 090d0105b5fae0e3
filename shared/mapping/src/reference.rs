//! KeyCRM account dictionaries, cached per connection and used to validate settings and map
//! orders without a lookup per order.

use crate::shop::ShopReference;
use keycrm_model::models::{
    Category, CustomField, DeliveryService, OrderStatus, PaymentMethod, Pipeline, PipelineStatus,
    Source,
};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct KeycrmReference {
    pub sources: Vec<Source>,
    pub order_statuses: Vec<OrderStatus>,
    /// Empty when the account has pipelines disabled.
    pub pipelines: Vec<PipelineWithStatuses>,
    #[serde(default)]
    pub pipelines_enabled: bool,
    pub payment_methods: Vec<PaymentMethod>,
    pub delivery_services: Vec<DeliveryService>,
    pub order_fields: Vec<CustomField>,
    pub lead_fields: Vec<CustomField>,
    pub categories: Vec<Category>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PipelineWithStatuses {
    pub pipeline: Pipeline,
    pub statuses: Vec<PipelineStatus>,
}

impl KeycrmReference {
    pub fn source(&self, id: i64) -> Option<&Source> {
        self.sources.iter().find(|s| s.id == id)
    }
    pub fn order_status(&self, id: i64) -> Option<&OrderStatus> {
        self.order_statuses.iter().find(|s| s.id == id)
    }
    pub fn pipeline(&self, id: i64) -> Option<&PipelineWithStatuses> {
        self.pipelines.iter().find(|p| p.pipeline.id == id)
    }
    pub fn pipeline_status(&self, pipeline_id: i64, status_id: i64) -> Option<&PipelineStatus> {
        self.pipeline(pipeline_id)
            .and_then(|p| p.statuses.iter().find(|s| s.id == status_id))
    }
    /// The pipeline a status belongs to (status ids are unique across an account).
    pub fn pipeline_of_status(&self, status_id: i64) -> Option<i64> {
        self.pipelines
            .iter()
            .find(|p| p.statuses.iter().any(|s| s.id == status_id))
            .map(|p| p.pipeline.id)
    }
    pub fn payment_method(&self, id: i64) -> Option<&PaymentMethod> {
        self.payment_methods.iter().find(|m| m.id == id)
    }
    pub fn delivery_service(&self, id: i64) -> Option<&DeliveryService> {
        self.delivery_services.iter().find(|d| d.id == id)
    }
    pub fn order_field(&self, uuid: &str) -> Option<&CustomField> {
        self.order_fields.iter().find(|f| f.uuid == uuid)
    }
    pub fn lead_field(&self, uuid: &str) -> Option<&CustomField> {
        self.lead_fields.iter().find(|f| f.uuid == uuid)
    }
    pub fn category(&self, id: i64) -> Option<&Category> {
        self.categories.iter().find(|c| c.id == id)
    }
}

/// Both sides' dictionaries, as the settings page shows them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SettingsOptions {
    pub keycrm: KeycrmReference,
    pub shop: ShopReference,
}
