//! [`HttpShop`]: both shop ports over the platform's HTTP API (`docs/shop-api.md`).
//!
//! One platform token (bearer) serves every shop; the shop is a path segment. Reads are
//! retried briefly on transient failures; writes are not (a create that timed out may have
//! happened — the catalog sync recovers it through the product's external id).

use crate::*;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The platform's page-size ceiling for the product index.
pub const MAX_PAGE: usize = 500;

#[derive(Clone)]
pub struct HttpShop {
    http: reqwest::Client,
    base: String,
    token: String,
    read_retries: u32,
}

impl std::fmt::Debug for HttpShop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpShop")
            .field("base", &self.base)
            .field("token", &"••••")
            .finish()
    }
}

#[derive(Serialize, Deserialize, Debug, Default)]
pub struct Page<T> {
    pub items: Vec<T>,
    #[serde(default)]
    pub next_cursor: Option<String>,
}

#[derive(Serialize, Deserialize, Debug)]
pub struct ProductBatch {
    pub products: Vec<ProductUpsert>,
}

/// The body of a batch write's answer: one result per item, in order.
#[derive(Serialize, Deserialize, Debug)]
pub struct Results<T> {
    pub results: Vec<T>,
}

/// The body of a batch of changes (states, prices).
#[derive(Serialize, Deserialize, Debug)]
pub struct Changes<T> {
    pub changes: Vec<T>,
}

pub type ProductResults = Results<UpsertResult>;
pub type StateChanges = Changes<ProductStateChange>;
pub type CategoryStateChanges = Changes<CategoryStateChange>;
pub type PriceChanges = Changes<VariantPriceChange>;

#[derive(Serialize, Deserialize, Debug)]
pub struct CategoryBatch {
    pub categories: Vec<CategoryUpsert>,
}

#[derive(Serialize, Deserialize, Debug)]
pub struct CategoryResult {
    pub external_ref: String,
    pub id: String,
}

pub type CategoryResults = Results<CategoryResult>;

#[derive(Serialize, Deserialize, Debug)]
pub struct StatusBody {
    pub status: String,
}

/// The platform's error body.
#[derive(Serialize, Deserialize, Debug, Default)]
pub struct ErrorBody {
    #[serde(default)]
    pub message: String,
    /// For batch writes: the position of the item that was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
}

/// One path segment for an id (`what` names it in the error): percent-encoded, and refused
/// when it would change the path instead of naming something in it. `/`, `?` and `#` are
/// encoded, but an empty segment, `.` and `..` survive encoding (URL parsers resolve `.` and
/// `..` — and their `%2e` spellings — as dot segments), so `orders/../status` would address
/// another resource. Ids reach this from outside (a webhook's `source_uuid`, an order event).
pub fn id_segment(what: &str, id: &str) -> Result<String, ShopError> {
    if id.is_empty() || id == "." || id == ".." {
        return Err(ShopError::Rejected(format!(
            "the {what} is not a usable id (empty, \".\" or \"..\")"
        )));
    }
    Ok(segment(id))
}

/// Percent-encodes one path segment (ids are opaque strings on the platform). Use
/// [`id_segment`] for ids: this does not refuse dot segments.
pub fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl HttpShop {
    /// `base_url` like `https://api.shop.example/v1`; `token` is the platform's API token.
    pub fn new(base_url: &str, token: impl Into<String>) -> Result<Self, ShopError> {
        Self::with_timeout(base_url, token, Duration::from_secs(30))
    }

    pub fn with_timeout(
        base_url: &str,
        token: impl Into<String>,
        timeout: Duration,
    ) -> Result<Self, ShopError> {
        let base = base_url.trim().trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ShopError::Rejected(
                "the shop API base URL must be http or https".into(),
            ));
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("shop-keycrm/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ShopError::Unavailable(format!("HTTP client setup failed: {e}")))?;
        Ok(HttpShop {
            http,
            base,
            token: token.into(),
            read_retries: 2,
        })
    }

    fn url(&self, shop_id: &str, rest: &str) -> Result<String, ShopError> {
        Ok(format!(
            "{}/shops/{}/{rest}",
            self.base,
            id_segment("shop id", shop_id)?
        ))
    }

    async fn call<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        url: &str,
        query: &[(&str, String)],
        body: Option<&B>,
    ) -> Result<Option<T>, ShopError> {
        let retries = if method == Method::GET {
            self.read_retries
        } else {
            0
        };
        let mut attempt = 0;
        loop {
            match self.call_once(method.clone(), url, query, body).await {
                Err(e) if e.is_retryable() && attempt < retries => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                }
                other => return other,
            }
        }
    }

    async fn call_once<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        url: &str,
        query: &[(&str, String)],
        body: Option<&B>,
    ) -> Result<Option<T>, ShopError> {
        let mut req = self
            .http
            .request(method, url)
            .bearer_auth(&self.token)
            .header(reqwest::header::ACCEPT, "application/json");
        if !query.is_empty() {
            req = req.query(query);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| {
            ShopError::Unavailable(if e.is_timeout() {
                "the shop API timed out".into()
            } else {
                "could not reach the shop API".into()
            })
        })?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|_| ShopError::Unavailable("the shop API connection broke".into()))?;
        if status.is_success() {
            if status == StatusCode::NO_CONTENT || bytes.is_empty() {
                return Ok(None);
            }
            return serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| ShopError::Unavailable(format!("unreadable shop API answer: {e}")));
        }
        Err(classify(status, &bytes))
    }

    async fn get<T: DeserializeOwned>(
        &self,
        url: &str,
        query: &[(&str, String)],
    ) -> Result<T, ShopError> {
        self.call::<(), T>(Method::GET, url, query, None)
            .await?
            .ok_or_else(|| ShopError::Unavailable("empty answer from the shop API".into()))
    }

    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        url: &str,
        body: &B,
    ) -> Result<Option<T>, ShopError> {
        self.call(Method::POST, url, &[], Some(body)).await
    }
}

