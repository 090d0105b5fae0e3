//! Vanished products, categories and offers.

use super::*;

#[test]
fn vanished_categories_follow_the_missing_products_policy() {
    let link = |id: i64, hidden: bool| CategoryLink {
        keycrm_id: id,
        shop_id: format!("c{id}"),
        hash: 1,
        hidden,
    };
    let links = [link(1, false), link(2, false), link(3, true)];
    let in_keycrm: BTreeSet<i64> = [1].into_iter().collect();
    let gone: Vec<i64> = vanished_categories(&links, &in_keycrm)
        .iter()
        .map(|l| l.keycrm_id)
        .collect();
    assert_eq!(gone, vec![2], "hidden already: not counted again");
    assert_eq!(
        missing_category_change(MissingProductPolicy::Hide, &links[1]),
        Some(CategoryStateChange {
            id: "c2".into(),
            visible: Some(false)
        })
    );
    assert_eq!(
        missing_category_change(MissingProductPolicy::Nothing, &links[1]),
        None
    );
    assert_eq!(
        missing_category_change(MissingProductPolicy::MakeUnavailable, &links[1]),
        None
    );
    assert_eq!(
        missing_category_change(MissingProductPolicy::Hide, &links[2]),
        None
    );
    assert_eq!(
        restore_category_change(&links[2]),
        Some(CategoryStateChange {
            id: "c3".into(),
            visible: Some(true)
        })
    );
    assert_eq!(restore_category_change(&links[0]), None);
}

#[test]
fn missing_policies() {
    let link = ProductLink {
        keycrm_id: 1,
        shop_id: "p1".into(),
        ..ProductLink::default()
    };
    assert_eq!(missing_change(MissingProductPolicy::Nothing, &link), None);
    let (c, s) = missing_change(MissingProductPolicy::Hide, &link).unwrap();
    assert_eq!(
        (c.visible, c.available, s),
        (Some(false), None, Swept::Hidden)
    );
    let (c, s) = missing_change(MissingProductPolicy::MakeUnavailable, &link).unwrap();
    assert_eq!(
        (c.visible, c.available, s),
        (None, Some(false), Swept::Unavailable)
    );
    let swept = ProductLink {
        swept: Some(Swept::Hidden),
        ..link
    };
    assert_eq!(
        missing_change(MissingProductPolicy::Hide, &swept),
        None,
        "never twice"
    );
}

#[test]
fn a_rechecked_offer_is_gone_only_when_keycrm_says_so() {
    assert_eq!(
        recheck_offer(5, Some((5, false, false))),
        OfferCheck::Active
    );
    assert_eq!(
        recheck_offer(5, None),
        OfferCheck::Gone("deleted in KeyCRM")
    );
    assert_eq!(
        recheck_offer(5, Some((5, true, false))),
        OfferCheck::Gone("archived in KeyCRM")
    );
    assert!(matches!(
        recheck_offer(5, Some((5, false, true))),
        OfferCheck::Gone(_)
    ));
    assert!(matches!(
        recheck_offer(5, Some((6, false, false))),
        OfferCheck::Gone(_)
    ));
}
