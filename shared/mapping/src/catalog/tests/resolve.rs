//! Resolving unlinked products: adoption, creation, ambiguity.

use super::*;

fn world(key: MatchKey, shop: &[ShopProduct], unlinked: &[&CrmProduct]) -> Matcher {
    let mut index = ShopIndex::new(key);
    shop.iter().for_each(|s| index.add(s));
    let mut m = Matcher::new(index);
    for p in unlinked {
        m.count(p, false);
    }
    m
}

fn decide(
    w: &Matcher,
    key: MatchKey,
    new: NewProductPolicy,
    existing: ExistingProductPolicy,
    p: &CrmProduct,
    linked: &[(&str, i64)],
) -> Resolution {
    assert_eq!(w.key(), key, "the matcher holds the key it was built with");
    let creating = BTreeSet::new();
    let cx = ResolveContext {
        matcher: w,
        new_products: new,
        existing_products: existing,
        creating: &creating,
    };
    let linked: Vec<(String, i64)> = linked.iter().map(|(s, k)| (s.to_string(), *k)).collect();
    resolve(p, &cx, &|s| {
        linked.iter().find(|(x, _)| x == s).map(|(_, k)| *k)
    })
}

#[test]
fn each_match_key_finds_its_shop_product() {
    let p = product(42, "Сукня лляна", vec![offer(1, "A-1", 1, None)]);
    let mut by_id = shop_product("42", "x", &["zz"]);
    by_id.variants.clear();
    let mut by_ext = shop_product("p2", "x", &["yy"]);
    by_ext.external_id = Some("42".into());
    let by_sku = shop_product("p3", "x", &["A-1"]);
    let mut by_barcode = shop_product("p4", "x", &["q"]);
    by_barcode.variants[0].barcode = p.offers[0].barcode.clone();
    let by_name = shop_product("p5", "СУКНЯ  лляна", &["w"]);
    let cases = [
        (MatchKey::Id, by_id),
        (MatchKey::Sku, by_sku),
        (MatchKey::Barcode, by_barcode),
        (MatchKey::Name, by_name),
    ];
    for (key, s) in cases {
        let w = world(key, std::slice::from_ref(&s), &[&p]);
        let r = decide(
            &w,
            key,
            NewProductPolicy::Hide,
            ExistingProductPolicy::Update,
            &p,
            &[],
        );
        assert_eq!(
            r,
            Resolution::Adopt {
                index: 0,
                update: true
            },
            "{key:?}"
        );
    }
    // (Create-only never links an existing product, not even by external id: see
    // `create_only_never_links_an_existing_product`.)
    for key in [MatchKey::ExternalId, MatchKey::Sku] {
        let w = world(key, std::slice::from_ref(&by_ext), &[&p]);
        let r = decide(
            &w,
            key,
            NewProductPolicy::Hide,
            ExistingProductPolicy::DontUpdate,
            &p,
            &[],
        );
        assert_eq!(
            r,
            Resolution::Adopt {
                index: 0,
                update: false
            },
            "external id adopts under {key:?}"
        );
    }
}

#[test]
fn create_only_never_links_an_existing_product() {
    // The merchant's own product carries the KeyCRM id as its external id (say, from an
    // earlier import): «Не оновлювати (тільки створювати нові)» still creates a new one.
    let p = product(42, "A", vec![offer(1, "A-1", 1, None)]);
    let mut theirs = shop_product("p1", "A", &["A-1"]);
    theirs.external_id = Some("42".into());
    let w = world(MatchKey::CreateOnly, &[theirs], &[&p]);
    assert_eq!(w.claim(&p, false), None);
    let r = decide(
        &w,
        MatchKey::CreateOnly,
        NewProductPolicy::Hide,
        ExistingProductPolicy::Update,
        &p,
        &[],
    );
    assert_eq!(r, Resolution::Create { visible: false });
    // Except this run's own create whose link a crash lost: recovered, not duplicated.
    assert_eq!(w.claim(&p, true), Some(0));
    let creating: BTreeSet<i64> = [42].into_iter().collect();
    let cx = ResolveContext {
        matcher: &w,
        new_products: NewProductPolicy::Hide,
        existing_products: ExistingProductPolicy::Update,
        creating: &creating,
    };
    assert_eq!(
        resolve(&p, &cx, &|_| None),
        Resolution::Adopt {
            index: 0,
            update: true
        }
    );
    assert!(MatchKey::Sku.trusts_external_id(false));
    assert!(!MatchKey::CreateOnly.trusts_external_id(false));
}

#[test]
fn create_only_never_matches_by_key() {
    let p = product(42, "A", vec![offer(1, "A-1", 1, None)]);
    let w = world(
        MatchKey::CreateOnly,
        &[shop_product("p1", "A", &["A-1"])],
        &[&p],
    );
    let r = decide(
        &w,
        MatchKey::CreateOnly,
        NewProductPolicy::Publish,
        ExistingProductPolicy::Update,
        &p,
        &[],
    );
    assert_eq!(r, Resolution::Create { visible: true });
}

