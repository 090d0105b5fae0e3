//! The typed KeyCRM client: one per (base URL, API key), every request paced by a shared
//! [`RateGate`], reads retried with jittered backoff, writes never repeated behind the
//! caller's back.

use crate::gate::{self, Priority, RateGate, Slot};
use crate::models::*;
use crate::observe::{RequestObserver, RequestOutcome};
use crate::retry::RetryPolicy;
use crate::{time, ApiKey, KeycrmError};
use chrono::{DateTime, Utc};
use rand::SeedableRng;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use url::Url;

/// KeyCRM's production endpoint.
pub const DEFAULT_BASE_URL: &str = "https://openapi.keycrm.app/v1";
/// KeyCRM's page-size ceiling; larger values are silently clamped by the server.
pub const PAGE_LIMIT: u32 = 50;

#[derive(Clone, Debug)]
pub struct ClientConfig {
    pub base_url: String,
    /// Whole-request timeout. A write that times out may still have been committed.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub retry: RetryPolicy,
    /// The least time a request is given. Within a [`crate::deadline`], a request that could
    /// not start this long before it is not sent (and no rate-gate slot is booked for it):
    /// a write cut off in flight would leave its outcome unknown.
    pub min_request_time: Duration,
    /// The longest a request waits in-process for its rate-gate slot (and for a retry
    /// pause). A slot further away answers at once as rate-limited (`retry_after` = how far
    /// away it is), so the caller can hand the work to a delayed message instead of holding a
    /// Lambda that only sleeps. `None`: wait as long as the deadline allows.
    pub max_gate_wait: Option<Duration>,
    /// Told about every request, gate wait and gate refusal (metrics); `None`: nobody.
    pub observer: Option<Arc<dyn RequestObserver>>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            base_url: DEFAULT_BASE_URL.to_string(),
            timeout: Duration::from_secs(20),
            connect_timeout: Duration::from_secs(5),
            retry: RetryPolicy::default(),
            min_request_time: Duration::from_secs(2),
            max_gate_wait: None,
            observer: None,
        }
    }
}

impl ClientConfig {
    pub fn with_base_url(base_url: impl Into<String>) -> Self {
        ClientConfig {
            base_url: base_url.into(),
            ..Self::default()
        }
    }
}

/// Counters for run reports and benchmarks.
#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    rate_limited: AtomicU64,
    retries: AtomicU64,
    gate_wait_us: AtomicU64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// HTTP requests sent (retries included).
    pub requests: u64,
    /// 429 answers received.
    pub rate_limited: u64,
    pub retries: u64,
    /// Time spent waiting for the rate gate.
    pub gate_wait: Duration,
}

struct Inner {
    http: reqwest::Client,
    base: Url,
    key: ApiKey,
    fingerprint: String,
    gate: Arc<dyn RateGate>,
    retry: RetryPolicy,
    timeout: Duration,
    min_request_time: Duration,
    max_gate_wait: Option<Duration>,
    counters: Counters,
    observer: Option<Arc<dyn RequestObserver>>,
}

#[derive(Clone)]
pub struct KeycrmClient {
    inner: Arc<Inner>,
    priority: Priority,
}

impl std::fmt::Debug for KeycrmClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeycrmClient")
            .field("base", &self.inner.base.as_str())
            .field("key", &self.inner.key)
            .field("priority", &self.priority)
            .finish()
    }
}

/// Which requests may be repeated automatically.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Replay {
    Safe,
    Never,
}

impl KeycrmClient {
    pub fn new(
        config: ClientConfig,
        key: ApiKey,
        gate: Arc<dyn RateGate>,
    ) -> Result<Self, KeycrmError> {
        let http = Self::http_client(&config)?;
        Self::with_http(config, key, gate, http)
    }

    /// The HTTP connection pool a client of `config` uses. One pool can serve the clients of
    /// many API keys (they differ only in the header they send): see [`KeycrmClient::with_http`].
    pub fn http_client(config: &ClientConfig) -> Result<reqwest::Client, KeycrmError> {
        reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            .user_agent(concat!("shop-keycrm/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| KeycrmError::Protocol {
                detail: format!("HTTP client setup failed: {e}"),
            })
    }

