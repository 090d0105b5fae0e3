//! How the admin API knows who is calling: the platform backend presents a short-lived,
//! shop-scoped bearer token signed with a key only the platform and this API share.
//!
//! Token: `base64url(payload) "." base64url(HMAC-SHA256(signing_key, payload))`, where
//! `payload` is the JSON `{"shop_id": "...", "exp": <unix seconds>}` exactly as encoded in the
//! first part. The signature covers the payload bytes, so nothing is re-serialised before the
//! check. The shop in the token must equal the shop in the path; the API never takes a shop
//! id from anywhere else.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::fmt;

type HmacSha256 = Hmac<Sha256>;

/// Shorter keys are refused: 256 bits is what HMAC-SHA256 is meant to be keyed with.
pub const MIN_KEY_BYTES: usize = 32;
/// Tokens are for one page view's worth of calls; a longer `exp` is a platform bug.
pub const MAX_TOKEN_LIFETIME_SECS: i64 = 24 * 3600;
/// Header values larger than this are not tokens; refused before decoding.
const MAX_TOKEN_LEN: usize = 2048;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    #[error("malformed token")]
    Malformed,
    #[error("bad token signature")]
    BadSignature,
    #[error("token expired")]
    Expired,
    #[error("token lifetime is longer than allowed")]
    TooLong,
}

#[derive(Debug, thiserror::Error)]
#[error("the admin token signing key must be at least {MIN_KEY_BYTES} bytes")]
pub struct WeakKey;

/// The claims a token carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShopClaims {
    pub shop_id: String,
    /// Expiry, unix seconds.
    pub exp: i64,
}

/// Signs and verifies shop tokens. Holds the key; never prints it.
#[derive(Clone)]
pub struct TokenSigner {
    key: Vec<u8>,
}

impl fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenSigner(••••)")
    }
}

impl TokenSigner {
    pub fn new(key: impl AsRef<[u8]>) -> Result<Self, WeakKey> {
        let key = key.as_ref();
        if key.len() < MIN_KEY_BYTES {
            return Err(WeakKey);
        }
        Ok(TokenSigner { key: key.to_vec() })
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC takes keys of any length; this cannot fail.
        <HmacSha256 as Mac>::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!())
    }

    /// A token for `shop_id` valid for `ttl_secs` from `now` (unix seconds). For the platform
    /// backend, tests, the local runner and the docs' examples.
    pub fn mint_at(&self, shop_id: &str, now: i64, ttl_secs: i64) -> String {
        let claims = ShopClaims {
            shop_id: shop_id.to_string(),
            exp: now + ttl_secs,
        };
        // Serialising two plain fields cannot fail.
        let payload = serde_json::to_vec(&claims).unwrap_or_default();
        let mut mac = self.mac();
        mac.update(&payload);
        let sig = mac.finalize().into_bytes();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(sig)
        )
    }

    pub fn mint(&self, shop_id: &str, ttl_secs: i64) -> String {
        self.mint_at(shop_id, chrono::Utc::now().timestamp(), ttl_secs)
    }

    /// Checks the signature (constant time), then expiry, and returns the claims.
    pub fn verify_at(&self, token: &str, now: i64) -> Result<ShopClaims, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::Malformed);
        }
        let (p, s) = token.split_once('.').ok_or(AuthError::Malformed)?;
        let payload = URL_SAFE_NO_PAD
            .decode(p)
            .map_err(|_| AuthError::Malformed)?;
        let sig = URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| AuthError::Malformed)?;
        let mut mac = self.mac();
        mac.update(&payload);
        mac.verify_slice(&sig)
            .map_err(|_| AuthError::BadSignature)?;
        // Only a signed payload is parsed: unsigned input never reaches serde.
        let claims: ShopClaims =
            serde_json::from_slice(&payload).map_err(|_| AuthError::Malformed)?;
        if claims.shop_id.is_empty() {
            return Err(AuthError::Malformed);
        }
        if claims.exp <= now {
            return Err(AuthError::Expired);
        }
        if claims.exp - now > MAX_TOKEN_LIFETIME_SECS {
            return Err(AuthError::TooLong);
        }
        Ok(claims)
    }

    pub fn verify(&self, token: &str) -> Result<ShopClaims, AuthError> {
        self.verify_at(token, chrono::Utc::now().timestamp())
    }
}

/// The token from an `Authorization: Bearer …` header value.
pub fn bearer(header: Option<&str>) -> Result<&str, AuthError> {
    let h = header.ok_or(AuthError::Missing)?.trim();
    let (scheme, rest) = h.split_once(' ').ok_or(AuthError::Missing)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Missing);
    }
    Ok(rest.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> TokenSigner {
        TokenSigner::new("k".repeat(32)).unwrap()
    }

    #[test]
    fn round_trip() {
        let t = signer().mint_at("shop-1", 1000, 600);
        let c = signer().verify_at(&t, 1200).unwrap();
        assert_eq!(
            c,
            ShopClaims {
                shop_id: "shop-1".into(),
                exp: 1600
            }
        );
    }

    #[test]
    fn expired_tampered_and_foreign_tokens_are_refused() {
        let s = signer();
        let t = s.mint_at("shop-1", 1000, 600);
        assert_eq!(s.verify_at(&t, 1600), Err(AuthError::Expired));

        // Re-point the payload at another shop, keep the signature.
        let (_, sig) = t.split_once('.').unwrap();
        let forged = format!(
            "{}.{sig}",
            URL_SAFE_NO_PAD.encode(br#"{"shop_id":"shop-2","exp":1600}"#)
        );
        assert_eq!(s.verify_at(&forged, 1200), Err(AuthError::BadSignature));

        let other = TokenSigner::new("x".repeat(32))
            .unwrap()
            .mint_at("shop-1", 1000, 600);
        assert_eq!(s.verify_at(&other, 1200), Err(AuthError::BadSignature));

        assert_eq!(s.verify_at("", 1200), Err(AuthError::Missing));
        assert_eq!(s.verify_at("abc", 1200), Err(AuthError::Malformed));
        assert_eq!(s.verify_at("a.b.c", 1200), Err(AuthError::Malformed));
        assert_eq!(
            s.verify_at(&s.mint_at("shop-1", 1000, 7 * 86400), 1200),
            Err(AuthError::TooLong)
        );
    }

    #[test]
    fn weak_keys_are_refused_and_never_printed() {
        assert!(TokenSigner::new("short").is_err());
        let s = TokenSigner::new("secret-signing-key-0123456789abcdef").unwrap();
        assert!(!format!("{s:?}").contains("secret"));
    }

    #[test]
    fn bearer_header() {
        assert_eq!(bearer(Some("Bearer abc.def")), Ok("abc.def"));
        assert_eq!(bearer(Some("bearer  abc")), Ok("abc"));
        assert_eq!(bearer(Some("Basic abc")), Err(AuthError::Missing));
        assert_eq!(bearer(None), Err(AuthError::Missing));
    }
}
