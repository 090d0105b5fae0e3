//! What can be wrong with settings, as data: a field path, a stable code the settings page
//! can switch on, and a message rendered in the merchant's language.
//!
//! Messages name ids and the shop's or KeyCRM's own labels, never a free-form value from the
//! request that matched nothing (the field path already says where it is).

use crate::lang::Lang;
use serde::{Deserialize, Serialize};

/// A refused setting, named so the page can put the message next to the field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    pub field: String,
    /// Stable, machine-readable (`unknown_keycrm_status`, `contradicts_from_keycrm`, …).
    #[serde(default)]
    pub code: String,
    pub message: String,
}

impl FieldError {
    pub fn new(
        field: impl Into<String>,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        FieldError {
            field: field.into(),
            code: code.into(),
            message: message.into(),
        }
    }
}

/// Which shop-method map a problem is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MethodKind {
    Payment,
    Delivery,
}

/// One thing wrong with the settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Issue {
    NotAShare,
    /// A list longer than its maximum (`settings_limits`); said once, at the list's path.
    TooManyEntries {
        max: usize,
    },
    /// An id longer than `max` bytes.
    TooLong {
        max: usize,
    },
    /// An id with a control character, a quote or a backslash.
    InvalidCharacters,
    UnknownCategory(i64),
    /// A category the filter lists already, at path `first`.
    CategoryListedTwice {
        first: String,
    },
    UnknownSource(i64),
    SourceRequired,
    UnknownShopStatus,
    UnknownKeycrmStatus(i64),
    KeycrmStatusMappedTwice {
        first: String,
    },
    ShopStatusMappedTwice {
        shop_status: String,
    },
    PipelineStatusMappedTwice {
        first: String,
    },
    UnknownPipeline(i64),
    UnknownPipelineStatus {
        pipeline: i64,
        status: i64,
    },
    /// `shop_status` becomes KeyCRM status `keycrm` (its name), which comes back as `back_to`.
    Contradiction {
        shop_status: String,
        keycrm: String,
        back_to: String,
        other_field: String,
    },
    /// New orders start in `shop_status`, and it has no `to_keycrm` entry.
    InitialStatusUnmapped {
        shop_status: String,
        pipelines: bool,
    },
    PipelinesDisabled,
    UnknownAddon,
    /// An add-on mapped already, at path `first`.
    AddonMappedTwice {
        first: String,
    },
    /// A custom field another add-on (at path `first`) fills already.
    CustomFieldMappedTwice {
        first: String,
    },
    UnknownOrderField,
    UnknownCardField,
    /// An order custom field named in pipelines mode; cards take card (lead) fields.
    OrderFieldInPipelines {
        /// The order field's name in KeyCRM.
        name: String,
        /// A card field with the same name, if the account has one.
        card_field: Option<String>,
    },
    /// A card custom field named in orders mode.
    CardFieldInOrders {
        name: String,
    },
    ShopMethodMappedTwice(MethodKind),
    UnknownShopMethod(MethodKind),
    UnknownKeycrmMethod(MethodKind, i64),
    PaymentMethodUnmapped {
        /// The shop's name for it.
        method: String,
    },
    /// A request setting that is not for this field or not understood (from parsing).
    Parse(ParseIssue),
}

/// What the JSON parser could not accept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParseIssue {
    UnknownField,
    MissingField,
    InvalidChoice,
    InvalidType,
    InvalidValue,
}

/// A problem at a field path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub field: String,
    pub issue: Issue,
}

impl Problem {
    pub fn new(field: impl Into<String>, issue: Issue) -> Self {
        Problem {
            field: field.into(),
            issue,
        }
    }

    pub fn code(&self) -> &'static str {
        self.issue.code()
    }

    pub fn message(&self, lang: Lang) -> String {
        self.issue.message(lang)
    }

    pub fn render(&self, lang: Lang) -> FieldError {
        FieldError::new(self.field.clone(), self.code(), self.message(lang))
    }
}

fn method_words(k: MethodKind, lang: Lang) -> (&'static str, &'static str) {
    // (shop side, KeyCRM side)
    match (k, lang) {
        (MethodKind::Payment, Lang::En) => ("payment method", "payment method"),
        (MethodKind::Delivery, Lang::En) => ("delivery method", "delivery service"),
        (MethodKind::Payment, Lang::Uk) => ("спосіб оплати", "спосіб оплати"),
        (MethodKind::Delivery, Lang::Uk) => ("спосіб доставки", "служба доставки"),
    }
}

