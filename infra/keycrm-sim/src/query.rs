//! Spatie-query-builder-like parsing (`filter[...]`, `include`, `sort`) and the Laravel
//! `LengthAwarePaginator` envelope.

use serde_json::{json, Value};

use crate::error::ApiError;

pub(crate) const DEFAULT_LIMIT: usize = 15;
pub(crate) const MAX_LIMIT: usize = 50;

#[derive(Debug, Default, Clone)]
pub(crate) struct ListQuery {
    /// All decoded pairs in request order (used to rebuild page URLs).
    pairs: Vec<(String, String)>,
    filters: Vec<(String, String)>,
    includes: Vec<String>,
    sort: Option<String>,
    pub page: usize,
    pub limit: usize,
}

impl ListQuery {
    pub(crate) fn parse(raw: Option<&str>) -> Self {
        let pairs: Vec<(String, String)> =
            url::form_urlencoded::parse(raw.unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
        let mut q = ListQuery {
            page: 1,
            limit: DEFAULT_LIMIT,
            ..Default::default()
        };
        for (k, v) in &pairs {
            if let Some(name) = k.strip_prefix("filter[").and_then(|r| r.strip_suffix(']')) {
                // PHP semantics: a repeated key overwrites the previous one.
                q.filters.retain(|(n, _)| n != name);
                q.filters.push((name.to_string(), v.clone()));
            } else if k == "include" {
                q.includes = v
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect();
            } else if k == "sort" {
                q.sort = Some(v.clone()).filter(|s| !s.trim().is_empty());
            } else if k == "page" {
                q.page = v
                    .trim()
                    .parse::<i64>()
                    .ok()
                    .filter(|p| *p >= 1)
                    .unwrap_or(1) as usize;
            } else if k == "limit" {
                q.limit = match v.trim().parse::<i64>() {
                    Ok(l) => l.clamp(1, MAX_LIMIT as i64) as usize,
                    Err(_) => DEFAULT_LIMIT,
                };
            }
        }
        q.pairs = pairs;
        q
    }

    /// Rejects unknown `filter[...]` names like Spatie's `InvalidFilterQuery` (400).
    pub(crate) fn allow_filters(&self, allowed: &[&str]) -> Result<(), ApiError> {
        let unknown: Vec<&str> = self
            .filters
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| !allowed.contains(n))
            .collect();
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(ApiError::BadRequest(format!(
                "Requested filter(s) `{}` are not allowed. Allowed filter(s) are `{}`.",
                unknown.join(", "),
                allowed.join(", ")
            )))
        }
    }

    /// Rejects unknown includes. A dotted include also allows its prefixes
    /// (`products.offer` allows `products`), and `<relation>Count` / `<relation>Exists`
    /// forms are accepted (and ignored) as Spatie does.
    pub(crate) fn allow_includes(&self, allowed: &[&str]) -> Result<(), ApiError> {
        let is_allowed = |inc: &str| -> bool {
            allowed.iter().any(|a| {
                if *a == inc {
                    return true;
                }
                if a.starts_with(inc) && a.as_bytes().get(inc.len()) == Some(&b'.') {
                    return true;
                }
                let top = a.split('.').next().unwrap_or(a);
                let camel = snake_to_camel(top);
                inc == format!("{camel}Count") || inc == format!("{camel}Exists")
            })
        };
        let unknown: Vec<&str> = self
            .includes
            .iter()
            .map(String::as_str)
            .filter(|i| !is_allowed(i))
            .collect();
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(ApiError::BadRequest(format!(
                "Requested include(s) `{}` are not allowed. Allowed include(s) are `{}`.",
                unknown.join(", "),
                allowed.join(", ")
            )))
        }
    }

    /// Validates `sort` against allowed field names; returns `(field, descending)` pairs.
    pub(crate) fn sorts(&self, allowed: &[&str]) -> Result<Vec<(String, bool)>, ApiError> {
        let Some(s) = &self.sort else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        let mut unknown = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (field, desc) = match part.strip_prefix('-') {
                Some(f) => (f, true),
                None => (part, false),
            };
            if allowed.contains(&field) {
                out.push((field.to_string(), desc));
            } else {
                unknown.push(part.to_string());
            }
        }
        if unknown.is_empty() {
            Ok(out)
        } else {
            Err(ApiError::BadRequest(format!(
                "Requested sort(s) `{}` is not allowed. Allowed sort(s) are `{}`.",
                unknown.join(", "),
                allowed.join(", ")
            )))
        }
    }

    pub(crate) fn filter(&self, name: &str) -> Option<&str> {
        self.filters
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Comma-separated list filter (trimmed, empties dropped).
    pub(crate) fn filter_list(&self, name: &str) -> Option<Vec<String>> {
        self.filter(name).map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
    }

    /// Integer list filter; non-numeric entries match nothing.
    pub(crate) fn filter_ids(&self, name: &str) -> Option<Vec<i64>> {
        self.filter_list(name)
            .map(|l| l.iter().filter_map(|s| s.parse::<i64>().ok()).collect())
    }

    pub(crate) fn filter_bool(&self, name: &str) -> Option<bool> {
        self.filter(name)
            .and_then(|v| match v.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => Some(true),
                "0" | "false" | "no" | "off" => Some(false),
                _ => None,
            })
    }

    pub(crate) fn has_include(&self, name: &str) -> bool {
        self.includes.iter().any(|i| {
            i == name || (i.starts_with(name) && i.as_bytes().get(name.len()) == Some(&b'.'))
        })
    }

    fn page_url(&self, path_url: &str, page: usize) -> String {
        let mut ser = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in &self.pairs {
            if k != "page" {
                ser.append_pair(k, v);
            }
        }
        ser.append_pair("page", &page.to_string());
        format!("{path_url}?{}", ser.finish())
    }

    /// Builds the 12-key Laravel envelope. `render` receives the index range of the page.
    pub(crate) fn envelope(
        &self,
        path_url: &str,
        total: usize,
        render: impl FnOnce(std::ops::Range<usize>) -> Vec<Value>,
    ) -> Value {
        let per_page = self.limit.max(1);
        let last_page = total.div_ceil(per_page).max(1);
        let page = self.page.max(1);
        let start = (page - 1).saturating_mul(per_page);
        let (data, from, to) = if start < total {
            let end = (start + per_page).min(total);
            (render(start..end), json!(start + 1), json!(end))
        } else {
            (Vec::new(), Value::Null, Value::Null)
        };
        json!({
            "current_page": page,
            "data": data,
            "first_page_url": self.page_url(path_url, 1),
            "from": from,
            "last_page": last_page,
            "last_page_url": self.page_url(path_url, last_page),
            "next_page_url": if page < last_page { json!(self.page_url(path_url, page + 1)) } else { Value::Null },
            "path": path_url,
            "per_page": per_page,
            "prev_page_url": if page > 1 { json!(self.page_url(path_url, page - 1)) } else { Value::Null },
            "to": to,
            "total": total,
        })
    }
}