#[test]
fn new_product_policies() {
    let p = product(42, "A", vec![offer(1, "new", 1, None)]);
    let w = world(MatchKey::Sku, &[shop_product("p1", "A", &["other"])], &[&p]);
    let go = |n| decide(&w, MatchKey::Sku, n, ExistingProductPolicy::Update, &p, &[]);
    assert_eq!(
        go(NewProductPolicy::Hide),
        Resolution::Create { visible: false }
    );
    assert_eq!(
        go(NewProductPolicy::Publish),
        Resolution::Create { visible: true }
    );
    assert!(matches!(
        go(NewProductPolicy::DontCreate),
        Resolution::Skip { .. }
    ));
}

#[test]
fn ambiguity_is_reported_never_guessed() {
    let a = product(1, "A", vec![offer(1, "X", 1, None)]);
    let b = product(2, "B", vec![offer(2, "X", 1, None)]);
    // Two KeyCRM products with one SKU: both ambiguous, even with no shop match.
    let w = world(MatchKey::Sku, &[], &[&a, &b]);
    for (p, other) in [(&a, 2), (&b, 1)] {
        match decide(
            &w,
            MatchKey::Sku,
            NewProductPolicy::Publish,
            ExistingProductPolicy::Update,
            p,
            &[],
        ) {
            Resolution::Ambiguous { detail } => assert!(
                detail.contains(&format!("KeyCRM product {other}")),
                "{detail}"
            ),
            r => panic!("{r:?}"),
        }
    }
    // A key matching two shop products.
    let c = product(3, "C", vec![offer(3, "Y", 1, None)]);
    let w = world(
        MatchKey::Sku,
        &[
            shop_product("p1", "1", &["Y"]),
            shop_product("p2", "2", &["Y"]),
        ],
        &[&c],
    );
    match decide(
        &w,
        MatchKey::Sku,
        NewProductPolicy::Hide,
        ExistingProductPolicy::Update,
        &c,
        &[],
    ) {
        Resolution::Ambiguous { detail } => assert!(detail.contains("p1, p2"), "{detail}"),
        r => panic!("{r:?}"),
    }
    // Two offers matching two different shop products.
    let d2 = product(
        4,
        "D",
        vec![offer(4, "K1", 1, None), offer(5, "K2", 1, None)],
    );
    let w = world(
        MatchKey::Sku,
        &[
            shop_product("p1", "1", &["K1"]),
            shop_product("p2", "2", &["K2"]),
        ],
        &[&d2],
    );
    assert!(matches!(
        decide(
            &w,
            MatchKey::Sku,
            NewProductPolicy::Hide,
            ExistingProductPolicy::Update,
            &d2,
            &[]
        ),
        Resolution::Ambiguous { .. }
    ));
    // One shop product claimed by two KeyCRM products through different keys.
    let e = product(5, "E", vec![offer(6, "M1", 1, None)]);
    let f = product(6, "F", vec![offer(7, "M2", 1, None)]);
    let w = world(
        MatchKey::Sku,
        &[shop_product("p1", "1", &["M1", "M2"])],
        &[&e, &f],
    );
    for p in [&e, &f] {
        assert!(matches!(
            decide(
                &w,
                MatchKey::Sku,
                NewProductPolicy::Hide,
                ExistingProductPolicy::Update,
                p,
                &[]
            ),
            Resolution::Ambiguous { .. }
        ));
    }
    // A shop product already linked to another KeyCRM product.
    let g = product(7, "G", vec![offer(8, "L", 1, None)]);
    let w = world(MatchKey::Sku, &[shop_product("p1", "1", &["L"])], &[&g]);
    match decide(
        &w,
        MatchKey::Sku,
        NewProductPolicy::Hide,
        ExistingProductPolicy::Update,
        &g,
        &[("p1", 99)],
    ) {
        Resolution::Ambiguous { detail } => assert!(
            detail.contains("already linked to KeyCRM product 99"),
            "{detail}"
        ),
        r => panic!("{r:?}"),
    }
    // Two shop products carrying one KeyCRM id as external id.
    let mut s1 = shop_product("p1", "1", &["a"]);
    s1.external_id = Some("7".into());
    let mut s2 = shop_product("p2", "2", &["b"]);
    s2.external_id = Some("7".into());
    let w = world(MatchKey::Name, &[s1, s2], &[&g]);
    assert!(matches!(
        decide(
            &w,
            MatchKey::Name,
            NewProductPolicy::Hide,
            ExistingProductPolicy::Update,
            &g,
            &[]
        ),
        Resolution::Ambiguous { .. }
    ));
}

#[test]
fn external_ids_of_another_accounts_products_are_forgotten() {
    let p = product(42, "A", vec![offer(1, "A-1", 1, None)]);
    let mut old = shop_product("p1", "Old", &["OLD-1"]);
    old.external_id = Some("42".into());
    let mut index = ShopIndex::new(MatchKey::Sku);
    index.add(&old);
    assert_eq!(index.with_external_ids(), vec!["p1".to_string()]);
    index.forget_external_ids(&["p1".to_string()].into_iter().collect());
    assert!(index.by_external_id(42).is_empty());
    assert!(index.with_external_ids().is_empty());
    let w = Matcher::new(index);
    assert_eq!(w.claim(&p, false), None);
}
