//! Pipeline cards: create (`POST /pipelines/cards`), status changes, update and the list
//! filters.

use serde_json::{Map, Value};

use super::parse::{parse_custom_fields, range_filter};
use super::{next, Card, Contact, Crm, UTM_KEYS};
use crate::catalog::Catalog;
use crate::dicts::{self, CfModel};
use crate::error::Invalid;
use crate::input::Fields;
use crate::query::ListQuery;

impl Crm {
    /// `POST /pipelines/cards`. Returns the index of the new card.
    pub(crate) fn create_card(
        &mut self,
        body: &Map<String, Value>,
        catalog: &Catalog,
        now: i64,
    ) -> Result<usize, Invalid> {
        let mut inv = Invalid::default();
        let f = Fields::new(body, "");
        let title = f.string("title", &mut inv);
        let source_id = f.known_id("source_id", &mut inv, dicts::source_exists);
        let manager_id = f.known_id("manager_id", &mut inv, |id| dicts::user(id).is_some());
        let manager_comment = f.string("manager_comment", &mut inv);
        let pipeline_id = match f.int("pipeline_id", &mut inv) {
            Some(id) if dicts::pipeline(id).is_some() => Some(id),
            Some(_) => {
                f.invalid("pipeline_id", &mut inv);
                None
            }
            None if f.has("pipeline_id") => None,
            None => dicts::PIPELINES.first().map(|p| p.id),
        };
        let communicate_at = f.datetime("communicate_at", &mut inv);
        let mut utm: [Option<String>; 5] = Default::default();
        for (i, k) in UTM_KEYS.iter().enumerate() {
            utm[i] = f.string(k, &mut inv);
        }
        // contact
        enum ContactIn {
            Client(i64),
            New(Option<String>, Option<String>, Option<String>),
        }
        let contact = if f.required("contact", &mut inv) {
            match f.object("contact", &mut inv) {
                Some(c) => {
                    let cf = Fields::new(c, "contact.");
                    match cf.int("client_id", &mut inv) {
                        Some(id) if self.buyer(id).is_some() => Some(ContactIn::Client(id)),
                        Some(_) => {
                            cf.invalid("client_id", &mut inv);
                            None
                        }
                        None => {
                            let name = cf.string("full_name", &mut inv);
                            let email = cf.string("email", &mut inv);
                            let phone = cf.string("phone", &mut inv);
                            if name.is_none() && email.is_none() && phone.is_none() {
                                inv.add(
                                    "contact.full_name",
                                    "The contact.full name field is required when none of contact.phone / contact.email / contact.client id are present.",
                                );
                                None
                            } else {
                                Some(ContactIn::New(name, email, phone))
                            }
                        }
                    }
                }
                None => None,
            }
        } else {
            None
        };
        let (lines, payments, custom_fields) =
            self.parse_contents(&f, catalog, now, &mut inv, false, CfModel::Lead);
        let (Some(contact), Some(pipeline_id)) = (contact, pipeline_id) else {
            return Err(inv);
        };
        if !inv.is_empty() {
            return Err(inv);
        }
        let Some(status) = dicts::first_status_of(pipeline_id) else {
            f.invalid("pipeline_id", &mut inv);
            return Err(inv);
        };
        let (client_id, c_name, c_email, c_phone) = match contact {
            ContactIn::Client(id) => {
                let b = self.buyer(id);
                (
                    id,
                    b.and_then(|b| b.full_name.clone()),
                    b.and_then(|b| b.email.clone()),
                    b.and_then(|b| b.phone.clone()),
                )
            }
            ContactIn::New(n, e, p) => {
                let id = self.find_or_create_buyer(n.clone(), e.clone(), p.clone(), now);
                (id, n, e, p.map(|p| crate::input::normalize_phone(&p)))
            }
        };
        let contact_id = next(&mut self.next_contact_id);
        self.contacts.push(Contact {
            id: contact_id,
            client_id,
            full_name: c_name,
            email: c_email,
            phone: c_phone,
            created_at: now,
            updated_at: now,
        });
        let id = next(&mut self.next_card_id);
        self.cards.push(Card {
            id,
            title: Some(title.unwrap_or_else(|| id.to_string())),
            pipeline_id,
            status_id: status.id,
            source_id,
            contact_id,
            manager_id,
            manager_comment,
            note: None,
            communicate_at,
            status_changed_at: now,
            utm,
            lines,
            payments,
            custom_fields,
            created_at: now,
            updated_at: now,
        });
        Ok(self.cards.len() - 1)
    }