fn snake_to_camel(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut upper = false;
    for c in s.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_filters_includes_limits() {
        let q = ListQuery::parse(Some(
            "include=product&filter%5Bproduct_id%5D=1,2&limit=100&page=0&sort=-id",
        ));
        assert_eq!(q.filter_ids("product_id"), Some(vec![1, 2]));
        assert_eq!(q.limit, 50);
        assert_eq!(q.page, 1);
        assert!(q.has_include("product"));
        assert_eq!(q.sorts(&["id"]).ok(), Some(vec![("id".to_string(), true)]));
        assert!(q.allow_filters(&["id"]).is_err());
        assert!(q.allow_filters(&["product_id"]).is_ok());
        let q = ListQuery::parse(Some("limit=0"));
        assert_eq!(q.limit, 1);
        let q = ListQuery::parse(Some("limit=abc"));
        assert_eq!(q.limit, 15);
    }

    #[test]
    fn include_prefixes_and_counts() {
        let q = ListQuery::parse(Some("include=products,shipping,productsCount"));
        assert!(q
            .allow_includes(&["products.offer", "shipping.deliveryService"])
            .is_ok());
        let q = ListQuery::parse(Some("include=nope"));
        assert!(q.allow_includes(&["products.offer"]).is_err());
    }

    #[test]
    fn envelope_urls_keep_query() {
        let q = ListQuery::parse(Some("include=product&filter%5Bproduct_id%5D=1331&limit=2"));
        let v = q.envelope("http://h/v1/offers", 5, |r| {
            r.map(|i| json!({"i": i})).collect()
        });
        assert_eq!(v.as_object().map(|m| m.len()), Some(12));
        assert_eq!(
            v["next_page_url"],
            "http://h/v1/offers?include=product&filter%5Bproduct_id%5D=1331&limit=2&page=2"
        );
        assert_eq!(v["last_page"], 3);
        assert_eq!(v["from"], 1);
        assert_eq!(v["to"], 2);
        let q = ListQuery::parse(Some("page=9"));
        let v = q.envelope("http://h/v1/offers", 5, |_| Vec::new());
        assert_eq!(v["data"], json!([]));
        assert_eq!(v["from"], Value::Null);
        assert_eq!(v["next_page_url"], Value::Null);
    }
}
