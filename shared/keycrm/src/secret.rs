//! The KeyCRM API key as a type that cannot leak through `Debug`, `Display` or serde.

use sha2::{Digest, Sha256};
use std::fmt;

/// A KeyCRM API key. It deliberately implements neither `Serialize` nor a revealing `Debug`,
/// so it cannot end up in a log line, an error message or a JSON response by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a key as pasted by the merchant; surrounding whitespace is a copy-paste artefact.
    pub fn new(raw: impl Into<String>) -> Self {
        ApiKey(raw.into().trim().to_string())
    }

    /// The raw key, for the `Authorization` header and the secret store only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `••••a1b2`: enough for a merchant to recognise which key is stored.
    pub fn masked(&self) -> String {
        let chars: Vec<char> = self.0.chars().collect();
        if chars.len() <= 8 {
            return "••••".to_string();
        }
        let tail: String = chars[chars.len() - 4..].iter().collect();
        format!("••••{tail}")
    }

    /// A stable, non-reversible identifier of the key, used to share one rate budget per key
    /// across functions without storing the key itself next to the counters.
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::digest(self.0.as_bytes());
        hex::encode(&digest[..12])
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey({})", self.masked())
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_key() {
        let key = ApiKey::new("  MDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMWExYjI  ");
        let shown = format!("{key:?} {key}");
        assert!(!shown.contains("MDAw"), "{shown}");
        assert_eq!(
            key.masked(),
            "••••WkyI".replace("WkyI", &key.expose()[key.expose().len() - 4..])
        );
        assert!(key.expose().starts_with("MDAw"), "whitespace is trimmed");
    }

    #[test]
    fn short_keys_are_fully_masked() {
        assert_eq!(ApiKey::new("abc").masked(), "••••");
    }

    #[test]
    fn fingerprint_is_stable_and_distinct() {
        let a = ApiKey::new("key-a");
        assert_eq!(a.fingerprint(), ApiKey::new("key-a").fingerprint());
        assert_ne!(a.fingerprint(), ApiKey::new("key-b").fingerprint());
        assert_eq!(a.fingerprint().len(), 24);
        assert!(!a.fingerprint().contains("key-a"));
    }
}
