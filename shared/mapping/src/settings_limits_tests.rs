use super::*;
use crate::reference::KeycrmReference;
use crate::settings::{
    AddonLink, CardStatusFrom, CardStatusMap, CardStatusTo, DeliveryLink, OrderStatusFrom,
    OrderStatusMap, OrderStatusTo, OrderSyncType, PaymentLink, Settings,
};
use crate::settings_problem::FieldError;
use crate::shop::{NamedItem, ShopAddon, ShopReference};
use crate::testdata::{crm_reference, shop_reference};
use crate::Lang;

/// What settings that pass validation may grow to in JSON, whatever the request held.
const SETTINGS_JSON_BOUND: usize = 192 * 1024;

#[test]
fn ids_are_bounded_in_bytes_and_plain() {
    assert_eq!(id_issue("new"), None);
    assert_eq!(id_issue("0b8e2f3a-6c1d-4e5f-9a7b-123456789abc"), None);
    assert_eq!(id_issue("OR_1001"), None);
    assert_eq!(id_issue("оплачено"), None, "non-ASCII is fine");
    assert_eq!(id_issue(""), None, "empty is only unknown");
    assert_eq!(id_issue(&"a".repeat(MAX_ID_LEN)), None);
    assert_eq!(
        id_issue(&"a".repeat(MAX_ID_LEN + 1)),
        Some(Issue::TooLong { max: MAX_ID_LEN })
    );
    // Two-byte letters: half as many fit.
    assert_eq!(id_issue(&"ї".repeat(MAX_ID_LEN / 2)), None);
    assert_eq!(
        id_issue(&"ї".repeat(MAX_ID_LEN / 2 + 1)),
        Some(Issue::TooLong { max: MAX_ID_LEN })
    );
    for bad in ["a\"b", "a\\b", "a\nb", "\t", "\u{0}", "a\u{7f}", "\u{85}"] {
        assert_eq!(id_issue(bad), Some(Issue::InvalidCharacters), "{bad:?}");
    }
    // One problem per id: too long wins.
    assert_eq!(
        id_issue(&"\"".repeat(MAX_ID_LEN + 1)),
        Some(Issue::TooLong { max: MAX_ID_LEN })
    );
}

#[test]
fn a_list_is_too_long_only_past_its_maximum() {
    assert_eq!(too_many("addon_fields", 0, 32), None);
    assert_eq!(too_many("addon_fields", 32, 32), None);
    assert_eq!(
        too_many("addon_fields", 33, 32),
        Some(Problem::new(
            "addon_fields",
            Issue::TooManyEntries { max: 32 }
        ))
    );
    assert!(too_many("addon_fields", usize::MAX, 32).is_some());
}

/// A distinct id of exactly [`MAX_ID_LEN`] bytes.
fn long_id(prefix: &str, i: usize) -> String {
    let s = format!("{prefix}-{i}-");
    let id = format!("{s}{}", "x".repeat(MAX_ID_LEN - s.len()));
    assert_eq!((id.len(), id_issue(&id)), (MAX_ID_LEN, None));
    id
}

/// A KeyCRM id as wide as an `i64` gets in JSON (20 characters).
fn wide_id(i: usize) -> i64 {
    i64::MIN + i as i64
}

