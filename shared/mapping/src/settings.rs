//! A connection's settings, and their validation against both sides' live dictionaries.

use crate::lang::Lang;
use crate::reference::KeycrmReference;
use crate::settings_limits::{
    id_issue, too_many, MAX_ADDON_LINKS, MAX_CATEGORY_FILTER, MAX_METHOD_LINKS,
};
pub use crate::settings_problem::FieldError;
use crate::settings_problem::{Issue, MethodKind, Problem};
use crate::shop::ShopReference;
pub use crate::status_map::{
    CardStatusFrom, CardStatusMap, CardStatusTo, OrderStatusFrom, OrderStatusMap, OrderStatusTo,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

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

/// Shop status -> KeyCRM order status, as saved before the mapping had two directions
/// (`status_map`). Read only, to migrate stored settings; see [`OrderStatusMap::from_legacy`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusLink {
    pub shop_status: String,
    pub keycrm_status_id: i64,
}

/// Shop status -> (pipeline, pipeline status), as saved before (`pipeline_status_map`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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

/// A connection's settings. Serialized in the current shape only; read also from the shape
/// saved before the status mapping had two directions (see [`SettingsWire`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "SettingsWire")]
pub struct Settings {
    pub sync_products: bool,
    /// Realtime stock (KeyCRM's stock webhook); acted on only with `sync_products`.
    pub realtime_stock: bool,
    pub sync_categories: bool,
    /// KeyCRM category ids to take products from (with their descendants); empty = all.
    pub category_filter: Vec<i64>,
    pub match_key: MatchKey,
    pub new_products: NewProductPolicy,
    pub existing_products: ExistingProductPolicy,
    pub missing_products: MissingProductPolicy,
    /// Largest share of linked products (and categories) one run may hide or make unavailable.
    pub vanish_guard: f64,
    pub order_sync: OrderSyncType,
    pub source_id: Option<i64>,
    /// Status mapping in both directions for `order_sync: orders`.
    pub order_statuses: OrderStatusMap,
    /// Status mapping in both directions for `order_sync: pipelines`.
    pub card_statuses: CardStatusMap,
    /// Where new pipeline cards go when the initial shop status has no mapping of its own.
    pub default_pipeline_id: Option<i64>,
    pub addon_fields: Vec<AddonLink>,
    pub payment_map: Vec<PaymentLink>,
    pub delivery_map: Vec<DeliveryLink>,
}

/// What a settings document may hold: today's fields, plus `status_map` and
/// `pipeline_status_map` as written before (migrated on read, never written again).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsWire {
    #[serde(default)]
    sync_products: bool,
    #[serde(default)]
    realtime_stock: bool,
    #[serde(default)]
    sync_categories: bool,
    #[serde(default)]
    category_filter: Vec<i64>,
    #[serde(default)]
    match_key: MatchKey,
    #[serde(default)]
    new_products: NewProductPolicy,
    #[serde(default)]
    existing_products: ExistingProductPolicy,
    #[serde(default)]
    missing_products: MissingProductPolicy,
    #[serde(default = "default_vanish_guard")]
    vanish_guard: f64,
    #[serde(default)]
    order_sync: OrderSyncType,
    #[serde(default)]
    source_id: Option<i64>,
    #[serde(default)]
    order_statuses: Option<OrderStatusMap>,
    #[serde(default)]
    card_statuses: Option<CardStatusMap>,
    #[serde(default)]
    status_map: Option<Vec<StatusLink>>,
    #[serde(default)]
    pipeline_status_map: Option<Vec<PipelineStatusLink>>,
    #[serde(default)]
    default_pipeline_id: Option<i64>,
    #[serde(default)]
    addon_fields: Vec<AddonLink>,
    #[serde(default)]
    payment_map: Vec<PaymentLink>,
    #[serde(default)]
    delivery_map: Vec<DeliveryLink>,
}

impl TryFrom<SettingsWire> for Settings {
    type Error = String;

