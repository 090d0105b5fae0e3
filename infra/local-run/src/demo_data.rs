//! The demo shop: its dictionaries, a settings mapping chosen from the KeyCRM account's own
//! dictionaries, and pending orders built from SKUs the KeyCRM catalog really has.

use mapping::settings::{
    AddonLink, DeliveryLink, OrderStatusFrom, OrderStatusMap, OrderStatusTo, PaymentLink,
};
use mapping::shop::{NamedItem, ShopAddon, ShopReference};
use mapping::{KeycrmReference, OrderSyncType, Settings};
use serde_json::json;

fn named(id: &str, name: &str) -> NamedItem {
    NamedItem {
        id: id.into(),
        name: name.into(),
    }
}

pub const SHOP_STATUSES: [(&str, &str); 5] = [
    ("new", "Нове"),
    ("processing", "В обробці"),
    ("shipped", "Відправлено"),
    ("completed", "Виконано"),
    ("canceled", "Скасовано"),
];

pub fn shop_reference() -> ShopReference {
    ShopReference {
        order_statuses: SHOP_STATUSES.iter().map(|(i, n)| named(i, n)).collect(),
        order_addons: vec![
            ShopAddon {
                id: "gift_note".into(),
                name: "Листівка до подарунка".into(),
                addon_type: "text".into(),
            },
            ShopAddon {
                id: "sales_channel".into(),
                name: "Звідки дізналися".into(),
                addon_type: "select".into(),
            },
        ],
        payment_methods: vec![
            named("cod", "Накладений платіж"),
            named("card", "Карткою онлайн"),
        ],
        delivery_methods: vec![
            named("nova_poshta", "Нова Пошта"),
            named("ukrposhta", "Укрпошта"),
            named("pickup", "Самовивіз"),
        ],
        currency: "UAH".into(),
    }
}

/// A mapping a merchant would pick for the demo shop, from the account's real dictionaries.
pub fn settings_for(crm: &KeycrmReference) -> Settings {
    // Both directions, as a merchant following the article maps them: every KeyCRM status
    // (the trigger sends them all) leads to the shop status of its group, and each shop status
    // becomes the first active KeyCRM status of that group.
    let shop_for_group = |group: i64| match group {
        1 => Some("new"),
        2 | 3 => Some("processing"),
        4 => Some("shipped"),
        5 => Some("completed"),
        6 => Some("canceled"),
        _ => None,
    };
    let mut order_statuses = OrderStatusMap::default();
    for st in &crm.order_statuses {
        if let Some(shop) = shop_for_group(st.group_id) {
            order_statuses.from_keycrm.push(OrderStatusFrom {
                keycrm_status_id: st.id,
                shop_status: shop.into(),
            });
        }
    }
    for (shop, group) in [
        ("new", 1),
        ("processing", 2),
        ("shipped", 4),
        ("completed", 5),
        ("canceled", 6),
    ] {
        let first = crm
            .order_statuses
            .iter()
            .filter(|s| s.group_id == group && s.is_active)
            .map(|s| s.id)
            .min();
        if let Some(id) = first {
            order_statuses.to_keycrm.push(OrderStatusTo {
                shop_status: shop.into(),
                keycrm_status_id: id,
            });
        }
    }
    let by_alias = |aliases: &[&str]| {
        crm.payment_methods
            .iter()
            .filter(|m| m.is_active)
            .find(|m| {
                let a = m.alias.as_deref().unwrap_or_default().to_lowercase();
                aliases
                    .iter()
                    .any(|x| a.contains(x) || m.name.to_lowercase().contains(x))
            })
            .or_else(|| crm.payment_methods.iter().find(|m| m.is_active))
            .map(|m| m.id)
    };
    let mut payment_map = Vec::new();
    if let Some(id) = by_alias(&["cash", "готів", "cod"]) {
        payment_map.push(PaymentLink {
            shop_method: "cod".into(),
            keycrm_method_id: id,
        });
    }
    if let Some(id) = by_alias(&["card", "liqpay", "карт"]) {
        payment_map.push(PaymentLink {
            shop_method: "card".into(),
            keycrm_method_id: id,
        });
    }
    let delivery = |pred: &dyn Fn(&keycrm::models::DeliveryService) -> bool| {
        crm.delivery_services.iter().find(|d| pred(d)).map(|d| d.id)
    };
    let mut delivery_map = Vec::new();
    for (shop, found) in [
        ("nova_poshta", delivery(&|d| d.is_nova_poshta())),
        (
            "ukrposhta",
            delivery(&|d| d.alias.as_deref().is_some_and(|a| a.contains("ukr"))),
        ),
        (
            "pickup",
            delivery(&|d| d.alias.as_deref().is_some_and(|a| a.contains("pickup"))),
        ),
    ] {
        if let Some(id) = found {
            delivery_map.push(DeliveryLink {
                shop_method: shop.into(),
                keycrm_service_id: id,
            });
        }
    }
    let mut addon_fields = Vec::new();
    if let Some(f) = crm.order_fields.iter().find(|f| f.field_type == "text") {
        addon_fields.push(AddonLink {
            addon_id: "gift_note".into(),
            field_uuid: f.uuid.clone(),
        });
    }
    if let Some(f) = crm.order_fields.iter().find(|f| f.field_type == "select") {
        addon_fields.push(AddonLink {
            addon_id: "sales_channel".into(),
            field_uuid: f.uuid.clone(),
        });
    }
    Settings {
        sync_products: true,
        realtime_stock: true,
        sync_categories: true,
        order_sync: OrderSyncType::Orders,
        source_id: crm
            .sources
            .iter()
            .find(|s| s.driver.as_deref() == Some("other"))
            .or_else(|| crm.sources.first())
            .map(|s| s.id),
        order_statuses,
        payment_map,
        delivery_map,
        addon_fields,
        ..Settings::default()
    }
}

