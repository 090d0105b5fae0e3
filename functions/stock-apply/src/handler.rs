//! One flush message: take the window, flush, and say what the queue should do with the
//! message (done, retry later, dead letter).

use crate::flush::{now_ms, FlushEnd, FlushReport, Flusher};
use jobs::stock::FlushJob;
use runtime::metrics::catalog::{STOCK_FLUSHES, STOCK_OFFERS_IGNORED};
use runtime::metrics::count;
use runtime::sqs_batch::{isolate, Run};
use std::time::{Duration, Instant};

/// What the transport should do with the message (shared by the queue consumers).
pub use queue::consume::Disposition;

/// Backoff between deliveries and the redrive threshold (StockFlushQueue's `maxReceiveCount`).
pub use queue::consume::RetryPolicy;

/// The consumer's handler: a [`Flusher`] plus the retry policy.
pub struct StockApplier {
    pub flusher: Flusher,
    pub retry: RetryPolicy,
}

/// Kept back from the invocation's deadline: the last chunk's writes and handing the window
/// on (a few DynamoDB and SQS calls).
const STOP_MARGIN: Duration = Duration::from_secs(15);

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl StockApplier {
    pub fn new(flusher: Flusher, retry: RetryPolicy) -> Self {
        StockApplier { flusher, retry }
    }

    /// Handles one flush message without a deadline (`receive_count`: 1 on its first
    /// delivery).
    pub async fn handle_message(&self, body: &str, receive_count: u32) -> Disposition {
        self.handle_message_until(body, receive_count, None).await
    }

    /// Handles one flush message, isolated from its batch-mates and stopped at `until`: a
    /// panic gives the message up with its reason, running out of time retries it; either
    /// way the window is handed on (the offers stay pending or in flight, never lost).
    pub async fn handle_message_until(
        &self,
        body: &str,
        receive_count: u32,
        until: Option<Instant>,
    ) -> Disposition {
        let holder = uuid::Uuid::new_v4().simple().to_string();
        let run = isolate(until, self.handle(body, receive_count, &holder, until)).await;
        let conn = FlushJob::parse(body).ok().map(|j| j.connection_id);
        match (run, conn) {
            (Run::Finished(d), _) => d,
            (Run::Panicked(reason), Some(conn)) => {
                self.failed(&conn, receive_count, Some(&holder), false, reason)
                    .await
            }
            (Run::Panicked(reason), None) => {
                count(&STOCK_FLUSHES, &["failed"], 1);
                Disposition::GiveUp { reason }
            }
            (Run::OutOfTime, Some(conn)) => {
                let reason = "the invocation ran out of time during the flush".to_string();
                self.failed(&conn, receive_count, Some(&holder), true, reason)
                    .await
            }
            (Run::OutOfTime, None) => {
                count(&STOCK_FLUSHES, &["failed"], 1);
                Disposition::GiveUp {
                    reason: "the invocation ran out of time".into(),
                }
            }
        }
    }

    async fn handle(
        &self,
        body: &str,
        receive_count: u32,
        holder: &str,
        until: Option<Instant>,
    ) -> Disposition {
        let started = Instant::now();
        // Stop taking chunks at the flush's budget, or early enough before the invocation's
        // end to hand the window on.
        let mut stop_at = started + self.flusher.config.budget;
        if let Some(u) = until {
            stop_at = stop_at.min(u.checked_sub(STOP_MARGIN).unwrap_or(u));
        }
        let job = match FlushJob::parse(body) {
            Ok(j) => j,
            Err(e) => {
                count(&STOCK_FLUSHES, &["failed"], 1);
                tracing::error!(error = %e, "unreadable stock flush message");
                return Disposition::GiveUp {
                    reason: e.to_string(),
                };
            }
        };
        let f = &self.flusher;
        let conn = match f.load(&job).await {
            Ok(Some(c)) => c,
            Ok(None) => {
                count(&STOCK_FLUSHES, &["no_connection"], 1);
                tracing::info!(connection = %job.connection_id, "stock flush for a deleted connection: nothing to do");
                return Disposition::Done;
            }
            Err(e) => {
                let t = e.is_transient();
                return self
                    .failed(&job.connection_id, receive_count, None, t, e.to_string())
                    .await;
            }
        };
        if !conn.active || !conn.settings.realtime_stock_active() {
            // The window expires by itself; signals wait until realtime stock is on again
            // (the 4-hourly price run corrects availability meanwhile).
            count(&STOCK_FLUSHES, &["realtime_stock_off"], 1);
            tracing::info!(connection = %conn.id, active = conn.active, "realtime stock is off: flush skipped");
            return Disposition::Done;
        }
        let hold = now_ms() + ms(f.config.lease);
        match f
            .stock
            .take_window(&conn.id, &job.window, holder, hold, now_ms())
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                count(&STOCK_FLUSHES, &["window_taken"], 1);
                tracing::info!(connection = %conn.id, window = %job.window, "another flush has this connection's window: message dropped");
                return Disposition::Done;
            }
            Err(e) => {
                let t = e.is_transient();
                return self
                    .failed(&conn.id, receive_count, None, t, e.to_string())
                    .await;
            }
        }
        let mut report = FlushReport::default();
        let result = f.flush(&conn, holder, stop_at, &mut report).await;
        f.journal(&conn.id, &report).await;
        for (reason, n) in [
            ("unlinked", report.unlinked),
            ("skipped", report.skipped),
            ("not_found", report.not_found),
            ("refused", report.refused),
        ] {
            if n > 0 {
                count(&STOCK_OFFERS_IGNORED, &[reason], n);
            }
        }
        tracing::info!(
            connection = %conn.id, window = %job.window, requests = report.requests,
            offers = report.offers, changed = report.changed, unchanged = report.unchanged,
            unlinked = report.unlinked, skipped = report.skipped, not_found = report.not_found,
            refused = report.refused, elapsed_ms = started.elapsed().as_millis() as u64,
            outcome = ?result.as_ref().map_err(|e| e.to_string()), "stock flush"
        );
        match result {
            Ok(FlushEnd::LostWindow) => {
                count(&STOCK_FLUSHES, &["lost_window"], 1);
                Disposition::Done
            }
            Ok(end) => {
                let outcome = match end {
                    FlushEnd::OutOfTime => "out_of_time",
                    _ => "drained",
                };
                count(&STOCK_FLUSHES, &[outcome], 1);
                self.finish_window(&conn.id, holder, end).await;
                Disposition::Done
            }
            Err(e) => {
                let retryable = e.is_retryable();
                self.failed(
                    &conn.id,
                    receive_count,
                    Some(holder),
                    retryable,
                    e.to_string(),
                )
                .await
            }
        }
    }

    /// Ends the window and schedules the next one if offers are waiting: those signalled
    /// during this flush after a window's delay, the rest of an overrun at once.
    async fn finish_window(&self, conn: &str, holder: &str, end: FlushEnd) {
        let f = &self.flusher;
        if let Err(e) = f.stock.end_window(conn, holder).await {
            // It expires by itself; a receiver then schedules again.
            tracing::warn!(connection = %conn, error = %e, "could not end the stock window");
        }
        let delay = match end {
            FlushEnd::OutOfTime => Duration::ZERO,
            _ => f.config.window,
        };
        let waiting = match f.stock.pending(conn).await {
            Ok(p) => !p.is_empty(),
            Err(e) => {
                tracing::warn!(connection = %conn, error = %e, "could not check for more stock signals");
                true
            }
        };
        if waiting || end == FlushEnd::OutOfTime {
            if let Err(e) = f.schedule(conn, delay).await {
                // The offers stay pending; the next signal schedules them.
                tracing::warn!(connection = %conn, error = %e, "could not schedule the next stock window");
            }
        }
    }

    /// A failed attempt: retried with backoff while that can help (the window stays parked
    /// for the retry, so receivers do not schedule another), given up otherwise (the window
    /// ends, the offers stay pending for the next signal's window).
    async fn failed(
        &self,
        conn: &str,
        receive_count: u32,
        holder: Option<&str>,
        retryable: bool,
        reason: String,
    ) -> Disposition {
        let f = &self.flusher;
        if retryable && receive_count < self.retry.max_receives {
            let delay = self.retry.delay(receive_count);
            if let Some(h) = holder {
                let until = now_ms() + ms(delay) + ms(f.config.lease);
                if let Err(e) = f.stock.park_window(conn, h, until).await {
                    tracing::warn!(connection = %conn, error = %e, "could not park the stock window");
                }
            }
            count(&STOCK_FLUSHES, &["retried"], 1);
            tracing::warn!(connection = %conn, attempt = receive_count, retry_in_s = delay.as_secs(), error = %reason, "stock flush failed; retrying");
            return Disposition::RetryAfter { delay, reason };
        }
        let reason =
            format!("realtime stock: the flush failed after {receive_count} attempt(s): {reason}");
        count(&STOCK_FLUSHES, &["failed"], 1);
        tracing::error!(connection = %conn, error = %reason, "stock flush given up");
        if let Err(e) = f.journal.record_error(conn, &reason).await {
            tracing::warn!(connection = %conn, error = %e, "could not update the journal");
        }
        if let Some(h) = holder {
            if let Err(e) = f.stock.end_window(conn, h).await {
                tracing::warn!(connection = %conn, error = %e, "could not end the stock window");
            }
        }
        Disposition::GiveUp { reason }
    }
}