/// The largest settings that pass: every list at its maximum, every id at its longest, and
/// dictionaries on both sides that hold exactly what they name.
fn largest() -> (Settings, KeycrmReference, ShopReference) {
    let mut crm = crm_reference();
    let mut shop = shop_reference();
    let statuses: Vec<String> = (0..MAX_SHOP_STATUS_LINKS)
        .map(|i| long_id("status", i))
        .collect();
    shop.order_statuses = statuses
        .iter()
        .map(|id| NamedItem {
            id: id.clone(),
            name: id.clone(),
        })
        .collect();
    shop.order_addons = (0..MAX_ADDON_LINKS)
        .map(|i| ShopAddon {
            id: long_id("addon", i),
            name: "Addon".into(),
            addon_type: "text".into(),
        })
        .collect();
    let methods = |prefix: &str| -> Vec<NamedItem> {
        (0..MAX_METHOD_LINKS)
            .map(|i| NamedItem {
                id: long_id(prefix, i),
                name: prefix.into(),
            })
            .collect()
    };
    shop.payment_methods = methods("pay");
    shop.delivery_methods = methods("ship");

    crm.sources[0].id = wide_id(0);
    let status = crm.order_statuses[0].clone();
    crm.order_statuses = (0..MAX_KEYCRM_STATUS_LINKS)
        .map(|i| {
            let mut s = status.clone();
            s.id = wide_id(i);
            s
        })
        .collect();
    let pipeline_id = wide_id(0);
    let mut pipeline = crm.pipelines[0].clone();
    pipeline.pipeline.id = pipeline_id;
    let pstatus = pipeline.statuses[0].clone();
    pipeline.statuses = (0..MAX_KEYCRM_STATUS_LINKS)
        .map(|i| {
            let mut s = pstatus.clone();
            s.id = wide_id(i);
            s.pipeline_id = pipeline_id;
            s
        })
        .collect();
    crm.pipelines = vec![pipeline];
    let payment = crm.payment_methods[0].clone();
    crm.payment_methods = (0..MAX_METHOD_LINKS)
        .map(|i| {
            let mut m = payment.clone();
            m.id = wide_id(i);
            m
        })
        .collect();
    let delivery = crm.delivery_services[0].clone();
    crm.delivery_services = (0..MAX_METHOD_LINKS)
        .map(|i| {
            let mut d = delivery.clone();
            d.id = wide_id(i);
            d
        })
        .collect();
    let field = crm.order_fields[0].clone();
    crm.order_fields = (0..MAX_ADDON_LINKS)
        .map(|i| {
            let mut f = field.clone();
            f.uuid = long_id("OR", i);
            f
        })
        .collect();
    let category = crm.categories[0].clone();
    crm.categories = (0..MAX_CATEGORY_FILTER)
        .map(|i| {
            let mut c = category.clone();
            c.id = wide_id(i);
            c
        })
        .collect();

    // KeyCRM status j comes back as shop status j mod 32, and shop status i goes to KeyCRM
    // status i: both directions agree.
    let back = |j: usize| statuses[j % MAX_SHOP_STATUS_LINKS].clone();
    let s = Settings {
        sync_products: true,
        realtime_stock: true,
        sync_categories: true,
        category_filter: (0..MAX_CATEGORY_FILTER).map(wide_id).collect(),
        vanish_guard: 1.0 / 3.0,
        order_sync: OrderSyncType::Orders,
        source_id: Some(wide_id(0)),
        order_statuses: OrderStatusMap {
            from_keycrm: (0..MAX_KEYCRM_STATUS_LINKS)
                .map(|j| OrderStatusFrom {
                    keycrm_status_id: wide_id(j),
                    shop_status: back(j),
                })
                .collect(),
            to_keycrm: (0..MAX_SHOP_STATUS_LINKS)
                .map(|i| OrderStatusTo {
                    shop_status: statuses[i].clone(),
                    keycrm_status_id: wide_id(i),
                })
                .collect(),
        },
        card_statuses: CardStatusMap {
            from_keycrm: (0..MAX_KEYCRM_STATUS_LINKS)
                .map(|j| CardStatusFrom {
                    pipeline_id,
                    status_id: wide_id(j),
                    shop_status: back(j),
                })
                .collect(),
            to_keycrm: (0..MAX_SHOP_STATUS_LINKS)
                .map(|i| CardStatusTo {
                    shop_status: statuses[i].clone(),
                    pipeline_id,
                    status_id: wide_id(i),
                })
                .collect(),
        },
        default_pipeline_id: Some(pipeline_id),
        addon_fields: (0..MAX_ADDON_LINKS)
            .map(|i| AddonLink {
                addon_id: shop.order_addons[i].id.clone(),
                field_uuid: crm.order_fields[i].uuid.clone(),
            })
            .collect(),
        payment_map: (0..MAX_METHOD_LINKS)
            .map(|i| PaymentLink {
                shop_method: shop.payment_methods[i].id.clone(),
                keycrm_method_id: wide_id(i),
            })
            .collect(),
        delivery_map: (0..MAX_METHOD_LINKS)
            .map(|i| DeliveryLink {
                shop_method: shop.delivery_methods[i].id.clone(),
                keycrm_service_id: wide_id(i),
            })
            .collect(),
        ..Settings::default()
    };
    (s, crm, shop)
}

