//! Static per-account dictionaries: order statuses, sources, payment methods, delivery
//! services, custom fields, pipelines and their statuses, users (managers).

use serde_json::{json, Value};

use crate::rng::SplitMix64;
use crate::time::iso;

/// 2024-03-01T09:00:00Z: creation time of all seeded dictionary rows.
const DICT_TS: i64 = 1_709_283_600;

pub(crate) struct OrderStatus {
    pub id: i64,
    pub name: &'static str,
    pub alias: &'static str,
    pub group_id: i64,
    pub is_closing_order: bool,
    pub is_reserved: bool,
    pub expiration_period: Option<i64>,
}

const fn st(
    id: i64,
    name: &'static str,
    alias: &'static str,
    group_id: i64,
    expiration_period: Option<i64>,
) -> OrderStatus {
    OrderStatus {
        id,
        name,
        alias,
        group_id,
        is_closing_order: group_id >= 5,
        is_reserved: group_id >= 2 && group_id <= 4,
        expiration_period,
    }
}

/// Default statuses keep their transliterated names (as live accounts do until re-saved);
/// custom ones have Ukrainian names and arbitrary ids.
pub(crate) const ORDER_STATUSES: &[OrderStatus] = &[
    st(1, "new", "new", 1, None),
    st(2, "Не додзвонились", "ne_dodzvonylys", 1, Some(86_400)),
    st(3, "approved", "approved", 2, None),
    st(4, "Очікує оплату", "ochikuie_oplatu", 2, Some(172_800)),
    st(5, "production", "production", 3, None),
    st(6, "Комплектується", "kompliektuietsia", 3, None),
    st(7, "sent", "sent", 4, None),
    st(8, "delivered", "delivered", 4, None),
    st(12, "completed", "completed", 5, None),
    st(13, "incorrect_data", "incorrect_data", 6, None),
    st(19, "canceled", "canceled", 6, None),
    st(20, "Матеріали", "materiali", 2, None),
    st(21, "Повернення", "povernennia", 6, None),
    st(22, "Обмін", "obmin", 4, None),
];

pub(crate) fn order_status(id: i64) -> Option<&'static OrderStatus> {
    ORDER_STATUSES.iter().find(|s| s.id == id)
}

pub(crate) fn render_order_status(s: &OrderStatus) -> Value {
    json!({
        "id": s.id,
        "name": s.name,
        "alias": s.alias,
        "group_id": s.group_id,
        "is_active": true,
        "is_closing_order": s.is_closing_order,
        "is_reserved": s.is_reserved,
        "expiration_period": s.expiration_period,
        "created_at": iso(DICT_TS),
        "updated_at": iso(DICT_TS + s.id * 60),
        "deleted_at": null,
    })
}

pub(crate) struct Source {
    pub id: i64,
    pub name: &'static str,
    pub alias: &'static str,
    pub driver: &'static str,
    pub source_name: Option<&'static str>,
    pub source_uuid: Option<&'static str>,
}

pub(crate) const SOURCES: &[Source] = &[
    Source {
        id: 1,
        name: "Інтернет-магазин",
        alias: "internet_mahazyn",
        driver: "other",
        source_name: None,
        source_uuid: None,
    },
    Source {
        id: 2,
        name: "Instagram",
        alias: "instagram",
        driver: "other",
        source_name: None,
        source_uuid: None,
    },
    Source {
        id: 3,
        name: "Rozetka",
        alias: "rozetka",
        driver: "rozetka",
        source_name: Some("Rozetka"),
        source_uuid: Some("18960006"),
    },
    Source {
        id: 4,
        name: "Prom.ua",
        alias: "prom_ua",
        driver: "promua",
        source_name: Some("Prom"),
        source_uuid: Some("3301177"),
    },
    Source {
        id: 5,
        name: "Телефон",
        alias: "telefon",
        driver: "other",
        source_name: None,
        source_uuid: None,
    },
];

pub(crate) fn source_exists(id: i64) -> bool {
    SOURCES.iter().any(|s| s.id == id)
}

pub(crate) fn render_source(s: &Source) -> Value {
    json!({
        "id": s.id,
        "name": s.name,
        "alias": s.alias,
        "driver": s.driver,
        "source_name": s.source_name,
        "source_uuid": s.source_uuid,
        "currency_code": "UAH",
        "created_at": iso(DICT_TS + s.id * 3600),
        "updated_at": iso(DICT_TS + s.id * 3600),
    })
}