    fn try_from(w: SettingsWire) -> Result<Self, String> {
        let order_statuses = match (w.order_statuses, w.status_map) {
            (Some(_), Some(_)) => {
                return Err(
                    "status_map is the old form of order_statuses; send only order_statuses".into(),
                )
            }
            (Some(m), None) => m,
            (None, Some(legacy)) => OrderStatusMap::from_legacy(
                legacy
                    .into_iter()
                    .map(|l| (l.shop_status, l.keycrm_status_id)),
            ),
            (None, None) => OrderStatusMap::default(),
        };
        let card_statuses =
            match (w.card_statuses, w.pipeline_status_map) {
                (Some(_), Some(_)) => return Err(
                    "pipeline_status_map is the old form of card_statuses; send only card_statuses"
                        .into(),
                ),
                (Some(m), None) => m,
                (None, Some(legacy)) => CardStatusMap::from_legacy(
                    legacy
                        .into_iter()
                        .map(|l| (l.shop_status, l.pipeline_id, l.status_id)),
                ),
                (None, None) => CardStatusMap::default(),
            };
        Ok(Settings {
            sync_products: w.sync_products,
            realtime_stock: w.realtime_stock,
            sync_categories: w.sync_categories,
            category_filter: w.category_filter,
            match_key: w.match_key,
            new_products: w.new_products,
            existing_products: w.existing_products,
            missing_products: w.missing_products,
            vanish_guard: w.vanish_guard,
            order_sync: w.order_sync,
            source_id: w.source_id,
            order_statuses,
            card_statuses,
            default_pipeline_id: w.default_pipeline_id,
            addon_fields: w.addon_fields,
            payment_map: w.payment_map,
            delivery_map: w.delivery_map,
        })
    }
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
            order_statuses: OrderStatusMap::default(),
            card_statuses: CardStatusMap::default(),
            default_pipeline_id: None,
            addon_fields: Vec::new(),
            payment_map: Vec::new(),
            delivery_map: Vec::new(),
        }
    }
}

impl Settings {
    /// KeyCRM status a shop status becomes (order sync).
    pub fn keycrm_status_for(&self, shop_status: &str) -> Option<i64> {
        self.order_statuses.keycrm_status_for(shop_status)
    }

    /// Shop status a KeyCRM order status stands for.
    pub fn shop_status_for(&self, keycrm_status_id: i64) -> Option<&str> {
        self.order_statuses.shop_status_for(keycrm_status_id)
    }

    /// `(pipeline, status)` a shop status becomes (pipeline sync).
    pub fn pipeline_status_for(&self, shop_status: &str) -> Option<(i64, i64)> {
        self.card_statuses.keycrm_status_for(shop_status)
    }

