//! KeyCRM's stock webhook on the connection's stock URL: a bare JSON array
//! `[{"offer_id": 130827, "sku": "a001-56", "in_stock": 16, "in_reserve": 3}]`, unsigned, with
//! no event name and no timestamp, retried and possibly reordered by KeyCRM. It is treated as
//! a signal: the receiver validates it, records the offer ids in the connection's pending set
//! and makes sure one flush is scheduled for the window (`stock-apply` reads the current stock
//! then), and answers. Policy: `docs/stock.md`.

use crate::payload::{check_content_type, PayloadError};
use crate::receiver::{count_ignored, Reply, ROUTE};
use axum::body::Body;
use http::StatusCode;
use queue::Queue;
use runtime::metrics::catalog::{
    STOCK_SIGNALS, STOCK_WEBHOOKS_ACCEPTED, WEBHOOKS_REFUSED, WEBHOOKS_UNAVAILABLE,
};
use runtime::metrics::count;
use serde::de::IgnoredAny;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use store::{Connection, Counter, StatusJournal, StockStore};

/// Largest stock body accepted: 10,000 items (what `PUT /offers/stocks` takes at once) of
/// ~70 bytes each fit with room to spare.
pub const MAX_STOCK_BODY: usize = 1024 * 1024;
/// Most items one delivery may carry.
pub const MAX_STOCK_ITEMS: usize = 10_000;
/// Longest SKU accepted (KeyCRM's column is a 255-character string).
pub const MAX_SKU_CHARS: usize = 255;

/// Why a stock body was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StockBodyError {
    #[error("the body is not valid JSON: {0}")]
    NotJson(String),
    #[error("a stock webhook body is a JSON array of changes, got {0}")]
    NotArray(&'static str),
    #[error("the body has {0} items; at most {MAX_STOCK_ITEMS} are accepted")]
    TooManyItems(usize),
    #[error("[{0}] is not an object")]
    NotObject(usize),
    #[error("[{index}].{field} is missing")]
    Missing { index: usize, field: &'static str },
    #[error("[{index}].{field} is invalid: {reason}")]
    Invalid {
        index: usize,
        field: &'static str,
        reason: &'static str,
    },
    #[error("[{index}].{field} is given more than once")]
    Repeated { index: usize, field: &'static str },
}

/// The fields an item is read by, each at most once. `Value` keeps the last of a repeated
/// key without a word, so `[{"offer_id":1,"offer_id":2}]` would signal offer 2 and drop
/// offer 1; like the status URL, such a body is refused instead.
#[derive(serde::Deserialize)]
#[allow(dead_code)] // only their uniqueness is checked; the values are read from `Value`
struct ReadOnce {
    offer_id: Option<IgnoredAny>,
    sku: Option<IgnoredAny>,
    in_stock: Option<IgnoredAny>,
    in_reserve: Option<IgnoredAny>,
}

const READ_FIELDS: [&str; 4] = ["offer_id", "sku", "in_stock", "in_reserve"];

/// The first item that repeats a field it is read by. Runs on a body already known to be an
/// array of objects, so the only error left is serde's duplicate field.
fn repeated_field(body: &[u8]) -> Result<(), StockBodyError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    let Err(e) = serde_path_to_error::deserialize::<_, Vec<ReadOnce>>(de) else {
        return Ok(());
    };
    let index = e
        .path()
        .iter()
        .find_map(|s| match s {
            serde_path_to_error::Segment::Seq { index } => Some(*index),
            _ => None,
        })
        .unwrap_or(0);
    let text = e.inner().to_string();
    let field = READ_FIELDS
        .into_iter()
        .find(|f| text.contains(&format!("`{f}`")))
        .unwrap_or("a field");
    Err(StockBodyError::Repeated { index, field })
}

impl StockBodyError {
    /// The metric reason of the refusal (the same names as the status URL's).
    fn reason(&self) -> &'static str {
        match self {
            StockBodyError::NotJson(_) => "not_json",
            _ => "invalid_body",
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            StockBodyError::NotJson(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        }
    }
}

/// A positive integer id, as a JSON number or a numeric string.
fn offer_id(v: Option<&Value>, index: usize) -> Result<i64, StockBodyError> {
    let invalid = |reason| StockBodyError::Invalid {
        index,
        field: "offer_id",
        reason,
    };
    let id = match v {
        None | Some(Value::Null) => {
            return Err(StockBodyError::Missing {
                index,
                field: "offer_id",
            })
        }
        Some(Value::Number(n)) => n.as_i64().ok_or(invalid("not an integer"))?,
        Some(Value::String(s)) => s.trim().parse().map_err(|_| invalid("not an integer"))?,
        Some(_) => return Err(invalid("not an integer")),
    };
    if id <= 0 {
        return Err(invalid("not a positive id"));
    }
    Ok(id)
}

/// A stock figure: absent or null is tolerated (only the offer id is used); otherwise a
/// finite, non-negative number (or numeric string).
fn quantity(v: Option<&Value>, index: usize, field: &'static str) -> Result<(), StockBodyError> {
    let invalid = |reason| StockBodyError::Invalid {
        index,
        field,
        reason,
    };
    let q = match v {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Number(n)) => n.as_f64().ok_or(invalid("not a number"))?,
        Some(Value::String(s)) => s
            .trim()
            .parse::<f64>()
            .map_err(|_| invalid("not a number"))?,
        Some(_) => return Err(invalid("not a number")),
    };
    if !q.is_finite() {
        return Err(invalid("not a finite number"));
    }
    if q < 0.0 {
        return Err(invalid("negative"));
    }
    Ok(())
}

