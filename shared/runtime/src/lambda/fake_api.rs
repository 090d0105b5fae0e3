//! A small stand-in for the Lambda Runtime API on loopback, for tests that run a function's
//! real binary: it hands out the events it was given from `/invocation/next` (and then holds
//! the poll open, as Lambda does while no event comes) and records what the function posts to
//! `/init/error`, `/invocation/{id}/response` and `/invocation/{id}/error`.
//!
//! It also stands in for Secrets Manager's `GetSecretValue` (the functions point their AWS
//! endpoint at it), holding the platform secrets a function reads at start under the names
//! [`SHOP_API_TOKEN_SECRET`], [`ADMIN_TOKEN_SECRET`] and [`TOKEN_KEY_SECRET`], so a binary
//! can start without any AWS service; any other secret is not found.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::Value;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// One error report: the `Lambda-Runtime-Function-Error-Type` header and the JSON body.
#[derive(Clone, Debug, PartialEq)]
pub struct Reported {
    /// The invocation's request id (`None` for `/init/error`).
    pub request_id: Option<String>,
    pub error_type_header: Option<String>,
    pub body: Value,
}

/// What the function posted, in order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Recorded {
    pub init_errors: Vec<Reported>,
    pub responses: Vec<(String, Value)>,
    pub errors: Vec<Reported>,
}

/// The secret holding `{"shop_api_token": …}`.
pub const SHOP_API_TOKEN_SECRET: &str = "test/shop-api-token";
/// The secret holding `{"admin_token_signing_key": …}`.
pub const ADMIN_TOKEN_SECRET: &str = "test/admin-token";
/// The webhook token key's secret (its text).
pub const TOKEN_KEY_SECRET: &str = "test/webhook-token-key";

