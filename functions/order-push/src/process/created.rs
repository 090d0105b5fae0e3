//! `order.created`: claim the order in the ledger, skip it when its sync is off, map it with
//! the connection's KeyCRM dictionaries, find what an earlier attempt may have created, mark
//! the attempt, and create it (then record it and set its initial status).
//!
//! Each step either hands the next one what it needs or settles the message: `Err(decision)`
//! is "settled here", so `on_created` reads as the list of its steps.

use super::*;

/// The KeyCRM side of a claimed order: the connection's client and the order mapped for it.
struct Prepared {
    crm: Arc<dyn CrmApi>,
    mapped: Mapped,
}

impl OrderPush {
    pub(super) async fn on_created(
        &self,
        msg: &Message,
        attempt: u32,
        event: &OrderEvent,
        order: &ShopOrder,
        conn: &Connection,
        progress: &Progress,
    ) -> Decision {
        let steps = async {
            let c = self
                .claim(msg, attempt, event, order, conn, progress)
                .await?;
            self.skip_if_off(&c).await?;
            let p = self.prepare(&c, attempt).await?;
            self.find_earlier_attempt(&c, &p, attempt).await?;
            self.mark_attempt(&c, attempt).await?;
            Ok::<Decision, Decision>(self.create(&c, &p, attempt).await)
        };
        match steps.await {
            Ok(d) | Err(d) => d,
        }
    }

