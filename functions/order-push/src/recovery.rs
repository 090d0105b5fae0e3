//! Finding what an earlier attempt may have created, before creating again. Exact, bounded
//! in requests, and independent of KeyCRM's time zone (`docs/order-push.md`, "Recovery").
//!
//! Every create names the shop order with its shop-scoped key (`mapping::source_key`): the
//! `source_uuid` of an order, a marker line in the manager comment of a card. Recovery looks
//! for exactly that name, in whatever source the order landed (the merchant may have changed
//! the source between two attempts), so another shop's orders on the same KeyCRM account
//! never match.
//!
//! - **Orders**: `GET /order?filter[source_uuid]=<shop>:<order>`, one request. Entries an
//!   older version attempted (`LedgerEntry::scoped_key` false) may hold an order named by the
//!   bare id: a second request looks for that, and such an order counts only if it is in the
//!   connection's source or was ordered at the shop order's exact creation time.
//! - **Cards** have no searchable name. KeyCRM lists them in id (= creation) order, 50 a
//!   page, and filters them only by creation time. The search lists a coarse window (the
//!   attempt's time ± a day, so any time zone KeyCRM reads the filter in is covered),
//!   binary-searches its pages by the `created_at` KeyCRM returns (UTC) for the attempt's
//!   narrow window, and reads those pages for the marker line. That is 1 + log₂(pages) +
//!   a page or two, however late the retry; a listing that does not keep the expected order
//!   makes the search fail (retry later) rather than guess.

use crate::crm::{CardCandidate, CardPage, CrmApi};
use chrono::{DateTime, Utc};
use keycrm::models::{NewCard, Order};
use keycrm::KeycrmError;
use mapping::source_key;
use std::collections::HashMap;
use std::time::Duration;

/// How far the coarse listing reaches around the attempt's window: more than any time-zone
/// offset KeyCRM could apply to the filter.
const COARSE_MARGIN_HOURS: i64 = 26;
/// Requests one card search may make.
pub const MAX_CARD_SEARCH_REQUESTS: u32 = 24;
/// Pages of the narrow window read for the marker (50 cards each).
const MAX_SCAN_PAGES: u32 = 6;

/// The window a card created by an attempt started at `started` must have been created in:
/// from the start (less the clock-skew margin) to the end of the attempt's claim, or now if
/// earlier (plus the margin).
pub fn card_window(
    started: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    lease: Duration,
    margin: Duration,
) -> (DateTime<Utc>, DateTime<Utc>) {
    let margin = chrono::Duration::from_std(margin).unwrap_or(chrono::Duration::minutes(5));
    let lease = chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::minutes(5));
    // Without a recorded start (an entry written before the field existed), look back a day.
    let start = started.unwrap_or(now - chrono::Duration::days(1));
    let end = start.checked_add_signed(lease).unwrap_or(now).min(now);
    (start - margin, end + margin)
}

fn same_phone(a: &str, b: &str) -> bool {
    let norm = |p: &str| mapping::phone::normalize(p).unwrap_or_else(|| p.trim().to_string());
    norm(a) == norm(b)
}

fn same_text(a: &str, b: &str) -> bool {
    a.trim().to_lowercase() == b.trim().to_lowercase()
}

/// How an older version recognised its cards (no marker then): title and buyer contact.
/// Used only for ledger entries such a version attempted.
pub fn is_legacy_card(c: &CardCandidate, body: &NewCard) -> bool {
    if c.title.as_deref().map(str::trim) != body.title.as_deref().map(str::trim) {
        return false;
    }
    let contact = c.contact.clone().unwrap_or_default();
    let want = &body.contact;
    if let Some(p) = &want.phone {
        return contact.phone.as_deref().is_some_and(|cp| same_phone(cp, p));
    }
    if let Some(e) = &want.email {
        return contact.email.as_deref().is_some_and(|ce| same_text(ce, e));
    }
    if let Some(n) = &want.full_name {
        return contact
            .full_name
            .as_deref()
            .is_some_and(|cn| same_text(cn, n));
    }
    false
}

/// What makes a card the one an earlier attempt created.
pub struct CardQuery<'a> {
    pub shop_id: &'a str,
    pub order_id: &'a str,
    /// The body an older version would have sent, for entries it attempted.
    pub legacy: Option<&'a NewCard>,
    /// Where its creation time must lie ([`card_window`]).
    pub window: (DateTime<Utc>, DateTime<Utc>),
}

