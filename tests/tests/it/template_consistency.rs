//! Keeps `template.yaml` (the SAM bundle) and the Cargo workspace in step.
//!
//! * every `AWS::Serverless::Function` is built by cargo-lambda from a workspace member
//!   that has a binary target;
//! * every binary crate under `functions/` is deployed by exactly one function;
//! * every SQS event source reports partial batch failures and its queue's visibility
//!   timeout is at least the consuming function's timeout;
//! * the table's `gsi1` has the key schema and the projection the store creates and reads
//!   (`store::dynamo`);
//! * the dashboard and the alarms ask for exactly the ShopKeycrm metrics the code emits
//!   (`runtime::metrics::catalog`), with dimension sets it publishes, and every emitted
//!   metric is on the dashboard; every alarm says what to do and has a runbook section;
//!   Lambda's log filter never drops the metric lines.
//!
//! The template is read with serde_yaml, which keeps CloudFormation short tags such as
//! `!Ref` / `!GetAtt` as tagged values. Cargo manifests are read with a deliberately small
//! line-based reader (only `[package]`, `[[bin]]` and the workspace `members`/`exclude`
//! arrays matter here).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Component, Path, PathBuf};

use serde_yaml::Value;

const FUNCTION_TYPE: &str = "AWS::Serverless::Function";
const QUEUE_TYPE: &str = "AWS::SQS::Queue";
/// Lambda's default timeout when neither the function nor `Globals.Function` sets one.
const LAMBDA_DEFAULT_TIMEOUT_S: u64 = 3;
/// SQS's default visibility timeout when the queue does not set one.
const SQS_DEFAULT_VISIBILITY_S: u64 = 30;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the e2e-tests crate lives one level below the repository root")
        .to_path_buf()
}

fn load_template() -> Value {
    let path = repo_root().join("template.yaml");
    let text =
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_yaml::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()))
}

fn fail_if_any(what: &str, problems: &[String]) {
    if !problems.is_empty() {
        panic!(
            "{what}: {} problem(s):\n  - {}",
            problems.len(),
            problems.join("\n  - ")
        );
    }
}

// ------------------------------------------------------------------ template helpers

/// `(logical id, resource)` for every resource of the given type, in template order.
fn resources_of_type<'a>(template: &'a Value, ty: &str) -> Vec<(String, &'a Value)> {
    let resources = template
        .get("Resources")
        .and_then(Value::as_mapping)
        .expect("template.yaml has no Resources mapping");
    resources
        .iter()
        .filter(|(_, r)| r.get("Type").and_then(Value::as_str) == Some(ty))
        .map(|(id, r)| (id.as_str().unwrap_or("<non-string id>").to_owned(), r))
        .collect()
}

fn resource<'a>(template: &'a Value, logical_id: &str) -> Option<&'a Value> {
    template.get("Resources")?.get(logical_id)
}

fn props(resource: &Value) -> Option<&Value> {
    resource.get("Properties")
}

/// A function property, falling back to `Globals.Function` as SAM does.
fn function_prop<'a>(template: &'a Value, function: &'a Value, key: &str) -> Option<&'a Value> {
    props(function)
        .and_then(|p| p.get(key))
        .or_else(|| template.get("Globals")?.get("Function")?.get(key))
}

/// A literal number (YAML int, or a string holding one). `None` for intrinsics such as `!Ref`.
fn literal_u64(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn describe(value: &Value) -> String {
    serde_yaml::to_string(value)
        .map(|s| s.trim().replace('\n', " "))
        .unwrap_or_else(|_| format!("{value:?}"))
}

/// The logical id named by `!GetAtt X.Arn`, `!GetAtt [X, Arn]` or `{"Fn::GetAtt": ...}`.
fn get_att_arn_target(value: &Value) -> Result<String, String> {
    let inner = match value {
        Value::Tagged(tagged) if tagged.tag == "GetAtt" => &tagged.value,
        Value::Mapping(m) if m.len() == 1 && m.contains_key("Fn::GetAtt") => &m["Fn::GetAtt"],
        other => {
            return Err(format!(
                "expected `!GetAtt <Queue>.Arn`, found `{}`",
                describe(other)
            ))
        }
    };
    let (id, attr) = match inner {
        Value::String(s) => match s.split_once('.') {
            Some((id, attr)) => (id.to_owned(), attr.to_owned()),
            None => return Err(format!("`!GetAtt {s}` names no attribute")),
        },
        Value::Sequence(seq) if seq.len() == 2 => (
            seq[0].as_str().unwrap_or_default().to_owned(),
            seq[1].as_str().unwrap_or_default().to_owned(),
        ),
        other => return Err(format!("unsupported GetAtt form `{}`", describe(other))),
    };
    if attr != "Arn" {
        return Err(format!(
            "`!GetAtt {id}.{attr}` is not an ARN; an SQS event needs `!GetAtt {id}.Arn`"
        ));
    }
    Ok(id)
}

/// The CodeUri as a normalised repo-relative path (`./functions/x/` -> `functions/x`).
fn normalise_rel(path: &str) -> Result<PathBuf, String> {
    let mut out = PathBuf::new();
    for comp in Path::new(path).components() {
        match comp {
            Component::CurDir => {}
            Component::Normal(c) => out.push(c),
            Component::ParentDir => {
                if !out.pop() {
                    return Err(format!("`{path}` points outside the repository"));
                }
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!(
                    "`{path}` is absolute; use a repository-relative path"
                ))
            }
        }
    }
    if out.as_os_str().is_empty() {
        return Err(format!(
            "`{path}` is the repository root, not a crate directory"
        ));
    }
    Ok(out)
}

