//! CloudWatch Embedded Metric Format: the pure part. What an invocation recorded becomes a
//! few JSON documents, one per combination of dimension values, each naming its metrics in
//! `_aws.CloudWatchMetrics`. CloudWatch Logs turns every such log line into metric data, with
//! no API call and no agent.
//!
//! Limits of the format respected here: at most 100 values per metric in one document
//! (longer lists are split over several documents) and at most 100 metrics per directive
//! (the catalogue has fewer).

use super::catalog::{Function, Metric, Unit, NAMESPACE};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// Values per metric and document, as the format allows.
pub const MAX_VALUES: usize = 100;

/// What one metric with one set of dimension values recorded.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub metric: &'static Metric,
    /// Values of `metric.labels`, in order.
    pub labels: Vec<&'static str>,
    pub values: Values,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Values {
    /// A count summed over the invocation.
    Sum(f64),
    /// Every observation (durations).
    List(Vec<f64>),
}

impl Values {
    fn chunks(&self) -> usize {
        match self {
            Values::Sum(_) => 1,
            Values::List(v) => v.len().div_ceil(MAX_VALUES).max(1),
        }
    }

    fn chunk(&self, i: usize) -> Option<Value> {
        match self {
            Values::Sum(s) if i == 0 => Some(json!(s)),
            Values::Sum(_) => None,
            Values::List(v) => {
                let part: Vec<f64> = v
                    .iter()
                    .skip(i * MAX_VALUES)
                    .take(MAX_VALUES)
                    .copied()
                    .collect();
                match part.len() {
                    0 => None,
                    1 => Some(json!(part[0])),
                    _ => Some(json!(part)),
                }
            }
        }
    }
}

/// The dimension values a sample is published with (besides `function`).
fn dimension_values(s: &Sample) -> BTreeMap<&'static str, &'static str> {
    s.metric
        .labels
        .iter()
        .enumerate()
        .map(|(i, k)| (*k, s.labels.get(i).copied().unwrap_or("unknown")))
        .collect()
}

/// The EMF documents for `samples`, stamped `timestamp_ms` (epoch milliseconds).
pub fn documents(function: Function, timestamp_ms: u64, samples: &[Sample]) -> Vec<Value> {
    let mut groups: BTreeMap<BTreeMap<&'static str, &'static str>, Vec<&Sample>> = BTreeMap::new();
    for s in samples {
        groups.entry(dimension_values(s)).or_default().push(s);
    }
    let mut docs = Vec::new();
    for (dims, members) in groups {
        let chunks = members.iter().map(|s| s.values.chunks()).max().unwrap_or(1);
        for i in 0..chunks {
            let mut root = Map::new();
            root.insert("function".into(), json!(function.as_str()));
            for (k, v) in &dims {
                root.insert((*k).into(), json!(v));
            }
            // One directive per distinct list of dimension sets.
            let mut directives: Vec<(Vec<Vec<&str>>, Vec<Value>)> = Vec::new();
            for s in &members {
                let Some(v) = s.values.chunk(i) else {
                    continue;
                };
                root.insert(s.metric.name.into(), v);
                let sets = s.metric.dimension_sets();
                let def = json!({"Name": s.metric.name, "Unit": s.metric.unit.as_str()});
                match directives.iter_mut().find(|(d, _)| *d == sets) {
                    Some((_, metrics)) => metrics.push(def),
                    None => directives.push((sets, vec![def])),
                }
            }
            if directives.is_empty() {
                continue;
            }
            let cw: Vec<Value> = directives
                .into_iter()
                .map(|(sets, metrics)| {
                    json!({"Namespace": NAMESPACE, "Dimensions": sets, "Metrics": metrics})
                })
                .collect();
            root.insert(
                "_aws".into(),
                json!({"Timestamp": timestamp_ms, "CloudWatchMetrics": cw}),
            );
            docs.push(Value::Object(root));
        }
    }
    docs
}

/// Checks that `doc` is a well-formed EMF document: every declared metric has a numeric value
/// (or a list of at most 100), every dimension has a string value. Used by tests on the
/// emitted lines; returns what is wrong.
pub fn validate(doc: &Value) -> Result<(), String> {
    let aws = doc.get("_aws").ok_or("no _aws")?;
    aws.get("Timestamp")
        .and_then(Value::as_u64)
        .ok_or("no numeric _aws.Timestamp")?;
    let directives = aws
        .get("CloudWatchMetrics")
        .and_then(Value::as_array)
        .ok_or("no _aws.CloudWatchMetrics array")?;
    if directives.is_empty() {
        return Err("no directive".into());
    }
    for d in directives {
        if d.get("Namespace").and_then(Value::as_str) != Some(NAMESPACE) {
            return Err(format!("namespace is not {NAMESPACE}"));
        }
        let sets = d
            .get("Dimensions")
            .and_then(Value::as_array)
            .ok_or("no Dimensions")?;
        for set in sets {
            for k in set.as_array().ok_or("a dimension set is not an array")? {
                let k = k.as_str().ok_or("a dimension name is not a string")?;
                doc.get(k)
                    .and_then(Value::as_str)
                    .ok_or(format!("dimension {k} has no string value"))?;
            }
        }
        for m in d
            .get("Metrics")
            .and_then(Value::as_array)
            .ok_or("no Metrics")?
        {
            let name = m
                .get("Name")
                .and_then(Value::as_str)
                .ok_or("a metric without Name")?;
            match doc.get(name) {
                Some(Value::Number(_)) => {}
                Some(Value::Array(a))
                    if !a.is_empty() && a.len() <= MAX_VALUES && a.iter().all(Value::is_number) => {
                }
                _ => return Err(format!("metric {name} has no numeric value")),
            }
        }
    }
    Ok(())
}