    /// Shop status a card status stands for.
    pub fn shop_status_for_card(&self, pipeline_id: Option<i64>, status_id: i64) -> Option<&str> {
        self.card_statuses.shop_status_for(pipeline_id, status_id)
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

    /// These settings with every KeyCRM reference removed (source, status mappings, pipeline,
    /// custom fields, payment and delivery maps, category filter) and the flows that need
    /// them turned off; shop-side choices (matching, policies, guard) are kept. What a
    /// connection starts from after switching to another KeyCRM account.
    pub fn without_keycrm_ids(&self) -> Settings {
        Settings {
            sync_products: false,
            sync_categories: false,
            category_filter: Vec::new(),
            order_sync: OrderSyncType::None,
            source_id: None,
            order_statuses: OrderStatusMap::default(),
            card_statuses: CardStatusMap::default(),
            default_pipeline_id: None,
            addon_fields: Vec::new(),
            payment_map: Vec::new(),
            delivery_map: Vec::new(),
            ..self.clone()
        }
    }

    /// Checks every reference against the live lists and that order push has what it needs,
    /// rendered in English. See [`Settings::problems`].
    pub fn validate(&self, crm: &KeycrmReference, shop: &ShopReference) -> Vec<FieldError> {
        self.problems(crm, shop)
            .iter()
            .map(|p| p.render(Lang::En))
            .collect()
    }

    /// Every problem at once, so the merchant can fix them in one go. A list longer than its
    /// maximum ([`crate::settings_limits`]) is one problem at the list's path and its entries
    /// are not checked; an id too long or with characters no id has is not looked up.
    pub fn problems(&self, crm: &KeycrmReference, shop: &ShopReference) -> Vec<Problem> {
        let mut errs = Vec::new();
        if !(0.0..=1.0).contains(&self.vanish_guard) || self.vanish_guard.is_nan() {
            errs.push(Problem::new("vanish_guard", Issue::NotAShare));
        }
        if let Some(p) = too_many(
            "category_filter",
            self.category_filter.len(),
            MAX_CATEGORY_FILTER,
        ) {
            errs.push(p);
        } else {
            let mut first_at: BTreeMap<i64, usize> = BTreeMap::new();
            for (i, id) in self.category_filter.iter().enumerate() {
                let f = format!("category_filter[{i}]");
                if crm.category(*id).is_none() {
                    errs.push(Problem::new(f.clone(), Issue::UnknownCategory(*id)));
                }
                match first_at.get(id) {
                    Some(first) => errs.push(Problem::new(
                        f,
                        Issue::CategoryListedTwice {
                            first: format!("category_filter[{first}]"),
                        },
                    )),
                    None => {
                        first_at.insert(*id, i);
                    }
                }
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
            Some(id) if crm.source(id).is_none() => {
                errs.push(Problem::new("source_id", Issue::UnknownSource(id)))
            }
            None if self.order_sync_on() => {
                errs.push(Problem::new("source_id", Issue::SourceRequired))
            }
            _ => {}
        }

        self.order_statuses
            .check("order_statuses", crm, &shop_statuses, &mut errs);
        self.card_statuses
            .check("card_statuses", crm, &shop_statuses, &mut errs);
        if let Some(p) = self.default_pipeline_id {
            if crm.pipeline(p).is_none() {
                errs.push(Problem::new(
                    "default_pipeline_id",
                    Issue::UnknownPipeline(p),
                ));
            }
        }

        self.check_addon_fields(crm, shop, &mut errs);
        check_method_map(
            &mut errs,
            ("payment_map", "keycrm_method_id", MethodKind::Payment),
            self.payment_map
                .iter()
                .map(|l| (l.shop_method.as_str(), l.keycrm_method_id)),
            &shop_payments,
            |id| crm.payment_method(id).is_some(),
        );
        check_method_map(
            &mut errs,
            ("delivery_map", "keycrm_service_id", MethodKind::Delivery),
            self.delivery_map
                .iter()
                .map(|l| (l.shop_method.as_str(), l.keycrm_service_id)),
            &shop_delivery,
            |id| crm.delivery_service(id).is_some(),
        );

        // Completeness: order push must be able to place every new order somewhere. New
        // orders start in the status the shop lists first (docs/shop-api.md).
        let initial = shop.order_statuses.first().map(|s| s.id.as_str());
        match self.order_sync {
            OrderSyncType::None => {}
            OrderSyncType::Orders => {
                if let Some(initial) = initial {
                    if self.order_statuses.keycrm_status_for(initial).is_none() {
                        errs.push(Problem::new(
                            "order_statuses.to_keycrm",
                            Issue::InitialStatusUnmapped {
                                shop_status: initial.to_string(),
                                pipelines: false,
                            },
                        ));
                    }
                }
            }
            OrderSyncType::Pipelines => {
                if !crm.pipelines_enabled {
                    errs.push(Problem::new("order_sync", Issue::PipelinesDisabled));
                }
                if let Some(initial) = initial {
                    if self.card_statuses.keycrm_status_for(initial).is_none()
                        && self.default_pipeline_id.is_none()
                    {
                        errs.push(Problem::new(
                            "card_statuses.to_keycrm",
                            Issue::InitialStatusUnmapped {
                                shop_status: initial.to_string(),
                                pipelines: true,
                            },
                        ));
                    }
                }
            }
        }
        if self.order_sync_on() {
            for m in &shop.payment_methods {
                if self.payment_method_for(&m.id).is_none() {
                    errs.push(Problem::new(
                        "payment_map",
                        Issue::PaymentMethodUnmapped {
                            method: m.id.clone(),
                        },
                    ));
                }
            }
        }
        errs
    }
}

impl Settings {
    /// Add-on mappings: each shop add-on once, filling one custom field that no other add-on
    /// fills, of the kind the order sync type needs. Order push writes every mapped add-on's
    /// value into its field, so two add-ons in one field would overwrite each other's answer
    /// (whichever is listed last wins, silently). One add-on in two fields is refused like a
    /// shop method mapped twice: the page offers one field per add-on, so a second entry is
    /// a leftover, not a choice.
    fn check_addon_fields(
        &self,
        crm: &KeycrmReference,
        shop: &ShopReference,
        errs: &mut Vec<Problem>,
    ) {
        if let Some(p) = too_many("addon_fields", self.addon_fields.len(), MAX_ADDON_LINKS) {
            errs.push(p);
            return;
        }
        let for_cards = self.order_sync == OrderSyncType::Pipelines;
        let mut addon_at: BTreeMap<&str, usize> = BTreeMap::new();
        let mut field_at: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, l) in self.addon_fields.iter().enumerate() {
            let f = format!("addon_fields[{i}]");
            let mut addon_repeated = false;
            if let Some(issue) = id_issue(&l.addon_id) {
                errs.push(Problem::new(format!("{f}.addon_id"), issue));
            } else {
                if !shop.order_addons.iter().any(|a| a.id == l.addon_id) {
                    errs.push(Problem::new(format!("{f}.addon_id"), Issue::UnknownAddon));
                }
                match addon_at.get(l.addon_id.as_str()) {
                    Some(first) => {
                        addon_repeated = true;
                        errs.push(Problem::new(
                            format!("{f}.addon_id"),
                            Issue::AddonMappedTwice {
                                first: format!("addon_fields[{first}]"),
                            },
                        ));
                    }
                    None => {
                        addon_at.insert(&l.addon_id, i);
                    }
                }
            }
            let field = format!("{f}.field_uuid");
            if let Some(issue) = id_issue(&l.field_uuid) {
                errs.push(Problem::new(field, issue));
                continue;
            }
            if let Some(issue) = field_kind_issue(crm, for_cards, &l.field_uuid) {
                errs.push(Problem::new(field.clone(), issue));
            }
            match field_at.get(l.field_uuid.as_str()) {
                // A repeated add-on is one problem, said at its id.
                Some(_) if addon_repeated => {}
                Some(first) => errs.push(Problem::new(
                    field,
                    Issue::CustomFieldMappedTwice {
                        first: format!("addon_fields[{first}]"),
                    },
                )),
                None => {
                    field_at.insert(&l.field_uuid, i);
                }
            }
        }
    }
}

/// What is wrong with custom field `uuid` for add-ons: card (lead) fields for pipelines,
/// order fields for orders.
fn field_kind_issue(crm: &KeycrmReference, for_cards: bool, uuid: &str) -> Option<Issue> {
    if for_cards {
        if crm.lead_field(uuid).is_some() {
            return None;
        }
        Some(match crm.order_field(uuid) {
            Some(order_field) => Issue::OrderFieldInPipelines {
                name: order_field.name.clone(),
                card_field: crm
                    .lead_fields
                    .iter()
                    .find(|c| {
                        c.name.trim().to_lowercase() == order_field.name.trim().to_lowercase()
                    })
                    .map(|c| c.name.clone()),
            },
            None => Issue::UnknownCardField,
        })
    } else {
        if crm.order_field(uuid).is_some() {
            return None;
        }
        Some(match crm.lead_field(uuid) {
            Some(card_field) => Issue::CardFieldInOrders {
                name: card_field.name.clone(),
            },
            None => Issue::UnknownOrderField,
        })
    }
}

/// Payment and delivery maps follow one rule: each shop method once, existing on both sides,
/// at most [`MAX_METHOD_LINKS`] of them. A shop method mapped twice would make the lookups'
/// "first wins" silently decide. `names` is `(settings key, KeyCRM id key, kind)`.
fn check_method_map<'a>(
    errs: &mut Vec<Problem>,
    names: (&str, &str, MethodKind),
    entries: impl ExactSizeIterator<Item = (&'a str, i64)>,
    shop_methods: &BTreeSet<&str>,
    crm_has: impl Fn(i64) -> bool,
) {
    let (name, crm_field, kind) = names;
    if let Some(p) = too_many(name, entries.len(), MAX_METHOD_LINKS) {
        errs.push(p);
        return;
    }
    let mut seen = BTreeSet::new();
    for (i, (shop_method, crm_id)) in entries.enumerate() {
        let f = format!("{name}[{i}]");
        if let Some(issue) = id_issue(shop_method) {
            errs.push(Problem::new(format!("{f}.shop_method"), issue));
        } else {
            if !seen.insert(shop_method) {
                errs.push(Problem::new(
                    format!("{f}.shop_method"),
                    Issue::ShopMethodMappedTwice(kind),
                ));
            }
            if !shop_methods.contains(shop_method) {
                errs.push(Problem::new(
                    format!("{f}.shop_method"),
                    Issue::UnknownShopMethod(kind),
                ));
            }
        }
        if !crm_has(crm_id) {
            errs.push(Problem::new(
                format!("{f}.{crm_field}"),
                Issue::UnknownKeycrmMethod(kind, crm_id),
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
            order_statuses: OrderStatusMap {
                from_keycrm: vec![
                    OrderStatusFrom {
                        keycrm_status_id: 1,
                        shop_status: "new".into(),
                    },
                    OrderStatusFrom {
                        keycrm_status_id: 3,
                        shop_status: "new".into(),
                    },
                    OrderStatusFrom {
                        keycrm_status_id: 12,
                        shop_status: "done".into(),
                    },
                ],
                to_keycrm: vec![
                    OrderStatusTo {
                        shop_status: "new".into(),
                        keycrm_status_id: 1,
                    },
                    OrderStatusTo {
                        shop_status: "done".into(),
                        keycrm_status_id: 12,
                    },
                ],
            },
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

    fn fields(s: &Settings) -> Vec<String> {
        s.validate(&crm_reference(), &shop_reference())
            .into_iter()
            .map(|e| e.field)
            .collect()
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
        s.order_statuses.to_keycrm.push(OrderStatusTo {
            shop_status: "ghost".into(),
            keycrm_status_id: 777,
        });
        s.payment_map[0].keycrm_method_id = 55;
        s.delivery_map[0].shop_method = "pigeon".into();
        s.addon_fields[0].field_uuid = "OR_9999".into();
        s.category_filter = vec![123456];
        assert_eq!(
            fields(&s),
            vec![
                "category_filter[0]",
                "source_id",
                "order_statuses.to_keycrm[2].shop_status",
                "order_statuses.to_keycrm[2].keycrm_status_id",
                "addon_fields[0].field_uuid",
                "payment_map[0].keycrm_method_id",
                "delivery_map[0].shop_method",
            ]
        );
    }

    #[test]
    fn every_problem_has_a_stable_code_and_both_languages() {
        let mut s = valid();
        s.source_id = Some(999);
        s.addon_fields[0].field_uuid = "OR_9999".into();
        let probs = s.problems(&crm_reference(), &shop_reference());
        let codes: Vec<&str> = probs.iter().map(|p| p.code()).collect();
        assert_eq!(codes, vec!["unknown_source", "unknown_order_field"]);
        for p in &probs {
            let (en, uk) = (p.render(Lang::En), p.render(Lang::Uk));
            assert_eq!((en.code.as_str(), uk.code.as_str()), (p.code(), p.code()));
            assert_ne!(en.message, uk.message);
            assert!(!en.message.contains("OR_9999") && !uk.message.contains("OR_9999"));
        }
        assert_eq!(probs[0].message(Lang::Uk), "у KeyCRM немає джерела 999");
    }

    #[test]
    fn incomplete_mappings_that_break_order_push_are_refused() {
        let mut s = valid();
        s.order_statuses.to_keycrm.clear();
        s.payment_map.pop();
        s.source_id = None;
        let errs = s.validate(&crm_reference(), &shop_reference());
        let f: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert!(f.contains(&"source_id"));
        let initial = errs
            .iter()
            .find(|e| e.field == "order_statuses.to_keycrm")
            .expect("the starting status must be mapped");
        assert_eq!(initial.code, "initial_status_unmapped");
        assert!(initial.message.contains("\"new\""), "{}", initial.message);
        assert!(errs
            .iter()
            .any(|e| e.field == "payment_map" && e.message.contains("\"card\"")));
        // Other shop statuses need no mapping: they are simply not pushed.
        let mut s = valid();
        s.order_statuses
            .to_keycrm
            .retain(|t| t.shop_status == "new");
        assert_eq!(fields(&s), Vec::<String>::new());
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
        assert!(errs
            .iter()
            .any(|e| e.field == "card_statuses.to_keycrm" && e.code == "initial_status_unmapped"));

        s.card_statuses = CardStatusMap {
            from_keycrm: vec![],
            to_keycrm: vec![CardStatusTo {
                shop_status: "new".into(),
                pipeline_id: 1,
                status_id: 999,
            }],
        };
        let errs = s.validate(&crm_reference(), &shop_reference());
        assert_eq!(
            errs,
            vec![FieldError::new(
                "card_statuses.to_keycrm[0].status_id",
                "unknown_pipeline_status",
                "pipeline 1 has no status 999"
            )]
        );
        // A default pipeline is enough for new cards.
        s.card_statuses = CardStatusMap::default();
        s.default_pipeline_id = Some(2);
        assert_eq!(fields(&s), Vec::<String>::new());
    }

    #[test]
    fn an_order_field_in_pipelines_mode_says_what_to_create_instead() {
        let mut s = valid();
        s.order_sync = OrderSyncType::Pipelines;
        s.default_pipeline_id = Some(1);
        s.addon_fields[0].field_uuid = "OR_1002".into();
        let probs = s.problems(&crm_reference(), &shop_reference());
        assert_eq!(probs.len(), 1);
        assert_eq!(probs[0].field, "addon_fields[0].field_uuid");
        assert_eq!(probs[0].code(), "order_field_in_pipelines");
        let uk = probs[0].message(Lang::Uk);
        assert!(
            uk.contains("Налаштування → Додатково")
                && uk.contains("Користувацькі поля")
                && uk.contains("Сутність")
                && uk.contains("картку"),
            "{uk}"
        );
        let en = probs[0].message(Lang::En);
        assert!(en.contains("card field") && en.contains("Entity"), "{en}");
        // A card field of the same name is suggested.
        let mut crm = crm_reference();
        crm.lead_fields[0].name = "or_1002".into();
        let probs = s.problems(&crm, &shop_reference());
        assert!(probs[0].message(Lang::En).contains("«or_1002»"));
        // The other way round: a card field for KeyCRM orders.
        let mut s = valid();
        s.addon_fields[0].field_uuid = "LD_1001".into();
        let probs = s.problems(&crm_reference(), &shop_reference());
        assert_eq!(probs[0].code(), "card_field_in_orders");
        // A card field in pipelines mode is what it takes.
        let mut s = valid();
        s.order_sync = OrderSyncType::Pipelines;
        s.default_pipeline_id = Some(1);
        s.addon_fields[0].field_uuid = "LD_1001".into();
        assert_eq!(fields(&s), Vec::<String>::new());
    }

    #[test]
    fn a_contradictory_mapping_is_refused() {
        let mut s = valid();
        // "paid" goes to KeyCRM 3, which comes back as "new".
        s.order_statuses.to_keycrm.push(OrderStatusTo {
            shop_status: "paid".into(),
            keycrm_status_id: 3,
        });
        let errs = s.validate(&crm_reference(), &shop_reference());
        assert_eq!(errs.len(), 1);
        assert_eq!(
            errs[0].field,
            "order_statuses.to_keycrm[2].keycrm_status_id"
        );
        assert_eq!(errs[0].code, "contradicts_from_keycrm");
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
        assert_eq!(
            fields(&s),
            vec!["payment_map[2].shop_method", "delivery_map[1].shop_method"]
        );
    }

    fn codes(s: &Settings) -> Vec<(String, &'static str)> {
        s.problems(&crm_reference(), &shop_reference())
            .into_iter()
            .map(|p| (p.field.clone(), p.code()))
            .collect()
    }

    fn addon(addon_id: &str, field_uuid: &str) -> AddonLink {
        AddonLink {
            addon_id: addon_id.into(),
            field_uuid: field_uuid.into(),
        }
    }

    #[test]
    fn an_addon_mapped_twice_is_refused() {
        // One add-on into two fields.
        let mut s = valid();
        s.addon_fields = vec![addon("gift", "OR_1001"), addon("gift", "OR_1002")];
        assert_eq!(
            codes(&s),
            vec![("addon_fields[1].addon_id".into(), "addon_mapped_twice")]
        );
        let p = &s.problems(&crm_reference(), &shop_reference())[0];
        assert_eq!(
            p.issue,
            Issue::AddonMappedTwice {
                first: "addon_fields[0]".into()
            }
        );
        assert_eq!(
            p.message(Lang::En),
            "this add-on is mapped already in addon_fields[0]: each add-on fills one custom field"
        );
        assert_eq!(
            p.message(Lang::Uk),
            "це доповнення вже зіставлено в addon_fields[0]: кожне доповнення заповнює одне користувацьке поле"
        );
        // The same mapping three times: one problem per repeat, at the add-on.
        s.addon_fields = vec![addon("gift", "OR_1001"); 3];
        assert_eq!(
            codes(&s),
            vec![
                ("addon_fields[1].addon_id".into(), "addon_mapped_twice"),
                ("addon_fields[2].addon_id".into(), "addon_mapped_twice"),
            ]
        );
        // An unknown add-on twice is both.
        s.addon_fields = vec![addon("ghost", "OR_1001"), addon("ghost", "OR_1003")];
        assert_eq!(
            codes(&s),
            vec![
                ("addon_fields[0].addon_id".into(), "unknown_addon"),
                ("addon_fields[1].addon_id".into(), "unknown_addon"),
                ("addon_fields[1].addon_id".into(), "addon_mapped_twice"),
            ]
        );
        // Different add-ons in different fields are what the page sends.
        s.addon_fields = vec![addon("gift", "OR_1001"), addon("callback", "OR_1004")];
        assert_eq!(codes(&s), vec![]);
    }

    #[test]
    fn two_addons_in_one_custom_field_are_refused() {
        // Order push would write both answers into one field, the last overwriting the first.
        let mut s = valid();
        s.addon_fields = vec![addon("gift", "OR_1001"), addon("callback", "OR_1001")];
        assert_eq!(
            codes(&s),
            vec![(
                "addon_fields[1].field_uuid".into(),
                "custom_field_mapped_twice"
            )]
        );
        let p = &s.problems(&crm_reference(), &shop_reference())[0];
        assert_eq!(
            p.issue,
            Issue::CustomFieldMappedTwice {
                first: "addon_fields[0]".into()
            }
        );
        assert!(p.message(Lang::En).contains("addon_fields[0]"));
        assert!(p.message(Lang::Uk).contains("addon_fields[0]"));
        assert!(!p.message(Lang::En).contains("OR_1001"));
        // The same in pipelines mode, with a card field.
        s.order_sync = OrderSyncType::Pipelines;
        s.default_pipeline_id = Some(1);
        s.addon_fields = vec![addon("gift", "LD_1001"), addon("callback", "LD_1001")];
        assert_eq!(
            codes(&s),
            vec![(
                "addon_fields[1].field_uuid".into(),
                "custom_field_mapped_twice"
            )]
        );
        // A field of the wrong kind twice is both.
        s.addon_fields = vec![addon("gift", "OR_1001"), addon("callback", "OR_1001")];
        assert_eq!(
            codes(&s),
            vec![
                (
                    "addon_fields[0].field_uuid".into(),
                    "order_field_in_pipelines"
                ),
                (
                    "addon_fields[1].field_uuid".into(),
                    "order_field_in_pipelines"
                ),
                (
                    "addon_fields[1].field_uuid".into(),
                    "custom_field_mapped_twice"
                ),
            ]
        );
    }

    #[test]
    fn a_category_chosen_twice_is_refused() {
        let mut s = valid();
        s.category_filter = vec![10, 11, 11, 10, 123456, 123456];
        assert_eq!(
            codes(&s),
            vec![
                ("category_filter[2]".into(), "category_listed_twice"),
                ("category_filter[3]".into(), "category_listed_twice"),
                ("category_filter[4]".into(), "unknown_category"),
                ("category_filter[5]".into(), "unknown_category"),
                ("category_filter[5]".into(), "category_listed_twice"),
            ]
        );
        let probs = s.problems(&crm_reference(), &shop_reference());
        assert_eq!(
            probs[1].issue,
            Issue::CategoryListedTwice {
                first: "category_filter[0]".into()
            }
        );
        assert_eq!(
            probs[0].message(Lang::En),
            "this category is chosen already in category_filter[1]"
        );
        assert_eq!(
            probs[0].message(Lang::Uk),
            "цю категорію вже вибрано в category_filter[1]"
        );
        s.category_filter = vec![10, 11];
        assert_eq!(codes(&s), vec![]);
    }

    #[test]
    fn lookups_in_both_directions() {
        let s = valid();
        assert_eq!(s.keycrm_status_for("done"), Some(12));
        assert_eq!(s.shop_status_for(12), Some("done"));
        assert_eq!(
            s.shop_status_for(3),
            Some("new"),
            "several KeyCRM statuses, one shop status"
        );
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
        let err = serde_json::from_str::<Settings>(
            r#"{"order_statuses": {"from_keycrm": [], "to_keycrm": [], "both": []}}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("both"));
    }

    /// A connection document as stored by the connector before the status mapping had two
    /// directions, verbatim.
    const STORED_BEFORE: &str = r#"{"sync_products":true,"sync_categories":false,"category_filter":[],"match_key":"sku","new_products":"hide","existing_products":"update","missing_products":"nothing","vanish_guard":0.3,"order_sync":"orders","source_id":1,"status_map":[{"shop_status":"new","keycrm_status_id":1},{"shop_status":"paid","keycrm_status_id":3},{"shop_status":"packed","keycrm_status_id":3},{"shop_status":"done","keycrm_status_id":12}],"pipeline_status_map":[{"shop_status":"new","pipeline_id":1,"status_id":101}],"default_pipeline_id":null,"addon_fields":[],"payment_map":[{"shop_method":"cod","keycrm_method_id":1}],"delivery_map":[]}"#;

    #[test]
    fn settings_saved_before_both_directions_load_and_behave_the_same() {
        let s: Settings = serde_json::from_str(STORED_BEFORE).unwrap();
        // Shop -> KeyCRM: every listed shop status, as before.
        for (shop, k) in [("new", 1), ("paid", 3), ("packed", 3), ("done", 12)] {
            assert_eq!(s.keycrm_status_for(shop), Some(k), "{shop}");
        }
        // KeyCRM -> shop: the first listed shop status per KeyCRM status, as before.
        assert_eq!(s.shop_status_for(3), Some("paid"));
        assert_eq!(s.shop_status_for(12), Some("done"));
        assert_eq!(s.pipeline_status_for("new"), Some((1, 101)));
        assert_eq!(s.shop_status_for_card(Some(1), 101), Some("new"));
        // Written back in the new shape only, and read again to the same settings.
        let out = serde_json::to_value(&s).unwrap();
        assert!(out.get("status_map").is_none() && out.get("pipeline_status_map").is_none());
        assert_eq!(
            out["order_statuses"]["to_keycrm"][2]["shop_status"],
            "packed"
        );
        let again: Settings = serde_json::from_value(out).unwrap();
        assert_eq!(again, s);
    }

    #[test]
    fn the_old_and_the_new_form_at_once_are_refused() {
        let err = serde_json::from_str::<Settings>(
            r#"{"status_map": [], "order_statuses": {"from_keycrm": [], "to_keycrm": []}}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("old form"), "{err}");
    }

    #[test]
    fn a_clean_slate_keeps_only_shop_side_choices() {
        let mut s = valid();
        s.sync_products = true;
        s.match_key = MatchKey::Barcode;
        s.missing_products = MissingProductPolicy::Hide;
        s.category_filter = vec![10];
        let c = s.without_keycrm_ids();
        assert_eq!(
            (c.match_key, c.missing_products, c.vanish_guard),
            (
                MatchKey::Barcode,
                MissingProductPolicy::Hide,
                s.vanish_guard
            )
        );
        assert!(!c.sync_products && c.order_sync == OrderSyncType::None);
        assert!(c.source_id.is_none() && c.order_statuses.is_empty() && c.payment_map.is_empty());
        assert!(c.category_filter.is_empty() && c.addon_fields.is_empty());
    }

    #[test]
    fn guard_share_must_be_a_share() {
        let mut s = valid();
        s.vanish_guard = 1.5;
        assert!(fields(&s).contains(&"vanish_guard".to_string()));
    }
}
