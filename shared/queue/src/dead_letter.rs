//! What a dead-lettered message says, so a person can read why it is there.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Why the message could not be processed, in words.
    pub reason: String,
    /// A short machine label (`malformed`, `validation`, `mapping`, `retries_exhausted`, …).
    pub kind: String,
    /// Where it came from.
    pub source_queue: String,
    pub failed_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shop_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    /// The original body, untouched, so it can be fixed and re-sent.
    pub original: String,
}

impl DeadLetter {
    pub fn new(kind: &str, reason: impl Into<String>, source_queue: &str, original: &str) -> Self {
        DeadLetter {
            reason: reason.into(),
            kind: kind.to_string(),
            source_queue: source_queue.to_string(),
            failed_at: chrono::Utc::now().to_rfc3339(),
            shop_id: None,
            order_id: None,
            original: original.to_string(),
        }
    }

    pub fn to_outgoing(&self) -> crate::Outgoing {
        crate::Outgoing::new(serde_json::to_string(self).unwrap_or_else(|_| self.original.clone()))
            .with_attribute("reason", truncate(&self.reason, 250))
            .with_attribute("kind", self.kind.clone())
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut t: String = s.chars().take(max - 1).collect();
    t.push('…');
    t
}