fn rel_display(path: &Path) -> String {
    path.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

// ------------------------------------------------------------------ Cargo.toml helpers

/// Key/value lines grouped by table header (`package`, `[bin]` entries, `workspace`, ...).
#[derive(Debug, Default)]
struct Manifest {
    /// `[table]` -> key -> raw value (arrays may span lines and are joined).
    tables: BTreeMap<String, BTreeMap<String, String>>,
    /// One map per `[[bin]]` entry.
    bins: Vec<BTreeMap<String, String>>,
}

/// Drops a `#` comment that is not inside a string.
fn strip_comment(line: &str) -> &str {
    let mut in_str: Option<char> = None;
    for (i, ch) in line.char_indices() {
        match (in_str, ch) {
            (None, '"') | (None, '\'') => in_str = Some(ch),
            (Some(q), c) if c == q => in_str = None,
            (None, '#') => return &line[..i],
            _ => {}
        }
    }
    line
}

fn store(manifest: &mut Manifest, table: Option<&str>, key: String, value: String) {
    match table {
        Some("[[bin]]") => {
            if let Some(bin) = manifest.bins.last_mut() {
                bin.insert(key, value);
            }
        }
        other => {
            manifest
                .tables
                .entry(other.unwrap_or_default().to_owned())
                .or_default()
                .insert(key, value);
        }
    }
}

fn parse_manifest(text: &str) -> Manifest {
    let mut manifest = Manifest::default();
    let mut current: Option<String> = None; // None = root, Some("[[bin]]") = last bin entry
    let mut pending: Option<(String, String)> = None; // multi-line array being collected

    for raw in text.lines() {
        let line = strip_comment(raw).trim();
        if let Some((key, mut acc)) = pending.take() {
            acc.push(' ');
            acc.push_str(line);
            if line.contains(']') {
                store(&mut manifest, current.as_deref(), key, acc);
            } else {
                pending = Some((key, acc));
            }
            continue;
        }
        if line.is_empty() {
            continue;
        }
        if line.starts_with("[[") {
            let name = line.trim_matches(|c| c == '[' || c == ']').trim();
            if name == "bin" {
                manifest.bins.push(BTreeMap::new());
                current = Some("[[bin]]".to_owned());
            } else {
                current = Some(format!("[[{name}]]"));
            }
            continue;
        }
        if line.starts_with('[') {
            current = Some(
                line.trim_matches(|c| c == '[' || c == ']')
                    .trim()
                    .to_owned(),
            );
            continue;
        }
        if let Some((key, value)) = line.split_once('=') {
            let key = key.trim().trim_matches('"').to_owned();
            let value = value.trim().to_owned();
            if value.starts_with('[') && !value.contains(']') {
                pending = Some((key, value));
            } else {
                store(&mut manifest, current.as_deref(), key, value);
            }
        }
    }
    if let Some((key, acc)) = pending {
        store(&mut manifest, current.as_deref(), key, acc);
    }
    manifest
}

/// All quoted strings in a raw TOML value (`"a"`, `['b', "c"]`).
fn quoted_strings(raw: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = raw.chars();
    while let Some(ch) = chars.next() {
        if ch == '"' || ch == '\'' {
            let s: String = chars.by_ref().take_while(|&c| c != ch).collect();
            out.push(s);
        }
    }
    out
}

fn read_manifest(dir: &Path) -> Result<Manifest, String> {
    let path = dir.join("Cargo.toml");
    fs::read_to_string(&path)
        .map(|t| parse_manifest(&t))
        .map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// Names of the binary targets of the crate in `dir` (explicit `[[bin]]` plus cargo's
/// auto-discovered `src/main.rs`, `src/bin/*.rs` and `src/bin/*/main.rs`).
fn binary_targets(dir: &Path, manifest: &Manifest) -> Vec<String> {
    let package = manifest.tables.get("package");
    let package_name = package
        .and_then(|p| p.get("name"))
        .and_then(|v| quoted_strings(v).into_iter().next())
        .unwrap_or_default();
    let autobins = package
        .and_then(|p| p.get("autobins"))
        .map(|v| v.trim() != "false")
        .unwrap_or(true);

    let mut names: Vec<String> = Vec::new();
    for bin in &manifest.bins {
        let name = bin
            .get("name")
            .and_then(|v| quoted_strings(v).into_iter().next())
            .unwrap_or_else(|| package_name.clone());
        names.push(name);
    }
    if autobins {
        if dir.join("src/main.rs").is_file() {
            names.push(package_name.clone());
        }
        if let Ok(entries) = fs::read_dir(dir.join("src/bin")) {
            for entry in entries.flatten() {
                let path = entry.path();
                let stem = path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let single_file = path.extension().is_some_and(|e| e == "rs") && path.is_file();
                let directory = path.join("main.rs").is_file();
                if single_file || directory {
                    names.push(stem);
                }
            }
        }
    }
    names.sort();
    names.dedup();
    names
}

/// Workspace member directories (repo-relative), with `dir/*` globs expanded.
fn workspace_members() -> Vec<PathBuf> {
    let root = repo_root();
    let manifest = read_manifest(&root).expect("root Cargo.toml is readable");
    let workspace = manifest
        .tables
        .get("workspace")
        .expect("root Cargo.toml has a [workspace] table");
    let list = |key: &str| {
        workspace
            .get(key)
            .map(|v| quoted_strings(v))
            .unwrap_or_default()
    };
    let excluded: Vec<PathBuf> = list("exclude")
        .iter()
        .filter_map(|e| normalise_rel(e).ok())
        .collect();
    let mut members = Vec::new();
    for pattern in list("members") {
        if let Some(parent) = pattern.strip_suffix("/*") {
            if let Ok(entries) = fs::read_dir(root.join(parent)) {
                for entry in entries.flatten() {
                    if entry.path().join("Cargo.toml").is_file() {
                        if let Ok(rel) = normalise_rel(&format!(
                            "{parent}/{}",
                            entry.file_name().to_string_lossy()
                        )) {
                            members.push(rel);
                        }
                    }
                }
            }
        } else if let Ok(rel) = normalise_rel(&pattern) {
            members.push(rel);
        }
    }
    members.retain(|m| !excluded.contains(m));
    members
}

// ------------------------------------------------------------------ tests

#[test]
fn every_function_is_a_cargo_lambda_build_of_a_workspace_binary() {
    let template = load_template();
    let root = repo_root();
    let members = workspace_members();
    let functions = resources_of_type(&template, FUNCTION_TYPE);
    assert!(
        !functions.is_empty(),
        "template.yaml declares no {FUNCTION_TYPE} at all"
    );

    let mut problems = Vec::new();
    for (id, function) in &functions {
        let build_method = function.get("Metadata").and_then(|m| m.get("BuildMethod"));
        if build_method.and_then(Value::as_str) != Some("rust-cargolambda") {
            problems.push(format!(
                "{id}: Metadata.BuildMethod is {}, expected `rust-cargolambda`",
                build_method.map_or("missing".to_owned(), |v| format!("`{}`", describe(v)))
            ));
        }

        match function_prop(&template, function, "Handler").and_then(Value::as_str) {
            Some("bootstrap") => {}
            other => problems.push(format!(
                "{id}: Handler is {other:?}, expected `bootstrap` (the executable cargo-lambda produces)"
            )),
        }
        match function_prop(&template, function, "Runtime").and_then(Value::as_str) {
            Some(rt) if rt.starts_with("provided.") => {}
            other => problems.push(format!(
                "{id}: Runtime is {other:?}, expected an OS-only runtime such as `provided.al2023`"
            )),
        }

        let Some(code_uri) = props(function).and_then(|p| p.get("CodeUri")) else {
            problems.push(format!(
                "{id}: has no CodeUri (expected the crate directory, e.g. functions/<name>)"
            ));
            continue;
        };
        let Some(code_uri) = code_uri.as_str() else {
            problems.push(format!(
                "{id}: CodeUri `{}` is not a plain path to the crate directory",
                describe(code_uri)
            ));
            continue;
        };
        let rel = match normalise_rel(code_uri) {
            Ok(rel) => rel,
            Err(e) => {
                problems.push(format!("{id}: CodeUri {e}"));
                continue;
            }
        };
        let dir = root.join(&rel);
        if !dir.is_dir() {
            problems.push(format!(
                "{id}: CodeUri `{code_uri}` is not a directory in the repository"
            ));
            continue;
        }
        if !dir.join("Cargo.toml").is_file() {
            problems.push(format!("{id}: CodeUri `{code_uri}` has no Cargo.toml"));
            continue;
        }
        if !members.contains(&rel) {
            problems.push(format!(
                "{id}: crate `{}` (CodeUri `{code_uri}`) is not a member of the workspace in the root Cargo.toml",
                rel_display(&rel)
            ));
        }
        let manifest = match read_manifest(&dir) {
            Ok(m) => m,
            Err(e) => {
                problems.push(format!("{id}: {e}"));
                continue;
            }
        };
        let bins = binary_targets(&dir, &manifest);
        match bins.len() {
            0 => problems.push(format!(
                "{id}: crate `{}` has no binary target (no src/main.rs, no src/bin/*, no [[bin]]), so cargo-lambda has nothing to build",
                rel_display(&rel)
            )),
            1 => {}
            _ => {
                let chosen = function
                    .get("Metadata")
                    .and_then(|m| m.get("Binary"))
                    .and_then(Value::as_str);
                match chosen {
                    Some(b) if bins.iter().any(|n| n == b) => {}
                    Some(b) => problems.push(format!(
                        "{id}: Metadata.Binary `{b}` is not one of the binaries of `{}`: {bins:?}",
                        rel_display(&rel)
                    )),
                    None => problems.push(format!(
                        "{id}: crate `{}` has several binaries {bins:?}; set Metadata.Binary to the one to deploy",
                        rel_display(&rel)
                    )),
                }
            }
        }
    }
    fail_if_any("template.yaml functions vs. Cargo workspace", &problems);
}

#[test]
fn every_binary_crate_under_functions_is_deployed_exactly_once() {
    let template = load_template();
    let root = repo_root();

    // CodeUri (normalised) -> logical ids of the functions that use it.
    let mut by_dir: BTreeMap<PathBuf, Vec<String>> = BTreeMap::new();
    for (id, function) in resources_of_type(&template, FUNCTION_TYPE) {
        if let Some(rel) = props(function)
            .and_then(|p| p.get("CodeUri"))
            .and_then(Value::as_str)
            .and_then(|uri| normalise_rel(uri).ok())
        {
            by_dir.entry(rel).or_default().push(id);
        }
    }

    let functions_dir = root.join("functions");
    let entries = fs::read_dir(&functions_dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", functions_dir.display()));
    let mut crate_dirs: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("Cargo.toml").is_file())
        .collect();
    crate_dirs.sort();

    let mut problems = Vec::new();
    for dir in crate_dirs {
        let rel = dir.strip_prefix(&root).unwrap_or(&dir).to_path_buf();
        let manifest = match read_manifest(&dir) {
            Ok(m) => m,
            Err(e) => {
                problems.push(e);
                continue;
            }
        };
        if binary_targets(&dir, &manifest).is_empty() {
            continue; // a library crate: nothing to deploy
        }
        let users = by_dir.get(&rel).cloned().unwrap_or_default();
        match users.len() {
            1 => {}
            0 => problems.push(format!(
                "binary crate `{}` is not deployed: no {FUNCTION_TYPE} in template.yaml has CodeUri `{}`",
                rel_display(&rel),
                rel_display(&rel)
            )),
            n => problems.push(format!(
                "binary crate `{}` is deployed by {n} functions {users:?}; expected exactly one",
                rel_display(&rel)
            )),
        }
    }
    fail_if_any(
        "binary crates under functions/ vs. template.yaml",
        &problems,
    );
}

#[test]
fn sqs_event_sources_report_batch_failures_and_fit_the_visibility_timeout() {
    let template = load_template();
    let mut problems = Vec::new();
    let mut sqs_events = 0;

    for (id, function) in resources_of_type(&template, FUNCTION_TYPE) {
        let timeout = match function_prop(&template, function, "Timeout") {
            None => Some(LAMBDA_DEFAULT_TIMEOUT_S),
            Some(v) => literal_u64(v),
        };
        let Some(events) = props(function)
            .and_then(|p| p.get("Events"))
            .and_then(Value::as_mapping)
        else {
            continue;
        };
        for (event_id, event) in events {
            if event.get("Type").and_then(Value::as_str) != Some("SQS") {
                continue;
            }
            sqs_events += 1;
            let event_id = event_id.as_str().unwrap_or("<non-string event id>");
            let where_ = format!("{id}.Events.{event_id}");
            let event_props = event.get("Properties");

            let response_types = event_props.and_then(|p| p.get("FunctionResponseTypes"));
            let reports_failures = response_types
                .and_then(Value::as_sequence)
                .is_some_and(|s| {
                    s.iter()
                        .any(|t| t.as_str() == Some("ReportBatchItemFailures"))
                });
            if !reports_failures {
                problems.push(format!(
                    "{where_}: FunctionResponseTypes is {}, expected [ReportBatchItemFailures] \
                     (otherwise a returned batchItemFailures list is ignored and the whole batch is retried)",
                    response_types.map_or("missing".to_owned(), |v| format!("`{}`", describe(v)))
                ));
            }

            let Some(queue_ref) = event_props.and_then(|p| p.get("Queue")) else {
                problems.push(format!("{where_}: has no Queue property"));
                continue;
            };
            let queue_id = match get_att_arn_target(queue_ref) {
                Ok(q) => q,
                Err(e) => {
                    problems.push(format!("{where_}: Queue: {e}"));
                    continue;
                }
            };
            let Some(queue) = resource(&template, &queue_id) else {
                problems.push(format!(
                    "{where_}: Queue refers to `{queue_id}`, which is not a resource in template.yaml"
                ));
                continue;
            };
            let queue_type = queue.get("Type").and_then(Value::as_str);
            if queue_type != Some(QUEUE_TYPE) {
                problems.push(format!(
                    "{where_}: Queue refers to `{queue_id}` of type {queue_type:?}, expected {QUEUE_TYPE}"
                ));
                continue;
            }
            let visibility = match props(queue).and_then(|p| p.get("VisibilityTimeout")) {
                None => Some(SQS_DEFAULT_VISIBILITY_S),
                Some(v) => literal_u64(v),
            };
            match (visibility, timeout) {
                (Some(vis), Some(t)) if vis >= t => {}
                (Some(vis), Some(t)) => problems.push(format!(
                    "queue `{queue_id}` has VisibilityTimeout {vis}s, less than the {t}s Timeout of its consumer `{id}` \
                     (event {event_id}); CloudFormation rejects such an event source mapping"
                )),
                (None, _) => problems.push(format!(
                    "queue `{queue_id}`: VisibilityTimeout is not a literal number, so it cannot be compared with `{id}`'s Timeout"
                )),
                (_, None) => problems.push(format!(
                    "{id}: Timeout is not a literal number, so it cannot be compared with queue `{queue_id}`'s VisibilityTimeout"
                )),
            }
        }
    }

    assert!(
        sqs_events > 0,
        "template.yaml has no SQS event sources at all; expected the queue consumers (status-apply, order-push, catalog-sync)"
    );
    fail_if_any("SQS event sources in template.yaml", &problems);
}

#[test]
fn http_api_access_logs_never_record_the_request_path() {
    // The webhook token is a path segment; only the route template may be logged.
    let template = load_template();
    let apis = resources_of_type(&template, "AWS::Serverless::HttpApi");
    assert!(
        !apis.is_empty(),
        "template.yaml declares no AWS::Serverless::HttpApi"
    );
    let mut problems = Vec::new();
    for (id, api) in apis {
        let Some(format) = props(api)
            .and_then(|p| p.get("AccessLogSettings"))
            .and_then(|a| a.get("Format"))
        else {
            problems.push(format!("{id}: has no AccessLogSettings.Format"));
            continue;
        };
        let format = describe(format);
        for leaky in [
            "$context.path",
            "$context.rawPath",
            "$context.rawQueryString",
        ] {
            if format.contains(leaky) {
                problems.push(format!(
                    "{id}: AccessLogSettings.Format logs `{leaky}`, which contains the webhook token; log `$context.routeKey` instead"
                ));
            }
        }
        if !format.contains("$context.routeKey") {
            problems.push(format!(
                "{id}: AccessLogSettings.Format does not log `$context.routeKey`"
            ));
        }
    }
    fail_if_any("HTTP API access logging", &problems);
}

// ------------------------------------------------------------------ self-checks of the helpers

#[test]
fn manifest_reader_understands_the_forms_used_here() {
    let m = parse_manifest(
        r#"
[package]
name = "demo" # trailing comment
autobins = false

[[bin]]
name = "first"
path = "src/first.rs"

[[bin]]
name = 'second'

[workspace]
members = [
    "functions/a", # one
    "shared/b",
]
"#,
    );
    assert_eq!(m.bins.len(), 2);
    assert_eq!(quoted_strings(&m.bins[1]["name"]), vec!["second"]);
    assert_eq!(quoted_strings(&m.tables["package"]["name"]), vec!["demo"]);
    assert_eq!(m.tables["package"]["autobins"], "false");
    assert_eq!(
        quoted_strings(&m.tables["workspace"]["members"]),
        vec!["functions/a", "shared/b"]
    );
}

#[test]
fn get_att_forms_are_resolved() {
    let short: Value = serde_yaml::from_str("!GetAtt Q.Arn").unwrap();
    let list: Value = serde_yaml::from_str("!GetAtt [Q, Arn]").unwrap();
    let long: Value = serde_yaml::from_str("{'Fn::GetAtt': [Q, Arn]}").unwrap();
    for v in [&short, &list, &long] {
        assert_eq!(get_att_arn_target(v).as_deref(), Ok("Q"));
    }
    let url: Value = serde_yaml::from_str("!Ref Q").unwrap();
    assert!(get_att_arn_target(&url).is_err());
    let name: Value = serde_yaml::from_str("!GetAtt Q.QueueName").unwrap();
    assert!(get_att_arn_target(&name).is_err());
}

// ------------------------------------------------------------------ least privilege

/// `!Ref X` and `!GetAtt X.Attr` targets anywhere inside `value`.
fn refs_in(value: &Value, out: &mut std::collections::BTreeSet<String>) {
    match value {
        Value::Tagged(t) if t.tag == "Ref" => {
            if let Some(s) = t.value.as_str() {
                out.insert(s.to_owned());
            }
        }
        Value::Tagged(t) if t.tag == "GetAtt" => match &t.value {
            Value::String(s) => {
                out.insert(s.split('.').next().unwrap_or_default().to_owned());
            }
            Value::Sequence(seq) => {
                if let Some(s) = seq.first().and_then(Value::as_str) {
                    out.insert(s.to_owned());
                }
            }
            other => refs_in(other, out),
        },
        Value::Tagged(t) => refs_in(&t.value, out),
        Value::Mapping(m) => m.values().for_each(|v| refs_in(v, out)),
        Value::Sequence(s) => s.iter().for_each(|v| refs_in(v, out)),
        _ => {}
    }
}

fn refs(value: &Value) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    refs_in(value, &mut out);
    out
}

/// Every string inside `value` (tag contents included), e.g. `!Sub` ARN patterns.
fn strings_in(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Tagged(t) => strings_in(&t.value, out),
        Value::Mapping(m) => m.values().for_each(|v| strings_in(v, out)),
        Value::Sequence(s) => s.iter().for_each(|v| strings_in(v, out)),
        _ => {}
    }
}