fn sku(v: Option<&Value>, index: usize) -> Result<(), StockBodyError> {
    match v {
        None | Some(Value::Null) | Some(Value::Number(_)) => Ok(()),
        Some(Value::String(s)) if s.chars().count() <= MAX_SKU_CHARS => Ok(()),
        Some(Value::String(_)) => Err(StockBodyError::Invalid {
            index,
            field: "sku",
            reason: "longer than 255 characters",
        }),
        Some(_) => Err(StockBodyError::Invalid {
            index,
            field: "sku",
            reason: "not a string",
        }),
    }
}

/// Parses and validates a stock body: the distinct offer ids it signals, ascending. One bad
/// item refuses the whole body (nothing is recorded), naming the item.
pub fn parse(body: &[u8]) -> Result<Vec<i64>, StockBodyError> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| StockBodyError::NotJson(e.to_string()))?;
    let items = match v {
        Value::Array(a) => a,
        Value::Object(_) => return Err(StockBodyError::NotArray("an object")),
        _ => return Err(StockBodyError::NotArray("a scalar")),
    };
    if items.len() > MAX_STOCK_ITEMS {
        return Err(StockBodyError::TooManyItems(items.len()));
    }
    let mut ids = BTreeSet::new();
    for (index, item) in items.iter().enumerate() {
        let Value::Object(m) = item else {
            return Err(StockBodyError::NotObject(index));
        };
        ids.insert(offer_id(m.get("offer_id"), index)?);
        sku(m.get("sku"), index)?;
        quantity(m.get("in_stock"), index, "in_stock")?;
        quantity(m.get("in_reserve"), index, "in_reserve")?;
    }
    repeated_field(body)?;
    Ok(ids.into_iter().collect())
}

/// The durable hand-off of stock signals: the pending set and the flush queue.
pub struct StockIntake {
    store: Arc<dyn StockStore>,
    flushes: Arc<dyn Queue>,
    journal: Arc<dyn StatusJournal>,
    /// The coalescing window: how long the scheduled flush message is delayed.
    window: Duration,
    /// How long past its due time a window counts as live.
    grace: Duration,
}

impl StockIntake {
    pub fn new(
        store: Arc<dyn StockStore>,
        flushes: Arc<dyn Queue>,
        journal: Arc<dyn StatusJournal>,
        config: jobs::stock::FlushConfig,
    ) -> Self {
        StockIntake {
            store,
            flushes,
            journal,
            window: config.window,
            grace: config.grace,
        }
    }

    async fn ignore(&self, conn: &Connection, reason: &'static str) -> Reply {
        tracing::info!(
            route = ROUTE, status = 200, connection = %conn.id, url_kind = "stock",
            outcome = "ignored", reason, "stock webhook ignored"
        );
        count_ignored(self.journal.as_ref(), &conn.id, reason).await;
        Reply::ignored(reason)
    }

