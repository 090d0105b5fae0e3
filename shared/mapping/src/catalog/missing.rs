//! Products, offers and categories that vanished from KeyCRM: what the missing-products policy
//! does to them, how it is undone, and how a vanished offer is re-checked.

use super::links::{CategoryLink, ProductLink, Swept};
use crate::settings::MissingProductPolicy;
use crate::shop::{CategoryStateChange, ProductStateChange};
use std::collections::BTreeSet;

/// What the missing-product policy does to a linked product that vanished from KeyCRM.
pub fn missing_change(
    policy: MissingProductPolicy,
    link: &ProductLink,
) -> Option<(ProductStateChange, Swept)> {
    if link.swept.is_some() {
        return None;
    }
    match policy {
        MissingProductPolicy::Nothing => None,
        MissingProductPolicy::Hide => Some((
            ProductStateChange {
                id: link.shop_id.clone(),
                visible: Some(false),
                available: None,
            },
            Swept::Hidden,
        )),
        MissingProductPolicy::MakeUnavailable => Some((
            ProductStateChange {
                id: link.shop_id.clone(),
                visible: None,
                available: Some(false),
            },
            Swept::Unavailable,
        )),
    }
}

/// What the missing-products policy does to a linked category that vanished from KeyCRM:
/// `hide` hides it; `nothing` leaves it; `make_unavailable` leaves it visible too (a category
/// cannot be bought, and its vanished products are made unavailable one by one).
pub fn missing_category_change(
    policy: MissingProductPolicy,
    link: &CategoryLink,
) -> Option<CategoryStateChange> {
    match policy {
        MissingProductPolicy::Hide if !link.hidden => Some(CategoryStateChange {
            id: link.shop_id.clone(),
            visible: Some(false),
        }),
        _ => None,
    }
}

/// A category the policy hid that is back in KeyCRM is shown again.
pub fn restore_category_change(link: &CategoryLink) -> Option<CategoryStateChange> {
    link.hidden.then(|| CategoryStateChange {
        id: link.shop_id.clone(),
        visible: Some(true),
    })
}

/// Linked categories KeyCRM no longer has (not hidden already), in id order.
pub fn vanished_categories<'a>(
    links: impl IntoIterator<Item = &'a CategoryLink>,
    in_keycrm: &BTreeSet<i64>,
) -> Vec<&'a CategoryLink> {
    let mut out: Vec<&CategoryLink> = links
        .into_iter()
        .filter(|l| !l.hidden && !in_keycrm.contains(&l.keycrm_id))
        .collect();
    out.sort_by_key(|l| l.keycrm_id);
    out
}

/// What KeyCRM says of an offer a complete listing did not show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OfferCheck {
    /// Still active: the listing shifted under the pass; the variant is left as it is.
    Active,
    /// Deleted, archived, or moved to another product: the variant may be made unavailable.
    Gone(&'static str),
}

/// Decides a re-checked offer from what `GET /offers?filter[id]=…` answered for it:
/// `(its product, offer archived, product archived)`, or `None` when it was not returned.
pub fn recheck_offer(expected_product: i64, found: Option<(i64, bool, bool)>) -> OfferCheck {
    match found {
        None => OfferCheck::Gone("deleted in KeyCRM"),
        Some((_, true, _)) => OfferCheck::Gone("archived in KeyCRM"),
        Some((_, _, true)) => OfferCheck::Gone("its product is archived in KeyCRM"),
        Some((p, _, _)) if p != expected_product => {
            OfferCheck::Gone("moved to another KeyCRM product")
        }
        Some(_) => OfferCheck::Active,
    }
}
