//! The engines of Spore's edge runners behind one trait, so a runner — on Linux or on a board
//! with no operating system — runs an app the same way whichever engine it has: load a module,
//! instantiate it with limits and WASI, run it in slices of fuel (so one spinning app cannot
//! starve the others or the protocol), and report how it ended in the wire protocol's terms.
//!
//! Backends: `wasmi` (an interpreter of plain wasm with deterministic fuel; `no_std`). The
//! wasmtime runtime-only backend (precompiled native or Pulley artifacts) comes next.
//!
//! `no_std + alloc`. Depends on `spore-wasip1` and `spore-wire` only; must never depend on a
//! compiler, `std` (outside a std-only backend) or an async runtime.

#![no_std]

extern crate alloc;

#[cfg(feature = "wasmtime")]
extern crate std;

#[cfg(feature = "wasmtime")]
pub mod compiled;
#[cfg(feature = "wasmi")]
pub mod interpreter;
mod watch;

use alloc::string::String;
use core::fmt;
pub use spore_wasip1::{Host, Import, Stop, Wasi};
pub use spore_wire::{BackendKind, LimitKind, Limits, Outcome, Value};
pub use watch::{Interrupt, past_wall_limit};

/// The Rust target triple this crate was built for: what a runner's native artifacts must be
/// compiled for, and what it reports as its own.
pub const TARGET: &str = env!("SPORE_EDGE_TARGET");

/// Memory an instance gets when its limits leave it unset, on every engine: 64 MiB.
pub const DEFAULT_MEMORY: u64 = 64 << 20;

/// Table elements an instance may hold: tables are host memory the guest's memory limit does
/// not count, so they have a cap of their own.
pub const MAX_TABLE_ELEMENTS: usize = 100_000;

/// Why a guest stopped inside a host call or at a check, carried through the engine as its
/// error type and read back when the run ends.
#[derive(Debug)]
pub(crate) enum Stopped {
    /// The WASI call ended the guest (exit, or interrupted while waiting).
    Wasi(Stop),
    /// A kill or a time limit.
    Watch(Outcome),
}

impl fmt::Display for Stopped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

impl core::error::Error for Stopped {}

impl Stopped {
    /// How the run ended.
    pub(crate) fn outcome(&self) -> Outcome {
        match self {
            Stopped::Wasi(Stop::Exit(code)) => Outcome::Exited(*code),
            Stopped::Wasi(Stop::Interrupted) => Outcome::Killed,
            // Only an engine that can suspend a guest (wasmi) takes a park, and not inside a
            // start function; elsewhere it ends it.
            Stopped::Wasi(Stop::Park { .. }) => Outcome::Trapped(
                "the guest had to wait (for output room, a device, its next turn) where it cannot: \
                 in its start function, or on an engine that cannot suspend it"
                    .into(),
            ),
            Stopped::Watch(outcome) => outcome.clone(),
        }
    }
}

/// One WASI call as every backend makes it, with the watch looked at before and after (a call
/// can be long: a sleep, a write waiting for the link). `args` are the call's parameters as
/// `u64`s; the answer is its errno.
pub(crate) fn host_call<H: Host>(
    wasi: &mut Wasi<H>,
    watch: &watch::Watch,
    index: usize,
    memory: &mut [u8],
    args: &[u64],
) -> Result<i32, Stopped> {
    if let Some(outcome) = watch.check(&mut wasi.host) {
        return Err(Stopped::Watch(outcome));
    }
    let errno = wasi.call(index, memory, args).map_err(Stopped::Wasi)?;
    match watch.check(&mut wasi.host) {
        Some(outcome) => Err(Stopped::Watch(outcome)),
        None => Ok(errno),
    }
}

/// A module's imports against what the runner gives it: WASI preview 1 and `functions` (its
/// grants), each of those with its type. Each import comes with its type as
/// [`spore_wasip1::signature`] writes it (`None`: not a function). The first that is neither is
/// refused by name.
pub(crate) fn check_imports<'a>(
    imports: impl Iterator<Item = (&'a str, &'a str, Option<String>)>,
    functions: &[Import],
) -> Result<(), EdgeError> {
    for (module, name, signature) in imports {
        if module == spore_wasip1::MODULE {
            continue;
        }
        let import = alloc::format!("{module}::{name}");
        let Some(function) = functions.iter().find(|f| f.module == module && f.name == name) else {
            return Err(EdgeError::Import { import });
        };
        let provided = function.signature();
        if signature.as_ref() != Some(&provided) {
            let imported = signature.unwrap_or_else(|| "something other than a function".into());
            return Err(EdgeError::Signature { import, imported, provided });
        }
    }
    Ok(())
}

