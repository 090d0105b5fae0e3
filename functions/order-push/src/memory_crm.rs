//! A transport-free KeyCRM behind the [`CrmApi`] port, for unit tests and the CPU benchmark.
//! It serialises every body as the HTTP client would (so serialisation cost is measured),
//! keeps what was created, and can be told to fail the next writes in the ways KeyCRM does.
//! Not for production wiring: behind the `test-kit` feature.

use crate::crm::{CardCandidate, CardCandidateContact, CardPage, CrmApi, CrmProvider};
use async_trait::async_trait;
use chrono::{DateTime, Timelike, Utc};
use keycrm::models::{NewCard, NewOrder, Order};
use keycrm::KeycrmError;
use mapping::{KeycrmReference, OrderSyncType};
use runtime::ClientsError;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use store::Connection;

/// How the next write fails.
#[derive(Clone, Debug)]
pub enum MemoryCrmFault {
    RateLimited(Duration),
    /// 5xx before anything was stored.
    Unavailable,
    /// Stored, then the answer was lost (a timeout after the commit).
    CommitThenTimeout,
    Validation(BTreeMap<String, Vec<String>>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct MemoryCard {
    pub id: i64,
    pub status_id: i64,
    pub created_at: DateTime<Utc>,
    pub body: NewCard,
}

#[derive(Default)]
struct State {
    orders: Vec<(Order, NewOrder)>,
    cards: Vec<MemoryCard>,
    next_id: i64,
    /// Pending faults, each for one kind of write (`None`: any write).
    faults: VecDeque<(Option<&'static str>, MemoryCrmFault)>,
    requests: BTreeMap<&'static str, u64>,
    bytes_sent: u64,
    latency: Duration,
}

pub struct MemoryCrm {
    reference: KeycrmReference,
    /// When true, created bodies are not kept (the benchmark measures the consumer, not this).
    forgetful: bool,
    state: Mutex<State>,
}

impl MemoryCrm {
    pub fn new(reference: KeycrmReference) -> Self {
        MemoryCrm {
            reference,
            forgetful: false,
            state: Mutex::new(State {
                next_id: 5001,
                ..State::default()
            }),
        }
    }

    /// An in-memory KeyCRM that keeps only counters.
    pub fn forgetful(reference: KeycrmReference) -> Self {
        MemoryCrm {
            forgetful: true,
            ..Self::new(reference)
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes every create answer this long after it is stored (deadline tests).
    pub fn set_latency(&self, latency: Duration) {
        self.lock().latency = latency;
    }

    async fn pause(&self) {
        let latency = self.lock().latency;
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
    }

    /// Fails the next writes, whatever they are.
    pub fn fail_next(&self, faults: impl IntoIterator<Item = MemoryCrmFault>) {
        self.lock()
            .faults
            .extend(faults.into_iter().map(|f| (None, f)));
    }

    /// Fails the next writes of one kind (`create_order`, `set_order_status`, …).
    pub fn fail_next_on(&self, op: &'static str, faults: impl IntoIterator<Item = MemoryCrmFault>) {
        self.lock()
            .faults
            .extend(faults.into_iter().map(|f| (Some(op), f)));
    }

    pub fn orders(&self) -> Vec<(Order, NewOrder)> {
        self.lock().orders.clone()
    }

    pub fn cards(&self) -> Vec<MemoryCard> {
        self.lock().cards.clone()
    }

    /// Requests by kind: `create_order`, `find_orders`, `set_order_status`, `create_card`,
    /// `cards_page`, `set_card_status`, `load_reference`.
    pub fn requests(&self) -> BTreeMap<&'static str, u64> {
        self.lock().requests.clone()
    }

    pub fn total_requests(&self) -> u64 {
        self.lock().requests.values().sum()
    }

    pub fn bytes_sent(&self) -> u64 {
        self.lock().bytes_sent
    }

    /// Moves a created order to a status, as a manager would.
    pub fn set_status(&self, order_id: i64, status_id: i64) {
        let mut s = self.lock();
        if let Some((o, _)) = s.orders.iter_mut().find(|(o, _)| o.id == order_id) {
            o.status_id = status_id;
        }
    }

    fn count(&self, s: &mut State, what: &'static str) {
        *s.requests.entry(what).or_default() += 1;
    }

    /// Applies a pending fault to a write; `Ok(true)` = store it but report a lost answer.
    fn write_fault(s: &mut State, op: &'static str) -> Result<bool, KeycrmError> {
        let next = s
            .faults
            .iter()
            .position(|(for_op, _)| for_op.is_none_or(|o| o == op))
            .and_then(|i| s.faults.remove(i))
            .map(|(_, f)| f);
        match next {
            None => Ok(false),
            Some(MemoryCrmFault::RateLimited(d)) => {
                Err(KeycrmError::RateLimited { retry_after: d })
            }
            Some(MemoryCrmFault::Unavailable) => Err(KeycrmError::Transient {
                status: Some(503),
                detail: "HTTP 503".into(),
                maybe_committed: true,
            }),
            Some(MemoryCrmFault::CommitThenTimeout) => Ok(true),
            Some(MemoryCrmFault::Validation(errors)) => Err(KeycrmError::Validation {
                message: "The given data was invalid.".into(),
                errors,
            }),
        }
    }
}

fn lost_answer() -> KeycrmError {
    KeycrmError::Transient {
        status: None,
        detail: "timed out".into(),
        maybe_committed: true,
    }
}

#[async_trait]
impl CrmApi for MemoryCrm {
    async fn create_order(&self, body: &NewOrder) -> Result<Order, KeycrmError> {
        let bytes = serde_json::to_vec(body).map_err(|e| KeycrmError::Protocol {
            detail: e.to_string(),
        })?;
        let (order, lose_answer) = {
            let mut s = self.lock();
            self.count(&mut s, "create_order");
            s.bytes_sent += bytes.len() as u64;
            let lose_answer = Self::write_fault(&mut s, "create_order")?;
            let id = s.next_id;
            s.next_id += 1;
            let order = Order {
                id,
                source_id: Some(body.source_id),
                source_uuid: body.source_uuid.clone(),
                status_id: 1,
                ..Order::default()
            };
            if !self.forgetful {
                s.orders.push((order.clone(), body.clone()));
            }
            (order, lose_answer)
        };
        // Like KeyCRM: stored first, answered after the latency.
        self.pause().await;
        if lose_answer {
            return Err(lost_answer());
        }
        Ok(order)
    }

    async fn find_orders(
        &self,
        source_uuid: &str,
        source_id: Option<i64>,
    ) -> Result<Vec<Order>, KeycrmError> {
        let mut s = self.lock();
        self.count(&mut s, "find_orders");
        Ok(s.orders
            .iter()
            .map(|(o, _)| o)
            .filter(|o| o.source_uuid.as_deref() == Some(source_uuid))
            .filter(|o| source_id.is_none() || o.source_id == source_id)
            .cloned()
            .collect())
    }

    async fn set_order_status(&self, order_id: i64, status_id: i64) -> Result<(), KeycrmError> {
        let mut s = self.lock();
        self.count(&mut s, "set_order_status");
        if Self::write_fault(&mut s, "set_order_status")? {
            return Err(lost_answer());
        }
        match s.orders.iter_mut().find(|(o, _)| o.id == order_id) {
            Some((o, _)) => {
                o.status_id = status_id;
                Ok(())
            }
            None if self.forgetful => Ok(()),
            None => Err(KeycrmError::NotFound {
                what: format!("/order/{order_id}"),
            }),
        }
    }

    async fn create_card(&self, body: &NewCard) -> Result<(i64, i64), KeycrmError> {
        let bytes = serde_json::to_vec(body).map_err(|e| KeycrmError::Protocol {
            detail: e.to_string(),
        })?;
        let (id, status_id, lose_answer) = {
            let mut s = self.lock();
            self.count(&mut s, "create_card");
            s.bytes_sent += bytes.len() as u64;
            let lose_answer = Self::write_fault(&mut s, "create_card")?;
            let id = s.next_id;
            s.next_id += 1;
            let status_id = self
                .reference
                .pipeline(body.pipeline_id)
                .and_then(|p| p.statuses.first())
                .map(|st| st.id)
                .unwrap_or(1);
            if !self.forgetful {
                s.cards.push(MemoryCard {
                    id,
                    status_id,
                    created_at: Utc::now(),
                    body: body.clone(),
                });
            }
            (id, status_id, lose_answer)
        };
        self.pause().await;
        if lose_answer {
            return Err(lost_answer());
        }
        Ok((id, status_id))
    }

    async fn cards_page(
        &self,
        (from, to): (DateTime<Utc>, DateTime<Utc>),
        with_contact: bool,
        page: u32,
    ) -> Result<CardPage, KeycrmError> {
        let mut s = self.lock();
        self.count(&mut s, "cards_page");
        // As KeyCRM lists them: ascending id, 50 a page, created_at in whole seconds.
        let mut all: Vec<&MemoryCard> = s
            .cards
            .iter()
            .filter(|c| c.created_at >= from && c.created_at <= to)
            .collect();
        all.sort_by_key(|c| c.id);
        let last_page = u32::try_from(all.len().div_ceil(50))
            .unwrap_or(u32::MAX)
            .max(1);
        let start = (page.max(1) as usize - 1) * 50;
        let cards = all
            .iter()
            .skip(start)
            .take(50)
            .map(|c| CardCandidate {
                id: c.id,
                title: c.body.title.clone(),
                manager_comment: c.body.manager_comment.clone(),
                created_at: c.created_at.with_nanosecond(0),
                pipeline_id: Some(c.body.pipeline_id),
                source_id: c.body.source_id,
                status_id: c.status_id,
                contact: with_contact.then(|| CardCandidateContact {
                    full_name: c.body.contact.full_name.clone(),
                    email: c.body.contact.email.clone(),
                    phone: c.body.contact.phone.clone(),
                }),
            })
            .collect();
        Ok(CardPage { cards, last_page })
    }

    async fn set_card_status(&self, card_id: i64, status_id: i64) -> Result<(), KeycrmError> {
        let mut s = self.lock();
        self.count(&mut s, "set_card_status");
        if Self::write_fault(&mut s, "set_card_status")? {
            return Err(lost_answer());
        }
        match s.cards.iter_mut().find(|c| c.id == card_id) {
            Some(c) => {
                c.status_id = status_id;
                Ok(())
            }
            None if self.forgetful => Ok(()),
            None => Err(KeycrmError::NotFound {
                what: format!("/pipelines/cards/{card_id}"),
            }),
        }
    }

    async fn load_reference(&self, _sync: OrderSyncType) -> Result<KeycrmReference, KeycrmError> {
        let mut s = self.lock();
        self.count(&mut s, "load_reference");
        Ok(self.reference.clone())
    }
}

/// Hands the same in-memory KeyCRM to every connection.
pub struct MemoryCrmProvider(pub Arc<MemoryCrm>);

#[async_trait]
impl CrmProvider for MemoryCrmProvider {
    async fn crm_for(&self, _conn: &Connection) -> Result<Arc<dyn CrmApi>, ClientsError> {
        Ok(self.0.clone())
    }
}
