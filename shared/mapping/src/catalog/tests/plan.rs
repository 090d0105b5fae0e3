//! Linked products and creates.

use super::*;

#[test]
fn unchanged_linked_product_writes_nothing() {
    let p = product(
        1,
        "A",
        vec![offer(1, "a1", 10, Some(1)), offer(2, "a2", 10, Some(0))],
    );
    let link = linked(&p, Some("c5"));
    for policy in [
        ExistingProductPolicy::Update,
        ExistingProductPolicy::DontUpdate,
    ] {
        let plan = plan_linked(&p, &link, policy, Some("c5"));
        assert!(!plan.writes(), "{policy:?}");
        assert_eq!(plan.outcome, LinkedOutcome::Unchanged);
        assert_eq!(plan.link, link);
    }
}

#[test]
fn update_policy_writes_changed_content_without_blanks() {
    let p = product(1, "A", vec![offer(1, "a1", 10, Some(1))]);
    let link = linked(&p, None);
    let mut q = p.clone();
    q.name = "A new".into();
    q.description = None;
    q.images.clear();
    let plan = plan_linked(&q, &link, ExistingProductPolicy::Update, None);
    let u = plan.upsert.expect("content changed");
    assert_eq!(u.id.as_deref(), Some("s1"));
    assert_eq!(u.name.as_deref(), Some("A new"));
    assert_eq!(u.description, None, "KeyCRM has none: leave the shop's");
    assert!(u.images.is_empty());
    assert_eq!(u.category_id, None);
    assert!(
        u.visible.is_none(),
        "visibility of existing products is the merchant's"
    );
    assert!(u.variants.is_empty(), "variants unchanged");
    assert_eq!(plan.outcome, LinkedOutcome::Updated);
    assert_eq!(plan.link.hash, content_hash(&q, None));
}

#[test]
fn dont_update_policy_writes_only_prices_and_availability() {
    let p = product(
        1,
        "A",
        vec![offer(1, "a1", 10, Some(1)), offer(2, "a2", 10, Some(1))],
    );
    let link = linked(&p, None);
    let mut q = p.clone();
    q.name = "Renamed".into();
    q.offers[0].price = d(12);
    q.offers[1].available = Some(false);
    q.offers[1].sku = Some("changed".into());
    q.offers.push(offer(3, "a3", 10, Some(1)));
    let plan = plan_linked(&q, &link, ExistingProductPolicy::DontUpdate, None);
    assert!(plan.upsert.is_none(), "no content, no new variants");
    assert_eq!(
        plan.prices,
        vec![
            VariantPriceChange {
                product_id: "s1".into(),
                variant_id: "v1".into(),
                price: Some(d(12)),
                available: None
            },
            VariantPriceChange {
                product_id: "s1".into(),
                variant_id: "v2".into(),
                price: None,
                available: Some(false)
            },
        ]
    );
    assert_eq!(plan.outcome, LinkedOutcome::PriceChanged);
    assert_eq!(plan.link.hash, link.hash);
    assert_eq!(plan.link.variants.len(), 2, "the new offer is not linked");
    assert_eq!(plan.link.variants[0].price, Some(d(12)));
}

#[test]
fn update_policy_adds_new_variants_and_folds_prices_into_one_write() {
    let p = product(
        1,
        "A",
        vec![offer(1, "a1", 10, Some(1)), offer(2, "a2", 10, Some(1))],
    );
    let link = linked(&p, None);
    let mut q = p.clone();
    q.offers[0].price = d(15);
    q.offers.push(offer(3, "a3", 20, None));
    let plan = plan_linked(&q, &link, ExistingProductPolicy::Update, None);
    let u = plan.upsert.clone().expect("new variant");
    assert!(u.name.is_none(), "content unchanged");
    assert!(plan.prices.is_empty(), "the price rides along");
    assert_eq!(u.variants.len(), 2);
    let new = u.variants.iter().find(|v| v.id.is_none()).unwrap();
    assert_eq!(new.external_ref, "3");
    assert_eq!(new.sku.as_deref(), Some("a3"));
    assert_eq!(new.available, None, "no stock known: leave availability");
    let price = u
        .variants
        .iter()
        .find(|v| v.id.as_deref() == Some("v1"))
        .unwrap();
    assert_eq!(
        (
            price.external_ref.as_str(),
            price.price,
            price.sku.as_deref()
        ),
        ("1", Some(d(15)), None)
    );
    let mut next = plan.link.clone();
    apply_upsert_result(
        &mut next,
        &q,
        &UpsertResult {
            external_ref: "1".into(),
            id: "s1".into(),
            variants: vec![("1".into(), "v1".into()), ("3".into(), "v9".into())],
        },
    );
    assert_eq!(next.variants.len(), 3);
    assert_eq!(next.variants[2].shop_id, "v9");
    assert_eq!(next.variants[2].hash, variant_hash(&q.offers[2]));
    // Planning again from the new link: nothing left to write.
    assert!(!plan_linked(&q, &next, ExistingProductPolicy::Update, None).writes());
}

