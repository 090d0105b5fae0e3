//! Log capture for one test, inside a test binary many tests share (feature `test-kit`).
//!
//! A process-global subscriber would capture every other test's lines too (and turn TRACE on
//! for all of them), so a capture is installed as the *thread's* default subscriber for as long
//! as the [`LogCapture`] lives. A `#[tokio::test]` runs its future, and every task it spawns,
//! on the test's own thread (current-thread runtime), so the capture sees the test's lines
//! (SDKs, HTTP client and simulator included) and nothing else.
//!
//! Why [`LogCapture::trace`] also keeps a second subscriber alive: `tracing-core` caches each
//! callsite's interest when the callsite is first hit. While exactly one subscriber exists (this
//! capture), it computes that interest from the *hitting thread's* default. So another test's
//! thread, which has no subscriber, could register one of our callsites as "never" a moment
//! after we installed ours, and this test's line at it would vanish (it happened under load,
//! after `rebuild_interest_cache` had already run). With a second, always-interested subscriber
//! alive, interest is combined over every live subscriber, whichever thread registers.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use tracing::subscriber::DefaultGuard;
use tracing::Dispatch;

/// A shared byte buffer usable as a `tracing_subscriber` writer.
#[derive(Clone, Default)]
pub struct LogBuf(pub Arc<Mutex<Vec<u8>>>);

impl LogBuf {
    /// Everything written so far, as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|p| p.into_inner())).to_string()
    }
}

impl Write for LogBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuf {
    type Writer = LogBuf;
    fn make_writer(&'a self) -> LogBuf {
        self.clone()
    }
}

/// Every log line of the current test (its thread), at every level and from every crate,
/// while this value lives.
pub struct LogCapture {
    buf: LogBuf,
    _guard: DefaultGuard,
}

impl LogCapture {
    /// Starts capturing the current thread's lines at TRACE, plain text (no ANSI colours).
    pub fn trace() -> Self {
        keep_callsites_interested();
        let buf = LogBuf::default();
        let sub = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("trace"))
            .with_ansi(false)
            .with_writer(buf.clone())
            .finish();
        let guard = tracing::subscriber::set_default(sub);
        // Callsites cached as uninteresting before this capture existed are recomputed.
        tracing::callsite::rebuild_interest_cache();
        LogCapture { buf, _guard: guard }
    }

    /// Everything captured so far.
    pub fn text(&self) -> String {
        self.buf.text()
    }
}

/// Keeps one always-interested subscriber alive for the rest of the process. It is never any
/// thread's default, so it receives nothing; it only counts as a live subscriber (see the
/// module comment).
fn keep_callsites_interested() {
    static KEEPER: OnceLock<Dispatch> = OnceLock::new();
    KEEPER.get_or_init(|| Dispatch::new(tracing_subscriber::registry()));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The race the keeper closes, made deterministic: another thread (no subscriber of its
    /// own) hits a callsite first while this test's capture is the only other subscriber.
    #[test]
    fn a_line_first_hit_on_another_thread_still_reaches_the_capture() {
        fn log_here() {
            tracing::info!(marker = "k7q", "a line at a fresh callsite");
        }
        let capture = LogCapture::trace();
        std::thread::spawn(log_here).join().expect("no panic");
        log_here();
        assert!(capture.text().contains("k7q"), "{}", capture.text());
    }
}
