//! Enforcement of [`Limits`]: a [`ResourceLimiter`] for memory and tables, and a per-sandbox
//! CPU meter read by the epoch callback.
//!
//! Tables live in host memory the guest chose the size of (a million-element table is 8 MB),
//! so their growth is charged to the same memory limit as linear memory: a guest cannot step
//! around `memory_bytes` by growing tables instead.
//!
//! CPU time is measured, not estimated: every poll of the sandbox's future is bracketed by
//! reads of the polling thread's CPU clock, so time a guest spends asleep or waiting on I/O
//! costs nothing, and time it spends spinning is charged to it alone.

use spore_spec::{Counts, Limits};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use wasmtime::ResourceLimiter;

/// Memory, table and instance ceilings of one store; remembers the first denied growth so a
/// trap that follows can be reported as the memory limit it really is.
pub(crate) struct Limiter {
    meter: Arc<Meter>,
    memory_limit: Option<u64>,
    /// Linear memory plus table bytes committed now.
    memory_used: u64,
    table_elements: usize,
    instances: usize,
    tables: usize,
    memories: usize,
    /// `(already used, asked for)` at the first denied memory growth.
    pub(crate) memory_denied: Option<(u64, u64)>,
}

impl Limiter {
    /// `host`: the ceilings of the engine (its pool share), which the spec's counts cannot
    /// exceed.
    pub(crate) fn new(limits: &Limits, host: Counts, meter: Arc<Meter>) -> Self {
        let counts = limits.counts(host);
        Limiter {
            meter,
            memory_limit: limits.memory_bytes,
            memory_used: 0,
            table_elements: counts.table_elements,
            instances: counts.instances,
            tables: counts.tables,
            memories: counts.memories,
            memory_denied: None,
        }
    }

    /// The configured memory ceiling, if any.
    pub(crate) fn memory_limit(&self) -> Option<u64> {
        self.memory_limit
    }

    /// Bytes of linear memory currently committed to the guest.
    pub(crate) fn memory_used(&self) -> u64 {
        self.memory_used
    }
}

impl Limiter {
    /// Commits the sandbox's memory (linear memories and tables) to `after` bytes if the limit
    /// allows it; otherwise remembers the first denial and refuses.
    fn grow_to(&mut self, after: u64) -> bool {
        if let Some(limit) = self.memory_limit
            && after > limit
        {
            self.memory_denied.get_or_insert((self.memory_used, after));
            return false;
        }
        self.memory_used = after;
        self.meter.memory.store(after, Ordering::Relaxed);
        true
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        let after = self.memory_used - current as u64 + desired as u64;
        // `maximum` is the most this memory can ever hold: its declared maximum, or the size of
        // its pool slot. A growth past it fails regardless; recording it here means the guest's
        // ending is reported as the memory limit it is, with the limit that really applied.
        if let Some(max) = maximum
            && desired > max
        {
            let effective = self.memory_limit.map_or(max as u64, |l| l.min(max as u64));
            self.memory_limit = Some(effective);
            self.memory_denied.get_or_insert((self.memory_used, after));
            return Ok(false);
        }
        Ok(self.grow_to(after))
    }

    fn table_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.table_elements {
            return Ok(false);
        }
        let grown = (desired.saturating_sub(current) as u64).saturating_mul(TABLE_ELEMENT_BYTES);
        Ok(self.grow_to(self.memory_used.saturating_add(grown)))
    }

    fn instances(&self) -> usize {
        self.instances
    }

    fn tables(&self) -> usize {
        self.tables
    }

    fn memories(&self) -> usize {
        self.memories
    }
}

/// Host bytes of one table element (a function or GC reference), as charged to the memory limit.
const TABLE_ELEMENT_BYTES: u64 = 8;

/// The error the epoch callback raises when a sandbox has used up its CPU time.
#[derive(Debug)]
pub(crate) struct CpuTimeExceeded;

impl std::fmt::Display for CpuTimeExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CPU time limit exceeded")
    }
}

impl std::error::Error for CpuTimeExceeded {}

/// Live usage of one sandbox: CPU time (nanoseconds of thread CPU time) and committed linear
/// memory. Shared with the embedder so it can report stats while the guest runs.
#[derive(Default, Debug)]
pub struct Meter {
    /// When the guest's entry point was entered: instantiation done, guest code about to run.
    entered: std::sync::OnceLock<std::time::Instant>,
    memory: AtomicU64,
    used: AtomicU64,
    /// Thread CPU clock at the start of the poll in progress; 0 when not being polled.
    poll_start: AtomicU64,
}

