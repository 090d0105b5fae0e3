//! Fault injection around a port: a wrapper that passes every call through to the real adapter
//! and runs hooks before and after chosen calls — fail the Nth call (or every call) with a
//! given error, hold a call until the test releases it, hang after the write committed (a
//! Lambda killed at its timeout), or change the world mid-call (a merchant deleting the
//! connection). Tests write one closure instead of a hand-written copy of the whole trait.
//!
//! [`Hooks`] is the port-independent part (per-operation call counting, hook lists); one
//! module per port applies it: [`HookedCatalog`] (the shop's `ShopCatalog`) and
//! [`HookedLedger`] (the store's `OrderLedger`).

use futures::future::BoxFuture;
use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

mod catalog;
mod ledger;

pub use catalog::{CatalogOp, HookedCatalog};
pub use ledger::{HookedLedger, LedgerOp};

/// Which calls of an operation a fault applies to. Calls are counted per operation from 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nth {
    Every,
    /// Only the call with this (0-based) index.
    Call(u32),
    /// This call and every later one.
    From(u32),
}

impl Nth {
    pub fn matches(self, n: u32) -> bool {
        match self {
            Nth::Every => true,
            Nth::Call(k) => n == k,
            Nth::From(k) => n >= k,
        }
    }
}

/// A hook: gets the operation and the index of this call of it; an `Err` becomes the call's
/// answer (before the call: the adapter is never reached; after: the write happened but the
/// caller sees the error, as when a process dies between the two).
pub type Hook<Op, E> = Arc<dyn Fn(Op, u32) -> BoxFuture<'static, Result<(), E>> + Send + Sync>;

/// The hooks of one wrapped port and its per-operation call counts.
pub struct Hooks<Op, E> {
    before: Vec<Hook<Op, E>>,
    after: Vec<Hook<Op, E>>,
    calls: Mutex<HashMap<Op, u32>>,
}

impl<Op, E> Default for Hooks<Op, E> {
    fn default() -> Self {
        Hooks {
            before: Vec::new(),
            after: Vec::new(),
            calls: Mutex::new(HashMap::new()),
        }
    }
}

fn hook<Op, E, F, Fut>(f: F) -> Hook<Op, E>
where
    F: Fn(Op, u32) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
{
    Arc::new(move |op, n| Box::pin(f(op, n)))
}

impl<Op, E> Hooks<Op, E>
where
    Op: Copy + Eq + Hash + Send + Sync + 'static,
    E: Send + Sync + 'static,
{
    pub fn before<F, Fut>(&mut self, f: F)
    where
        F: Fn(Op, u32) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
    {
        self.before.push(hook(f));
    }

    pub fn after<F, Fut>(&mut self, f: F)
    where
        F: Fn(Op, u32) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
    {
        self.after.push(hook(f));
    }

    /// The `nth` calls of `op` fail with an error `error` makes, without reaching the adapter
    /// (for ports whose error is not `Clone`).
    pub fn fail_with(&mut self, op: Op, nth: Nth, error: impl Fn() -> E + Send + Sync + 'static) {
        self.before(move |o, n| {
            let r = if o == op && nth.matches(n) {
                Err(error())
            } else {
                Ok(())
            };
            async move { r }
        });
    }

    /// How many times `op` was called so far.
    pub fn calls(&self, op: Op) -> u32 {
        let calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        calls.get(&op).copied().unwrap_or(0)
    }

    /// Runs `call` between the hooks, counting it.
    pub async fn run<T, Fut>(&self, op: Op, call: Fut) -> Result<T, E>
    where
        Fut: Future<Output = Result<T, E>>,
    {
        let n = {
            let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
            let c = calls.entry(op).or_insert(0);
            *c += 1;
            *c - 1
        };
        for h in &self.before {
            h(op, n).await?;
        }
        let out = call.await;
        for h in &self.after {
            h(op, n).await?;
        }
        out
    }
}

impl<Op, E> Hooks<Op, E>
where
    Op: Copy + Eq + Hash + Send + Sync + 'static,
    E: Clone + Send + Sync + 'static,
{
    /// The `nth` calls of `op` fail with `error`, without reaching the adapter.
    pub fn fail(&mut self, op: Op, nth: Nth, error: E) {
        self.fail_with(op, nth, move || error.clone());
    }
}
