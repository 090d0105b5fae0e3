//! Reading dead letters. A letter is either a [`queue::DeadLetter`] a function wrote with its
//! reason (the original message inside), or a message the queue's redrive policy moved after
//! its last allowed delivery (the original itself, no reason recorded).

use crate::cli::{FilterArgs, QueueArg};
use queue::{DeadLetter, Message};
use serde::Serialize;
use serde_json::Value;

/// The kind given to messages SQS moved by itself.
pub const MOVED_BY_SQS: &str = "max_receives";

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Letter {
    pub message_id: String,
    #[serde(skip)]
    pub receipt: String,
    pub kind: String,
    pub reason: String,
    pub failed_at: Option<String>,
    pub shop_id: Option<String>,
    pub order_id: Option<String>,
    pub connection_id: Option<String>,
    /// The message to send back.
    #[serde(skip)]
    pub original: String,
}

fn text(v: &Value, pointer: &str) -> Option<String> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// What the original message names: `(shop, order, connection)`.
fn ids(queue: QueueArg, original: &str) -> (Option<String>, Option<String>, Option<String>) {
    let Ok(v) = serde_json::from_str::<Value>(original) else {
        return (None, None, None);
    };
    match queue {
        QueueArg::Orders => (
            text(&v, "/shop_id"),
            text(&v, "/order/id").or_else(|| text(&v, "/order_id")),
            None,
        ),
        QueueArg::Statuses | QueueArg::Sync | QueueArg::Stock => {
            (None, None, text(&v, "/connection_id"))
        }
    }
}

/// Reads one dead-letter queue message.
pub fn parse(queue: QueueArg, msg: &Message) -> Letter {
    let wrapped = serde_json::from_str::<DeadLetter>(&msg.body).ok();
    let (kind, reason, failed_at, original, shop, order) = match wrapped {
        Some(d) => (
            d.kind,
            d.reason,
            Some(d.failed_at),
            d.original,
            d.shop_id,
            d.order_id,
        ),
        None => (
            MOVED_BY_SQS.to_string(),
            format!(
                "moved here by SQS after {} deliveries without a recorded reason (see the \
                 consumer's logs around that time)",
                msg.receive_count.max(1)
            ),
            None,
            msg.body.clone(),
            None,
            None,
        ),
    };
    let (s, o, c) = ids(queue, &original);
    Letter {
        message_id: msg.id.clone(),
        receipt: msg.receipt.clone(),
        kind,
        reason,
        failed_at,
        shop_id: shop.or(s),
        order_id: order.or(o),
        connection_id: c,
        original,
    }
}

/// Which letters a command acts on.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub kind: Option<String>,
    pub shop: Option<String>,
    /// The shop's connection, for letters that name only it (status and sync jobs).
    pub connection: Option<String>,
    pub reason: Option<String>,
}

impl Filter {
    pub fn new(args: &FilterArgs, connection: Option<String>) -> Self {
        Filter {
            kind: args.kind.clone(),
            shop: args.shop.clone(),
            connection,
            reason: args.reason.as_ref().map(|r| r.to_lowercase()),
        }
    }

    pub fn matches(&self, l: &Letter) -> bool {
        if self.kind.as_ref().is_some_and(|k| *k != l.kind) {
            return false;
        }
        if let Some(shop) = &self.shop {
            let by_shop = l.shop_id.as_deref() == Some(shop.as_str());
            let by_conn = self.connection.is_some() && l.connection_id == self.connection;
            if !(by_shop || by_conn) {
                return false;
            }
        }
        if let Some(r) = &self.reason {
            if !l.reason.to_lowercase().contains(r) {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn msg(body: &str, receives: u32) -> Message {
        Message {
            id: "m1".into(),
            body: body.into(),
            receipt: "r1".into(),
            receive_count: receives,
            attributes: HashMap::new(),
        }
    }

    #[test]
    fn wrapped_letters_keep_their_reason_and_original() {
        let original = r#"{"type":"order.created","shop_id":"s1","order":{"id":"A-1"}}"#;
        let mut d = DeadLetter::new("validation", "KeyCRM refused: phone", "q", original);
        d.shop_id = Some("s1".into());
        let l = parse(
            QueueArg::Orders,
            &msg(&serde_json::to_string(&d).unwrap(), 1),
        );
        assert_eq!(l.kind, "validation");
        assert_eq!(l.reason, "KeyCRM refused: phone");
        assert_eq!(l.original, original);
        assert_eq!(l.shop_id.as_deref(), Some("s1"));
        assert_eq!(l.order_id.as_deref(), Some("A-1"));
    }

    #[test]
    fn raw_letters_moved_by_sqs_are_read_from_their_body() {
        let job = r#"{"v":1,"connection_id":"c9","target":"order","keycrm_id":5}"#;
        let l = parse(QueueArg::Statuses, &msg(job, 10));
        assert_eq!(l.kind, MOVED_BY_SQS);
        assert!(l.reason.contains("10 deliveries"));
        assert_eq!(l.connection_id.as_deref(), Some("c9"));
        assert_eq!(l.original, job);
        let garbage = parse(QueueArg::Orders, &msg("not json", 0));
        assert_eq!((garbage.shop_id, garbage.order_id), (None, None));
    }

    #[test]
    fn filters_by_kind_shop_or_its_connection_and_reason() {
        let l = Letter {
            message_id: "m".into(),
            receipt: "r".into(),
            kind: "validation".into(),
            reason: "KeyCRM refused the order: Phone invalid".into(),
            failed_at: None,
            shop_id: Some("s1".into()),
            order_id: None,
            connection_id: Some("c1".into()),
            original: String::new(),
        };
        let f =
            |kind: Option<&str>, shop: Option<&str>, conn: Option<&str>, reason: Option<&str>| {
                Filter {
                    kind: kind.map(Into::into),
                    shop: shop.map(Into::into),
                    connection: conn.map(Into::into),
                    reason: reason.map(|r| r.to_lowercase()),
                }
            };
        assert!(f(None, None, None, None).matches(&l));
        assert!(f(Some("validation"), Some("s1"), None, Some("PHONE")).matches(&l));
        assert!(!f(Some("mapping"), None, None, None).matches(&l));
        assert!(!f(None, Some("s2"), None, None).matches(&l));
        assert!(f(None, Some("s2"), Some("c1"), None).matches(&l));
        assert!(!f(None, None, None, Some("timeout")).matches(&l));
    }
}
