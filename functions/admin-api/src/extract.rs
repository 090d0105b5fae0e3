//! Request extractors: the caller's shop (authenticated and authorised), JSON bodies with
//! field-level errors, and the public base URL for webhook links.

use crate::auth::{bearer, AuthError};
use crate::error::{ApiError, FieldProblem, Msg};
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, MatchedPath, Path, Request};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
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
        let refuse = || {
            tracing::warn!(
                token_shop = %claims.shop_id,
                "admin request refused: token is for another shop"
            );
            ApiError::forbidden()
        };
        match Path::<HashMap<String, String>>::from_request_parts(parts, state).await {
            Ok(Path(params)) => {
                let path_shop = params.get("shop_id").cloned().unwrap_or_default();
                let same: bool = path_shop.as_bytes().ct_eq(claims.shop_id.as_bytes()).into();
                if !same {
                    return Err(refuse());
                }
                Ok(ShopAuth { shop_id: path_shop })
            }
            Err(_) => {
                // Some path segment is not text once percent-decoded (`/runs/%00%ff`). Whose
                // shop the path names is still decided first, from the raw segment, so a
                // foreign token gets the same 403 whatever else the path holds; only the
                // shop's own token learns that its path is malformed.
                let same: bool = raw_shop_segment(parts)
                    .map(|raw| {
                        percent_decode(raw)
                            .as_slice()
                            .ct_eq(claims.shop_id.as_bytes())
                            .into()
                    })
                    .unwrap_or(false);
                if !same {
                    return Err(refuse());
                }
                tracing::info!("admin request refused: a path segment is not UTF-8 text");
                Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_path",
                    Msg::new(
                        "a part of the request's path is not valid text (percent-encoded UTF-8)",
                        "частина шляху запиту не є коректним текстом (UTF-8 у percent-кодуванні)",
                    ),
                ))
            }
        }
    }
}

/// The still percent-encoded path segment the route template has `{shop_id}` in.
fn raw_shop_segment(parts: &Parts) -> Option<&str> {
    let template = parts.extensions.get::<MatchedPath>()?.as_str();
    let index = template.split('/').position(|s| s == "{shop_id}")?;
    parts.uri.path().split('/').nth(index)
}

/// Percent-decoding as the router does it (`%XX` becomes the byte; anything else, a stray
/// `%` included, stays as it is), to bytes that need not be UTF-8.
fn percent_decode(raw: &str) -> Vec<u8> {
    let hex = |c: Option<&u8>| c.and_then(|c| (*c as char).to_digit(16));
    let b = raw.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            if let (Some(h), Some(l)) = (hex(b.get(i + 1)), hex(b.get(i + 2))) {
                // Two hex digits: at most 0xff.
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    out
}

/// The most a request body may hold. The router applies it (`DefaultBodyLimit`) and the
/// refusal names it, so the two cannot disagree. The API's largest body (settings with every
/// mapping) is a few kilobytes.
pub const BODY_LIMIT: usize = 2 * 1024 * 1024;

/// A JSON body parsed strictly (unknown fields refused where the type says so), with
/// errors that name the field. Values are never echoed back: a key pasted into the wrong
/// field must not come back in an error message.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = read_body(req, state).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Like [`JsonBody`], but an empty body means `T::default()`.
pub struct OptionalJson<T>(pub T);

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = read_body(req, state).await?;
        if is_blank(&bytes) {
            return Ok(OptionalJson(T::default()));
        }
        parse_json(&bytes).map(OptionalJson)
    }
}

fn is_blank(bytes: &[u8]) -> bool {
    bytes.iter().all(u8::is_ascii_whitespace)
}

/// The body's bytes, refused if too large, unreadable, or declared as something other than
/// JSON. A body with no `Content-Type` is taken as JSON (tolerant clients, `curl -d`-less
/// scripts); an empty body with any type is no body at all (`curl -X POST -d ''` says
/// `application/x-www-form-urlencoded`), so only a body that is there and declared as
/// something else is refused: it was meant as something this API does not read.
async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    let declared_json = req
        .headers()
        .get(CONTENT_TYPE)
        .map(|v| v.to_str().is_ok_and(runtime::media_type::is_json));
    let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large()
        } else {
            tracing::info!(error = %rejection, "admin request body could not be read");
            unreadable()
        }
    })?;
    if declared_json == Some(false) && !is_blank(&bytes) {
        return Err(unsupported_media_type());
    }
    Ok(bytes)
}

fn too_large() -> ApiError {
    let mb = BODY_LIMIT / (1024 * 1024);
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        Msg::new(
            format!(
                "the request body is too large: at most {mb} MB is accepted; nothing was changed"
            ),
            format!("тіло запиту завелике: приймається щонайбільше {mb} МБ; нічого не змінено"),
        ),
    )
}

fn unreadable() -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_json",
        Msg::new(
            "the request body could not be read; nothing was changed, send it again",
            "не вдалося прочитати тіло запиту; нічого не змінено, надішліть його ще раз",
        ),
    )
}

/// The sent type is not repeated: the header is the caller's text.
fn unsupported_media_type() -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        Msg::new(
            "the request body must be JSON sent with Content-Type: application/json; nothing was changed",
            "тіло запиту має бути JSON із Content-Type: application/json; нічого не змінено",
        ),
    )
}

