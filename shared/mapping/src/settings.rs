//! A connection's settings, and their validation against both sides' live dictionaries.

use crate::reference::KeycrmReference;
use crate::shop::ShopReference;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// How a KeyCRM product finds its shop product on the first sync (later runs use stored links).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchKey {
    /// Shop product id equals the KeyCRM product id.
    Id,
    /// Shop SKU (article) equals the KeyCRM offer SKU.
    #[default]
    Sku,
    /// Same name, ignoring case and repeated spaces.
    Name,
    /// Shop barcode equals the KeyCRM offer barcode.
    Barcode,
    /// The shop's external id field equals the KeyCRM product id.
    ExternalId,
    /// Never match existing shop products: only create new ones.
    CreateOnly,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NewProductPolicy {
    /// Created hidden, for the merchant to complete and publish.
    #[default]
    Hide,
    Publish,
    DontCreate,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExistingProductPolicy {
    #[default]
    Update,
    DontUpdate,
}

/// What happens to a linked shop product whose KeyCRM product was deleted or archived.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MissingProductPolicy {
    #[default]
    Nothing,
    Hide,
    MakeUnavailable,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderSyncType {
    #[default]
    None,
    Orders,
    Pipelines,
}

/// Shop status <-> KeyCRM order status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusLink {
    pub shop_status: String,
    pub keycrm_status_id: i64,
}

/// Shop status <-> (pipeline, pipeline status).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineStatusLink {
    pub shop_status: String,
    pub pipeline_id: i64,
    pub status_id: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddonLink {
    pub addon_id: String,
    /// KeyCRM custom field uuid (`OR_…` for orders, `LD_…` for cards).
    pub field_uuid: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentLink {
    pub shop_method: String,
    pub keycrm_method_id: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryLink {
    pub shop_method: String,
    pub keycrm_service_id: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(default)]
    pub sync_products: bool,
    /// Realtime stock (KeyCRM's stock webhook); meaningful only with `sync_products`.
    #[serde(default)]
    pub realtime_stock: bool,
    #[serde(default)]
    pub sync_categories: bool,
    /// KeyCRM category ids to take products from (with their descendants); empty = all.
    #[serde(default)]
    pub category_filter: Vec<i64>,
    #[serde(default)]
    pub match_key: MatchKey,
    #[serde(default)]
    pub new_products: NewProductPolicy,
    #[serde(default)]
    pub existing_products: ExistingProductPolicy,
    #[serde(default)]
    pub missing_products: MissingProductPolicy,
    /// Largest share of linked products one run may hide or make unavailable.
    #[serde(default = "default_vanish_guard")]
    pub vanish_guard: f64,
    #[serde(default)]
    pub order_sync: OrderSyncType,
    #[serde(default)]
    pub source_id: Option<i64>,
    #[serde(default)]
    pub status_map: Vec<StatusLink>,
    #[serde(default)]
    pub pipeline_status_map: Vec<PipelineStatusLink>,
    /// Where new pipeline cards go when the initial shop status has no mapping of its own.
    #[serde(default)]
    pub default_pipeline_id: Option<i64>,
    #[serde(default)]
    pub addon_fields: Vec<AddonLink>,
    #[serde(default)]
    pub payment_map: Vec<PaymentLink>,
    #[serde(default)]
    pub delivery_map: Vec<DeliveryLink>,
}

fn default_vanish_guard() -> f64 {
    0.3
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            sync_products: false,
            realtime_stock: false,
            sync_categories: false,
            category_filter: Vec::new(),
            match_key: MatchKey::default(),
            new_products: NewProductPolicy::default(),
            existing_products: ExistingProductPolicy::default(),
            missing_products: MissingProductPolicy::default(),
            vanish_guard: default_vanish_guard(),
            order_sync: OrderSyncType::default(),
            source_id: None,
            status_map: Vec::new(),
            pipeline_status_map: Vec::new(),
            default_pipeline_id: None,
            addon_fields: Vec::new(),
            payment_map: Vec::new(),
            delivery_map: Vec::new(),
        }
    }
}

