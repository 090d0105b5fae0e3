//! Lenient-but-validating extraction of request body fields, producing Laravel-style
//! validation messages (`The source id field is required.`) instead of panics.

use std::str::FromStr;

use rust_decimal::Decimal;
use serde_json::{Map, Value};

use crate::error::{attr, Invalid};

/// Parses a request body: anything that is not a JSON object is treated like an empty form
/// (Laravel then reports missing required fields).
pub(crate) fn body_object(bytes: &[u8]) -> Map<String, Value> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

pub(crate) fn decimal_of(v: &Value) -> Option<Decimal> {
    match v {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                return Some(Decimal::from(i));
            }
            let s = n.to_string();
            Decimal::from_str(&s)
                .or_else(|_| Decimal::from_scientific(&s))
                .ok()
                .map(|d| d.round_dp(4))
        }
        Value::String(s) => {
            let t = s.trim();
            Decimal::from_str(t)
                .or_else(|_| Decimal::from_scientific(t))
                .ok()
                .map(|d| d.round_dp(4))
        }
        _ => None,
    }
}

fn int_of(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    }
}

/// A view over one JSON object with a field-path prefix (`products.0.`) for messages.
pub(crate) struct Fields<'a> {
    pub obj: &'a Map<String, Value>,
    prefix: String,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(obj: &'a Map<String, Value>, prefix: impl Into<String>) -> Self {
        Self {
            obj,
            prefix: prefix.into(),
        }
    }

    pub(crate) fn path(&self, key: &str) -> String {
        format!("{}{}", self.prefix, key)
    }

    /// Present and not null.
    pub(crate) fn has(&self, key: &str) -> bool {
        !matches!(self.obj.get(key), None | Some(Value::Null))
    }

    pub(crate) fn required(&self, key: &str, inv: &mut Invalid) -> bool {
        let present = match self.obj.get(key) {
            None | Some(Value::Null) => false,
            Some(Value::String(s)) => !s.trim().is_empty(),
            Some(Value::Array(a)) => !a.is_empty(),
            _ => true,
        };
        if !present {
            let p = self.path(key);
            inv.add(p.clone(), format!("The {} field is required.", attr(&p)));
        }
        present
    }

    pub(crate) fn string(&self, key: &str, inv: &mut Invalid) -> Option<String> {
        match self.obj.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(_) => {
                let p = self.path(key);
                inv.add(p.clone(), format!("The {} must be a string.", attr(&p)));
                None
            }
        }
    }

    pub(crate) fn int(&self, key: &str, inv: &mut Invalid) -> Option<i64> {
        let v = self.obj.get(key)?;
        if v.is_null() {
            return None;
        }
        let r = int_of(v);
        if r.is_none() {
            let p = self.path(key);
            inv.add(p.clone(), format!("The {} must be an integer.", attr(&p)));
        }
        r
    }

    pub(crate) fn number(&self, key: &str, inv: &mut Invalid) -> Option<Decimal> {
        let v = self.obj.get(key)?;
        if v.is_null() {
            return None;
        }
        let r = decimal_of(v);
        if r.is_none() {
            let p = self.path(key);
            inv.add(p.clone(), format!("The {} must be a number.", attr(&p)));
        }
        r
    }

    pub(crate) fn boolean(&self, key: &str, inv: &mut Invalid) -> Option<bool> {
        let v = self.obj.get(key)?;
        let r = match v {
            Value::Null => return None,
            Value::Bool(b) => Some(*b),
            Value::Number(n) => match n.as_i64() {
                Some(0) => Some(false),
                Some(1) => Some(true),
                _ => None,
            },
            Value::String(s) => match s.as_str() {
                "0" | "false" => Some(false),
                "1" | "true" => Some(true),
                _ => None,
            },
            _ => None,
        };
        if r.is_none() {
            let p = self.path(key);
            inv.add(
                p.clone(),
                format!("The {} field must be true or false.", attr(&p)),
            );
        }
        r
    }

    pub(crate) fn object(&self, key: &str, inv: &mut Invalid) -> Option<&'a Map<String, Value>> {
        match self.obj.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::Object(m)) => Some(m),
            Some(_) => {
                let p = self.path(key);
                inv.add(p.clone(), format!("The {} must be an array.", attr(&p)));
                None
            }
        }
    }

    /// An integer field that must name something that exists (`exists`); otherwise the field
    /// is reported invalid (an unknown id).
    pub(crate) fn known_id(
        &self,
        key: &str,
        inv: &mut Invalid,
        exists: impl FnOnce(i64) -> bool,
    ) -> Option<i64> {
        match self.int(key, inv) {
            Some(id) if exists(id) => Some(id),
            Some(_) => {
                self.invalid(key, inv);
                None
            }
            None => None,
        }
    }

    pub(crate) fn array(&self, key: &str, inv: &mut Invalid) -> Option<&'a Vec<Value>> {
        match self.obj.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::Array(a)) => Some(a),
            Some(_) => {
                let p = self.path(key);
                inv.add(p.clone(), format!("The {} must be an array.", attr(&p)));
                None
            }
        }
    }

    /// A datetime field (`YYYY-MM-DD HH:MM:SS`, also accepts ISO).
    pub(crate) fn datetime(&self, key: &str, inv: &mut Invalid) -> Option<i64> {
        let s = self.string(key, inv)?;
        let r = crate::time::parse_datetime(&s);
        if r.is_none() {
            let p = self.path(key);
            inv.add(
                p.clone(),
                format!("The {} does not match the format Y-m-d H:i:s.", attr(&p)),
            );
        }
        r
    }

    pub(crate) fn date(&self, key: &str, inv: &mut Invalid) -> Option<i64> {
        let s = self.string(key, inv)?;
        let r = crate::time::parse_date(&s);
        if r.is_none() {
            let p = self.path(key);
            inv.add(p.clone(), format!("The {} is not a valid date.", attr(&p)));
        }
        r
    }

    pub(crate) fn invalid(&self, key: &str, inv: &mut Invalid) {
        let p = self.path(key);
        inv.add(p.clone(), format!("The selected {} is invalid.", attr(&p)));
    }
}

