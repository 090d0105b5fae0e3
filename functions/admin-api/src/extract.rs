//! Request extractors: the caller's shop (authenticated and authorised), JSON bodies with
//! field-level errors, and the public base URL for webhook links.

use crate::auth::{bearer, AuthError};
use crate::error::{ApiError, FieldProblem, Msg};
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::header::{AUTHORIZATION, HOST};
use axum::http::request::Parts;
use axum::http::StatusCode;
use mapping::settings_problem::{Issue, ParseIssue};
use mapping::Lang;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use subtle::ConstantTimeEq;

/// The shop a request acts for: the token's shop, which must equal the path's `{shop_id}`.
#[derive(Clone, Debug)]
pub struct ShopAuth {
    pub shop_id: String,
}

impl FromRequestParts<AppState> for ShopAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let claims = bearer(header)
            .and_then(|t| state.signer.verify(t))
            .map_err(|e| {
                tracing::info!(reason = %e, "admin request refused: not authenticated");
                ApiError::unauthorized(match e {
                    AuthError::Missing => Msg::new(
                        "send Authorization: Bearer <shop token>",
                        "надішліть Authorization: Bearer <токен магазину>",
                    ),
                    AuthError::Expired => Msg::new(
                        "the shop token has expired",
                        "термін дії токена магазину минув",
                    ),
                    _ => Msg::new("the shop token is not valid", "токен магазину недійсний"),
                })
            })?;
        let Path(params) = Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::forbidden())?;
        let path_shop = params.get("shop_id").cloned().unwrap_or_default();
        let same: bool = path_shop.as_bytes().ct_eq(claims.shop_id.as_bytes()).into();
        if !same {
            tracing::warn!(
                token_shop = %claims.shop_id,
                "admin request refused: token is for another shop"
            );
            return Err(ApiError::forbidden());
        }
        Ok(ShopAuth { shop_id: path_shop })
    }
}

/// A JSON body parsed strictly (unknown fields refused where the type says so), with
/// errors that name the field. Values are never echoed back: a key pasted into the wrong
/// field must not come back in an error message.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|_| unreadable())?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Like [`JsonBody`], but an empty body means `T::default()`.
pub struct OptionalJson<T>(pub T);

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|_| unreadable())?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(T::default()));
        }
        parse_json(&bytes).map(OptionalJson)
    }
}

fn unreadable() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "invalid_json",
        Msg::new(
            "the request body could not be read",
            "не вдалося прочитати тіло запиту",
        ),
    )
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize::<_, T>(de) {
        Ok(v) => Ok(v),
        Err(e) => {
            let path = e.path().clone();
            let inner = e.into_inner();
            if inner.is_syntax() || inner.is_eof() || inner.is_io() {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_json",
                    Msg::new(
                        "the request body is not valid JSON",
                        "тіло запиту не є коректним JSON",
                    ),
                ));
            }
            // The English words are built from serde's message without any value from the
            // request (`describe`); the code and the Ukrainian words from its kind.
            let (en, unknown) = describe(&inner);
            let issue = Issue::Parse(classify(&strip_position(&inner.to_string())));
            let code = issue.code();
            Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                Msg::new(
                    "the request has invalid fields",
                    "у запиті є неправильні поля",
                ),
            )
            .with_fields(vec![FieldProblem::new(
                field_path(&path, unknown.as_ref()),
                code,
                Msg::new(en, issue.message(Lang::Uk)),
            )]))
        }
    }
}

/// A field name of the API's own shape: lower-case words joined by `_`.
fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 40
        && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
}

/// An unknown field name is repeated only when it has the shape of the API's own names
/// (`sync_prodcts`, `enabled`): a key or token pasted where a field name goes (digits, capitals,
/// dashes) never is.
fn shown_unknown(name: &str) -> bool {
    plain_name(name)
}

/// The field's path (`settings.status_map[1].keycrm_status_id`). Keys that are not plain
/// field names are shown as `?`, and so is an unknown field unless it is a near miss
/// (`unknown` is the unknown field's name and whether it may be shown).
fn field_path(path: &serde_path_to_error::Path, unknown: Option<&(String, bool)>) -> String {
    use serde_path_to_error::Segment;
    let segments: Vec<&Segment> = path.iter().collect();
    let mut out = String::new();
    for (i, seg) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match seg {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                let shown = match unknown {
                    Some((name, shown)) if last && name == key => *shown,
                    _ => plain_name(key),
                };
                out.push_str(if shown { key } else { "?" });
            }
            Segment::Unknown => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push('?');
            }
        }
    }
    out
}