    /// A client on an existing connection pool (made by [`KeycrmClient::http_client`] from a
    /// config with the same timeouts). A warm Lambda serving thousands of connections keeps
    /// one pool, so its memory does not grow with the shops it has seen and a connection to
    /// KeyCRM opened for one shop is reused for the next (no new TLS handshake).
    pub fn with_http(
        config: ClientConfig,
        key: ApiKey,
        gate: Arc<dyn RateGate>,
        http: reqwest::Client,
    ) -> Result<Self, KeycrmError> {
        let mut base_str = config.base_url.trim().trim_end_matches('/').to_string();
        base_str.push('/');
        let base = Url::parse(&base_str).map_err(|e| KeycrmError::Protocol {
            detail: format!("invalid KeyCRM base URL: {e}"),
        })?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(KeycrmError::Protocol {
                detail: "KeyCRM base URL must be http or https".into(),
            });
        }
        let fingerprint = key.fingerprint();
        Ok(KeycrmClient {
            inner: Arc::new(Inner {
                http,
                base,
                key,
                fingerprint,
                gate,
                retry: config.retry,
                timeout: config.timeout,
                min_request_time: config.min_request_time,
                max_gate_wait: config.max_gate_wait,
                counters: Counters::default(),
                observer: config.observer,
            }),
            priority: Priority::Interactive,
        })
    }

    /// The same client (same counters and budget) spending the given priority.
    pub fn with_priority(&self, priority: Priority) -> Self {
        KeycrmClient {
            inner: self.inner.clone(),
            priority,
        }
    }

    pub fn key_fingerprint(&self) -> &str {
        &self.inner.fingerprint
    }

    pub fn stats(&self) -> ClientStats {
        let c = &self.inner.counters;
        ClientStats {
            requests: c.requests.load(Ordering::Relaxed),
            rate_limited: c.rate_limited.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
            gate_wait: Duration::from_micros(c.gate_wait_us.load(Ordering::Relaxed)),
        }
    }

    // ---------------------------------------------------------------- reference data

    /// One cheap authenticated read: `Ok` means KeyCRM accepts the key.
    pub async fn verify_key(&self) -> Result<(), KeycrmError> {
        let url = self.url("order/source", &[("limit", "1".into())])?;
        self.fetch_page::<serde_json::Value>(&url).await.map(|_| ())
    }

    pub async fn sources(&self) -> Result<Vec<Source>, KeycrmError> {
        self.list("order/source", &[]).collect_all().await
    }

    pub async fn order_statuses(&self) -> Result<Vec<OrderStatus>, KeycrmError> {
        self.list("order/status", &[]).collect_all().await
    }

    pub async fn payment_methods(&self) -> Result<Vec<PaymentMethod>, KeycrmError> {
        self.list("order/payment-method", &[]).collect_all().await
    }

    pub async fn delivery_services(&self) -> Result<Vec<DeliveryService>, KeycrmError> {
        self.list("order/delivery-service", &[]).collect_all().await
    }

    /// `GET /custom-fields` answers with a bare array, not a page.
    pub async fn custom_fields(&self, model: FieldModel) -> Result<Vec<CustomField>, KeycrmError> {
        let url = self.url(
            "custom-fields",
            &[
                ("filter[model]", model.as_str().to_string()),
                ("include", "options".to_string()),
            ],
        )?;
        self.get_json(url).await
    }

    pub async fn pipelines(&self) -> Result<Vec<Pipeline>, KeycrmError> {
        self.list("pipelines", &[]).collect_all().await
    }

    pub async fn pipeline_statuses(
        &self,
        pipeline_id: i64,
    ) -> Result<Vec<PipelineStatus>, KeycrmError> {
        let mut statuses: Vec<PipelineStatus> = self
            .list(&format!("pipelines/{pipeline_id}/statuses"), &[])
            .collect_all()
            .await?;
        for s in &mut statuses {
            if s.pipeline_id == 0 {
                s.pipeline_id = pipeline_id;
            }
        }
        Ok(statuses)
    }

    pub async fn categories(&self) -> Result<Vec<Category>, KeycrmError> {
        self.list("products/categories", &[]).collect_all().await
    }

    // ---------------------------------------------------------------- catalog

    /// Offers with their product embedded: one listing carries everything a catalog sync
    /// needs (names, category, prices, stock, archive flags).
    pub fn offers(&self, filter: &OfferFilter) -> Pages<Offer> {
        let mut q = vec![("include", "product".to_string())];
        push_list(&mut q, "filter[product_id]", &filter.product_ids);
        push_list(&mut q, "filter[id]", &filter.offer_ids);
        if let Some(a) = filter.archived {
            q.push(("filter[is_archived]", a.to_string()));
        }
        self.list("offers", &q)
    }

    pub fn products(&self, filter: &ProductFilter) -> Pages<Product> {
        let mut q = Vec::new();
        push_list(&mut q, "filter[category_id]", &filter.category_ids);
        push_list(&mut q, "filter[product_id]", &filter.product_ids);
        if let Some(a) = filter.archived {
            q.push(("filter[is_archived]", a.to_string()));
        }
        self.list("products", &q)
    }

    pub fn offer_stocks(&self, offer_ids: &[i64]) -> Pages<OfferStock> {
        let mut q = Vec::new();
        push_list(&mut q, "filter[offers_id]", offer_ids);
        self.list("offers/stocks", &q)
    }

    // ---------------------------------------------------------------- orders

    /// `POST /order`. Never retried here: on `Transient { maybe_committed: true }` the caller
    /// must look the order up by `source_uuid` before creating it again.
    pub async fn create_order(&self, order: &NewOrder) -> Result<Order, KeycrmError> {
        let url = self.url("order", &[])?;
        self.write(Method::POST, url, order).await
    }

    pub async fn get_order(&self, id: i64) -> Result<Order, KeycrmError> {
        let url = self.url(
            &format!("order/{id}"),
            &[(
                "include",
                "buyer,products,shipping,payments,marketing,custom_fields".to_string(),
            )],
        )?;
        self.get_json(url).await
    }

    /// `GET /order/{id}` without relations: the order row (source, `source_uuid`, status).
    pub async fn get_order_row(&self, id: i64) -> Result<Order, KeycrmError> {
        let url = self.url(&format!("order/{id}"), &[])?;
        self.get_json(url).await
    }

    /// Orders carrying our shop order id, optionally restricted to our source.
    pub async fn find_orders_by_source_uuid(
        &self,
        source_uuid: &str,
        source_id: Option<i64>,
    ) -> Result<Vec<Order>, KeycrmError> {
        let mut q = vec![("filter[source_uuid]", source_uuid.to_string())];
        if let Some(s) = source_id {
            q.push(("filter[source_id]", s.to_string()));
        }
        let found: Vec<Order> = self.list("order", &q).collect_all().await?;
        // Guard against a server that ignores the filter: only exact matches count.
        Ok(found
            .into_iter()
            .filter(|o| o.source_uuid.as_deref() == Some(source_uuid))
            .collect())
    }

    pub fn orders_updated_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Pages<Order> {
        let range = format!(
            "{},{}",
            time::format_request(from),
            time::format_request(to)
        );
        self.list("order", &[("filter[updated_between]", range)])
    }

    /// `PUT /order/{id}` (202 with the order).
    pub async fn update_order(&self, id: i64, update: &OrderUpdate) -> Result<Order, KeycrmError> {
        let url = self.url(&format!("order/{id}"), &[])?;
        self.write(Method::PUT, url, update).await
    }

    // ---------------------------------------------------------------- pipeline cards

    pub async fn create_card(&self, card: &NewCard) -> Result<Card, KeycrmError> {
        let url = self.url("pipelines/cards", &[])?;
        self.write(Method::POST, url, card).await
    }

    pub async fn get_card(&self, id: i64) -> Result<Card, KeycrmError> {
        let url = self.url(
            &format!("pipelines/cards/{id}"),
            &[("include", "products,custom_fields".to_string())],
        )?;
        self.get_json(url).await
    }

    pub fn cards(&self, filter: &CardFilter) -> Pages<Card> {
        let mut q = Vec::new();
        if let Some(p) = filter.pipeline_id {
            q.push(("filter[pipeline_id]", p.to_string()));
        }
        if let Some(s) = filter.source_id {
            q.push(("filter[source_id]", s.to_string()));
        }
        if let Some((from, to)) = filter.created_between {
            q.push((
                "filter[created_between]",
                format!(
                    "{},{}",
                    time::format_request(from),
                    time::format_request(to)
                ),
            ));
        }
        self.list("pipelines/cards", &q)
    }

    /// `PUT /pipelines/cards/{id}` answers `{"status": true}`.
    pub async fn update_card(&self, id: i64, update: &CardUpdate) -> Result<(), KeycrmError> {
        let url = self.url(&format!("pipelines/cards/{id}"), &[])?;
        let _: serde_json::Value = self.write(Method::PUT, url, update).await?;
        Ok(())
    }

    // ---------------------------------------------------------------- plumbing

    /// Page `page` (from 1) of a listing at `limit=50`, with where it stands in the listing.
    pub async fn page<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
        page: u32,
    ) -> Result<Page<T>, KeycrmError> {
        let mut q: Vec<(&str, String)> = query.to_vec();
        q.push(("limit", PAGE_LIMIT.to_string()));
        q.push(("page", page.max(1).to_string()));
        let url = self.url(path, &q)?;
        self.fetch_page(&url).await
    }

    /// A paginated listing at `limit=50`.
    pub fn list<T: DeserializeOwned>(&self, path: &str, query: &[(&str, String)]) -> Pages<T> {
        let mut q: Vec<(&str, String)> = query.to_vec();
        q.push(("limit", PAGE_LIMIT.to_string()));
        let next = self.url(path, &q);
        Pages {
            client: self.clone(),
            next: Some(next),
            pages: 0,
            _t: PhantomData,
        }
    }

    fn url(&self, path: &str, query: &[(&str, String)]) -> Result<Url, KeycrmError> {
        let mut url = self
            .inner
            .base
            .join(path.trim_start_matches('/'))
            .map_err(|e| KeycrmError::Protocol {
                detail: format!("bad path {path}: {e}"),
            })?;
        if !query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in query {
                pairs.append_pair(k, v);
            }
        }
        Ok(url)
    }

    async fn fetch_page<T: DeserializeOwned>(&self, url: &Url) -> Result<Page<T>, KeycrmError> {
        self.get_json(url.clone()).await
    }

    async fn get_json<T: DeserializeOwned>(&self, url: Url) -> Result<T, KeycrmError> {
        let body = self.send(Method::GET, url, None, Replay::Safe).await?;
        decode(&body)
    }

    async fn write<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        body: &B,
    ) -> Result<T, KeycrmError> {
        let bytes = serde_json::to_vec(body).map_err(|e| KeycrmError::Protocol {
            detail: format!("could not encode request: {e}"),
        })?;
        let body = self.send(method, url, Some(bytes), Replay::Never).await?;
        decode(&body)
    }

    async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<Vec<u8>>,
        replay: Replay,
    ) -> Result<Vec<u8>, KeycrmError> {
        let policy = match replay {
            Replay::Safe => self.inner.retry.clone(),
            Replay::Never => RetryPolicy::none(),
        };
        let deadline = crate::deadline::current();
        let min = self.inner.min_request_time;
        let mut rng = rand::rngs::StdRng::from_entropy();
        let mut attempt = 0;
        loop {
            // The latest a request may start: its deadline less the least time it needs.
            let latest = deadline.map(|d| d.checked_sub(min).unwrap_or(d));
            if latest.is_some_and(|l| l <= Instant::now()) {
                return Err(out_of_time());
            }
            // The latest the slot may start: the deadline's, and no further than the patience.
            let patience = self.inner.max_gate_wait.map(|w| Instant::now() + w);
            let slot_latest = match (latest, patience) {
                (Some(l), Some(p)) => Some(l.min(p)),
                (l, p) => l.or(p),
            };
            let latest_us = slot_latest.map(|l| {
                let left = l.saturating_duration_since(Instant::now());
                gate::now_us().saturating_add(i64::try_from(left.as_micros()).unwrap_or(i64::MAX))
            });
            let slot = self
                .inner
                .gate
                .acquire_until(&self.inner.fingerprint, self.priority, latest_us)
                .await
                .map_err(|e| KeycrmError::Transient {
                    status: None,
                    detail: e.to_string(),
                    maybe_committed: false,
                })?;
            let waited = match slot {
                Slot::Granted(w) => w,
                // The key's budget has no slot within this work's time: like a 429, try later.
                Slot::TooLate(next) => {
                    if let Some(o) = &self.inner.observer {
                        o.gate_refused();
                    }
                    return Err(KeycrmError::RateLimited {
                        retry_after: next.min(MAX_RETRY_AFTER),
                    });
                }
            };
            let c = &self.inner.counters;
            c.gate_wait_us.fetch_add(
                u64::try_from(waited.as_micros()).unwrap_or(u64::MAX),
                Ordering::Relaxed,
            );
            c.requests.fetch_add(1, Ordering::Relaxed);
            if let Some(o) = &self.inner.observer {
                o.gate_wait(waited);
            }

            // Never past the deadline, whatever the configured timeout.
            let timeout = match deadline {
                Some(d) => self
                    .inner
                    .timeout
                    .min(d.saturating_duration_since(Instant::now()))
                    .max(Duration::from_millis(1)),
                None => self.inner.timeout,
            };
            let sent = Instant::now();
            let result = self
                .send_once(&method, &url, body.as_deref(), replay, timeout)
                .await;
            if let Some(o) = &self.inner.observer {
                o.request(
                    RequestOutcome::of(result.as_ref().map(|_| ())),
                    sent.elapsed(),
                );
            }
            let err = match result {
                Ok(bytes) => return Ok(bytes),
                Err(e) => e,
            };
            if let KeycrmError::RateLimited { retry_after } = &err {
                c.rate_limited.fetch_add(1, Ordering::Relaxed);
                if let Err(e) = self
                    .inner
                    .gate
                    .penalize(&self.inner.fingerprint, *retry_after)
                    .await
                {
                    tracing::warn!(error = %e, "could not record a 429 in the rate gate");
                }
            }
            match policy.delay_after(attempt, &err, &mut rng) {
                // A pause that would end past the latest start is not taken: the caller gets
                // the error and decides (defer, pause the run).
                Some(delay)
                    if latest.is_some_and(|l| Instant::now() + delay > l)
                        || self.inner.max_gate_wait.is_some_and(|w| delay > w) =>
                {
                    return Err(err)
                }
                Some(delay) => {
                    tracing::debug!(
                        path = url.path(),
                        attempt,
                        kind = err.kind(),
                        delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                        "retrying KeyCRM read"
                    );
                    c.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                None => return Err(err),
            }
        }
    }

    async fn send_once(
        &self,
        method: &Method,
        url: &Url,
        body: Option<&[u8]>,
        replay: Replay,
        timeout: Duration,
    ) -> Result<Vec<u8>, KeycrmError> {
        let mut req = self
            .inner
            .http
            .request(method.clone(), url.clone())
            .timeout(timeout)
            .bearer_auth(self.inner.key.expose())
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(b) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b.to_vec());
        }
        let is_write = replay == Replay::Never;
        let resp = req
            .send()
            .await
            .map_err(|e| transport_error(&e, is_write))?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| transport_error(&e, is_write))?;
        if status.is_success() {
            return Ok(bytes.to_vec());
        }
        Err(classify(status, &bytes, retry_after, url.path(), is_write))
    }
}

