//! The vanish guard on products and offers.

use super::*;

#[test]
fn vanish_guard_limits_the_share() {
    assert_eq!(vanish_guard(0, 0, 0.3), GuardVerdict::Allow);
    assert_eq!(vanish_guard(30, 100, 0.3), GuardVerdict::Allow);
    match vanish_guard(31, 100, 0.3) {
        GuardVerdict::Refuse { message } => assert!(
            message.contains("31 of 100") && message.contains("30%"),
            "{message}"
        ),
        v => panic!("{v:?}"),
    }
    assert!(matches!(
        vanish_guard(1, 0, 0.3),
        GuardVerdict::Refuse { .. }
    ));
    assert_eq!(vanish_guard(100, 100, 1.0), GuardVerdict::Allow);
    assert!(matches!(
        vanish_guard(1, 100, 0.0),
        GuardVerdict::Refuse { .. }
    ));
    assert!(matches!(
        vanish_guard(1, 100, f64::NAN),
        GuardVerdict::Refuse { .. }
    ));
}

#[test]
fn the_offers_guard_counts_variants_that_vanished_from_listed_products() {
    assert_eq!(offers_guard(0, 0, 0.3), GuardVerdict::Allow);
    assert_eq!(offers_guard(3, 10, 0.3), GuardVerdict::Allow);
    let GuardVerdict::Refuse { message } = offers_guard(4, 10, 0.3) else {
        panic!("4 of 10 is over 30%");
    };
    assert!(message.contains("4 of 10 linked variants"), "{message}");
    assert!(matches!(
        offers_guard(1, 10, f64::NAN),
        GuardVerdict::Refuse { .. }
    ));
    assert_eq!(offers_guard(10, 10, 1.0), GuardVerdict::Allow);
}

#[test]
fn the_guards_say_what_they_refused_in_full() {
    let GuardVerdict::Refuse { message } = vanish_guard(31, 100, 0.3) else {
        panic!("31 of 100 is over 30%");
    };
    assert_eq!(
        message,
        "31 of 100 linked products vanished from KeyCRM (31.0%), more than the vanish guard \
         allows (30%, at most 30); nothing was hidden or made unavailable. Check the KeyCRM \
         catalog and the category filter, or raise the guard."
    );
    let GuardVerdict::Refuse { message } = offers_guard(1, 0, 2.0) else {
        panic!("anything of nothing is over the guard");
    };
    assert_eq!(
        message,
        "1 of 0 linked variants vanished from KeyCRM products that are still listed (100.0%), \
         more than the vanish guard allows (100%, at most 0); no variant was made unavailable. \
         Check the KeyCRM catalog, or raise the guard."
    );
}