/// What was wrong with a field, in words that never carry a value from the request. serde's
/// own messages quote the offending value (``unknown variant `…` ``, ``invalid type: string
/// "…"``); only the parts that come from the API's own types are kept: what was expected, the
/// known variants and fields, the kind of value that arrived. A message of any other form
/// becomes "invalid value".
fn describe(e: &serde_json::Error) -> (String, Option<(String, bool)>) {
    let text = e.to_string();
    let msg = match text.rfind(" at line ") {
        Some(i) => &text[..i],
        None => text.as_str(),
    };
    if let Some(rest) = msg.strip_prefix("unknown field `") {
        let Some((name, expected)) = rest.split_once("`, ") else {
            return ("unknown field".into(), None);
        };
        let shown = shown_unknown(name);
        let message = if shown {
            format!("unknown field `{name}`, {expected}")
        } else {
            format!("unknown field; {expected}")
        };
        return (message, Some((name.to_string(), shown)));
    }
    (describe_value(msg), None)
}

fn describe_value(msg: &str) -> String {
    if let Some(rest) = msg.strip_prefix("invalid type: ") {
        let Some((got, expected)) = rest.split_once(", expected ") else {
            return "invalid type".into();
        };
        return format!(
            "expected {}, got {}",
            expected_phrase(expected),
            kind_of(got)
        );
    }
    if let Some(rest) = msg.strip_prefix("invalid value: ") {
        return match rest.split_once(", expected ") {
            Some((_, expected)) => format!("invalid value; expected {}", expected_phrase(expected)),
            None => "invalid value".into(),
        };
    }
    if let Some(rest) = msg.strip_prefix("unknown variant `") {
        // "unknown variant `X`, expected one of `a`, `b`": the list is the API's own.
        return match rest.split_once("`, ") {
            Some((_, expected)) => format!("unknown value; {expected}"),
            None => "unknown value".into(),
        };
    }
    // These name the API's own fields or count elements; no request value is in them.
    for safe in ["missing field `", "duplicate field `", "invalid length "] {
        if msg.starts_with(safe) && !msg.contains('"') {
            return msg.to_string();
        }
    }
    "invalid value".into()
}

/// serde's description of what arrived, without the value (`string "…"` -> `a string`).
fn kind_of(unexpected: &str) -> &'static str {
    let u = unexpected.trim_start();
    if u.starts_with("string") || u.starts_with("character") {
        "a string"
    } else if u.starts_with("integer") || u.starts_with("floating point") {
        "a number"
    } else if u.starts_with("boolean") {
        "a boolean"
    } else if u.starts_with("map") {
        "an object"
    } else if u.starts_with("sequence") {
        "an array"
    } else if u.starts_with("null") || u.starts_with("unit") {
        "null"
    } else {
        "a value of another type"
    }
}

/// What kind of refusal serde's message describes.
fn classify(msg: &str) -> ParseIssue {
    if msg.starts_with("unknown field") {
        ParseIssue::UnknownField
    } else if msg.starts_with("missing field") {
        ParseIssue::MissingField
    } else if msg.starts_with("unknown variant") {
        ParseIssue::InvalidChoice
    } else if msg.starts_with("invalid type") {
        ParseIssue::InvalidType
    } else {
        ParseIssue::InvalidValue
    }
}

/// serde_json appends " at line 1 column 42"; the field path already says where.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// serde's description of the expected type in JSON words (`u64` -> `a whole number`).
fn expected_phrase(expected: &str) -> String {
    let e = expected.trim();
    match e {
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "a whole number of 0 or more".into(),
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "a whole number".into(),
        "f32" | "f64" => "a number".into(),
        "a sequence" => "an array".into(),
        "a map" => "an object".into(),
        _ if e.starts_with("struct ") => "an object".into(),
        _ if e.starts_with("enum ") => "one of the documented values".into(),
        _ if e.contains('"') => "a different value".into(),
        _ => e.to_string(),
    }
}

/// Where the webhook URLs point: the configured public base, or the one the request came
/// in on (API Gateway sets `Host` to the API's domain and `X-Forwarded-Proto`).
pub struct PublicBase(pub String);

impl FromRequestParts<AppState> for PublicBase {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(b) = &state.config.public_base_url {
            return Ok(PublicBase(b.trim_end_matches('/').to_string()));
        }
        let header = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.split(',').next().unwrap_or("").trim().to_string())
                .filter(|v| !v.is_empty())
        };
        // `Host` first: API Gateway sets it to the API's own domain, whatever the caller sent
        // in `X-Forwarded-Host`.
        let host = header(HOST.as_str())
            .or_else(|| header("x-forwarded-host"))
            .or_else(|| parts.uri.authority().map(|a| a.to_string()));
        let Some(host) = host.filter(|h| is_host(h)) else {
            return Err(ApiError::internal(Msg::new(
                "cannot tell the public address for webhook URLs (set PUBLIC_BASE_URL)",
                "не вдалося визначити публічну адресу для посилань Webhook (задайте PUBLIC_BASE_URL)",
            )));
        };
        let proto = header("x-forwarded-proto")
            .filter(|p| p == "http" || p == "https")
            .or_else(|| parts.uri.scheme_str().map(str::to_string))
            .unwrap_or_else(|| "https".to_string());
        Ok(PublicBase(format!("{proto}://{host}")))
    }
}