/// Items of an array field as objects; non-objects produce an error and are skipped.
pub(crate) fn objects<'a>(
    arr: &'a [Value],
    prefix: &str,
    inv: &mut Invalid,
) -> Vec<(usize, Fields<'a>)> {
    let mut out = Vec::new();
    for (i, v) in arr.iter().enumerate() {
        match v {
            Value::Object(m) => out.push((i, Fields::new(m, format!("{prefix}.{i}.")))),
            _ => {
                let p = format!("{prefix}.{i}");
                inv.add(p.clone(), format!("The {} must be an array.", attr(&p)));
            }
        }
    }
    out
}

/// Normalizes a phone like KeyCRM appears to store it: `+1 555-234-1234` → `+15552341234`;
/// Ukrainian local `0501112233` → `+380501112233`.
pub(crate) fn normalize_phone(s: &str) -> String {
    let digits: String = s.chars().filter(char::is_ascii_digit).collect();
    if digits.is_empty() {
        return s.trim().to_string();
    }
    if s.trim_start().starts_with('+') {
        format!("+{digits}")
    } else if digits.len() == 10 && digits.starts_with('0') {
        format!("+38{digits}")
    } else if digits.len() == 12 && digits.starts_with("380") {
        format!("+{digits}")
    } else {
        digits
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn phones() {
        assert_eq!(normalize_phone("+1 555-234-1234"), "+15552341234");
        assert_eq!(normalize_phone("050 111 22 33"), "+380501112233");
        assert_eq!(normalize_phone("380501112233"), "+380501112233");
    }

    #[test]
    fn decimals() {
        assert_eq!(decimal_of(&json!(124.5)), Some(Decimal::new(1245, 1)));
        assert_eq!(decimal_of(&json!("2.50")), Some(Decimal::new(250, 2)));
        assert_eq!(decimal_of(&json!(true)), None);
    }

    #[test]
    fn field_errors() {
        let m = json!({"a": "x", "b": [1], "c": null})
            .as_object()
            .cloned()
            .unwrap_or_default();
        let f = Fields::new(&m, "buyer.");
        let mut inv = Invalid::default();
        assert_eq!(f.int("a", &mut inv), None);
        assert!(!f.required("c", &mut inv));
        assert_eq!(inv.errors.len(), 2);
        assert_eq!(inv.errors[1].1, "The buyer.c field is required.");
    }
}
