//! How a shop order is named inside KeyCRM, so that it can be found again exactly.
//!
//! One KeyCRM account may serve several shops (the article lets a merchant add one source per
//! site), and shop order ids are only unique within a shop. So the name carries the shop:
//!
//! - orders: `source_uuid` = `<shop id>:<shop order id>` (e.g. `1001:10234`), searchable with
//!   `GET /order?filter[source_uuid]=…`;
//! - pipeline cards (which have no `source_uuid`): a line `ID замовлення в магазині:
//!   <shop id>:<shop order id>` in the card's `manager_comment`, compared exactly.
//!
//! Orders created before this scheme carry the bare shop order id (the *legacy* form); they
//! are still recognised where the ledger says an earlier attempt may have used it.

/// `source_uuid` of a shop order in KeyCRM.
pub fn source_uuid(shop_id: &str, order_id: &str) -> String {
    format!("{shop_id}:{order_id}")
}

/// What a `source_uuid` found in KeyCRM says about a shop order of `shop_id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceRef<'a> {
    /// This shop's order, named by the current scheme.
    Scoped(&'a str),
    /// A bare id: an order created before the scheme (or by another integration). Whose it
    /// is cannot be told from the name alone.
    Legacy(&'a str),
}

impl<'a> SourceRef<'a> {
    /// Reads a `source_uuid` as seen from `shop_id`'s connection.
    pub fn parse(shop_id: &str, uuid: &'a str) -> SourceRef<'a> {
        match uuid
            .strip_prefix(shop_id)
            .and_then(|rest| rest.strip_prefix(':'))
        {
            Some(order) if !order.trim().is_empty() => SourceRef::Scoped(order),
            _ => SourceRef::Legacy(uuid),
        }
    }

    pub fn order_id(&self) -> &'a str {
        match self {
            SourceRef::Scoped(o) | SourceRef::Legacy(o) => o,
        }
    }
}

/// The label of the marker line written into a card's manager comment.
pub const CARD_MARKER_LABEL: &str = "ID замовлення в магазині: ";

/// The marker line of a card created for this shop order.
pub fn card_marker(shop_id: &str, order_id: &str) -> String {
    format!("{CARD_MARKER_LABEL}{}", source_uuid(shop_id, order_id))
}

/// Whether a card's manager comment carries exactly this shop order's marker line.
pub fn has_card_marker(manager_comment: Option<&str>, shop_id: &str, order_id: &str) -> bool {
    let marker = card_marker(shop_id, order_id);
    manager_comment.is_some_and(|c| c.lines().any(|l| l.trim() == marker))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scoped_names_are_read_back_only_by_their_shop() {
        let u = source_uuid("1001", "10234");
        assert_eq!(u, "1001:10234");
        assert_eq!(SourceRef::parse("1001", &u), SourceRef::Scoped("10234"));
        // Another shop on the same account, even one whose id extends ours.
        assert_eq!(SourceRef::parse("100", &u), SourceRef::Legacy("1001:10234"));
        assert_eq!(
            SourceRef::parse("1001", "10010:5"),
            SourceRef::Legacy("10010:5")
        );
        assert_eq!(
            SourceRef::parse("1001", "10234"),
            SourceRef::Legacy("10234")
        );
        assert_eq!(
            SourceRef::parse("1001", "1001:"),
            SourceRef::Legacy("1001:")
        );
        // Order ids may themselves contain the separator.
        assert_eq!(
            SourceRef::parse("s", &source_uuid("s", "a:b")),
            SourceRef::Scoped("a:b")
        );
    }

    #[test]
    fn card_markers_match_exactly_one_order_of_one_shop() {
        let comment = format!(
            "Коментар покупця: швидше\n{}\nДоставка: НП",
            card_marker("1001", "77")
        );
        assert!(has_card_marker(Some(&comment), "1001", "77"));
        assert!(!has_card_marker(Some(&comment), "1001", "7"));
        assert!(!has_card_marker(Some(&comment), "1002", "77"));
        assert!(!has_card_marker(Some(&comment), "100", "1:77"));
        assert!(!has_card_marker(None, "1001", "77"));
        assert!(has_card_marker(
            Some(&format!("  {}  ", card_marker("1001", "77"))),
            "1001",
            "77"
        ));
    }
}