/// A refused setting, named so the page can put the message next to the field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl Settings {
    /// KeyCRM status for a shop status (order sync).
    pub fn keycrm_status_for(&self, shop_status: &str) -> Option<i64> {
        self.status_map
            .iter()
            .find(|l| l.shop_status == shop_status)
            .map(|l| l.keycrm_status_id)
    }

    /// Shop status for a KeyCRM order status. When several shop statuses map to one KeyCRM
    /// status, the first listed wins.
    pub fn shop_status_for(&self, keycrm_status_id: i64) -> Option<&str> {
        self.status_map
            .iter()
            .find(|l| l.keycrm_status_id == keycrm_status_id)
            .map(|l| l.shop_status.as_str())
    }

    pub fn pipeline_status_for(&self, shop_status: &str) -> Option<(i64, i64)> {
        self.pipeline_status_map
            .iter()
            .find(|l| l.shop_status == shop_status)
            .map(|l| (l.pipeline_id, l.status_id))
    }

    pub fn shop_status_for_card(&self, pipeline_id: Option<i64>, status_id: i64) -> Option<&str> {
        self.pipeline_status_map
            .iter()
            .find(|l| l.status_id == status_id && pipeline_id.is_none_or(|p| p == l.pipeline_id))
            .map(|l| l.shop_status.as_str())
    }

    pub fn payment_method_for(&self, shop_method: &str) -> Option<i64> {
        self.payment_map
            .iter()
            .find(|l| l.shop_method == shop_method)
            .map(|l| l.keycrm_method_id)
    }

    pub fn delivery_service_for(&self, shop_method: &str) -> Option<i64> {
        self.delivery_map
            .iter()
            .find(|l| l.shop_method == shop_method)
            .map(|l| l.keycrm_service_id)
    }

    /// Checks every reference against the live lists and that order push has what it needs.
    /// Returns all problems at once, so the merchant can fix them in one go.
    pub fn validate(&self, crm: &KeycrmReference, shop: &ShopReference) -> Vec<FieldError> {
        let mut errs = Vec::new();
        if !(0.0..=1.0).contains(&self.vanish_guard) || self.vanish_guard.is_nan() {
            errs.push(FieldError::new(
                "vanish_guard",
                "must be a share between 0 and 1",
            ));
        }
        for (i, id) in self.category_filter.iter().enumerate() {
            if crm.category(*id).is_none() {
                errs.push(FieldError::new(
                    format!("category_filter[{i}]"),
                    format!("KeyCRM has no category {id}"),
                ));
            }
        }
        let shop_statuses: BTreeSet<&str> =
            shop.order_statuses.iter().map(|s| s.id.as_str()).collect();
        let shop_payments: BTreeSet<&str> =
            shop.payment_methods.iter().map(|s| s.id.as_str()).collect();
        let shop_delivery: BTreeSet<&str> = shop
            .delivery_methods
            .iter()
            .map(|s| s.id.as_str())
            .collect();

        match self.source_id {
            Some(id) if crm.source(id).is_none() => errs.push(FieldError::new(
                "source_id",
                format!("KeyCRM has no source {id}"),
            )),
            None if self.order_sync != OrderSyncType::None => errs.push(FieldError::new(
                "source_id",
                "a KeyCRM source is required to push orders",
            )),
            _ => {}
        }

        let mut seen = BTreeSet::new();
        for (i, l) in self.status_map.iter().enumerate() {
            let f = format!("status_map[{i}]");
            if !shop_statuses.contains(l.shop_status.as_str()) {
                errs.push(FieldError::new(
                    format!("{f}.shop_status"),
                    format!("the shop has no order status \"{}\"", l.shop_status),
                ));
            }
            if crm.order_status(l.keycrm_status_id).is_none() {
                errs.push(FieldError::new(
                    format!("{f}.keycrm_status_id"),
                    format!("KeyCRM has no order status {}", l.keycrm_status_id),
                ));
            }
            if !seen.insert(l.shop_status.as_str()) {
                errs.push(FieldError::new(
                    format!("{f}.shop_status"),
                    format!("shop status \"{}\" is mapped twice", l.shop_status),
                ));
            }
        }

        let mut seen = BTreeSet::new();
        for (i, l) in self.pipeline_status_map.iter().enumerate() {
            let f = format!("pipeline_status_map[{i}]");
            if !shop_statuses.contains(l.shop_status.as_str()) {
                errs.push(FieldError::new(
                    format!("{f}.shop_status"),
                    format!("the shop has no order status \"{}\"", l.shop_status),
                ));
            }
            if crm.pipeline(l.pipeline_id).is_none() {
                errs.push(FieldError::new(
                    format!("{f}.pipeline_id"),
                    format!("KeyCRM has no pipeline {}", l.pipeline_id),
                ));
            } else if crm.pipeline_status(l.pipeline_id, l.status_id).is_none() {
                errs.push(FieldError::new(
                    format!("{f}.status_id"),
                    format!("pipeline {} has no status {}", l.pipeline_id, l.status_id),
                ));
            }
            if !seen.insert(l.shop_status.as_str()) {
                errs.push(FieldError::new(
                    format!("{f}.shop_status"),
                    format!("shop status \"{}\" is mapped twice", l.shop_status),
                ));
            }
        }
        if let Some(p) = self.default_pipeline_id {
            if crm.pipeline(p).is_none() {
                errs.push(FieldError::new(
                    "default_pipeline_id",
                    format!("KeyCRM has no pipeline {p}"),
                ));
            }
        }

        let for_cards = self.order_sync == OrderSyncType::Pipelines;
        for (i, l) in self.addon_fields.iter().enumerate() {
            let f = format!("addon_fields[{i}]");
            if !shop.order_addons.iter().any(|a| a.id == l.addon_id) {
                errs.push(FieldError::new(
                    format!("{f}.addon_id"),
                    format!("the shop has no order add-on \"{}\"", l.addon_id),
                ));
            }
            let field = if for_cards {
                crm.lead_field(&l.field_uuid)
            } else {
                crm.order_field(&l.field_uuid)
            };
            if field.is_none() {
                let kind = if for_cards { "card" } else { "order" };
                errs.push(FieldError::new(
                    format!("{f}.field_uuid"),
                    format!("KeyCRM has no {kind} custom field {}", l.field_uuid),
                ));
            }
        }
        check_method_map(
            &mut errs,
            MethodMap {
                name: "payment_map",
                what: "payment method",
                crm_field: "keycrm_method_id",
                crm_what: "payment method",
            },
            self.payment_map
                .iter()
                .map(|l| (l.shop_method.as_str(), l.keycrm_method_id)),
            &shop_payments,
            |id| crm.payment_method(id).is_some(),
        );
        check_method_map(
            &mut errs,
            MethodMap {
                name: "delivery_map",
                what: "delivery method",
                crm_field: "keycrm_service_id",
                crm_what: "delivery service",
            },
            self.delivery_map
                .iter()
                .map(|l| (l.shop_method.as_str(), l.keycrm_service_id)),
            &shop_delivery,
            |id| crm.delivery_service(id).is_some(),
        );

        // Completeness: order push must be able to place every new order somewhere.
        match self.order_sync {
            OrderSyncType::None => {}
            OrderSyncType::Orders => {
                if self.status_map.is_empty() {
                    errs.push(FieldError::new(
                        "status_map",
                        "map at least the shop's order statuses to KeyCRM statuses to push orders",
                    ));
                }
            }
            OrderSyncType::Pipelines => {
                if !crm.pipelines_enabled {
                    errs.push(FieldError::new(
                        "order_sync",
                        "pipelines are not enabled in this KeyCRM account",
                    ));
                }
                if self.pipeline_status_map.is_empty() && self.default_pipeline_id.is_none() {
                    errs.push(FieldError::new(
                        "pipeline_status_map",
                        "map shop statuses to pipeline statuses (or choose a default pipeline) to push cards",
                    ));
                }
            }
        }
        if self.order_sync != OrderSyncType::None {
            for m in &shop.payment_methods {
                if self.payment_method_for(&m.id).is_none() {
                    errs.push(FieldError::new(
                        "payment_map",
                        format!(
                            "shop payment method \"{}\" has no KeyCRM payment method",
                            m.id
                        ),
                    ));
                }
            }
        }
        errs
    }
}

