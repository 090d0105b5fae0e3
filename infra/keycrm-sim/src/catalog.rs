//! Seeded product catalog: categories, products and offers (variants).
//!
//! Everything is kept in compact structs (no `serde_json::Value` per item); JSON is rendered
//! only for the page being served.

use std::borrow::Cow;
use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::rng::SplitMix64;
use crate::time::iso;
use crate::util::{cents, cents_to_f64, to_cents};

/// Base URL of seeded thumbnails. `.invalid` never resolves, so nothing is ever fetched.
pub(crate) const THUMB_BASE: &str = "https://keycrm-sim.invalid/file-storage/thumbnails";

type Prop = (Cow<'static, str>, Cow<'static, str>);

#[derive(Debug, Clone)]
pub(crate) struct Category {
    pub id: i64,
    pub name: Cow<'static, str>,
    pub parent_id: Option<i64>,
}

#[derive(Debug, Clone)]
pub(crate) struct Product {
    pub id: i64,
    pub name: String,
    /// `None` means "derived from the name" (keeps 100k-product catalogs small).
    pub description: Option<String>,
    pub category_id: i64,
    pub has_offers: bool,
    pub is_archived: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone)]
pub(crate) struct Offer {
    pub id: i64,
    pub product_id: i64,
    pub sku: String,
    pub barcode: Option<String>,
    pub price: i64,
    pub purchased_price: i64,
    /// Balance per warehouse (rows only for warehouses the offer ever had stock in).
    pub stock: Vec<Stock>,
    pub properties: Vec<Prop>,
    pub is_default: bool,
    pub is_archived: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One warehouse's balance of an offer: on hand (reserved units included) and reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stock {
    pub warehouse_id: i64,
    pub quantity: i64,
    pub reserve: i64,
}

/// The account's warehouses (KeyCRM has no endpoint listing them; ids come from its UI).
pub(crate) const WAREHOUSES: &[(i64, &str)] =
    &[(1, "Основний склад"), (2, "Склад Київ"), (3, "Склад Львів")];

/// The warehouse seeded stock, `SetStock` and new products use.
pub(crate) const MAIN_WAREHOUSE: i64 = 1;

pub(crate) fn warehouse_name(id: i64) -> Option<&'static str> {
    WAREHOUSES.iter().find(|w| w.0 == id).map(|w| w.1)
}

impl Offer {
    /// On hand over all warehouses.
    pub(crate) fn quantity(&self) -> i64 {
        self.stock.iter().map(|s| s.quantity).sum()
    }

    /// Reserved over all warehouses.
    pub(crate) fn reserve(&self) -> i64 {
        self.stock.iter().map(|s| s.reserve).sum()
    }

    /// `(on hand, reserved)` summed over `warehouses` (empty = all), as a stock webhook
    /// configured with those warehouses reports it.
    pub(crate) fn stock_in(&self, warehouses: &[i64]) -> (i64, i64) {
        self.stock
            .iter()
            .filter(|s| warehouses.is_empty() || warehouses.contains(&s.warehouse_id))
            .fold((0, 0), |(q, r), s| (q + s.quantity, r + s.reserve))
    }

    pub(crate) fn stock_mut(&mut self, warehouse_id: i64) -> &mut Stock {
        // Rows stay sorted by warehouse id.
        let i = match self
            .stock
            .binary_search_by_key(&warehouse_id, |s| s.warehouse_id)
        {
            Ok(i) => i,
            Err(i) => {
                self.stock.insert(
                    i,
                    Stock {
                        warehouse_id,
                        quantity: 0,
                        reserve: 0,
                    },
                );
                i
            }
        };
        &mut self.stock[i]
    }

    /// Sets the on-hand balance of one warehouse (an absolute value, like a stock movement
    /// document); the reserve there never exceeds it.
    pub(crate) fn set_quantity(&mut self, warehouse_id: i64, quantity: i64) {
        let s = self.stock_mut(warehouse_id);
        s.quantity = quantity;
        s.reserve = s.reserve.min(quantity.max(0));
    }
}

#[derive(Debug, Default)]
pub(crate) struct Catalog {
    pub categories: Vec<Category>,
    /// Sorted by id.
    pub products: Vec<Product>,
    /// Sorted by id, and therefore also by product id (new products get higher ids).
    pub offers: Vec<Offer>,
    pub sku_index: HashMap<String, Vec<i64>>,
    pub next_product_id: i64,
    pub next_offer_id: i64,
    pub next_category_id: i64,
}

// ---------------------------------------------------------------------------------------------
// Public plain structs (snapshot + mutations)
// ---------------------------------------------------------------------------------------------

