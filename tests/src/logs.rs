//! Log capture for one test, inside a test binary many tests share.
//!
//! A process-global subscriber would capture every other test's lines too (and turn TRACE on
//! for all of them), so a capture is installed as the *thread's* default subscriber for as long
//! as the [`LogCapture`] lives. A `#[tokio::test]` runs its future, and every task it spawns,
//! on the test's own thread (current-thread runtime), so the capture sees the test's lines —
//! SDKs, HTTP client and simulator included — and nothing else.

use std::io::Write;
use std::sync::{Arc, Mutex};
use tracing::subscriber::DefaultGuard;

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
        let buf = LogBuf::default();
        let sub = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("trace"))
            .with_ansi(false)
            .with_writer(buf.clone())
            .finish();
        let guard = tracing::subscriber::set_default(sub);
        // A callsite another test's thread hit first may be cached as uninteresting: without
        // this, a line of this test could be missing when tests run in parallel under load.
        tracing::callsite::rebuild_interest_cache();
        LogCapture { buf, _guard: guard }
    }

    /// Everything captured so far.
    pub fn text(&self) -> String {
        self.buf.text()
    }
}