fn policies(function: &Value) -> Vec<&Value> {
    props(function)
        .and_then(|p| p.get("Policies"))
        .and_then(Value::as_sequence)
        .map(|s| s.iter().collect())
        .unwrap_or_default()
}

/// The hand-written statements of a function's policies.
fn statements(function: &Value) -> Vec<&Value> {
    policies(function)
        .into_iter()
        .filter_map(|p| p.get("Statement"))
        .flat_map(|s| match s {
            Value::Sequence(seq) => seq.iter().collect::<Vec<_>>(),
            other => vec![other],
        })
        .collect()
}

fn list_of(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Sequence(seq)) => seq
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

/// A function's environment variables, `Globals.Function` first, the function's own over them.
fn environment(template: &Value, function: &Value) -> BTreeMap<String, Value> {
    let mut env = BTreeMap::new();
    let vars = |v: Option<&Value>| {
        v.and_then(|e| e.get("Variables"))
            .and_then(Value::as_mapping)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), v.clone())))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    env.extend(vars(
        template
            .get("Globals")
            .and_then(|g| g.get("Function"))
            .and_then(|f| f.get("Environment")),
    ));
    env.extend(vars(props(function).and_then(|p| p.get("Environment"))));
    env
}

const ADMIN_TOKEN_SECRET: &str = "AdminTokenSecret";
const SHOP_TOKEN_SECRET: &str = "ShopApiTokenSecret";

