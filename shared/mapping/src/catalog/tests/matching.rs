//! Match keys, the shop index, key counts and variant pairing.

use super::*;

#[test]
fn keys_for_every_match_key() {
    let mut p = product(
        42,
        "  Сукня   ЛЛЯНА ",
        vec![
            offer(1, "A-1", 1, None),
            offer(2, "A-1", 1, None),
            offer(3, " ", 1, None),
        ],
    );
    p.offers[2].sku = None;
    assert_eq!(MatchKey::Id.crm_keys(&p), vec!["42"]);
    assert_eq!(MatchKey::ExternalId.crm_keys(&p), vec!["42"]);
    assert_eq!(
        MatchKey::Sku.crm_keys(&p),
        vec!["A-1"],
        "deduplicated, blanks skipped"
    );
    assert_eq!(MatchKey::Barcode.crm_keys(&p).len(), 3);
    assert_eq!(MatchKey::Name.crm_keys(&p), vec!["сукня лляна"]);
    assert!(MatchKey::CreateOnly.crm_keys(&p).is_empty());

    let mut s = shop_product("p9", "Сукня лляна", &["A-1", "A-2"]);
    s.external_id = Some(" 42 ".into());
    s.barcode = Some("b0".into());
    assert_eq!(MatchKey::Id.shop_keys(&s), vec!["p9"]);
    assert_eq!(MatchKey::ExternalId.shop_keys(&s), vec!["42"]);
    assert_eq!(MatchKey::Sku.shop_keys(&s), vec!["A-1", "A-2"]);
    assert_eq!(
        MatchKey::Barcode.shop_keys(&s),
        vec!["b0", "bc-A-1", "bc-A-2"]
    );
    assert_eq!(MatchKey::Name.shop_keys(&s), vec!["сукня лляна"]);
    assert!(MatchKey::CreateOnly.shop_keys(&s).is_empty());
}

#[test]
fn adopting_pairs_variants_by_sku_barcode_or_the_only_one() {
    let p = product(
        1,
        "A",
        vec![
            offer(1, "A-1", 10, Some(1)),
            offer(2, "A-2", 20, Some(0)),
            offer(3, "A-3", 30, None),
        ],
    );
    let mut s = shop_product("p1", "A", &["A-2", "zzz"]);
    s.variants[1].barcode = p.offers[0].barcode.clone();
    let mut index = ShopIndex::new(MatchKey::Sku);
    index.add(&s);
    let pairs = pair_variants(&p.offers, &index.product(0).variants);
    assert_eq!(
        pairs,
        vec![Some("p1-v1".to_string()), Some("p1-v0".to_string()), None]
    );

    let (u, prices, link) = plan_adopt(&p, index.product(0), false, None);
    assert!(u.is_none());
    assert_eq!(prices.len(), 2);
    assert_eq!(link.variants.len(), 2);
    assert_eq!(link.hash, 0, "content never written");
    let (u, prices, _) = plan_adopt(&p, index.product(0), true, Some("c1"));
    let u = u.unwrap();
    assert!(prices.is_empty());
    assert_eq!(u.id.as_deref(), Some("p1"));
    assert_eq!(u.category_id.as_deref(), Some("c1"));
    assert_eq!(
        u.variants.iter().map(|v| v.id.clone()).collect::<Vec<_>>(),
        vec![Some("p1-v1".into()), Some("p1-v0".into()), None]
    );

    let one = product(2, "B", vec![offer(9, "x", 1, None)]);
    let only = [IndexedVariant {
        id: "only".into(),
        sku: Some("y".into()),
        barcode: None,
    }];
    assert_eq!(
        pair_variants(&one.offers, &only),
        vec![Some("only".to_string())]
    );
}

#[test]
fn key_counts_name_the_other_product() {
    let mut c = CrmKeyCounts::default();
    c.add(1, &["A".into(), "B".into()]);
    c.add(2, &["B".into()]);
    c.add(3, &["B".into()]);
    assert_eq!(c.conflict(1, &["A".into()]), None);
    assert_eq!(
        c.conflict(1, &["A".into(), "B".into()]),
        Some(("B".into(), 2))
    );
    assert_eq!(c.conflict(2, &["B".into()]), Some(("B".into(), 1)));
    assert_eq!(normalize_name("  A\t b  "), "a b");
    assert_eq!(outcome_label(LinkedOutcome::Updated), "update");
}
