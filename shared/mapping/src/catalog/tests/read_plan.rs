//! The read plan.

use super::*;

#[test]
fn read_plan_picks_the_cheaper_listing() {
    // 20 000 offers; a filter keeping 500 products (750 offers): products + offers by id.
    assert_eq!(read_plan_costs(20_000, 500, 1.5), (400, 10 + 5 * 3));
    assert_eq!(choose_read_plan(20_000, 500, 1.5), ReadPlan::ByProducts);
    // A filter keeping most of the catalog: reading every offer is cheaper.
    assert_eq!(choose_read_plan(20_000, 12_000, 1.5), ReadPlan::AllOffers);
    assert_eq!(choose_read_plan(100, 0, 1.5), ReadPlan::ByProducts);
    assert_eq!(read_plan_costs(10, 0, f64::NAN), (1, 0));
    assert_eq!(pages(0), 0);
    assert_eq!(pages(51), 2);
}