fn secret(id: &str) -> Option<String> {
    match id {
        SHOP_API_TOKEN_SECRET => Some(r#"{"shop_api_token":"test-shop-api-token"}"#.into()),
        ADMIN_TOKEN_SECRET => Some(format!(
            r#"{{"admin_token_signing_key":"{}"}}"#,
            "s".repeat(48)
        )),
        TOKEN_KEY_SECRET => Some("k".repeat(48)),
        _ => None,
    }
}

#[derive(Default)]
struct Shared {
    events: Mutex<VecDeque<(String, Value)>>,
    recorded: Mutex<Recorded>,
}

/// The running fake; the server stops with the test's runtime.
pub struct FakeRuntimeApi {
    /// `host:port`, the value of `AWS_LAMBDA_RUNTIME_API`.
    pub address: SocketAddr,
    shared: Arc<Shared>,
}

impl FakeRuntimeApi {
    /// Serves these events (request ids `req-1`, `req-2`, …) in order.
    pub async fn start(events: Vec<Value>) -> std::io::Result<Self> {
        let shared = Arc::new(Shared::default());
        if let Ok(mut q) = shared.events.lock() {
            q.extend(
                events
                    .into_iter()
                    .enumerate()
                    .map(|(i, e)| (format!("req-{}", i + 1), e)),
            );
        }
        let app = Router::new()
            .route("/", post(aws_api))
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route(
                "/2018-06-01/runtime/invocation/{id}/error",
                post(invocation_error),
            )
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(FakeRuntimeApi { address, shared })
    }

    pub fn recorded(&self) -> Recorded {
        self.shared
            .recorded
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// Waits (up to `within`) until `done` holds for what was recorded, and returns it.
    pub async fn wait_for(&self, within: Duration, done: impl Fn(&Recorded) -> bool) -> Recorded {
        let until = Instant::now() + within;
        loop {
            let r = self.recorded();
            if done(&r) || Instant::now() >= until {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn next(State(shared): State<Arc<Shared>>) -> Response {
    let event = shared.events.lock().ok().and_then(|mut q| q.pop_front());
    let Some((id, payload)) = event else {
        // No event: hold the poll, as Lambda does between invocations.
        std::future::pending::<()>().await;
        return StatusCode::NO_CONTENT.into_response();
    };
    let deadline_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() + 30_000)
        .unwrap_or_default();
    (
        [
            ("lambda-runtime-aws-request-id", id),
            ("lambda-runtime-deadline-ms", deadline_ms.to_string()),
            (
                "lambda-runtime-invoked-function-arn",
                "arn:aws:lambda:us-east-1:000000000000:function:test".to_string(),
            ),
            ("content-type", "application/json".to_string()),
        ],
        payload.to_string(),
    )
        .into_response()
}

/// Secrets Manager's `GetSecretValue` for the test secrets; every other call is refused.
async fn aws_api(headers: HeaderMap, body: String) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let id = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v["SecretId"].as_str().map(str::to_string))
        .unwrap_or_default();
    let (status, doc) = match (target, secret(&id)) {
        ("secretsmanager.GetSecretValue", Some(text)) => (
            StatusCode::OK,
            serde_json::json!({
                "ARN": format!("arn:aws:secretsmanager:us-east-1:000000000000:secret:{id}"),
                "Name": id, "SecretString": text, "VersionId": "v1",
                "VersionStages": ["AWSCURRENT"], "CreatedDate": 1.7e9
            }),
        ),
        ("secretsmanager.GetSecretValue", None) => (
            StatusCode::BAD_REQUEST,
            serde_json::json!({"__type": "ResourceNotFoundException",
                "message": "Secrets Manager can't find the specified secret."}),
        ),
        _ => (
            StatusCode::BAD_REQUEST,
            serde_json::json!({"__type": "UnknownOperationException", "message": "not here"}),
        ),
    };
    (
        status,
        [("content-type", "application/x-amz-json-1.1")],
        doc.to_string(),
    )
        .into_response()
}

fn report(request_id: Option<String>, headers: &HeaderMap, body: &str) -> Reported {
    Reported {
        request_id,
        error_type_header: headers
            .get("lambda-runtime-function-error-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        body: serde_json::from_str(body).unwrap_or(Value::String(body.to_string())),
    }
}

async fn init_error(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: String,
) -> StatusCode {
    if let Ok(mut r) = shared.recorded.lock() {
        r.init_errors.push(report(None, &headers, &body));
    }
    StatusCode::ACCEPTED
}

async fn response(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: String,
) -> StatusCode {
    let value = serde_json::from_str(&body).unwrap_or(Value::String(body));
    if let Ok(mut r) = shared.recorded.lock() {
        r.responses.push((id, value));
    }
    StatusCode::ACCEPTED
}

async fn invocation_error(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: String,
) -> StatusCode {
    if let Ok(mut r) = shared.recorded.lock() {
        r.errors.push(report(Some(id), &headers, &body));
    }
    StatusCode::ACCEPTED
}

/// The environment a function's binary needs to talk to the fake (besides its own
/// variables): the Runtime API address, the Lambda configuration `lambda_runtime` reads, and
/// a region and credentials, and the fake as the AWS endpoint (its test secrets).
pub fn lambda_env(api: &FakeRuntimeApi) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_LAMBDA_RUNTIME_API", api.address.to_string()),
        ("AWS_LAMBDA_FUNCTION_NAME", "test".into()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128".into()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        // Secrets Manager is the fake; any other AWS call fails fast.
        ("AWS_ENDPOINT_URL", format!("http://{}", api.address)),
    ]
}

/// A function's binary running against a [`FakeRuntimeApi`]; killed when dropped.
pub struct RunningFunction {
    child: Option<std::process::Child>,
}

impl RunningFunction {
    /// Starts `binary` with only the fake's environment ([`lambda_env`]) and `env`.
    pub fn spawn(
        binary: &str,
        api: &FakeRuntimeApi,
        env: &[(&str, &str)],
    ) -> std::io::Result<Self> {
        let mut cmd = std::process::Command::new(binary);
        cmd.env_clear()
            .envs(lambda_env(api))
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        Ok(RunningFunction {
            child: Some(cmd.spawn()?),
        })
    }

    /// Waits (up to `within`) for the process to end: its exit status and what it wrote to
    /// stdout and stderr; `None` while it still runs.
    pub async fn exit_within(&mut self, within: Duration) -> Option<(ExitStatus, String)> {
        let until = Instant::now() + within;
        loop {
            let child = self.child.as_mut()?;
            if let Ok(Some(_)) = child.try_wait() {
                let out = self.child.take()?.wait_with_output().ok()?;
                let text = format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
                return Some((out.status, text));
            }
            if Instant::now() >= until {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for RunningFunction {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

use std::process::ExitStatus;

/// Runs `binary` with `env`, which must not let it start: it must report to `/init/error`
/// an error of `error_type` (header and body) whose message starts with `message`, exit
/// non-zero, write no Rust debug line and answer no invocation. Returns the message.
pub async fn assert_init_error(
    binary: &str,
    env: &[(&str, &str)],
    error_type: &str,
    message: &str,
) -> String {
    let api = FakeRuntimeApi::start(vec![])
        .await
        .expect("fake Runtime API");
    let mut f = RunningFunction::spawn(binary, &api, env).expect("the binary starts");
    let (status, output) = f
        .exit_within(Duration::from_secs(60))
        .await
        .expect("a function that cannot start exits");
    assert!(!status.success(), "{status:?}\n{output}");
    let recorded = api.recorded();
    assert_eq!(recorded.init_errors.len(), 1, "{recorded:?}\n{output}");
    let report = &recorded.init_errors[0];
    assert_eq!(report.error_type_header.as_deref(), Some(error_type));
    assert_eq!(report.body["errorType"], error_type, "{report:?}");
    let text = report.body["errorMessage"].as_str().unwrap_or_default();
    assert!(text.starts_with(message), "{text}");
    // The readable line, never `Error: Missing("…")`.
    assert!(
        !output.contains("Missing(") && !output.contains("Error: "),
        "{output}"
    );
    assert!(recorded.responses.is_empty() && recorded.errors.is_empty());
    text.to_string()
}

/// Runs `binary` without `missing` (and with the rest of `env`): it must report
/// `environment variable {missing} is required` as `InvalidConfiguration`
/// ([`assert_init_error`]).
pub async fn assert_missing_variable_is_an_init_error(
    binary: &str,
    env: &[(&str, &str)],
    missing: &str,
) {
    let env: Vec<_> = env.iter().copied().filter(|(k, _)| *k != missing).collect();
    let expected = format!("environment variable {missing} is required");
    let text = assert_init_error(binary, &env, "InvalidConfiguration", &expected).await;
    assert_eq!(text, expected);
}

/// `env` with `name` set to `value` (replacing it when present).
pub fn with_var<'a>(
    env: &[(&'a str, &'a str)],
    name: &'a str,
    value: &'a str,
) -> Vec<(&'a str, &'a str)> {
    let mut env: Vec<_> = env.iter().copied().filter(|(k, _)| *k != name).collect();
    env.push((name, value));
    env
}

/// Runs `binary` with `env` (enough to start) and hands it `events`, none of a shape it takes:
/// each must be answered with an invocation error of `errorType` `InvalidInput` that names
/// what the function expects, and the process keeps serving.
pub async fn assert_unknown_events_are_invalid_input(
    binary: &str,
    env: &[(&str, &str)],
    events: Vec<Value>,
) -> Vec<Reported> {
    let n = events.len();
    let api = FakeRuntimeApi::start(events)
        .await
        .expect("fake Runtime API");
    let mut f = RunningFunction::spawn(binary, &api, env).expect("the binary starts");
    let recorded = api
        .wait_for(Duration::from_secs(60), |r| {
            r.errors.len() >= n || !r.init_errors.is_empty()
        })
        .await;
    let still_running = f.exit_within(Duration::ZERO).await;
    assert!(still_running.is_none(), "{still_running:?}");
    assert!(recorded.init_errors.is_empty(), "{recorded:?}");
    assert_eq!(recorded.errors.len(), n, "{recorded:?}");
    for e in &recorded.errors {
        assert_eq!(e.body["errorType"], "InvalidInput", "{e:?}");
        let message = e.body["errorMessage"].as_str().unwrap_or_default();
        assert!(message.contains("this function handles"), "{message}");
    }
    assert!(recorded.responses.is_empty(), "{recorded:?}");
    recorded.errors
}
