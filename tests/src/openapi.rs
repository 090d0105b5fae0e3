//! A small validator for the subset of OpenAPI 3.0 schemas used by KeyCRM's document:
//! `$ref` (local), `type`, `properties`, `required`, `items`, `nullable`, `enum`,
//! `allOf` / `oneOf` / `anyOf`. `additionalProperties` is ignored (extra keys are fine).
//!
//! Every schema position has a *location* used in messages and for named exceptions:
//! a `$ref` to `#/components/schemas/Offer` starts location `Offer`; a property appends
//! `.name`; array items append `[]`. Inline response schemas start at
//! `"<METHOD> <path> <status>"`, e.g. `GET /offers 200`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// Environment variable that overrides the location of `openapi.yml`.
pub const OPENAPI_ENV: &str = "KEYCRM_OPENAPI";

/// Default location of KeyCRM's OpenAPI document (the shared reference folder).
pub fn default_spec_path() -> PathBuf {
    match std::env::var_os(OPENAPI_ENV) {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/keycrm/openapi.yml"
        )),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OpenApiError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid OpenAPI YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error("unresolvable $ref `{0}`")]
    BadRef(String),
    #[error("the spec has no JSON response schema for {0}")]
    NoSchema(String),
}

/// What a named exception tolerates at its location.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allow {
    /// `null` is accepted although the spec does not mark the field `nullable`.
    Null,
    /// Values of these JSON types are accepted as they are
    /// (`"null" | "boolean" | "integer" | "number" | "string" | "array" | "object"`).
    Types(&'static [&'static str]),
    /// The value is validated against this `$ref` instead of the spec's schema.
    Schema(&'static str),
}

/// A documented deviation of live KeyCRM (and so of the simulator) from the spec.
///
/// `at` is a schema location (`Offer.barcode`, `GET /offers 200`), or `*.<suffix>` to match
/// any location ending in `.<suffix>` (`*.weight`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exception {
    pub at: &'static str,
    pub allow: Allow,
    pub reason: &'static str,
}

impl Exception {
    fn matches(&self, loc: &str) -> bool {
        match self.at.strip_prefix('*') {
            Some(suffix) => loc.ends_with(suffix),
            None => self.at == loc,
        }
    }
}

/// One validation failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Schema location, e.g. `OrderWithIncludes.products[].price`.
    pub at: String,
    /// JSON pointer into the instance, e.g. `/data/0/products/1/price`.
    pub pointer: String,
    pub message: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (at {}): {}", self.at, self.pointer, self.message)
    }
}

/// Result of validating one document.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub violations: Vec<Violation>,
    /// How often each exception (by `at`) was applied.
    pub exceptions_used: BTreeMap<&'static str, usize>,
}

impl Report {
    pub fn is_ok(&self) -> bool {
        self.violations.is_empty()
    }
}

/// A loaded OpenAPI document.
#[derive(Debug, Clone)]
pub struct OpenApi {
    doc: Value,
}