/// The internet-facing webhook function: a hand-written policy that reads a connection and
/// bumps its counters (and records stock signals and their flush window), nothing more — no
/// CRUD template, no Scan/Query/Put/Delete, no other partition or attribute, no platform
/// secret, no KeyCRM key.
#[test]
fn the_webhook_function_has_a_hand_written_least_privilege_policy() {
    let template = load_template();
    let f = resource(&template, "WebhookFunction").expect("WebhookFunction");
    let mut problems = Vec::new();
    for p in policies(f) {
        let Some(m) = p.as_mapping() else {
            problems.push(format!("policy `{}` is a managed policy name", describe(p)));
            continue;
        };
        for (k, v) in m {
            match k.as_str().unwrap_or_default() {
                "Statement" => {}
                // Status jobs, and (realtime stock) one delayed flush per window.
                "SQSSendMessagePolicy" => {
                    let r = refs(v);
                    if r != ["StatusUpdatesQueue".to_owned()].into()
                        && r != ["StockFlushQueue".to_owned()].into()
                    {
                        problems.push(format!("sends to `{}`", describe(v)));
                    }
                }
                // Another secret (not a platform secret) may be read, e.g. a webhook-only key.
                "AWSSecretsManagerGetSecretValuePolicy" => {
                    let r = refs(v);
                    if r.contains(ADMIN_TOKEN_SECRET) || r.contains(SHOP_TOKEN_SECRET) {
                        problems.push(format!("reads a platform secret: `{}`", describe(v)));
                    }
                }
                other => problems.push(format!(
                    "SAM policy template `{other}` grants more than the webhook needs; write the statement by hand"
                )),
            }
        }
    }
    let mut saw = (false, false);
    for st in statements(f) {
        let actions = list_of(st.get("Action"));
        let mut texts = Vec::new();
        strings_in(st.get("Resource").unwrap_or(&Value::Null), &mut texts);
        if texts.iter().any(|t| t.contains("/keycrm/")) {
            problems.push("a statement on the KeyCRM keys".into());
        }
        for a in &actions {
            if a.contains('*') {
                problems.push(format!("wildcard action `{a}`"));
            }
            if a.starts_with("dynamodb:") && a != "dynamodb:GetItem" && a != "dynamodb:UpdateItem" {
                problems.push(format!("`{a}` is not something the webhook does"));
            }
        }
        if !actions.iter().any(|a| a.starts_with("dynamodb:")) {
            continue;
        }
        if refs(st.get("Resource").unwrap_or(&Value::Null)) != ["ConnectorTable".to_owned()].into()
        {
            problems.push(format!("DynamoDB statement on `{}`", describe(st)));
        }
        let cond = st.get("Condition");
        let leading = cond
            .and_then(|c| c.get("ForAllValues:StringLike"))
            .and_then(|c| c.get("dynamodb:LeadingKeys"));
        let keys = list_of(leading);
        if keys.is_empty() || keys.iter().any(|k| !k.starts_with("CONN#")) {
            problems.push(format!(
                "{actions:?} is not limited to the CONN# partitions (dynamodb:LeadingKeys): {}",
                describe(st)
            ));
        }
        if actions.iter().any(|a| a == "dynamodb:GetItem") {
            saw.0 = true;
        }
        if actions.iter().any(|a| a == "dynamodb:UpdateItem") {
            saw.1 = true;
            let attrs = list_of(
                cond.and_then(|c| c.get("ForAllValues:StringEquals"))
                    .and_then(|c| c.get("dynamodb:Attributes")),
            );
            // The ignored-webhooks counter; and for the stock URL (realtime stock, issue 13)
            // the stock signals counter, the pending set (`ids`) and the flush window.
            let allowed = [
                "pk",
                "sk",
                "webhooks_ignored",
                "stock_signals",
                "ids",
                "w",
                "until",
                "holder",
            ];
            if attrs.is_empty() || attrs.iter().any(|a| !allowed.contains(&a.as_str())) {
                problems.push(format!(
                    "UpdateItem must be limited (dynamodb:Attributes) to {allowed:?}, found {attrs:?}"
                ));
            }
        }
    }
    if saw != (true, true) {
        problems.push(
            "the connection read (GetItem) and the counter (UpdateItem) must both be granted"
                .into(),
        );
    }
    fail_if_any("WebhookFunction policy", &problems);
}

/// The signing key of admin tokens and the shop API token live in separate secrets, and each
/// function can read (and is told about) only the one it uses.
#[test]
fn each_function_reads_only_the_platform_secret_it_uses() {
    let template = load_template();
    let mut problems = Vec::new();
    for id in [ADMIN_TOKEN_SECRET, SHOP_TOKEN_SECRET] {
        match resource(&template, id)
            .and_then(|r| r.get("Type"))
            .and_then(Value::as_str)
        {
            Some("AWS::SecretsManager::Secret") => {}
            other => problems.push(format!("{id} is not a secret: {other:?}")),
        }
    }
    if resource(&template, "PlatformSecret").is_some() {
        problems.push("the combined PlatformSecret is back: split it".into());
    }
    let expected: BTreeMap<&str, Vec<&str>> = [
        (
            "AdminApiFunction",
            vec![ADMIN_TOKEN_SECRET, SHOP_TOKEN_SECRET],
        ),
        ("CatalogSyncFunction", vec![SHOP_TOKEN_SECRET]),
        ("StatusApplyFunction", vec![SHOP_TOKEN_SECRET]),
        ("StockApplyFunction", vec![SHOP_TOKEN_SECRET]),
        ("OrderPushFunction", vec![]),
        ("WebhookFunction", vec![]),
    ]
    .into();
    let env_of = [
        ("ADMIN_TOKEN_SECRET_ARN", ADMIN_TOKEN_SECRET),
        ("SHOP_API_TOKEN_SECRET_ARN", SHOP_TOKEN_SECRET),
    ];
    for (id, f) in resources_of_type(&template, FUNCTION_TYPE) {
        let mut granted = std::collections::BTreeSet::new();
        for p in policies(f) {
            refs_in(p, &mut granted);
        }
        granted.retain(|r| r == ADMIN_TOKEN_SECRET || r == SHOP_TOKEN_SECRET);
        let env = environment(&template, f);
        if env.contains_key("PLATFORM_SECRET_ARN") {
            problems.push(format!(
                "{id}: PLATFORM_SECRET_ARN (the old combined secret)"
            ));
        }
        let mut told = std::collections::BTreeSet::new();
        for (var, secret) in env_of {
            if let Some(v) = env.get(var) {
                if refs(v) != [secret.to_owned()].into() {
                    problems.push(format!(
                        "{id}: {var} is `{}`, not !Ref {secret}",
                        describe(v)
                    ));
                }
                told.insert(secret.to_owned());
            }
        }
        match expected.get(id.as_str()) {
            Some(want) => {
                let want: std::collections::BTreeSet<String> =
                    want.iter().map(|s| s.to_string()).collect();
                if granted != want {
                    problems.push(format!("{id} can read {granted:?}; it uses {want:?}"));
                }
                if told != want {
                    problems.push(format!("{id} is given {told:?}; it uses {want:?}"));
                }
            }
            None if granted.contains(ADMIN_TOKEN_SECRET) => problems.push(format!(
                "{id} can read the admin-token signing key (only the admin API may)"
            )),
            None => {}
        }
    }
    fail_if_any("platform secrets", &problems);
}