/// Maps an error answer to [`ShopError`]. Batch refusals keep the refused item's position in
/// the message (`item 3: …`).
pub fn classify(status: StatusCode, body: &[u8]) -> ShopError {
    let e: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    let mut message = if e.message.trim().is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        e.message
    };
    if let Some(i) = e.index {
        message = format!("item {i}: {message}");
    }
    match status.as_u16() {
        401 | 403 => ShopError::Unauthorized,
        404 => ShopError::NotFound(message),
        408 | 429 => ShopError::Unavailable(message),
        s if s >= 500 => ShopError::Unavailable(format!("HTTP {s}: {message}")),
        _ => ShopError::Rejected(message),
    }
}

#[async_trait]
impl ShopCatalog for HttpShop {
    async fn products_page(
        &self,
        shop_id: &str,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<(Vec<ShopProduct>, Option<String>), ShopError> {
        let mut q = vec![("limit", limit.clamp(1, MAX_PAGE).to_string())];
        if let Some(c) = cursor {
            q.push(("cursor", c));
        }
        let page: Page<ShopProduct> = self
            .get(&self.url(shop_id, "catalog/products")?, &q)
            .await?;
        Ok((page.items, page.next_cursor))
    }

    async fn upsert_products(
        &self,
        shop_id: &str,
        batch: &[ProductUpsert],
    ) -> Result<Vec<UpsertResult>, ShopError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let body = ProductBatch {
            products: batch.to_vec(),
        };
        let res: Option<ProductResults> = self
            .post(&self.url(shop_id, "catalog/products/batch")?, &body)
            .await?;
        Ok(res.map(|r| r.results).unwrap_or_default())
    }

    async fn set_product_states(
        &self,
        shop_id: &str,
        changes: &[ProductStateChange],
    ) -> Result<(), ShopError> {
        if changes.is_empty() {
            return Ok(());
        }
        let body = StateChanges {
            changes: changes.to_vec(),
        };
        self.post::<_, serde_json::Value>(&self.url(shop_id, "catalog/products/state")?, &body)
            .await
            .map(|_| ())
    }

    async fn set_variant_prices(
        &self,
        shop_id: &str,
        changes: &[VariantPriceChange],
    ) -> Result<(), ShopError> {
        if changes.is_empty() {
            return Ok(());
        }
        let body = PriceChanges {
            changes: changes.to_vec(),
        };
        self.post::<_, serde_json::Value>(&self.url(shop_id, "catalog/variants/prices")?, &body)
            .await
            .map(|_| ())
    }

    async fn categories(&self, shop_id: &str) -> Result<Vec<ShopCategory>, ShopError> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut q = vec![("limit", MAX_PAGE.to_string())];
            if let Some(c) = cursor.take() {
                q.push(("cursor", c));
            }
            let page: Page<ShopCategory> = self
                .get(&self.url(shop_id, "catalog/categories")?, &q)
                .await?;
            out.extend(page.items);
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => return Ok(out),
            }
        }
    }

    async fn set_category_states(
        &self,
        shop_id: &str,
        changes: &[CategoryStateChange],
    ) -> Result<(), ShopError> {
        if changes.is_empty() {
            return Ok(());
        }
        let body = CategoryStateChanges {
            changes: changes.to_vec(),
        };
        self.post::<_, serde_json::Value>(&self.url(shop_id, "catalog/categories/state")?, &body)
            .await
            .map(|_| ())
    }

    async fn upsert_categories(
        &self,
        shop_id: &str,
        batch: &[CategoryUpsert],
    ) -> Result<Vec<(String, String)>, ShopError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let body = CategoryBatch {
            categories: batch.to_vec(),
        };
        let res: Option<CategoryResults> = self
            .post(&self.url(shop_id, "catalog/categories/batch")?, &body)
            .await?;
        Ok(res
            .map(|r| {
                r.results
                    .into_iter()
                    .map(|c| (c.external_ref, c.id))
                    .collect()
            })
            .unwrap_or_default())
    }
}

