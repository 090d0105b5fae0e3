//! The deterministic seeded catalog: categories, products, offers (EAN-13 barcodes, prices)
//! and their stock across warehouses.

use std::borrow::Cow;

use super::words::{
    form, Var, COLOURS, MODELS, P_COLOUR, P_SIZE, QUALIFIERS, ROOTS, SIZES_CLOTHING, SIZES_KIDS,
    SIZES_SHOES, STYLES,
};
use super::{Catalog, Category, Offer, Product, Prop, Stock, MAIN_WAREHOUSE};
use crate::rng::SplitMix64;

/// EAN-13 check digit for 12 leading digits.
pub(crate) fn ean13_check_digit(first12: &[u8; 12]) -> u8 {
    let sum: u32 = first12
        .iter()
        .enumerate()
        .map(|(i, d)| u32::from(*d) * if i % 2 == 0 { 1 } else { 3 })
        .sum();
    ((10 - sum % 10) % 10) as u8
}

/// Validates a 13-digit EAN code (digits and check digit).
pub fn ean13_is_valid(code: &str) -> bool {
    let b = code.as_bytes();
    if b.len() != 13 || !b.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let mut first = [0u8; 12];
    for (i, d) in b[..12].iter().enumerate() {
        first[i] = d - b'0';
    }
    ean13_check_digit(&first) == b[12] - b'0'
}

pub(super) fn gen_ean(rng: &mut SplitMix64) -> String {
    // 482 = GS1 Ukraine.
    let mut d = [0u8; 12];
    d[0] = 4;
    d[1] = 8;
    d[2] = 2;
    for x in d.iter_mut().skip(3) {
        *x = (rng.next_u64() % 10) as u8;
    }
    let c = ean13_check_digit(&d);
    let mut s = String::with_capacity(13);
    for x in d {
        s.push(char::from(b'0' + x));
    }
    s.push(char::from(b'0' + c));
    s
}

pub(super) fn gen_price(rng: &mut SplitMix64, band: (i64, i64)) -> i64 {
    // Shop-like prices: 1299, 499, sometimes with kopecks (1299.50, 349.99).
    let uah = rng.range(band.0 / 10, band.1 / 10) * 10 - 1;
    let uah = uah.max(9);
    if rng.chance(0.15) {
        let kop = *rng.pick(&[50, 99, 90, 25, 75, 45]);
        uah * 100 + kop
    } else {
        uah * 100
    }
}

struct Leaf {
    category_id: i64,
    root: usize,
    sub: usize,
}

/// Seconds since epoch of 2025-01-01T00:00:00Z.
const EPOCH_2025: i64 = 1_735_689_600;

