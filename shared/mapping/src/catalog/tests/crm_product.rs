//! The compact KeyCRM catalog and its hashes.

use super::*;

#[test]
fn offers_group_by_product_and_keep_blanks_out() {
    // A live-shaped row: unused fields (purchased price, timestamps, aggregates) are
    // skipped while parsing; money may be a number or a string.
    let mk = |id: i64, pid: i64, sku: &str| -> ListedOffer {
        serde_json::from_value(serde_json::json!({
            "id": id, "product_id": pid, "sku": sku, "barcode": "  ",
            "price": 100, "purchased_price": "37.5", "quantity": 3, "in_reserve": "3",
            "weight": null, "is_default": false, "is_archived": false,
            "created_at": "2023-06-20T12:27:55.000000Z",
            "properties": [{"name": "Колір", "value": "білий"}, {"name": " ", "value": "x"}],
            "product": {
                "id": pid, "name": format!("  Товар {pid} "), "description": "   ",
                "thumbnail_url": "https://t/p.webp", "category_id": 0, "min_price": 100,
                "properties_agg": {"Колір": ["білий"]}, "sources": [], "has_offers": true
            }
        }))
        .unwrap()
    };
    let groups = group_offers(vec![
        mk(2, 10, "A"),
        mk(1, 10, "B"),
        mk(3, 11, "C"),
        mk(4, 10, "D"),
    ]);
    assert_eq!(groups.len(), 2);
    let g = &groups[0];
    assert_eq!(g.id, 10);
    assert_eq!(g.name, "Товар 10");
    assert_eq!(
        g.description, None,
        "blank description is absent, not empty"
    );
    assert_eq!(g.category_id, None, "category 0 means none");
    assert_eq!(g.images, vec!["https://t/p.webp".to_string()]);
    assert_eq!(
        g.offers.iter().map(|o| o.id).collect::<Vec<_>>(),
        vec![1, 2, 4]
    );
    assert_eq!(g.offers[0].barcode, None);
    assert_eq!(
        g.offers[0].available,
        Some(false),
        "3 on hand, 3 reserved: nothing to sell"
    );
    assert_eq!(
        g.offers[0].properties,
        vec![("Колір".to_string(), "білий".to_string())]
    );
}

#[test]
fn merge_unites_offers_of_a_product_seen_twice() {
    let mut a = product(1, "A", vec![offer(1, "a1", 10, Some(1))]);
    let mut later = product(
        1,
        "A2",
        vec![offer(3, "a3", 30, Some(1)), offer(1, "a1", 11, Some(1))],
    );
    later.description = None;
    a.merge(later);
    assert_eq!(a.name, "A2");
    assert_eq!(a.offers.len(), 2);
    assert_eq!(a.offers[0].price, d(11), "the later sighting wins");
}

#[test]
fn hashes_are_stable_and_field_sensitive() {
    let p = product(1, "Сукня", vec![offer(1, "A-1", 100, Some(2))]);
    let h = content_hash(&p, Some("c1"));
    assert_eq!(h, content_hash(&p.clone(), Some("c1")));
    assert_ne!(h, content_hash(&p, Some("c2")));
    assert_ne!(h, content_hash(&p, None));
    let mut q = p.clone();
    q.offers[0].price = d(5);
    assert_eq!(h, content_hash(&q, Some("c1")), "prices are not content");
    q.name = "Сукня лляна".into();
    assert_ne!(h, content_hash(&q, Some("c1")));
    let mut o = p.offers[0].clone();
    let vh = variant_hash(&o);
    o.price = d(1);
    o.available = Some(false);
    assert_eq!(vh, variant_hash(&o), "price and stock are compared apart");
    o.sku = Some("A-2".into());
    assert_ne!(vh, variant_hash(&o));
    assert_ne!(category_hash("a", None), category_hash("a", Some("p")));
    assert_ne!(content_hash(&p, None), 0);
}
