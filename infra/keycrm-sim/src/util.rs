//! JSON helpers for the number shapes KeyCRM emits.

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde_json::{Number, Value};

/// Money stored in kopecks rendered like PHP's `json_encode` of a float: `690`, `370.67`.
pub(crate) fn cents(c: i64) -> Value {
    if c % 100 == 0 {
        Value::from(c / 100)
    } else {
        Number::from_f64(c as f64 / 100.0)
            .map(Value::Number)
            .unwrap_or(Value::Null)
    }
}

/// A decimal rendered as a JSON number (integer when whole).
pub(crate) fn dec(d: Decimal) -> Value {
    let n = d.normalize();
    if n.fract().is_zero() {
        if let Some(i) = n.to_i64() {
            return Value::from(i);
        }
    }
    n.to_f64()
        .and_then(Number::from_f64)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

pub(crate) fn opt_dec(d: Option<Decimal>) -> Value {
    d.map(dec).unwrap_or(Value::Null)
}

/// A decimal rendered as a string with two decimals (`"2.00"`), as in webhook contexts.
pub(crate) fn dec_str(d: Decimal) -> String {
    format!("{:.2}", d.round_dp(2))
}

pub(crate) fn opt_str(s: &Option<String>) -> Value {
    match s {
        Some(s) => Value::String(s.clone()),
        None => Value::Null,
    }
}

/// Converts an `f64` price to kopecks.
pub(crate) fn to_cents(v: f64) -> i64 {
    (v * 100.0).round() as i64
}

pub(crate) fn cents_to_f64(c: i64) -> f64 {
    c as f64 / 100.0
}

pub(crate) fn cents_to_dec(c: i64) -> Decimal {
    Decimal::new(c, 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_shapes() {
        assert_eq!(cents(69000).to_string(), "690");
        assert_eq!(cents(37067).to_string(), "370.67");
        assert_eq!(dec(Decimal::new(19000, 2)).to_string(), "190");
        assert_eq!(dec(Decimal::new(12350, 2)).to_string(), "123.5");
        assert_eq!(dec_str(Decimal::new(2, 0)), "2.00");
        assert_eq!(dec_str(Decimal::new(45, 1)), "4.50");
    }
}