impl Catalog {
    pub(crate) fn generate(seed: u64, n_products: usize) -> Self {
        let mut rng = SplitMix64::new(seed);
        let mut cat = Catalog {
            next_category_id: 11,
            next_product_id: 101,
            next_offer_id: 1001,
            ..Default::default()
        };

        // ---- categories: roots, children, grandchildren (BFS ids) ----
        let target = (20 + n_products / 550).clamp(20, 200);
        let children_total = ((target - ROOTS.len()) * 6 / 10).clamp(12, 31);
        let mut root_ids = Vec::new();
        for r in ROOTS {
            let id = cat.alloc_category_id();
            cat.categories.push(Category {
                id,
                name: Cow::Borrowed(r.name),
                parent_id: None,
            });
            root_ids.push(id);
        }
        // children: round-robin over roots
        let mut children: Vec<(i64, usize, usize)> = Vec::new(); // (id, root, sub)
        let mut round = 0;
        while children.len() < children_total {
            let mut added = false;
            for (ri, r) in ROOTS.iter().enumerate() {
                if children.len() >= children_total {
                    break;
                }
                if round < r.subs.len() {
                    children.push((0, ri, round));
                    added = true;
                }
            }
            if !added {
                break;
            }
            round += 1;
        }
        children.sort_by_key(|c| (c.1, c.2));
        for c in children.iter_mut() {
            c.0 = cat.alloc_category_id();
            cat.categories.push(Category {
                id: c.0,
                name: Cow::Borrowed(ROOTS[c.1].subs[c.2].name),
                parent_id: Some(root_ids[c.1]),
            });
        }
        let grand_total = target
            .saturating_sub(ROOTS.len() + children.len())
            .min(children.len() * QUALIFIERS.len());
        let mut grand_per_child = vec![0usize; children.len()];
        for i in 0..grand_total {
            grand_per_child[i % children.len()] += 1;
        }
        let mut leaves: Vec<Leaf> = Vec::new();
        let q_offset = rng.index(QUALIFIERS.len());
        for (ci, c) in children.iter().enumerate() {
            if grand_per_child[ci] == 0 {
                leaves.push(Leaf {
                    category_id: c.0,
                    root: c.1,
                    sub: c.2,
                });
            }
        }
        for (ci, c) in children.iter().enumerate() {
            for k in 0..grand_per_child[ci] {
                let id = cat.alloc_category_id();
                let q = QUALIFIERS[(q_offset + ci + k) % QUALIFIERS.len()];
                cat.categories.push(Category {
                    id,
                    name: Cow::Borrowed(q),
                    parent_id: Some(c.0),
                });
                leaves.push(Leaf {
                    category_id: id,
                    root: c.1,
                    sub: c.2,
                });
            }
        }

        // ---- products and offers ----
        let base = EPOCH_2025 + (seed % 180) as i64 * 86_400;
        let span: i64 = 300 * 86_400;
        let step = (span / n_products.max(1) as i64).max(1);
        let catalog_now = base + span + 30 * 86_400;
        cat.products.reserve(n_products);
        cat.offers.reserve(n_products * 3 / 2 + 8);

        for i in 0..n_products {
            let mut pid = cat.next_product_id;
            if rng.chance(0.04) {
                pid += rng.range(1, 5); // gaps like deleted products leave behind
            }
            cat.next_product_id = pid + 1;
            let leaf = &leaves[rng.index(leaves.len())];
            let root = &ROOTS[leaf.root];
            let sub = &root.subs[leaf.sub];
            let (noun, g) = *rng.pick(sub.nouns);
            let style = form(rng.pick(STYLES), g);
            let material = *rng.pick(sub.materials);
            let model = *rng.pick(MODELS);
            let colour_idx = rng.index(COLOURS.len());
            let has_variants = rng.chance(0.40);
            let name = if has_variants {
                format!("{noun} {style} {material} «{model}»")
            } else {
                let c = form(&COLOURS[colour_idx].0, g);
                format!("{noun} {style} {material} «{model}», {c}")
            };
            let created = base + i as i64 * step + rng.range(0, step.min(3600));
            let updated = (created + rng.range(0, 60 * 86_400)).min(catalog_now);
            let archived = rng.chance(0.02);
            let price = gen_price(&mut rng, root.price);
            let margin_pct = rng.range(45, 65);

            let push_offer = |cat: &mut Catalog,
                              rng: &mut SplitMix64,
                              sku: String,
                              price: i64,
                              props: Vec<Prop>,
                              is_default: bool| {
                let oid = cat.next_offer_id;
                cat.next_offer_id += 1;
                let quantity = if rng.chance(0.12) {
                    0
                } else {
                    rng.range(1, 60)
                };
                let in_reserve = if quantity > 0 && rng.chance(0.2) {
                    rng.range(1, quantity.min(3))
                } else {
                    0
                };
                let barcode = if rng.chance(0.15) {
                    None
                } else {
                    Some(gen_ean(rng))
                };
                cat.offers.push(Offer {
                    id: oid,
                    product_id: pid,
                    sku,
                    barcode,
                    price,
                    purchased_price: price * margin_pct / 100,
                    stock: seed_stock(seed, oid, quantity, in_reserve),
                    properties: props,
                    is_default,
                    is_archived: archived,
                    created_at: created,
                    updated_at: updated,
                });
            };

            if has_variants {
                let k = if rng.chance(0.75) { 2 } else { 3 };
                let colour_name = COLOURS[colour_idx].0 .0;
                match sub.var {
                    Var::Clothing | Var::Shoes | Var::Kids => {
                        let sizes = match sub.var {
                            Var::Clothing => SIZES_CLOTHING,
                            Var::Shoes => SIZES_SHOES,
                            _ => SIZES_KIDS,
                        };
                        let start = rng.index(sizes.len() - k + 1);
                        for (j, size) in sizes[start..start + k].iter().enumerate() {
                            // bigger sizes sometimes cost a bit more
                            let p = if j > 0 && rng.chance(0.2) {
                                price + 10_000
                            } else {
                                price
                            };
                            let sku = format!("{}-{}-{}", root.code, pid, size);
                            let props = vec![
                                (Cow::Borrowed(P_COLOUR), Cow::Borrowed(colour_name)),
                                (Cow::Borrowed(P_SIZE), Cow::Borrowed(*size)),
                            ];
                            push_offer(&mut cat, &mut rng, sku, p, props, false);
                        }
                    }
                    Var::Colour => {
                        for j in 0..k {
                            let (forms, code) = &COLOURS[(colour_idx + j * 5) % COLOURS.len()];
                            let sku = format!("{}-{}-{}", root.code, pid, code);
                            let props = vec![(Cow::Borrowed(P_COLOUR), Cow::Borrowed(forms.0))];
                            push_offer(&mut cat, &mut rng, sku, price, props, false);
                        }
                    }
                }
            } else {
                let sku = format!("{}-{}", root.code, pid);
                push_offer(&mut cat, &mut rng, sku, price, Vec::new(), true);
            }
            cat.products.push(Product {
                id: pid,
                name,
                description: None,
                category_id: leaf.category_id,
                has_offers: has_variants,
                is_archived: archived,
                created_at: created,
                updated_at: updated,
            });
        }

        // ---- duplicate-SKU traps: a product reuses another product's SKU ----
        let traps = if n_products >= 50 {
            ((n_products as f64 * 0.002).round() as usize).max(1)
        } else {
            0
        };
        let mut used: Vec<i64> = Vec::new();
        let mut attempts = 0;
        while used.len() < traps * 2 && attempts < traps * 50 {
            attempts += 1;
            let a = rng.index(cat.products.len());
            let b = rng.index(cat.products.len());
            let (pa, pb) = (cat.products[a].id, cat.products[b].id);
            if a == b || used.contains(&pa) || used.contains(&pb) {
                continue;
            }
            let (Some(oa), Some(ob)) = (cat.first_offer_index(pa), cat.first_offer_index(pb))
            else {
                continue;
            };
            let sku = cat.offers[ob].sku.clone();
            cat.offers[oa].sku = sku;
            used.push(pa);
            used.push(pb);
        }
        cat.rebuild_sku_index();
        cat
    }
}

