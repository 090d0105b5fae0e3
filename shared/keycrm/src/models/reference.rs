//! Account dictionaries: what the settings page offers in its dropdowns.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Source {
    pub id: i64,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub alias: Option<String>,
    #[serde(default)]
    pub driver: Option<String>,
    #[serde(default)]
    pub currency_code: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OrderStatus {
    pub id: i64,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub alias: Option<String>,
    #[serde(default)]
    pub group_id: i64,
    #[serde(default = "yes")]
    pub is_active: bool,
    #[serde(default)]
    pub is_closing_order: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PaymentMethod {
    pub id: i64,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub alias: Option<String>,
    #[serde(default = "yes")]
    pub is_active: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeliveryService {
    pub id: i64,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub alias: Option<String>,
    /// Carrier integration, e.g. `novaposhta`.
    #[serde(default)]
    pub source_name: Option<String>,
}

impl DeliveryService {
    pub fn is_nova_poshta(&self) -> bool {
        let hay = format!(
            "{} {} {}",
            self.source_name.as_deref().unwrap_or_default(),
            self.alias.as_deref().unwrap_or_default(),
            self.name
        )
        .to_lowercase();
        hay.contains("novaposhta") || hay.contains("nova_poshta") || hay.contains("нова пошта")
    }
}

/// Which entity a custom field belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldModel {
    Order,
    Lead,
    Client,
    CrmProduct,
}

impl FieldModel {
    pub fn as_str(self) -> &'static str {
        match self {
            FieldModel::Order => "order",
            FieldModel::Lead => "lead",
            FieldModel::Client => "client",
            FieldModel::CrmProduct => "crm_product",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CustomField {
    #[serde(default)]
    pub id: i64,
    pub uuid: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub model: Option<String>,
    /// text, textarea, link, select, switcher, float, number, date, datetime
    #[serde(rename = "type", default)]
    pub field_type: String,
    #[serde(default)]
    pub is_multiple: bool,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub options: Vec<CustomFieldOption>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CustomFieldOption {
    #[serde(default)]
    pub id: i64,
    #[serde(default, deserialize_with = "crate::models::lenient_string")]
    pub value: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pipeline {
    pub id: i64,
    /// The spec says `name`; some live readers see `title`.
    #[serde(default, alias = "title")]
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PipelineStatus {
    pub id: i64,
    #[serde(default)]
    pub pipeline_id: i64,
    #[serde(default, alias = "name")]
    pub title: String,
    #[serde(default)]
    pub alias: Option<String>,
    #[serde(default)]
    pub is_final: bool,
}

fn yes() -> bool {
    true
}