/// KeyCRM keys: only the admin API creates or changes them; deleting is also the cleanup's
/// (catalog-sync) last step after a disconnect; the webhook never touches them.
#[test]
fn only_the_admin_api_writes_keycrm_keys_and_only_it_and_the_cleanup_delete_them() {
    let template = load_template();
    let mut problems = Vec::new();
    for (id, f) in resources_of_type(&template, FUNCTION_TYPE) {
        for st in statements(f) {
            let mut texts = Vec::new();
            strings_in(st.get("Resource").unwrap_or(&Value::Null), &mut texts);
            if !texts.iter().any(|t| t.contains("/keycrm/")) {
                continue;
            }
            for a in list_of(st.get("Action")) {
                let ok = match a.as_str() {
                    // status-apply reads a key for one thing: reading a KeyCRM order back
                    // before adopting it into the ledger. The internet-facing webhook never.
                    "secretsmanager:GetSecretValue" | "secretsmanager:DescribeSecret" => {
                        id != "WebhookFunction"
                    }
                    "secretsmanager:DeleteSecret" => {
                        id == "AdminApiFunction" || id == "CatalogSyncFunction"
                    }
                    _ => id == "AdminApiFunction",
                };
                if !ok {
                    problems.push(format!("{id} may `{a}` KeyCRM keys"));
                }
            }
        }
    }
    fail_if_any("KeyCRM key permissions", &problems);
}

/// Every HTTP route has its own throttle, and the public webhook route's budget is its own:
/// a flood on it cannot use up the admin API's (one stage-wide throttle would).
#[test]
fn every_http_route_has_its_own_throttle_and_the_webhook_route_is_apart() {
    let template = load_template();
    let api = resource(&template, "HttpApi").expect("HttpApi");
    let settings = props(api)
        .and_then(|p| p.get("RouteSettings"))
        .and_then(Value::as_mapping)
        .expect("HttpApi has RouteSettings");
    let mut problems = Vec::new();
    let mut routes = Vec::new();
    for (id, f) in resources_of_type(&template, FUNCTION_TYPE) {
        let Some(events) = props(f)
            .and_then(|p| p.get("Events"))
            .and_then(Value::as_mapping)
        else {
            continue;
        };
        for ev in events.values() {
            if ev.get("Type").and_then(Value::as_str) != Some("HttpApi") {
                continue;
            }
            let p = ev.get("Properties");
            let method = p
                .and_then(|p| p.get("Method"))
                .and_then(Value::as_str)
                .unwrap_or("ANY")
                .to_ascii_uppercase();
            let path = p
                .and_then(|p| p.get("Path"))
                .and_then(Value::as_str)
                .unwrap_or("");
            routes.push((id.clone(), format!("{method} {path}")));
        }
    }
    let limit = |route: &str, key: &str| -> Option<String> {
        let v = settings.get(route)?.get(key)?;
        match v {
            Value::Tagged(t) if t.tag == "Ref" => {
                let name = t.value.as_str()?;
                let param = template.get("Parameters")?.get(name)?;
                (param.get("Type").and_then(Value::as_str) == Some("Number"))
                    .then(|| format!("!Ref {name}"))
            }
            other => literal_u64(other).filter(|n| *n > 0).map(|n| n.to_string()),
        }
    };
    for (id, route) in &routes {
        for key in ["ThrottlingRateLimit", "ThrottlingBurstLimit"] {
            if limit(route, key).is_none() {
                problems.push(format!("{id}: route `{route}` has no {key} of its own"));
            }
        }
    }
    for key in settings.keys().filter_map(Value::as_str) {
        if !routes.iter().any(|(_, r)| r == key) {
            problems.push(format!("RouteSettings names `{key}`, which is no route"));
        }
    }
    let webhook: Vec<&String> = routes
        .iter()
        .filter(|(id, _)| id == "WebhookFunction")
        .map(|(_, r)| r)
        .collect();
    assert!(!webhook.is_empty(), "the webhook route");
    for w in webhook {
        for (id, other) in routes.iter().filter(|(id, _)| id != "WebhookFunction") {
            if limit(w, "ThrottlingRateLimit") == limit(other, "ThrottlingRateLimit")
                && limit(w, "ThrottlingRateLimit").is_some_and(|l| l.starts_with("!Ref"))
            {
                problems.push(format!(
                    "the webhook route shares its rate parameter with {id}'s `{other}`"
                ));
            }
        }
    }
    fail_if_any("HTTP API throttles", &problems);
}

// ------------------------------------------------------------------ many shops (issue 14)

/// A template parameter's `Default`, `MinValue` and `MaxValue`.
fn parameter_numbers(template: &Value, name: &str) -> Option<(u64, u64, u64)> {
    let p = template.get("Parameters")?.get(name)?;
    Some((
        literal_u64(p.get("Default")?)?,
        literal_u64(p.get("MinValue")?)?,
        literal_u64(p.get("MaxValue")?)?,
    ))
}

/// A number that is a literal or `!Ref` to a numeric parameter: its value (the default) and,
/// for a parameter, the range a deployer may choose from.
fn number_or_parameter(template: &Value, v: &Value) -> Result<(u64, u64, u64), String> {
    if let Some(n) = literal_u64(v) {
        return Ok((n, n, n));
    }
    let names = refs(v);
    let [name] = names.iter().collect::<Vec<_>>()[..] else {
        return Err(format!(
            "`{}` is neither a number nor one !Ref",
            describe(v)
        ));
    };
    parameter_numbers(template, name)
        .ok_or_else(|| format!("parameter {name} lacks a numeric Default/MinValue/MaxValue"))
}

/// Every SQS event source caps the concurrency it may drive (no queue can take the account's
/// whole Lambda concurrency), within SQS's 2..=1000; the webhook and the admin API keep
/// reserved capacity a sync storm cannot take; and the defaults fit the default account limit
/// with AWS's 100 unreserved kept.
#[test]
fn every_queue_consumer_is_capped_and_the_http_functions_keep_reserved_capacity() {
    let template = load_template();
    let mut problems = Vec::new();
    let mut capped = 0u64;
    let mut sources = 0;
    let mut consumers = BTreeSet::new();
    for (id, function) in resources_of_type(&template, FUNCTION_TYPE) {
        let Some(events) = props(function)
            .and_then(|p| p.get("Events"))
            .and_then(Value::as_mapping)
        else {
            continue;
        };
        for (event_id, event) in events {
            if event.get("Type").and_then(Value::as_str) != Some("SQS") {
                continue;
            }
            sources += 1;
            consumers.insert(id.clone());
            let where_ = format!("{id}.Events.{}", event_id.as_str().unwrap_or("?"));
            let Some(max) = event
                .get("Properties")
                .and_then(|p| p.get("ScalingConfig"))
                .and_then(|s| s.get("MaximumConcurrency"))
            else {
                problems.push(format!("{where_}: no ScalingConfig.MaximumConcurrency"));
                continue;
            };
            match number_or_parameter(&template, max) {
                Ok((default, min, max)) if min >= 2 && max <= 1000 && (min..=max).contains(&default) => {
                    capped += default
                }
                Ok(range) => problems.push(format!(
                    "{where_}: MaximumConcurrency (default, min, max) {range:?} outside SQS's 2..=1000"
                )),
                Err(e) => problems.push(format!("{where_}: MaximumConcurrency {e}")),
            }
        }
    }
    assert!(sources >= 4, "expected the four queue consumers");
    // Each queue consumer is checked above; a consumer missing here would go unchecked.
    for id in [
        "StatusApplyFunction",
        "StockApplyFunction",
        "OrderPushFunction",
        "CatalogSyncFunction",
    ] {
        if !consumers.contains(id) {
            problems.push(format!("{id} has no SQS event source"));
        }
    }
    let mut reserved = 0u64;
    for id in ["WebhookFunction", "AdminApiFunction"] {
        let Some(f) = resource(&template, id) else {
            problems.push(format!("{id} is missing"));
            continue;
        };
        let Some(rce) = props(f).and_then(|p| p.get("ReservedConcurrentExecutions")) else {
            problems.push(format!("{id}: no ReservedConcurrentExecutions"));
            continue;
        };
        // `!If [Condition, !Ref Parameter, !Ref AWS::NoValue]` (0 = no reservation) or a number.
        let params: Vec<String> = refs(rce)
            .into_iter()
            .filter(|r| r != "AWS::NoValue")
            .collect();
        match params.as_slice() {
            [p] => match parameter_numbers(&template, p) {
                Some((default, _, _)) if default > 0 => reserved += default,
                other => problems.push(format!(
                    "{id}: reservation parameter {p} must default above 0, got {other:?}"
                )),
            },
            _ => match literal_u64(rce) {
                Some(n) if n > 0 => reserved += n,
                _ => problems.push(format!(
                    "{id}: ReservedConcurrentExecutions `{}` names no reservation",
                    describe(rce)
                )),
            },
        }
    }
    if capped + reserved > 900 {
        problems.push(format!(
            "the defaults ({capped} for queues + {reserved} reserved) do not fit an account's default 1000 with 100 unreserved"
        ));
    }
    fail_if_any("concurrency", &problems);
}

