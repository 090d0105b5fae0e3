//! The benchmark's stand-in for DynamoDB: the in-memory link and sync stores served from
//! their own process over a small JSON RPC, so the sync process's RSS and CPU are measured
//! without the catalog-sized store inside it (as on Lambda, where the table is remote).

use async_trait::async_trait;
use mapping::catalog::{CategoryLink, CrmProduct, ProductLink};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use store::{
    LinkStore, MemoryLinks, MemorySync, SeenSet, StoreError, SyncKind, SyncLease, SyncRun,
    SyncStore,
};

#[derive(Serialize, Deserialize)]
#[serde(tag = "m", rename_all = "snake_case")]
pub enum Call {
    GetProducts {
        conn: String,
        ids: Vec<i64>,
    },
    PutProducts {
        conn: String,
        links: Vec<ProductLink>,
    },
    DeleteProducts {
        conn: String,
        links: Vec<ProductLink>,
    },
    ProductsPage {
        conn: String,
        after: Option<String>,
        limit: usize,
    },
    ProductStatesPage {
        conn: String,
        after: Option<String>,
        limit: usize,
    },
    OwnersPage {
        conn: String,
        after: Option<String>,
        limit: usize,
    },
    Owners {
        conn: String,
        shop_ids: Vec<String>,
    },
    Categories {
        conn: String,
    },
    PutCategories {
        conn: String,
        links: Vec<CategoryLink>,
    },
    PutStaged {
        conn: String,
        products: Vec<CrmProduct>,
    },
    GetStaged {
        conn: String,
        ids: Vec<i64>,
    },
    StagedPage {
        conn: String,
        after: Option<String>,
        limit: usize,
    },
    DeleteStaged {
        conn: String,
        ids: Vec<i64>,
    },
    PutSeen {
        conn: String,
        mark: i64,
        seq: u32,
        products: Vec<i64>,
        offers: Vec<i64>,
    },
    Seen {
        conn: String,
        mark: i64,
    },
    ClearSeen {
        conn: String,
        mark: i64,
    },
    Acquire {
        conn: String,
        kind: SyncKind,
        holder: String,
        lease_ms: u64,
    },
    Checkpoint {
        lease: SyncLease,
        extend_ms: u64,
    },
    Finish {
        lease: SyncLease,
    },
    Pause {
        lease: SyncLease,
    },
    Unfinished {
        limit: usize,
    },
    MarkQueued {
        conn: String,
        kind: SyncKind,
        holder: Option<String>,
        until: chrono::DateTime<chrono::Utc>,
    },
    ClearQueued {
        conn: String,
        kind: SyncKind,
        until: chrono::DateTime<chrono::Utc>,
    },
    PutRun {
        run: SyncRun,
    },
    GetRun {
        conn: String,
        run_id: String,
    },
    ListRuns {
        conn: String,
        limit: usize,
    },
}

/// The answer: 200 with the result as the body, 409 for a lost condition, 500 otherwise.
pub type Reply = (axum::http::StatusCode, String);

