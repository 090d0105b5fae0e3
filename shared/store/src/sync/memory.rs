//! In-memory [`SyncStore`] for unit tests, the local run and benchmarks: the same lease rules
//! as the DynamoDB adapter (a lease is free when absent, paused, or expired).

use crate::sync::{SyncKind, SyncLease, SyncRun, SyncStore};
use crate::StoreError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

#[derive(Clone, Debug)]
struct Slot {
    holder: String,
    until: DateTime<Utc>,
    run: Option<SyncRun>,
    checkpoint: Option<String>,
    /// The run's continuation is queued until then (`SyncStore::mark_queued`).
    queued_until: Option<DateTime<Utc>>,
}

#[derive(Default)]
struct State {
    slots: HashMap<(String, SyncKind), Slot>,
    /// Per connection: `(started_at, run_id)` → run, so listing is newest first by time.
    runs: HashMap<String, BTreeMap<(DateTime<Utc>, String), SyncRun>>,
}

#[derive(Default)]
pub struct MemorySync {
    inner: Mutex<State>,
}

impl MemorySync {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, State>, StoreError> {
        self.inner
            .lock()
            .map_err(|_| StoreError::Unavailable("sync store poisoned".into()))
    }
}

fn after(d: Duration) -> DateTime<Utc> {
    Utc::now() + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::zero())
}

fn lease_of(conn: &str, kind: SyncKind, s: &Slot) -> SyncLease {
    SyncLease {
        connection_id: conn.to_string(),
        kind,
        holder: s.holder.clone(),
        until: s.until,
        run: s.run.clone(),
        checkpoint: s.checkpoint.clone(),
    }
}

#[async_trait]
impl SyncStore for MemorySync {
    async fn acquire(
        &self,
        connection_id: &str,
        kind: SyncKind,
        holder: &str,
        lease: Duration,
    ) -> Result<Option<SyncLease>, StoreError> {
        let mut st = self.lock()?;
        let now = Utc::now();
        let key = (connection_id.to_string(), kind);
        match st.slots.get_mut(&key) {
            Some(s) if s.until > now && s.holder != holder => Ok(None),
            Some(s) => {
                s.holder = holder.to_string();
                s.until = after(lease);
                // Whatever was queued for this run has been consumed: this is it.
                s.queued_until = None;
                Ok(Some(lease_of(connection_id, kind, s)))
            }
            None => {
                let s = Slot {
                    holder: holder.to_string(),
                    until: after(lease),
                    run: None,
                    checkpoint: None,
                    queued_until: None,
                };
                let l = lease_of(connection_id, kind, &s);
                st.slots.insert(key, s);
                Ok(Some(l))
            }
        }
    }

    async fn checkpoint(
        &self,
        lease: &SyncLease,
        extend_by: Duration,
    ) -> Result<SyncLease, StoreError> {
        let mut st = self.lock()?;
        let key = (lease.connection_id.clone(), lease.kind);
        match st.slots.get_mut(&key) {
            Some(s) if s.holder == lease.holder => {
                s.until = after(extend_by);
                s.run.clone_from(&lease.run);
                s.checkpoint.clone_from(&lease.checkpoint);
                Ok(lease_of(&lease.connection_id, lease.kind, s))
            }
            _ => Err(StoreError::Conflict("the sync lease was lost".into())),
        }
    }

    async fn finish(&self, lease: &SyncLease) -> Result<(), StoreError> {
        let mut st = self.lock()?;
        let key = (lease.connection_id.clone(), lease.kind);
        match st.slots.get(&key) {
            Some(s) if s.holder == lease.holder => {
                st.slots.remove(&key);
                Ok(())
            }
            _ => Err(StoreError::Conflict("the sync lease was lost".into())),
        }
    }

    async fn pause(&self, lease: &SyncLease) -> Result<(), StoreError> {
        let mut st = self.lock()?;
        let key = (lease.connection_id.clone(), lease.kind);
        match st.slots.get_mut(&key) {
            Some(s) if s.holder == lease.holder => {
                s.until = Utc::now() - chrono::Duration::milliseconds(1);
                s.run.clone_from(&lease.run);
                s.checkpoint.clone_from(&lease.checkpoint);
                // Paused: nothing is queued for it any more; the resume schedule takes it.
                s.queued_until = None;
                Ok(())
            }
            _ => Err(StoreError::Conflict("the sync lease was lost".into())),
        }
    }

    async fn unfinished(&self, limit: usize) -> Result<Vec<(String, SyncKind)>, StoreError> {
        let st = self.lock()?;
        let now = Utc::now();
        let mut out: Vec<(String, SyncKind)> = st
            .slots
            .iter()
            .filter(|(_, s)| {
                s.checkpoint.is_some() && s.until <= now && s.queued_until.is_none_or(|q| q <= now)
            })
            .map(|(k, _)| k.clone())
            .collect();
        out.sort();
        out.truncate(limit);
        Ok(out)
    }