impl CardQuery<'_> {
    fn matches(&self, c: &CardCandidate) -> bool {
        source_key::has_card_marker(c.manager_comment.as_deref(), self.shop_id, self.order_id)
            || self.legacy.is_some_and(|b| is_legacy_card(c, b))
    }
}

fn inconclusive(why: &str) -> KeycrmError {
    KeycrmError::Protocol {
        detail: format!("card recovery inconclusive: {why}; it is tried again later"),
    }
}

/// Pages fetched so far, so no page is asked for twice.
struct Pager<'a> {
    crm: &'a dyn CrmApi,
    coarse: (DateTime<Utc>, DateTime<Utc>),
    with_contact: bool,
    pages: HashMap<u32, CardPage>,
    requests: u32,
}

impl Pager<'_> {
    async fn get(&mut self, page: u32) -> Result<&CardPage, KeycrmError> {
        if !self.pages.contains_key(&page) {
            if self.requests >= MAX_CARD_SEARCH_REQUESTS {
                return Err(inconclusive("too many pages"));
            }
            self.requests += 1;
            let p = self
                .crm
                .cards_page(self.coarse, self.with_contact, page)
                .await?;
            check_order(&p)?;
            self.pages.insert(page, p);
        }
        self.pages
            .get(&page)
            .ok_or_else(|| inconclusive("page vanished"))
    }
}

/// The listing must be in creation order (ascending ids, non-decreasing `created_at`): the
/// binary search relies on it, so anything else stops the search instead of misleading it.
fn check_order(p: &CardPage) -> Result<(), KeycrmError> {
    for pair in p.cards.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        let times = match (a.created_at, b.created_at) {
            (Some(x), Some(y)) => x <= y,
            _ => false,
        };
        if a.id >= b.id || !times {
            return Err(inconclusive("the card listing is not in creation order"));
        }
    }
    if p.cards.iter().any(|c| c.created_at.is_none()) {
        return Err(inconclusive("a card without its creation time"));
    }
    Ok(())
}

/// The card an earlier attempt created, if any: `(id, status_id)`, the oldest match.
pub async fn find_card(
    crm: &dyn CrmApi,
    q: &CardQuery<'_>,
) -> Result<Option<(i64, i64)>, KeycrmError> {
    let coarse = chrono::Duration::hours(COARSE_MARGIN_HOURS);
    let mut pager = Pager {
        crm,
        coarse: (q.window.0 - coarse, q.window.1 + coarse),
        with_contact: q.legacy.is_some(),
        pages: HashMap::new(),
        requests: 0,
    };
    let last = pager.get(1).await?.last_page.max(1);
    // First page whose newest card is not older than the window.
    let (mut lo, mut hi) = (1u32, last);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let newest = pager
            .get(mid)
            .await?
            .cards
            .last()
            .and_then(|c| c.created_at);
        match newest {
            Some(t) if t < q.window.0 => lo = mid + 1,
            // Older pages cannot hold it; an empty page is past the end.
            _ => hi = mid,
        }
    }
    let mut found: Option<(i64, i64)> = None;
    let mut page = lo;
    let mut scanned = 0;
    loop {
        let p = pager.get(page).await?;
        for c in p.cards.iter().filter(|c| q.matches(c)) {
            if found.is_none_or(|(id, _)| c.id < id) {
                found = Some((c.id, c.status_id));
            }
        }
        let past_window = p
            .cards
            .last()
            .and_then(|c| c.created_at)
            .is_none_or(|t| t > q.window.1);
        if past_window || page >= last {
            return Ok(found);
        }
        scanned += 1;
        if scanned >= MAX_SCAN_PAGES {
            return Err(inconclusive("too many cards created within minutes"));
        }
        page += 1;
    }
}

/// The order an earlier attempt created under the shop-scoped name: `(id, status_id)`.
pub fn pick_order(found: &[Order], source_uuid: &str) -> Option<(i64, i64)> {
    found
        .iter()
        .filter(|o| o.source_uuid.as_deref() == Some(source_uuid))
        .min_by_key(|o| o.id)
        .map(|o| (o.id, o.status_id))
}