#[test]
fn the_largest_valid_settings_serialize_well_under_the_bound() {
    let (s, crm, shop) = largest();
    assert_eq!(s.problems(&crm, &shop), vec![]);
    // Every list is full.
    let lens = [
        (s.category_filter.len(), MAX_CATEGORY_FILTER),
        (s.order_statuses.from_keycrm.len(), MAX_KEYCRM_STATUS_LINKS),
        (s.order_statuses.to_keycrm.len(), MAX_SHOP_STATUS_LINKS),
        (s.card_statuses.from_keycrm.len(), MAX_KEYCRM_STATUS_LINKS),
        (s.card_statuses.to_keycrm.len(), MAX_SHOP_STATUS_LINKS),
        (s.addon_fields.len(), MAX_ADDON_LINKS),
        (s.payment_map.len(), MAX_METHOD_LINKS),
        (s.delivery_map.len(), MAX_METHOD_LINKS),
    ];
    for (len, max) in lens {
        assert_eq!(len, max);
    }
    let json = serde_json::to_vec(&s).unwrap();
    // 188 KiB at most: under half of DynamoDB's 400 KB item, a fifth of SQS's 1 MiB message.
    assert!(
        json.len() < SETTINGS_JSON_BOUND,
        "{} bytes, bound {SETTINGS_JSON_BOUND}",
        json.len()
    );
    assert!(json.len() > SETTINGS_JSON_BOUND / 2, "{} bytes", json.len());
    // Pretty-printed (as a person might send them) they are still far below the item limit.
    assert!(serde_json::to_vec_pretty(&s).unwrap().len() < 2 * SETTINGS_JSON_BOUND);
    let again: Settings = serde_json::from_slice(&json).unwrap();
    assert_eq!(again, s);
}

/// Every list in the settings, by its path, with a way to add one more entry to it.
type Grow = fn(&mut Settings);
fn lists() -> Vec<(&'static str, Grow)> {
    vec![
        ("category_filter", |s| s.category_filter.push(1)),
        ("order_statuses.from_keycrm", |s| {
            let e = s.order_statuses.from_keycrm[0].clone();
            s.order_statuses.from_keycrm.push(e);
        }),
        ("order_statuses.to_keycrm", |s| {
            let e = s.order_statuses.to_keycrm[0].clone();
            s.order_statuses.to_keycrm.push(e);
        }),
        ("card_statuses.from_keycrm", |s| {
            let e = s.card_statuses.from_keycrm[0].clone();
            s.card_statuses.from_keycrm.push(e);
        }),
        ("card_statuses.to_keycrm", |s| {
            let e = s.card_statuses.to_keycrm[0].clone();
            s.card_statuses.to_keycrm.push(e);
        }),
        ("addon_fields", |s| {
            let e = s.addon_fields[0].clone();
            s.addon_fields.push(e);
        }),
        ("payment_map", |s| {
            let e = s.payment_map[0].clone();
            s.payment_map.push(e);
        }),
        ("delivery_map", |s| {
            let e = s.delivery_map[0].clone();
            s.delivery_map.push(e);
        }),
    ]
}

#[test]
fn one_entry_past_the_maximum_of_any_list_is_one_problem_at_the_list() {
    for (path, grow) in lists() {
        let (mut s, crm, shop) = largest();
        grow(&mut s);
        let probs = s.problems(&crm, &shop);
        // The entries are not checked one by one: the repeated entry is not reported too.
        assert_eq!(probs.len(), 1, "{path}: {probs:?}");
        assert_eq!(probs[0].field, path);
        assert_eq!(probs[0].code(), "too_many_entries");
        let max = match probs[0].issue {
            Issue::TooManyEntries { max } => max,
            ref other => panic!("{path}: {other:?}"),
        };
        assert_eq!(
            probs[0].message(Lang::En),
            format!("too many entries: at most {max}")
        );
        assert_eq!(
            probs[0].message(Lang::Uk),
            format!("забагато записів: щонайбільше {max}")
        );
    }
}

#[test]
fn the_audit_category_filters_are_refused_with_one_short_problem() {
    // 100,000 (about 300 KB, once accepted and then poisoning the sync worker), 200,000
    // (over DynamoDB's item size) and 400,000 (over SQS's message size) repeats of one
    // existing category.
    for n in [100_000, 200_000, 400_000] {
        let body = format!(
            r#"{{"sync_products": true, "category_filter": [{}]}}"#,
            vec!["11"; n].join(",")
        );
        let s: Settings = serde_json::from_str(&body).unwrap();
        let errs = s.validate(&crm_reference(), &shop_reference());
        assert_eq!(
            errs,
            vec![FieldError::new(
                "category_filter",
                "too_many_entries",
                format!("too many entries: at most {MAX_CATEGORY_FILTER}")
            )],
            "{n}"
        );
    }
    // At the maximum, each repeat is named once, pointing at the first.
    let s = Settings {
        category_filter: vec![11; MAX_CATEGORY_FILTER],
        ..Settings::default()
    };
    let probs = s.problems(&crm_reference(), &shop_reference());
    assert_eq!(probs.len(), MAX_CATEGORY_FILTER - 1);
    assert!(probs.iter().all(|p| p.code() == "category_listed_twice"
        && p.issue
            == Issue::CategoryListedTwice {
                first: "category_filter[0]".into()
            }));
    assert_eq!(probs[0].field, "category_filter[1]");
    assert_eq!(
        probs.last().map(|p| p.field.as_str()),
        Some(format!("category_filter[{}]", MAX_CATEGORY_FILTER - 1).as_str())
    );
}