fn not_json() -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_json",
        Msg::new(
            "the request body is not valid JSON",
            "тіло запиту не є коректним JSON",
        ),
    )
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let value = match serde_path_to_error::deserialize::<_, T>(&mut *de) {
        Ok(v) => v,
        Err(e) => {
            let path = e.path().clone();
            let inner = e.into_inner();
            if inner.is_syntax() || inner.is_eof() || inner.is_io() {
                return Err(not_json());
            }
            // The English words are built from serde's message without any value from the
            // request (`describe`); the code and the Ukrainian words from its kind.
            let (en, uk, unknown) = describe(&inner);
            let issue = Issue::Parse(classify(&strip_position(&inner.to_string())));
            let code = issue.code();
            return Err(ApiError::new(
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
                Msg::new(en, uk.unwrap_or_else(|| issue.message(Lang::Uk))),
            )]));
        }
    };
    // The body is one JSON value. `{"active":false}GARBAGE` or `{…}{…}` was not written by
    // anyone who meant the first value alone, so nothing of it is acted on; whitespace after
    // the value is fine.
    de.end().map_err(|_| not_json())?;
    Ok(value)
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
///
/// Returns the English words, the Ukrainian ones when they are more specific than the kind's
/// (the connector's own messages, [`OWN_MESSAGES`]), and the unknown field's name if that was
/// the refusal.
fn describe(e: &serde_json::Error) -> (String, Option<String>, Option<(String, bool)>) {
    let text = e.to_string();
    let msg = match text.rfind(" at line ") {
        Some(i) => &text[..i],
        None => text.as_str(),
    };
    if let Some(rest) = msg.strip_prefix("unknown field `") {
        let Some((name, expected)) = rest.split_once("`, ") else {
            return ("unknown field".into(), None, None);
        };
        let shown = shown_unknown(name);
        let message = if shown {
            format!("unknown field `{name}`, {expected}")
        } else {
            format!("unknown field; {expected}")
        };
        return (message, None, Some((name.to_string(), shown)));
    }
    if let Some((en, uk)) = OWN_MESSAGES.iter().find(|(en, _)| *en == msg) {
        return (en.to_string(), Some(uk.to_string()), None);
    }
    (describe_value(msg), None, None)
}

/// Refusals the connector's own types give (`mapping::Settings`'s `TryFrom<SettingsWire>`),
/// word for word. They are constant text that names the API's fields, never a value from the
/// request, so they are passed on (with their Ukrainian) instead of serde's "invalid value".
/// Matched exactly: any other custom message, whoever wrote it, may quote the request and is
/// not shown. (`own_messages_are_still_what_mapping_says` fails if mapping's words change.)
const OWN_MESSAGES: [(&str, &str); 2] = [
    (
        "status_map is the old form of order_statuses; send only order_statuses",
        "status_map — стара форма order_statuses; надсилайте лише order_statuses",
    ),
    (
        "pipeline_status_map is the old form of card_statuses; send only card_statuses",
        "pipeline_status_map — стара форма card_statuses; надсилайте лише card_statuses",
    ),
];

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
        // Without PUBLIC_BASE_URL the address comes from the request, so a missing or
        // malformed `Host` is the caller's mistake (API Gateway always sends a good one): a
        // 400 that says so, never turned into a URL. The sent value is not repeated.
        let Some(host) = host.filter(|h| is_host(h)) else {
            tracing::info!("admin request refused: no usable Host header for webhook URLs");
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_host",
                Msg::new(
                    "the request's Host header is missing or is not a host name (host[:port]), so the webhook URLs cannot be built; nothing was changed",
                    "заголовок Host запиту відсутній або не є іменем хоста (host[:port]), тож посилання Webhook не побудувати; нічого не змінено",
                ),
            ));
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
    fn one_json_value_and_nothing_after_it() {
        for junk in [
            &br#"{"a": 1}x"#[..],
            br#"{"a": 1}{"a": 2}"#,
            br#"{"a": 1} 1"#,
            b"{\"a\": 1}\0",
        ] {
            let e = parse_json::<T>(junk).unwrap_err();
            assert_eq!(
                (e.status, e.code),
                (StatusCode::BAD_REQUEST, "invalid_json"),
                "{}",
                String::from_utf8_lossy(junk)
            );
        }
        let ok = parse_json::<T>(b"{\"a\": 1} \r\n\t").unwrap();
        assert_eq!(ok.a, 1);
    }

    /// The table of the connector's own messages is what mapping says, word for word: if
    /// mapping's text changes, this fails (and the message would quietly become "invalid
    /// value" again).
    #[test]
    fn own_messages_are_still_what_mapping_says() {
        for (body, (en, uk)) in [
            (
                r#"{"status_map": [], "order_statuses": {"to_keycrm": [], "from_keycrm": []}}"#,
                OWN_MESSAGES[0],
            ),
            (
                r#"{"pipeline_status_map": [], "card_statuses": {"to_keycrm": [], "from_keycrm": []}}"#,
                OWN_MESSAGES[1],
            ),
        ] {
            let e = parse_json::<mapping::Settings>(body.as_bytes()).unwrap_err();
            assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
            assert_eq!(e.fields[0].field, "", "{e:?}");
            assert_eq!(e.fields[0].message, Msg::new(en, uk), "{body}");
        }
    }

    #[test]
    fn percent_decoding_as_the_router_does() {
        assert_eq!(percent_decode("s1"), b"s1");
        assert_eq!(percent_decode("s%31"), b"s1");
        assert_eq!(percent_decode("%00%ff"), [0u8, 0xff]);
        assert_eq!(percent_decode("%zz%4"), b"%zz%4");
        assert_eq!(percent_decode("%"), b"%");
        assert_eq!(percent_decode("a%2Fb"), b"a/b");
    }

    #[test]
    fn hosts() {
        assert!(is_host("abc.execute-api.eu-central-1.amazonaws.com"));
        assert!(is_host("127.0.0.1:8080"));
        assert!(!is_host("evil.com/path?"));
        assert!(!is_host("a b"));
    }
}