/// Scheduled syncs are spread: one tick at the rate `mapping::schedule::Spread` assumes, in
/// UTC, carrying its scheduled time; no schedule starts every shop at once any more. The
/// sync consumer takes the batches catalog-sync runs side by side, and may continue its own
/// runs (Lambda -> SQS -> Lambda by design).
#[test]
fn scheduled_syncs_start_from_a_spread_tick_and_continue_their_own_runs() {
    let template = load_template();
    let mut problems = Vec::new();
    let f = resource(&template, "CatalogSyncFunction").expect("CatalogSyncFunction");
    let events = props(f)
        .and_then(|p| p.get("Events"))
        .and_then(Value::as_mapping)
        .expect("catalog-sync events");
    let spread = mapping::schedule::Spread::default();
    let mut ticks = 0;
    let mut resumes = 0;
    for (event_id, event) in events {
        let where_ = format!(
            "CatalogSyncFunction.Events.{}",
            event_id.as_str().unwrap_or("?")
        );
        let p = event.get("Properties");
        match event.get("Type").and_then(Value::as_str) {
            Some("ScheduleV2") => {
                let input: serde_json::Value = p
                    .and_then(|p| p.get("Input"))
                    .and_then(Value::as_str)
                    .and_then(|s| serde_json::from_str(s).ok())
                    .unwrap_or_default();
                let parsed: Result<catalog_sync::ScheduleInput, _> =
                    serde_json::from_value(input.clone());
                let expr = p
                    .and_then(|p| p.get("ScheduleExpression"))
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                match parsed.map(|i| i.kind) {
                    Ok(catalog_sync::ScheduleKind::Tick) => {
                        ticks += 1;
                        let want = format!("cron(0/{} * * * ? *)", spread.tick_min);
                        if expr != want {
                            problems.push(format!("{where_}: `{expr}`, the spread needs `{want}`"));
                        }
                        let tz = p
                            .and_then(|p| p.get("ScheduleExpressionTimezone"))
                            .and_then(Value::as_str);
                        if tz.is_some_and(|t| t != "UTC") {
                            problems.push(format!("{where_}: the spread is in UTC, not {tz:?}"));
                        }
                        if input.get("at").and_then(|v| v.as_str())
                            != Some("<aws.scheduler.scheduled-time>")
                        {
                            problems.push(format!(
                                "{where_}: the input must carry the scheduled time: {input}"
                            ));
                        }
                    }
                    Ok(catalog_sync::ScheduleKind::Resume) => resumes += 1,
                    Ok(kind) => problems.push(format!(
                        "{where_}: {kind:?} starts every shop at once; the tick spreads them"
                    )),
                    Err(e) => problems.push(format!("{where_}: unreadable input {input}: {e}")),
                }
            }
            Some("SQS") => {
                let batch = p.and_then(|p| p.get("BatchSize")).and_then(literal_u64);
                let side_by_side = catalog_sync::Config::lambda().jobs_at_once as u64;
                if batch != Some(side_by_side) {
                    problems.push(format!(
                        "{where_}: BatchSize {batch:?}; catalog-sync runs {side_by_side} jobs side by side"
                    ));
                }
            }
            _ => {}
        }
    }
    if (ticks, resumes) != (1, 1) {
        problems.push(format!(
            "expected one spread tick and one resume schedule, found {ticks} and {resumes}"
        ));
    }
    if props(f)
        .and_then(|p| p.get("RecursiveLoop"))
        .and_then(Value::as_str)
        != Some("Allow")
    {
        problems.push(
            "CatalogSyncFunction must allow its own continuations (RecursiveLoop: Allow)".into(),
        );
    }
    fail_if_any("spread schedules", &problems);
}

