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
            let path = e.path().to_string();
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
            let field = if path == "." { String::new() } else { path };
            // English keeps serde's own words (they name the field and the expected values,
            // never a value: see `redact_values`); Ukrainian says the same in its words.
            let en = redact_values(&strip_position(&inner.to_string()));
            let issue = Issue::Parse(classify(&en));
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
                field,
                code,
                Msg::new(en, issue.message(Lang::Uk)),
            )]))
        }
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

/// Removes quoted string values serde puts in messages (`invalid type: string "…"`).
fn redact_values(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut rest = msg;
    while let Some(i) = rest.find("string \"") {
        out.push_str(&rest[..i]);
        out.push_str("a string");
        let after = &rest[i + "string \"".len()..];
        rest = match after.find('"') {
            Some(j) => &after[j + 1..],
            None => "",
        };
    }
    out.push_str(rest);
    out
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
        assert!(e.fields[0].message.en.contains("invalid type"), "{e:?}");

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

    #[test]
    fn hosts() {
        assert!(is_host("abc.execute-api.eu-central-1.amazonaws.com"));
        assert!(is_host("127.0.0.1:8080"));
        assert!(!is_host("evil.com/path?"));
        assert!(!is_host("a b"));
    }
}
