//! KeyCRM sends money as JSON numbers in most places and as numeric strings in others
//! (`"0.00"`, webhook `shipping_price`). These helpers accept both.

use rust_decimal::Decimal;
use serde::de::{self, Deserializer, Visitor};
use std::fmt;
use std::str::FromStr;

struct MoneyVisitor;

impl<'de> Visitor<'de> for MoneyVisitor {
    type Value = Option<Decimal>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a number, a numeric string or null")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(Decimal::from(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(Decimal::from(v)))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        // Through the shortest decimal text, so 370.67 stays 370.67 and not 370.669999…
        Decimal::from_str(&v.to_string())
            .or_else(|_| Decimal::from_scientific(&v.to_string()))
            .map(Some)
            .map_err(|_| E::custom(format!("number {v} is not a representable amount")))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        let t = v.trim();
        if t.is_empty() {
            return Ok(None);
        }
        Decimal::from_str(t)
            .map(Some)
            .map_err(|_| E::custom(format!("\"{v}\" is not a numeric amount")))
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(MoneyVisitor)
    }
}

/// `#[serde(deserialize_with = "money::opt", default)]` for nullable amounts.
pub fn opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
    d.deserialize_option(MoneyVisitor)
}

/// `#[serde(deserialize_with = "money::req", default)]`: a null or missing amount reads as zero.
pub fn req<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
    Ok(opt(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use rust_decimal::Decimal;
    use serde::Deserialize;
    use std::str::FromStr;

    #[derive(Deserialize)]
    struct M {
        #[serde(deserialize_with = "super::opt", default)]
        a: Option<Decimal>,
        #[serde(deserialize_with = "super::req", default)]
        b: Decimal,
    }

    fn parse(s: &str) -> M {
        serde_json::from_str(s).expect("valid")
    }

    #[test]
    fn numbers_and_strings_read_the_same() {
        assert_eq!(
            parse(r#"{"a": 370.67, "b": "370.67"}"#).a,
            Some(Decimal::from_str("370.67").unwrap())
        );
        assert_eq!(
            parse(r#"{"a": 370.67, "b": "370.67"}"#).b,
            Decimal::from_str("370.67").unwrap()
        );
        assert_eq!(parse(r#"{"a": 690, "b": 690}"#).b, Decimal::from(690));
        assert_eq!(
            parse(r#"{"a": "0.00", "b": "2.00"}"#).a,
            Some(Decimal::ZERO)
        );
    }

    #[test]
    fn null_missing_and_empty_are_absent() {
        let m = parse(r#"{"a": null, "b": null}"#);
        assert_eq!((m.a, m.b), (None, Decimal::ZERO));
        let m = parse(r#"{}"#);
        assert_eq!((m.a, m.b), (None, Decimal::ZERO));
        assert_eq!(parse(r#"{"a": ""}"#).a, None);
    }

    #[test]
    fn garbage_is_an_error_not_zero() {
        assert!(serde_json::from_str::<M>(r#"{"a": "12,5"}"#).is_err());
        assert!(serde_json::from_str::<M>(r#"{"a": true}"#).is_err());
    }
}