fn push_list<'a>(q: &mut Vec<(&'a str, String)>, key: &'a str, ids: &[i64]) {
    if !ids.is_empty() {
        let joined: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
        q.push((key, joined.join(",")));
    }
}

fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, KeycrmError> {
    serde_json::from_slice(body).map_err(|e| KeycrmError::Protocol {
        detail: format!("unparseable body: {e}"),
    })
}

/// Not enough of the work's time is left to send a request: nothing was sent.
fn out_of_time() -> KeycrmError {
    KeycrmError::Transient {
        status: None,
        detail: "no time left in this invocation for a KeyCRM request".into(),
        maybe_committed: false,
    }
}

fn transport_error(e: &reqwest::Error, is_write: bool) -> KeycrmError {
    // A refused connection never reached KeyCRM; a timeout or a reset mid-way may have.
    let reached = !e.is_connect();
    KeycrmError::Transient {
        status: None,
        detail: if e.is_timeout() {
            "timed out".to_string()
        } else if e.is_connect() {
            "connection failed".to_string()
        } else {
            "connection broken".to_string()
        },
        maybe_committed: is_write && reached,
    }
}

/// The longest `Retry-After` taken from an answer: SQS cannot delay a message longer, and no
/// rate limit of KeyCRM's (a minute) needs more. Longer values are clamped to it.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(900);