/// A line item source: a SKU the KeyCRM catalog has.
#[derive(Clone, Debug)]
pub struct CatalogItem {
    pub sku: String,
    pub name: String,
    pub price: f64,
}

struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() as usize) % items.len()]
    }
}

const FIRST: [&str; 8] = [
    "Олена",
    "Андрій",
    "Марія",
    "Тарас",
    "Ірина",
    "Богдан",
    "Софія",
    "Дмитро",
];
const LAST: [&str; 8] = [
    "Коваленко",
    "Шевченко",
    "Бондаренко",
    "Ткаченко",
    "Кравченко",
    "Мельник",
    "Олійник",
    "Лисенко",
];
const CITIES: [&str; 5] = ["Київ", "Львів", "Одеса", "Харків", "Дніпро"];
/// Phones as buyers type them; the connector normalises them to +380…
const PHONES: [&str; 4] = [
    "050 111 22 {}",
    "(067) 234-56-{}",
    "+38 093 777 88 {}",
    "063 123 45 {}",
];

/// `order.created` events (contract v1) for `n` pending demo orders.
pub fn pending_orders(
    shop_id: &str,
    items: &[CatalogItem],
    n: usize,
    seed: u64,
) -> Vec<(String, String)> {
    let mut rng = Lcg(seed ^ 0x5eed);
    let now = chrono::Utc::now();
    (0..n)
        .map(|i| {
            let order_id = format!("{}", 10_001 + i);
            let lines: Vec<&CatalogItem> = (0..1 + rng.next() % 3).map(|_| rng.pick(items)).collect();
            let line_json: Vec<serde_json::Value> = lines
                .iter()
                .map(|it| {
                    json!({"sku": it.sku, "name": it.name, "price": it.price, "quantity": 1 + rng.next() % 2})
                })
                .collect();
            let items_total: f64 = line_json
                .iter()
                .map(|l| l["price"].as_f64().unwrap_or_default() * l["quantity"].as_f64().unwrap_or_default())
                .sum();
            let (delivery, cost) = match rng.next() % 3 {
                0 => (json!({"method": "nova_poshta", "cost": 70, "address": {"city": rng.pick(&CITIES)}, "np_warehouse_ref": "1ec09d88-e1c2-11e3-8c4a-0050568002cf", "receive_point": format!("Відділення №{}", 1 + rng.next() % 120)}), 70.0),
                1 => (json!({"method": "ukrposhta", "cost": 45, "address": {"city": rng.pick(&CITIES), "zip": "01001", "line": "вул. Хрещатик, 1"}}), 45.0),
                _ => (json!({"method": "pickup", "cost": 0}), 0.0),
            };
            let total = ((items_total + cost) * 100.0).round() / 100.0;
            let name = format!("{} {}", rng.pick(&FIRST), rng.pick(&LAST));
            let phone = rng.pick(&PHONES).replace("{}", &format!("{:02}", i % 100));
            let paid = rng.next().is_multiple_of(2);
            let event = json!({
                "version": 1,
                "event_id": format!("demo-{shop_id}-{order_id}-created"),
                "type": "order.created",
                "shop_id": shop_id,
                "occurred_at": now.to_rfc3339(),
                "order": {
                    "id": order_id,
                    "number": order_id,
                    "created_at": (now - chrono::Duration::minutes((n - i) as i64)).to_rfc3339(),
                    "status": "new",
                    "currency": "UAH",
                    "customer": {"name": name, "phone": phone, "email": format!("buyer{i}@example.com")},
                    "items": line_json,
                    "delivery": delivery,
                    "payment": {"method": if paid { "card" } else { "cod" }, "paid": paid, "amount": total},
                    "addons": [{"id": "gift_note", "value": "З днем народження!"}, {"id": "sales_channel", "value": "Instagram"}],
                    "utm": {"source": "instagram", "medium": "social", "campaign": "demo"},
                    "comment": if i % 4 == 0 { Some("Подзвоніть перед відправкою") } else { None },
                    "total": total
                }
            });
            (order_id, event.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_orders_follow_the_contract_and_add_up() {
        let items = vec![
            CatalogItem {
                sku: "A-1".into(),
                name: "Сукня".into(),
                price: 1290.0,
            },
            CatalogItem {
                sku: "B-2".into(),
                name: "Пояс".into(),
                price: 450.5,
            },
        ];
        let orders = pending_orders("demo-shop", &items, 20, 7);
        assert_eq!(orders.len(), 20);
        for (id, body) in &orders {
            let e = mapping::parse_event(body.as_bytes()).expect("valid contract v1 event");
            assert_eq!(e.order_id(), id);
            let mapping::EventBody::Created(o) = e.body else {
                panic!("created")
            };
            assert_eq!(
                mapping::order_map::computed_total(&o),
                Ok(o.total),
                "totals add up"
            );
            assert!(o
                .customer
                .phone
                .as_deref()
                .and_then(mapping::phone::normalize)
                .is_some());
        }
    }
}