/// Refuses a module whose declared memory needs more than `limit` bytes at the start.
pub(crate) fn check_memory(minimum_bytes: u128, limit: u64) -> Result<(), EdgeError> {
    match minimum_bytes > u128::from(limit) {
        true => Err(EdgeError::Limit(alloc::format!(
            "the module starts with {minimum_bytes} bytes of memory; its limit is {limit}"
        ))),
        false => Ok(()),
    }
}

/// How a run ends whose memory or tables grew past the limit (the guest usually traps or
/// aborts right after the refused grow; the limit is the cause to report).
pub(crate) fn over_memory(limit: usize) -> Outcome {
    Outcome::Limit {
        limit: LimitKind::Memory,
        message: alloc::format!("went over its memory limit of {limit} bytes (a memory or table grow was refused)"),
    }
}

/// What a run calls.
#[derive(Debug, Clone, Copy)]
pub enum Call<'a> {
    /// The command's `_start`.
    Start,
    /// An exported function, with plain values.
    Export {
        /// Its name.
        name: &'a str,
        /// Its arguments.
        args: &'a [Value],
    },
}

/// Where a run stands after a slice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// It ended.
    Ended(Outcome),
    /// Its slice of fuel is spent; [`Instance::resume`] goes on.
    Paused,
    /// It waits in a WASI call its host parked ([`Stop::Park`]): [`Instance::resume`] goes on
    /// once the monotonic clock is at `until`, or (`None`) once the host has room again.
    Parked {
        /// Monotonic nanoseconds.
        until: Option<u64>,
    },
}

/// Why a module does not load or instantiate. Each names what to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EdgeError {
    /// Not a module this engine runs (invalid wasm, a feature it lacks).
    Invalid(String),
    /// It imports something the runner does not provide (or has not granted it).
    Import {
        /// `module::name` of the import.
        import: String,
    },
    /// It imports a function the runner provides, with another type.
    Signature {
        /// `module::name` of the import.
        import: String,
        /// Its type as the module imports it.
        imported: String,
        /// Its type as the runner provides it.
        provided: String,
    },
    /// Its initial memory or tables are over its limits.
    Limit(String),
    /// Its start function trapped.
    Trap(String),
}

impl fmt::Display for EdgeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EdgeError::Invalid(why) => write!(f, "not a module this runner can load: {why}"),
            EdgeError::Import { import } => write!(
                f,
                "the module imports {import}, which this runner does not provide (it has WASI preview 1 for commands)"
            ),
            EdgeError::Signature { import, imported, provided } => {
                write!(f, "the module imports {import} as {imported}; this runner's is {provided}")
            }
            EdgeError::Limit(why) => write!(f, "the module needs more than its limits give: {why}"),
            EdgeError::Trap(why) => write!(f, "the module's start function trapped: {why}"),
        }
    }
}

impl core::error::Error for EdgeError {}

/// An engine: loads modules and makes instances of them.
pub trait Engine {
    /// A loaded module, shared by its instances.
    type Module: Clone;
    /// A running (or runnable) instance whose WASI host is `H`.
    type Instance<H: Host + Send + 'static>: Instance;

    /// Which backend this is, as `HELLO_ACK` advertises it.
    fn backend(&self) -> BackendKind;

    /// Loads (validates, or deserialises) a module.
    fn load(&self, bytes: &[u8]) -> Result<Self::Module, EdgeError>;

    /// Whether `module` can be made with `limits` and the host `functions` granted to it — its
    /// imports are WASI's or those, with their types; its declared memory fits; the limits are
    /// ones this engine keeps — without instantiating it (nothing runs, nothing is allocated),
    /// so a runner can refuse an app when it is made.
    fn check(&self, module: &Self::Module, limits: &Limits, functions: &[Import]) -> Result<(), EdgeError>;

    /// An instance of `module` with its WASI state and limits; `interrupt` ends its run from
    /// elsewhere. The host's own functions ([`Host::functions`]) are linked beside WASI's.
    fn instantiate<H: Host + Send + 'static>(
        &self,
        module: &Self::Module,
        wasi: Wasi<H>,
        limits: &Limits,
        interrupt: Interrupt,
    ) -> Result<Self::Instance<H>, EdgeError>;
}

/// One instance.
pub trait Instance {
    /// Starts `call`, running at most `slice` units of fuel (`None`: to its end, within the
    /// instance's own budget). Engines without resumable runs (wasmtime, synchronous) run to
    /// the end whatever the slice; every engine ends the run on a kill, and at its wall-clock
    /// and CPU limits.
    fn start(&mut self, call: Call<'_>, slice: Option<u64>) -> Step;

    /// Goes on with a paused run for at most `slice` more.
    fn resume(&mut self, slice: Option<u64>) -> Step;

    /// Fuel used since instantiation.
    fn fuel_used(&self) -> u64;

    /// Linear memory now, bytes.
    fn memory_bytes(&self) -> u64;
}
