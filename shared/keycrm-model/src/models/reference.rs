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
#[serde(from = "PipelineWire")]
pub struct Pipeline {
    pub id: i64,
    pub name: String,
}

/// The spec says `name`; some live readers see `title`; a response may carry both.
#[derive(Deserialize)]
struct PipelineWire {
    id: i64,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    title: Option<String>,
}

impl From<PipelineWire> for Pipeline {
    fn from(w: PipelineWire) -> Self {
        Pipeline {
            id: w.id,
            name: w.name.or(w.title).unwrap_or_default(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(from = "PipelineStatusWire")]
pub struct PipelineStatus {
    pub id: i64,
    pub pipeline_id: i64,
    pub title: String,
    pub alias: Option<String>,
    pub is_final: bool,
}

/// `title` in the spec; `name` tolerated too, and both at once.
#[derive(Deserialize)]
struct PipelineStatusWire {
    id: i64,
    #[serde(default)]
    pipeline_id: i64,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    alias: Option<String>,
    #[serde(default)]
    is_final: Option<bool>,
}

impl From<PipelineStatusWire> for PipelineStatus {
    fn from(w: PipelineStatusWire) -> Self {
        PipelineStatus {
            id: w.id,
            pipeline_id: w.pipeline_id,
            title: w.title.or(w.name).unwrap_or_default(),
            alias: w.alias,
            is_final: w.is_final.unwrap_or(false),
        }
    }
}

fn yes() -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipelines_read_name_title_or_both() {
        let both: Pipeline =
            serde_json::from_str(r#"{"id":1,"name":"Продажі","title":"Продажі"}"#).unwrap();
        let title: Pipeline = serde_json::from_str(r#"{"id":2,"title":"Повернення"}"#).unwrap();
        assert_eq!(
            (both.name.as_str(), title.name.as_str()),
            ("Продажі", "Повернення")
        );
        let s: PipelineStatus = serde_json::from_str(
            r#"{"id":7,"pipeline_id":1,"name":"Нова","title":"Нова","is_final":null}"#,
        )
        .unwrap();
        assert_eq!((s.title.as_str(), s.is_final), ("Нова", false));
        // What we store in caches reads back the same.
        let again: Pipeline = serde_json::from_str(&serde_json::to_string(&both).unwrap()).unwrap();
        assert_eq!(again, both);
    }
}