/// Names used in the errors of one shop-method -> KeyCRM-id mapping.
struct MethodMap {
    name: &'static str,
    what: &'static str,
    crm_field: &'static str,
    crm_what: &'static str,
}

/// Payment and delivery maps follow one rule: each shop method once, existing on both sides.
/// A shop method mapped twice would make the lookups' "first wins" silently decide.
fn check_method_map<'a>(
    errs: &mut Vec<FieldError>,
    m: MethodMap,
    entries: impl Iterator<Item = (&'a str, i64)>,
    shop_methods: &BTreeSet<&str>,
    crm_has: impl Fn(i64) -> bool,
) {
    let mut seen = BTreeSet::new();
    for (i, (shop_method, crm_id)) in entries.enumerate() {
        let f = format!("{}[{i}]", m.name);
        if !seen.insert(shop_method) {
            errs.push(FieldError::new(
                format!("{f}.shop_method"),
                format!("shop {} \"{shop_method}\" is mapped twice", m.what),
            ));
        }
        if !shop_methods.contains(shop_method) {
            errs.push(FieldError::new(
                format!("{f}.shop_method"),
                format!("the shop has no {} \"{shop_method}\"", m.what),
            ));
        }
        if !crm_has(crm_id) {
            errs.push(FieldError::new(
                format!("{f}.{}", m.crm_field),
                format!("KeyCRM has no {} {crm_id}", m.crm_what),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata::{crm_reference, shop_reference};

    fn valid() -> Settings {
        Settings {
            order_sync: OrderSyncType::Orders,
            source_id: Some(1),
            status_map: vec![
                StatusLink {
                    shop_status: "new".into(),
                    keycrm_status_id: 1,
                },
                StatusLink {
                    shop_status: "done".into(),
                    keycrm_status_id: 12,
                },
            ],
            payment_map: vec![
                PaymentLink {
                    shop_method: "cod".into(),
                    keycrm_method_id: 1,
                },
                PaymentLink {
                    shop_method: "card".into(),
                    keycrm_method_id: 2,
                },
            ],
            delivery_map: vec![DeliveryLink {
                shop_method: "np".into(),
                keycrm_service_id: 1,
            }],
            addon_fields: vec![AddonLink {
                addon_id: "gift".into(),
                field_uuid: "OR_1001".into(),
            }],
            ..Settings::default()
        }
    }

    #[test]
    fn a_complete_mapping_is_accepted() {
        assert_eq!(
            valid().validate(&crm_reference(), &shop_reference()),
            vec![]
        );
    }

    #[test]
    fn every_dangling_reference_is_named() {
        let mut s = valid();
        s.source_id = Some(999);
        s.status_map.push(StatusLink {
            shop_status: "ghost".into(),
            keycrm_status_id: 777,
        });
        s.payment_map[0].keycrm_method_id = 55;
        s.delivery_map[0].shop_method = "pigeon".into();
        s.addon_fields[0].field_uuid = "OR_9999".into();
        s.category_filter = vec![123456];
        let fields: Vec<String> = s
            .validate(&crm_reference(), &shop_reference())
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(
            fields,
            vec![
                "category_filter[0]",
                "source_id",
                "status_map[2].shop_status",
                "status_map[2].keycrm_status_id",
                "addon_fields[0].field_uuid",
                "payment_map[0].keycrm_method_id",
                "delivery_map[0].shop_method",
            ]
        );
    }

    #[test]
    fn incomplete_mappings_that_break_order_push_are_refused() {
        let mut s = valid();
        s.status_map.clear();
        s.payment_map.pop();
        s.source_id = None;
        let errs = s.validate(&crm_reference(), &shop_reference());
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert!(fields.contains(&"source_id"));
        assert!(fields.contains(&"status_map"));
        assert!(errs
            .iter()
            .any(|e| e.field == "payment_map" && e.message.contains("\"card\"")));
    }

    #[test]
    fn pipelines_need_the_module_and_a_target() {
        let mut s = valid();
        s.order_sync = OrderSyncType::Pipelines;
        s.addon_fields.clear();
        let mut crm = crm_reference();
        crm.pipelines_enabled = false;
        let errs = s.validate(&crm, &shop_reference());
        assert!(errs.iter().any(|e| e.field == "order_sync"));
        assert!(errs.iter().any(|e| e.field == "pipeline_status_map"));

        s.pipeline_status_map = vec![PipelineStatusLink {
            shop_status: "new".into(),
            pipeline_id: 1,
            status_id: 999,
        }];
        let errs = s.validate(&crm_reference(), &shop_reference());
        assert_eq!(
            errs,
            vec![FieldError::new(
                "pipeline_status_map[0].status_id",
                "pipeline 1 has no status 999"
            )]
        );
    }

    #[test]
    fn duplicate_shop_statuses_are_refused() {
        let mut s = valid();
        s.status_map.push(StatusLink {
            shop_status: "new".into(),
            keycrm_status_id: 12,
        });
        let errs = s.validate(&crm_reference(), &shop_reference());
        assert!(errs.iter().any(|e| e.message.contains("mapped twice")));
    }

    #[test]
    fn methods_mapped_twice_are_refused() {
        let mut s = valid();
        s.payment_map.push(PaymentLink {
            shop_method: "cod".into(),
            keycrm_method_id: 2,
        });
        s.delivery_map.push(DeliveryLink {
            shop_method: "np".into(),
            keycrm_service_id: 1,
        });
        let fields: Vec<String> = s
            .validate(&crm_reference(), &shop_reference())
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(
            fields,
            vec!["payment_map[2].shop_method", "delivery_map[1].shop_method"]
        );
    }

    #[test]
    fn lookups_in_both_directions() {
        let s = valid();
        assert_eq!(s.keycrm_status_for("done"), Some(12));
        assert_eq!(s.shop_status_for(12), Some("done"));
        assert_eq!(s.shop_status_for(5), None);
        assert_eq!(s.payment_method_for("card"), Some(2));
        assert_eq!(s.delivery_service_for("np"), Some(1));
    }

    #[test]
    fn unknown_setting_names_are_rejected_not_ignored() {
        let err = serde_json::from_str::<Settings>(r#"{"sync_prodcts": true}"#).unwrap_err();
        assert!(err.to_string().contains("sync_prodcts"));
        let err = serde_json::from_str::<Settings>(r#"{"match_key": "colour"}"#).unwrap_err();
        assert!(err.to_string().contains("colour"));
    }

    #[test]
    fn guard_share_must_be_a_share() {
        let mut s = valid();
        s.vanish_guard = 1.5;
        assert!(s
            .validate(&crm_reference(), &shop_reference())
            .iter()
            .any(|e| e.field == "vanish_guard"));
    }
}
