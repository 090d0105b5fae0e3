//! Webhook URL tokens: the one place that derives and verifies them.
//!
//! A token is `base64url-no-pad(HMAC-SHA256(key, "{connection_id}|{kind}|{generation}"))`.
//! The key (at least 32 bytes) lives in its own Secrets Manager secret
//! (`WEBHOOK_TOKEN_KEY_SECRET_ARN`) and is read once per cold start by the admin API (which
//! shows the URLs) and the webhook receiver (which checks them). The connection stores only a
//! generation number per kind; rotating bumps it, so the old URL stops matching at once. No
//! token, and no hash of one, is stored anywhere, yet the owning shop can read its URLs at
//! any time.
//!
//! Connections made before tokens were derived hold SHA-256 hashes of random tokens
//! (`webhook_tokens`); those keep working through [`verify`] until the merchant rotates.

use crate::connection::{Connection, WebhookKind};
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Shortest key accepted: 256 bits.
pub const MIN_KEY_BYTES: usize = 32;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenKeyError {
    #[error("the webhook token key must be at least {MIN_KEY_BYTES} bytes (it has {0})")]
    TooShort(usize),
}

/// The key webhook tokens are derived from. No `Debug` or `Display` of its bytes.
#[derive(Clone)]
pub struct TokenKey(Vec<u8>);

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(••••)")
    }
}

impl TokenKey {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, TokenKeyError> {
        let bytes = bytes.into();
        if bytes.len() < MIN_KEY_BYTES {
            return Err(TokenKeyError::TooShort(bytes.len()));
        }
        Ok(TokenKey(bytes))
    }

    /// The key as held in Secrets Manager: its text, surrounding whitespace ignored.
    pub fn from_secret_text(text: &str) -> Result<Self, TokenKeyError> {
        Self::new(text.trim().as_bytes().to_vec())
    }

    /// A fresh random key (the local run, tests).
    pub fn generate() -> Self {
        let mut bytes = vec![0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        TokenKey(bytes)
    }

    fn mac(&self, connection_id: &str, kind: WebhookKind, generation: u32) -> [u8; 32] {
        // A key of any length is valid for HMAC; the length check above is our own rule.
        let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(&self.0) {
            Ok(m) => m,
            Err(_) => return [0u8; 32],
        };
        mac.update(connection_id.as_bytes());
        mac.update(b"|");
        mac.update(kind.as_str().as_bytes());
        mac.update(b"|");
        mac.update(generation.to_string().as_bytes());
        mac.finalize().into_bytes().into()
    }
}

/// The token of a connection's URL of `kind` at `generation`.
pub fn derive(key: &TokenKey, connection_id: &str, kind: WebhookKind, generation: u32) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.mac(
        connection_id,
        kind,
        generation,
    ))
}

/// How a connection's URL of one kind is checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential<'a> {
    /// Derived from the key at this generation.
    Derived(u32),
    /// A pre-derivation connection: the SHA-256 hash of its random token.
    Legacy(&'a str),
}

/// Which of the connection's issued URLs `presented` opens, if any. Every issued kind is
/// checked, and every check is constant-time, so the time taken does not depend on which
/// kind (if any) matched.
pub fn authenticate(key: &TokenKey, conn: &Connection, presented: &str) -> Option<WebhookKind> {
    let mut found = None;
    for kind in WebhookKind::ALL {
        let ok = match conn.webhook_credential(kind) {
            Some(Credential::Derived(g)) => {
                let expected = key.mac(&conn.id, kind, g);
                let got = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(presented.as_bytes())
                    .unwrap_or_default();
                // Same length first (not secret: every derived token is 32 bytes).
                got.len() == expected.len() && bool::from(got.as_slice().ct_eq(&expected))
            }
            Some(Credential::Legacy(hash)) => verify(presented, hash),
            None => false,
        };
        if ok && found.is_none() {
            found = Some(kind);
        }
    }
    found
}

/// A random token and its hash, as connections got them before tokens were derived. Only
/// tests that build such connections use it.
pub fn generate() -> (String, String) {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let hash = hash(&token);
    (token, hash)
}

pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Constant-time check of a presented token against a stored (legacy) hash. Hashing first
/// makes the comparison length-independent, so nothing about the stored value leaks through
/// timing.
pub fn verify(presented: &str, stored_hash: &str) -> bool {
    let presented = Sha256::digest(presented.as_bytes());
    let Ok(stored) = hex::decode(stored_hash) else {
        return false;
    };
    if stored.len() != presented.len() {
        return false;
    }
    presented.as_slice().ct_eq(&stored).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::tests::connection;

    fn key() -> TokenKey {
        TokenKey::new(b"0123456789abcdef0123456789abcdef".to_vec()).unwrap()
    }

    #[test]
    fn keys_are_long_enough_and_never_printed() {
        assert_eq!(
            TokenKey::new(b"short".to_vec()).unwrap_err(),
            TokenKeyError::TooShort(5)
        );
        assert!(TokenKey::from_secret_text("  0123456789abcdef0123456789abcdef\n").is_ok());
        let k = key();
        assert_eq!(format!("{k:?}"), "TokenKey(••••)");
        assert_ne!(
            derive(&TokenKey::generate(), "c", WebhookKind::Orders, 1),
            derive(&TokenKey::generate(), "c", WebhookKind::Orders, 1)
        );
    }

    #[test]
    fn tokens_depend_on_key_connection_kind_and_generation() {
        let k = key();
        let t = derive(&k, "c1", WebhookKind::Orders, 1);
        assert_eq!(t.len(), 43, "256 bits in unpadded base64url");
        assert!(t
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_eq!(t, derive(&k, "c1", WebhookKind::Orders, 1), "stable");
        for other in [
            derive(&k, "c2", WebhookKind::Orders, 1),
            derive(&k, "c1", WebhookKind::Cards, 1),
            derive(&k, "c1", WebhookKind::Orders, 2),
            derive(
                &TokenKey::new(b"another-key-0123456789abcdef-012345".to_vec()).unwrap(),
                "c1",
                WebhookKind::Orders,
                1,
            ),
        ] {
            assert_ne!(t, other);
        }
    }

    #[test]
    fn authentication_names_the_kind_and_rotation_kills_the_old_token() {
        let k = key();
        let mut c = connection("c1");
        c.webhook_generations.orders = 1;
        let orders = derive(&k, "c1", WebhookKind::Orders, 1);
        let cards = derive(&k, "c1", WebhookKind::Cards, 1);
        assert_eq!(authenticate(&k, &c, &orders), Some(WebhookKind::Orders));
        assert_eq!(authenticate(&k, &c, &cards), None, "cards not issued");
        c.settings.order_sync = mapping::OrderSyncType::Pipelines;
        c.webhook_generations.cards = 1;
        assert_eq!(authenticate(&k, &c, &cards), Some(WebhookKind::Cards));
        c.webhook_generations.orders = 2;
        assert_eq!(authenticate(&k, &c, &orders), None, "rotated");
        assert_eq!(
            authenticate(&k, &c, &derive(&k, "c1", WebhookKind::Orders, 2)),
            Some(WebhookKind::Orders)
        );
        for junk in ["", "x", "!!!!", &orders[..42], &format!("{orders}A")] {
            assert_eq!(authenticate(&k, &c, junk), None, "{junk}");
        }
        // Another connection's token opens nothing here.
        assert_eq!(
            authenticate(&k, &c, &derive(&k, "c2", WebhookKind::Orders, 2)),
            None
        );
    }

    #[test]
    fn connections_from_before_derived_tokens_keep_their_urls_until_rotated() {
        let k = key();
        let (legacy, legacy_hash) = generate();
        let mut c = connection("c1");
        c.webhook_tokens.orders = Some(legacy_hash);
        assert_eq!(authenticate(&k, &c, &legacy), Some(WebhookKind::Orders));
        assert_eq!(
            authenticate(&k, &c, &derive(&k, "c1", WebhookKind::Orders, 0)),
            None
        );
        // Rotation moves the kind to derived tokens; the legacy token dies with it.
        c.rotate_webhook(WebhookKind::Orders);
        assert_eq!(authenticate(&k, &c, &legacy), None);
        assert_eq!(
            authenticate(&k, &c, &derive(&k, "c1", WebhookKind::Orders, 1)),
            Some(WebhookKind::Orders)
        );
    }

    #[test]
    fn legacy_hash_verification() {
        let (t, h) = generate();
        assert!(verify(&t, &h));
        assert!(!verify(&format!("{t}x"), &h));
        assert!(!verify("", &h));
        assert!(!verify(&t, "not-hex"));
        assert!(!verify(&t, ""));
        assert!(!h.contains(&t));
    }
}
