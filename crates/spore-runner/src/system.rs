//! What a Linux runner's WASI hosts take from the operating system — clocks, entropy, sleeps
//! a kill ends — shared by the apps the runner holds and by a bundle's one app, so the two
//! cannot differ.

use spore_edge::{Interrupt, Stop};
use spore_wasip1::Clock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// One run's clocks: its monotonic clock counts from the run's start.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clocks {
    start: Instant,
}

impl Clocks {
    /// Clocks whose monotonic time starts at `start`.
    pub(crate) fn from(start: Instant) -> Clocks {
        Clocks { start }
    }

    /// A clock's time in nanoseconds.
    pub(crate) fn now(&self, clock: Clock) -> Option<u64> {
        match clock {
            Clock::Monotonic => Some(self.monotonic()),
            Clock::Realtime => Some(SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_nanos() as u64),
            // A run has its thread to itself, so the thread's CPU time is the app's.
            Clock::ThreadCputime | Clock::ProcessCputime => thread_cpu_ns(),
        }
    }

    fn monotonic(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// Waits until the monotonic clock reaches `deadline`, or until `interrupt` is thrown.
    pub(crate) fn sleep_until(&self, deadline: u64, interrupt: &Interrupt) -> Result<(), Stop> {
        loop {
            if interrupt.is_interrupted() {
                return Err(Stop::Interrupted);
            }
            let now = self.monotonic();
            if now >= deadline {
                return Ok(());
            }
            // In pieces, so a kill ends a long sleep within one.
            std::thread::sleep(Duration::from_nanos((deadline - now).min(10_000_000)));
        }
    }
}

/// Lets other threads run; a thrown `interrupt` ends the guest.
pub(crate) fn yield_now(interrupt: &Interrupt) -> Result<(), Stop> {
    std::thread::yield_now();
    match interrupt.is_interrupted() {
        true => Err(Stop::Interrupted),
        false => Ok(()),
    }
}

/// CPU time of the calling thread, nanoseconds.
pub(crate) fn thread_cpu_ns() -> Option<u64> {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec into the one we pass.
    let ok = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } == 0;
    ok.then(|| ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}

/// Fills `buf` from the kernel's entropy source (getrandom, else /dev/urandom). A machine
/// with neither cannot run a runner: that is a fault of the platform, said and not hidden.
pub(crate) fn fill_random(buf: &mut [u8]) {
    let mut filled = 0;
    while filled < buf.len() {
        // SAFETY: writes at most the rest of `buf`, which we own.
        let n = unsafe { libc::getrandom(buf[filled..].as_mut_ptr().cast(), buf.len() - filled, 0) };
        if n > 0 {
            filled += n as usize;
        } else if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            use std::io::Read;
            let urandom = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut buf[filled..]));
            if let Err(e) = urandom {
                panic!("spore-runner: no entropy source (getrandom and /dev/urandom failed: {e})");
            }
            return;
        }
    }
}
