//! What each match key does, and the one order an unlinked product is looked up in.

use super::*;

#[test]
fn every_key_has_its_label_and_its_rules() {
    // (label, matches existing products, trusts the external id, … when the create is ours)
    let expected = |k: MatchKey| match k {
        MatchKey::Id => ("id", true, true, true),
        MatchKey::Sku => ("SKU", true, true, true),
        MatchKey::Name => ("name", true, true, true),
        MatchKey::Barcode => ("barcode", true, true, true),
        MatchKey::ExternalId => ("external id", true, true, true),
        MatchKey::CreateOnly => ("nothing", false, false, true),
    };
    let distinct: HashSet<MatchKey> = MatchKey::ALL.into_iter().collect();
    assert_eq!(distinct.len(), 6, "ALL names every key once");
    assert!(MatchKey::ALL.contains(&MatchKey::default()));
    for k in MatchKey::ALL {
        assert_eq!(
            (
                k.label(),
                k.matches_existing(),
                k.trusts_external_id(false),
                k.trusts_external_id(true)
            ),
            expected(k),
            "{k:?}"
        );
    }
}

#[test]
fn found_names_a_single_shop_product_only_when_there_is_exactly_one() {
    let keys = vec!["A-1".to_string()];
    assert_eq!(Found::ByExternalId(vec![3]).single(), Some(3));
    assert_eq!(Found::ByExternalId(vec![3, 4]).single(), None);
    let by_key = |shop: Vec<u32>| Found::ByKey {
        keys: keys.clone(),
        shop,
    };
    assert_eq!(by_key(vec![]).single(), None);
    assert_eq!(by_key(vec![5]).single(), Some(5));
    assert_eq!(by_key(vec![5, 6]).single(), None);
    assert_eq!(Found::NotLooked.single(), None);
}

/// A shop product that `key` matches to the KeyCRM product below (and nothing else does).
fn matched_by(key: MatchKey, n: usize) -> ShopProduct {
    let mut s = shop_product(&format!("k{n}"), &format!("other {n}"), &[&format!("z{n}")]);
    match key {
        MatchKey::Id => s.id = "42".into(),
        MatchKey::Sku => s.variants[0].sku = Some("A-1".into()),
        MatchKey::Barcode => s.variants[0].barcode = Some("4820000000001".into()),
        MatchKey::Name => s.name = " СУКНЯ  лляна".into(),
        MatchKey::ExternalId => s.external_id = Some("42".into()),
        // Create-only matches nothing: give it every value but the external id.
        MatchKey::CreateOnly => {
            s.name = "Сукня лляна".into();
            s.variants[0].sku = Some("A-1".into());
            s.variants[0].barcode = Some("4820000000001".into());
        }
    }
    s
}

#[test]
fn the_external_id_comes_first_then_the_key_for_every_key() {
    let p = product(42, "Сукня лляна", vec![offer(1, "A-1", 1, None)]);
    for key in MatchKey::ALL {
        for creating in [false, true] {
            for n_ext in 0..=2usize {
                for n_key in 0..=2usize {
                    // External-id carriers first, then key matches, then a stranger.
                    let mut shop: Vec<ShopProduct> = (0..n_ext)
                        .map(|i| {
                            let mut s = shop_product(&format!("e{i}"), "x", &[&format!("y{i}")]);
                            s.external_id = Some("42".into());
                            s
                        })
                        .collect();
                    shop.extend((0..n_key).map(|i| matched_by(key, i)));
                    shop.push(shop_product("stranger", "Інше", &["B-9"]));
                    let mut index = ShopIndex::new(key);
                    shop.iter().for_each(|s| index.add(s));
                    assert_eq!(index.key(), key);

                    let carriers: Vec<u32> = (0..shop.len() as u32)
                        .filter(|i| shop[*i as usize].external_id.as_deref() == Some("42"))
                        .collect();
                    let by_key: Vec<u32> = (n_ext as u32..(n_ext + n_key) as u32).collect();
                    let want = if carriers.is_empty() || (key == MatchKey::CreateOnly && !creating)
                    {
                        match key {
                            MatchKey::CreateOnly => Found::NotLooked,
                            // The external id key's matches are external-id carriers.
                            MatchKey::ExternalId => Found::ByKey {
                                keys: vec!["42".into()],
                                shop: Vec::new(),
                            },
                            _ => Found::ByKey {
                                keys: key.crm_keys(&p),
                                shop: by_key.clone(),
                            },
                        }
                    } else {
                        Found::ByExternalId(carriers.clone())
                    };
                    let case = format!("{key:?} creating={creating} ext={n_ext} key={n_key}");
                    let found = index.find(&p, creating);
                    assert_eq!(found, want, "{case}");

                    // The matcher claims by the same lookup.
                    let mut m = Matcher::new(index);
                    m.count(&p, creating);
                    assert_eq!(m.key(), key, "{case}");
                    assert_eq!(m.claim(&p, creating), found.single(), "{case}");
                    let single = match &want {
                        Found::ByExternalId(c) if c.len() == 1 => Some(c[0]),
                        Found::ByKey { shop, .. } if shop.len() == 1 => Some(shop[0]),
                        _ => None,
                    };
                    assert_eq!(found.single(), single, "{case}");
                }
            }
        }
    }
}
