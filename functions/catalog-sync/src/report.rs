//! Run report bookkeeping: counts, a few samples per count, bounded per-item errors.

use store::{ReportItem, SyncRun};

/// Samples kept per count (enough for a preview).
pub const SAMPLES: usize = 5;
/// Per-item errors kept per run.
pub const MAX_ERRORS: usize = 50;

pub fn item(
    keycrm_id: Option<i64>,
    shop_id: Option<&str>,
    name: &str,
    detail: Option<String>,
) -> ReportItem {
    ReportItem {
        keycrm_id,
        shop_id: shop_id.map(str::to_string),
        name: name.to_string(),
        detail,
    }
}

pub fn count(run: &mut SyncRun, key: &str, n: u64) {
    if n == 0 {
        return;
    }
    match run.counts.get_mut(key) {
        Some(v) => *v += n,
        None => {
            run.counts.insert(key.to_string(), n);
        }
    }
}

pub fn sample(run: &mut SyncRun, key: &str, it: ReportItem) {
    let list = run.samples.entry(key.to_string()).or_default();
    if list.len() < SAMPLES {
        list.push(it);
    }
}

/// Counts and samples at once; the sample is only built while there is room for it.
pub fn note(run: &mut SyncRun, key: &str, it: impl FnOnce() -> ReportItem) {
    count(run, key, 1);
    if run.samples.get(key).is_none_or(|l| l.len() < SAMPLES) {
        sample(run, key, it());
    }
}

pub fn error(run: &mut SyncRun, it: ReportItem) {
    count(run, "errors", 1);
    if run.errors.len() < MAX_ERRORS {
        run.errors.push(it);
    }
}