    /// Records the signalled offers and makes sure a flush is scheduled. Answers 200 only
    /// once both are durable; otherwise 503, and KeyCRM's retry repeats the (idempotent) work.
    pub async fn accept(&self, conn: &Connection, offers: Vec<i64>) -> Reply {
        if !conn.active {
            return self.ignore(conn, "inactive_connection").await;
        }
        if !conn.settings.sync_products {
            return self.ignore(conn, "product_sync_off").await;
        }
        if !conn.settings.realtime_stock {
            return self.ignore(conn, "realtime_stock_off").await;
        }
        if offers.is_empty() {
            return self.ignore(conn, "no_items").await;
        }
        if let Err(e) = self.store.add_pending(&conn.id, &offers).await {
            count(&WEBHOOKS_UNAVAILABLE, &["store_unavailable"], 1);
            tracing::error!(route = ROUTE, status = 503, connection = %conn.id, error = %e, "stock webhook: recording the signal failed");
            return Reply::unavailable();
        }
        if let Err(e) = jobs::stock::schedule_flush(
            self.store.as_ref(),
            self.flushes.as_ref(),
            &conn.id,
            self.window,
            self.grace,
        )
        .await
        {
            // The window record is in the table, the message in the flush queue.
            let reason = match &e {
                jobs::stock::ScheduleError::Queue(_) => "queue_unavailable",
                _ => "store_unavailable",
            };
            count(&WEBHOOKS_UNAVAILABLE, &[reason], 1);
            tracing::error!(route = ROUTE, status = 503, connection = %conn.id, error = %e, "stock webhook: scheduling the flush failed");
            return Reply::unavailable();
        }
        let n = offers.len() as u64;
        count(&STOCK_WEBHOOKS_ACCEPTED, &[], 1);
        count(&STOCK_SIGNALS, &[], n);
        if let Err(e) = self.journal.count(&conn.id, Counter::StockSignals, n).await {
            tracing::warn!(connection = %conn.id, error = %e, "could not update the journal");
        }
        tracing::info!(
            route = ROUTE, status = 200, connection = %conn.id, url_kind = "stock",
            offers = n, outcome = "accepted", "stock webhook accepted"
        );
        Reply {
            status: StatusCode::OK,
            body: json!({"status": "accepted", "offers": n}),
        }
    }
}