#[test]
fn a_huge_legacy_status_list_is_read_fast_and_refused() {
    // The old single-direction form is still read from requests: 100,000 distinct statuses
    // migrate in n log n (a scan per entry would take minutes), and are refused as too many.
    let entries: Vec<String> = (0..100_000)
        .map(|i| format!(r#"{{"shop_status":"s{i}","keycrm_status_id":{i}}}"#))
        .collect();
    let body = format!(r#"{{"status_map": [{}]}}"#, entries.join(","));
    let s: Settings = serde_json::from_str(&body).unwrap();
    assert_eq!(s.order_statuses.to_keycrm.len(), 100_000);
    assert_eq!(s.order_statuses.from_keycrm.len(), 100_000);
    let fields: Vec<(String, &str)> = s
        .problems(&crm_reference(), &shop_reference())
        .into_iter()
        .map(|p| (p.field.clone(), p.code()))
        .collect();
    assert_eq!(
        fields,
        vec![
            ("order_statuses.from_keycrm".to_string(), "too_many_entries"),
            ("order_statuses.to_keycrm".to_string(), "too_many_entries"),
        ]
    );
}

#[test]
fn every_id_in_the_settings_is_bounded_and_named_by_its_path() {
    let long = "a".repeat(MAX_ID_LEN + 1);
    let quoted = "new\"";
    let (mut s, crm, shop) = largest();
    s.order_statuses.from_keycrm[1].shop_status = long.clone();
    s.order_statuses.to_keycrm[1].shop_status = quoted.into();
    s.card_statuses.from_keycrm[2].shop_status = quoted.into();
    s.card_statuses.to_keycrm[2].shop_status = long.clone();
    s.addon_fields[3].addon_id = long.clone();
    s.addon_fields[4].field_uuid = quoted.into();
    s.payment_map[5].shop_method = long.clone();
    s.delivery_map[6].shop_method = "np\u{0}".into();
    let probs = s.problems(&crm, &shop);
    let got: Vec<(&str, &str)> = probs.iter().map(|p| (p.field.as_str(), p.code())).collect();
    assert_eq!(
        got,
        vec![
            ("order_statuses.from_keycrm[1].shop_status", "too_long"),
            (
                "order_statuses.to_keycrm[1].shop_status",
                "invalid_characters"
            ),
            (
                "card_statuses.from_keycrm[2].shop_status",
                "invalid_characters"
            ),
            ("card_statuses.to_keycrm[2].shop_status", "too_long"),
            ("addon_fields[3].addon_id", "too_long"),
            ("addon_fields[4].field_uuid", "invalid_characters"),
            ("payment_map[5].shop_method", "too_long"),
            ("delivery_map[6].shop_method", "invalid_characters"),
            // The shop's methods must all be mapped for order push, and these two are not.
            ("payment_map", "payment_method_unmapped"),
        ]
    );
    // A malformed id is not looked up as well, and never echoed.
    for p in &probs {
        let (en, uk) = (p.render(Lang::En), p.render(Lang::Uk));
        assert_eq!((en.code.as_str(), uk.code.as_str()), (p.code(), p.code()));
        assert_ne!(en.message, uk.message);
        for m in [&en.message, &uk.message] {
            assert!(!m.contains(&long) && !m.contains(quoted) && !m.contains('\0'));
        }
    }
    assert_eq!(
        probs[0].message(Lang::En),
        format!("this id is too long: at most {MAX_ID_LEN} bytes")
    );
    assert_eq!(
        probs[0].message(Lang::Uk),
        format!("задовгий ідентифікатор: щонайбільше {MAX_ID_LEN} байтів")
    );
    assert_eq!(
        probs[1].message(Lang::En),
        "an id has no control characters, quotes or backslashes"
    );
}