#[async_trait]
impl ShopOrders for HttpShop {
    async fn reference(&self, shop_id: &str) -> Result<ShopReference, ShopError> {
        self.get(&self.url(shop_id, "reference")?, &[]).await
    }

    async fn set_order_status(
        &self,
        shop_id: &str,
        order_id: &str,
        status: &str,
    ) -> Result<(), ShopError> {
        let order = id_segment("shop order id", order_id)?;
        let url = self.url(shop_id, &format!("orders/{order}/status"))?;
        let body = StatusBody {
            status: status.to_string(),
        };
        self.call::<_, serde_json::Value>(Method::PUT, &url, &[], Some(&body))
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_the_port_taxonomy() {
        let body = br#"{"message":"price must be positive","index":3}"#;
        assert_eq!(
            classify(StatusCode::UNPROCESSABLE_ENTITY, body),
            ShopError::Rejected("item 3: price must be positive".into())
        );
        assert_eq!(
            classify(StatusCode::UNAUTHORIZED, b""),
            ShopError::Unauthorized
        );
        assert_eq!(
            classify(StatusCode::FORBIDDEN, b"{}"),
            ShopError::Unauthorized
        );
        assert!(matches!(
            classify(StatusCode::NOT_FOUND, b"{}"),
            ShopError::NotFound(_)
        ));
        assert!(classify(StatusCode::TOO_MANY_REQUESTS, b"").is_retryable());
        assert!(classify(StatusCode::BAD_GATEWAY, b"<html>").is_retryable());
        assert!(!classify(StatusCode::BAD_REQUEST, b"").is_retryable());
    }

    #[test]
    fn path_segments_are_encoded_and_the_token_never_printed() {
        assert_eq!(segment("a b/c?d"), "a%20b%2Fc%3Fd");
        assert_eq!(segment("shop-1_x.y~"), "shop-1_x.y~");
        let shop = HttpShop::new("http://127.0.0.1:1/v1/", "secret-token").unwrap();
        assert!(!format!("{shop:?}").contains("secret-token"));
        assert_eq!(
            shop.url("s 1", "reference").unwrap(),
            "http://127.0.0.1:1/v1/shops/s%201/reference"
        );
        assert!(HttpShop::new("ftp://x", "t").is_err());
    }

    /// An order id of `.` or `..` (a webhook's `source_uuid`) would make
    /// `shops/s/orders/../status` mean `shops/s/status`: refused before any request is sent
    /// (the base points at a closed port, so a request would fail as unavailable instead).
    #[tokio::test]
    async fn ids_that_would_change_the_path_are_refused() {
        let shop = HttpShop::with_timeout("http://127.0.0.1:1/v1", "t", Duration::from_millis(200))
            .unwrap();
        for bad in ["..", ".", ""] {
            let e = shop
                .set_order_status("shop-1", bad, "paid")
                .await
                .unwrap_err();
            assert!(matches!(e, ShopError::Rejected(_)), "{bad:?}: {e:?}");
            assert!(e.to_string().contains("shop order id"), "{e}");
            let e = shop.set_order_status(bad, "A-1", "paid").await.unwrap_err();
            assert!(matches!(e, ShopError::Rejected(_)), "{bad:?}: {e:?}");
            assert!(matches!(
                shop.products_page(bad, None, 10).await,
                Err(ShopError::Rejected(_))
            ));
        }
        // Dots inside an id, or an encoded dot, stay one opaque segment.
        assert_eq!(id_segment("id", "...").unwrap(), "...");
        assert_eq!(id_segment("id", "%2e%2e").unwrap(), "%252e%252e");
        assert_eq!(id_segment("id", "a/../b").unwrap(), "a%2F..%2Fb");
        let e = shop
            .set_order_status("shop-1", "A.1", "paid")
            .await
            .unwrap_err();
        assert!(
            matches!(e, ShopError::Unavailable(_)),
            "a real request: {e:?}"
        );
    }
}
