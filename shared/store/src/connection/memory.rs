//! The in-memory [`ConnectionStore`].

use crate::connection::{Connection, ConnectionStore};
use crate::StoreError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::Mutex;

/// The in-memory adapter (unit tests, local run). Each in-memory port keeps its own data, so
/// `purge` has nothing to remove here; the deletion mark behaves as in DynamoDB.
#[derive(Default)]
pub struct MemoryConnections {
    inner: Mutex<MemoryState>,
}

#[derive(Default)]
struct MemoryState {
    live: HashMap<String, Connection>,
    deleting: HashMap<String, (Connection, DateTime<Utc>)>,
}

impl MemoryConnections {
    fn lock(&self) -> Result<std::sync::MutexGuard<'_, MemoryState>, StoreError> {
        self.inner
            .lock()
            .map_err(|_| StoreError::Unavailable("poisoned".into()))
    }
}

#[async_trait]
impl ConnectionStore for MemoryConnections {
    async fn create(&self, c: &Connection) -> Result<(), StoreError> {
        let mut m = self.lock()?;
        if m.live.values().any(|x| x.shop_id == c.shop_id)
            || m.live.contains_key(&c.id)
            || m.deleting.contains_key(&c.id)
        {
            return Err(StoreError::AlreadyExists(format!(
                "shop {} already has a KeyCRM connection",
                c.shop_id
            )));
        }
        m.live.insert(c.id.clone(), c.clone());
        Ok(())
    }

    async fn get(&self, id: &str) -> Result<Option<Connection>, StoreError> {
        Ok(self.lock()?.live.get(id).cloned())
    }

    async fn get_by_shop(&self, shop_id: &str) -> Result<Option<Connection>, StoreError> {
        Ok(self
            .lock()?
            .live
            .values()
            .find(|c| c.shop_id == shop_id)
            .cloned())
    }

    async fn update(&self, c: &Connection) -> Result<(), StoreError> {
        let mut m = self.lock()?;
        match m.live.get(&c.id) {
            Some(old) if old.version + 1 == c.version => {
                m.live.insert(c.id.clone(), c.clone());
                Ok(())
            }
            Some(_) => Err(StoreError::Conflict(format!(
                "connection {} changed since it was read",
                c.id
            ))),
            None if m.deleting.contains_key(&c.id) => Err(StoreError::Conflict(format!(
                "connection {} changed since it was read",
                c.id
            ))),
            None => Err(StoreError::NotFound(format!("connection {}", c.id))),
        }
    }

    async fn mark_deleting(&self, c: &Connection) -> Result<(), StoreError> {
        let mut m = self.lock()?;
        match m.live.get(&c.id) {
            Some(old) if old.version == c.version => {
                if let Some(old) = m.live.remove(&c.id) {
                    m.deleting.insert(c.id.clone(), (old, Utc::now()));
                }
                Ok(())
            }
            _ => Err(StoreError::Conflict(format!(
                "connection {} changed since it was read",
                c.id
            ))),
        }
    }

    async fn get_deleting(
        &self,
        id: &str,
    ) -> Result<Option<(Connection, DateTime<Utc>)>, StoreError> {
        Ok(self.lock()?.deleting.get(id).cloned())
    }

    async fn list_deleting(
        &self,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<(Vec<String>, Option<String>), StoreError> {
        let m = self.lock()?;
        let mut ids: Vec<String> = m
            .deleting
            .keys()
            .filter(|id| cursor.as_deref().is_none_or(|after| id.as_str() > after))
            .cloned()
            .collect();
        ids.sort();
        let limit = limit.max(1);
        if ids.len() > limit {
            ids.truncate(limit);
            let next = ids.last().cloned();
            Ok((ids, next))
        } else {
            Ok((ids, None))
        }
    }

    async fn purge(&self, id: &str, _max_items: usize) -> Result<bool, StoreError> {
        if self.lock()?.deleting.contains_key(id) {
            Ok(true)
        } else {
            Err(StoreError::Conflict(format!(
                "connection {id} is not marked as deleted"
            )))
        }
    }

    async fn remove(&self, id: &str) -> Result<(), StoreError> {
        let mut m = self.lock()?;
        if m.live.contains_key(id) {
            return Err(StoreError::Conflict(format!(
                "connection {id} is not marked as deleted"
            )));
        }
        m.deleting.remove(id);
        Ok(())
    }

    async fn list(
        &self,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<(Vec<Connection>, Option<String>), StoreError> {
        let m = self.lock()?;
        let mut all: Vec<&Connection> = m.live.values().collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        let page: Vec<Connection> = all
            .into_iter()
            .filter(|c| cursor.as_deref().is_none_or(|after| c.id.as_str() > after))
            .take(limit.max(1) + 1)
            .cloned()
            .collect();
        if page.len() > limit.max(1) {
            let mut page = page;
            page.pop();
            let next = page.last().map(|c| c.id.clone());
            Ok((page, next))
        } else {
            Ok((page, None))
        }
    }
}