/// KeyCRM keys are envelope-encrypted under one KMS key: only the admin API and catalog-sync
/// (which moves old keys) may make data keys, the functions that call KeyCRM may unwrap them,
/// always only for this purpose; the webhook may do neither; nobody creates Secrets Manager
/// secrets for keys any more.
#[test]
fn the_table_index_projects_exactly_what_the_store_reads_from_it() {
    use store::dynamo::{GSI1, GSI1_PK, GSI1_PROJECTED, GSI1_SK};
    let template = load_template();
    let table = resource(&template, "ConnectorTable").expect("ConnectorTable");
    let indexes = props(table)
        .and_then(|p| p.get("GlobalSecondaryIndexes"))
        .and_then(Value::as_sequence)
        .expect("ConnectorTable has GlobalSecondaryIndexes");
    let names: Vec<&str> = indexes
        .iter()
        .filter_map(|i| i.get("IndexName").and_then(Value::as_str))
        .collect();
    assert_eq!(names, vec![GSI1], "the store queries one index");
    let index = &indexes[0];
    let keys: Vec<(String, String)> = index
        .get("KeySchema")
        .and_then(Value::as_sequence)
        .map(|ks| {
            ks.iter()
                .map(|k| {
                    let field =
                        |f: &str| k.get(f).and_then(Value::as_str).unwrap_or("").to_string();
                    (field("AttributeName"), field("KeyType"))
                })
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        keys,
        vec![
            (GSI1_PK.to_string(), "HASH".to_string()),
            (GSI1_SK.to_string(), "RANGE".to_string())
        ]
    );
    let projection = index.get("Projection").expect("gsi1 has a Projection");
    assert_eq!(
        projection.get("ProjectionType").and_then(Value::as_str),
        Some("INCLUDE"),
        "gsi1 holds only what its readers use (a whole copy of every ledger entry doubled \
         the cost of each status change)"
    );
    let mut projected = list_of(projection.get("NonKeyAttributes"));
    projected.sort();
    let mut expected: Vec<String> = GSI1_PROJECTED.iter().map(|a| a.to_string()).collect();
    expected.sort();
    assert_eq!(
        projected, expected,
        "template.yaml and store::dynamo::GSI1_PROJECTED (what DynamoTable::create builds for \
         the tests) must name the same attributes"
    );
}

#[test]
fn keycrm_keys_are_sealed_under_one_kms_key_with_least_privilege() {
    let template = load_template();
    let mut problems = Vec::new();
    let key = resource(&template, "KeycrmKeysKey").expect("KeycrmKeysKey");
    if key.get("Type").and_then(Value::as_str) != Some("AWS::KMS::Key") {
        problems.push("KeycrmKeysKey is not an AWS::KMS::Key".into());
    }
    if key.get("DeletionPolicy").and_then(Value::as_str) != Some("Retain") {
        problems.push("KeycrmKeysKey must be retained: the sealed keys need it".into());
    }
    if props(key)
        .and_then(|p| p.get("EnableKeyRotation"))
        .and_then(Value::as_bool)
        != Some(true)
    {
        problems.push("KeycrmKeysKey must rotate".into());
    }
    let expected: BTreeMap<&str, Vec<&str>> = [
        (
            "AdminApiFunction",
            vec!["kms:Decrypt", "kms:GenerateDataKey"],
        ),
        (
            "CatalogSyncFunction",
            vec!["kms:Decrypt", "kms:GenerateDataKey"],
        ),
        ("OrderPushFunction", vec!["kms:Decrypt"]),
        ("StatusApplyFunction", vec!["kms:Decrypt"]),
        ("StockApplyFunction", vec!["kms:Decrypt"]),
        ("WebhookFunction", vec![]),
    ]
    .into();
    for (id, f) in resources_of_type(&template, FUNCTION_TYPE) {
        let mut granted = std::collections::BTreeSet::new();
        for st in statements(f) {
            let actions = list_of(st.get("Action"));
            for a in &actions {
                if matches!(
                    a.as_str(),
                    "secretsmanager:CreateSecret" | "secretsmanager:PutSecretValue"
                ) {
                    problems.push(format!(
                        "{id} may `{a}`: keys are not kept in Secrets Manager any more"
                    ));
                }
            }
            let kms: Vec<&String> = actions.iter().filter(|a| a.starts_with("kms:")).collect();
            if kms.is_empty() {
                continue;
            }
            let on_key = st
                .get("Resource")
                .map(|r| get_att_arn_target(r).as_deref() == Ok("KeycrmKeysKey"))
                .unwrap_or(false);
            if !on_key {
                problems.push(format!(
                    "{id}: KMS actions {kms:?} not limited to KeycrmKeysKey"
                ));
            }
            let purpose = st
                .get("Condition")
                .and_then(|c| c.get("StringEquals"))
                .and_then(|c| c.get("kms:EncryptionContext:purpose"))
                .and_then(Value::as_str);
            if purpose != Some(store::secrets::kms::PURPOSE) {
                problems.push(format!(
                    "{id}: KMS actions {kms:?} without the condition purpose = {}",
                    store::secrets::kms::PURPOSE
                ));
            }
            granted.extend(kms.into_iter().cloned());
        }
        let want: std::collections::BTreeSet<String> = expected
            .get(id.as_str())
            .map(|v| v.iter().map(|s| s.to_string()).collect())
            .unwrap_or_default();
        if granted != want {
            problems.push(format!("{id} may {granted:?}; it needs {want:?}"));
        }
        let env = environment(&template, f);
        let told = env.get(runtime::key_store::KMS_KEY_VAR);
        match (want.is_empty(), told) {
            (true, None) => {}
            (false, Some(v)) if get_att_arn_target(v).as_deref() == Ok("KeycrmKeysKey") => {}
            (_, other) => problems.push(format!(
                "{id}: {} is {:?}",
                runtime::key_store::KMS_KEY_VAR,
                other.map(describe)
            )),
        }
    }
    fail_if_any("KeyCRM key encryption", &problems);
}

// ------------------------------------------------------------------ metrics, dashboard, alarms

use runtime::metrics::catalog::{self as metrics_catalog, Function as MetricsFunction};
use std::collections::BTreeSet;

/// A `!Sub` string (either `!Sub "text"` or `!Sub ["text", {...}]`).
fn sub_text(value: &Value) -> Option<&str> {
    match value {
        Value::Tagged(t) if t.tag == "Sub" => match &t.value {
            Value::String(s) => Some(s),
            Value::Sequence(seq) => seq.first().and_then(Value::as_str),
            _ => None,
        },
        Value::String(s) => Some(s),
        _ => None,
    }
}

/// The dashboard body as JSON: every `${...}` placeholder replaced by `0` (quoted ones stay
/// strings, bare ones become the numbers CloudFormation substitutes).
fn dashboard_body(template: &Value) -> serde_json::Value {
    let dashboards = resources_of_type(template, "AWS::CloudWatch::Dashboard");
    assert_eq!(dashboards.len(), 1, "expected one operations dashboard");
    let body = props(dashboards[0].1)
        .and_then(|p| p.get("DashboardBody"))
        .and_then(sub_text)
        .expect("DashboardBody is a !Sub string");
    let mut out = String::new();
    let mut rest = body;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find('}')
            .expect("an unclosed ${ in the dashboard body");
        out.push('0');
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("the dashboard body is not JSON: {e}"))
}

/// One use of a ShopKeycrm metric: its name, the dimension keys it is asked for with, and
/// the `function` value (when one is named).
#[derive(Debug)]
struct MetricUse {
    name: String,
    dims: BTreeSet<String>,
    function: Option<String>,
    place: String,
}

/// `SEARCH('{ShopKeycrm,function,reason} MetricName="X"', ...)`: the name and schema keys.
fn parse_search(expr: &str) -> Option<(String, BTreeSet<String>)> {
    let schema_start = expr.find('{')?;
    let schema_end = expr[schema_start..].find('}')? + schema_start;
    let mut parts = expr[schema_start + 1..schema_end].split(',').map(str::trim);
    if parts.next()? != metrics_catalog::NAMESPACE {
        return None;
    }
    let dims = parts.map(str::to_string).collect();
    let name_start = expr.find("MetricName=\"")? + "MetricName=\"".len();
    let name_end = expr[name_start..].find('"')? + name_start;
    Some((expr[name_start..name_end].to_string(), dims))
}

fn dashboard_uses(body: &serde_json::Value) -> (Vec<MetricUse>, Vec<String>) {
    let mut uses = Vec::new();
    let mut problems = Vec::new();
    for (i, w) in body["widgets"]
        .as_array()
        .expect("widgets")
        .iter()
        .enumerate()
    {
        let title = w["properties"]["title"].as_str().unwrap_or("(untitled)");
        let place = format!("dashboard widget {i} \"{title}\"");
        let Some(metrics) = w["properties"]["metrics"].as_array() else {
            continue;
        };
        for row in metrics {
            let Some(row) = row.as_array() else {
                problems.push(format!("{place}: a metrics row is not an array"));
                continue;
            };
            if let Some(expr) = row
                .first()
                .and_then(|o| o.get("expression"))
                .and_then(|e| e.as_str())
            {
                if expr.contains("SEARCH(") && expr.contains(metrics_catalog::NAMESPACE) {
                    match parse_search(expr) {
                        Some((name, dims)) => uses.push(MetricUse {
                            name,
                            dims,
                            function: None,
                            place: place.clone(),
                        }),
                        None => problems.push(format!("{place}: unreadable SEARCH `{expr}`")),
                    }
                }
                continue;
            }
            let strings: Vec<&str> = row.iter().filter_map(|v| v.as_str()).collect();
            if strings.contains(&".") {
                problems.push(format!(
                    "{place}: write metrics out in full, not with \".\" shorthand"
                ));
                continue;
            }
            if strings.first() != Some(&metrics_catalog::NAMESPACE) {
                continue;
            }
            let Some(name) = strings.get(1) else {
                problems.push(format!("{place}: a ShopKeycrm row without a metric name"));
                continue;
            };
            let pairs = &strings[2..];
            if !pairs.len().is_multiple_of(2) {
                problems.push(format!(
                    "{place}: {name}: dimensions are not name/value pairs"
                ));
                continue;
            }
            let mut dims = BTreeSet::new();
            let mut function = None;
            for kv in pairs.chunks(2) {
                dims.insert(kv[0].to_string());
                if kv[0] == "function" {
                    function = Some(kv[1].to_string());
                }
            }
            uses.push(MetricUse {
                name: name.to_string(),
                dims,
                function,
                place: place.clone(),
            });
        }
    }
    (uses, problems)
}

fn literal_str(v: &Value) -> Option<String> {
    v.as_str().map(str::to_string)
}

fn alarm_uses(template: &Value) -> Vec<MetricUse> {
    let mut uses = Vec::new();
    for (id, alarm) in resources_of_type(template, "AWS::CloudWatch::Alarm") {
        let p = props(alarm).expect("alarm properties");
        let mut stats: Vec<(Option<&Value>, Option<&Value>, Option<&Value>)> =
            vec![(p.get("Namespace"), p.get("MetricName"), p.get("Dimensions"))];
        for m in p
            .get("Metrics")
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
        {
            let metric = m.get("MetricStat").and_then(|s| s.get("Metric"));
            stats.push((
                metric.and_then(|x| x.get("Namespace")),
                metric.and_then(|x| x.get("MetricName")),
                metric.and_then(|x| x.get("Dimensions")),
            ));
        }
        for (ns, name, dims) in stats {
            if ns.and_then(literal_str).as_deref() != Some(metrics_catalog::NAMESPACE) {
                continue;
            }
            let mut set = BTreeSet::new();
            let mut function = None;
            for d in dims.and_then(Value::as_sequence).into_iter().flatten() {
                let k = d.get("Name").and_then(literal_str).unwrap_or_default();
                if k == "function" {
                    function = d.get("Value").and_then(literal_str);
                }
                set.insert(k);
            }
            uses.push(MetricUse {
                name: name.and_then(literal_str).unwrap_or_default(),
                dims: set,
                function,
                place: format!("alarm {id}"),
            });
        }
    }
    uses
}