fn ok<T: Serialize>(r: Result<T, StoreError>) -> Reply {
    use axum::http::StatusCode;
    match r {
        Ok(v) => match serde_json::to_string(&v) {
            Ok(body) => (StatusCode::OK, body),
            Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        },
        Err(StoreError::Conflict(m)) => (StatusCode::CONFLICT, m),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

pub struct Backend {
    pub links: MemoryLinks,
    pub sync: MemorySync,
}

pub async fn dispatch(b: &Backend, call: Call) -> Reply {
    let (l, s) = (&b.links, &b.sync);
    match call {
        Call::GetProducts { conn, ids } => ok(l.get_products(&conn, &ids).await),
        Call::PutProducts { conn, links } => ok(l.put_products(&conn, &links).await),
        Call::DeleteProducts { conn, links } => ok(l.delete_products(&conn, &links).await),
        Call::ProductsPage { conn, after, limit } => ok(l.products_page(&conn, after, limit).await),
        Call::ProductStatesPage { conn, after, limit } => {
            ok(l.product_states_page(&conn, after, limit).await)
        }
        Call::OwnersPage { conn, after, limit } => ok(l.owners_page(&conn, after, limit).await),
        Call::Owners { conn, shop_ids } => ok(l.owners(&conn, &shop_ids).await),
        Call::Categories { conn } => ok(l.categories(&conn).await),
        Call::PutCategories { conn, links } => ok(l.put_categories(&conn, &links).await),
        Call::PutStaged { conn, products } => ok(l.put_staged(&conn, &products).await),
        Call::GetStaged { conn, ids } => ok(l.get_staged(&conn, &ids).await),
        Call::StagedPage { conn, after, limit } => ok(l.staged_page(&conn, after, limit).await),
        Call::DeleteStaged { conn, ids } => ok(l.delete_staged(&conn, &ids).await),
        Call::PutSeen {
            conn,
            mark,
            seq,
            products,
            offers,
        } => ok(l.put_seen(&conn, mark, seq, &products, &offers).await),
        Call::Seen { conn, mark } => ok(l.seen(&conn, mark).await.map(|s| {
            (
                s.products.into_iter().collect::<Vec<_>>(),
                s.offers.into_iter().collect::<Vec<_>>(),
            )
        })),
        Call::ClearSeen { conn, mark } => ok(l.clear_seen(&conn, mark).await),
        Call::Acquire {
            conn,
            kind,
            holder,
            lease_ms,
        } => ok(s
            .acquire(&conn, kind, &holder, Duration::from_millis(lease_ms))
            .await),
        Call::Checkpoint { lease, extend_ms } => ok(s
            .checkpoint(&lease, Duration::from_millis(extend_ms))
            .await
            .map(|_| ())),
        Call::Finish { lease } => ok(s.finish(&lease).await),
        Call::Pause { lease } => ok(s.pause(&lease).await),
        Call::Unfinished { limit } => ok(s.unfinished(limit).await),
        Call::MarkQueued {
            conn,
            kind,
            holder,
            until,
        } => ok(s.mark_queued(&conn, kind, holder.as_deref(), until).await),
        Call::ClearQueued { conn, kind, until } => ok(s.clear_queued(&conn, kind, until).await),
        Call::PutRun { run } => ok(s.put_run(&run).await),
        Call::GetRun { conn, run_id } => ok(s.get_run(&conn, &run_id).await),
        Call::ListRuns { conn, limit } => ok(s.list_runs(&conn, limit).await),
    }
}

/// Serves the backend on a free port; returns its URL.
pub async fn serve() -> String {
    use axum::routing::post;
    let backend = Arc::new(Backend {
        links: MemoryLinks::new(),
        sync: MemorySync::new(),
    });
    let app = axum::Router::new()
        .route(
            "/rpc",
            post(
                |axum::extract::State(b): axum::extract::State<Arc<Backend>>,
                 axum::Json(call): axum::Json<Call>| async move {
                    dispatch(&b, call).await
                },
            ),
        )
        .layer(axum::extract::DefaultBodyLimit::max(256 * 1024 * 1024))
        .with_state(backend);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind store");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/rpc")
}

/// Both store ports over the RPC.
#[derive(Clone)]
pub struct Remote {
    http: reqwest::Client,
    url: String,
}

impl Remote {
    pub fn new(url: String) -> Self {
        Remote {
            http: reqwest::Client::new(),
            url,
        }
    }

    async fn call<T: serde::de::DeserializeOwned>(&self, call: Call) -> Result<T, StoreError> {
        let resp = self
            .http
            .post(&self.url)
            .json(&call)
            .send()
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let status = resp.status().as_u16();
        let body = resp
            .bytes()
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        match status {
            200 => serde_json::from_slice(&body).map_err(|e| StoreError::Corrupt(e.to_string())),
            409 => Err(StoreError::Conflict(
                String::from_utf8_lossy(&body).into_owned(),
            )),
            _ => Err(StoreError::Unavailable(
                String::from_utf8_lossy(&body).into_owned(),
            )),
        }
    }
}

fn s(v: &str) -> String {
    v.to_string()
}

#[async_trait]
impl LinkStore for Remote {
    async fn get_products(&self, conn: &str, ids: &[i64]) -> Result<Vec<ProductLink>, StoreError> {
        self.call(Call::GetProducts {
            conn: s(conn),
            ids: ids.to_vec(),
        })
        .await
    }
    async fn put_products(&self, conn: &str, links: &[ProductLink]) -> Result<(), StoreError> {
        self.call(Call::PutProducts {
            conn: s(conn),
            links: links.to_vec(),
        })
        .await
    }
    async fn delete_products(&self, conn: &str, links: &[ProductLink]) -> Result<(), StoreError> {
        self.call(Call::DeleteProducts {
            conn: s(conn),
            links: links.to_vec(),
        })
        .await
    }
    async fn products_page(
        &self,
        conn: &str,
        after: Option<String>,
        limit: usize,
    ) -> Result<(Vec<ProductLink>, Option<String>), StoreError> {
        self.call(Call::ProductsPage {
            conn: s(conn),
            after,
            limit,
        })
        .await
    }
    async fn product_states_page(
        &self,
        conn: &str,
        after: Option<String>,
        limit: usize,
    ) -> Result<(Vec<(i64, bool)>, Option<String>), StoreError> {
        self.call(Call::ProductStatesPage {
            conn: s(conn),
            after,
            limit,
        })
        .await
    }
    async fn owners_page(
        &self,
        conn: &str,
        after: Option<String>,
        limit: usize,
    ) -> Result<(Vec<(String, i64)>, Option<String>), StoreError> {
        self.call(Call::OwnersPage {
            conn: s(conn),
            after,
            limit,
        })
        .await
    }
    async fn owners(
        &self,
        conn: &str,
        shop_ids: &[String],
    ) -> Result<Vec<(String, i64)>, StoreError> {
        self.call(Call::Owners {
            conn: s(conn),
            shop_ids: shop_ids.to_vec(),
        })
        .await
    }
    async fn categories(&self, conn: &str) -> Result<Vec<CategoryLink>, StoreError> {
        self.call(Call::Categories { conn: s(conn) }).await
    }
    async fn put_categories(&self, conn: &str, links: &[CategoryLink]) -> Result<(), StoreError> {
        self.call(Call::PutCategories {
            conn: s(conn),
            links: links.to_vec(),
        })
        .await
    }
    async fn put_staged(&self, conn: &str, products: &[CrmProduct]) -> Result<(), StoreError> {
        self.call(Call::PutStaged {
            conn: s(conn),
            products: products.to_vec(),
        })
        .await
    }
    async fn get_staged(&self, conn: &str, ids: &[i64]) -> Result<Vec<CrmProduct>, StoreError> {
        self.call(Call::GetStaged {
            conn: s(conn),
            ids: ids.to_vec(),
        })
        .await
    }
    async fn staged_page(
        &self,
        conn: &str,
        after: Option<String>,
        limit: usize,
    ) -> Result<(Vec<CrmProduct>, Option<String>), StoreError> {
        self.call(Call::StagedPage {
            conn: s(conn),
            after,
            limit,
        })
        .await
    }
    async fn delete_staged(&self, conn: &str, ids: &[i64]) -> Result<(), StoreError> {
        self.call(Call::DeleteStaged {
            conn: s(conn),
            ids: ids.to_vec(),
        })
        .await
    }
    async fn put_seen(
        &self,
        conn: &str,
        mark: i64,
        seq: u32,
        products: &[i64],
        offers: &[i64],
    ) -> Result<(), StoreError> {
        self.call(Call::PutSeen {
            conn: s(conn),
            mark,
            seq,
            products: products.to_vec(),
            offers: offers.to_vec(),
        })
        .await
    }
    async fn seen(&self, conn: &str, mark: i64) -> Result<SeenSet, StoreError> {
        let (p, o): (Vec<i64>, Vec<i64>) = self
            .call(Call::Seen {
                conn: s(conn),
                mark,
            })
            .await?;
        Ok(SeenSet {
            products: p.into_iter().collect(),
            offers: o.into_iter().collect(),
        })
    }
    async fn clear_seen(&self, conn: &str, mark: i64) -> Result<(), StoreError> {
        self.call(Call::ClearSeen {
            conn: s(conn),
            mark,
        })
        .await
    }
}

#[async_trait]
impl SyncStore for Remote {
    async fn acquire(
        &self,
        conn: &str,
        kind: SyncKind,
        holder: &str,
        lease: Duration,
    ) -> Result<Option<SyncLease>, StoreError> {
        self.call(Call::Acquire {
            conn: s(conn),
            kind,
            holder: s(holder),
            lease_ms: lease.as_millis() as u64,
        })
        .await
    }
    async fn checkpoint(
        &self,
        lease: &SyncLease,
        extend_by: Duration,
    ) -> Result<SyncLease, StoreError> {
        // Like the DynamoDB adapter: the written lease is not echoed back.
        self.call::<()>(Call::Checkpoint {
            lease: lease.clone(),
            extend_ms: extend_by.as_millis() as u64,
        })
        .await?;
        Ok(SyncLease {
            until: chrono::Utc::now()
                + chrono::Duration::from_std(extend_by).unwrap_or(chrono::Duration::zero()),
            ..lease.clone()
        })
    }
    async fn finish(&self, lease: &SyncLease) -> Result<(), StoreError> {
        self.call(Call::Finish {
            lease: lease.clone(),
        })
        .await
    }
    async fn pause(&self, lease: &SyncLease) -> Result<(), StoreError> {
        self.call(Call::Pause {
            lease: lease.clone(),
        })
        .await
    }
    async fn unfinished(&self, limit: usize) -> Result<Vec<(String, SyncKind)>, StoreError> {
        self.call(Call::Unfinished { limit }).await
    }
    async fn mark_queued(
        &self,
        conn: &str,
        kind: SyncKind,
        holder: Option<&str>,
        until: chrono::DateTime<chrono::Utc>,
    ) -> Result<bool, StoreError> {
        self.call(Call::MarkQueued {
            conn: s(conn),
            kind,
            holder: holder.map(s),
            until,
        })
        .await
    }
    async fn clear_queued(
        &self,
        conn: &str,
        kind: SyncKind,
        until: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), StoreError> {
        self.call(Call::ClearQueued {
            conn: s(conn),
            kind,
            until,
        })
        .await
    }
    async fn put_run(&self, run: &SyncRun) -> Result<(), StoreError> {
        self.call(Call::PutRun { run: run.clone() }).await
    }
    async fn get_run(&self, conn: &str, run_id: &str) -> Result<Option<SyncRun>, StoreError> {
        self.call(Call::GetRun {
            conn: s(conn),
            run_id: s(run_id),
        })
        .await
    }
    async fn list_runs(&self, conn: &str, limit: usize) -> Result<Vec<SyncRun>, StoreError> {
        self.call(Call::ListRuns {
            conn: s(conn),
            limit,
        })
        .await
    }
}