/// A new offer's stock: everything in the main warehouse.
pub(super) fn new_stock(quantity: i64) -> Vec<Stock> {
    vec![Stock {
        warehouse_id: MAIN_WAREHOUSE,
        quantity,
        reserve: 0,
    }]
}

/// Seeded stock: the generated balance lies in the main warehouse; about one offer in ten
/// with a few units keeps part of it in a second warehouse (derived from its own dice, so the
/// catalog's other seeded values do not move).
pub(super) fn seed_stock(seed: u64, offer_id: i64, quantity: i64, reserve: i64) -> Vec<Stock> {
    let mut r = SplitMix64::derive(seed ^ 0x0057_00c4, offer_id as u64);
    let movable = quantity - reserve;
    if quantity >= 4 && movable >= 2 && r.chance(0.1) {
        let k = r.range(1, movable / 2);
        return vec![
            Stock {
                warehouse_id: MAIN_WAREHOUSE,
                quantity: quantity - k,
                reserve,
            },
            Stock {
                warehouse_id: 2,
                quantity: k,
                reserve: 0,
            },
        ];
    }
    vec![Stock {
        warehouse_id: MAIN_WAREHOUSE,
        quantity,
        reserve,
    }]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ean_check_digit_known_value() {
        // 4006381333931 is a well-known valid EAN-13.
        assert!(ean13_is_valid("4006381333931"));
        assert!(!ean13_is_valid("4006381333932"));
        assert!(!ean13_is_valid("400638133393"));
    }

    #[test]
    fn generated_catalog_shape() {
        let c = Catalog::generate(42, 60);
        assert_eq!(c.products.len(), 60);
        assert!(c.categories.len() >= 20);
        assert!(c.categories.iter().any(|x| x.parent_id.is_none()));
        // three levels exist
        let depth2 = c.categories.iter().any(|x| {
            x.parent_id
                .and_then(|p| c.categories.iter().find(|y| y.id == p))
                .is_some_and(|parent| parent.parent_id.is_some())
        });
        assert!(depth2, "expected grandchildren categories");
        for p in &c.products {
            assert!(
                !c.offers_of(p.id).is_empty(),
                "product {} has no offers",
                p.id
            );
        }
        for o in &c.offers {
            if let Some(b) = &o.barcode {
                assert!(ean13_is_valid(b), "bad EAN {b}");
            }
        }
        let snap = c.snapshot();
        assert!(!snap.duplicate_skus().is_empty());
    }

    #[test]
    fn offers_sorted_by_product() {
        let c = Catalog::generate(7, 500);
        assert!(c.offers.windows(2).all(|w| w[0].id < w[1].id));
        assert!(c
            .offers
            .windows(2)
            .all(|w| w[0].product_id <= w[1].product_id));
        assert!(c.products.windows(2).all(|w| w[0].id < w[1].id));
    }
}
