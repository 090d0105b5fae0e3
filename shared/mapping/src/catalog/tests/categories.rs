//! Categories.

use super::*;

fn cat(id: i64, parent: Option<i64>) -> Category {
    Category {
        id,
        name: format!("C{id}"),
        parent_id: parent,
    }
}

#[test]
fn categories_are_ordered_parents_first_and_cycles_reported() {
    let cats = vec![
        cat(5, Some(3)),
        cat(3, Some(1)),
        cat(1, None),
        cat(2, None),
        cat(9, Some(77)),
        cat(10, Some(11)),
        cat(11, Some(10)),
        cat(12, Some(12)),
        cat(13, Some(10)),
    ];
    let (levels, broken) = category_levels(&cats);
    let ids: Vec<Vec<i64>> = levels
        .iter()
        .map(|l| l.iter().map(|c| c.id).collect())
        .collect();
    assert_eq!(
        ids,
        vec![vec![1, 2, 9], vec![3], vec![5]],
        "a dangling parent makes a root"
    );
    assert_eq!(broken, vec![10, 11, 12, 13]);
}

#[test]
fn category_filter_includes_descendants_and_ancestors_for_the_tree() {
    let cats = vec![
        cat(1, None),
        cat(2, Some(1)),
        cat(3, Some(2)),
        cat(4, Some(1)),
        cat(5, None),
        cat(6, Some(6)),
    ];
    assert_eq!(descendants(&cats, &[2]), BTreeSet::from([2, 3]));
    assert_eq!(descendants(&cats, &[1]), BTreeSet::from([1, 2, 3, 4]));
    assert_eq!(
        descendants(&cats, &[6]),
        BTreeSet::from([6]),
        "a self-parent does not loop"
    );
    assert_eq!(
        with_ancestors(&cats, &BTreeSet::from([3])),
        BTreeSet::from([1, 2, 3])
    );
    assert_eq!(category_scope(&cats, &[]), None);
    assert_eq!(
        category_scope(&cats, &[2, 5]),
        Some(BTreeSet::from([2, 3, 5]))
    );
}

#[test]
fn category_writes_only_when_name_or_parent_changed() {
    let c = cat(3, Some(1));
    let u = category_upsert(&c, Some("s1"), None).unwrap();
    assert_eq!(
        (u.id, u.external_ref.as_str(), u.parent_id.as_deref()),
        (None, "3", Some("s1"))
    );
    let link = CategoryLink {
        keycrm_id: 3,
        shop_id: "s3".into(),
        hash: category_hash("C3", Some("s1")),
        hidden: false,
    };
    assert_eq!(category_upsert(&c, Some("s1"), Some(&link)), None);
    let moved = category_upsert(&c, Some("s2"), Some(&link)).unwrap();
    assert_eq!(
        (moved.id.as_deref(), moved.parent_id.as_deref()),
        (Some("s3"), Some("s2"))
    );
    let renamed = Category {
        name: "Нова".into(),
        ..c
    };
    assert_eq!(
        category_upsert(&renamed, Some("s1"), Some(&link))
            .unwrap()
            .name,
        "Нова"
    );
    let mut links = BTreeMap::new();
    links.insert(3, link);
    assert_eq!(shop_category(&links, Some(3)), Some("s3"));
    assert_eq!(shop_category(&links, Some(4)), None);
}