/// A host[:port] with nothing that could turn the URL into something else.
fn is_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct T {
        a: u64,
        b: Option<String>,
    }

    #[test]
    fn field_errors_name_the_field_and_hide_values() {
        let e = parse_json::<T>(br#"{"a": "sk_live_secret"}"#).unwrap_err();
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(e.fields[0].field, "a");
        assert_eq!(e.fields[0].code, "invalid_type");
        assert!(!e.fields[0].message.en.contains("sk_live_secret"), "{e:?}");
        assert!(!e.fields[0].message.uk.contains("sk_live_secret"), "{e:?}");
        assert_eq!(
            e.fields[0].message.en,
            "expected a whole number of 0 or more, got a string"
        );

        let e = parse_json::<T>(br#"{"a": 1, "c": 2}"#).unwrap_err();
        assert!(
            e.fields[0].message.en.contains("unknown field `c`"),
            "{e:?}"
        );
        assert_eq!(e.fields[0].code, "unknown_field");
        assert_eq!(e.fields[0].message.uk, "такого налаштування немає");

        let e = parse_json::<T>(b"{not json").unwrap_err();
        assert_eq!(
            (e.status, e.code),
            (StatusCode::BAD_REQUEST, "invalid_json")
        );
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(rename_all = "snake_case")]
    #[allow(dead_code)]
    enum Mode {
        Hide,
        Publish,
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        #[serde(default)]
        mode: Option<Mode>,
        #[serde(default)]
        flag: Option<bool>,
        #[serde(default)]
        share: Option<f64>,
        #[serde(default)]
        list: Vec<Inner>,
        #[serde(default)]
        names: std::collections::BTreeMap<String, u32>,
        #[serde(default)]
        when: Option<chrono::DateTime<chrono::Utc>>,
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        id: u64,
    }

    /// Every way serde can refuse a value, with a secret-looking value in the refused place:
    /// the answer names the field and what was expected, never the value.
    #[test]
    fn no_refusal_repeats_a_value_from_the_request() {
        const V: &str = "sk_live_5f0c2e9d8b7a41f3a6c2d4e8";
        let cases: Vec<(String, &str, &str)> = vec![
            (
                format!(r#"{{"mode": "{V}"}}"#),
                "mode",
                "unknown value; expected `hide` or `publish`",
            ),
            (
                format!(r#"{{"flag": "{V}"}}"#),
                "flag",
                "expected a boolean, got a string",
            ),
            (
                format!(r#"{{"share": "{V}"}}"#),
                "share",
                "expected a number, got a string",
            ),
            (
                format!(r#"{{"list": [{{"id": "{V}"}}]}}"#),
                "list[0].id",
                "expected a whole number of 0 or more, got a string",
            ),
            (
                format!(r#"{{"list": [{{"id": 1, "{V}": 1}}]}}"#),
                "list[0].?",
                "unknown field; expected `id`",
            ),
            (format!(r#"{{"{V}": 1}}"#), "?", "unknown field;"),
            (
                format!(r#"{{"names": {{"{V}": "x"}}}}"#),
                "names.?",
                "expected a whole number of 0 or more, got a string",
            ),
            (format!(r#"{{"when": "{V}"}}"#), "when", "invalid value"),
            (format!(r#"{{"mode": {{"{V}": 1}}}}"#), "mode", ""),
            (
                r#"{"flag": 12345678901234567}"#.to_string(),
                "flag",
                "expected a boolean, got a number",
            ),
            // A near miss of a field name is the one request text shown: it is the API's own.
            (
                r#"{"flagg": true}"#.to_string(),
                "flagg",
                "unknown field `flagg`, expected one of",
            ),
        ];
        for (body, field, message) in cases {
            let e = parse_json::<Outer>(body.as_bytes()).unwrap_err();
            assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
            let f = &e.fields[0];
            let shown = format!(
                "{} {} {} {} {}",
                e.message.en, e.message.uk, f.field, f.message.en, f.message.uk
            );
            assert!(!shown.contains(V), "{body}: {shown}");
            assert!(!shown.contains("12345678901234567"), "{body}: {shown}");
            assert_eq!(f.field, field, "{body}");
            assert!(
                f.message.en.starts_with(message),
                "{body}: {}",
                f.message.en
            );
        }
    }

    #[test]
    fn hosts() {
        assert!(is_host("abc.execute-api.eu-central-1.amazonaws.com"));
        assert!(is_host("127.0.0.1:8080"));
        assert!(!is_host("evil.com/path?"));
        assert!(!is_host("a b"));
    }
}
