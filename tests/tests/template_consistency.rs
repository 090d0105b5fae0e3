//! Keeps `template.yaml` (the SAM bundle) and the Cargo workspace in step.
//!
//! * every `AWS::Serverless::Function` is built by cargo-lambda from a workspace member
//!   that has a binary target;
//! * every binary crate under `functions/` is deployed by exactly one function;
//! * every SQS event source reports partial batch failures and its queue's visibility
//!   timeout is at least the consuming function's timeout.
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