/// An order an older version created under the bare shop order id. The bare id does not say
/// which shop it belongs to, so it must also be in the connection's source, or carry the
/// shop order's exact creation time (`ordered_at`, sent on create) when the source changed.
pub fn pick_legacy_order(
    found: &[Order],
    order_id: &str,
    source_id: i64,
    created_at: DateTime<Utc>,
) -> Option<(i64, i64)> {
    let to_second = |t: DateTime<Utc>| t.timestamp();
    found
        .iter()
        .filter(|o| o.source_uuid.as_deref() == Some(order_id))
        .filter(|o| {
            o.source_id == Some(source_id)
                || o.ordered_at.map(to_second) == Some(to_second(created_at))
        })
        .min_by_key(|o| o.id)
        .map(|o| (o.id, o.status_id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crm::CardCandidateContact;
    use async_trait::async_trait;
    use keycrm::models::CardContact;
    use mapping::{KeycrmReference, OrderSyncType};
    use std::sync::Mutex;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    fn card(id: i64, created: i64, comment: Option<String>) -> CardCandidate {
        CardCandidate {
            id,
            title: Some(format!("Замовлення №{id}")),
            manager_comment: comment,
            created_at: Some(at(created)),
            status_id: 7,
            ..CardCandidate::default()
        }
    }

    /// KeyCRM's card listing: ascending ids, 50 a page, filtered by creation time.
    struct Listing {
        cards: Vec<CardCandidate>,
        requests: Mutex<u32>,
        /// Serve pages in descending order (a listing that breaks the assumption).
        descending: bool,
    }

    #[async_trait]
    impl CrmApi for Listing {
        async fn create_order(&self, _: &keycrm::models::NewOrder) -> Result<Order, KeycrmError> {
            unreachable!()
        }
        async fn find_orders(&self, _: &str, _: Option<i64>) -> Result<Vec<Order>, KeycrmError> {
            unreachable!()
        }
        async fn set_order_status(&self, _: i64, _: i64) -> Result<(), KeycrmError> {
            unreachable!()
        }
        async fn create_card(&self, _: &NewCard) -> Result<(i64, i64), KeycrmError> {
            unreachable!()
        }
        async fn cards_page(
            &self,
            (from, to): (DateTime<Utc>, DateTime<Utc>),
            _with_contact: bool,
            page: u32,
        ) -> Result<CardPage, KeycrmError> {
            *self.requests.lock().unwrap() += 1;
            let mut all: Vec<CardCandidate> = self
                .cards
                .iter()
                .filter(|c| c.created_at.is_some_and(|t| t >= from && t <= to))
                .cloned()
                .collect();
            if self.descending {
                all.reverse();
            }
            let last_page = (all.len().div_ceil(50) as u32).max(1);
            let cards = all
                .into_iter()
                .skip((page as usize - 1) * 50)
                .take(50)
                .collect();
            Ok(CardPage { cards, last_page })
        }
        async fn set_card_status(&self, _: i64, _: i64) -> Result<(), KeycrmError> {
            unreachable!()
        }
        async fn load_reference(&self, _: OrderSyncType) -> Result<KeycrmReference, KeycrmError> {
            unreachable!()
        }
    }

    fn marker(shop: &str, order: &str) -> Option<String> {
        Some(format!(
            "Коментар\n{}",
            source_key::card_marker(shop, order)
        ))
    }

    /// A busy account: `n` cards a minute apart over many days, two shops interleaved.
    fn busy(n: i64) -> Vec<CardCandidate> {
        (0..n)
            .map(|i| {
                let shop = if i % 2 == 0 { "s1" } else { "s2" };
                card(1000 + i, i * 60, marker(shop, &format!("o{i}")))
            })
            .collect()
    }

    fn query<'a>(order: &'a str, started: i64) -> CardQuery<'a> {
        CardQuery {
            shop_id: "s1",
            order_id: order,
            legacy: None,
            window: card_window(
                Some(at(started)),
                at(started + 30),
                Duration::from_secs(300),
                Duration::from_secs(300),
            ),
        }
    }

    #[tokio::test]
    async fn the_marked_card_is_found_exactly_in_few_requests_however_late() {
        // 20 000 cards (two weeks at one a minute): a late re-push must not page through days.
        let l = Listing {
            cards: busy(20_000),
            requests: Mutex::new(0),
            descending: false,
        };
        let found = find_card(&l, &query("o12000", 12_000 * 60)).await.unwrap();
        assert_eq!(found, Some((13_000, 7)));
        let requests = *l.requests.lock().unwrap();
        assert!(requests <= 10, "{requests} requests");
        // The other shop's card with the same order number is never taken.
        let mut q = query("o12001", 12_001 * 60);
        q.shop_id = "s1";
        assert_eq!(find_card(&l, &q).await.unwrap(), None);
        // Nothing created: a definite "no".
        assert_eq!(
            find_card(&l, &query("o-none", 5_000 * 60)).await.unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn small_accounts_cost_one_request() {
        let l = Listing {
            cards: busy(30),
            requests: Mutex::new(0),
            descending: false,
        };
        assert_eq!(
            find_card(&l, &query("o10", 600)).await.unwrap(),
            Some((1010, 7))
        );
        assert_eq!(*l.requests.lock().unwrap(), 1);
    }

    #[tokio::test]
    async fn a_listing_out_of_creation_order_stops_the_search() {
        let l = Listing {
            cards: busy(200),
            requests: Mutex::new(0),
            descending: true,
        };
        let err = find_card(&l, &query("o10", 600)).await.unwrap_err();
        assert!(err.to_string().contains("inconclusive"), "{err}");
    }

    #[tokio::test]
    async fn legacy_entries_also_recognise_title_and_contact() {
        let mut c = card(5, 100, Some("Коментар покупця: x".into()));
        c.title = Some("Замовлення №10234".into());
        c.contact = Some(CardCandidateContact {
            phone: Some("0501112233".into()),
            ..Default::default()
        });
        let l = Listing {
            cards: vec![c],
            requests: Mutex::new(0),
            descending: false,
        };
        let body = NewCard {
            title: Some("Замовлення №10234".into()),
            contact: CardContact {
                phone: Some("+380501112233".into()),
                ..CardContact::default()
            },
            ..NewCard::default()
        };
        let mut q = query("10234", 90);
        assert_eq!(find_card(&l, &q).await.unwrap(), None, "no marker");
        q.legacy = Some(&body);
        assert_eq!(find_card(&l, &q).await.unwrap(), Some((5, 7)));
    }

    #[test]
    fn orders_match_by_the_scoped_name_only() {
        let o = |id: i64, uuid: Option<&str>| Order {
            id,
            source_uuid: uuid.map(str::to_string),
            status_id: 1,
            ..Order::default()
        };
        let found = vec![o(7, Some("s1:10234-x")), o(9, Some("s1:10234")), o(8, None)];
        assert_eq!(pick_order(&found, "s1:10234"), Some((9, 1)));
    }

    #[test]
    fn legacy_orders_need_our_source_or_our_creation_time() {
        let created = at(0);
        let o = |id: i64, source: i64, ordered: Option<DateTime<Utc>>| Order {
            id,
            source_id: Some(source),
            source_uuid: Some("10234".into()),
            ordered_at: ordered,
            status_id: 1,
            ..Order::default()
        };
        // Another shop's order 10234 in its own source.
        assert_eq!(
            pick_legacy_order(&[o(3, 2, Some(at(99)))], "10234", 1, created),
            None
        );
        // Ours, in our source.
        assert_eq!(
            pick_legacy_order(&[o(3, 2, Some(at(99))), o(4, 1, None)], "10234", 1, created),
            Some((4, 1))
        );
        // Ours, in the source the merchant used before changing it.
        assert_eq!(
            pick_legacy_order(&[o(5, 9, Some(created))], "10234", 1, created),
            Some((5, 1))
        );
    }

    #[test]
    fn the_card_window_covers_skew_and_ends_with_the_claim() {
        let now = Utc::now();
        let started = now - chrono::Duration::seconds(30);
        let (from, to) = card_window(
            Some(started),
            now,
            Duration::from_secs(300),
            Duration::from_secs(300),
        );
        assert_eq!(from, started - chrono::Duration::minutes(5));
        assert_eq!(to, now + chrono::Duration::minutes(5));
        // A retry days later still looks only at the attempt's own minutes.
        let late = now + chrono::Duration::days(3);
        let (_, to) = card_window(
            Some(started),
            late,
            Duration::from_secs(300),
            Duration::from_secs(300),
        );
        assert_eq!(to, started + chrono::Duration::minutes(10));
    }
}
