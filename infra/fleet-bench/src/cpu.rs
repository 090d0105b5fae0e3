//! The CPU an invocation's handler actually used: thread CPU time summed over the polls of its
//! future. On this machine a poll can be preempted by the bench's other threads (the simulator,
//! the queues, other invocations); wall time inside polls would count that as the handler's.
//! Thread CPU time does not, so the figure is the handler's own work, whatever the load.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// CPU time consumed so far by the calling thread.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `clock_gettime` only writes the `timespec` it is given, which lives on this
    // stack frame; CLOCK_THREAD_CPUTIME_ID is supported by every Linux the bench runs on.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

/// `fut`, adding the CPU time of each of its polls to `used` (nanoseconds). The handlers do
/// not spawn tasks, so everything an invocation computes happens inside these polls.
pub struct CpuTimed<F> {
    inner: Pin<Box<F>>,
    used: Arc<AtomicU64>,
}

impl<F: Future> CpuTimed<F> {
    pub fn new(fut: F, used: Arc<AtomicU64>) -> Self {
        CpuTimed {
            inner: Box::pin(fut),
            used,
        }
    }
}

impl<F: Future> Future for CpuTimed<F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let before = thread_cpu();
        let out = self.inner.as_mut().poll(cx);
        let spent = thread_cpu().saturating_sub(before);
        self.used.fetch_add(
            u64::try_from(spent.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_work_and_not_sleep() {
        let used = Arc::new(AtomicU64::new(0));
        let started = std::time::Instant::now();
        CpuTimed::new(
            async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let mut x = 0u64;
                for i in 0..3_000_000u64 {
                    x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
                }
                std::hint::black_box(x);
            },
            used.clone(),
        )
        .await;
        let wall = started.elapsed();
        let cpu = Duration::from_nanos(used.load(Ordering::Relaxed));
        assert!(cpu > Duration::ZERO, "the loop's CPU is counted");
        assert!(
            cpu + Duration::from_millis(50) <= wall,
            "the sleep is not: cpu {cpu:?}, wall {wall:?}"
        );
    }
}