pub(crate) struct PaymentMethod {
    pub id: i64,
    pub name: &'static str,
    pub alias: &'static str,
    pub is_active: bool,
}

pub(crate) const PAYMENT_METHODS: &[PaymentMethod] = &[
    PaymentMethod {
        id: 1,
        name: "Накладений платіж",
        alias: "cod",
        is_active: true,
    },
    PaymentMethod {
        id: 2,
        name: "Оплата на картку",
        alias: "card_transfer",
        is_active: true,
    },
    PaymentMethod {
        id: 3,
        name: "LiqPay",
        alias: "liqpay",
        is_active: true,
    },
    PaymentMethod {
        id: 4,
        name: "Monobank",
        alias: "monobank",
        is_active: true,
    },
    PaymentMethod {
        id: 5,
        name: "Готівка",
        alias: "cash",
        is_active: true,
    },
    PaymentMethod {
        id: 6,
        name: "WayForPay",
        alias: "wayforpay",
        is_active: false,
    },
];

pub(crate) fn payment_method_exists(id: i64) -> bool {
    PAYMENT_METHODS.iter().any(|m| m.id == id)
}

pub(crate) fn payment_method_by_name(name: &str) -> Option<&'static PaymentMethod> {
    let n = name.trim().to_lowercase();
    PAYMENT_METHODS
        .iter()
        .find(|m| m.name.to_lowercase() == n || m.alias == n)
}

pub(crate) fn render_payment_method(m: &PaymentMethod) -> Value {
    json!({"id": m.id, "name": m.name, "alias": m.alias, "is_active": m.is_active})
}

pub(crate) struct DeliveryService {
    pub id: i64,
    pub name: &'static str,
    pub alias: &'static str,
    pub source_name: &'static str,
}

pub(crate) const DELIVERY_SERVICES: &[DeliveryService] = &[
    DeliveryService {
        id: 1,
        name: "Самовивіз",
        alias: "pickup",
        source_name: "pickup",
    },
    DeliveryService {
        id: 2,
        name: "Укрпошта",
        alias: "ukrposhta",
        source_name: "ukrposhta",
    },
    DeliveryService {
        id: 3,
        name: "Нова Пошта",
        alias: "novaposhta",
        source_name: "novaposhta",
    },
    DeliveryService {
        id: 4,
        name: "Meest Пошта",
        alias: "meest",
        source_name: "meest",
    },
];

pub(crate) fn delivery_service(id: i64) -> Option<&'static DeliveryService> {
    DELIVERY_SERVICES.iter().find(|d| d.id == id)
}

pub(crate) fn render_delivery_service(d: &DeliveryService) -> Value {
    json!({"id": d.id, "name": d.name, "alias": d.alias, "source_name": d.source_name})
}

// ---- custom fields ------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CfModel {
    Order,
    Lead,
    Client,
    CrmProduct,
}

impl CfModel {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            CfModel::Order => "order",
            CfModel::Lead => "lead",
            CfModel::Client => "client",
            CfModel::CrmProduct => "crm_product",
        }
    }
}

pub(crate) struct CustomField {
    pub id: i64,
    pub uuid: &'static str,
    pub name: &'static str,
    pub model: CfModel,
    pub kind: &'static str,
    pub is_multiple: bool,
    pub required: bool,
    pub position: i64,
    pub options: &'static [&'static str],
}

const fn cf(
    id: i64,
    uuid: &'static str,
    name: &'static str,
    model: CfModel,
    kind: &'static str,
    position: i64,
    options: &'static [&'static str],
) -> CustomField {
    CustomField {
        id,
        uuid,
        name,
        model,
        kind,
        is_multiple: false,
        required: false,
        position,
        options,
    }
}

