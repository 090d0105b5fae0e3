//! Catalog planning: what a catalog sync writes to the shop, decided without I/O.
//!
//! The sync streams KeyCRM offers page by page and keeps, per product, only the compact
//! [`CrmProduct`]. Everything here is a pure function of that, the stored links and the
//! settings: the orchestration (paging, leases, writes) lives in `catalog-sync`.
//!
//! - Linked products (a [`ProductLink`] exists) are planned at once, by id: only what changed
//!   since the last write (content hash, per-variant hash, price, availability) is written.
//! - Unlinked products are decided only after the whole KeyCRM pass ([`resolve`]), because a
//!   key shared by two KeyCRM products, or a shop product claimed twice, can only be seen then.
//! - Missing products are swept only after a complete pass, within the vanish guard.
//!
//! One file per concern: `crm_product` (the compact KeyCRM catalog), `hashes`, `links`,
//! `plan` (writes for linked and new products), `match_key` (what each `MatchKey` compares),
//! `matching` (the shop index and its one lookup order, key counts, variant pairing),
//! `resolve` (the `Matcher` and the decision for unlinked products), `prices`, `missing`
//! (vanished products, categories and offers), `vanish_guard`, `categories` and `read_plan`.
//! Everything is re-exported here: callers name `catalog::X` whatever file `X` lives in.

mod categories;
mod crm_product;
mod hashes;
mod links;
mod match_key;
mod matching;
mod missing;
mod plan;
mod prices;
mod read_plan;
mod resolve;
mod vanish_guard;

#[cfg(test)]
mod tests;

pub use categories::*;
pub use crm_product::*;
pub use hashes::*;
pub use links::*;
pub use match_key::*;
pub use matching::*;
pub use missing::*;
pub use plan::*;
pub use prices::*;
pub use read_plan::*;
pub use resolve::*;
pub use vanish_guard::*;

/// KeyCRM's page size: the unit every request estimate is counted in.
pub const PAGE: u64 = 50;

fn is_false(b: &bool) -> bool {
    !*b
}

fn clean(s: Option<&str>) -> Option<String> {
    s.map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}
