//! Price writes and drift.

use super::*;

#[test]
fn price_changes_only_for_what_changed() {
    let v = VariantLink {
        offer_id: 1,
        shop_id: "v1".into(),
        hash: 1,
        price: Some(d(10)),
        available: Some(true),
        gone: false,
    };
    assert_eq!(
        price_change("p", &v, Some(Decimal::new(1000, 2)), Some(true)),
        None,
        "10.00 == 10"
    );
    let c = price_change("p", &v, Some(d(11)), Some(true)).unwrap();
    assert_eq!((c.price, c.available), (Some(d(11)), None));
    let c = price_change("p", &v, Some(d(10)), Some(false)).unwrap();
    assert_eq!((c.price, c.available), (None, Some(false)));
    assert_eq!(price_change("p", &v, None, None), None);
    let mut v2 = v.clone();
    apply_price_change(&mut v2, &c);
    assert_eq!((v2.price, v2.available), (Some(d(10)), Some(false)));
}

#[test]
fn drift_is_what_the_shop_holds_against_what_was_written() {
    let p = product(
        7,
        "Сукня",
        vec![
            offer(71, "S-71", 100, Some(3)),
            offer(72, "S-72", 120, Some(0)),
        ],
    );
    let link = linked(&p, None);
    let shop = |p71: Option<&str>, a71: bool, p72: Option<&str>, a72: bool| ShopProduct {
        id: "s7".into(),
        name: "Сукня".into(),
        variants: vec![
            ShopVariant {
                id: "v71".into(),
                price: p71.map(|x| x.parse().unwrap()),
                available: a71,
                ..ShopVariant::default()
            },
            ShopVariant {
                id: "v72".into(),
                price: p72.map(|x| x.parse().unwrap()),
                available: a72,
                ..ShopVariant::default()
            },
        ],
        ..ShopProduct::default()
    };
    // In step (100 and 100.0 are the same price): nothing to write.
    assert!(drift_changes(&link, &shop(Some("100"), true, Some("120.0"), false)).is_empty());
    // A merchant's edit of one price and another variant's availability: only those fields.
    let c = drift_changes(&link, &shop(Some("90"), true, Some("120"), true));
    assert_eq!(
        c,
        vec![
            VariantPriceChange {
                product_id: "s7".into(),
                variant_id: "v71".into(),
                price: Some(d(100)),
                available: None,
            },
            VariantPriceChange {
                product_id: "s7".into(),
                variant_id: "v72".into(),
                price: None,
                available: Some(false),
            },
        ]
    );
    // A price the shop lost altogether is written again.
    assert_eq!(
        drift_changes(&link, &shop(None, true, Some("120"), false)).len(),
        1
    );
    // Unknown availability (no stock in KeyCRM) is not enforced.
    let mut no_stock = link.clone();
    no_stock.variants[1].available = None;
    assert!(drift_changes(&no_stock, &shop(Some("100"), true, Some("120"), true)).is_empty());
    // A swept product, another shop product, a variant the shop removed: nothing.
    let mut swept = link.clone();
    swept.swept = Some(Swept::Hidden);
    assert!(drift_changes(&swept, &shop(Some("1"), false, Some("1"), true)).is_empty());
    let mut other = shop(Some("1"), false, Some("1"), true);
    other.id = "s8".into();
    assert!(drift_changes(&link, &other).is_empty());
    let mut fewer = shop(Some("100"), true, Some("1"), true);
    fewer.variants.pop();
    assert!(drift_changes(&link, &fewer).is_empty());
}