pub(crate) const CUSTOM_FIELDS: &[CustomField] = &[
    cf(
        1,
        "OR_1001",
        "Коментар для складу",
        CfModel::Order,
        "text",
        1,
        &[],
    ),
    cf(
        2,
        "OR_1002",
        "Канал продажу",
        CfModel::Order,
        "select",
        2,
        &["Сайт", "Instagram", "Telegram", "Телефон"],
    ),
    cf(
        3,
        "OR_1003",
        "Кількість місць",
        CfModel::Order,
        "number",
        3,
        &[],
    ),
    cf(
        4,
        "OR_1004",
        "Подарункове пакування",
        CfModel::Order,
        "switcher",
        4,
        &[],
    ),
    cf(
        5,
        "OR_1005",
        "Бажана дата доставки",
        CfModel::Order,
        "date",
        5,
        &[],
    ),
    cf(
        6,
        "OR_1006",
        "Номер замовлення на сайті",
        CfModel::Order,
        "text",
        6,
        &[],
    ),
    cf(
        7,
        "LD_1001",
        "Запит клієнта",
        CfModel::Lead,
        "textarea",
        1,
        &[],
    ),
    cf(
        8,
        "LD_1002",
        "Джерело звернення",
        CfModel::Lead,
        "select",
        2,
        &["Сайт", "Instagram", "Реклама"],
    ),
    cf(9, "LD_1003", "Бюджет", CfModel::Lead, "float", 3, &[]),
    cf(
        10,
        "LD_1004",
        "Потрібна консультація",
        CfModel::Lead,
        "switcher",
        4,
        &[],
    ),
    cf(11, "LD_1005", "Дата дзвінка", CfModel::Lead, "date", 5, &[]),
    cf(12, "CT_1001", "Instagram", CfModel::Client, "link", 1, &[]),
    cf(
        13,
        "CT_1002",
        "Країна виробництва",
        CfModel::CrmProduct,
        "text",
        1,
        &[],
    ),
    cf(
        14,
        "CT_1003",
        "Сезон",
        CfModel::CrmProduct,
        "select",
        2,
        &["Весна", "Літо", "Осінь", "Зима", "Всесезон"],
    ),
    cf(
        15,
        "CT_1004",
        "Гарантія, міс.",
        CfModel::CrmProduct,
        "number",
        3,
        &[],
    ),
];

pub(crate) fn custom_field(uuid: &str, model: CfModel) -> Option<&'static CustomField> {
    CUSTOM_FIELDS
        .iter()
        .find(|f| f.uuid == uuid && f.model == model)
}

pub(crate) fn render_custom_field(f: &CustomField, with_options: bool) -> Value {
    let mut v = json!({
        "id": f.id,
        "uuid": f.uuid,
        "name": f.name,
        "model": f.model.as_str(),
        "type": f.kind,
        "is_multiple": f.is_multiple,
        "required": f.required,
        "position": f.position,
    });
    if with_options {
        v["options"] = Value::Array(
            f.options
                .iter()
                .enumerate()
                .map(
                    |(i, o)| json!({"id": f.id * 100 + i as i64 + 1, "field_id": f.id, "value": o}),
                )
                .collect(),
        );
    }
    v
}

/// `{id, uuid, name, type, value}` as returned inside entities.
pub(crate) fn render_custom_field_value(f: &CustomField, value: &Value) -> Value {
    json!({"id": f.id, "uuid": f.uuid, "name": f.name, "type": f.kind, "value": value})
}

/// Deterministic product custom-field values (only filled fields are returned).
pub(crate) fn product_custom_field_values(product_id: i64) -> Vec<Value> {
    let mut r = SplitMix64::derive(0xC0FFEE, product_id as u64);
    let mut out = Vec::new();
    if let Some(f) = custom_field("CT_1002", CfModel::CrmProduct) {
        let country = *r.pick(&["Україна", "Україна", "Туреччина", "Польща", "Італія"]);
        out.push(render_custom_field_value(f, &json!(country)));
    }
    if let Some(f) = custom_field("CT_1003", CfModel::CrmProduct) {
        if r.chance(0.7) {
            let season = *r.pick(f.options);
            out.push(render_custom_field_value(f, &json!([season])));
        }
    }
    if let Some(f) = custom_field("CT_1004", CfModel::CrmProduct) {
        if r.chance(0.3) {
            out.push(render_custom_field_value(f, &json!(r.range(1, 24))));
        }
    }
    out
}

// ---- pipelines ----------------------------------------------------------------------------

pub(crate) struct Pipeline {
    pub id: i64,
    pub name: &'static str,
    pub use_payments: bool,
}

pub(crate) const PIPELINES: &[Pipeline] = &[
    Pipeline {
        id: 1,
        name: "Заявки з сайту",
        use_payments: true,
    },
    Pipeline {
        id: 2,
        name: "Оптові клієнти",
        use_payments: false,
    },
];

pub(crate) struct PipelineStatus {
    pub id: i64,
    pub pipeline_id: i64,
    pub title: &'static str,
    pub alias: &'static str,
    pub color: &'static str,
    pub is_final: bool,
}