impl Meter {
    /// When the guest started running its own code, if it has.
    pub fn entered(&self) -> Option<std::time::Instant> {
        self.entered.get().copied()
    }

    /// Adds work done for the guest elsewhere (another thread, another process) to its CPU time.
    pub(crate) fn charge(&self, spent: std::time::Duration) {
        self.used.fetch_add(spent.as_nanos().min(u64::MAX as u128) as u64, Ordering::Relaxed);
    }

    pub(crate) fn mark_entered(&self) {
        let _ = self.entered.set(std::time::Instant::now());
    }

    /// Linear memory committed to the guest now, in bytes.
    pub fn memory_bytes(&self) -> u64 {
        self.memory.load(Ordering::Relaxed)
    }

    /// CPU time so far, including the poll in progress when called from inside it.
    pub fn cpu_ns(&self) -> u64 {
        let used = self.used.load(Ordering::Relaxed);
        match self.poll_start.load(Ordering::Relaxed) {
            0 => used,
            start => used + thread_cpu_ns().saturating_sub(start),
        }
    }
}

/// A future whose polls are charged to a [`Meter`].
pub(crate) struct Metered<F> {
    inner: Pin<Box<F>>,
    meter: Arc<Meter>,
}

impl<F> Metered<F> {
    pub(crate) fn new(inner: F, meter: Arc<Meter>) -> Self {
        Metered { inner: Box::pin(inner), meter }
    }
}

impl<F: Future> Future for Metered<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let start = thread_cpu_ns().max(1);
        self.meter.poll_start.store(start, Ordering::Relaxed);
        let out = self.inner.as_mut().poll(cx);
        let spent = thread_cpu_ns().saturating_sub(start);
        self.meter.poll_start.store(0, Ordering::Relaxed);
        self.meter.used.fetch_add(spent, Ordering::Relaxed);
        out
    }
}

/// Descriptors this process can give one guest: its `RLIMIT_NOFILE` (the soft limit raised to
/// the hard one, once, as the daemon does at start) less 64 for the runtime's own. A guest's
/// open-handle cap is held below it, so a descriptor bomb meets Spore's limit (and its message)
/// before the kernel's `EMFILE` — in a container whose limit is 1024, say.
pub(crate) fn process_open_files() -> usize {
    static BUDGET: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *BUDGET.get_or_init(|| {
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: `lim` is a valid, writable rlimit.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
            return usize::MAX;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            // SAFETY: raising the soft limit up to the hard one needs no privilege.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
                lim = raised;
            }
        }
        usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX).saturating_sub(64).max(16)
    })
}

/// The calling thread's CPU clock.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant Linux supports.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_limit_counts_all_memories_and_remembers_the_denial() {
        let limits = Limits { memory_bytes: Some(3 << 16), ..Limits::default() };
        let mut l = Limiter::new(&limits, Counts::DEFAULT, Arc::default());
        assert!(l.memory_growing(0, 1 << 16, None).unwrap());
        assert!(l.memory_growing(0, 2 << 16, None).unwrap());
        assert!(!l.memory_growing(2 << 16, 3 << 16, None).unwrap());
        assert_eq!(l.memory_denied, Some((3 << 16, 4 << 16)));
        assert_eq!(l.memory_used(), 3 << 16);
    }

    #[test]
    fn tables_are_charged_to_the_memory_limit() {
        let limits = Limits { memory_bytes: Some(1 << 20), ..Limits::default() };
        let mut l = Limiter::new(&limits, Counts::DEFAULT, Arc::default());
        assert!(l.memory_growing(0, 1 << 19, None).unwrap());
        // 64k elements = 512 KiB: exactly fills the rest.
        assert!(l.table_growing(0, 1 << 16, None).unwrap());
        assert_eq!(l.memory_used(), 1 << 20);
        assert!(!l.table_growing(1 << 16, (1 << 16) + 1, None).unwrap());
        assert!(!l.memory_growing(1 << 19, (1 << 19) + (1 << 16), None).unwrap());
        assert_eq!(l.memory_denied, Some((1 << 20, (1 << 20) + 8)));
    }
}