#[test]
fn dashboard_and_alarms_use_exactly_the_metrics_the_code_emits() {
    let template = load_template();
    let body = dashboard_body(&template);
    let (mut uses, mut problems) = dashboard_uses(&body);
    let on_dashboard: BTreeSet<String> = uses.iter().map(|u| u.name.clone()).collect();
    uses.extend(alarm_uses(&template));
    let functions: BTreeSet<&str> = MetricsFunction::ALL.iter().map(|f| f.as_str()).collect();

    for u in &uses {
        let Some(m) = metrics_catalog::by_name(&u.name) else {
            problems.push(format!(
                "{}: ShopKeycrm metric `{}` is not emitted by the code (runtime::metrics::catalog)",
                u.place, u.name
            ));
            continue;
        };
        // CloudWatch matches dimensions exactly: the set asked for must be one published.
        let published = m
            .dimension_sets()
            .iter()
            .any(|set| set.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>() == u.dims);
        if !published {
            problems.push(format!(
                "{}: `{}` is asked for with dimensions {:?}, but it is published only under {:?}",
                u.place,
                u.name,
                u.dims,
                m.dimension_sets()
            ));
        }
        if let Some(f) = &u.function {
            if !functions.contains(f.as_str()) {
                problems.push(format!(
                    "{}: `{}` for function `{f}`, which emits no metrics (known: {functions:?})",
                    u.place, u.name
                ));
            }
        }
    }
    let docs = fs::read_to_string(repo_root().join("docs/operations.md")).unwrap_or_default();
    for m in metrics_catalog::ALL {
        if !docs.contains(&format!("`{}`", m.name)) {
            problems.push(format!(
                "metric `{}` is emitted but docs/operations.md does not explain it",
                m.name
            ));
        }
        if !on_dashboard.contains(m.name) {
            problems.push(format!(
                "metric `{}` is emitted but not on the dashboard ({})",
                m.name, m.help
            ));
        }
    }
    fail_if_any("ShopKeycrm metrics in template.yaml", &problems);
}

#[test]
fn every_alarm_says_what_to_do_and_has_a_runbook_section() {
    let template = load_template();
    let runbook = fs::read_to_string(repo_root().join("docs/operations.md"))
        .expect("docs/operations.md exists");
    let headings: BTreeSet<String> = runbook
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| l.trim_start_matches('#').trim().to_string())
        .collect();
    let mut problems = Vec::new();
    let alarms = resources_of_type(&template, "AWS::CloudWatch::Alarm");
    assert!(alarms.len() >= 13, "the alarms are missing");
    for (id, alarm) in alarms {
        let description = props(alarm)
            .and_then(|p| p.get("AlarmDescription"))
            .and_then(sub_text)
            .unwrap_or_default()
            .to_string();
        let anchor = format!("docs/operations.md#{}", id.to_lowercase());
        if !description.contains(&anchor) {
            problems.push(format!("{id}: its description does not point at {anchor}"));
        }
        if description.len() > 1024 {
            problems.push(format!(
                "{id}: description longer than CloudWatch's 1024 characters"
            ));
        }
        if !headings.contains(&id) {
            problems.push(format!(
                "{id}: docs/operations.md has no section `### {id}`"
            ));
        }
        let actions = props(alarm).and_then(|p| p.get("AlarmActions"));
        if actions.is_none() {
            problems.push(format!("{id}: no AlarmActions (the alarm topic)"));
        }
    }
    // The dashboard's alarm widget shows every alarm (the raw body, placeholders intact).
    let raw = resources_of_type(&template, "AWS::CloudWatch::Dashboard")
        .first()
        .and_then(|(_, d)| {
            props(d)?
                .get("DashboardBody")
                .and_then(sub_text)
                .map(str::to_string)
        })
        .unwrap_or_default();
    for (id, _) in resources_of_type(&template, "AWS::CloudWatch::Alarm") {
        if !raw.contains(&format!("${{{id}.Arn}}")) {
            problems.push(format!("{id}: not in the dashboard's alarm widget"));
        }
    }
    fail_if_any("alarms and their runbook", &problems);
}

#[test]
fn lambdas_log_filter_never_drops_the_metric_lines() {
    // EMF lines carry no level; Lambda files them as INFO. A filter above INFO drops them all.
    let template = load_template();
    let levels = template
        .get("Mappings")
        .and_then(|m| m.get("LogLevels"))
        .and_then(Value::as_mapping)
        .expect("Mappings.LogLevels");
    let mut problems = Vec::new();
    for (k, v) in levels {
        let lambda = v.get("Lambda").and_then(Value::as_str).unwrap_or_default();
        if !matches!(lambda, "TRACE" | "DEBUG" | "INFO") {
            problems.push(format!(
                "LogLevels.{}: Lambda level {lambda} would filter out the EMF metric lines",
                k.as_str().unwrap_or("?")
            ));
        }
    }
    let format = template
        .get("Globals")
        .and_then(|g| g.get("Function"))
        .and_then(|f| f.get("LoggingConfig"))
        .and_then(|l| l.get("LogFormat"))
        .and_then(Value::as_str);
    if format != Some("JSON") {
        problems.push(format!(
            "Globals.Function.LoggingConfig.LogFormat is {format:?}, expected JSON"
        ));
    }
    fail_if_any("log filtering", &problems);
}

#[test]
fn search_expressions_and_dashboard_parsing_work() {
    let (name, dims) = parse_search(
        "SEARCH('{ShopKeycrm,function,reason} MetricName=\"OrdersFailed\"', 'Sum', 300)",
    )
    .unwrap();
    assert_eq!(name, "OrdersFailed");
    assert_eq!(
        dims,
        ["function", "reason"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
    assert!(parse_search("SEARCH('{AWS/SQS,QueueName} MetricName=\"X\"', 'Sum', 300)").is_none());
    let body: serde_json::Value = serde_json::json!({"widgets": [{"properties": {"title": "t", "metrics": [
        ["ShopKeycrm", "OrdersPushed", "function", "order-push", {"stat": "Sum"}],
        [".", "OrdersFailed", ".", "."]
    ]}}]});
    let (uses, problems) = dashboard_uses(&body);
    assert_eq!(uses.len(), 1);
    assert_eq!(uses[0].function.as_deref(), Some("order-push"));
    assert_eq!(problems.len(), 1, "the shorthand is refused: {problems:?}");
}

/// X-Ray: every function is traced (Globals `Tracing: Active`) except the webhook receiver and
/// status apply, invoked once per KeyCRM status change, whose tracing follows the
/// `HighVolumeTracing` parameter, off by default (its cost is measured by the fleet bench).
#[test]
fn tracing_is_active_except_on_the_high_volume_functions() {
    let template = load_template();
    let global = template
        .get("Globals")
        .and_then(|g| g.get("Function"))
        .and_then(|f| f.get("Tracing"))
        .and_then(Value::as_str);
    assert_eq!(global, Some("Active"), "Globals.Function.Tracing");
    let param = template
        .get("Parameters")
        .and_then(|p| p.get("HighVolumeTracing"))
        .expect("a HighVolumeTracing parameter");
    assert_eq!(
        param.get("Default").and_then(Value::as_str),
        Some("PassThrough")
    );
    let high_volume = ["WebhookFunction", "StatusApplyFunction"];
    let mut problems = Vec::new();
    for (id, f) in resources_of_type(&template, FUNCTION_TYPE) {
        let tracing = props(f).and_then(|p| p.get("Tracing"));
        let follows_param = tracing.is_some_and(|t| refs(t).contains("HighVolumeTracing"));
        match (high_volume.contains(&id.as_str()), tracing) {
            (true, _) if follows_param => {}
            (true, other) => problems.push(format!(
                "{id}: Tracing should be !Ref HighVolumeTracing, is {other:?}"
            )),
            (false, None) => {}
            (false, Some(t)) => problems.push(format!(
                "{id}: overrides the global Tracing with {}",
                describe(t)
            )),
        }
    }
    fail_if_any("tracing", &problems);
}
