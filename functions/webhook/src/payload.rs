//! KeyCRM trigger-webhook bodies: `{"event": "...", "context": {<bare order or card row>}}`.
//! Pure parsing and validation, no I/O. Only the fields status handling needs are read; the
//! rest of the row (money as numbers or strings, relations that are never there) is skipped.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

pub const ORDER_STATUS_EVENT: &str = "order.change_order_status";
pub const LEAD_STATUS_EVENT: &str = "lead.change_lead_status";

/// Which trigger sent it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    OrderStatus,
    LeadStatus,
    /// Any other event (payment status, future ones): answered 200 and ignored.
    Other(String),
}

impl Event {
    pub fn label(&self) -> &str {
        match self {
            Event::OrderStatus => ORDER_STATUS_EVENT,
            Event::LeadStatus => LEAD_STATUS_EVENT,
            Event::Other(e) => e,
        }
    }
}

/// The fields of `context` a status change needs.
#[derive(Clone, Debug, PartialEq)]
pub struct StatusChange {
    /// KeyCRM order id or card id.
    pub id: i64,
    pub status_id: i64,
    /// `status_changed_at` (or `updated_at` if KeyCRM left it out).
    pub changed_at: DateTime<Utc>,
    pub pipeline_id: Option<i64>,
    pub source_id: Option<i64>,
    pub source_uuid: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Delivery {
    pub event: Event,
    /// Present for the two status events; `None` for events that are ignored anyway.
    pub change: Option<StatusChange>,
}

/// Why a body was refused. Each maps to one HTTP status (see `docs/webhooks.md`). The
/// messages go into the answer and the WARN log, so they name the field and what was expected
/// and never carry a value from the request (serde's own messages quote the value).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("the content type is not JSON; KeyCRM webhooks are JSON POSTs (application/json)")]
    UnsupportedMediaType,
    #[error("the body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the body is not valid JSON: {0}")]
    NotJson(String),
    #[error("the body is not a KeyCRM webhook: {0}")]
    Shape(String),
    #[error("{0} is missing")]
    Missing(&'static str),
    #[error("{field} is invalid: {reason}")]
    Invalid { field: &'static str, reason: String },
}

/// Accepts no (or an empty) content type (treated as JSON), `application/json`, `text/json` and
/// `application/*+json`, with any parameters. Everything else is refused (415).
pub fn check_content_type(content_type: Option<&str>) -> Result<(), PayloadError> {
    let Some(ct) = content_type else {
        return Ok(());
    };
    let essence = runtime::media_type::essence(ct);
    // KeyCRM's sender is not documented: an empty type and `text/json` are taken too.
    let ok = essence.is_empty() || essence == "text/json" || runtime::media_type::is_json(ct);
    if ok {
        Ok(())
    } else {
        Err(PayloadError::UnsupportedMediaType)
    }
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    event: Option<Value>,
    #[serde(default)]
    context: Option<RawContext>,
}

/// Only these keys are materialized; serde skips the rest of the row.
#[derive(Deserialize)]
struct RawContext {
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    status_id: Option<Value>,
    #[serde(default)]
    status_changed_at: Option<Value>,
    #[serde(default)]
    updated_at: Option<Value>,
    #[serde(default)]
    pipeline_id: Option<Value>,
    #[serde(default)]
    source_id: Option<Value>,
    #[serde(default)]
    source_uuid: Option<Value>,
}

/// An integer that may come as a JSON number or a numeric string; `null` is absent.
fn int(v: &Option<Value>, field: &'static str) -> Result<Option<i64>, PayloadError> {
    let invalid = |reason: &str| PayloadError::Invalid {
        field,
        reason: reason.to_string(),
    };
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 9e15)
                    .map(|f| f as i64)
            })
            .map(Some)
            .ok_or_else(|| invalid("not an integer")),
        Some(Value::String(s)) => s
            .trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|_| invalid("not an integer")),
        Some(_) => Err(invalid("not an integer")),
    }
}

