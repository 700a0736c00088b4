//! The limits a run is held to from outside its fuel — a kill, wall-clock and CPU time — checked
//! the same way by every backend: wasmi between slices, wasmtime at each epoch tick. One check,
//! so a limit cannot hold on one engine and not on another.

use crate::{EdgeError, Host, LimitKind, Limits, Outcome};
use alloc::format;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, Ordering};
use spore_wasip1::Clock;

/// Ends a run from elsewhere: the protocol's `KILL`, a runner shutting down. Cheap to clone; the
/// runner keeps one clone (and may give one to its WASI host, so a sleeping guest wakes) and
/// hands one to [`Engine::instantiate`](crate::Engine::instantiate).
#[derive(Debug, Clone, Default)]
pub struct Interrupt(Arc<AtomicBool>);

impl Interrupt {
    /// A switch not yet thrown.
    pub fn new() -> Interrupt {
        Interrupt::default()
    }

    /// Ends the run at its next check (within a slice or an epoch tick).
    pub fn interrupt(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Whether [`Interrupt::interrupt`] was called.
    pub fn is_interrupted(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// A run's external limits, measured with its host's clocks.
pub(crate) struct Watch {
    interrupt: Interrupt,
    /// Monotonic nanoseconds at which the wall-clock limit ends the run.
    wall_deadline: Option<u64>,
    /// Thread CPU nanoseconds at which the CPU limit ends the run.
    cpu_deadline: Option<u64>,
    limits: Limits,
}

impl Watch {
    /// Starts the clocks. A CPU limit needs the host's thread CPU clock and a wall limit its
    /// monotonic clock: refused, naming the clock, where the platform has none.
    pub(crate) fn start<H: Host>(limits: &Limits, interrupt: Interrupt, host: &mut H) -> Result<Watch, EdgeError> {
        Ok(Watch {
            interrupt,
            wall_deadline: deadline(limits.wall_ms, Clock::Monotonic, host)?,
            cpu_deadline: deadline(limits.cpu_ms, Clock::ThreadCputime, host)?,
            limits: *limits,
        })
    }

    /// Monotonic nanoseconds at which the wall-clock limit ends the run.
    pub(crate) fn wall_deadline(&self) -> Option<u64> {
        self.wall_deadline
    }

    /// How the run ends now, if a limit or a kill ends it.
    pub(crate) fn check(&self, host: &mut impl Host) -> Option<Outcome> {
        if self.interrupt.is_interrupted() {
            return Some(Outcome::Killed);
        }
        if passed(self.wall_deadline, Clock::Monotonic, host) {
            return Some(past_wall_limit(self.limits.wall_ms.unwrap_or(0)));
        }
        if passed(self.cpu_deadline, Clock::ThreadCputime, host) {
            let ms = self.limits.cpu_ms.unwrap_or(0);
            return Some(Outcome::Limit { limit: LimitKind::Cpu, message: format!("used its CPU limit of {ms} ms") });
        }
        None
    }
}

/// How a run past its wall-clock limit of `ms` ends — also where a host sees the deadline pass
/// while the guest waits in a call that does not return (a bundle's stdin).
pub fn past_wall_limit(ms: u64) -> Outcome {
    Outcome::Limit { limit: LimitKind::Wall, message: format!("ran past its wall-clock limit of {ms} ms") }
}

/// `ms` from the clock's now, in its nanoseconds.
fn deadline<H: Host>(ms: Option<u64>, clock: Clock, host: &mut H) -> Result<Option<u64>, EdgeError> {
    let Some(ms) = ms else { return Ok(None) };
    match host.now(clock) {
        Some(now) => Ok(Some(now.saturating_add(ms.saturating_mul(1_000_000)))),
        None => Err(EdgeError::Limit(format!(
            "this runner has no {clock:?} clock to measure the limit with; leave it unset"
        ))),
    }
}

fn passed<H: Host>(deadline: Option<u64>, clock: Clock, host: &mut H) -> bool {
    deadline.is_some_and(|d| host.now(clock).is_some_and(|now| now >= d))
}