impl Issue {
    pub fn code(&self) -> &'static str {
        match self {
            Issue::NotAShare => "not_a_share",
            Issue::TooManyEntries { .. } => "too_many_entries",
            Issue::TooLong { .. } => "too_long",
            Issue::InvalidCharacters => "invalid_characters",
            Issue::UnknownCategory(_) => "unknown_category",
            Issue::CategoryListedTwice { .. } => "category_listed_twice",
            Issue::UnknownSource(_) => "unknown_source",
            Issue::SourceRequired => "source_required",
            Issue::UnknownShopStatus => "unknown_shop_status",
            Issue::UnknownKeycrmStatus(_) => "unknown_keycrm_status",
            Issue::KeycrmStatusMappedTwice { .. } => "keycrm_status_mapped_twice",
            Issue::ShopStatusMappedTwice { .. } => "shop_status_mapped_twice",
            Issue::PipelineStatusMappedTwice { .. } => "pipeline_status_mapped_twice",
            Issue::UnknownPipeline(_) => "unknown_pipeline",
            Issue::UnknownPipelineStatus { .. } => "unknown_pipeline_status",
            Issue::Contradiction { .. } => "contradicts_from_keycrm",
            Issue::InitialStatusUnmapped { .. } => "initial_status_unmapped",
            Issue::PipelinesDisabled => "pipelines_disabled",
            Issue::UnknownAddon => "unknown_addon",
            Issue::AddonMappedTwice { .. } => "addon_mapped_twice",
            Issue::CustomFieldMappedTwice { .. } => "custom_field_mapped_twice",
            Issue::UnknownOrderField => "unknown_order_field",
            Issue::UnknownCardField => "unknown_card_field",
            Issue::OrderFieldInPipelines { .. } => "order_field_in_pipelines",
            Issue::CardFieldInOrders { .. } => "card_field_in_orders",
            Issue::ShopMethodMappedTwice(_) => "shop_method_mapped_twice",
            Issue::UnknownShopMethod(MethodKind::Payment) => "unknown_shop_payment_method",
            Issue::UnknownShopMethod(MethodKind::Delivery) => "unknown_shop_delivery_method",
            Issue::UnknownKeycrmMethod(MethodKind::Payment, _) => "unknown_keycrm_payment_method",
            Issue::UnknownKeycrmMethod(MethodKind::Delivery, _) => {
                "unknown_keycrm_delivery_service"
            }
            Issue::PaymentMethodUnmapped { .. } => "payment_method_unmapped",
            Issue::Parse(ParseIssue::UnknownField) => "unknown_field",
            Issue::Parse(ParseIssue::MissingField) => "missing_field",
            Issue::Parse(ParseIssue::InvalidChoice) => "invalid_choice",
            Issue::Parse(ParseIssue::InvalidType) => "invalid_type",
            Issue::Parse(ParseIssue::InvalidValue) => "invalid_value",
        }
    }

    pub fn message(&self, lang: Lang) -> String {
        let uk = lang == Lang::Uk;
        match self {
            Issue::NotAShare => lang
                .pick(
                    "must be a share between 0 and 1",
                    "має бути часткою від 0 до 1",
                )
                .into(),
            Issue::TooManyEntries { max } if uk => {
                format!("забагато записів: щонайбільше {max}")
            }
            Issue::TooManyEntries { max } => format!("too many entries: at most {max}"),
            Issue::TooLong { max } if uk => {
                format!("задовгий ідентифікатор: щонайбільше {max} байтів")
            }
            Issue::TooLong { max } => format!("this id is too long: at most {max} bytes"),
            Issue::InvalidCharacters => lang
                .pick(
                    "an id has no control characters, quotes or backslashes",
                    "ідентифікатор не може містити керівних символів, лапок чи зворотних скісних рисок",
                )
                .into(),
            Issue::UnknownCategory(id) if uk => format!("у KeyCRM немає категорії {id}"),
            Issue::UnknownCategory(id) => format!("KeyCRM has no category {id}"),
            Issue::CategoryListedTwice { first } if uk => {
                format!("цю категорію вже вибрано в {first}")
            }
            Issue::CategoryListedTwice { first } => {
                format!("this category is chosen already in {first}")
            }
            Issue::UnknownSource(id) if uk => format!("у KeyCRM немає джерела {id}"),
            Issue::UnknownSource(id) => format!("KeyCRM has no source {id}"),
            Issue::SourceRequired => lang
                .pick(
                    "a KeyCRM source is required to push orders: choose the source you added for this shop («Налаштування → Джерела»)",
                    "для передачі замовлень потрібне джерело KeyCRM: виберіть джерело, яке ви додали для цього магазину («Налаштування → Джерела»)",
                )
                .into(),
            Issue::UnknownShopStatus => lang
                .pick(
                    "the shop has no such order status",
                    "в інтернет-магазині немає такого статусу замовлення",
                )
                .into(),
            Issue::UnknownKeycrmStatus(id) if uk => {
                format!("у KeyCRM немає статусу замовлення {id}")
            }
            Issue::UnknownKeycrmStatus(id) => format!("KeyCRM has no order status {id}"),
            Issue::KeycrmStatusMappedTwice { first } if uk => format!(
                "цей статус KeyCRM уже зіставлено в {first}: кожен статус KeyCRM веде лише до одного статусу магазину"
            ),
            Issue::KeycrmStatusMappedTwice { first } => format!(
                "this KeyCRM status is mapped already in {first}: each KeyCRM status leads to one shop status"
            ),
            Issue::PipelineStatusMappedTwice { first } if uk => format!(
                "цей статус воронки вже зіставлено в {first}: кожен статус воронки веде лише до одного статусу магазину"
            ),
            Issue::PipelineStatusMappedTwice { first } => format!(
                "this pipeline status is mapped already in {first}: each pipeline status leads to one shop status"
            ),
            Issue::ShopStatusMappedTwice { shop_status } if uk => format!(
                "статус магазину \"{shop_status}\" уже має відповідність у KeyCRM: кожен статус магазину стає лише одним статусом KeyCRM"
            ),
            Issue::ShopStatusMappedTwice { shop_status } => format!(
                "shop status \"{shop_status}\" is mapped twice: each shop status becomes one KeyCRM status"
            ),
            Issue::UnknownPipeline(id) if uk => format!("у KeyCRM немає воронки {id}"),
            Issue::UnknownPipeline(id) => format!("KeyCRM has no pipeline {id}"),
            Issue::UnknownPipelineStatus { pipeline, status } if uk => {
                format!("у воронці {pipeline} немає статусу {status}")
            }
            Issue::UnknownPipelineStatus { pipeline, status } => {
                format!("pipeline {pipeline} has no status {status}")
            }
            Issue::Contradiction {
                shop_status,
                keycrm,
                back_to,
                other_field,
            } if uk => format!(
                "статус магазину \"{shop_status}\" стає статусом KeyCRM «{keycrm}», але {other_field} повертає «{keycrm}» як \"{back_to}\": після кожної передачі замовлення в KeyCRM магазин змінив би \"{shop_status}\" на \"{back_to}\". Зіставте «{keycrm}» зі статусом \"{shop_status}\" або виберіть для \"{shop_status}\" інший статус KeyCRM"
            ),
            Issue::Contradiction {
                shop_status,
                keycrm,
                back_to,
                other_field,
            } => format!(
                "shop status \"{shop_status}\" becomes KeyCRM status «{keycrm}», but {other_field} brings «{keycrm}» back as \"{back_to}\": every push would turn \"{shop_status}\" into \"{back_to}\" in the shop. Map «{keycrm}» back to \"{shop_status}\", or send \"{shop_status}\" to another KeyCRM status"
            ),
            Issue::InitialStatusUnmapped {
                shop_status,
                pipelines: false,
            } if uk => format!(
                "нові замовлення магазину мають статус \"{shop_status}\": вкажіть, яким статусом KeyCRM він стає, щоб передавати замовлення"
            ),
            Issue::InitialStatusUnmapped {
                shop_status,
                pipelines: false,
            } => format!(
                "new shop orders start as \"{shop_status}\": say which KeyCRM status it becomes to push orders"
            ),
            Issue::InitialStatusUnmapped {
                shop_status,
                pipelines: true,
            } if uk => format!(
                "нові замовлення магазину мають статус \"{shop_status}\": вкажіть, якою воронкою і статусом він стає, або виберіть воронку за замовчуванням, щоб створювати картки"
            ),
            Issue::InitialStatusUnmapped {
                shop_status,
                pipelines: true,
            } => format!(
                "new shop orders start as \"{shop_status}\": say which pipeline and status it becomes, or choose a default pipeline, to push cards"
            ),
            Issue::PipelinesDisabled => lang
                .pick(
                    "pipelines are not enabled in this KeyCRM account; choose «Створювати в замовленнях» or enable pipelines in KeyCRM",
                    "у цьому обліковому записі KeyCRM воронки не ввімкнено; виберіть «Створювати в замовленнях» або ввімкніть воронки в KeyCRM",
                )
                .into(),
            Issue::UnknownAddon => lang
                .pick(
                    "the shop has no such order add-on",
                    "в інтернет-магазині немає такого доповнення до замовлення",
                )
                .into(),
            Issue::AddonMappedTwice { first } if uk => format!(
                "це доповнення вже зіставлено в {first}: кожне доповнення заповнює одне користувацьке поле"
            ),
            Issue::AddonMappedTwice { first } => format!(
                "this add-on is mapped already in {first}: each add-on fills one custom field"
            ),
            Issue::CustomFieldMappedTwice { first } if uk => format!(
                "це користувацьке поле вже заповнює доповнення з {first}: якби два доповнення заповнювали одне поле, відповідь покупця в одному з них затерла б іншу"
            ),
            Issue::CustomFieldMappedTwice { first } => format!(
                "this custom field is filled already by the add-on in {first}: with two add-ons in one field, the buyer's answer to one would overwrite the other"
            ),
            Issue::UnknownOrderField => lang
                .pick(
                    "KeyCRM has no such order custom field",
                    "у KeyCRM немає такого користувацького поля замовлення",
                )
                .into(),
            Issue::UnknownCardField => lang
                .pick(
                    "KeyCRM has no such card custom field",
                    "у KeyCRM немає такого користувацького поля картки",
                )
                .into(),
            Issue::OrderFieldInPipelines { name, card_field } if uk => {
                let hint = match card_field {
                    Some(c) => format!(" У вашому KeyCRM уже є поле картки «{c}»: виберіть його."),
                    None => String::new(),
                };
                format!(
                    "«{name}» — поле замовлення, а в режимі «Створювати в воронках» замовлення стають картками, які мають власні поля. Створіть поле для карток: у KeyCRM «Налаштування → Додатково», вкладка «Користувацькі поля», «Додати поле»; «Назва» — назва доповнення, «Тип поля» — як у цього поля, у меню «Сутність» виберіть картку воронки (угоду), а не «Замовлення»; збережіть і виберіть нове поле тут.{hint}"
                )
            }
            Issue::OrderFieldInPipelines { name, card_field } => {
                let hint = match card_field {
                    Some(c) => format!(" Your KeyCRM already has a card field «{c}»: choose it."),
                    None => String::new(),
                };
                format!(
                    "«{name}» is an order field, but with «Створювати в воронках» (pipelines) orders become pipeline cards, which have fields of their own. Create a card field: in KeyCRM open «Налаштування → Додатково» (Settings → Additional), tab «Користувацькі поля» (Custom fields), «Додати поле» (Add field); name it after the add-on, give it the same field type, and in «Сутність» (Entity) choose the pipeline card (lead), not «Замовлення» (Order); save it and choose the new field here.{hint}"
                )
            }
            Issue::CardFieldInOrders { name } if uk => format!(
                "«{name}» — поле картки воронки, а в режимі «Створювати в замовленнях» потрібне поле замовлення: створіть його в KeyCRM («Налаштування → Додатково» → «Користувацькі поля», «Сутність»: «Замовлення») і виберіть тут"
            ),
            Issue::CardFieldInOrders { name } => format!(
                "«{name}» is a pipeline card field, but «Створювати в замовленнях» (orders) needs an order field: create one in KeyCRM («Налаштування → Додатково» → «Користувацькі поля», «Сутність»: «Замовлення») and choose it here"
            ),
            Issue::ShopMethodMappedTwice(k) => {
                let (shop, _) = method_words(*k, lang);
                if uk {
                    format!("цей {shop} магазину вже зіставлено")
                } else {
                    format!("this shop {shop} is mapped twice")
                }
            }
            Issue::UnknownShopMethod(k) => {
                let (shop, _) = method_words(*k, lang);
                if uk {
                    format!("в інтернет-магазині немає такого: {shop}")
                } else {
                    format!("the shop has no such {shop}")
                }
            }
            Issue::UnknownKeycrmMethod(k, id) => {
                let (_, crm) = method_words(*k, lang);
                if uk {
                    format!("у KeyCRM немає: {crm} {id}")
                } else {
                    format!("KeyCRM has no {crm} {id}")
                }
            }
            Issue::PaymentMethodUnmapped { method } if uk => format!(
                "спосіб оплати магазину \"{method}\" не зіставлено зі способом оплати KeyCRM"
            ),
            Issue::PaymentMethodUnmapped { method } => {
                format!("shop payment method \"{method}\" has no KeyCRM payment method")
            }
            Issue::Parse(p) => match p {
                ParseIssue::UnknownField => lang
                    .pick("there is no such setting", "такого налаштування немає"),
                ParseIssue::MissingField => lang.pick("this is required", "це обов'язкове поле"),
                ParseIssue::InvalidChoice => lang.pick(
                    "this is not one of the values the setting takes",
                    "це не одне з допустимих значень",
                ),
                ParseIssue::InvalidType => lang.pick(
                    "this value has the wrong type",
                    "значення має неправильний тип",
                ),
                ParseIssue::InvalidValue => {
                    lang.pick("this value is not valid", "неприпустиме значення")
                }
            }
            .into(),
        }
    }
}
