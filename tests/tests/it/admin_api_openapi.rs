//! Keeps `docs/admin-api.openapi.yaml` and the admin API's router in step: the same routes
//! and methods both ways, every route guarded as documented, every `$ref` resolvable.
//! (Response bodies are validated against the file in `admin_api_flows.rs`.)

use e2e_tests::openapi::OpenApi;
use serde_json::Value;
use std::collections::BTreeSet;

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "patch", "head", "options", "trace",
];

fn spec() -> OpenApi {
    OpenApi::load(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/admin-api.openapi.yaml"),
    )
    .expect("docs/admin-api.openapi.yaml parses")
}

fn documented(spec: &OpenApi) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in spec.doc()["paths"].as_object().expect("paths") {
        for m in METHODS {
            if item.get(m).is_some() {
                out.insert((m.to_ascii_uppercase(), path.clone()));
            }
        }
    }
    out
}

#[test]
fn the_router_and_the_openapi_file_list_the_same_routes() {
    let spec = spec();
    let served: BTreeSet<(String, String)> = admin_api::routes().into_iter().collect();
    let documented = documented(&spec);
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let unserved: Vec<_> = documented.difference(&served).collect();
    assert!(
        undocumented.is_empty(),
        "served but not in the OpenAPI file: {undocumented:?}"
    );
    assert!(
        unserved.is_empty(),
        "in the OpenAPI file but not served: {unserved:?}"
    );
    assert_eq!(
        served.len(),
        admin_api::routes().len(),
        "no route is listed twice"
    );
}

#[test]
fn every_operation_documents_auth_its_parameters_and_json_bodies() {
    let spec = spec();
    let doc = spec.doc();
    assert_eq!(
        doc["openapi"].as_str().map(|v| v.starts_with("3.0")),
        Some(true)
    );
    assert!(doc["components"]["securitySchemes"]["shopToken"].is_object());
    for (method, path) in documented(&spec) {
        let item = &doc["paths"][&path];
        let op = &item[method.to_ascii_lowercase()];
        let responses = op["responses"].as_object().expect("responses");
        for code in ["401", "403"] {
            assert!(
                responses.contains_key(code),
                "{method} {path} does not document {code}"
            );
        }
        for (code, r) in responses {
            if code != "204" {
                assert!(
                    r["content"]["application/json"]["schema"].is_object(),
                    "{method} {path} {code} has no JSON schema"
                );
            }
        }
        // Every `{param}` of the template is declared as a path parameter.
        let declared: BTreeSet<String> = item["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(op["parameters"].as_array().into_iter().flatten())
            .filter_map(|p| {
                let p = match p.get("$ref").and_then(Value::as_str) {
                    Some(r) => spec.resolve(r).expect("parameter $ref"),
                    None => p,
                };
                (p["in"] == "path").then(|| p["name"].as_str().unwrap_or("").to_string())
            })
            .collect();
        let in_template: BTreeSet<String> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(str::to_string)
            .collect();
        assert_eq!(declared, in_template, "{method} {path} path parameters");
    }
}

#[test]
fn every_ref_resolves() {
    fn walk(spec: &OpenApi, v: &Value, at: &str, n: &mut usize) {
        match v {
            Value::Object(m) => {
                if let Some(r) = m.get("$ref").and_then(Value::as_str) {
                    spec.resolve(r)
                        .unwrap_or_else(|_| panic!("{at}: unresolvable {r}"));
                    *n += 1;
                }
                for (k, v) in m {
                    walk(spec, v, &format!("{at}/{k}"), n);
                }
            }
            Value::Array(a) => a
                .iter()
                .enumerate()
                .for_each(|(i, v)| walk(spec, v, &format!("{at}/{i}"), n)),
            _ => {}
        }
    }
    let spec = spec();
    let mut n = 0;
    walk(&spec, spec.doc(), "", &mut n);
    assert!(n > 50, "{n} refs checked");
}