pub(crate) const PIPELINE_STATUSES: &[PipelineStatus] = &[
    PipelineStatus {
        id: 1001,
        pipeline_id: 1,
        title: "Нова заявка",
        alias: "new",
        color: "#4DABF7",
        is_final: false,
    },
    PipelineStatus {
        id: 1002,
        pipeline_id: 1,
        title: "Взято в роботу",
        alias: "in_work",
        color: "#FFD43B",
        is_final: false,
    },
    PipelineStatus {
        id: 1003,
        pipeline_id: 1,
        title: "Очікує рішення",
        alias: "waiting",
        color: "#FFA94D",
        is_final: false,
    },
    PipelineStatus {
        id: 1004,
        pipeline_id: 1,
        title: "Успішно",
        alias: "success",
        color: "#69DB7C",
        is_final: true,
    },
    PipelineStatus {
        id: 1005,
        pipeline_id: 1,
        title: "Відмова",
        alias: "refused",
        color: "#FF6B6B",
        is_final: true,
    },
    PipelineStatus {
        id: 2001,
        pipeline_id: 2,
        title: "Новий запит",
        alias: "new",
        color: "#4DABF7",
        is_final: false,
    },
    PipelineStatus {
        id: 2002,
        pipeline_id: 2,
        title: "Комерційна пропозиція",
        alias: "offer",
        color: "#DA77F2",
        is_final: false,
    },
    PipelineStatus {
        id: 2003,
        pipeline_id: 2,
        title: "Угода",
        alias: "deal",
        color: "#69DB7C",
        is_final: true,
    },
    PipelineStatus {
        id: 2004,
        pipeline_id: 2,
        title: "Відмова",
        alias: "refused",
        color: "#FF6B6B",
        is_final: true,
    },
];

pub(crate) fn pipeline(id: i64) -> Option<&'static Pipeline> {
    PIPELINES.iter().find(|p| p.id == id)
}

pub(crate) fn pipeline_status(id: i64) -> Option<&'static PipelineStatus> {
    PIPELINE_STATUSES.iter().find(|s| s.id == id)
}

pub(crate) fn first_status_of(pipeline_id: i64) -> Option<&'static PipelineStatus> {
    PIPELINE_STATUSES
        .iter()
        .find(|s| s.pipeline_id == pipeline_id)
}

pub(crate) fn render_pipeline(p: &Pipeline) -> Value {
    json!({
        "id": p.id,
        "name": p.name,
        "title": p.name,
        "lead_type": "request",
        "target_type": "lead_pipeline",
        "target_id": null,
        "use_payments": p.use_payments,
    })
}

pub(crate) fn render_pipeline_status(s: &PipelineStatus, leads_count: i64) -> Value {
    json!({
        "id": s.id,
        "pipeline_id": s.pipeline_id,
        "title": s.title,
        "alias": s.alias,
        "color": s.color,
        "is_final": s.is_final,
        "leads_count": leads_count,
    })
}

/// Status as embedded in a card (`include=status`).
pub(crate) fn render_card_status(s: &PipelineStatus) -> Value {
    json!({
        "id": s.id,
        "name": s.title,
        "title": s.title,
        "alias": s.alias,
        "pipeline_id": s.pipeline_id,
        "is_active": true,
        "color": s.color,
        "is_final": s.is_final,
        "created_at": iso(DICT_TS),
        "updated_at": iso(DICT_TS),
    })
}

// ---- users --------------------------------------------------------------------------------

pub(crate) struct User {
    pub id: i64,
    pub first_name: &'static str,
    pub last_name: &'static str,
    pub email: &'static str,
    pub username: &'static str,
    pub phone: &'static str,
    pub role_id: i64,
}

pub(crate) const USERS: &[User] = &[
    User {
        id: 1,
        first_name: "Олена",
        last_name: "Коваль",
        email: "olena@shop.example",
        username: "olena",
        phone: "+380501234567",
        role_id: 1,
    },
    User {
        id: 2,
        first_name: "Андрій",
        last_name: "Шевченко",
        email: "andrii@shop.example",
        username: "andrii",
        phone: "+380671234567",
        role_id: 2,
    },
];

pub(crate) fn user(id: i64) -> Option<&'static User> {
    USERS.iter().find(|u| u.id == id)
}

pub(crate) fn render_user(u: &User) -> Value {
    json!({
        "id": u.id,
        "first_name": u.first_name,
        "last_name": u.last_name,
        "full_name": format!("{} {}", u.first_name, u.last_name),
        "email": u.email,
        "username": u.username,
        "phone": u.phone,
        "role_id": u.role_id,
        "status": "active",
        "last_logged_at": iso(DICT_TS + 86_400 * 200),
        "created_at": iso(DICT_TS),
        "updated_at": iso(DICT_TS),
    })
}
