//! Log capture for one test, inside a test binary many tests share: the runtime crate's
//! test kit (see `runtime::log_capture` for why a capture never loses a line to another thread).

pub use runtime::log_capture::{LogBuf, LogCapture};