/// `Retry-After` as delta-seconds or an HTTP date, clamped to [`MAX_RETRY_AFTER`]. Whatever
/// the header holds (`1e20`, `inf`, `-5`, a date in 9999), this never panics: the value comes
/// from the network.
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<f64>() {
        if !secs.is_finite() || secs < 0.0 {
            return None;
        }
        let clamped = secs.min(MAX_RETRY_AFTER.as_secs_f64());
        return Some(Duration::try_from_secs_f64(clamped).unwrap_or(MAX_RETRY_AFTER));
    }
    let at = DateTime::parse_from_rfc2822(v).ok()?.with_timezone(&Utc);
    let wait = at
        .signed_duration_since(Utc::now())
        .to_std()
        .unwrap_or(Duration::ZERO);
    Some(wait.min(MAX_RETRY_AFTER))
}

#[derive(serde::Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    errors: BTreeMap<String, Vec<String>>,
}

fn classify(
    status: StatusCode,
    body: &[u8],
    retry_after: Option<Duration>,
    path: &str,
    is_write: bool,
) -> KeycrmError {
    let parsed: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    let message = parsed
        .message
        .clone()
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_string());
    match status.as_u16() {
        401 => KeycrmError::Unauthorized,
        403 => KeycrmError::Forbidden { message },
        404 => KeycrmError::NotFound {
            what: path.to_string(),
        },
        400 => KeycrmError::BadRequest { message },
        422 => KeycrmError::Validation {
            message,
            errors: parsed.errors,
        },
        429 => KeycrmError::RateLimited {
            // Laravel always sends it; if a proxy drops it, a conservative pause.
            retry_after: retry_after.unwrap_or(Duration::from_secs(10)),
        },
        408 | 500..=599 => KeycrmError::Transient {
            status: Some(status.as_u16()),
            detail: format!("HTTP {}", status.as_u16()),
            // A 5xx after a write does not prove nothing was stored.
            maybe_committed: is_write,
        },
        other => KeycrmError::Protocol {
            detail: format!("unexpected HTTP {other}"),
        },
    }
}

