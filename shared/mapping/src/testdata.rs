//! Small, hand-written dictionaries shared by this crate's unit tests.

use crate::reference::{KeycrmReference, PipelineWithStatuses};
use crate::shop::{NamedItem, ShopAddon, ShopReference};
use keycrm_model::models::*;

fn named(id: &str) -> NamedItem {
    NamedItem {
        id: id.into(),
        name: id.to_uppercase(),
    }
}

fn field(uuid: &str, ty: &str, options: &[&str]) -> CustomField {
    CustomField {
        id: 0,
        uuid: uuid.into(),
        name: uuid.into(),
        model: None,
        field_type: ty.into(),
        is_multiple: false,
        required: false,
        options: options
            .iter()
            .enumerate()
            .map(|(i, v)| CustomFieldOption {
                id: i as i64 + 1,
                value: v.to_string(),
            })
            .collect(),
    }
}

pub fn crm_reference() -> KeycrmReference {
    let status = |id: i64, group_id: i64| OrderStatus {
        id,
        name: format!("s{id}"),
        alias: None,
        group_id,
        is_active: true,
        is_closing_order: false,
    };
    let pstatus = |id: i64, pipeline_id: i64| PipelineStatus {
        id,
        pipeline_id,
        title: format!("p{id}"),
        alias: None,
        is_final: false,
    };
    KeycrmReference {
        sources: vec![Source {
            id: 1,
            name: "Shop".into(),
            alias: None,
            driver: Some("other".into()),
            currency_code: Some("UAH".into()),
        }],
        order_statuses: vec![status(1, 1), status(3, 2), status(12, 5), status(19, 6)],
        pipelines: vec![
            PipelineWithStatuses {
                pipeline: Pipeline {
                    id: 1,
                    name: "Sales".into(),
                },
                statuses: vec![pstatus(101, 1), pstatus(102, 1)],
            },
            PipelineWithStatuses {
                pipeline: Pipeline {
                    id: 2,
                    name: "Returns".into(),
                },
                statuses: vec![pstatus(201, 2)],
            },
        ],
        pipelines_enabled: true,
        payment_methods: vec![
            PaymentMethod {
                id: 1,
                name: "Cash".into(),
                alias: None,
                is_active: true,
            },
            PaymentMethod {
                id: 2,
                name: "Card".into(),
                alias: None,
                is_active: true,
            },
        ],
        delivery_services: vec![
            DeliveryService {
                id: 1,
                name: "Нова Пошта".into(),
                alias: None,
                source_name: Some("novaposhta".into()),
            },
            DeliveryService {
                id: 2,
                name: "Courier".into(),
                alias: None,
                source_name: None,
            },
        ],
        order_fields: vec![
            field("OR_1001", "text", &[]),
            field("OR_1002", "select", &["Так", "Ні"]),
            field("OR_1003", "number", &[]),
            field("OR_1004", "switcher", &[]),
            field("OR_1005", "date", &[]),
            field("OR_1006", "float", &[]),
        ],
        lead_fields: vec![field("LD_1001", "text", &[])],
        categories: vec![
            Category {
                id: 10,
                name: "Одяг".into(),
                parent_id: None,
            },
            Category {
                id: 11,
                name: "Сукні".into(),
                parent_id: Some(10),
            },
        ],
    }
}

pub fn shop_reference() -> ShopReference {
    ShopReference {
        order_statuses: vec![
            named("new"),
            named("paid"),
            named("done"),
            named("canceled"),
        ],
        order_addons: vec![
            ShopAddon {
                id: "gift".into(),
                name: "Gift".into(),
                addon_type: "text".into(),
            },
            ShopAddon {
                id: "callback".into(),
                name: "Call me".into(),
                addon_type: "checkbox".into(),
            },
        ],
        payment_methods: vec![named("cod"), named("card")],
        delivery_methods: vec![named("np"), named("courier")],
        currency: "UAH".into(),
    }
}
