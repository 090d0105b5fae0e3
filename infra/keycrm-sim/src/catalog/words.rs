//! The word lists the generated catalog is made of (Ukrainian product names with their
//! grammatical genders, styles, colours, models, sizes).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum G {
    M,
    F,
    N,
    P,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Var {
    Clothing,
    Shoes,
    Kids,
    Colour,
}

pub(super) struct Sub {
    pub(super) name: &'static str,
    pub(super) nouns: &'static [(&'static str, G)],
    pub(super) materials: &'static [&'static str],
    pub(super) var: Var,
}

pub(super) struct Root {
    pub(super) name: &'static str,
    pub(super) code: &'static str,
    pub(super) price: (i64, i64),
    pub(super) subs: &'static [Sub],
}

pub(super) const TEXTILE: &[&str] = &[
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
pub(super) const OUTER: &[&str] = &["з еко-шкіри", "з вовни", "з плащової тканини", "з кашеміру"];
pub(super) const FOOT: &[&str] = &[
    "з натуральної шкіри",
    "з еко-шкіри",
    "з замші",
    "з текстилю",
    "з нубуку",
];
pub(super) const ACC: &[&str] = &[
    "з натуральної шкіри",
    "з еко-шкіри",
    "з текстилю",
    "з вовни",
    "з бавовни",
];
pub(super) const JEWEL: &[&str] = &["зі срібла", "з позолотою", "з перлами", "з бісеру"];
pub(super) const HOME_TEX: &[&str] = &["з льону", "з бавовни", "з вовни", "з мікрофібри"];
pub(super) const HOME_WARE: &[&str] = &["з кераміки", "зі скла", "з порцеляни", "з глини"];
pub(super) const HOME_DECOR: &[&str] = &["з соєвого воску", "з дерева", "з металу"];

pub(super) const ROOTS: &[Root] = &[
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

pub(super) const QUALIFIERS: &[&str] = &[
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
pub(super) type Forms = (&'static str, &'static str, &'static str, &'static str);

pub(super) const STYLES: &[Forms] = &[
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

pub(super) const COLOURS: &[(Forms, &str)] = &[
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

pub(super) const MODELS: &[&str] = &[
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

pub(super) const SIZES_CLOTHING: &[&str] = &["XS", "S", "M", "L", "XL", "XXL"];
pub(super) const SIZES_SHOES: &[&str] =
    &["36", "37", "38", "39", "40", "41", "42", "43", "44", "45"];
pub(super) const SIZES_KIDS: &[&str] = &["86", "92", "98", "104", "110", "116", "122", "128"];

pub(super) const P_COLOUR: &str = "Колір";
pub(super) const P_SIZE: &str = "Розмір";

pub(super) fn form(f: &Forms, g: G) -> &'static str {
    match g {
        G::M => f.0,
        G::F => f.1,
        G::N => f.2,
        G::P => f.3,
    }
}
