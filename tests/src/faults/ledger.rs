//! [`Hooks`] around the store's [`OrderLedger`] port, optionally for one shop order only
//! (a crash that hits the order under test and none of its neighbours).

use super::{Hooks, Nth};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mapping::order_map::MappingReport;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use store::ledger::Created;
use store::{Claim, LedgerEntry, OrderLedger, PushReservation, StoreError, Target};

/// The operations of [`OrderLedger`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LedgerOp {
    Claim,
    MarkAttempt,
    MarkCreated,
    RecordCreated,
    MarkFailed,
    MarkSkipped,
    Release,
    Get,
    FindByKeycrmId,
    Adopt,
    RecordKeycrmStatus,
    RecordShopStatus,
    ReserveShopPush,
    FinishShopPush,
    ReleaseShopPush,
    ResetForRepush,
    Unskip,
    Skipped,
    SampleCreated,
}

/// An [`OrderLedger`] that passes every call to `inner`, with [`Hooks`] around them.
pub struct HookedLedger {
    inner: Arc<dyn OrderLedger>,
    hooks: Hooks<LedgerOp, StoreError>,
    /// When set, only calls about this shop order meet the hooks (and are counted); the
    /// rest, and calls not about one order, go straight to `inner`.
    order: Option<String>,
}

impl HookedLedger {
    pub fn new(inner: Arc<dyn OrderLedger>) -> Self {
        HookedLedger {
            inner,
            hooks: Hooks::default(),
            order: None,
        }
    }

    /// Hooks apply to the calls about this shop order only.
    pub fn only_order(mut self, shop_order_id: impl Into<String>) -> Self {
        self.order = Some(shop_order_id.into());
        self
    }

    /// Runs `f` before every hooked call (see [`Hook`](super::Hook)).
    pub fn before<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(LedgerOp, u32) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), StoreError>> + Send + 'static,
    {
        self.hooks.before(f);
        self
    }

    /// Runs `f` after every hooked call returned from `inner` (see [`Hook`](super::Hook)).
    pub fn after<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(LedgerOp, u32) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), StoreError>> + Send + 'static,
    {
        self.hooks.after(f);
        self
    }

    /// The `nth` calls of `op` fail with the error `error` makes, without reaching `inner`.
    pub fn fail(
        mut self,
        op: LedgerOp,
        nth: Nth,
        error: impl Fn() -> StoreError + Send + Sync + 'static,
    ) -> Self {
        self.hooks.fail_with(op, nth, error);
        self
    }

    pub fn calls(&self, op: LedgerOp) -> u32 {
        self.hooks.calls(op)
    }

    async fn run<T>(
        &self,
        op: LedgerOp,
        shop_order_id: Option<&str>,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        match (&self.order, shop_order_id) {
            (Some(only), Some(o)) if only != o => call.await,
            (Some(_), None) => call.await,
            _ => self.hooks.run(op, call).await,
        }
    }
}

