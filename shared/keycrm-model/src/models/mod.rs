//! Request and response shapes of the KeyCRM Open API (v1), as the live service sends them.
//! Unknown fields are ignored; money and timestamps accept every form KeyCRM is known to use.

mod catalog;
mod order;
mod page;
mod pipeline;
mod reference;

pub use catalog::*;
pub use order::*;
pub use page::*;
pub use pipeline::*;
pub use reference::*;

use serde::{Deserialize, Serialize};

/// `{uuid, value}` as KeyCRM writes and reads custom field values. Select fields carry an
/// array of option strings; the other types a scalar.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CustomFieldValue {
    pub uuid: String,
    #[serde(default)]
    pub value: serde_json::Value,
}

/// `{name, value}` variant properties on offers and order lines.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Property {
    #[serde(default)]
    pub name: String,
    #[serde(default, deserialize_with = "crate::models::lenient_string")]
    pub value: String,
}

/// Accepts a string, a number or null where KeyCRM is loose about it.
pub(crate) fn lenient_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    Ok(match v {
        serde_json::Value::String(s) => s,
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    })
}