/// The stock URL's request, after authentication: content type, size, body, hand-off.
pub async fn handle(
    intake: Option<&StockIntake>,
    conn: &Connection,
    content_type: Option<&str>,
    body: Body,
) -> Reply {
    let refuse = |status: StatusCode, reason: &'static str, message: String| {
        count(&WEBHOOKS_REFUSED, &[reason], 1);
        tracing::warn!(route = ROUTE, status = status.as_u16(), connection = %conn.id, error = %message, "stock webhook refused: bad body");
        Reply::error(status, message)
    };
    if let Err(e) = check_content_type(content_type) {
        return refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            e.to_string(),
        );
    }
    let bytes = match axum::body::to_bytes(body, MAX_STOCK_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                PayloadError::TooLarge(MAX_STOCK_BODY).to_string(),
            )
        }
    };
    let offers = match parse(&bytes) {
        Ok(o) => o,
        Err(e) => return refuse(e.status(), e.reason(), e.to_string()),
    };
    match intake {
        Some(i) => i.accept(conn, offers).await,
        None => {
            count(&WEBHOOKS_UNAVAILABLE, &["not_configured"], 1);
            tracing::error!(route = ROUTE, status = 503, connection = %conn.id, "stock webhook: this receiver has no stock hand-off configured");
            Reply::unavailable()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_body_and_dedupes() {
        let ids = parse(
            br#"[{"offer_id": 130827, "sku": "a001-56", "in_stock": 16, "in_reserve": 3},
                 {"offer_id": "42", "sku": null, "in_stock": 0.5, "in_reserve": "0"},
                 {"offer_id": 130827, "sku": "a001-56", "in_stock": 15, "in_reserve": 3, "extra": true}]"#,
        )
        .unwrap();
        assert_eq!(ids, vec![42, 130827]);
        assert_eq!(parse(b"[]").unwrap(), Vec::<i64>::new());
    }

    #[test]
    fn refuses_bad_bodies_naming_the_item() {
        let long = format!(r#"[{{"offer_id":1,"sku":"{}"}}]"#, "x".repeat(256));
        let cases: Vec<(String, StockBodyError)> = vec![
            ("{oops".into(), StockBodyError::NotJson(String::new())),
            (
                r#"{"event":"x"}"#.into(),
                StockBodyError::NotArray("an object"),
            ),
            ("7".into(), StockBodyError::NotArray("a scalar")),
            ("[1]".into(), StockBodyError::NotObject(0)),
            (
                r#"[{"offer_id":1},{"sku":"a"}]"#.into(),
                StockBodyError::Missing {
                    index: 1,
                    field: "offer_id",
                },
            ),
            (
                r#"[{"offer_id":0}]"#.into(),
                StockBodyError::Invalid {
                    index: 0,
                    field: "offer_id",
                    reason: "",
                },
            ),
            (
                r#"[{"offer_id":-5}]"#.into(),
                StockBodyError::Invalid {
                    index: 0,
                    field: "offer_id",
                    reason: "",
                },
            ),
            (
                r#"[{"offer_id":1.5}]"#.into(),
                StockBodyError::Invalid {
                    index: 0,
                    field: "offer_id",
                    reason: "",
                },
            ),
            (
                r#"[{"offer_id":"abc"}]"#.into(),
                StockBodyError::Invalid {
                    index: 0,
                    field: "offer_id",
                    reason: "",
                },
            ),
            (
                r#"[{"offer_id":[1]}]"#.into(),
                StockBodyError::Invalid {
                    index: 0,
                    field: "offer_id",
                    reason: "",
                },
            ),
            (
                r#"[{"offer_id":1,"in_stock":-1}]"#.into(),
                StockBodyError::Invalid {
                    index: 0,
                    field: "in_stock",
                    reason: "",
                },
            ),
            (
                r#"[{"offer_id":1,"in_reserve":"lots"}]"#.into(),
                StockBodyError::Invalid {
                    index: 0,
                    field: "in_reserve",
                    reason: "",
                },
            ),
            (
                r#"[{"offer_id":1,"in_stock":"NaN"}]"#.into(),
                StockBodyError::Invalid {
                    index: 0,
                    field: "in_stock",
                    reason: "",
                },
            ),
            (
                r#"[{"offer_id":1,"in_stock":"inf"}]"#.into(),
                StockBodyError::Invalid {
                    index: 0,
                    field: "in_stock",
                    reason: "",
                },
            ),
            (
                r#"[{"offer_id":1,"in_stock":{}}]"#.into(),
                StockBodyError::Invalid {
                    index: 0,
                    field: "in_stock",
                    reason: "",
                },
            ),
            (
                r#"[{"offer_id":1,"sku":{}}]"#.into(),
                StockBodyError::Invalid {
                    index: 0,
                    field: "sku",
                    reason: "",
                },
            ),
            (
                long,
                StockBodyError::Invalid {
                    index: 0,
                    field: "sku",
                    reason: "",
                },
            ),
            (
                r#"[{"offer_id":99999999999999999999}]"#.into(),
                StockBodyError::Invalid {
                    index: 0,
                    field: "offer_id",
                    reason: "",
                },
            ),
        ];
        for (body, want) in cases {
            let got = parse(body.as_bytes()).expect_err(&body);
            assert_eq!(
                std::mem::discriminant(&got),
                std::mem::discriminant(&want),
                "{body}: {got:?}"
            );
            match (&got, &want) {
                (
                    StockBodyError::Invalid {
                        index: a, field: f, ..
                    },
                    StockBodyError::Invalid {
                        index: b, field: g, ..
                    },
                )
                | (
                    StockBodyError::Missing { index: a, field: f },
                    StockBodyError::Missing { index: b, field: g },
                ) => assert_eq!((a, f), (b, g), "{body}"),
                _ => {}
            }
            assert!(!got.to_string().contains("xxxx"), "values are not echoed");
        }
        let too_many = format!(
            "[{}]",
            vec![r#"{"offer_id":1}"#; MAX_STOCK_ITEMS + 1].join(",")
        );
        assert_eq!(
            parse(too_many.as_bytes()),
            Err(StockBodyError::TooManyItems(MAX_STOCK_ITEMS + 1))
        );
        let most = format!("[{}]", vec![r#"{"offer_id":1}"#; MAX_STOCK_ITEMS].join(","));
        assert_eq!(parse(most.as_bytes()).unwrap(), vec![1]);
    }

    #[test]
    fn an_item_repeating_a_field_it_is_read_by_is_refused_naming_it() {
        for (body, index, field) in [
            (r#"[{"offer_id":1,"offer_id":2}]"#, 0, "offer_id"),
            (
                r#"[{"offer_id":1},{"offer_id":2,"in_stock":1,"in_stock":0}]"#,
                1,
                "in_stock",
            ),
            (r#"[{"offer_id":1,"sku":"a","sku":null}]"#, 0, "sku"),
            (
                r#"[{"offer_id":1,"in_reserve":0,"in_reserve":0}]"#,
                0,
                "in_reserve",
            ),
        ] {
            let e = parse(body.as_bytes()).expect_err(body);
            assert_eq!(e, StockBodyError::Repeated { index, field }, "{body}");
            assert_eq!(e.status(), StatusCode::UNPROCESSABLE_ENTITY);
        }
        // Fields it does not read may repeat: they change nothing.
        assert_eq!(
            parse(br#"[{"offer_id":3,"note":1,"note":2}]"#).unwrap(),
            vec![3]
        );
    }

    #[test]
    fn junk_after_the_array_is_not_json() {
        for body in [r#"[]x"#, r#"[{"offer_id":1}] [{"offer_id":2}]"#] {
            let e = parse(body.as_bytes()).expect_err(body);
            assert!(matches!(e, StockBodyError::NotJson(_)), "{body}: {e:?}");
        }
        assert_eq!(parse(b"[{\"offer_id\":1}] \n").unwrap(), vec![1]);
    }
}