/// A `{name, value}` offer property.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PropertyInfo {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategoryInfo {
    pub id: i64,
    pub name: String,
    pub parent_id: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProductInfo {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub category_id: i64,
    pub has_offers: bool,
    pub is_archived: bool,
    /// Only for `has_offers == false` (as in the API).
    pub sku: Option<String>,
    pub barcode: Option<String>,
    pub price: Option<f64>,
    pub purchased_price: Option<f64>,
    pub min_price: f64,
    pub max_price: f64,
    pub quantity: i64,
    pub in_reserve: i64,
    pub thumbnail_url: String,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OfferInfo {
    pub id: i64,
    pub product_id: i64,
    pub sku: String,
    pub barcode: Option<String>,
    pub price: f64,
    pub purchased_price: f64,
    /// Totals over warehouses.
    pub quantity: i64,
    pub in_reserve: i64,
    /// The balance per warehouse.
    #[serde(default)]
    pub stocks: Vec<StockInfo>,
    pub properties: Vec<PropertyInfo>,
    pub is_default: bool,
    pub is_archived: bool,
    pub created_at: String,
    pub updated_at: String,
}

/// One warehouse's balance of an offer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockInfo {
    pub warehouse_id: i64,
    pub quantity: i64,
    pub reserve: i64,
}

/// The whole catalog of one account as plain structs, for test assertions.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CatalogSnapshot {
    pub categories: Vec<CategoryInfo>,
    pub products: Vec<ProductInfo>,
    pub offers: Vec<OfferInfo>,
}

impl CatalogSnapshot {
    /// SKUs carried by offers of two or more *different* products (the seeded traps).
    pub fn duplicate_skus(&self) -> Vec<String> {
        let mut owners: HashMap<&str, Vec<i64>> = HashMap::new();
        for o in &self.offers {
            owners.entry(o.sku.as_str()).or_default().push(o.product_id);
        }
        let mut out: Vec<String> = owners
            .into_iter()
            .filter(|(_, pids)| {
                let first = pids[0];
                pids.iter().any(|p| *p != first)
            })
            .map(|(sku, _)| sku.to_string())
            .collect();
        out.sort();
        out
    }

    pub fn offers_of(&self, product_id: i64) -> Vec<&OfferInfo> {
        self.offers
            .iter()
            .filter(|o| o.product_id == product_id)
            .collect()
    }
}

/// A variant for [`CatalogMutation::AddProduct`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewVariant {
    pub sku: String,
    #[serde(default)]
    pub price: Option<f64>,
    #[serde(default)]
    pub barcode: Option<String>,
    #[serde(default)]
    pub quantity: i64,
    #[serde(default)]
    pub properties: Vec<PropertyInfo>,
}

/// Changes to the seeded catalog, as a shop manager would make them in KeyCRM.
/// Over HTTP (`POST /__sim/catalog`) the JSON form is tagged by `"kind"`, e.g.
/// `{"kind":"SetPrice","offer_id":1001,"price":499.0}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum CatalogMutation {
    /// Sets one offer's price (UAH).
    SetPrice { offer_id: i64, price: f64 },
    /// Changes the price of a `share` (0..=1) of all offers, picked deterministically from
    /// `seed`, by a random ±5..20 %.
    ChangePricesPercent { share: f64, seed: u64 },
    /// Archives a product and its offers.
    Archive { product_id: i64 },
    /// Un-archives a product and its offers.
    Unarchive { product_id: i64 },
    /// Deletes a product and its offers (`GET /products/{id}` then answers 404).
    Delete { product_id: i64 },
    /// Archives one offer (a variant taken off sale; its product stays active).
    ArchiveOffer { offer_id: i64 },
    /// Deletes one offer (a variant removed from its product).
    DeleteOffer { offer_id: i64 },
    /// Adds a product. Without `variants` it gets one default offer carrying `sku`/`price`.
    AddProduct {
        name: String,
        #[serde(default)]
        category_id: Option<i64>,
        #[serde(default)]
        sku: Option<String>,
        #[serde(default)]
        price: f64,
        #[serde(default)]
        barcode: Option<String>,
        #[serde(default)]
        quantity: i64,
        #[serde(default)]
        description: Option<String>,
        #[serde(default)]
        variants: Vec<NewVariant>,
    },
    /// Renames a product.
    Rename { product_id: i64, name: String },
    /// Moves a product to another category.
    MoveCategory { product_id: i64, category_id: i64 },
    /// Sets an offer's on-hand quantity in the main warehouse (1), like a manual edit; fires
    /// the stock webhooks.
    SetStock { offer_id: i64, quantity: i64 },
    /// Adds a category.
    AddCategory {
        name: String,
        #[serde(default)]
        parent_id: Option<i64>,
    },
    /// Deletes a category that holds no products and no subcategories (matches nothing
    /// otherwise): it is gone from `GET /products/categories`.
    DeleteCategory { category_id: i64 },
}

// ---------------------------------------------------------------------------------------------
// Word lists
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum G {
    M,
    F,
    N,
    P,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Var {
    Clothing,
    Shoes,
    Kids,
    Colour,
}

struct Sub {
    name: &'static str,
    nouns: &'static [(&'static str, G)],
    materials: &'static [&'static str],
    var: Var,
}

