//! What a [`MatchKey`] does: the values it compares on each side, what it is called in
//! reports, and whether it trusts a shop product's external id. The order in which those are
//! tried lives in one place, [`ShopIndex::find`](super::ShopIndex::find).

use super::clean;
use super::crm_product::CrmProduct;
use crate::settings::MatchKey;
use crate::shop::ShopProduct;

/// Names compare ignoring case and runs of white space.
pub fn normalize_name(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

fn push_unique(out: &mut Vec<String>, v: Option<&str>) {
    if let Some(v) = clean(v) {
        if !out.contains(&v) {
            out.push(v);
        }
    }
}

fn push_name(out: &mut Vec<String>, name: &str) {
    let n = normalize_name(name);
    if !n.is_empty() {
        out.push(n);
    }
}

impl MatchKey {
    /// Every key, in the order the settings page lists them.
    pub const ALL: [MatchKey; 6] = [
        MatchKey::Id,
        MatchKey::Sku,
        MatchKey::Name,
        MatchKey::Barcode,
        MatchKey::ExternalId,
        MatchKey::CreateOnly,
    ];

    /// Whether existing shop products are looked up by this key at all: create-only
    /// («Не оновлювати (тільки створювати нові)») never links a product by its values.
    pub fn matches_existing(self) -> bool {
        self != MatchKey::CreateOnly
    }

    /// Whether a shop product carrying this KeyCRM product's id as its external id is its
    /// counterpart. Under create-only existing shop products are never linked, whatever their
    /// external id says; the one exception is this connector's own create of the product whose
    /// link was lost in a crash (`creating`: the create was sent in the run in progress), which
    /// must be recovered, not created twice.
    pub fn trusts_external_id(self, creating: bool) -> bool {
        self.matches_existing() || creating
    }

    /// The values a KeyCRM product is matched by (empty for `CreateOnly`, or when it has none).
    pub fn crm_keys(self, p: &CrmProduct) -> Vec<String> {
        let mut out = Vec::new();
        match self {
            MatchKey::Id | MatchKey::ExternalId => out.push(p.id.to_string()),
            MatchKey::Sku => p
                .offers
                .iter()
                .for_each(|o| push_unique(&mut out, o.sku.as_deref())),
            MatchKey::Barcode => p
                .offers
                .iter()
                .for_each(|o| push_unique(&mut out, o.barcode.as_deref())),
            MatchKey::Name => push_name(&mut out, &p.name),
            MatchKey::CreateOnly => {}
        }
        out
    }

    /// The values a shop product is found by.
    pub fn shop_keys(self, s: &ShopProduct) -> Vec<String> {
        let mut out = Vec::new();
        match self {
            MatchKey::Id => push_unique(&mut out, Some(&s.id)),
            MatchKey::ExternalId => push_unique(&mut out, s.external_id.as_deref()),
            MatchKey::Sku => {
                push_unique(&mut out, s.sku.as_deref());
                s.variants
                    .iter()
                    .for_each(|v| push_unique(&mut out, v.sku.as_deref()));
            }
            MatchKey::Barcode => {
                push_unique(&mut out, s.barcode.as_deref());
                s.variants
                    .iter()
                    .for_each(|v| push_unique(&mut out, v.barcode.as_deref()));
            }
            MatchKey::Name => push_name(&mut out, &s.name),
            MatchKey::CreateOnly => {}
        }
        out
    }

    /// What the key is called in run reports.
    pub fn label(self) -> &'static str {
        match self {
            MatchKey::Id => "id",
            MatchKey::Sku => "SKU",
            MatchKey::Name => "name",
            MatchKey::Barcode => "barcode",
            MatchKey::ExternalId => "external id",
            MatchKey::CreateOnly => "nothing",
        }
    }
}