    async fn mark_queued(
        &self,
        connection_id: &str,
        kind: SyncKind,
        holder: Option<&str>,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut st = self.lock()?;
        let now = Utc::now();
        let Some(s) = st.slots.get_mut(&(connection_id.to_string(), kind)) else {
            return Ok(false);
        };
        let may = match holder {
            Some(h) => s.holder == h,
            None => {
                s.checkpoint.is_some() && s.until <= now && s.queued_until.is_none_or(|q| q <= now)
            }
        };
        if may {
            s.queued_until = Some(until);
        }
        Ok(may)
    }

    async fn clear_queued(
        &self,
        connection_id: &str,
        kind: SyncKind,
        until: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut st = self.lock()?;
        if let Some(s) = st.slots.get_mut(&(connection_id.to_string(), kind)) {
            if s.queued_until == Some(until) {
                s.queued_until = None;
            }
        }
        Ok(())
    }

    async fn put_run(&self, run: &SyncRun) -> Result<(), StoreError> {
        let mut st = self.lock()?;
        let runs = st.runs.entry(run.connection_id.clone()).or_default();
        runs.retain(|(_, id), _| *id != run.run_id);
        let at = run.started_at.unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
        runs.insert((at, run.run_id.clone()), run.clone());
        Ok(())
    }

    async fn get_run(
        &self,
        connection_id: &str,
        run_id: &str,
    ) -> Result<Option<SyncRun>, StoreError> {
        let st = self.lock()?;
        Ok(st.runs.get(connection_id).and_then(|r| {
            r.iter()
                .find(|((_, id), _)| id == run_id)
                .map(|(_, v)| v.clone())
        }))
    }

    async fn list_runs(
        &self,
        connection_id: &str,
        limit: usize,
    ) -> Result<Vec<SyncRun>, StoreError> {
        let st = self.lock()?;
        Ok(st
            .runs
            .get(connection_id)
            .map(|r| r.values().rev().take(limit).cloned().collect())
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn leases_exclude_pause_and_resume() {
        let s = MemorySync::new();
        let long = Duration::from_secs(60);
        let mut a = s
            .acquire("c", SyncKind::Full, "a", long)
            .await
            .unwrap()
            .unwrap();
        assert!(s
            .acquire("c", SyncKind::Full, "b", long)
            .await
            .unwrap()
            .is_none());
        assert!(
            s.acquire("c", SyncKind::Prices, "b", long)
                .await
                .unwrap()
                .is_some(),
            "per kind"
        );
        a.checkpoint = Some("page 3".into());
        let a = s.checkpoint(&a, long).await.unwrap();
        assert!(
            s.unfinished(10).await.unwrap().is_empty(),
            "held leases are not resumable"
        );
        s.pause(&a).await.unwrap();
        assert_eq!(
            s.unfinished(10).await.unwrap(),
            vec![("c".to_string(), SyncKind::Full)]
        );
        let b = s
            .acquire("c", SyncKind::Full, "b", long)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(b.checkpoint.as_deref(), Some("page 3"));
        assert!(
            matches!(s.checkpoint(&a, long).await, Err(StoreError::Conflict(_))),
            "a lost it"
        );
        s.finish(&b).await.unwrap();
        let c = s
            .acquire("c", SyncKind::Full, "c", long)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(c.checkpoint, None);
    }

    #[tokio::test]
    async fn expired_leases_are_taken_over() {
        let s = MemorySync::new();
        s.acquire("c", SyncKind::Full, "a", Duration::from_millis(1))
            .await
            .unwrap()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(s
            .acquire("c", SyncKind::Full, "b", Duration::from_secs(5))
            .await
            .unwrap()
            .is_some());
    }

    #[tokio::test]
    async fn runs_are_listed_newest_first_and_replaced_by_id() {
        let s = MemorySync::new();
        let t0 = Utc::now();
        for (i, id) in ["r1", "r2", "r3"].iter().enumerate() {
            s.put_run(&SyncRun {
                run_id: id.to_string(),
                connection_id: "c".into(),
                started_at: Some(t0 + chrono::Duration::seconds(i as i64)),
                state: crate::RunState::Running,
                ..SyncRun::default()
            })
            .await
            .unwrap();
        }
        let mut r2 = s.get_run("c", "r2").await.unwrap().unwrap();
        r2.state = crate::RunState::Completed;
        s.put_run(&r2).await.unwrap();
        let ids: Vec<String> = s
            .list_runs("c", 10)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.run_id)
            .collect();
        assert_eq!(ids, vec!["r3", "r2", "r1"]);
        assert_eq!(
            s.get_run("c", "r2").await.unwrap().unwrap().state,
            "completed"
        );
        assert_eq!(s.list_runs("c", 1).await.unwrap().len(), 1);
        assert!(s.get_run("c", "nope").await.unwrap().is_none());
    }
}
