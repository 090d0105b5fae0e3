//! Webhook URL tokens: 256 random bits, handed out once, stored only as a SHA-256 hash and
//! compared in constant time.

use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A fresh token and the hash to store. The token goes into the URL shown to the merchant
/// and is never stored or logged.
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

/// Constant-time check of a presented token against a stored hash. Hashing first makes the
/// comparison length-independent, so nothing about the stored value leaks through timing.
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

    #[test]
    fn tokens_are_long_unique_and_url_safe() {
        let (a, ha) = generate();
        let (b, _) = generate();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43, "256 bits in unpadded base64url");
        assert!(a
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert!(!ha.contains(&a));
    }

    #[test]
    fn verification() {
        let (t, h) = generate();
        assert!(verify(&t, &h));
        assert!(!verify(&format!("{t}x"), &h));
        assert!(!verify("", &h));
        assert!(!verify(&t, "not-hex"));
        assert!(!verify(&t, ""));
    }
}