impl Unit {
    /// How a value of this unit is recorded.
    pub fn empty(self) -> Values {
        match self {
            Unit::Count => Values::Sum(0.0),
            Unit::Milliseconds => Values::List(Vec::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::catalog::*;

    fn sample(metric: &'static Metric, labels: &[&'static str], values: Values) -> Sample {
        Sample {
            metric,
            labels: labels.to_vec(),
            values,
        }
    }

    #[test]
    fn one_document_per_dimension_values_with_rollups() {
        let docs = documents(
            Function::OrderPush,
            1_700_000_000_000,
            &[
                sample(&ORDERS_PUSHED, &[], Values::Sum(3.0)),
                sample(&ORDERS_FAILED, &["validation"], Values::Sum(1.0)),
                sample(&ORDERS_DEFERRED, &["rate_limited"], Values::Sum(2.0)),
                sample(&RATE_GATE_WAIT, &[], Values::List(vec![0.0, 12.5])),
            ],
        );
        assert_eq!(docs.len(), 3, "{docs:#?}");
        for d in &docs {
            validate(d).unwrap();
            assert_eq!(d["function"], "order-push");
            assert_eq!(d["_aws"]["Timestamp"], 1_700_000_000_000u64);
        }
        let plain = docs
            .iter()
            .find(|d| d.get("OrdersPushed").is_some())
            .unwrap();
        assert_eq!(plain["OrdersPushed"], 3.0);
        assert_eq!(plain["RateGateWait"], json!([0.0, 12.5]));
        assert_eq!(
            plain["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["function"]])
        );
        let failed = docs
            .iter()
            .find(|d| d.get("OrdersFailed").is_some())
            .unwrap();
        assert_eq!(failed["reason"], "validation");
        assert_eq!(
            failed["_aws"]["CloudWatchMetrics"][0],
            json!({"Namespace": "ShopKeycrm", "Dimensions": [["function", "reason"], ["function"]],
                   "Metrics": [{"Name": "OrdersFailed", "Unit": "Count"}]})
        );
        assert!(failed.get("OrdersPushed").is_none());
    }

    #[test]
    fn long_value_lists_are_split_and_a_single_value_is_a_number() {
        let many: Vec<f64> = (0..250).map(f64::from).collect();
        let docs = documents(
            Function::CatalogSync,
            1,
            &[
                sample(&KEYCRM_LATENCY, &[], Values::List(many)),
                sample(&KEYCRM_RATE_LIMITED, &[], Values::Sum(4.0)),
            ],
        );
        assert_eq!(docs.len(), 3);
        let lens: Vec<usize> = docs
            .iter()
            .map(|d| d["KeycrmLatency"].as_array().map_or(1, Vec::len))
            .collect();
        assert_eq!(lens, vec![100, 100, 50]);
        // The count is published once, not three times.
        assert_eq!(
            docs.iter()
                .filter(|d| d.get("KeycrmRateLimited").is_some())
                .count(),
            1
        );
        for d in &docs {
            validate(d).unwrap();
        }
        let one = documents(
            Function::Webhook,
            1,
            &[sample(&KEYCRM_LATENCY, &[], Values::List(vec![7.0]))],
        );
        assert_eq!(one[0]["KeycrmLatency"], 7.0);
    }

    #[test]
    fn missing_labels_are_published_as_unknown_never_dropped() {
        let docs = documents(
            Function::OrderPush,
            1,
            &[sample(&ORDERS_FAILED, &[], Values::Sum(1.0))],
        );
        assert_eq!(docs[0]["reason"], "unknown");
        validate(&docs[0]).unwrap();
    }

    #[test]
    fn validation_catches_broken_documents() {
        assert!(validate(&json!({})).is_err());
        let mut d = documents(
            Function::OrderPush,
            1,
            &[sample(&ORDERS_FAILED, &["mapping"], Values::Sum(1.0))],
        )
        .remove(0);
        d.as_object_mut().unwrap().remove("reason");
        assert!(validate(&d).unwrap_err().contains("reason"));
        assert!(documents(Function::OrderPush, 1, &[]).is_empty());
    }
}