#[test]
fn changed_variant_fields_are_rewritten_in_full() {
    let p = product(1, "A", vec![offer(1, "a1", 10, Some(1))]);
    let link = linked(&p, None);
    let mut q = p.clone();
    q.offers[0].barcode = Some("4829999999999".into());
    let u = plan_linked(&q, &link, ExistingProductPolicy::Update, None)
        .upsert
        .unwrap();
    assert_eq!(u.variants.len(), 1);
    assert_eq!(u.variants[0].id.as_deref(), Some("v1"));
    assert_eq!(u.variants[0].barcode.as_deref(), Some("4829999999999"));
    assert_eq!(u.variants[0].sku.as_deref(), Some("a1"));
}

#[test]
fn a_product_seen_in_pieces_is_planned_piece_by_piece() {
    let p = product(
        1,
        "A",
        vec![offer(1, "a1", 10, Some(1)), offer(2, "a2", 10, Some(1))],
    );
    let link = linked(&p, None);
    let mut piece = p.clone();
    piece.offers.truncate(1);
    let plan = plan_linked(&piece, &link, ExistingProductPolicy::Update, None);
    assert!(!plan.writes(), "the absent offer is the sweep's business");
    assert_eq!(plan.link.variants.len(), 2);
}

#[test]
fn swept_products_are_restored_when_they_come_back() {
    let p = product(1, "A", vec![offer(1, "a1", 10, Some(1))]);
    let mut link = linked(&p, None);
    link.swept = Some(Swept::Hidden);
    let plan = plan_linked(&p, &link, ExistingProductPolicy::DontUpdate, None);
    assert_eq!(
        plan.state,
        Some(ProductStateChange {
            id: "s1".into(),
            visible: Some(true),
            available: None
        })
    );
    assert_eq!(plan.outcome, LinkedOutcome::Restored);
    assert_eq!(plan.link.swept, None);
    link.swept = Some(Swept::Unavailable);
    let plan = plan_linked(&p, &link, ExistingProductPolicy::Update, None);
    assert_eq!(plan.state.unwrap().available, Some(true));
}

#[test]
fn gone_variants_come_back_available() {
    let p = product(1, "A", vec![offer(1, "a1", 10, None)]);
    let mut link = linked(&p, None);
    link.variants[0].gone = true;
    link.variants[0].available = Some(false);
    let plan = plan_linked(&p, &link, ExistingProductPolicy::Update, None);
    assert_eq!(
        plan.prices,
        vec![VariantPriceChange {
            product_id: "s1".into(),
            variant_id: "v1".into(),
            price: None,
            available: Some(true)
        }]
    );
    assert!(!plan.link.variants[0].gone);
}

#[test]
fn create_carries_everything_and_the_visibility_policy() {
    let p = product(7, "Сукня", vec![offer(1, "a1", 10, Some(1))]);
    let u = plan_create(&p, false, Some("c5")).unwrap();
    assert_eq!(u.id, None);
    assert_eq!(u.external_ref, "7");
    assert_eq!(u.visible, Some(false));
    assert_eq!(u.category_id.as_deref(), Some("c5"));
    assert_eq!(u.variants[0].external_ref, "1");
    assert_eq!(plan_create(&p, true, None).unwrap().visible, Some(true));
    let mut nameless = p.clone();
    nameless.name = " ".into();
    assert!(plan_create(&nameless, true, None)
        .unwrap_err()
        .contains("no name"));
    let mut empty = p.clone();
    empty.offers.clear();
    assert!(plan_create(&empty, true, None).is_err());
    let link = link_after_upsert(
        &p,
        &UpsertResult {
            external_ref: "7".into(),
            id: "p1".into(),
            variants: vec![("1".into(), "p1-v1".into())],
        },
        Some("c5"),
    );
    assert_eq!(link.shop_id, "p1");
    assert_eq!(link.hash, content_hash(&p, Some("c5")));
    assert!(!plan_linked(&p, &link, ExistingProductPolicy::Update, Some("c5")).writes());
}
