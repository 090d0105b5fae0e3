//! One KeyCRM client per connection, built from the key in the secret store and sharing the
//! per-key rate gate. Clients are cached per (connection, key) so a warm Lambda does not read
//! the secret on every message, and a replaced key takes effect at once. Every client reports
//! its requests to `metrics::KeycrmMeter`, so KeyCRM traffic is counted in one place.
//!
//! A warm instance serves thousands of connections over its life, so what it keeps per
//! connection is bounded: all clients share one HTTP connection pool (they differ only in the
//! key they send; every shop talks to the same KeyCRM host, so a connection opened for one
//! shop is reused by the next without a new TLS handshake), and the cache holds at most
//! [`CACHED_CONNECTIONS`] clients, the least recently used leaving first.

use crate::metrics::KeycrmMeter;
use keycrm::{ApiKey, ClientConfig, KeycrmClient, KeycrmError, RateGate};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use store::{Connection, SecretStore, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ClientsError {
    #[error("the KeyCRM API key of connection {0} is missing from the secret store")]
    MissingKey(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Keycrm(#[from] KeycrmError),
}

/// The most connections whose clients (and decrypted keys) one instance keeps. Past it the
/// least recently used is dropped and read again from the secret store when next needed.
pub const CACHED_CONNECTIONS: usize = 512;

/// A cached client: the key fingerprint it was built for, and when it was last used (a
/// counter, for eviction).
struct Cached {
    fingerprint: String,
    client: KeycrmClient,
    used: u64,
}

#[derive(Default)]
struct Cache {
    by_connection: HashMap<String, Cached>,
    tick: u64,
}

pub struct KeycrmClients {
    secrets: Arc<dyn SecretStore>,
    gate: Arc<dyn RateGate>,
    template: ClientConfig,
    /// The connection pool every client of this factory shares (made on first use).
    http: OnceLock<reqwest::Client>,
    cache: Mutex<Cache>,
}

impl KeycrmClients {
    pub fn new(
        secrets: Arc<dyn SecretStore>,
        gate: Arc<dyn RateGate>,
        template: ClientConfig,
    ) -> Self {
        KeycrmClients {
            secrets,
            gate,
            template,
            http: OnceLock::new(),
            cache: Mutex::new(Cache::default()),
        }
    }

    /// Connections whose clients are cached now.
    pub fn cached(&self) -> usize {
        self.cache
            .lock()
            .map(|c| c.by_connection.len())
            .unwrap_or(0)
    }

    fn http(&self) -> Result<reqwest::Client, KeycrmError> {
        if let Some(c) = self.http.get() {
            return Ok(c.clone());
        }
        let made = KeycrmClient::http_client(&self.template)?;
        Ok(self.http.get_or_init(|| made).clone())
    }

    pub fn gate(&self) -> Arc<dyn RateGate> {
        self.gate.clone()
    }

    /// Where the keys live (the deleted connection's cleanup removes its key last).
    pub fn secrets(&self) -> Arc<dyn SecretStore> {
        self.secrets.clone()
    }

    /// A client for an API key that is not stored yet (validating a key on connect).
    pub fn for_key(&self, base_url: &str, key: ApiKey) -> Result<KeycrmClient, KeycrmError> {
        self.build(base_url, key, KeycrmMeter::unattributed())
    }

    fn build(
        &self,
        base_url: &str,
        key: ApiKey,
        meter: KeycrmMeter,
    ) -> Result<KeycrmClient, KeycrmError> {
        let mut cfg = self.template.clone();
        cfg.base_url = base_url.to_string();
        // A template's own observer (tests) wins; otherwise the metrics meter.
        if cfg.observer.is_none() {
            cfg.observer = Some(Arc::new(meter));
        }
        KeycrmClient::with_http(cfg, key, self.gate.clone(), self.http()?)
    }

    pub async fn for_connection(&self, conn: &Connection) -> Result<KeycrmClient, ClientsError> {
        if let Ok(mut cache) = self.cache.lock() {
            cache.tick = cache.tick.wrapping_add(1);
            let tick = cache.tick;
            if let Some(hit) = cache.by_connection.get_mut(&conn.id) {
                if hit.fingerprint == conn.key_fingerprint {
                    hit.used = tick;
                    return Ok(hit.client.clone());
                }
            }
        }
        let key = self
            .secrets
            .get(&conn.secret_name)
            .await?
            .ok_or_else(|| ClientsError::MissingKey(conn.id.clone()))?;
        let client = self.build(
            &conn.keycrm_base_url,
            key,
            KeycrmMeter::for_connection(&conn.id),
        )?;
        if let Ok(mut cache) = self.cache.lock() {
            let cache = &mut *cache;
            if cache.by_connection.len() >= CACHED_CONNECTIONS
                && !cache.by_connection.contains_key(&conn.id)
            {
                let oldest = cache
                    .by_connection
                    .iter()
                    .min_by_key(|(_, c)| c.used)
                    .map(|(id, _)| id.clone());
                if let Some(id) = oldest {
                    cache.by_connection.remove(&id);
                }
            }
            cache.by_connection.insert(
                conn.id.clone(),
                Cached {
                    fingerprint: conn.key_fingerprint.clone(),
                    client: client.clone(),
                    used: cache.tick,
                },
            );
        }
        Ok(client)
    }

    /// Drops a cached client (after the connection is deleted or its key replaced).
    pub fn forget(&self, connection_id: &str) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.by_connection.remove(connection_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use chrono::Utc;
    use keycrm::UnlimitedGate;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use store::MemorySecrets;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Counts the keys read from the store.
    #[derive(Default)]
    struct CountingSecrets {
        inner: MemorySecrets,
        reads: AtomicUsize,
    }

    #[async_trait]
    impl SecretStore for CountingSecrets {
        async fn put(&self, name: &str, key: &ApiKey) -> Result<(), StoreError> {
            self.inner.put(name, key).await
        }
        async fn get(&self, name: &str) -> Result<Option<ApiKey>, StoreError> {
            self.reads.fetch_add(1, Ordering::Relaxed);
            self.inner.get(name).await
        }
        async fn delete(&self, name: &str) -> Result<(), StoreError> {
            self.inner.delete(name).await
        }
    }

    fn connection(id: usize, base_url: &str) -> Connection {
        let now = Utc::now();
        Connection {
            id: format!("c{id}"),
            shop_id: format!("shop-{id}"),
            active: true,
            keycrm_base_url: base_url.into(),
            key_mask: "••••abcd".into(),
            key_fingerprint: format!("fp{id}"),
            secret_name: format!("keys/c{id}"),
            settings: Default::default(),
            webhook_tokens: Default::default(),
            webhook_generations: Default::default(),
            account_epoch: 0,
            account_switched_at: None,
            version: 1,
            created_at: now,
            updated_at: now,
        }
    }

    async fn factory(connections: usize, base_url: &str) -> (Arc<CountingSecrets>, KeycrmClients) {
        let secrets = Arc::new(CountingSecrets::default());
        for i in 0..connections {
            let c = connection(i, base_url);
            secrets
                .put(&c.secret_name, &ApiKey::new(format!("key-{i}")))
                .await
                .unwrap();
        }
        let clients = KeycrmClients::new(
            secrets.clone(),
            Arc::new(UnlimitedGate),
            ClientConfig::with_base_url(base_url),
        );
        (secrets, clients)
    }

    #[tokio::test]
    async fn the_cache_keeps_at_most_its_bound_and_drops_the_least_recently_used() {
        let base = "http://127.0.0.1:9/v1";
        let n = CACHED_CONNECTIONS + 100;
        let (secrets, clients) = factory(n, base).await;
        for i in 0..CACHED_CONNECTIONS {
            clients.for_connection(&connection(i, base)).await.unwrap();
        }
        assert_eq!(clients.cached(), CACHED_CONNECTIONS);
        // c0 is used again: it is now the most recent, c1 the least.
        clients.for_connection(&connection(0, base)).await.unwrap();
        assert_eq!(secrets.reads.load(Ordering::Relaxed), CACHED_CONNECTIONS);
        for i in CACHED_CONNECTIONS..n {
            clients.for_connection(&connection(i, base)).await.unwrap();
        }
        assert_eq!(clients.cached(), CACHED_CONNECTIONS, "bounded");
        let reads = secrets.reads.load(Ordering::Relaxed);
        assert_eq!(reads, n);
        // Still cached: the one used again and the newest. Dropped: the oldest unused.
        clients.for_connection(&connection(0, base)).await.unwrap();
        clients
            .for_connection(&connection(n - 1, base))
            .await
            .unwrap();
        assert_eq!(secrets.reads.load(Ordering::Relaxed), reads);
        clients.for_connection(&connection(1, base)).await.unwrap();
        assert_eq!(secrets.reads.load(Ordering::Relaxed), reads + 1);
    }

    #[tokio::test]
    async fn a_replaced_key_is_read_again_and_forget_drops_the_client() {
        let base = "http://127.0.0.1:9/v1";
        let (secrets, clients) = factory(1, base).await;
        let mut c = connection(0, base);
        clients.for_connection(&c).await.unwrap();
        clients.for_connection(&c).await.unwrap();
        assert_eq!(secrets.reads.load(Ordering::Relaxed), 1);
        c.key_fingerprint = "another".into();
        clients.for_connection(&c).await.unwrap();
        assert_eq!(secrets.reads.load(Ordering::Relaxed), 2);
        assert_eq!(clients.cached(), 1);
        clients.forget(&c.id);
        assert_eq!(clients.cached(), 0);
    }

    /// A minimal HTTP/1.1 server with keep-alive that answers every request with an empty
    /// KeyCRM page and counts the TCP connections it accepted.
    async fn keep_alive_server() -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        let Ok(n) = sock.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            buf.drain(..end + 4);
                            let body = r#"{"total":0,"current_page":1,"per_page":1,"data":[]}"#;
                            let answer = format!(
                                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                                body.len()
                            );
                            if sock.write_all(answer.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        (format!("http://{addr}/v1"), accepted)
    }

    #[tokio::test]
    async fn clients_of_different_connections_share_one_connection_pool() {
        let (base, accepted) = keep_alive_server().await;
        let (_, clients) = factory(20, &base).await;
        for i in 0..20 {
            let client = clients.for_connection(&connection(i, &base)).await.unwrap();
            client.verify_key().await.unwrap();
        }
        // One after the other, twenty shops' requests went over one kept-alive connection.
        assert_eq!(accepted.load(Ordering::Relaxed), 1);
    }
}
