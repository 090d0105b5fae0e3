//! Finding what an earlier attempt may have created, before creating again.
//!
//! Orders carry our shop order id as `source_uuid`: search `GET /order` by it (restricted to
//! the connection's source) and take the oldest match.
//!
//! Cards have no `source_uuid`. A card an earlier attempt sent is recognised by what that
//! attempt wrote: listed with `GET /pipelines/cards` filtered by the connection's source and
//! `created_between` [attempt start − margin, now + margin] (the margin covers clock skew
//! between us and KeyCRM), it has the title `Замовлення №<number>` and the buyer's contact
//! (phone, else email, else name). The pipeline is not filtered on: a manager may already
//! have moved the card. The oldest match wins.

use crate::crm::CardCandidate;
use chrono::{DateTime, Utc};
use keycrm::models::{NewCard, Order};
use std::time::Duration;

/// The window a card created by an attempt started at `started` must fall in.
pub fn card_window(
    started: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    margin: Duration,
) -> (DateTime<Utc>, DateTime<Utc>) {
    let margin = chrono::Duration::from_std(margin).unwrap_or(chrono::Duration::minutes(5));
    // Without a recorded start (an entry written before the field existed), look back a day.
    let from = started.unwrap_or(now - chrono::Duration::days(1)) - margin;
    (from, now + margin)
}

fn same_phone(a: &str, b: &str) -> bool {
    let norm = |p: &str| mapping::phone::normalize(p).unwrap_or_else(|| p.trim().to_string());
    norm(a) == norm(b)
}

fn same_text(a: &str, b: &str) -> bool {
    a.trim().to_lowercase() == b.trim().to_lowercase()
}

/// Whether `c` is the card `body` describes.
pub fn is_our_card(c: &CardCandidate, body: &NewCard) -> bool {
    if c.title.as_deref().map(str::trim) != body.title.as_deref().map(str::trim) {
        return false;
    }
    if body.source_id.is_some() && c.source_id.is_some() && c.source_id != body.source_id {
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
    true
}

/// The card an earlier attempt created, if any: `(id, status_id)`.
pub fn pick_card(candidates: &[CardCandidate], body: &NewCard) -> Option<(i64, i64)> {
    candidates
        .iter()
        .filter(|c| is_our_card(c, body))
        .min_by_key(|c| c.id)
        .map(|c| (c.id, c.status_id))
}

/// The order an earlier attempt created, if any: `(id, status_id)`.
pub fn pick_order(found: &[Order], source_uuid: &str) -> Option<(i64, i64)> {
    found
        .iter()
        .filter(|o| o.source_uuid.as_deref() == Some(source_uuid))
        .min_by_key(|o| o.id)
        .map(|o| (o.id, o.status_id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crm::CardCandidateContact;
    use keycrm::models::CardContact;

    fn body() -> NewCard {
        NewCard {
            title: Some("Замовлення №10234".into()),
            pipeline_id: 1,
            source_id: Some(1),
            contact: CardContact {
                full_name: Some("Олена".into()),
                email: Some("o@example.com".into()),
                phone: Some("+380501112233".into()),
            },
            ..NewCard::default()
        }
    }

    fn card(id: i64, title: &str, phone: Option<&str>) -> CardCandidate {
        CardCandidate {
            id,
            title: Some(title.into()),
            pipeline_id: Some(2),
            source_id: Some(1),
            status_id: 7,
            contact: Some(CardCandidateContact {
                full_name: None,
                email: None,
                phone: phone.map(str::to_string),
            }),
        }
    }

    #[test]
    fn a_card_is_ours_by_title_and_contact_phone() {
        let b = body();
        let found = vec![
            card(9, "Замовлення №10235", Some("+380501112233")),
            card(12, "Замовлення №10234", Some("0501112233")),
            card(11, "Замовлення №10234", Some("+380671112233")),
            card(15, "Замовлення №10234", Some("+380501112233")),
        ];
        assert_eq!(
            pick_card(&found, &b),
            Some((12, 7)),
            "oldest match, phones compared normalised"
        );
        assert_eq!(pick_card(&found[..1], &b), None);
    }

    #[test]
    fn another_source_is_not_ours() {
        let mut c = card(3, "Замовлення №10234", Some("+380501112233"));
        c.source_id = Some(2);
        assert!(!is_our_card(&c, &body()));
    }

    #[test]
    fn without_a_phone_email_then_name_decide() {
        let mut b = body();
        b.contact.phone = None;
        let mut c = card(3, "Замовлення №10234", None);
        c.contact = Some(CardCandidateContact {
            email: Some("O@Example.com".into()),
            ..Default::default()
        });
        assert!(is_our_card(&c, &b));
        b.contact.email = None;
        assert!(!is_our_card(&c, &b), "name required now and missing");
    }

    #[test]
    fn orders_match_by_source_uuid_only() {
        let o = |id: i64, uuid: Option<&str>| Order {
            id,
            source_uuid: uuid.map(str::to_string),
            status_id: 1,
            ..Order::default()
        };
        let found = vec![o(7, Some("10234-x")), o(9, Some("10234")), o(8, None)];
        assert_eq!(pick_order(&found, "10234"), Some((9, 1)));
    }

    #[test]
    fn the_card_window_covers_skew() {
        let now = Utc::now();
        let started = now - chrono::Duration::seconds(30);
        let (from, to) = card_window(Some(started), now, Duration::from_secs(300));
        assert_eq!(from, started - chrono::Duration::minutes(5));
        assert_eq!(to, now + chrono::Duration::minutes(5));
    }
}