#[async_trait]
impl OrderLedger for HookedLedger {
    async fn claim(
        &self,
        c: &str,
        o: &str,
        t: Target,
        h: &str,
        l: Duration,
        e: &str,
    ) -> Result<Claim, StoreError> {
        let call = self.inner.claim(c, o, t, h, l, e);
        self.run(LedgerOp::Claim, Some(o), call).await
    }
    async fn mark_attempt(&self, c: &str, o: &str, h: &str) -> Result<(), StoreError> {
        let call = self.inner.mark_attempt(c, o, h);
        self.run(LedgerOp::MarkAttempt, Some(o), call).await
    }
    async fn mark_created(
        &self,
        c: &str,
        o: &str,
        h: &str,
        id: i64,
        r: &MappingReport,
        s: Option<&str>,
        k: Option<i64>,
    ) -> Result<(), StoreError> {
        let call = self.inner.mark_created(c, o, h, id, r, s, k);
        self.run(LedgerOp::MarkCreated, Some(o), call).await
    }
    async fn record_created(
        &self,
        c: &str,
        o: &str,
        h: &str,
        created: &Created,
    ) -> Result<(), StoreError> {
        let call = self.inner.record_created(c, o, h, created);
        self.run(LedgerOp::RecordCreated, Some(o), call).await
    }
    async fn mark_failed(
        &self,
        c: &str,
        o: &str,
        h: &str,
        e: &str,
        f: &BTreeMap<String, Vec<String>>,
    ) -> Result<(), StoreError> {
        let call = self.inner.mark_failed(c, o, h, e, f);
        self.run(LedgerOp::MarkFailed, Some(o), call).await
    }
    async fn mark_skipped(&self, c: &str, o: &str, h: &str, r: &str) -> Result<(), StoreError> {
        let call = self.inner.mark_skipped(c, o, h, r);
        self.run(LedgerOp::MarkSkipped, Some(o), call).await
    }
    async fn release(&self, c: &str, o: &str, h: &str, e: &str, m: bool) -> Result<(), StoreError> {
        let call = self.inner.release(c, o, h, e, m);
        self.run(LedgerOp::Release, Some(o), call).await
    }
    async fn get(&self, c: &str, o: &str) -> Result<Option<LedgerEntry>, StoreError> {
        let call = self.inner.get(c, o);
        self.run(LedgerOp::Get, Some(o), call).await
    }
    async fn find_by_keycrm_id(
        &self,
        c: &str,
        t: Target,
        id: i64,
    ) -> Result<Option<LedgerEntry>, StoreError> {
        let call = self.inner.find_by_keycrm_id(c, t, id);
        self.run(LedgerOp::FindByKeycrmId, None, call).await
    }
    async fn adopt(&self, c: &str, o: &str, t: Target, id: i64) -> Result<LedgerEntry, StoreError> {
        let call = self.inner.adopt(c, o, t, id);
        self.run(LedgerOp::Adopt, Some(o), call).await
    }
    async fn record_keycrm_status(
        &self,
        c: &str,
        o: &str,
        k: i64,
        at: DateTime<Utc>,
        s: &str,
    ) -> Result<bool, StoreError> {
        let call = self.inner.record_keycrm_status(c, o, k, at, s);
        self.run(LedgerOp::RecordKeycrmStatus, Some(o), call).await
    }
    async fn record_shop_status(
        &self,
        c: &str,
        o: &str,
        s: &str,
        k: Option<i64>,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let call = self.inner.record_shop_status(c, o, s, k, at);
        self.run(LedgerOp::RecordShopStatus, Some(o), call).await
    }
    async fn reserve_shop_push(
        &self,
        c: &str,
        o: &str,
        at: DateTime<Utc>,
        h: &str,
        lease: Duration,
    ) -> Result<PushReservation, StoreError> {
        let call = self.inner.reserve_shop_push(c, o, at, h, lease);
        self.run(LedgerOp::ReserveShopPush, Some(o), call).await
    }
    async fn finish_shop_push(
        &self,
        c: &str,
        o: &str,
        h: &str,
        s: &str,
        k: Option<i64>,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let call = self.inner.finish_shop_push(c, o, h, s, k, at);
        self.run(LedgerOp::FinishShopPush, Some(o), call).await
    }
    async fn release_shop_push(&self, c: &str, o: &str, h: &str) -> Result<(), StoreError> {
        let call = self.inner.release_shop_push(c, o, h);
        self.run(LedgerOp::ReleaseShopPush, Some(o), call).await
    }
    async fn reset_for_repush(&self, c: &str, o: &str) -> Result<LedgerEntry, StoreError> {
        let call = self.inner.reset_for_repush(c, o);
        self.run(LedgerOp::ResetForRepush, Some(o), call).await
    }
    async fn unskip(&self, c: &str, o: &str) -> Result<LedgerEntry, StoreError> {
        let call = self.inner.unskip(c, o);
        self.run(LedgerOp::Unskip, Some(o), call).await
    }
    async fn skipped(
        &self,
        c: &str,
        since: Option<DateTime<Utc>>,
        limit: usize,
    ) -> Result<Vec<LedgerEntry>, StoreError> {
        let call = self.inner.skipped(c, since, limit);
        self.run(LedgerOp::Skipped, None, call).await
    }
    async fn sample_created(&self, c: &str, limit: usize) -> Result<Vec<LedgerEntry>, StoreError> {
        let call = self.inner.sample_created(c, limit);
        self.run(LedgerOp::SampleCreated, None, call).await
    }
}
