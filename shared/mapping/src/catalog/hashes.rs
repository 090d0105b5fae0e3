//! Hashes of what was written, stored in the links to tell what changed since.

use super::crm_product::{CrmOffer, CrmProduct};
use sha2::{Digest, Sha256};

/// A hash that stays the same across builds and platforms (it is stored in the links).
fn stable_hash(parts: &[&str]) -> u64 {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    // 0 means "never written" in a link, so a real hash never is 0.
    u64::from_le_bytes(b).max(1)
}

/// Hash of the product-level fields as they would be written (category as the shop's id).
pub fn content_hash(p: &CrmProduct, shop_category: Option<&str>) -> u64 {
    let mut parts: Vec<&str> = vec![
        "v1",
        &p.name,
        p.description.as_deref().unwrap_or("\u{0}"),
        shop_category.unwrap_or("\u{0}"),
    ];
    parts.extend(p.images.iter().map(String::as_str));
    stable_hash(&parts)
}

/// Hash of a variant's descriptive fields (price and availability are compared apart).
pub fn variant_hash(o: &CrmOffer) -> u64 {
    let mut parts: Vec<&str> = vec![
        "v1",
        o.sku.as_deref().unwrap_or("\u{0}"),
        o.barcode.as_deref().unwrap_or("\u{0}"),
    ];
    for (k, v) in &o.properties {
        parts.push(k);
        parts.push(v);
    }
    stable_hash(&parts)
}

/// Hash of a category as written (name and the shop id of its parent).
pub fn category_hash(name: &str, parent_shop_id: Option<&str>) -> u64 {
    stable_hash(&["v1", name.trim(), parent_shop_id.unwrap_or("\u{0}")])
}

/// FNV-1a: a cheap in-process hash for match-key indexes (never stored).
pub(super) fn key_hash(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}