fn timestamp(
    v: &Option<Value>,
    field: &'static str,
) -> Result<Option<DateTime<Utc>>, PayloadError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => {
            keycrm::time::parse(s)
                .map(Some)
                .ok_or_else(|| PayloadError::Invalid {
                    field,
                    reason: "not a KeyCRM timestamp".into(),
                })
        }
        Some(_) => Err(PayloadError::Invalid {
            field,
            reason: "not a string".into(),
        }),
    }
}

fn text(v: &Option<Value>) -> Option<String> {
    match v {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

/// KeyCRM's event names look like `order.change_payment_status`; anything else is logged as
/// `unrecognised`, never as sent.
fn event_label(name: &str) -> String {
    // KeyCRM's trigger events are `<order|lead>.change_<what>_status` (keycrm-api.md §7.1);
    // anything else could be any text a sender chose, a secret included.
    let what = ["order.change_", "lead.change_"]
        .iter()
        .find_map(|group| name.strip_prefix(group))
        .and_then(|rest| rest.strip_suffix("_status"));
    let plain = what.is_some_and(|w| {
        !w.is_empty() && w.len() <= 24 && w.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
    });
    if plain {
        name.to_string()
    } else {
        "unrecognised".to_string()
    }
}

/// A refusal in our own words: where and what was expected, never serde's text (which quotes
/// the value it met).
fn refusal(e: &serde_json::Error, in_context: bool) -> PayloadError {
    use serde_json::error::Category;
    match e.classify() {
        Category::Eof if e.line() <= 1 && e.column() == 0 => {
            PayloadError::NotJson("it is empty".into())
        }
        Category::Eof => PayloadError::NotJson("it ends before the JSON does".into()),
        Category::Syntax | Category::Io => PayloadError::NotJson(format!(
            "syntax error at line {}, column {}",
            e.line(),
            e.column()
        )),
        Category::Data if in_context => PayloadError::Shape(
            "context must be a JSON object (the order or card row), each field once".into(),
        ),
        Category::Data => PayloadError::Shape(
            "expected a JSON object with event and context, each field once".into(),
        ),
    }
}

/// Parses and validates a delivery. Unknown events are returned without looking at the
/// context (they are ignored, not refused).
pub fn parse(body: &[u8]) -> Result<Delivery, PayloadError> {
    // serde would read a struct from a JSON array too; a webhook is an object.
    if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return Err(PayloadError::Shape(
            "expected a JSON object, got an array".into(),
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let env: Envelope = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let in_context = e.path().iter().next().is_some_and(
            |s| matches!(s, serde_path_to_error::Segment::Map { key } if key == "context"),
        );
        refusal(e.inner(), in_context)
    })?;
    // Only whitespace may follow the object: `{…} xyz` or `{…}{…}` is not one JSON document,
    // and acting on its first part would apply something the sender did not send whole.
    de.end().map_err(|e| refusal(&e, false))?;
    let event = match env.event {
        None | Some(Value::Null) => return Err(PayloadError::Missing("event")),
        Some(Value::String(s)) => match s.as_str() {
            ORDER_STATUS_EVENT => Event::OrderStatus,
            LEAD_STATUS_EVENT => Event::LeadStatus,
            "" => return Err(PayloadError::Missing("event")),
            // The name is logged: only an event name of KeyCRM's shape is kept as it is.
            other => Event::Other(event_label(other)),
        },
        Some(_) => {
            return Err(PayloadError::Invalid {
                field: "event",
                reason: "not a string".into(),
            })
        }
    };
    if matches!(event, Event::Other(_)) {
        return Ok(Delivery {
            event,
            change: None,
        });
    }
    let ctx = env.context.ok_or(PayloadError::Missing("context"))?;
    let id = int(&ctx.id, "context.id")?.ok_or(PayloadError::Missing("context.id"))?;
    if id <= 0 {
        return Err(PayloadError::Invalid {
            field: "context.id",
            reason: "not a positive id".into(),
        });
    }
    let status_id = int(&ctx.status_id, "context.status_id")?
        .ok_or(PayloadError::Missing("context.status_id"))?;
    let changed_at = match timestamp(&ctx.status_changed_at, "context.status_changed_at")? {
        Some(t) => t,
        None => timestamp(&ctx.updated_at, "context.updated_at")?
            .ok_or(PayloadError::Missing("context.status_changed_at"))?,
    };
    Ok(Delivery {
        event,
        change: Some(StatusChange {
            id,
            status_id,
            changed_at,
            pipeline_id: int(&ctx.pipeline_id, "context.pipeline_id")?,
            source_id: int(&ctx.source_id, "context.source_id")?,
            source_uuid: text(&ctx.source_uuid),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    /// The documented example (`keycrm-api.md` §7.2): money as strings, mixed date forms.
    const DOC_ORDER: &str = r#"{"event":"order.change_order_status","context":{"id":67526,"source_uuid":null,"global_source_uuid":null,"status_on_source":null,"source_id":246,"client_id":88282,"grand_total":45.22,"total_discount":1.8,"margin_sum":40.22,"expenses_sum":1,"discount_amount":1,"discount_percent":2,"shipping_price":"2.00","taxes":"4.00","register_id":null,"fiscal_result":[],"fiscal_status":"done","shipping_type_id":null,"manager_id":108,"status_group_id":5,"status_id":1,"closed_from":null,"status_changed_at":"2024-05-28T09:34:10.000000Z","status_expired_at":null,"parent_id":null,"manager_comment":null,"client_comment":null,"payment_status":"part_paid","created_at":"2024-05-28T09:24:01.000000Z","updated_at":"2024-05-28T09:34:20.000000Z","closed_at":"2024-05-28 09:34:10","deleted_at":null,"ordered_at":"2024-05-28T09:24:01.000000Z","source_updated_at":null,"payments_total":40.02,"is_expired":false,"has_reserves":false}}"#;

    const CARD: &str = r#"{"event":"lead.change_lead_status","context":{"id":13898,"title":"Заявка з сайту","pipeline_id":1,"status_id":1002,"source_id":4,"contact_id":5521,"manager_id":12,"manager_comment":null,"communicate_at":null,"is_finished":null,"target_type":null,"target_id":null,"utm_source":null,"status_changed_at":"2026-03-19T10:00:00.000000Z","created_at":"2026-03-19T09:58:00.000000Z","updated_at":"2026-03-19T10:00:00.000000Z"}}"#;

    #[test]
    fn parses_the_documented_order_payload() {
        let d = parse(DOC_ORDER.as_bytes()).unwrap();
        assert_eq!(d.event, Event::OrderStatus);
        let c = d.change.unwrap();
        assert_eq!(c.id, 67526);
        assert_eq!(c.status_id, 1);
        assert_eq!(c.source_id, Some(246));
        assert_eq!(c.source_uuid, None);
        assert_eq!(
            c.changed_at,
            Utc.with_ymd_and_hms(2024, 5, 28, 9, 34, 10).unwrap()
        );
    }

    #[test]
    fn parses_a_card_payload() {
        let c = parse(CARD.as_bytes()).unwrap().change.unwrap();
        assert_eq!((c.id, c.status_id, c.pipeline_id), (13898, 1002, Some(1)));
    }

    #[test]
    fn tolerates_numeric_strings_space_dates_and_a_missing_status_time() {
        let body = r#"{"event":"order.change_order_status","context":{"id":"42","status_id":"3","source_id":"7","source_uuid":1055,"updated_at":"2026-01-29 18:53:35"}}"#;
        let c = parse(body.as_bytes()).unwrap().change.unwrap();
        assert_eq!((c.id, c.status_id, c.source_id), (42, 3, Some(7)));
        assert_eq!(c.source_uuid.as_deref(), Some("1055"));
        assert_eq!(
            c.changed_at,
            Utc.with_ymd_and_hms(2026, 1, 29, 18, 53, 35).unwrap()
        );
    }

    #[test]
    fn other_events_are_recognised_without_validating_their_context() {
        let d = parse(br#"{"event":"order.change_payment_status","context":[]}"#).unwrap();
        assert_eq!(d.event, Event::Other("order.change_payment_status".into()));
        assert!(d.change.is_none());
    }

    #[test]
    fn refuses_bad_bodies_with_specific_errors() {
        let cases: &[(&str, PayloadError)] = &[
            ("", PayloadError::NotJson(String::new())),
            ("{\"event\":", PayloadError::NotJson(String::new())),
            ("event=x", PayloadError::NotJson(String::new())),
            ("[1,2]", PayloadError::Shape(String::new())),
            (" [\"order.change_order_status\",{}]", PayloadError::Shape(String::new())),
            ("5", PayloadError::Shape(String::new())),
            ("{\"context\":{}}", PayloadError::Missing("event")),
            ("{\"event\":\"\"}", PayloadError::Missing("event")),
            ("{\"event\":5}", PayloadError::Invalid { field: "event", reason: String::new() }),
            ("{\"event\":\"order.change_order_status\"}", PayloadError::Missing("context")),
            ("{\"event\":\"order.change_order_status\",\"context\":\"x\"}", PayloadError::Shape(String::new())),
            ("{\"event\":\"order.change_order_status\",\"context\":{\"status_id\":1,\"status_changed_at\":\"2026-01-01T00:00:00Z\"}}", PayloadError::Missing("context.id")),
            ("{\"event\":\"order.change_order_status\",\"context\":{\"id\":1,\"status_changed_at\":\"2026-01-01T00:00:00Z\"}}", PayloadError::Missing("context.status_id")),
            ("{\"event\":\"order.change_order_status\",\"context\":{\"id\":1,\"status_id\":2}}", PayloadError::Missing("context.status_changed_at")),
            ("{\"event\":\"order.change_order_status\",\"context\":{\"id\":1,\"status_id\":2,\"status_changed_at\":\"yesterday\"}}", PayloadError::Invalid { field: "context.status_changed_at", reason: String::new() }),
            ("{\"event\":\"order.change_order_status\",\"context\":{\"id\":-4,\"status_id\":2,\"status_changed_at\":\"2026-01-01T00:00:00Z\"}}", PayloadError::Invalid { field: "context.id", reason: String::new() }),
            ("{\"event\":\"order.change_order_status\",\"context\":{\"id\":1.5,\"status_id\":2,\"status_changed_at\":\"2026-01-01T00:00:00Z\"}}", PayloadError::Invalid { field: "context.id", reason: String::new() }),
            ("{\"event\":\"lead.change_lead_status\",\"context\":{\"id\":1,\"status_id\":{},\"status_changed_at\":\"2026-01-01T00:00:00Z\"}}", PayloadError::Invalid { field: "context.status_id", reason: String::new() }),
        ];
        for (body, want) in cases {
            let got = parse(body.as_bytes()).expect_err(body);
            assert_eq!(
                std::mem::discriminant(&got),
                std::mem::discriminant(want),
                "{body}: {got:?}"
            );
            if let (
                PayloadError::Invalid { field: a, .. },
                PayloadError::Invalid { field: b, .. },
            )
            | (PayloadError::Missing(a), PayloadError::Missing(b)) = (&got, want)
            {
                assert_eq!(a, b, "{body}");
            }
        }
    }

    /// A secret-looking value in every place a body can be wrong: the refusal says where and
    /// what was expected, and never repeats it.
    #[test]
    fn no_refusal_repeats_a_value_from_the_body() {
        const V: &str = "sk_live_0b1c2d3e4f5a6b7c8d9e";
        let bodies = [
            format!(r#"{{"event":"order.change_order_status","context":"{V}"}}"#),
            format!(r#"{{"event":"order.change_order_status","context":["{V}"]}}"#),
            format!(r#""{V}""#),
            format!(r#"["{V}"]"#),
            format!(r#"{{"event":"order.change_order_status","context":{{"id":1,"id":"{V}"}}}}"#),
            format!(r#"{{"event":"order.change_order_status","event":"{V}"}}"#),
            format!(
                r#"{{"event":"order.change_order_status","context":{{"id":"{V}","status_id":1,"status_changed_at":"2026-01-01T00:00:00Z"}}}}"#
            ),
            format!(
                r#"{{"event":"order.change_order_status","context":{{"id":1,"status_id":"{V}","status_changed_at":"2026-01-01T00:00:00Z"}}}}"#
            ),
            format!(
                r#"{{"event":"order.change_order_status","context":{{"id":1,"status_id":2,"status_changed_at":"{V}"}}}}"#
            ),
            format!(
                r#"{{"event":"order.change_order_status","context":{{"id":1,"status_id":2,"status_changed_at":"2026-01-01T00:00:00Z","source_id":"{V}"}}}}"#
            ),
            format!(r#"{{"event":"order.change_order_status","context":{{"{V}"}}}}"#),
            format!(r#"{{"event":"{V}","#),
            V.to_string(),
        ];
        for body in bodies {
            let e = parse(body.as_bytes()).expect_err(&body);
            assert!(!e.to_string().contains(V), "{body}: {e}");
            assert!(!format!("{e:?}").contains(V), "{body}: {e:?}");
        }
        let d = parse(format!(r#"{{"event":"{V}!","context":{{}}}}"#).as_bytes()).unwrap();
        assert_eq!(d.event, Event::Other("unrecognised".into()));
        // Of KeyCRM's event shape only `<order|lead>.change_<what>_status` is logged as sent.
        for (name, label) in [
            (
                "order.change_delivery_status",
                "order.change_delivery_status",
            ),
            ("order.sk_live_secret", "unrecognised"),
            ("order.change_sk_live_9f8e7d_status", "unrecognised"),
            ("lead.change__status", "unrecognised"),
            ("lead.change_status", "unrecognised"),
            ("buyer.change_buyer_status", "unrecognised"),
            (
                "order.change_averyveryverylongwordhere_status",
                "unrecognised",
            ),
        ] {
            let body = format!(r#"{{"event":"{name}","context":{{}}}}"#);
            let d = parse(body.as_bytes()).unwrap();
            assert_eq!(d.event, Event::Other(label.into()), "{name}");
        }
        assert_eq!(
            parse(br#"{"event":"","context":{}}"#).unwrap_err(),
            PayloadError::Missing("event")
        );
        assert_eq!(
            parse(b"").unwrap_err(),
            PayloadError::NotJson("it is empty".into())
        );
        assert!(
            matches!(check_content_type(Some(&format!("text/{V}"))), Err(e) if !e.to_string().contains(V))
        );
    }

    #[test]
    fn junk_after_the_object_is_not_json_and_changes_nothing() {
        let order = r#"{"event":"order.change_order_status","context":{"id":5001,"status_id":3,"status_changed_at":"2020-01-01T00:00:00Z"}}"#;
        assert!(parse(format!("{order} \n").as_bytes()).is_ok());
        for body in [
            format!("{order} xyz"),
            format!("{order}{order}"),
            format!("{order}]"),
            r#"{"event":"order.change_payment_status","context":{}} 1"#.to_string(),
        ] {
            let e = parse(body.as_bytes()).expect_err(&body);
            assert!(matches!(e, PayloadError::NotJson(_)), "{body}: {e:?}");
        }
    }

    #[test]
    fn content_types() {
        for ok in [
            None,
            Some("application/json"),
            Some("application/json; charset=utf-8"),
            Some("Application/JSON"),
            Some("text/json"),
            Some("application/vnd.keycrm+json"),
            Some(""),
        ] {
            assert!(check_content_type(ok).is_ok(), "{ok:?}");
        }
        for bad in [
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "text/plain",
            "application/xml",
        ] {
            assert!(
                matches!(
                    check_content_type(Some(bad)),
                    Err(PayloadError::UnsupportedMediaType)
                ),
                "{bad}"
            );
        }
    }
}