struct Root {
    name: &'static str,
    code: &'static str,
    price: (i64, i64),
    subs: &'static [Sub],
}

const TEXTILE: &[&str] = &[
    "з льону",
    "з бавовни",
    "з мусліну",
    "з віскози",
    "з трикотажу",
    "з шовку",
    "з вовни",
    "з кашеміру",
    "з футеру",
    "з деніму",
];
const OUTER: &[&str] = &["з еко-шкіри", "з вовни", "з плащової тканини", "з кашеміру"];
const FOOT: &[&str] = &[
    "з натуральної шкіри",
    "з еко-шкіри",
    "з замші",
    "з текстилю",
    "з нубуку",
];
const ACC: &[&str] = &[
    "з натуральної шкіри",
    "з еко-шкіри",
    "з текстилю",
    "з вовни",
    "з бавовни",
];
const JEWEL: &[&str] = &["зі срібла", "з позолотою", "з перлами", "з бісеру"];
const HOME_TEX: &[&str] = &["з льону", "з бавовни", "з вовни", "з мікрофібри"];
const HOME_WARE: &[&str] = &["з кераміки", "зі скла", "з порцеляни", "з глини"];
const HOME_DECOR: &[&str] = &["з соєвого воску", "з дерева", "з металу"];

const ROOTS: &[Root] = &[
    Root {
        name: "Жінкам",
        code: "WM",
        price: (299, 3999),
        subs: &[
            Sub {
                name: "Сукні",
                nouns: &[("Сукня", G::F), ("Сарафан", G::M)],
                materials: TEXTILE,
                var: Var::Clothing,
            },
            Sub {
                name: "Футболки та топи",
                nouns: &[("Футболка", G::F), ("Топ", G::M), ("Майка", G::F)],
                materials: TEXTILE,
                var: Var::Clothing,
            },
            Sub {
                name: "Блузи та сорочки",
                nouns: &[("Блуза", G::F), ("Сорочка", G::F)],
                materials: TEXTILE,
                var: Var::Clothing,
            },
            Sub {
                name: "Спідниці",
                nouns: &[("Спідниця", G::F)],
                materials: TEXTILE,
                var: Var::Clothing,
            },
            Sub {
                name: "Штани та джинси",
                nouns: &[("Штани", G::P), ("Джинси", G::P), ("Легінси", G::P)],
                materials: TEXTILE,
                var: Var::Clothing,
            },
            Sub {
                name: "Верхній одяг",
                nouns: &[
                    ("Куртка", G::F),
                    ("Пальто", G::N),
                    ("Тренч", G::M),
                    ("Пуховик", G::M),
                ],
                materials: OUTER,
                var: Var::Clothing,
            },
            Sub {
                name: "Светри та кардигани",
                nouns: &[("Светр", G::M), ("Кардиган", G::M), ("Худі", G::N)],
                materials: TEXTILE,
                var: Var::Clothing,
            },
        ],
    },
    Root {
        name: "Чоловікам",
        code: "MN",
        price: (349, 4499),
        subs: &[
            Sub {
                name: "Футболки",
                nouns: &[("Футболка", G::F), ("Поло", G::N)],
                materials: TEXTILE,
                var: Var::Clothing,
            },
            Sub {
                name: "Сорочки",
                nouns: &[("Сорочка", G::F)],
                materials: TEXTILE,
                var: Var::Clothing,
            },
            Sub {
                name: "Штани",
                nouns: &[("Штани", G::P), ("Джинси", G::P), ("Шорти", G::P)],
                materials: TEXTILE,
                var: Var::Clothing,
            },
            Sub {
                name: "Верхній одяг",
                nouns: &[("Куртка", G::F), ("Бомбер", G::M), ("Парка", G::F)],
                materials: OUTER,
                var: Var::Clothing,
            },
            Sub {
                name: "Светри та худі",
                nouns: &[("Светр", G::M), ("Худі", G::N), ("Світшот", G::M)],
                materials: TEXTILE,
                var: Var::Clothing,
            },
        ],
    },
    Root {
        name: "Дітям",
        code: "KD",
        price: (199, 1999),
        subs: &[
            Sub {
                name: "Для дівчаток",
                nouns: &[("Сукня", G::F), ("Футболка", G::F), ("Костюм", G::M)],
                materials: TEXTILE,
                var: Var::Kids,
            },
            Sub {
                name: "Для хлопчиків",
                nouns: &[("Футболка", G::F), ("Штани", G::P), ("Костюм", G::M)],
                materials: TEXTILE,
                var: Var::Kids,
            },
            Sub {
                name: "Для немовлят",
                nouns: &[("Боді", G::N), ("Повзунки", G::P), ("Комбінезон", G::M)],
                materials: TEXTILE,
                var: Var::Kids,
            },
        ],
    },
    Root {
        name: "Взуття",
        code: "SH",
        price: (899, 5999),
        subs: &[
            Sub {
                name: "Кросівки",
                nouns: &[("Кросівки", G::P), ("Кеди", G::P)],
                materials: FOOT,
                var: Var::Shoes,
            },
            Sub {
                name: "Черевики",
                nouns: &[("Черевики", G::P), ("Челсі", G::P)],
                materials: FOOT,
                var: Var::Shoes,
            },
            Sub {
                name: "Туфлі",
                nouns: &[("Туфлі", G::P), ("Лофери", G::P)],
                materials: FOOT,
                var: Var::Shoes,
            },
            Sub {
                name: "Сандалі",
                nouns: &[("Сандалі", G::P), ("Босоніжки", G::P)],
                materials: FOOT,
                var: Var::Shoes,
            },
            Sub {
                name: "Чоботи",
                nouns: &[("Чоботи", G::P)],
                materials: FOOT,
                var: Var::Shoes,
            },
        ],
    },
    Root {
        name: "Аксесуари",
        code: "AC",
        price: (149, 2499),
        subs: &[
            Sub {
                name: "Сумки",
                nouns: &[("Сумка", G::F), ("Рюкзак", G::M), ("Шопер", G::M)],
                materials: ACC,
                var: Var::Colour,
            },
            Sub {
                name: "Ремені",
                nouns: &[("Ремінь", G::M)],
                materials: ACC,
                var: Var::Colour,
            },
            Sub {
                name: "Головні убори",
                nouns: &[("Шапка", G::F), ("Кепка", G::F), ("Панама", G::F)],
                materials: ACC,
                var: Var::Colour,
            },
            Sub {
                name: "Шарфи та хустки",
                nouns: &[("Шарф", G::M), ("Хустка", G::F)],
                materials: ACC,
                var: Var::Colour,
            },
            Sub {
                name: "Прикраси",
                nouns: &[("Сережки", G::P), ("Браслет", G::M), ("Каблучка", G::F)],
                materials: JEWEL,
                var: Var::Colour,
            },
        ],
    },
    Root {
        name: "Дім",
        code: "HM",
        price: (99, 1999),
        subs: &[
            Sub {
                name: "Текстиль",
                nouns: &[("Плед", G::M), ("Подушка", G::F), ("Рушник", G::M)],
                materials: HOME_TEX,
                var: Var::Colour,
            },
            Sub {
                name: "Посуд",
                nouns: &[("Чашка", G::F), ("Тарілка", G::F), ("Ваза", G::F)],
                materials: HOME_WARE,
                var: Var::Colour,
            },
            Sub {
                name: "Декор",
                nouns: &[("Свічка", G::F), ("Рамка", G::F)],
                materials: HOME_DECOR,
                var: Var::Colour,
            },
        ],
    },
];