#[derive(Clone, Debug, Default)]
pub struct OfferFilter {
    pub product_ids: Vec<i64>,
    pub offer_ids: Vec<i64>,
    pub archived: Option<bool>,
}

#[derive(Clone, Debug, Default)]
pub struct ProductFilter {
    pub category_ids: Vec<i64>,
    pub product_ids: Vec<i64>,
    pub archived: Option<bool>,
}

#[derive(Clone, Debug, Default)]
pub struct CardFilter {
    pub pipeline_id: Option<i64>,
    pub source_id: Option<i64>,
    pub created_between: Option<(DateTime<Utc>, DateTime<Utc>)>,
}

/// A paginated listing, walked one page at a time so large catalogs are streamed, never held.
/// The position is a URL that can be checkpointed and resumed later (see [`Pages::cursor`]).
pub struct Pages<T> {
    client: KeycrmClient,
    next: Option<Result<Url, KeycrmError>>,
    pages: u32,
    _t: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> Pages<T> {
    /// Continues a listing from a cursor saved earlier.
    pub fn resume(client: &KeycrmClient, cursor: &str) -> Result<Self, KeycrmError> {
        let url = Url::parse(cursor).map_err(|e| KeycrmError::Protocol {
            detail: format!("bad cursor: {e}"),
        })?;
        // The cursor must point at our own KeyCRM, never carry the key elsewhere.
        if url.origin() != client.inner.base.origin() {
            return Err(KeycrmError::Protocol {
                detail: "cursor points at another host".into(),
            });
        }
        Ok(Pages {
            client: client.clone(),
            next: Some(Ok(url)),
            pages: 0,
            _t: PhantomData,
        })
    }

    /// The URL of the next page to fetch, `None` when the listing is complete.
    pub fn cursor(&self) -> Option<String> {
        match &self.next {
            Some(Ok(u)) => Some(u.to_string()),
            _ => None,
        }
    }

    pub fn pages_fetched(&self) -> u32 {
        self.pages
    }

    /// The next page, or `None` after the last one.
    pub async fn next_page(&mut self) -> Result<Option<Page<T>>, KeycrmError> {
        let url = match self.next.take() {
            None => return Ok(None),
            Some(Err(e)) => return Err(e),
            Some(Ok(u)) => u,
        };
        let page: Page<T> = match self.client.fetch_page(&url).await {
            Ok(p) => p,
            Err(e) => {
                // Keep the position so a retry (or a resumed run) asks for the same page.
                self.next = Some(Ok(url));
                return Err(e);
            }
        };
        self.pages += 1;
        self.next = next_page_url(&url, &page).map(Ok);
        Ok(Some(page))
    }

    pub async fn collect_all(mut self) -> Result<Vec<T>, KeycrmError> {
        let mut all = Vec::new();
        while let Some(page) = self.next_page().await? {
            all.extend(page.data);
        }
        Ok(all)
    }
}

/// Where the listing continues. Trusts `next_page_url` / `last_page`, never the page's
/// length (KeyCRM clamps `limit` silently, so a short page is not the end). The page number
/// is applied to *our* URL so the key is never sent to a host named in a response.
fn next_page_url<T>(current: &Url, page: &Page<T>) -> Option<Url> {
    let from_link = page.next_page_url.as_deref().and_then(|s| {
        Url::parse(s)
            .ok()?
            .query_pairs()
            .find(|(k, _)| k == "page")
            .and_then(|(_, v)| v.parse::<u32>().ok())
    });
    let next = match from_link {
        Some(n) => n,
        None if page.current_page > 0 && page.current_page < page.last_page => {
            page.current_page + 1
        }
        None => return None,
    };
    if next <= page.current_page {
        // A link that does not move forward would loop forever.
        return None;
    }
    let mut url = current.clone();
    let kept: Vec<(String, String)> = current
        .query_pairs()
        .filter(|(k, _)| k != "page")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    {
        let mut pairs = url.query_pairs_mut();
        pairs.clear();
        for (k, v) in &kept {
            pairs.append_pair(k, v);
        }
        pairs.append_pair("page", &next.to_string());
    }
    Some(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(current: u32, last: u32, next: Option<&str>, n: usize) -> Page<i64> {
        Page {
            data: (0..n as i64).collect(),
            current_page: current,
            last_page: last,
            per_page: 50,
            total: 0,
            next_page_url: next.map(str::to_string),
        }
    }

    #[test]
    fn follows_next_page_url_but_keeps_our_host_and_query() {
        let cur = Url::parse("http://127.0.0.1:9/v1/offers?include=product&limit=50").unwrap();
        let p = page(
            1,
            3,
            Some("https://elsewhere.example/v1/offers?include=product&limit=50&page=2"),
            50,
        );
        let next = next_page_url(&cur, &p).unwrap();
        assert_eq!(
            next.as_str(),
            "http://127.0.0.1:9/v1/offers?include=product&limit=50&page=2"
        );
    }

    #[test]
    fn a_short_page_is_not_the_end() {
        let cur = Url::parse("http://h/v1/offers?limit=50&page=2").unwrap();
        // The server clamped us to 15 rows, but says there is more.
        let p = page(2, 9, None, 15);
        let next = next_page_url(&cur, &p).unwrap();
        assert!(next.as_str().ends_with("limit=50&page=3"), "{next}");
    }

    #[test]
    fn stops_on_the_last_page_and_on_backward_links() {
        let cur = Url::parse("http://h/v1/offers?page=3").unwrap();
        assert!(next_page_url(&cur, &page(3, 3, None, 7)).is_none());
        assert!(next_page_url(&cur, &page(3, 5, Some("http://h/v1/offers?page=3"), 7)).is_none());
        assert!(next_page_url(&cur, &page(0, 0, None, 0)).is_none());
    }

    #[test]
    fn classifies_statuses() {
        let body = br#"{"message":"The given data was invalid.","errors":{"source_id":["The selected source id is invalid."]}}"#;
        match classify(
            StatusCode::UNPROCESSABLE_ENTITY,
            body,
            None,
            "/v1/order",
            true,
        ) {
            KeycrmError::Validation { errors, .. } => {
                assert_eq!(
                    errors["source_id"],
                    vec!["The selected source id is invalid."]
                )
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            classify(StatusCode::UNAUTHORIZED, b"{}", None, "/", false),
            KeycrmError::Unauthorized
        ));
        assert!(matches!(
            classify(StatusCode::TOO_MANY_REQUESTS, b"{}", Some(Duration::from_secs(7)), "/", false),
            KeycrmError::RateLimited { retry_after } if retry_after == Duration::from_secs(7)
        ));
        assert!(matches!(
            classify(StatusCode::BAD_GATEWAY, b"<html>", None, "/", true),
            KeycrmError::Transient {
                maybe_committed: true,
                status: Some(502),
                ..
            }
        ));
        assert!(matches!(
            classify(StatusCode::SERVICE_UNAVAILABLE, b"", None, "/", false),
            KeycrmError::Transient {
                maybe_committed: false,
                ..
            }
        ));
        assert!(
            matches!(classify(StatusCode::BAD_REQUEST, br#"{"message":"Leads are not enabled"}"#, None, "/", false), KeycrmError::BadRequest { message } if message == "Leads are not enabled")
        );
        assert!(matches!(
            classify(StatusCode::IM_A_TEAPOT, b"", None, "/", false),
            KeycrmError::Protocol { .. }
        ));
    }

    #[test]
    fn hostile_retry_after_values_are_clamped_or_ignored_never_a_panic() {
        assert_eq!(parse_retry_after("1e20"), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("1e300"), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("86400"), Some(MAX_RETRY_AFTER));
        for v in ["inf", "-inf", "NaN", "-5", "", "9".repeat(400).as_str()] {
            let got = parse_retry_after(v);
            assert!(
                got.is_none() || got == Some(MAX_RETRY_AFTER),
                "{v}: {got:?}"
            );
        }
        assert_eq!(
            parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT"),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT"),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("12"), Some(Duration::from_secs(12)));
        assert_eq!(parse_retry_after("0.5"), Some(Duration::from_millis(500)));
        assert!(parse_retry_after("soon").is_none());
        let future = (Utc::now() + chrono::Duration::seconds(30)).to_rfc2822();
        let d = parse_retry_after(&future).unwrap();
        assert!(
            d <= Duration::from_secs(30) && d >= Duration::from_secs(28),
            "{d:?}"
        );
    }
}