/// YAML → JSON, stringifying non-string map keys (`200:` response codes).
fn yaml_to_json(y: serde_yaml::Value) -> Value {
    match y {
        serde_yaml::Value::Null => Value::Null,
        serde_yaml::Value::Bool(b) => Value::Bool(b),
        serde_yaml::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                n.as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number)
                    .unwrap_or(Value::Null)
            }
        }
        serde_yaml::Value::String(s) => Value::String(s),
        serde_yaml::Value::Sequence(seq) => {
            Value::Array(seq.into_iter().map(yaml_to_json).collect())
        }
        serde_yaml::Value::Mapping(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                let key = match k {
                    serde_yaml::Value::String(s) => s,
                    serde_yaml::Value::Number(n) => n.to_string(),
                    serde_yaml::Value::Bool(b) => b.to_string(),
                    other => serde_yaml::to_string(&other)
                        .unwrap_or_default()
                        .trim()
                        .to_string(),
                };
                out.insert(key, yaml_to_json(v));
            }
            Value::Object(out)
        }
        serde_yaml::Value::Tagged(t) => yaml_to_json(t.value),
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) => {
            if n.is_i64() || n.is_u64() {
                "integer"
            } else {
                "number"
            }
        }
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_matches(t: &str, v: &Value) -> bool {
    match t {
        "integer" => match v {
            Value::Number(n) => {
                n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
            }
            _ => false,
        },
        "number" => v.is_number(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        _ => true,
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 60 {
        format!("{}…", s.chars().take(60).collect::<String>())
    } else {
        s
    }
}

impl OpenApi {
    pub fn from_yaml_str(s: &str) -> Result<Self, OpenApiError> {
        let y: serde_yaml::Value = serde_yaml::from_str(s)?;
        Ok(OpenApi {
            doc: yaml_to_json(y),
        })
    }

    pub fn load(path: &Path) -> Result<Self, OpenApiError> {
        let s = std::fs::read_to_string(path).map_err(|source| OpenApiError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_yaml_str(&s)
    }

    /// The whole document as JSON.
    pub fn doc(&self) -> &Value {
        &self.doc
    }

    /// Resolves a local `$ref` like `#/components/schemas/Offer`.
    pub fn resolve(&self, r: &str) -> Result<&Value, OpenApiError> {
        let pointer = r
            .strip_prefix('#')
            .ok_or_else(|| OpenApiError::BadRef(r.to_string()))?;
        self.doc
            .pointer(pointer)
            .ok_or_else(|| OpenApiError::BadRef(r.to_string()))
    }

    /// True if the spec documents `method` on `path` (a template such as `/order/{orderId}`).
    pub fn has_operation(&self, path: &str, method: &str) -> bool {
        self.doc["paths"][path][method.to_ascii_lowercase()].is_object()
    }

    /// The JSON schema of a documented response, if the spec gives one.
    pub fn response_schema(&self, path: &str, method: &str, status: u16) -> Option<&Value> {
        let s = self.doc["paths"][path][method.to_ascii_lowercase()]["responses"]
            [status.to_string()]["content"]["application/json"]
            .get("schema")?;
        Some(s)
    }

    /// Validates a response body against the spec's schema for `method path status`.
    pub fn validate_response(
        &self,
        path: &str,
        method: &str,
        status: u16,
        body: &Value,
        exceptions: &[Exception],
    ) -> Result<Report, OpenApiError> {
        let loc = format!("{} {} {}", method.to_ascii_uppercase(), path, status);
        let mut report = Report::default();
        // a whole-response exception (e.g. live returns a bare object)
        if let Some(ex) = exceptions.iter().find(|e| e.matches(&loc)) {
            if let Allow::Schema(r) = ex.allow {
                *report.exceptions_used.entry(ex.at).or_default() += 1;
                let target = self.resolve(r)?;
                let name = r.rsplit('/').next().unwrap_or(r).to_string();
                self.check(target, &name, "", body, exceptions, &mut report)?;
                return Ok(report);
            }
        }
        let schema = self
            .response_schema(path, method, status)
            .ok_or_else(|| OpenApiError::NoSchema(loc.clone()))?;
        self.check(schema, &loc, "", body, exceptions, &mut report)?;
        Ok(report)
    }

    /// Validates `value` against an arbitrary schema (which may use `$ref`s into this spec).
    pub fn validate(
        &self,
        schema: &Value,
        loc: &str,
        value: &Value,
        exceptions: &[Exception],
    ) -> Result<Report, OpenApiError> {
        let mut report = Report::default();
        self.check(schema, loc, "", value, exceptions, &mut report)?;
        Ok(report)
    }

    fn check(
        &self,
        schema: &Value,
        loc: &str,
        ptr: &str,
        value: &Value,
        exceptions: &[Exception],
        report: &mut Report,
    ) -> Result<(), OpenApiError> {
        let violation = |report: &mut Report, message: String| {
            report.violations.push(Violation {
                at: loc.to_string(),
                pointer: if ptr.is_empty() {
                    "/".into()
                } else {
                    ptr.to_string()
                },
                message,
            });
        };
        if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
            let target = self.resolve(r)?;
            let name = r.rsplit('/').next().unwrap_or(r);
            // a property that is only a $ref keeps its own location for exceptions
            if let Some(ex) = exceptions.iter().find(|e| e.matches(loc)) {
                if self.apply_exception(ex, value, ptr, exceptions, report)? {
                    return Ok(());
                }
            }
            return self.check(target, name, ptr, value, exceptions, report);
        }
        if let Some(ex) = exceptions.iter().find(|e| e.matches(loc)) {
            if self.apply_exception(ex, value, ptr, exceptions, report)? {
                return Ok(());
            }
        }
        let nullable = schema.get("nullable").and_then(Value::as_bool) == Some(true);
        let ty = schema.get("type").and_then(Value::as_str);
        if value.is_null() {
            if nullable {
                return Ok(());
            }
            if let Some(t) = ty {
                violation(
                    report,
                    format!("null is not allowed (type {t}, not nullable)"),
                );
                return Ok(());
            }
        } else if let Some(t) = ty {
            if !type_matches(t, value) {
                violation(
                    report,
                    format!("expected {t}, got {} {}", json_type(value), short(value)),
                );
                return Ok(());
            }
        }
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
            if !allowed.contains(value) {
                violation(
                    report,
                    format!(
                        "{} is not one of {}",
                        short(value),
                        short(&Value::Array(allowed.clone()))
                    ),
                );
            }
        }
        if let Value::Object(obj) = value {
            if let Some(req) = schema.get("required").and_then(Value::as_array) {
                for r in req.iter().filter_map(Value::as_str) {
                    if !obj.contains_key(r) {
                        violation(report, format!("missing required property `{r}`"));
                    }
                }
            }
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, sub) in props {
                    if let Some(v) = obj.get(k) {
                        self.check(
                            sub,
                            &format!("{loc}.{k}"),
                            &format!("{ptr}/{k}"),
                            v,
                            exceptions,
                            report,
                        )?;
                    }
                }
            }
        }
        if let (Value::Array(items), Some(item_schema)) = (value, schema.get("items")) {
            for (i, v) in items.iter().enumerate() {
                self.check(
                    item_schema,
                    &format!("{loc}[]"),
                    &format!("{ptr}/{i}"),
                    v,
                    exceptions,
                    report,
                )?;
            }
        }
        if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
            for sub in all {
                self.check(sub, loc, ptr, value, exceptions, report)?;
            }
        }
        for (kw, exactly_one) in [("anyOf", false), ("oneOf", true)] {
            if let Some(alts) = schema.get(kw).and_then(Value::as_array) {
                let mut passing = 0;
                let mut used = BTreeMap::new();
                for sub in alts {
                    let mut r = Report::default();
                    self.check(sub, loc, ptr, value, exceptions, &mut r)?;
                    if r.is_ok() {
                        passing += 1;
                        used.extend(r.exceptions_used);
                    }
                }
                let ok = if exactly_one {
                    passing == 1
                } else {
                    passing >= 1
                };
                if ok {
                    for (k, n) in used {
                        *report.exceptions_used.entry(k).or_default() += n;
                    }
                } else {
                    violation(
                        report,
                        format!("{passing} of {} `{kw}` alternatives match", alts.len()),
                    );
                }
            }
        }
        Ok(())
    }

    /// Returns true if the exception fully handled the value.
    fn apply_exception(
        &self,
        ex: &Exception,
        value: &Value,
        ptr: &str,
        exceptions: &[Exception],
        report: &mut Report,
    ) -> Result<bool, OpenApiError> {
        let handled = match ex.allow {
            Allow::Null => value.is_null(),
            Allow::Types(ts) => {
                let t = json_type(value);
                ts.contains(&t) || (t == "integer" && ts.contains(&"number"))
            }
            Allow::Schema(r) => {
                let target = self.resolve(r)?;
                let name = r.rsplit('/').next().unwrap_or(r).to_string();
                *report.exceptions_used.entry(ex.at).or_default() += 1;
                self.check(target, &name, ptr, value, exceptions, report)?;
                return Ok(true);
            }
        };
        if handled {
            *report.exceptions_used.entry(ex.at).or_default() += 1;
        }
        Ok(handled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SPEC: &str = r##"
openapi: 3.0.0
paths:
  /things:
    get:
      responses:
        200:
          content:
            application/json:
              schema:
                type: object
                allOf:
                  - $ref: '#/components/schemas/Page'
                  - properties:
                      data:
                        type: array
                        items:
                          $ref: '#/components/schemas/Thing'
components:
  schemas:
    Page:
      type: object
      properties:
        total: { type: integer }
        next: { type: string }
    Thing:
      type: object
      required: [id]
      properties:
        id: { type: integer }
        code: { type: string, nullable: true }
        kind: { type: string, enum: [a, b] }
        tags: { type: array, items: { type: string } }
        price: { type: number }
        either:
          oneOf:
            - { type: string }
            - { type: integer }
"##;

    fn api() -> OpenApi {
        OpenApi::from_yaml_str(SPEC).expect("spec parses")
    }

    #[test]
    fn valid_document_passes() {
        let body = json!({"total": 1, "next": "u", "data": [
            {"id": 1, "code": null, "kind": "a", "tags": ["x"], "price": 1.5, "either": 3, "extra": true}
        ]});
        let r = api()
            .validate_response("/things", "GET", 200, &body, &[])
            .expect("validates");
        assert!(r.is_ok(), "{:?}", r.violations);
    }

    #[test]
    fn violations_are_reported_with_locations() {
        let body = json!({"total": "1", "next": null, "data": [
            {"code": 5, "kind": "z", "tags": [1], "price": "9", "either": true}
        ]});
        let r = api()
            .validate_response("/things", "GET", 200, &body, &[])
            .expect("validates");
        let at: Vec<&str> = r.violations.iter().map(|v| v.at.as_str()).collect();
        for expected in [
            "Page.total",
            "Page.next",
            "Thing",
            "Thing.code",
            "Thing.kind",
            "Thing.tags[]",
            "Thing.price",
            "Thing.either",
        ] {
            assert!(at.contains(&expected), "{expected} not in {at:?}");
        }
        assert!(r.violations.iter().any(|v| v.pointer == "/data/0/price"));
    }

    #[test]
    fn exceptions_apply_only_where_named() {
        let ex = [
            Exception {
                at: "Page.next",
                allow: Allow::Null,
                reason: "last page",
            },
            Exception {
                at: "*.tags",
                allow: Allow::Types(&["object"]),
                reason: "PHP empty map",
            },
        ];
        let body = json!({"total": 1, "next": null, "data": [{"id": 1, "tags": {}}]});
        let r = api()
            .validate_response("/things", "GET", 200, &body, &ex)
            .expect("validates");
        assert!(r.is_ok(), "{:?}", r.violations);
        assert_eq!(r.exceptions_used.get("Page.next"), Some(&1));
        assert_eq!(r.exceptions_used.get("*.tags"), Some(&1));
        // a null elsewhere still fails
        let body = json!({"total": null, "next": null, "data": []});
        let r = api()
            .validate_response("/things", "GET", 200, &body, &ex)
            .expect("validates");
        assert_eq!(r.violations.len(), 1);
        assert_eq!(r.violations[0].at, "Page.total");
    }

    #[test]
    fn schema_replacement_and_missing_schema() {
        let ex = [Exception {
            at: "GET /things 200",
            allow: Allow::Schema("#/components/schemas/Thing"),
            reason: "bare object",
        }];
        let r = api()
            .validate_response("/things", "GET", 200, &json!({"id": 2}), &ex)
            .expect("validates");
        assert!(r.is_ok());
        assert!(matches!(
            api().validate_response("/things", "GET", 404, &json!({}), &[]),
            Err(OpenApiError::NoSchema(_))
        ));
        assert!(api().resolve("#/components/schemas/Nope").is_err());
    }
}