const QUALIFIERS: &[&str] = &[
    "Нова колекція",
    "Базова колекція",
    "Розпродаж",
    "Преміум",
    "Весна–літо",
    "Осінь–зима",
    "Великі розміри",
    "Еко-лінія",
];

/// (masculine, feminine, neuter, plural)
type Forms = (&'static str, &'static str, &'static str, &'static str);

const STYLES: &[Forms] = &[
    ("класичний", "класична", "класичне", "класичні"),
    ("базовий", "базова", "базове", "базові"),
    ("літній", "літня", "літнє", "літні"),
    ("зимовий", "зимова", "зимове", "зимові"),
    ("спортивний", "спортивна", "спортивне", "спортивні"),
    ("вечірній", "вечірня", "вечірнє", "вечірні"),
    ("повсякденний", "повсякденна", "повсякденне", "повсякденні"),
    ("вільний", "вільна", "вільне", "вільні"),
    ("приталений", "приталена", "приталене", "приталені"),
    ("теплий", "тепла", "тепле", "теплі"),
    ("легкий", "легка", "легке", "легкі"),
    ("укорочений", "укорочена", "укорочене", "укорочені"),
];

const COLOURS: &[(Forms, &str)] = &[
    (("чорний", "чорна", "чорне", "чорні"), "BLK"),
    (("білий", "біла", "біле", "білі"), "WHT"),
    (("бежевий", "бежева", "бежеве", "бежеві"), "BEI"),
    (("сірий", "сіра", "сіре", "сірі"), "GRY"),
    (("синій", "синя", "синє", "сині"), "BLU"),
    (("червоний", "червона", "червоне", "червоні"), "RED"),
    (("зелений", "зелена", "зелене", "зелені"), "GRN"),
    (("рожевий", "рожева", "рожеве", "рожеві"), "PNK"),
    (("коричневий", "коричнева", "коричневе", "коричневі"), "BRN"),
    (("молочний", "молочна", "молочне", "молочні"), "MLK"),
    (("оливковий", "оливкова", "оливкове", "оливкові"), "OLV"),
    (("графітовий", "графітова", "графітове", "графітові"), "GRF"),
];

