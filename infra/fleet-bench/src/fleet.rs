//! The simulated fleet: shops with catalogs sized like real ones and orders through the day.

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use mapping::settings::{DeliveryLink, OrderStatusMap, PaymentLink};
use mapping::{OrderSyncType, Settings};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};

/// One shop of the fleet and its KeyCRM account (one API key each).
#[derive(Clone, Debug)]
pub struct ShopSpec {
    pub index: usize,
    pub conn_id: String,
    pub shop_id: String,
    pub api_key: String,
    pub secret: String,
    pub products: usize,
    pub orders_per_day: f64,
    /// The reference profiles the cost per shop is quoted for.
    pub probe: Option<Profile>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Profile {
    Small,
    Typical,
    Large,
}

impl Profile {
    pub fn label(self) -> &'static str {
        match self {
            Profile::Small => "small (200 products, 10 orders/day)",
            Profile::Typical => "typical (1,000 products, 30 orders/day)",
            Profile::Large => "large (50,000 products, 300 orders/day)",
        }
    }
    fn size(self) -> (usize, f64) {
        match self {
            Profile::Small => (200, 10.0),
            Profile::Typical => (1000, 30.0),
            Profile::Large => (50_000, 300.0),
        }
    }
}

/// The probes (two small, two typical, one large), a few large catalogs, and the rest sized
/// like ordinary shops: 100–2,000 products (log-uniform), orders skewed towards few a day.
pub fn fleet(n: usize, seed: u64, product_scale: f64) -> Vec<ShopSpec> {
    let mut rng = StdRng::seed_from_u64(seed);
    let probes = [
        Profile::Small,
        Profile::Small,
        Profile::Typical,
        Profile::Typical,
        Profile::Large,
    ];
    let big = [(20_000usize, 150.0f64), (35_000, 200.0), (100_000, 500.0)];
    (0..n)
        .map(|i| {
            let (products, orders, probe) = if let Some(p) = probes.get(i) {
                let (pr, o) = p.size();
                (pr, o, Some(*p))
            } else if let Some((pr, o)) = big.get(i - probes.len()) {
                (*pr, *o, None)
            } else {
                let products = (100f64 * 20f64.powf(rng.gen::<f64>())).round() as usize;
                let r: f64 = rng.gen();
                let orders = if r < 0.70 {
                    rng.gen_range(0.0..30.0)
                } else if r < 0.95 {
                    rng.gen_range(30.0..150.0)
                } else {
                    rng.gen_range(150.0..500.0)
                };
                (products, orders, None)
            };
            let digest = Sha256::digest(format!("fleet-shop-{i}").as_bytes());
            let conn_id = hex::encode(&digest[..16]);
            // The probes keep their size: the cost per shop is quoted for exactly those.
            let products = if probe.is_some() {
                products
            } else {
                ((products as f64 * product_scale).round() as usize).max(5)
            };
            ShopSpec {
                index: i,
                secret: format!("shop-keycrm/fleet/keycrm/{conn_id}"),
                conn_id,
                shop_id: format!("shop-{i:05}"),
                api_key: format!("fleet-key-{i:05}-{}", hex::encode(&digest[16..24])),
                products,
                orders_per_day: orders,
                probe,
            }
        })
        .collect()
}

/// Every shop syncs its catalog and pushes orders, with statuses mapped both ways.
pub fn settings() -> Settings {
    Settings {
        sync_products: true,
        sync_categories: true,
        order_sync: OrderSyncType::Orders,
        source_id: Some(1),
        order_statuses: OrderStatusMap::from_legacy([
            ("new".to_string(), 1),
            ("paid".to_string(), 4),
            ("done".to_string(), 12),
        ]),
        payment_map: vec![PaymentLink {
            shop_method: "cod".into(),
            keycrm_method_id: 1,
        }],
        delivery_map: vec![DeliveryLink {
            shop_method: "nova_poshta".into(),
            keycrm_service_id: 3,
        }],
        ..Settings::default()
    }
}

/// The KeyCRM statuses a manager moves an order through, with the shop status each maps to.
pub const PAID: (i64, &str) = (4, "paid");
pub const DONE: (i64, &str) = (12, "done");

/// Relative order intensity per hour of the day in Kyiv (UTC+3 in summer): quiet nights, a
/// working day, and the evening peak 18:00–22:00.
const KYIV_HOURLY: [f64; 24] = [
    0.3, 0.15, 0.1, 0.1, 0.1, 0.15, 0.3, 0.6, 0.9, 1.0, 1.1, 1.1, 1.1, 1.1, 1.0, 1.0, 1.1, 1.3,
    2.2, 2.6, 2.6, 2.2, 1.4, 0.7,
];
const KYIV_OFFSET_H: i64 = 3;

/// Whether a UTC instant is in the evening peak (18:00–22:00 Kyiv).
pub fn in_peak(t: DateTime<Utc>) -> bool {
    let h = (t.timestamp().div_euclid(3600) + KYIV_OFFSET_H).rem_euclid(24);
    (18..22).contains(&h)
}

/// The order times of one shop over `[start, start + hours)`.
pub fn order_times(
    rng: &mut StdRng,
    per_day: f64,
    start: DateTime<Utc>,
    hours: i64,
) -> Vec<DateTime<Utc>> {
    let total: f64 = KYIV_HOURLY.iter().sum();
    let mut out = Vec::new();
    for h in 0..hours {
        let t = start + ChronoDuration::hours(h);
        let kyiv = (t.timestamp().div_euclid(3600) + KYIV_OFFSET_H).rem_euclid(24) as usize;
        let expected = per_day * KYIV_HOURLY[kyiv] / total;
        // Poisson by inversion (small means).
        let mut k = 0;
        let mut p = (-expected).exp();
        let mut s = p;
        let u: f64 = rng.gen();
        while u > s && k < 1000 {
            k += 1;
            p *= expected / k as f64;
            s += p;
        }
        for _ in 0..k {
            out.push(t + ChronoDuration::milliseconds(rng.gen_range(0..3_600_000)));
        }
    }
    out.sort();
    out
}

/// An `order.created` event of the contract (v1).
pub fn order_created(shop_id: &str, order_id: &str, at: DateTime<Utc>, rng: &mut StdRng) -> String {
    let qty = rng.gen_range(1..4);
    let price = rng.gen_range(100..3000);
    let total = price * qty + 70;
    serde_json::json!({
        "version": 1,
        "event_id": format!("evt-{shop_id}-{order_id}"),
        "type": "order.created",
        "shop_id": shop_id,
        "occurred_at": at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "order": {
            "id": order_id,
            "number": order_id,
            "created_at": at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "status": "new",
            "currency": "UAH",
            "customer": {
                "name": "Олена Коваленко",
                "phone": format!("050 {:03} {:02} {:02}", rng.gen_range(100..999), rng.gen_range(10..99), rng.gen_range(10..99)),
                "email": "olena@example.com"
            },
            "items": [{
                "sku": format!("SKU-{}", rng.gen_range(1..50)),
                "name": "Товар",
                "price": price,
                "quantity": qty
            }],
            "delivery": {
                "method": "nova_poshta",
                "cost": 70,
                "address": { "country": "UA", "city": "Київ" },
                "recipient": { "name": "Олена Коваленко", "phone": "+380501112233" }
            },
            "payment": { "method": "cod", "paid": false, "amount": total },
            "total": total
        }
    })
    .to_string()
}
