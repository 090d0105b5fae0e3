//! How large settings may be. Settings are stored in one DynamoDB item (at most 400 KB) and
//! travel inside SQS messages (at most 1 MiB; a dry run carries unsaved settings), so every
//! list and every string in them is bounded: settings that pass [`Settings::problems`]
//! serialize to under 192 KiB (188 KiB with every list full and every id at its longest,
//! a test checks it), however the request was built: under half of DynamoDB's item limit,
//! a fifth of SQS's message limit.
//!
//! Each maximum is far above what a real shop and KeyCRM account have. Real ids are short:
//! shop status, add-on and method ids are slugs (`new`, `gift`, `np`) or at most UUIDs (36
//! bytes), KeyCRM custom field uuids look like `OR_1001`, KeyCRM ids are numbers.
//!
//! [`Settings::problems`]: crate::Settings::problems

use crate::settings_problem::{Issue, Problem};

/// Longest shop status, add-on, shop method id or KeyCRM custom field uuid, in bytes of
/// UTF-8 (a UUID is 36). The order events' contract allows status and method ids of up to
/// 128 characters; slugs of that length all fit. Bytes, not characters, so the worst case
/// in JSON is known.
pub const MAX_ID_LEN: usize = 128;

/// Most KeyCRM categories in `category_filter`. A chosen category takes everything below
/// it, so a merchant picks a few branches, not hundreds of leaves. Ids are up to 20
/// characters in JSON: 1,000 of them are at most about 21 KB.
pub const MAX_CATEGORY_FILTER: usize = 1_000;

/// Most entries in `order_statuses.from_keycrm` and in `card_statuses.from_keycrm`: each
/// KeyCRM order status (or pipeline status) appears once. Accounts have a few dozen order
/// statuses, but pipeline statuses add up over all pipelines (ten pipelines of a dozen
/// stages are 120).
pub const MAX_KEYCRM_STATUS_LINKS: usize = 256;

/// Most entries in `order_statuses.to_keycrm` and in `card_statuses.to_keycrm`: each shop
/// status appears once, and shops have about ten.
pub const MAX_SHOP_STATUS_LINKS: usize = 64;

/// Most entries in `addon_fields`: each shop add-on appears once, and shops have a handful.
pub const MAX_ADDON_LINKS: usize = 64;

/// Most entries in `payment_map` and in `delivery_map`: each shop method appears once, and
/// shops have a handful (every payment method must be mapped for order sync, so this must
/// stay far above any real shop's count).
pub const MAX_METHOD_LINKS: usize = 64;

/// A too long list: one problem at the list's own path, `None` when within `max`. The
/// caller then skips the entries' own checks (they would only repeat the same news, up to
/// hundreds of thousands of times).
pub(crate) fn too_many(field: &str, len: usize, max: usize) -> Option<Problem> {
    (len > max).then(|| Problem::new(field, Issue::TooManyEntries { max }))
}

/// What is wrong with the shape of an id from the request, if anything: longer than
/// [`MAX_ID_LEN`] bytes, or holding a character JSON must escape (control characters,
/// quotes, backslashes; no real id has one, and escaping would grow it up to sixfold).
/// An id with such a problem is not looked up in the dictionaries.
pub(crate) fn id_issue(id: &str) -> Option<Issue> {
    if id.len() > MAX_ID_LEN {
        Some(Issue::TooLong { max: MAX_ID_LEN })
    } else if id.chars().any(|c| c.is_control() || c == '"' || c == '\\') {
        Some(Issue::InvalidCharacters)
    } else {
        None
    }
}

#[cfg(test)]
#[path = "settings_limits_tests.rs"]
mod tests;