const MODELS: &[&str] = &[
    "Аліна",
    "Верона",
    "Київ",
    "Карпати",
    "Мрія",
    "Оксамит",
    "Соняшник",
    "Дніпро",
    "Львів",
    "Бриз",
    "Лаванда",
    "Полтава",
    "Ніжність",
    "Смарагд",
    "Графіт",
    "Хвиля",
    "Одеса",
    "Барвінок",
    "Калина",
    "Світанок",
];

const SIZES_CLOTHING: &[&str] = &["XS", "S", "M", "L", "XL", "XXL"];
const SIZES_SHOES: &[&str] = &["36", "37", "38", "39", "40", "41", "42", "43", "44", "45"];
const SIZES_KIDS: &[&str] = &["86", "92", "98", "104", "110", "116", "122", "128"];

const P_COLOUR: &str = "Колір";
const P_SIZE: &str = "Розмір";

fn form(f: &Forms, g: G) -> &'static str {
    match g {
        G::M => f.0,
        G::F => f.1,
        G::N => f.2,
        G::P => f.3,
    }
}

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

fn gen_ean(rng: &mut SplitMix64) -> String {
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

fn gen_price(rng: &mut SplitMix64, band: (i64, i64)) -> i64 {
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

    /// Stock of every offer whose balance is about to change, for the stock webhooks.
    pub(crate) fn stock_of(&self, offer_ids: &[i64]) -> Vec<(i64, String, Vec<Stock>)> {
        offer_ids
            .iter()
            .filter_map(|id| self.offer(*id))
            .map(|o| (o.id, o.sku.clone(), o.stock.clone()))
            .collect()
    }

    pub(crate) fn offer_mut(&mut self, id: i64) -> Option<&mut Offer> {
        let i = self.offer_index(id)?;
        Some(&mut self.offers[i])
    }

    fn alloc_category_id(&mut self) -> i64 {
        let id = self.next_category_id;
        self.next_category_id += 1;
        id
    }

    pub(crate) fn rebuild_sku_index(&mut self) {
        let mut idx: HashMap<String, Vec<i64>> = HashMap::with_capacity(self.offers.len());
        for o in &self.offers {
            idx.entry(o.sku.clone()).or_default().push(o.id);
        }
        self.sku_index = idx;
    }

    fn first_offer_index(&self, product_id: i64) -> Option<usize> {
        let i = self.offers.partition_point(|o| o.product_id < product_id);
        (i < self.offers.len() && self.offers[i].product_id == product_id).then_some(i)
    }

    pub(crate) fn offers_of(&self, product_id: i64) -> &[Offer] {
        let lo = self.offers.partition_point(|o| o.product_id < product_id);
        let hi = self.offers.partition_point(|o| o.product_id <= product_id);
        &self.offers[lo..hi]
    }

    pub(crate) fn product(&self, id: i64) -> Option<&Product> {
        self.products
            .binary_search_by_key(&id, |p| p.id)
            .ok()
            .map(|i| &self.products[i])
    }

    fn product_mut(&mut self, id: i64) -> Option<&mut Product> {
        match self.products.binary_search_by_key(&id, |p| p.id) {
            Ok(i) => Some(&mut self.products[i]),
            Err(_) => None,
        }
    }

    pub(crate) fn offer(&self, id: i64) -> Option<&Offer> {
        self.offers
            .binary_search_by_key(&id, |o| o.id)
            .ok()
            .map(|i| &self.offers[i])
    }

    fn offer_index(&self, id: i64) -> Option<usize> {
        self.offers.binary_search_by_key(&id, |o| o.id).ok()
    }

    /// The offer an order line with this SKU links to (lowest id on duplicates).
    pub(crate) fn offer_by_sku(&self, sku: &str) -> Option<&Offer> {
        let ids = self.sku_index.get(sku)?;
        ids.iter().filter_map(|id| self.offer(*id)).next()
    }

    pub(crate) fn category_exists(&self, id: i64) -> bool {
        self.categories.iter().any(|c| c.id == id)
    }

    pub(crate) fn description_of(&self, p: &Product) -> String {
        match &p.description {
            Some(d) => d.clone(),
            None => format!(
                "{}. Доглядайте згідно з етикеткою; колір може трохи відрізнятися від фото.",
                p.name
            ),
        }
    }

    pub(crate) fn thumbnail(product_id: i64) -> String {
        format!("{THUMB_BASE}/p{product_id}.webp")
    }

    // ---- rendering ----------------------------------------------------------------------

    fn product_core(&self, p: &Product) -> Map<String, Value> {
        let offers = self.offers_of(p.id);
        let quantity: i64 = offers.iter().map(Offer::quantity).sum();
        let reserve: i64 = offers.iter().map(Offer::reserve).sum();
        let min = offers.iter().map(|o| o.price).min().unwrap_or(0);
        let max = offers.iter().map(|o| o.price).max().unwrap_or(0);
        let thumb = Self::thumbnail(p.id);
        let mut m = Map::new();
        m.insert("id".into(), p.id.into());
        m.insert("name".into(), p.name.clone().into());
        m.insert("description".into(), self.description_of(p).into());
        m.insert("thumbnail_url".into(), thumb.clone().into());
        m.insert("attachments_data".into(), json!([thumb]));
        m.insert("quantity".into(), quantity.into());
        m.insert("in_reserve".into(), reserve.into());
        m.insert("unit_type".into(), Value::Null);
        m.insert("currency_code".into(), "UAH".into());
        m.insert("min_price".into(), cents(min));
        m.insert("max_price".into(), cents(max));
        for k in ["weight", "length", "height", "width"] {
            m.insert(k.into(), Value::Null);
        }
        m.insert("has_offers".into(), p.has_offers.into());
        m.insert("is_archived".into(), p.is_archived.into());
        m.insert("category_id".into(), p.category_id.into());
        m.insert("created_at".into(), iso(p.created_at).into());
        m.insert("updated_at".into(), iso(p.updated_at).into());
        if !p.has_offers {
            if let Some(o) = offers.first() {
                m.insert("sku".into(), o.sku.clone().into());
                m.insert(
                    "barcode".into(),
                    o.barcode.clone().map(Value::from).unwrap_or(Value::Null),
                );
                m.insert("price".into(), cents(o.price));
                m.insert("purchased_price".into(), cents(o.purchased_price));
            }
        }
        m
    }

    /// `GET /products` item.
    pub(crate) fn render_product(&self, p: &Product, with_custom_fields: bool) -> Value {
        let mut m = self.product_core(p);
        if with_custom_fields {
            m.insert(
                "custom_fields".into(),
                Value::Array(crate::dicts::product_custom_field_values(p.id)),
            );
        }
        Value::Object(m)
    }

    /// Product embedded in an offer (`include=product`).
    fn render_product_for_offer(&self, p: &Product) -> Value {
        let mut m = self.product_core(p);
        let mut agg: Vec<(String, Vec<String>)> = Vec::new();
        for o in self.offers_of(p.id) {
            for (k, v) in &o.properties {
                match agg.iter_mut().find(|(n, _)| n == k.as_ref()) {
                    Some((_, vals)) => {
                        if !vals.iter().any(|x| x == v.as_ref()) {
                            vals.push(v.to_string());
                        }
                    }
                    None => agg.push((k.to_string(), vec![v.to_string()])),
                }
            }
        }
        let mut aggm = Map::new();
        for (k, mut vals) in agg {
            vals.sort();
            aggm.insert(k, json!(vals));
        }
        m.insert("properties_agg".into(), Value::Object(aggm));
        m.insert("sources".into(), json!([]));
        Value::Object(m)
    }

    pub(crate) fn render_offer(&self, o: &Offer, with_product: bool) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), o.id.into());
        m.insert("product_id".into(), o.product_id.into());
        m.insert("sku".into(), o.sku.clone().into());
        m.insert(
            "barcode".into(),
            o.barcode.clone().map(Value::from).unwrap_or(Value::Null),
        );
        m.insert("thumbnail_url".into(), Self::thumbnail(o.product_id).into());
        m.insert("price".into(), cents(o.price));
        m.insert("purchased_price".into(), cents(o.purchased_price));
        m.insert("quantity".into(), o.quantity().into());
        m.insert("in_reserve".into(), o.reserve().into());
        for k in ["weight", "length", "height", "width"] {
            m.insert(k.into(), Value::Null);
        }
        m.insert("properties".into(), render_props(&o.properties));
        m.insert("is_default".into(), o.is_default.into());
        m.insert("is_archived".into(), o.is_archived.into());
        m.insert("created_at".into(), iso(o.created_at).into());
        m.insert("updated_at".into(), iso(o.updated_at).into());
        if with_product {
            let prod = self
                .product(o.product_id)
                .map(|p| self.render_product_for_offer(p))
                .unwrap_or(Value::Null);
            m.insert("product".into(), prod);
        }
        Value::Object(m)
    }

    /// `GET /offers/stocks` item.
    pub(crate) fn render_stock(&self, o: &Offer, details: bool) -> Value {
        let mut v = json!({
            "id": o.id,
            "sku": o.sku,
            "price": cents(o.price),
            "purchased_price": cents(o.purchased_price),
            "quantity": o.quantity(),
            "reserve": o.reserve(),
        });
        if details {
            v["warehouse"] = Value::Array(
                o.stock
                    .iter()
                    .map(|s| {
                        json!({
                            "id": s.warehouse_id,
                            "name": warehouse_name(s.warehouse_id).unwrap_or("Склад"),
                            "quantity": s.quantity,
                            "reserve": s.reserve,
                        })
                    })
                    .collect(),
            );
        }
        v
    }

    pub(crate) fn render_category(c: &Category) -> Value {
        json!({"id": c.id, "name": c.name, "parent_id": c.parent_id})
    }

    // ---- snapshot -------------------------------------------------------------------------

    pub(crate) fn snapshot(&self) -> CatalogSnapshot {
        let categories = self
            .categories
            .iter()
            .map(|c| CategoryInfo {
                id: c.id,
                name: c.name.to_string(),
                parent_id: c.parent_id,
            })
            .collect();
        let products = self
            .products
            .iter()
            .map(|p| {
                let offers = self.offers_of(p.id);
                let first = offers.first().filter(|_| !p.has_offers);
                ProductInfo {
                    id: p.id,
                    name: p.name.clone(),
                    description: self.description_of(p),
                    category_id: p.category_id,
                    has_offers: p.has_offers,
                    is_archived: p.is_archived,
                    sku: first.map(|o| o.sku.clone()),
                    barcode: first.and_then(|o| o.barcode.clone()),
                    price: first.map(|o| cents_to_f64(o.price)),
                    purchased_price: first.map(|o| cents_to_f64(o.purchased_price)),
                    min_price: cents_to_f64(offers.iter().map(|o| o.price).min().unwrap_or(0)),
                    max_price: cents_to_f64(offers.iter().map(|o| o.price).max().unwrap_or(0)),
                    quantity: offers.iter().map(Offer::quantity).sum(),
                    in_reserve: offers.iter().map(Offer::reserve).sum(),
                    thumbnail_url: Self::thumbnail(p.id),
                    created_at: iso(p.created_at),
                    updated_at: iso(p.updated_at),
                }
            })
            .collect();
        let offers = self
            .offers
            .iter()
            .map(|o| OfferInfo {
                id: o.id,
                product_id: o.product_id,
                sku: o.sku.clone(),
                barcode: o.barcode.clone(),
                price: cents_to_f64(o.price),
                purchased_price: cents_to_f64(o.purchased_price),
                quantity: o.quantity(),
                in_reserve: o.reserve(),
                stocks: o
                    .stock
                    .iter()
                    .map(|s| StockInfo {
                        warehouse_id: s.warehouse_id,
                        quantity: s.quantity,
                        reserve: s.reserve,
                    })
                    .collect(),
                properties: o
                    .properties
                    .iter()
                    .map(|(n, v)| PropertyInfo {
                        name: n.to_string(),
                        value: v.to_string(),
                    })
                    .collect(),
                is_default: o.is_default,
                is_archived: o.is_archived,
                created_at: iso(o.created_at),
                updated_at: iso(o.updated_at),
            })
            .collect();
        CatalogSnapshot {
            categories,
            products,
            offers,
        }
    }

    // ---- mutations ------------------------------------------------------------------------

    fn touch_product(&mut self, product_id: i64, now: i64) {
        if let Some(p) = self.product_mut(product_id) {
            p.updated_at = now;
        }
    }

    /// Applies a mutation. Returns the number of entities changed (0 when ids are unknown).
    pub(crate) fn apply(&mut self, m: &CatalogMutation, now: i64) -> usize {
        match m {
            CatalogMutation::SetPrice { offer_id, price } => {
                let Some(i) = self.offer_index(*offer_id) else {
                    return 0;
                };
                self.offers[i].price = to_cents(*price);
                self.offers[i].updated_at = now;
                let pid = self.offers[i].product_id;
                self.touch_product(pid, now);
                1
            }
            CatalogMutation::ChangePricesPercent { share, seed } => {
                let mut changed = Vec::new();
                for o in self.offers.iter_mut() {
                    let mut r = SplitMix64::derive(*seed, o.id as u64);
                    if !r.chance(*share) {
                        continue;
                    }
                    let pct = r.range(5, 20) * if r.chance(0.5) { 1 } else { -1 };
                    let mut np = o.price * (100 + pct) / 100;
                    if o.price % 100 == 0 {
                        np = (np / 100).max(1) * 100;
                    }
                    if np == o.price {
                        np += if pct > 0 { 100 } else { -100 };
                    }
                    o.price = np.max(100);
                    o.updated_at = now;
                    changed.push(o.product_id);
                }
                changed.dedup();
                let n = changed.len();
                for pid in changed {
                    self.touch_product(pid, now);
                }
                n
            }
            CatalogMutation::Archive { product_id } | CatalogMutation::Unarchive { product_id } => {
                let flag = matches!(m, CatalogMutation::Archive { .. });
                let Some(p) = self.product_mut(*product_id) else {
                    return 0;
                };
                p.is_archived = flag;
                p.updated_at = now;
                let lo = self.offers.partition_point(|o| o.product_id < *product_id);
                for o in self.offers[lo..]
                    .iter_mut()
                    .take_while(|o| o.product_id == *product_id)
                {
                    o.is_archived = flag;
                    o.updated_at = now;
                }
                1
            }
            CatalogMutation::ArchiveOffer { offer_id } => {
                let Some(i) = self.offer_index(*offer_id) else {
                    return 0;
                };
                self.offers[i].is_archived = true;
                self.offers[i].updated_at = now;
                let pid = self.offers[i].product_id;
                self.touch_product(pid, now);
                1
            }
            CatalogMutation::DeleteOffer { offer_id } => {
                let Some(i) = self.offer_index(*offer_id) else {
                    return 0;
                };
                let pid = self.offers.remove(i).product_id;
                self.rebuild_sku_index();
                self.touch_product(pid, now);
                1
            }
            CatalogMutation::Delete { product_id } => {
                let Ok(i) = self.products.binary_search_by_key(product_id, |p| p.id) else {
                    return 0;
                };
                self.products.remove(i);
                self.offers.retain(|o| o.product_id != *product_id);
                self.rebuild_sku_index();
                1
            }
            CatalogMutation::AddProduct {
                name,
                category_id,
                sku,
                price,
                barcode,
                quantity,
                description,
                variants,
            } => {
                let pid = self.next_product_id;
                self.next_product_id += 1;
                let category_id = category_id
                    .filter(|c| self.category_exists(*c))
                    .or_else(|| self.categories.last().map(|c| c.id))
                    .unwrap_or(0);
                let mut new_offers = Vec::new();
                if variants.is_empty() {
                    new_offers.push(Offer {
                        id: 0,
                        product_id: pid,
                        sku: sku.clone().unwrap_or_else(|| format!("NEW-{pid}")),
                        barcode: barcode.clone(),
                        price: to_cents(*price),
                        purchased_price: to_cents(*price) * 55 / 100,
                        stock: new_stock(*quantity),
                        properties: Vec::new(),
                        is_default: true,
                        is_archived: false,
                        created_at: now,
                        updated_at: now,
                    });
                } else {
                    for v in variants {
                        let p = to_cents(v.price.unwrap_or(*price));
                        new_offers.push(Offer {
                            id: 0,
                            product_id: pid,
                            sku: v.sku.clone(),
                            barcode: v.barcode.clone(),
                            price: p,
                            purchased_price: p * 55 / 100,
                            stock: new_stock(v.quantity),
                            properties: v
                                .properties
                                .iter()
                                .map(|pi| {
                                    (Cow::Owned(pi.name.clone()), Cow::Owned(pi.value.clone()))
                                })
                                .collect(),
                            is_default: false,
                            is_archived: false,
                            created_at: now,
                            updated_at: now,
                        });
                    }
                }
                for mut o in new_offers {
                    o.id = self.next_offer_id;
                    self.next_offer_id += 1;
                    self.sku_index.entry(o.sku.clone()).or_default().push(o.id);
                    self.offers.push(o);
                }
                self.products.push(Product {
                    id: pid,
                    name: name.clone(),
                    description: description.clone(),
                    category_id,
                    has_offers: !variants.is_empty(),
                    is_archived: false,
                    created_at: now,
                    updated_at: now,
                });
                1
            }
            CatalogMutation::Rename { product_id, name } => {
                let Some(p) = self.product_mut(*product_id) else {
                    return 0;
                };
                p.name = name.clone();
                p.updated_at = now;
                1
            }
            CatalogMutation::MoveCategory {
                product_id,
                category_id,
            } => {
                if !self.category_exists(*category_id) {
                    return 0;
                }
                let Some(p) = self.product_mut(*product_id) else {
                    return 0;
                };
                p.category_id = *category_id;
                p.updated_at = now;
                1
            }
            CatalogMutation::SetStock { offer_id, quantity } => {
                let Some(i) = self.offer_index(*offer_id) else {
                    return 0;
                };
                let o = &mut self.offers[i];
                o.set_quantity(MAIN_WAREHOUSE, *quantity);
                o.updated_at = now;
                1
            }
            CatalogMutation::AddCategory { name, parent_id } => {
                if let Some(pid) = parent_id {
                    if !self.category_exists(*pid) {
                        return 0;
                    }
                }
                let id = self.alloc_category_id();
                self.categories.push(Category {
                    id,
                    name: Cow::Owned(name.clone()),
                    parent_id: *parent_id,
                });
                1
            }
            CatalogMutation::DeleteCategory { category_id } => {
                let used = self.products.iter().any(|p| p.category_id == *category_id)
                    || self
                        .categories
                        .iter()
                        .any(|c| c.parent_id == Some(*category_id));
                let before = self.categories.len();
                if !used {
                    self.categories.retain(|c| c.id != *category_id);
                }
                before - self.categories.len()
            }
        }
    }
}

/// A new offer's stock: everything in the main warehouse.
fn new_stock(quantity: i64) -> Vec<Stock> {
    vec![Stock {
        warehouse_id: MAIN_WAREHOUSE,
        quantity,
        reserve: 0,
    }]
}

/// Seeded stock: the generated balance lies in the main warehouse; about one offer in ten
/// with a few units keeps part of it in a second warehouse (derived from its own dice, so the
/// catalog's other seeded values do not move).
fn seed_stock(seed: u64, offer_id: i64, quantity: i64, reserve: i64) -> Vec<Stock> {
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

pub(crate) fn render_props(props: &[Prop]) -> Value {
    Value::Array(
        props
            .iter()
            .map(|(n, v)| json!({"name": n, "value": v}))
            .collect(),
    )
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
