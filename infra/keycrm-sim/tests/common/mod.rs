//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use keycrm_sim::{AccountSpec, SimConfig, SimHandle};
use serde_json::Value;

pub const KEY: &str = "test-key";

pub fn config(products: usize) -> SimConfig {
    SimConfig {
        accounts: vec![AccountSpec {
            api_key: KEY.to_string(),
            seed: 42,
            products,
            pipelines_enabled: true,
        }],
        rate_limit_per_minute: 0,
        time_scale: 1.0,
        public_base_url: None,
    }
}

pub async fn start(cfg: SimConfig) -> SimHandle {
    let bind: SocketAddr = ([127, 0, 0, 1], 0).into();
    match keycrm_sim::start(cfg, bind).await {
        Ok(h) => h,
        Err(e) => panic!("simulator failed to start: {e}"),
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
}

async fn finish(r: reqwest::Response) -> Resp {
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.expect("body");
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("non-JSON body ({e}) with status {status}: {text}"));
    Resp {
        status,
        headers,
        body,
    }
}

pub async fn get(c: &reqwest::Client, sim: &SimHandle, path: &str) -> Resp {
    get_as(c, sim, path, Some(KEY)).await
}

pub async fn get_as(c: &reqwest::Client, sim: &SimHandle, path: &str, key: Option<&str>) -> Resp {
    let mut rb = c
        .get(format!("{}{}", sim.base_url(), path))
        .header("Accept", "application/json");
    if let Some(k) = key {
        rb = rb.bearer_auth(k);
    }
    finish(rb.send().await.expect("request")).await
}

pub async fn send(
    c: &reqwest::Client,
    sim: &SimHandle,
    method: reqwest::Method,
    path: &str,
    body: &Value,
) -> Resp {
    let r = c
        .request(method, format!("{}{}", sim.base_url(), path))
        .bearer_auth(KEY)
        .header("Accept", "application/json")
        .json(body)
        .send()
        .await
        .expect("request");
    finish(r).await
}

/// `(query string, JSON body)` of each received webhook.
pub type Hits = Arc<Mutex<Vec<(Option<String>, Value)>>>;

/// A tiny webhook receiver: records `(query, body)` and answers 500 to the first
/// `fail_first` requests.
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    pub hits: Hits,
}

#[derive(Clone)]
struct RecvState {
    hits: Hits,
    fail_first: Arc<Mutex<u32>>,
}

async fn hook(
    State(st): State<RecvState>,
    RawQuery(q): RawQuery,
    Json(body): Json<Value>,
) -> StatusCode {
    st.hits.lock().expect("lock").push((q, body));
    let mut f = st.fail_first.lock().expect("lock");
    if *f > 0 {
        *f -= 1;
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    }
}

pub async fn receiver(fail_first: u32) -> Receiver {
    let hits = Arc::new(Mutex::new(Vec::new()));
    let st = RecvState {
        hits: Arc::clone(&hits),
        fail_first: Arc::new(Mutex::new(fail_first)),
    };
    let app = Router::new().route("/hook", post(hook)).with_state(st);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind receiver");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Receiver {
        url: format!("http://{addr}/hook?secret=s3cr3t"),
        hits,
    }
}

impl Receiver {
    /// Waits until at least `n` hits arrived (or panics after `secs`).
    pub async fn wait_for(&self, n: usize, secs: u64) -> Vec<(Option<String>, Value)> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            {
                let h = self.hits.lock().expect("lock");
                if h.len() >= n {
                    return h.clone();
                }
            }
            if tokio::time::Instant::now() > deadline {
                let got = self.hits.lock().expect("lock").len();
                panic!("webhook receiver got {got} hits, expected {n}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

pub const ENVELOPE_KEYS: [&str; 12] = [
    "current_page",
    "data",
    "first_page_url",
    "from",
    "last_page",
    "last_page_url",
    "next_page_url",
    "path",
    "per_page",
    "prev_page_url",
    "to",
    "total",
];

pub fn assert_envelope(v: &Value) {
    let obj = v.as_object().expect("envelope object");
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ENVELOPE_KEYS.to_vec(), "envelope keys");
}