    /// Claims the order in the ledger; an order created, settled or busy elsewhere settles here.
    async fn claim<'a>(
        &self,
        msg: &Message,
        attempt: u32,
        event: &'a OrderEvent,
        order: &'a ShopOrder,
        conn: &'a Connection,
        progress: &Progress,
    ) -> Result<Claimed<'a>, Decision> {
        let target = match conn.settings.order_sync {
            OrderSyncType::Pipelines => Target::Card,
            _ => Target::Order,
        };
        let holder = uuid::Uuid::new_v4().to_string();
        let claim = self
            .ledger
            .claim(
                &conn.id,
                &order.id,
                target,
                &holder,
                self.config.lease,
                &msg.body,
            )
            .await;
        let entry = match claim {
            Err(e) => {
                return Err(self.defer(
                    attempt,
                    None,
                    "store_unavailable",
                    &format!("order ledger unavailable: {e}"),
                ))
            }
            Ok(Claim::AlreadyCreated(e)) => {
                return Err(Decision::Ack(Outcome::AlreadyDone {
                    shop_order_id: order.id.clone(),
                    reason: format!(
                        "already in KeyCRM as {} {}",
                        e.target.as_str(),
                        e.keycrm_id.map(|i| i.to_string()).unwrap_or_default()
                    ),
                }))
            }
            Ok(Claim::Settled(e)) if e.state == LedgerState::Failed => {
                return Err(Decision::DeadLetter {
                    kind: "failed_earlier",
                    reason: format!(
                        "order {} failed earlier and waits for a re-push: {}",
                        order.id,
                        e.last_error.unwrap_or_default()
                    ),
                    shop_id: None,
                    order_id: None,
                })
            }
            Ok(Claim::Settled(e)) => {
                return Err(Decision::Ack(Outcome::AlreadyDone {
                    shop_order_id: order.id.clone(),
                    reason: format!(
                        "skipped earlier ({}); only a re-push sends it",
                        e.last_error.unwrap_or_default()
                    ),
                }))
            }
            Ok(Claim::Busy(_)) => {
                let policy = &self.config.retry;
                if policy.may_defer(attempt) {
                    return Err(Decision::Defer {
                        delay: policy.busy_delay,
                        reason: "another attempt is creating this order".into(),
                        label: "busy",
                        next_attempt: attempt + 1,
                    });
                }
                return Err(self.defer(
                    attempt,
                    None,
                    "busy",
                    "another attempt kept the order claimed",
                ));
            }
            Ok(Claim::Granted(e)) => e,
        };
        progress.hold(HeldClaim {
            connection_id: conn.id.clone(),
            shop_order_id: order.id.clone(),
            holder: holder.clone(),
            maybe_committed: entry.maybe_committed,
        });
        Ok(Claimed {
            conn,
            event,
            order,
            holder,
            target,
            entry,
            progress: progress.clone(),
        })
    }

    /// An inactive connection, or one whose order sync is off, records the order as skipped.
    async fn skip_if_off(&self, c: &Claimed<'_>) -> Result<(), Decision> {
        let (conn, order) = (c.conn, c.order);
        if conn.active && conn.settings.order_sync_on() {
            return Ok(());
        }
        let reason = if !conn.active {
            "the connection is inactive"
        } else {
            "order sync is off for this connection"
        };
        if let Err(e) = self
            .ledger
            .mark_skipped(&conn.id, &order.id, &c.holder, reason)
            .await
        {
            tracing::warn!(order = %order.id, error = %e, "could not record the skip");
        }
        c.progress.clear();
        c.progress.count(&conn.id, Counter::OrdersSkipped);
        Err(skipped("inactive", reason))
    }

    /// The connection's KeyCRM client and dictionaries, and the order mapped with them.
    async fn prepare(&self, c: &Claimed<'_>, attempt: u32) -> Result<Prepared, Decision> {
        let (conn, order, event) = (c.conn, c.order, c.event);
        let crm = match self.crm.crm_for(conn).await {
            Ok(api) => api,
            Err(ClientsError::MissingKey(_)) => {
                let why = "the connection's KeyCRM API key is missing; reconnect and re-push";
                return Err(self
                    .fail_order(c, "keycrm_rejected", why.into(), &no_fields())
                    .await);
            }
            Err(e) => {
                let maybe = c.entry.maybe_committed;
                return Err(self
                    .give_back(
                        c,
                        attempt,
                        &format!("no KeyCRM client: {e}"),
                        maybe,
                        None,
                        "keycrm_unavailable",
                    )
                    .await);
            }
        };
        let dict = match self.dictionaries.get(conn, crm.as_ref()).await {
            Ok(d) => d,
            Err(e) => {
                let maybe = c.entry.maybe_committed;
                return Err(self
                    .on_keycrm_error(c, attempt, e, maybe, "loading the KeyCRM dictionaries")
                    .await);
            }
        };
        let mapped = match c.target {
            Target::Order => map_order(&event.shop_id, order, &conn.settings, &dict)
                .map(|m| Mapped::Order(Box::new(m))),
            Target::Card => map_card(&event.shop_id, order, &conn.settings, &dict)
                .map(|m| Mapped::Card(Box::new(m))),
        };
        match mapped {
            Ok(mapped) => Ok(Prepared { crm, mapped }),
            Err(e) => Err(self
                .fail_order(c, "mapping", e.to_string(), &no_fields())
                .await),
        }
    }

    /// When an earlier attempt may have reached KeyCRM, searches for its order first: one
    /// found is finished (recorded) instead of created again.
    async fn find_earlier_attempt(
        &self,
        c: &Claimed<'_>,
        p: &Prepared,
        attempt: u32,
    ) -> Result<(), Decision> {
        if !c.entry.maybe_committed {
            return Ok(());
        }
        match self.recover(p.crm.as_ref(), c, &p.mapped).await {
            Ok(Some((id, status))) => {
                tracing::info!(connection = %c.conn.id, order = %c.order.id, keycrm_id = id, "found the order an earlier attempt created");
                Err(self
                    .finish_created(c, p.crm.as_ref(), &p.mapped, id, status, true, attempt)
                    .await)
            }
            Ok(None) => Ok(()),
            Err(e) => Err(self
                .on_keycrm_error(
                    c,
                    attempt,
                    e,
                    true,
                    "searching for an earlier attempt's order",
                )
                .await),
        }
    }

    /// Records that this attempt is about to send (a new entry is stored already marked as
    /// attempted: one write less per order).
    async fn mark_attempt(&self, c: &Claimed<'_>, attempt: u32) -> Result<(), Decision> {
        let marked = if c.entry.attempts <= 1 {
            Ok(())
        } else {
            self.ledger
                .mark_attempt(&c.conn.id, &c.order.id, &c.holder)
                .await
        };
        match marked {
            Ok(()) => {
                c.progress.sent();
                Ok(())
            }
            Err(StoreError::Conflict(_)) => {
                // Someone else holds the order now; they finish it.
                c.progress.clear();
                Err(self.defer(attempt, None, "busy", "lost the claim before sending"))
            }
            Err(e) => {
                let maybe = c.entry.maybe_committed;
                Err(self
                    .give_back(
                        c,
                        attempt,
                        &format!("order ledger unavailable: {e}"),
                        maybe,
                        None,
                        "store_unavailable",
                    )
                    .await)
            }
        }
    }

    /// Creates the order or card in KeyCRM and records it.
    async fn create(&self, c: &Claimed<'_>, p: &Prepared, attempt: u32) -> Decision {
        let crm = p.crm.as_ref();
        let created = match &p.mapped {
            Mapped::Order(m) => crm.create_order(&m.body).await.map(|o| (o.id, o.status_id)),
            Mapped::Card(m) => crm.create_card(&m.body).await,
        };
        match created {
            Ok((id, status)) => {
                self.finish_created(c, crm, &p.mapped, id, status, false, attempt)
                    .await
            }
            // The search above settled any earlier attempt: only this request can have landed.
            Err(e) => {
                self.on_keycrm_error(c, attempt, e, false, "creating it")
                    .await
            }
        }
    }

    async fn recover(
        &self,
        crm: &dyn CrmApi,
        c: &Claimed<'_>,
        mapped: &Mapped,
    ) -> Result<Option<(i64, i64)>, KeycrmError> {
        let (shop, order) = (c.event.shop_id.as_str(), c.order.id.as_str());
        match mapped {
            Mapped::Order(m) => {
                // In any source: the merchant may have changed it since the attempt.
                let key = source_key::source_uuid(shop, order);
                let found = crm.find_orders(&key, None).await?;
                if let Some(hit) = pick_order(&found, &key) {
                    return Ok(Some(hit));
                }
                if c.entry.scoped_key {
                    return Ok(None);
                }
                // An older version's attempt named it by the bare id.
                let found = crm.find_orders(order, None).await?;
                Ok(pick_legacy_order(
                    &found,
                    order,
                    m.body.source_id,
                    c.order.created_at,
                ))
            }
            Mapped::Card(m) => {
                let q = CardQuery {
                    shop_id: shop,
                    order_id: order,
                    legacy: (!c.entry.scoped_key).then_some(&m.body),
                    window: card_window(
                        c.entry.attempt_started_at,
                        Utc::now(),
                        self.config.lease,
                        self.config.recovery_margin,
                    ),
                };
                find_card(crm, &q).await
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn finish_created(
        &self,
        c: &Claimed<'_>,
        crm: &dyn CrmApi,
        mapped: &Mapped,
        keycrm_id: i64,
        status_id: i64,
        recovered: bool,
        attempt: u32,
    ) -> Decision {
        let (conn, order) = (c.conn, c.order);
        let mut status_now = status_id;
        let mut status_in_place = true;
        if let Some(wanted) = mapped.status_after_create().filter(|s| *s != status_id) {
            let set = match c.target {
                Target::Order => crm.set_order_status(keycrm_id, wanted).await,
                Target::Card => crm.set_card_status(keycrm_id, wanted).await,
            };
            match set {
                Ok(()) => status_now = wanted,
                Err(e) => {
                    status_in_place = false;
                    tracing::warn!(connection = %conn.id, order = %order.id, error = %e, "initial status not set; queued as a status change");
                    self.queue_initial_status(c).await;
                }
            }
        }
        let report = mapped.report();
        let shop_status = status_in_place.then_some(order.status.as_str());
        let created = Created {
            target: c.target,
            keycrm_id,
            report: report.clone(),
            shop_status: shop_status.map(str::to_string),
            keycrm_status_id: Some(status_now),
        };
        if let Err(e) = self
            .ledger
            .record_created(&conn.id, &order.id, &c.holder, &created)
            .await
        {
            // KeyCRM has it and the ledger does not know yet. `maybe_committed` stays set, so
            // the retry finds it by search instead of creating it again.
            tracing::error!(connection = %conn.id, order = %order.id, keycrm_id, error = %e, "created in KeyCRM but not recorded");
            return self
                .give_back(
                    c,
                    attempt,
                    &format!("created as {keycrm_id} but not recorded: {e}"),
                    true,
                    None,
                    "store_unavailable",
                )
                .await;
        }
        c.progress.clear();
        c.progress.count(&conn.id, Counter::OrdersPushed);
        if c.entry.last_error.is_some() {
            if let Err(e) = self.journal.clear_failure(&conn.id, &order.id).await {
                tracing::warn!(connection = %conn.id, order = %order.id, error = %e, "could not clear the old failure");
            }
        }
        if let Some(m) = &report.total_mismatch {
            tracing::warn!(connection = %conn.id, order = %order.id, shop_total = %m.shop_total, computed = %m.computed, "order total mismatch flagged");
        }
        Decision::Ack(Outcome::Created {
            connection_id: conn.id.clone(),
            shop_order_id: order.id.clone(),
            target: c.target,
            keycrm_id,
            recovered,
        })
    }

    /// A mapped initial status that could not be set goes through the status path later.
    async fn queue_initial_status(&self, c: &Claimed<'_>) {
        let body = serde_json::json!({
            "version": mapping::events::CONTRACT_VERSION,
            "type": mapping::events::ORDER_STATUS_CHANGED,
            "event_id": format!("{}#initial-status", c.event.event_id),
            "shop_id": c.event.shop_id,
            "occurred_at": c.event.occurred_at,
            "order_id": c.order.id,
            "status": c.order.status,
            "changed_by": "connector",
        });
        let delay = self.config.retry.base;
        let out = Outgoing::new(body.to_string()).delayed(delay);
        if let Err(e) = self.retry_queue.send(out).await {
            let text = format!(
                "order {}: its initial status \"{}\" could not be set in KeyCRM ({e})",
                c.order.id, c.order.status
            );
            if let Err(e) = self.journal.record_error(&c.conn.id, &text).await {
                tracing::warn!(connection = %c.conn.id, error = %e, "could not record the error");
            }
        }
    }
}