    pub(crate) fn set_card_status(&mut self, idx: usize, status_id: i64, now: i64) -> bool {
        let Some(st) = dicts::pipeline_status(status_id) else {
            return false;
        };
        let c = &mut self.cards[idx];
        if c.status_id == status_id {
            return false;
        }
        c.status_id = st.id;
        c.pipeline_id = st.pipeline_id;
        c.status_changed_at = now;
        c.updated_at = now;
        true
    }

    /// `PUT /pipelines/cards/{id}`; returns whether the status changed.
    pub(crate) fn update_card(
        &mut self,
        idx: usize,
        body: &Map<String, Value>,
        catalog: &Catalog,
        now: i64,
    ) -> Result<bool, Invalid> {
        let mut inv = Invalid::default();
        let f = Fields::new(body, "");
        let title = f.has("title").then(|| f.string("title", &mut inv));
        let source_id = f.known_id("source_id", &mut inv, dicts::source_exists);
        let manager_id = f.known_id("manager_id", &mut inv, |id| dicts::user(id).is_some());
        let client_id = f.known_id("client_id", &mut inv, |id| self.buyer(id).is_some());
        let note = f.string("note", &mut inv);
        let communicate_at = f.datetime("communicate_at", &mut inv);
        let status_id = f.known_id("status_id", &mut inv, |id| {
            dicts::pipeline_status(id).is_some()
        });
        let custom_fields = match f.array("custom_fields", &mut inv) {
            Some(arr) => parse_custom_fields(arr, CfModel::Lead, &mut inv),
            None => Vec::new(),
        };
        let lines = match f.array("products", &mut inv) {
            Some(arr) => self.parse_lines(arr, catalog, now, &mut inv, false),
            None => Vec::new(),
        };
        if !inv.is_empty() {
            return Err(inv);
        }
        if let Some(cid) = client_id {
            let contact_id = self.cards[idx].contact_id;
            let b = self.buyer(cid).cloned();
            if let (Some(c), Some(b)) = (self.contacts.iter_mut().find(|c| c.id == contact_id), b) {
                c.client_id = cid;
                c.full_name = b.full_name;
                c.email = b.email;
                c.phone = b.phone;
                c.updated_at = now;
            }
        }
        {
            let c = &mut self.cards[idx];
            if let Some(t) = title {
                c.title = t;
            }
            if source_id.is_some() {
                c.source_id = source_id;
            }
            if manager_id.is_some() {
                c.manager_id = manager_id;
            }
            if note.is_some() {
                c.note = note;
            }
            if communicate_at.is_some() {
                c.communicate_at = communicate_at;
            }
            for (uuid, value) in custom_fields {
                match c.custom_fields.iter_mut().find(|(u, _)| *u == uuid) {
                    Some(slot) => slot.1 = value,
                    None => c.custom_fields.push((uuid, value)),
                }
            }
            // products are always appended
            c.lines.extend(lines);
            c.updated_at = now;
        }
        Ok(match status_id {
            Some(s) => self.set_card_status(idx, s, now),
            None => false,
        })
    }

    pub(crate) fn filter_cards(&self, q: &ListQuery) -> Result<Vec<usize>, String> {
        let pipeline_ids = q.filter_ids("pipeline_id");
        let status_ids = q.filter_ids("status_id");
        let source_ids = q.filter_ids("source_id");
        let created = range_filter(q, "created_between")?;
        let updated = range_filter(q, "updated_between")?;
        Ok(self
            .cards
            .iter()
            .enumerate()
            .filter(|(_, c)| {
                pipeline_ids
                    .as_ref()
                    .is_none_or(|l| l.contains(&c.pipeline_id))
                    && status_ids.as_ref().is_none_or(|l| l.contains(&c.status_id))
                    && source_ids
                        .as_ref()
                        .is_none_or(|l| c.source_id.is_some_and(|s| l.contains(&s)))
                    && created.is_none_or(|(a, b)| c.created_at >= a && c.created_at <= b)
                    && updated.is_none_or(|(a, b)| c.updated_at >= a && c.updated_at <= b)
            })
            .map(|(i, _)| i)
            .collect())
    }

    pub(crate) fn cards_in_status(&self, status_id: i64) -> i64 {
        self.cards
            .iter()
            .filter(|c| c.status_id == status_id)
            .count() as i64
    }
}
